"""``malpyeong-grpo score``: a prediction file scored against a gold file as the competition scores it (the
metrics of ``metrics.score``), printed as a leaderboard table, with the per-item scores optionally in a JSON file."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from .data import load_items
from .files import DataError, check_outputs, lock_path, output_lock, write_json
from .flags import flag
from .metrics import (
    BERTSCORE_OFFICIAL,
    BLEURT_OFFICIAL,
    ENV_BERTSCORE,
    ENV_BLEURT,
    ENV_THREADS,
    STANDIN_NAMES,
    get_suite,
    id_list,
    metric_name,
    score,
)

COLUMNS = [  # (official result key, header) in leaderboard order
    ("final", "final"),
    ("descriptive_avg", "descriptive avg"),
    ("exact_match", "EM"),
    ("bleurt", "BLEURT"),
    ("bertscore", "BERTScore"),
    ("rouge_1", "ROUGE-1"),
]
STANDIN_HEADERS = {
    "final_standin": "final stand-in*",
    "descriptive_avg_standin": "descriptive avg stand-in*",
    "bleurt_proxy": "BLEURT proxy*",
    "bertscore_standin": "BERTScore stand-in*",
}


def render_table(result: dict[str, Any]) -> Any:
    """A rich table of a ``score`` result (x100, leaderboard columns; a stand-in's column under its own name)."""
    from rich.table import Table

    table = Table(title=f"{result['n_items']} items, {result['n_reason_pairs']} with reasons on both sides")
    keys = [metric_name(k, result["encoders"]) if k in STANDIN_NAMES else k for k, _ in COLUMNS]
    for key, (_, header) in zip(keys, COLUMNS, strict=True):
        table.add_column(STANDIN_HEADERS.get(key, header), justify="right")
    table.add_row(*(f"{100 * result[k]:.2f}" for k in keys))
    return table


def score_command(argv: list[str]) -> int:
    """``malpyeong-grpo score --pred P --gold G [--out scores.json]``: score a prediction file as the competition."""
    parser = argparse.ArgumentParser(prog="malpyeong-grpo score", description=score_command.__doc__)
    parser.add_argument("--pred", required=True, help="predictions: official JSON list (or JSONL) with output.answer")
    parser.add_argument("--gold", required=True, help="gold answers in the same schema (e.g. the dev split)")
    parser.add_argument("--out", help="write the scores (with per-item scores under 'items') to this JSON file")
    parser.add_argument(*flag("bertscore_model"), help=f"local {BERTSCORE_OFFICIAL} folder (or ${ENV_BERTSCORE})")
    parser.add_argument(*flag("bleurt_model"), help=f"local {BLEURT_OFFICIAL} folder (or ${ENV_BLEURT})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument(*flag("batch_size"), type=int, default=64)
    parser.add_argument(
        "--threads", type=int, help=f"torch CPU threads for the encoders (default: 1 on CPU; or ${ENV_THREADS})"
    )
    parser.add_argument(
        *flag("max_chars"), type=int, help="longest answer/question accepted (default: $MALPYEONG_MAX_CHARS or 4000)"
    )
    args = parser.parse_args(argv)
    bad = [f"--{k.replace('_', '-')} must be at least 1, got {v}" for k, v in vars(args).items()
           if k in ("batch_size", "threads", "max_chars") and v is not None and v < 1]  # fmt: skip
    if bad:
        raise DataError(bad)
    outputs = [("--out", args.out), ("its lock", lock_path(args.out))] if args.out else []
    check_outputs([("--pred", args.pred), ("--gold", args.gold)], outputs)  # before any work
    with output_lock(args.out) if args.out else contextlib.nullcontext():
        return _score_files(args)


def _score_files(args: argparse.Namespace) -> int:
    """score_command's work (under the --out lock)."""
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the note and the table
    gold_items = load_items(args.gold, require_answer=True, max_chars=args.max_chars)  # a blank gold is an error
    pred_items = load_items(args.pred, require_answer=True, max_chars=args.max_chars, blank_answer_ok=True)
    gold_ids = {it.id for it in gold_items}
    missing = [it.id for it in gold_items if it.id not in {p.id for p in pred_items}]
    extra = [it.id for it in pred_items if it.id not in gold_ids]
    problems = [f"{args.pred}: no prediction for {len(missing)} id(s) of {args.gold}: {id_list(missing)}"] * bool(
        missing
    )
    problems += [f"{args.pred}: {len(extra)} id(s) are not in {args.gold}: {id_list(extra)}"] * bool(extra)
    if problems:
        raise DataError(problems)
    suite = get_suite(args.bertscore_model, args.bleurt_model, args.device, args.batch_size, args.threads)
    for note in suite.notes:
        print(f"note: {note}", file=sys.stderr)
    result = score(
        {it.id: it.answer for it in pred_items}, {it.id: it.answer for it in gold_items}, suite, per_item=True
    )
    out = Console() if sys.stdout.isatty() else Console(width=120)  # piped: wide enough for the headers
    out.print(render_table(result))
    for name, info in result["encoders"].items():
        out.print(f"{name}: {info['label']} ({info['path']})", highlight=False, markup=False, soft_wrap=True)
    if not result["final_official"]:
        out.print("* computed with stand-in encoders: not the official metric / final score", soft_wrap=True)
    summary = {k: v for k, v in result.items() if k != "items"}
    if args.out:
        write_json(args.out, result)
        out.print(f"scores written to {args.out}", highlight=False, soft_wrap=True)
    else:
        import json

        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return 0
