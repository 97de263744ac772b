"""Rule retrieval for a data file: a retriever by method name, the top-k rules of each item, the retrieved-file
reader and the ``retrieve`` verb. The parts: ``query`` (what a question is about), ``retrievers`` (passages, BM25,
dense, hybrid), ``learned`` (the question -> rule classifier fused with BM25)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .data import Item, load_items
from .files import DataError, check_outputs, lock_path, output_lock, read_jsonl_file, write_jsonl
from .flags import DEFAULT_RETRIEVAL, flag
from .learned import LearnedRetriever
from .retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Passage,
    Retriever,
    default_embed,
    example_passages,
    rule_passages,
    top_docs,
)
from .rules import Rule, load_labels, load_rules

METHODS = ("bm25", "dense", "hybrid", "learned")


def make_retriever(
    method: str,
    rules: Sequence[Rule],
    examples: Sequence[Passage] = (),
    embed: Callable[[Sequence[str], str], Any] | None = None,
) -> Retriever:
    """A retriever of ``method``: bm25 or dense over the rules' passages plus the example passages, hybrid,
    the reciprocal rank fusion of BM25 and dense, each over the rules and (when given) over the examples apart, or
    learned (``LearnedRetriever``: needs example passages made by ``example_passages``)."""
    embed = embed or default_embed
    rule_ps, example_ps = rule_passages(rules), list(examples)
    if method == "bm25":
        return BM25Retriever(rule_ps + example_ps)
    if method == "dense":
        return DenseRetriever(rule_ps + example_ps, embed)
    if method == "hybrid":
        parts: list[Retriever] = [BM25Retriever(rule_ps), DenseRetriever(rule_ps, embed)]
        if example_ps:
            parts += [BM25Retriever(example_ps), DenseRetriever(example_ps, embed)]
        return HybridRetriever(parts)
    if method == "learned":
        return LearnedRetriever(rules, example_ps)
    raise DataError([f"unknown retrieval method {method!r} (expected one of {', '.join(METHODS)})"])


def retrieve(
    items: Sequence[Item],
    rules: Sequence[Rule],
    method: str = "bm25",
    k: int = 10,
    examples: Sequence[Passage] = (),
    embed: Callable[[Sequence[str], str], Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per item: {'id', 'rule_ids', 'scores'}; an item never sees its own example passage (nor, with
    ``learned``, a classifier trained on its own label)."""
    retriever = make_retriever(method, rules, examples, embed)
    hits = [top_docs(s, k) for s in retriever.score_items(items)]
    return [
        {"id": it.id, "rule_ids": [d for d, _ in h], "scores": [round(s, 6) for _, s in h]}
        for it, h in zip(items, hits, strict=True)
    ]


def load_retrieved(path: str | Path) -> dict[str, list[str]]:
    """item id -> retrieved rule ids, from a retrieve output file, read strictly (the file is never changed)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for n, row in enumerate(read_jsonl_file(path), 1):
        ids = row.get("rule_ids") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(ids, list):
            raise DataError([f"{path}: row {n}: expected {{'id': str, 'rule_ids': [str, ...]}}"])
        if not all(isinstance(r, str) for r in ids):
            raise DataError([f"{path}: row {n} (id {row['id']!r}): 'rule_ids' must hold strings"])
        out[row["id"]] = list(ids)
    return out


# ------------------------------------------------------------------------------------------------------------ CLI


def retrieve_command(argv: list[str]) -> int:
    """``malpyeong-grpo retrieve``: the top-k rules for each item of a data file, one JSONL row per item."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo retrieve", description=retrieve_command.__doc__)
    ap.add_argument("--rules", required=True, help="rules.jsonl (from `malpyeong-grpo rules`) or the reference .docx")
    ap.add_argument("--data", required=True, help="items to retrieve for (official JSON or JSONL)")
    ap.add_argument(
        "--method", choices=METHODS, default=DEFAULT_RETRIEVAL, help=f"learned needs --examples ({DEFAULT_RETRIEVAL})"
    )
    ap.add_argument("--k", type=int, default=10, help="rules per item (default 10)")
    ap.add_argument("--examples", help="labelled items (the training split) added as passages of their gold rule")
    ap.add_argument(*flag("example_labels"), help="labels of --examples (from `malpyeong-grpo label`)")
    ap.add_argument("--out", required=True, help="output JSONL: {id, rule_ids, scores} per item")
    ap.add_argument(
        *flag("max_chars"), type=int, help="longest question accepted (default 4000): Mecab slows down fast"
    )
    args = ap.parse_args(argv)
    if args.k < 1:
        raise DataError([f"--k must be at least 1, got {args.k}"])
    if args.max_chars is not None and args.max_chars < 1:
        raise DataError([f"--max-chars must be at least 1, got {args.max_chars}"])
    if bool(args.examples) != bool(args.example_labels):
        raise DataError(["--examples and --example-labels go together"])
    if args.method == "learned" and not args.examples:
        raise DataError(["--method learned needs --examples and --example-labels (it learns from labelled items)"])
    inputs = [
        ("--rules", args.rules),
        ("--data", args.data),
        ("--examples", args.examples),
        ("--example-labels", args.example_labels),
    ]
    check_outputs(inputs, [("--out", args.out), ("its lock", lock_path(args.out))])
    with output_lock(args.out):
        rules = load_rules(args.rules)
        items = load_items(args.data, max_chars=args.max_chars)
        examples: list[Passage] = []
        if args.examples:
            labelled = load_items(args.examples, require_answer=True, max_chars=args.max_chars)
            examples = example_passages(labelled, load_labels(args.example_labels))
        rows = retrieve(items, rules, args.method, args.k, examples)
        write_jsonl(args.out, rows)
    print(f"{len(rows)} items, top {args.k} by {args.method} -> {args.out}", file=sys.stderr)
    return 0
