"""The rule corpus: the official reference document parsed into one record per ``<분류 - 규정>`` entry."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .data import default_data_dir
from .files import (
    DataError,
    check_input_file,
    check_outputs,
    json_reason,
    lock_path,
    output_lock,
    read_jsonl_file,
    read_text,
    write_jsonl,
)

DOCX_NAME = "reference_rules.docx"
_HEADER = re.compile(r"^<\s*(?P<category>[^<>]+?)\s+-\s+(?P<rest>[^<>]+?)\s*>$")
_SOURCES = ("한글 맞춤법", "표준어 사정 원칙", "외래어 표기법", "문장 부호")
_CLAUSE = re.compile(r"^(다만|\[붙임|￭|\*|\(참고\))")
# Longest rule text accepted from rules.jsonl (characters): the reference document's longest is about 2,100; Mecab's
# time grows faster than linearly with the text, so a runaway row is refused instead of stalling retrieval.
MAX_RULE_CHARS = 20_000


@dataclass
class Rule:
    """One entry of the reference document.

    ``id`` is the entry's name without the category (e.g. '한글 맞춤법 제42항', '문장 부호 쉼표 규정'); ``text`` is
    the whole body in document order (statements, sub-items, clauses and example lines); ``examples`` are the example
    lines (the document's '- ' lines, without the dash); ``clauses`` are the sub-clauses (다만, [붙임], ￭ notes).
    """

    id: str
    category: str
    source: str
    article: str
    title: str
    text: str
    examples: list[str] = field(default_factory=list)
    clauses: list[str] = field(default_factory=list)

    @property
    def statements(self) -> list[str]:
        """The body lines that are not examples: what the rule says."""
        return [line for line in self.text.splitlines() if not line.startswith("- ")]


def rule_segments(rule: Rule) -> list[str]:
    """The rule's text cut into segments, the one segmentation of rule text (retrieval passages, lexical labels):
    each statement line, then each statement with its example lines ('- ' lines, dash dropped) joined on, distinct,
    in that order."""
    units: list[str] = []
    for line in rule.text.splitlines():
        if line.startswith("- ") and units:
            units[-1] += " " + line[2:]
        else:
            units.append(line)
    return list(dict.fromkeys(rule.statements + units))


def _clean(line: str) -> str:
    # the document carries CSV-style doubled quotes (""...""); one quote is meant
    return re.sub(r"\s+", " ", line.replace('""', '"')).strip()


def _split_name(rest: str) -> tuple[str, str]:
    """(source, article) of an entry name such as '한글 맞춤법 제42항' or '문장 부호 가운뎃점 규정'."""
    for source in _SOURCES:
        if rest.startswith(source + " "):
            return source, rest[len(source) :].strip()
    m = re.match(r"^(.+?)\s+(제\s*\d.*)$", rest)
    return (m.group(1), m.group(2)) if m else (rest, "")


def _make_rule(where: str, header: str, lines: list[str]) -> Rule:
    m = _HEADER.match(header)
    assert m is not None
    category, rest = m.group("category").strip(), m.group("rest").strip()
    if not lines:
        raise DataError([f"{where}: entry {header!r} has no text"])
    source, article = _split_name(rest)
    is_mark = source == "문장 부호" and article.endswith(" 규정")
    title = article[: -len(" 규정")] if is_mark else lines[0]  # a mark's name, else the article's first statement
    return Rule(
        id=rest,
        category=category,
        source=source,
        article=article,
        title=title,
        text="\n".join(lines),
        examples=[line[2:].strip() for line in lines if line.startswith("- ")],
        clauses=[line for line in lines if _CLAUSE.match(line)],
    )


def parse_docx(path: str | os.PathLike[str]) -> list[Rule]:
    """Parse the reference rule document; a damaged, foreign or malformed .docx raises DataError naming the file."""
    path = check_input_file(path)  # a folder or FIFO is named as such (python-docx would wait on a FIFO)
    try:
        import docx

        paragraphs = [p.text for p in docx.Document(str(path)).paragraphs]
    except Exception as e:  # python-docx raises many kinds on a broken package
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError([f"{path}: not a readable .docx file ({reason})"]) from None
    rules: list[Rule] = []
    problems: list[str] = []
    header: str | None = None
    header_par = 0
    body: list[str] = []

    def flush() -> None:
        if header is None:
            return
        try:
            rules.append(_make_rule(f"{path}: paragraph {header_par}", header, body))
        except DataError as e:
            problems.extend(e.problems)

    for i, raw in enumerate(paragraphs):
        line = _clean(raw)
        if _HEADER.match(line):
            flush()
            header, header_par, body = line, i, []
        elif line and header is not None:
            body.append(line)
    flush()
    if not rules and not problems:
        raise DataError(
            [f"{path}: no rule entries headed '<분류 - 규정 제N항>' found (is this the reference document?)"]
        )
    seen: dict[str, int] = {}
    for n, rule in enumerate(rules):
        if rule.id in seen:
            problems.append(f"{path}: entry {n} {rule.id!r}: duplicate entry (first is entry {seen[rule.id]})")
        seen.setdefault(rule.id, n)
    if problems:
        raise DataError(problems)
    return rules


def write_rules(rules: list[Rule], path: str | os.PathLike[str]) -> None:
    """Atomically write rules as JSONL, one record per line."""
    write_jsonl(path, (asdict(r) for r in rules))


_FIELDS = {f.name: f for f in fields(Rule)}


def load_rules(path: str | os.PathLike[str]) -> list[Rule]:
    """Rules from a rules.jsonl file (or parsed straight from the reference .docx)."""
    path = Path(path)
    if path.suffix.lower() == ".docx":
        return parse_docx(path)
    text = read_text(path, missing=f"file not found (make it with: malpyeong-grpo rules --out {path})")
    rules: list[Rule] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a string
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:  # ValueError: also integers beyond Python's digit limit
            problems.append(f"{path}: line {lineno}: not JSON ({json_reason(e)})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{path}: line {lineno}: expected an object")
            continue
        missing = [k for k in _FIELDS if k not in row]
        bad = [
            k
            for k in ("id", "category", "source", "article", "title", "text")
            if k in row and not isinstance(row[k], str)
        ]
        bad += [
            k
            for k in ("examples", "clauses")
            if k in row and not (isinstance(row[k], list) and all(isinstance(x, str) for x in row[k]))
        ]
        if missing or bad:
            what = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"bad type of {', '.join(bad)}"] if bad else []
            )
            problems.append(f"{path}: line {lineno} (id {row.get('id')!r}): {'; '.join(what)}")
            continue
        if len(row["text"]) > MAX_RULE_CHARS:
            problems.append(
                f"{path}: line {lineno} (id {row['id']!r}): text is {len(row['text']):,} characters, over the limit "
                f"of {MAX_RULE_CHARS:,}"
            )
            continue
        rules.append(Rule(**{k: row[k] for k in _FIELDS}))
    if not rules and not problems:
        problems.append(f"{path}: no rules")
    ids = Counter(r.id for r in rules)
    problems += [f"{path}: duplicate rule id {i!r}" for i, n in ids.items() if n > 1]
    if problems:
        raise DataError(problems)
    return rules


def format_rule(rule: Rule, max_chars: int | None = None) -> str:
    """The rule as it goes into a prompt: '<id>: <body>'; past ``max_chars`` example lines are dropped first,
    then the text is cut at a line end (or mid-line as a last resort) and marked with '…'."""
    head = f"{rule.id}: "
    full = head + rule.text.replace("\n", " ")
    if max_chars is None or len(full) <= max_chars:
        return full
    lines = rule.statements or rule.text.splitlines()
    out = head
    for line in lines:
        cand = f"{out} {line}" if out != head else out + line
        if len(cand) + 1 > max_chars:
            break
        out = cand
    if out == head:
        out = (head + lines[0])[: max(max_chars - 1, 0)]
    return out + "…"


def load_labels(path: str | Path) -> dict[str, str]:
    """item id -> gold rule id, from a label file (JSONL rows with 'id' and 'rule_id'), read strictly: the user's
    file is never changed (a cut-off last line is an error, not dropped)."""
    path = Path(path)
    out: dict[str, str] = {}
    missing = f"file not found (make it with: malpyeong-grpo label --out {path})"
    for n, row in enumerate(read_jsonl_file(path, missing), 1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("rule_id"), str):
            raise DataError([f"{path}: row {n}: expected {{'id': str, 'rule_id': str, ...}}"])
        out[row["id"]] = row["rule_id"]
    return out


def default_docx() -> Path | None:
    """The reference document in the default data folder, when there is one."""
    data = default_data_dir()
    return data / DOCX_NAME if data and (data / DOCX_NAME).is_file() else None


def rules_command(argv: list[str]) -> int:
    """``malpyeong-grpo rules``: parse the reference .docx into rules.jsonl and print the counts per category."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo rules", description=rules_command.__doc__)
    ap.add_argument("--docx", help=f"the reference document (default: <data dir>/{DOCX_NAME})")
    ap.add_argument("--out", default="rules.jsonl", help="output JSONL (default: rules.jsonl)")
    args = ap.parse_args(argv)
    src = args.docx or default_docx()
    if src is None:
        raise DataError([f"--docx not given and no {DOCX_NAME} in the default data folder (../shared/data)"])
    check_outputs([("--docx", src)], [("--out", args.out), ("lock", lock_path(args.out))])
    with output_lock(args.out):
        rules = parse_docx(src)
        write_rules(rules, args.out)
    counts = Counter(r.category for r in rules)
    print(f"{len(rules)} rules -> {args.out}")
    for cat, n in counts.most_common():
        print(f"  {cat}: {n}")
    return 0
