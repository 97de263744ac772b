"""Few-shot demonstrations from the training split: random (same question type) or the most similar solved
questions by BM25 over Mecab morphemes of the quoted sentence and its options.

The item itself (same id or same question) is never its own example, so a training item sees only the others
(leave-one-out) and dev items see only training items. Selection is deterministic: ties go to the earlier pool item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .data import Item
from .prompts import can_show, select_shots
from .text import search_morphemes

SHOT_METHODS = ("random", "similar")
_QUOTED = re.compile(r'["“]([^"“”]+)["”]')
_OPTIONS = re.compile(r"\{([^{}]*)\}")
OPTION_WEIGHT = 2  # option morphemes count this many times in a query: they name the phenomenon asked about


def option_features(group: str) -> list[str]:
    """What an option group '{A/B}' contrasts: '<spacing>' when the options differ only in spaces, else the
    characters found in some options but not all (e.g. '로서/로써' -> '~서', '~써')."""
    options = [o.strip() for o in group.split("/")]
    if len({o.replace(" ", "") for o in options}) == 1:
        return ["<spacing>"]
    sets = [set(o.replace(" ", "")) for o in options]
    return sorted("~" + ch for ch in set.union(*sets) - set.intersection(*sets))


def query_tokens(item: Item) -> list[str]:
    """Search tokens of an item: Mecab morphemes of its quoted sentence(s) (the whole question when nothing is
    quoted) with options written out, plus the options' morphemes and contrast features OPTION_WEIGHT times more."""
    quoted = " ".join(_QUOTED.findall(item.question)) or item.question
    groups = _OPTIONS.findall(item.question)
    tokens = search_morphemes(_OPTIONS.sub(lambda m: " " + m.group(1).replace("/", " ") + " ", quoted))
    for group in groups:
        tokens += (search_morphemes(group.replace("/", " ")) + option_features(group)) * OPTION_WEIGHT
    return tokens


class ShotSelector:
    """Chooses k demonstrations for an item from ``pool`` (its answered items, same question type only)."""

    def __init__(self, pool: Sequence[Item], method: str = "random", seed: int = 0):
        if method not in SHOT_METHODS:
            raise ValueError(f"shot method must be one of {', '.join(SHOT_METHODS)}, got {method!r}")
        self.pool = [p for p in pool if p.answer]
        self.method = method
        self.seed = seed
        self._index: Any = None

    def _bm25(self) -> Any:
        if self._index is None:
            import bm25s

            self._index = bm25s.BM25()
            self._index.index([query_tokens(p) or ["∅"] for p in self.pool], show_progress=False)
        return self._index

    def ranked(self, item: Item) -> list[tuple[Item, float]]:
        """The eligible pool items with their BM25 scores, most similar first (ties: earlier pool item first)."""
        if not self.pool:
            return []
        import numpy as np

        scores = np.asarray(self._bm25().get_scores(query_tokens(item)))
        order = np.argsort(-scores, kind="stable")
        return [(self.pool[i], float(scores[i])) for i in order if can_show(self.pool[i], item)]

    def select(self, item: Item, k: int) -> list[Item]:
        """k examples for ``item``: random ones (``prompts.select_shots``), or the k most similar with the most
        similar placed last, next to the question."""
        if k <= 0:
            return []
        if self.method == "random":
            return select_shots(item, self.pool, k, self.seed)
        return [p for p, _ in self.ranked(item)[:k]][::-1]
