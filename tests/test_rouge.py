"""The official ROUGE-1: py-rouge's preprocessing with Mecab morphemes, hand-computed values, the 1000-word limit,
and equality with py-rouge's algorithm written out on perturbed training reasons."""

from __future__ import annotations

from collections import Counter

import pytest

from malpyeong_grpo.data import load_items, split_path
from malpyeong_grpo.rouge import morphs, rouge1_f, unigram_f
from malpyeong_grpo.text import mecab


def test_morphs_official_preprocessing():
    assert morphs("ABC-def, 123!") == ["abc", "def", "123"]  # lowercased, punctuation -> space
    assert morphs("사과를 먹었다.") == ["사과", "를", "먹", "었", "다"]
    assert morphs("사과를 먹는다.") == ["사과", "를", "먹", "는다"]
    assert morphs("'ㄷ'은 ‘ㄹ’로") == ["은", "로"]  # bare jamo and quotes are outside [A-Za-z0-9가-힣]
    assert morphs("") == [] and morphs(" ... ") == []


def test_rouge1_hand_computed():
    # hyp a a a b / ref a b b: clipped overlap min(3,1)+min(1,2)=2, P=2/4, R=2/3, F=PR/(0.5P+0.5R)=4/7
    assert rouge1_f("a a a b", "a b b") == pytest.approx(4 / 7, abs=1e-15)
    # 사과/를/먹/었/다 vs 사과/를/먹/는다: overlap 3, P=3/5, R=3/4, F=0.45/0.675=2/3
    assert rouge1_f("사과를 먹었다.", "사과를 먹는다.") == pytest.approx(2 / 3, abs=1e-15)
    assert rouge1_f("X y", "x Y") == 1.0  # case-insensitive
    assert rouge1_f("", "a") == 0.0 and rouge1_f("a", "") == 0.0 and rouge1_f("b", "a") == 0.0


def test_rouge1_length_limit_applies_before_tokenisation():
    # the first 1000 whitespace words are kept (py-rouge length_limit=1000, 'words'), then Mecab splits them
    pred = "가 " * 1000 + "사과를"
    assert rouge1_f(pred, "사과를") == 0.0
    assert rouge1_f("가 " * 999 + "사과를", "사과를") == pytest.approx(2 * (2 / 1001) / (2 / 1001 + 1))
    assert rouge1_f("사과를\n먹었다", "사과를 먹었다") == 1.0  # lines are joined with spaces


def _py_rouge_reference(hyp: str, ref: str) -> float:
    """py-rouge's rouge-n path (Korean variant) written out: sentences split at '\\n', 1000-word limit, lowercase,
    non-[A-Za-z0-9가-힣] -> space, Mecab morphemes joined and re-split, clipped n-gram counts, alpha-F."""
    import itertools
    import re

    def prep(summary: str) -> list[str]:
        sentences = summary.split("\n")
        summary = " ".join(" ".join(sentences).split()[:1000])
        summary = re.sub("[^A-Za-z0-9가-힣]", " ", summary.lower()).strip()
        joined = " ".join(mecab().morphs(summary))
        return list(itertools.chain(*[s.split() for s in [joined]]))

    h, r = prep(hyp), prep(ref)
    hc, rc = Counter(h), Counter(r)
    overlap = sum(min(hc[g], rc[g]) for g in set(hc).intersection(set(rc)))
    p = 0.0 if len(h) == 0 else overlap / len(h)
    rr = 0.0 if len(r) == 0 else overlap / len(r)
    return 0.0 if (rr == 0.0 or p == 0.0) else p * rr / ((1 - 0.5) * p + 0.5 * rr)


def test_rouge1_equals_py_rouge_on_perturbed_golds(data_dir):
    import random

    from malpyeong_grpo.answer import parse_answer

    reasons = [parse_answer(it.answer).reason for it in load_items(split_path("train", data_dir), True)][:80]
    rng = random.Random(0)
    for gold in reasons:
        words = gold.split()
        rng.shuffle(words)
        for pred in (" ".join(words[: len(words) // 2]), gold.upper(), "\n".join(words), " ".join([gold] * 30)):
            assert abs(rouge1_f(pred, gold) - _py_rouge_reference(pred, gold)) <= 1e-12


def test_unigram_f_alpha():
    # P = 1/2, R = 1, F = PR / ((1 - alpha) P + alpha R): alpha 0.5 -> 2/3, alpha 1 -> P, alpha 0 -> R
    assert unigram_f(["a", "b"], ["a"]) == pytest.approx(2 / 3)
    assert unigram_f(["a", "b"], ["a"], alpha=1.0) == pytest.approx(0.5)
    assert unigram_f(["a", "b"], ["a"], alpha=0.0) == pytest.approx(1.0)
