"""The official ROUGE-1: py-rouge's preprocessing with Mecab morphemes, and the one ROUGE-1 F core (``unigram_f``,
weighted or not) that the scorer, the rewards and the lexical labeller share."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache

from .text import mecab

ROUGE_LENGTH_LIMIT = 1000  # words, applied before tokenisation (as the official py-rouge call)
ROUGE_ALPHA = 0.5
_NOT_ROUGE_CHAR = re.compile(r"[^A-Za-z0-9가-힣]")


@lru_cache(maxsize=1 << 16)
def _rouge_tokens(text: str) -> tuple[str, ...]:
    """py-rouge's ``_preprocess_summary_as_a_whole`` with the official Korean tokeniser: split at newlines, keep the
    first 1000 whitespace words, lowercase, non-[A-Za-z0-9가-힣] -> space, Mecab morphemes, re-split on spaces."""
    summary = " ".join(" ".join(text.split("\n")).split()[:ROUGE_LENGTH_LIMIT])
    summary = _NOT_ROUGE_CHAR.sub(" ", summary.lower()).strip()
    return tuple(" ".join(mecab().morphs(summary)).split()) if summary else ()


def morphs(text: str) -> list[str]:
    """The official ROUGE preprocessing: lowercase, every char outside ``[A-Za-z0-9가-힣]`` -> space, Mecab
    morphemes (python-mecab-ko with mecab-ko-dic). Memoised."""
    return list(_rouge_tokens(text))


def unigram_f(
    candidate: Sequence[str],
    reference: Sequence[str],
    weights: Mapping[str, float] | None = None,
    default: float = 1.0,
    alpha: float = ROUGE_ALPHA,
) -> float:
    """The one ROUGE-1 F of two token sequences: clipped unigram overlap, P = overlap / candidate tokens, R = overlap
    / reference tokens, F = P R / ((1 - alpha) P + alpha R); 0 when nothing overlaps (or a side is empty). With
    ``weights`` each token counts its weight (``default`` for a token not in it) in the overlap and both totals."""
    cand, ref = Counter(candidate), Counter(reference)

    def w(t: str) -> float:
        return 1 if weights is None else weights.get(t, default)

    overlap = sum(min(n, ref[t]) * w(t) for t, n in cand.items() if t in ref)
    if not overlap:
        return 0.0
    precision = overlap / sum(n * w(t) for t, n in cand.items())
    recall = overlap / sum(n * w(t) for t, n in ref.items())
    return precision * recall / ((1 - alpha) * precision + alpha * recall)


def rouge1_f(pred_reason: str, gold_reason: str) -> float:
    """Per-item ROUGE-1 F as py-rouge computes it (clipped unigram counts, alpha 0.5; 0 when a side is empty) on the
    official tokens (``morphs``): ``unigram_f`` of the two."""
    return unigram_f(_rouge_tokens(pred_reason), _rouge_tokens(gold_reason))
