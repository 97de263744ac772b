"""Safe file IO for every verb: strict reading of user files (regular files only, UTF-8, JSON/JSONL) with one-line
errors (``DataError``), atomic writes, resumable JSONL caches, output checks and output locks."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


class DataError(Exception):
    """Bad input. ``problems`` holds one line per problem, each naming the file, the item and what is wrong."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ------------------------------------------------------------------------------------------------------ reading

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_input_file(path: str | os.PathLike[str], missing: str = "file not found") -> Path:
    """``path`` if it is a regular file (symlinks followed); else DataError naming the real problem. Checked with
    os.stat, so a FIFO or device is never opened (reading one would wait forever)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError([f"{path}: {missing}"]) from None
    except NotADirectoryError:
        raise DataError([f"{path}: path does not exist (a folder on the way is a file)"]) from None
    except OSError as e:
        raise DataError([f"{path}: cannot read ({e.strerror})"]) from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError([f"{path}: is a directory, not a file"])
    if not stat.S_ISREG(st.st_mode):
        raise DataError([f"{path}: not a regular file ({_kind(st.st_mode)})"])
    return path


def read_bytes(path: str | os.PathLike[str], missing: str = "file not found") -> bytes:
    """The bytes of a regular file; a missing, non-regular or unreadable path is a one-line DataError."""
    path = check_input_file(path, missing)
    try:  # O_NONBLOCK: should a FIFO replace the file after the check, opening it does not wait
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise DataError([f"{path}: cannot read ({e.strerror})"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError([f"{path}: not a regular file ({_kind(st.st_mode)})"])
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise DataError([f"{path}: cannot read ({e.strerror})"]) from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], missing: str = "file not found") -> str:
    """The UTF-8 text of a regular file (see :func:`read_bytes`); other encodings are a one-line DataError."""
    data = read_bytes(path, missing)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None


def parse_json(path: str | os.PathLike[str], text: str) -> Any:
    """One JSON document; bad syntax, integers beyond Python's digit limit and deep nesting are one-line errors."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError: also integers beyond Python's digit limit
        raise DataError([f"{path}: not JSON ({json_reason(e)})"]) from None


def parse_jsonl(path: str | os.PathLike[str], text: str) -> list[Any]:
    """The rows of JSONL text, blank lines skipped. Lines are split on '\\n' only: str.splitlines() would also split
    inside a string holding U+2028 or another Unicode line separator."""
    rows = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError) as e:
                raise DataError([f"{path}: line {lineno}: not JSON ({json_reason(e)})"]) from None
    return rows


def read_json_file(path: str | os.PathLike[str], missing: str = "file not found") -> Any:
    """A user's (or another run's) JSON file, read strictly and never written."""
    return parse_json(path, read_text(path, missing))


def read_jsonl_file(path: str | os.PathLike[str], missing: str = "file not found") -> list[Any]:
    """A user's JSONL file (labels, retrieved rules), read strictly and never written: a cut-off last line is an
    error here, not dropped (compare :func:`read_jsonl`, for the project's own caches)."""
    return parse_jsonl(path, read_text(path, missing))


def json_reason(e: Exception) -> str:
    """What is wrong with a JSON text, in a few words, from json.loads' exception."""
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split())[:200]


# ------------------------------------------------------------------------------------------------------ writing


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 1 << 20])
        view = view[n:]


def _write_error(path: Path, e: OSError, note: str = "") -> DataError:
    reason = "no space left on device" if e.errno == errno.ENOSPC else (e.strerror or type(e).__name__)
    return DataError([f"{path}: cannot write ({reason}){note}"])


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written file. A write error
    (a full disk) removes the temporary file, keeps the old file and raises a one-line DataError naming ``path``."""
    path = Path(path)
    data = text.encode("utf-8")  # encoding errors surface before anything is written
    if path.is_dir():
        raise DataError([f"{path}: is a directory, not a file"])
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file owner-only; give it the usual permissions
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as pretty UTF-8 JSON."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def jsonl_line(row: Any) -> str:
    """One JSONL line: compact UTF-8 JSON (not ASCII-escaped) and a newline."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """Atomically write ``rows`` as JSONL (the whole file at once; :func:`append_jsonl` adds to a cache)."""
    atomic_write_text(path, "".join(jsonl_line(r) for r in rows))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of one of the project's own JSONL caches (never a user's file: see :func:`read_jsonl_file`). A torn last
    line (an interrupted append) is cut off the file, any other bad line is an error; a missing cache is empty."""
    path = Path(path)
    if not os.path.lexists(path):
        return []
    data = read_bytes(path)
    if data and not data.endswith(b"\n"):  # an interrupted append left a torn last line (maybe mid-character): drop it
        data = data[: data.rfind(b"\n") + 1]
        try:
            os.truncate(path, len(data))
        except OSError as e:
            raise _write_error(path, e, " while dropping a torn last line") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    return parse_jsonl(path, text)


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one row to a JSONL cache and flush it to disk. A write error (a full disk) cuts the partial row off
    again, keeps the rows before it and raises a one-line DataError naming the cache."""
    path = Path(path)
    data = jsonl_line(row).encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            with suppress(OSError):  # else the torn row is dropped by the next read_jsonl
                os.ftruncate(fd, size)
            raise _write_error(path, e, "; the rows written before are kept: run again to resume") from None
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------- outputs and locks

_STALE_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\..+\.tmp\.png$")  # atomic_write_text's, plot_runs'


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of an output file or folder: ``<out>.lock``."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def check_outputs(
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
    outputs: Iterable[tuple[str, str | os.PathLike[str] | None]],
    folders: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
) -> None:
    """Before any work: every output file (label, path) must be writable as a regular file and none may be (a
    link to) one of the inputs; every output folder must be a folder or not exist. DataError lists every problem."""
    ins = [(label, Path(p)) for label, p in inputs if p is not None]
    problems: list[str] = []

    def blocked_parent(path: Path) -> Path | None:
        for parent in path.parents:
            if os.path.lexists(parent):
                return None if parent.is_dir() else parent
        return None

    for label, p in folders:
        if p is None:
            continue
        path = Path(p)
        if os.path.lexists(path) and not path.is_dir():
            problems.append(f"{path}: {label} is not a directory")
        elif (bad := blocked_parent(path)) is not None:
            problems.append(f"{path}: {label} cannot be made ({bad} is not a directory)")
    if problems:  # the files inside a bad folder would only repeat it
        raise DataError(problems)
    for label, p in outputs:
        if p is None:
            continue
        path = Path(p)
        if path.is_dir():
            problems.append(f"{path}: {label} is a directory; give a file path")
            continue
        if path.exists() and not path.is_file():
            problems.append(f"{path}: {label} is not a regular file ({_kind(os.stat(path).st_mode)})")
            continue
        if (bad := blocked_parent(path)) is not None:
            if not any(f"({bad} is not a directory)" in line for line in problems):  # once, not for its lock too
                problems.append(f"{path}: {label} cannot be written ({bad} is not a directory)")
            continue
        for in_label, in_path in ins:
            if _same_file(path, in_path):
                problems.append(
                    f"{path}: {label} is the input {in_label} {in_path}; an output must not overwrite the input "
                    "(choose another path)"
                )
                break
    if problems:
        raise DataError(problems)


def clean_stale_tmp(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden temporary files (``.NAME.XXXXXXXX.tmp``) that a killed run left beside ``out`` (a file)
    or inside it and its sub-folders (a folder); call it only while holding ``out``'s lock. Returns them."""
    out = Path(out)
    if out.is_dir():
        cands = [*out.iterdir(), *(q for d in out.iterdir() if d.is_dir() for q in d.iterdir())]
    else:
        parent = out.parent if out.parent.is_dir() else None
        cands = [q for q in parent.iterdir() if q.name.startswith(f".{out.name}.")] if parent else []
    removed = []
    for q in cands:
        if _STALE_TMP.match(q.name) and q.is_file():
            try:
                q.unlink()
                removed.append(q)
            except OSError:
                pass
    return removed


@contextmanager
def output_lock(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``<out>.lock`` (fcntl.flock, non-blocking) while writing ``out``: a second process on the same output
    stops at once with a one-line DataError instead of doing the work twice. Stale temporary files of a killed run
    are removed once the lock is held; the lock file is removed on exit."""
    out = Path(out)
    lock = lock_path(out)
    fd = -1
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise DataError(
                    [f"{out}: {who} is writing it (lock {lock}); wait for it to finish or choose another output"]
                ) from None
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                current = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
            fd = -1
        else:
            raise DataError([f"{out}: cannot take the lock {lock} (it keeps changing)"])
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        raise _write_error(lock, e) from None
    try:
        for q in clean_stale_tmp(out):
            print(f"note: removed {q} (a temporary file left by an interrupted run)", file=sys.stderr)
        yield lock
    finally:
        with suppress(OSError):
            lock.unlink(missing_ok=True)  # while still held: a waiting process re-checks the inode
        os.close(fd)
