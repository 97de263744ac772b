"""Task data: typed records, strict item loading with one-line errors, the official splits, the dev-split refusal,
the sample set. (Generic file reading and writing lives in ``files``.)"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from .files import DataError, parse_json, parse_jsonl, read_text, write_json

QUESTION_TYPES = ("선택형", "교정형")
SPLIT_FILES = {
    "train": "korean_language_rag_V1.0_train.json",
    "dev": "korean_language_rag_V1.0_dev.json",
    "test": "korean_language_rag_V1.0_test.json",
}
# Longest question or answer accepted (characters): far above every official item (question 158, answer 342), far
# below what makes tokenisation or Mecab run away (a 1M-character question asked for about 1 TB in `predict`).
MAX_CHARS_ENV = "MALPYEONG_MAX_CHARS"
DEFAULT_MAX_CHARS = 4000


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


def _check_item(
    path: Path, pos: int, raw: Any, require_answer: bool, max_chars: int, blank_answer_ok: bool
) -> tuple[Item | None, list[str]]:
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
    if require_answer and not blank_answer_ok and isinstance(answer, str) and not answer.strip():
        problems.append(f"{where}: empty gold answer")
    for key, val in (("input.question", question), ("output.answer", answer)):
        if isinstance(val, str) and len(val) > max_chars:
            problems.append(
                f"{where}: '{key}' is {len(val):,} characters, over the limit of {max_chars:,} "
                f"(--max_chars or ${MAX_CHARS_ENV} raises it)"
            )
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
    text = read_text(path)
    if path.suffix == ".jsonl":
        return parse_jsonl(path, text)
    data = parse_json(path, text)
    if not isinstance(data, list):
        raise DataError([f"{path}: expected a JSON list of items, got {type(data).__name__}"])
    return data


def max_chars_limit(value: int | None = None) -> int:
    """The question/answer length limit: ``value``, else ``$MALPYEONG_MAX_CHARS``, else DEFAULT_MAX_CHARS."""
    if value is None:
        env = os.environ.get(MAX_CHARS_ENV, "").strip()
        if not env:
            return DEFAULT_MAX_CHARS
        try:
            value = int(env)
        except ValueError:
            raise DataError([f"${MAX_CHARS_ENV}: expected a whole number of characters, got {env!r}"]) from None
        if value < 1:
            raise DataError([f"${MAX_CHARS_ENV}: must be at least 1, got {value}"])
        return value
    if value < 1:
        raise DataError([f"--max_chars must be at least 1, got {value}"])
    return value


def load_items(
    path: str | os.PathLike[str],
    require_answer: bool = False,
    *,
    max_chars: int | None = None,
    blank_answer_ok: bool = False,
) -> list[Item]:
    """Read an official JSON list (or JSONL) file into checked items; raise DataError listing every problem.

    A question or answer longer than ``max_chars`` (default :func:`max_chars_limit`) is refused, before any
    tokenisation. With ``require_answer`` the answers are gold answers and a blank one is an error, unless
    ``blank_answer_ok`` (a prediction file, where an empty answer is a legitimate, zero-scoring answer)."""
    path = Path(path)
    limit = max_chars_limit(max_chars)
    raws = _read_raw(path)
    items: list[Item] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for pos, raw in enumerate(raws):
        item, errs = _check_item(path, pos, raw, require_answer, limit, blank_answer_ok)
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


def dev_split_problem(path: str | os.PathLike[str] | None, subject: str, consequence: str) -> str | None:
    """The one refusal of the dev split (the evaluation split) where items are learnt from (training data, few-shot
    examples, the baseline's neighbours): ``"<subject> is the dev split (the evaluation split); <consequence>"`` when
    ``path`` names the official dev file, else None."""
    if path is None or Path(path).name != SPLIT_FILES["dev"]:
        return None
    return f"{subject} is the dev split (the evaluation split); {consequence}"


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


def write_items(path: str | os.PathLike[str], items: Iterable[Item]) -> None:
    """Atomically write items in the official schema."""
    write_json(path, [it.to_json() for it in items])
