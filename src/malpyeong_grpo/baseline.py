"""A baseline that uses no model (``malpyeong-grpo baseline``): each item is answered from the training items whose
questions are nearest by BM25 (``shots.ShotSelector``): for 선택형, the option that the k nearest items' gold
sentences vote for (closer neighbours weigh more; the first option when none votes); for 교정형, the sentence as
asked (no correction); the reason is the nearest item's reason. Any trained model should beat it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .answer import format_answer, parse_answer
from .data import Item, dev_split_problem, load_items
from .files import DataError, check_outputs, output_lock, write_json
from .flags import flag
from .predict import submission
from .repair import candidates, source_sentence
from .shots import ShotSelector


def _vote(item: Item, neighbours: Sequence[Item]) -> str | None:
    """The candidate sentence whose own words the neighbours' gold sentences use most (weight 1 / rank)."""
    cands = candidates(item)
    if not cands:
        return None
    words = [set(c.split()) for c in cands]
    distinct = [w - set.intersection(*words) for w in words]  # what only this option's sentence says
    scores = [0.0] * len(cands)
    for rank, n in enumerate(neighbours, 1):
        gold = parse_answer(n.answer or "").sentence
        for i, d in enumerate(distinct):
            if d and any(w in gold for w in d):
                scores[i] += 1.0 / rank
    return cands[max(range(len(cands)), key=lambda i: (scores[i], -i))]


def nearest_answers(items: Sequence[Item], pool: Sequence[Item], k: int = 5) -> list[str]:
    """One answer per item in the official form, from its k nearest training items (never itself)."""
    selector = ShotSelector(pool, "similar")
    out = []
    for item in items:
        neighbours = [p for p, _ in selector.ranked(item)[:k]]
        reason = parse_answer(neighbours[0].answer or "").reason if neighbours else ""
        sentence = _vote(item, neighbours) if item.question_type == "선택형" else None
        sentence = sentence or source_sentence(item) or (candidates(item) or [""])[0]
        out.append(format_answer(sentence, reason))
    return out


def baseline_command(argv: list[str]) -> int:
    """``malpyeong-grpo baseline --data FILE --train_file FILE --out FILE [--k 5]``."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo baseline", description=__doc__)
    ap.add_argument("--data", required=True, help="items to answer (official schema)")
    ap.add_argument(*flag("train_file"), required=True, help="answered training items (never dev)")
    ap.add_argument("--out", required=True, help="submission file to write")
    ap.add_argument("--k", type=int, default=5, help="nearest training items that vote (default 5)")
    args = ap.parse_args(argv)
    if args.k < 1:
        raise DataError([f"--k must be at least 1, got {args.k}"])
    dev = dev_split_problem(args.train_file, f"{args.train_file}: --train_file", "the baseline never learns from dev")
    if dev:
        raise DataError([dev])
    check_outputs([("--data", args.data), ("--train_file", args.train_file)], [("--out", args.out)])
    with output_lock(args.out):
        items = load_items(args.data)
        answers = nearest_answers(items, load_items(args.train_file, require_answer=True), args.k)
        write_json(args.out, submission(items, answers))
    print(f"wrote {len(answers)} answers to {args.out}")
    return 0
