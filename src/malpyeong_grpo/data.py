"""Task data: typed records, strict loading with one-line errors, atomic writing, the sample set."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

QUESTION_TYPES = ("선택형", "교정형")
SPLIT_FILES = {
    "train": "korean_language_rag_V1.0_train.json",
    "dev": "korean_language_rag_V1.0_dev.json",
    "test": "korean_language_rag_V1.0_test.json",
}


class DataError(Exception):
    """Bad input. ``problems`` holds one line per problem, each naming the file, the item and what is wrong."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Item:
    """One task item: ``answer`` is None for unanswered (test) items."""

    id: str
    question_type: str
    question: str
    answer: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The item in the official schema."""
        out: dict[str, Any] = {
            "id": self.id,
            "input": {"question_type": self.question_type, "question": self.question},
        }
        if self.answer is not None:
            out["output"] = {"answer": self.answer}
        return out


def _where(path: Path, pos: int, raw: Any) -> str:
    rid = raw.get("id") if isinstance(raw, dict) else None
    return f"{path}: item {pos}" + (f" (id {rid!r})" if isinstance(rid, str | int) else "")


def _check_item(path: Path, pos: int, raw: Any, require_answer: bool) -> tuple[Item | None, list[str]]:
    where = _where(path, pos, raw)
    if not isinstance(raw, dict):
        return None, [f"{where}: expected an object, got {type(raw).__name__}"]
    problems: list[str] = []
    rid = raw.get("id")
    if "id" not in raw:
        problems.append(f"{where}: missing key 'id'")
    elif not isinstance(rid, str) or not rid.strip():
        problems.append(f"{where}: 'id' must be a non-empty string, got {rid!r}")
    inp = raw.get("input")
    qtype = question = None
    if "input" not in raw:
        problems.append(f"{where}: missing key 'input'")
    elif not isinstance(inp, dict):
        problems.append(f"{where}: 'input' must be an object, got {type(inp).__name__}")
    else:
        qtype, question = inp.get("question_type"), inp.get("question")
        for key, val in (("question_type", qtype), ("question", question)):
            if key not in inp:
                problems.append(f"{where}: missing key 'input.{key}'")
            elif not isinstance(val, str):
                problems.append(f"{where}: 'input.{key}' must be a string, got {type(val).__name__}")
        if isinstance(qtype, str) and qtype not in QUESTION_TYPES:
            problems.append(f"{where}: unknown question_type {qtype!r} (expected 선택형 or 교정형)")
        if isinstance(question, str) and not question.strip():
            problems.append(f"{where}: empty question")
        for key, val in (("question_type", qtype), ("question", question)):
            if isinstance(val, str) and not _encodable(val):
                problems.append(f"{where}: 'input.{key}' holds a lone surrogate (not encodable as UTF-8)")
    answer = None
    out = raw.get("output")
    if "output" in raw and out is not None:
        if not isinstance(out, dict):
            problems.append(f"{where}: 'output' must be an object, got {type(out).__name__}")
        elif "answer" in out:
            answer = out["answer"]
            if not isinstance(answer, str):
                problems.append(f"{where}: 'output.answer' must be a string, got {type(answer).__name__}")
                answer = None
    if isinstance(answer, str) and not _encodable(answer):
        problems.append(f"{where}: 'output.answer' holds a lone surrogate (not encodable as UTF-8)")
    if isinstance(rid, str) and not _encodable(rid):
        problems.append(f"{where}: 'id' holds a lone surrogate (not encodable as UTF-8)")
    if require_answer and answer is None and not any("output" in p for p in problems):
        problems.append(f"{where}: missing key 'output.answer'")
    if problems:
        return None, problems
    return Item(id=rid, question_type=qtype, question=question, answer=answer), []


def _encodable(text: str) -> bool:
    """False for strings holding lone surrogates (JSON allows the escape ``\\ud800``; UTF-8 cannot hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_raw(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError([f"{path}: file not found"]) from None
    except UnicodeDecodeError as e:
        raise DataError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    except OSError as e:
        raise DataError([f"{path}: cannot read ({e.strerror})"]) from None
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a string
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except (ValueError, RecursionError) as e:  # ValueError: also integers beyond Python's digit limit
                    raise DataError([f"{path}: line {lineno}: not JSON ({_json_reason(e)})"]) from None
        return rows
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:  # ValueError: also integers beyond Python's digit limit
        raise DataError([f"{path}: not JSON ({_json_reason(e)})"]) from None
    if not isinstance(data, list):
        raise DataError([f"{path}: expected a JSON list of items, got {type(data).__name__}"])
    return data


def _json_reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"{e.msg} at line {e.lineno} column {e.colno}"
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split())[:200]


def load_items(path: str | os.PathLike[str], require_answer: bool = False) -> list[Item]:
    """Read an official JSON list (or JSONL) file into checked items; raise DataError listing every problem."""
    path = Path(path)
    raws = _read_raw(path)
    items: list[Item] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for pos, raw in enumerate(raws):
        item, errs = _check_item(path, pos, raw, require_answer)
        problems += errs
        rid = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rid, str) and rid.strip():  # duplicates count even when an item has other problems
            if rid in seen:
                problems.append(f"{path}: item {pos} (id {rid!r}): duplicate id (first at item {seen[rid]})")
                continue
            seen[rid] = pos
        if item is not None:
            items.append(item)
    if not raws:
        problems.append(f"{path}: no items")
    if problems:
        raise DataError(problems)
    return items


def split_path(name: str, data_dir: str | os.PathLike[str]) -> Path:
    """Path of an official split (train/dev/test) in ``data_dir``."""
    return Path(data_dir) / SPLIT_FILES[name]


def default_data_dir() -> Path | None:
    """``$MALPYEONG_DATA_DIR`` or ``../shared/data`` when it holds the official files, else None."""
    for cand in (os.environ.get("MALPYEONG_DATA_DIR"), "../shared/data"):
        if cand and (Path(cand) / SPLIT_FILES["train"]).is_file():
            return Path(cand)
    return None


def sample_items() -> list[Item]:
    """The project's own small sample set (official schema, both question types, written for this project)."""
    path = files("malpyeong_grpo").joinpath("sample_data.json")
    return load_items(Path(str(path)), require_answer=True)


def holdout_split(items: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Deterministic (train, validation) split of the training items, stratified by question type."""
    import random

    rng = random.Random(seed)
    train: list[Item] = []
    val: list[Item] = []
    for qtype in QUESTION_TYPES:
        group = [it for it in items if it.question_type == qtype]
        rng.shuffle(group)
        n_val = round(len(group) * fraction)
        val += group[:n_val]
        train += group[n_val:]
    key = {it.id: i for i, it in enumerate(items)}
    return sorted(train, key=lambda it: key[it.id]), sorted(val, key=lambda it: key[it.id])


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file owner-only; give it the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as pretty UTF-8 JSON."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_items(path: str | os.PathLike[str], items: Iterable[Item]) -> None:
    """Atomically write items in the official schema."""
    write_json(path, [it.to_json() for it in items])


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL cache; a torn last line (an interrupted append) is cut off, any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # an interrupted append left a torn last line (maybe mid-character): drop it
        data = data[: data.rfind(b"\n") + 1]
        with path.open("r+b") as f:
            f.truncate(len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    rows = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (ValueError, RecursionError):
            raise DataError([f"{path}: line {lineno}: not JSON"]) from None
    return rows


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one row to a JSONL cache and flush it to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
