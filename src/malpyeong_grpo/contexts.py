"""Prompt contexts: the rules shown with each item (the top-k retrieved, with the gold rule placed at a seeded
position when a gold-context label is known), as ``predict``, ``evaluate`` and ``train`` put them into prompts."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .data import Item
from .files import DataError
from .retrieval import load_retrieved, retrieve
from .retrievers import example_passages
from .rules import format_rule, load_labels, load_rules


@dataclass
class ItemContext:
    """The rule context of one item: formatted rule texts (in prompt order), their ids, and the gold rule."""

    texts: list[str]
    rule_ids: list[str]
    gold_rule_id: str | None
    gold_rule_text: str | None


def _item_rng(seed: int, item_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}:ctx:{item_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_contexts(
    items: Sequence[Item],
    rules_path: str | Path,
    retrieved_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    k: int = 3,
    include_gold: bool = True,
    seed: int = 0,
    method: str = "bm25",
    max_chars: int | None = 600,
    examples: Sequence[Item] = (),
) -> dict[str, ItemContext]:
    """Rule contexts for items: the top-k retrieved rules (from ``retrieved_path``, else retrieved now with
    ``method``; with ``examples`` and labels, the labelled ``examples`` are example passages too, as ``retrieve
    --examples`` does, and ``learned`` learns from them), formatted with ``format_rule(rule, max_chars)``. With
    ``include_gold`` and a gold label (from ``labels_path``) the gold rule is always among the k candidates (when
    retrieval missed it, it replaces the last one) and the candidates are shuffled by (seed, item id), so that the
    gold's place tells nothing."""
    rules = load_rules(rules_path)
    by_id = {r.id: r for r in rules}
    labels: dict[str, str] = {}
    if labels_path is not None:
        labels = load_labels(labels_path)
        unknown = sorted({g for g in labels.values() if g not in by_id})
        if unknown:
            raise DataError([f"{labels_path}: rule id {u!r} is not in {rules_path}" for u in unknown[:5]])
    if retrieved_path is not None:
        retrieved = load_retrieved(retrieved_path)
        missing = [it.id for it in items if it.id not in retrieved]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise DataError([f"{retrieved_path}: no retrieval for item ids {', '.join(missing[:5])}{more}"])
        bad = sorted({r for it in items for r in retrieved[it.id] if r not in by_id})
        if bad:
            raise DataError([f"{retrieved_path}: rule id {b!r} is not in {rules_path}" for b in bad[:5]])
    else:
        passages = example_passages(examples, labels) if examples and labels else []
        if method == "learned" and not passages:
            raise DataError(["retrieval method 'learned' needs labelled training examples (a labels file)"])
        retrieved = {row["id"]: row["rule_ids"] for row in retrieve(items, rules, method, k, passages)}
    out: dict[str, ItemContext] = {}
    for it in items:
        ids = list(dict.fromkeys(retrieved[it.id]))[:k]
        gold = labels.get(it.id)
        if include_gold and gold is not None and k > 0:
            if gold not in ids:
                if len(ids) >= k:
                    ids.pop()
                ids.append(gold)
            _item_rng(seed, it.id).shuffle(ids)  # retrieval ranks the gold high: its place must tell nothing
        out[it.id] = ItemContext(
            texts=[format_rule(by_id[r], max_chars) for r in ids],
            rule_ids=ids,
            gold_rule_id=gold,
            gold_rule_text=format_rule(by_id[gold], max_chars) if gold is not None else None,
        )
    return out
