"""Parity with the official 2025 Korean RAG scorer (``evaluation_korean_contest_RAG_QA``).

The reference below is written out here from the official definitions of ``extract_answer_and_reason``,
``normalize_answer_text`` and ``calc_exact_match`` and from py-rouge's ROUGE-N path with the official Mecab
tokeniser. It shares no code with the project: no import of its answer parsing, tokenizer wrapper or ROUGE code.
The project's ``answer`` functions and ``metrics.score`` are what is under test.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from malpyeong_grpo.answer import exact_match, parse_answer
from malpyeong_grpo.metrics import MetricSuite, metric_name, score


# ---------------------------------------------------------------- the official reference, written out
def official_normalize_answer_text(text):
    text = text.replace('"', "").replace("'", "")
    text = text.strip()
    return text


def official_extract_answer_and_reason(text):
    split_patterns = ["가 옳다", "이 옳다"]
    for pattern in split_patterns:
        if pattern in text:
            split_idx = text.find(pattern) + len(pattern)
            answer = text[:split_idx].strip()
            reason = text[split_idx:].strip()
            reason = reason.lstrip("., ")
            return answer, reason
    return text.strip(), ""


def official_calc_exact_match(true_data, pred_data):
    correct = 0
    total = len(true_data)
    for true, pred in zip(true_data, pred_data):  # noqa: B905 - written as the official code
        acceptable_answers = true.split("#")
        if any(pred.strip() == ans.strip() for ans in acceptable_answers):
            correct += 1
    return correct / total if total > 0 else 0


def official_split(golds: list[str], preds: list[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """The per-item loop of ``evaluation_korean_contest_RAG_QA``: normalised answers and the reason pairs."""
    true_answers, pred_answers, true_reasons, pred_reasons = [], [], [], []
    for gold, pred in zip(golds, preds, strict=True):
        true_ans, true_reason = official_extract_answer_and_reason(gold)
        pred_ans, pred_reason = official_extract_answer_and_reason(pred)
        true_answers.append(official_normalize_answer_text(true_ans))
        pred_answers.append(official_normalize_answer_text(pred_ans))
        if true_reason and pred_reason:
            true_reasons.append(true_reason)
            pred_reasons.append(pred_reason)
    return true_answers, pred_answers, true_reasons, pred_reasons


@lru_cache(maxsize=1)
def _tagger():
    import mecab  # python-mecab-ko with mecab-ko-dic: the official tokeniser

    return mecab.MeCab()


def _rouge_preprocess(summary: str) -> list[str]:
    """py-rouge ``_preprocess_summary_as_a_whole`` (words length limit 1000) with the Korean character class and
    Mecab morphemes as the tokeniser, then ``_split_into_words``."""
    sentences = summary.split("\n")
    summary = " ".join(sentences)
    summary = " ".join(summary.split()[:1000])
    tokens = _tagger().morphs(re.sub("[^A-Za-z0-9가-힣]", " ", summary.lower()).strip())
    return list(itertools.chain(*[s.split() for s in [" ".join(tokens)]]))


def official_rouge_1(true: list[str], pred: list[str]) -> float:
    """py-rouge ``get_scores(pred, true)['rouge-1']['f']`` with apply_avg, alpha 0.5: per-pair F, averaged."""
    total = 0.0
    for hyp_text, ref_text in zip(pred, true, strict=True):
        hyp, ref = Counter(_rouge_preprocess(hyp_text)), Counter(_rouge_preprocess(ref_text))
        evaluated_count, reference_count = sum(hyp.values()), sum(ref.values())
        overlapping_count = sum(min(hyp[g], ref[g]) for g in hyp if g in ref)
        precision = 0.0 if evaluated_count == 0 else overlapping_count / float(evaluated_count)
        recall = 0.0 if reference_count == 0 else overlapping_count / float(reference_count)
        alpha = 0.5
        f = (
            0.0
            if (recall == 0.0 or precision == 0.0)
            else precision * recall / ((1 - alpha) * precision + alpha * recall)
        )
        total += f
    return total / len(pred) if len(pred) > 1 else total


BS, BL = 0.5, 0.25  # the learned metrics are fixed here: their parity is bert-score's / BLEURT's own (test_metrics)


def official_scores(golds: list[str], preds: list[str]) -> dict[str, float]:
    """``evaluation_korean_contest_RAG_QA`` with BERTScore and BLEURT fixed at BS and BL per pair."""
    true_answers, pred_answers, true_reasons, pred_reasons = official_split(golds, preds)
    scores = {"exact_match": official_calc_exact_match(true_answers, pred_answers), "rouge_1": 0, "bertscore": 0}
    scores |= {"bleurt": 0, "descriptive_avg": 0, "n_reason_pairs": len(true_reasons)}
    if true_reasons and pred_reasons:
        scores["rouge_1"] = official_rouge_1(true_reasons, pred_reasons)
        scores["bertscore"], scores["bleurt"] = BS, BL
        scores["descriptive_avg"] = (scores["rouge_1"] + scores["bertscore"] + scores["bleurt"]) / 3
    scores["final_score"] = (scores["exact_match"] + scores["descriptive_avg"]) / 2
    return scores


# ---------------------------------------------------------------- the project under test
class FixedSuite(MetricSuite):
    """The project's suite with the learned metrics fixed at BS / BL (marked official or stand-in)."""

    def __init__(self, official: bool):
        super().__init__(device="cpu")
        if official:
            from malpyeong_grpo.metrics import EncoderInfo

            self.encoders = {k: EncoderInfo(k, "/x", True, k) for k in ("bertscore", "bleurt")}

    def bertscore(self, preds, refs):
        return [BS] * len(preds)

    def bleurt(self, preds, refs):
        return [BL] * len(preds)


@pytest.fixture(scope="module")
def suites() -> dict[bool, FixedSuite]:
    return {True: FixedSuite(True), False: FixedSuite(False)}


def assert_parity(golds: list[str], preds: list[str], suite: FixedSuite) -> dict:
    """``metrics.score`` on (preds, golds) equals the official computation: EM exactly, reason pairs, ROUGE-1 and
    the aggregates to 1e-9; and item by item, ``answer``'s split and EM equal the official ones."""
    ids = [f"i{n}" for n in range(len(golds))]
    got = score(dict(zip(ids, preds, strict=True)), dict(zip(ids, golds, strict=True)), suite, per_item=True)
    ref = official_scores(golds, preds)
    assert got["exact_match"] == ref["exact_match"]
    assert got["n_reason_pairs"] == ref["n_reason_pairs"]
    assert got["rouge_1"] == pytest.approx(ref["rouge_1"], abs=1e-9)
    for key, off in (("bertscore", "bertscore"), ("bleurt", "bleurt"), ("descriptive_avg", "descriptive_avg")):
        assert got[metric_name(key, suite)] == pytest.approx(ref[off], abs=1e-9)
    assert got[metric_name("final", suite)] == pytest.approx(ref["final_score"], abs=1e-9)
    for gold, pred, i in zip(golds, preds, ids, strict=True):
        for text in (gold, pred):
            answer, reason = official_extract_answer_and_reason(text)
            parsed = parse_answer(text)
            assert parsed.answer_part.strip() == answer and parsed.reason == reason
            assert parsed.normalized == official_normalize_answer_text(answer)
        true_ans, pred_ans, true_r, _ = official_split([gold], [pred])
        assert (
            exact_match(pred, gold) == official_calc_exact_match(true_ans, pred_ans) == got["items"][i]["exact_match"]
        )
        assert got["items"][i]["has_reason_pair"] == bool(true_r)
    return got


# ---------------------------------------------------------------- generated answers
PIECES = [
    "가 옳다",
    "이 옳다",
    "가",
    "이",
    " 옳다",
    "옳다",
    "#",
    '"',
    "'",
    "“",
    "”",
    "‘",
    "’",
    ".",
    ",",
    " ",
    "\t",
    "\n",
]
PIECES += ["\r", "\u3000", "\xa0", "문장", "사과를 먹었다", "이유", "A", "b", "다."]
answer_text = st.lists(st.sampled_from(PIECES), max_size=16).map("".join)
EXAMPLES = [
    '"X"가 옳다.\n',  # the cases
    '"X"가 옳다\n. 이유',
    '"X"가 옳다 \t\n',
    '"B"가 옳다',
    '"A"#"B"가 옳다',
    '"C# 언어를 배운다."가 옳다. 이유',
    '"A"가 옳다#"B"가 옳다. 이유',
    '"밥"이 옳다. 그러나 "죽"가 옳다.',
    '  "A"이 옳다 . , \t이유 ',
    "#",
    "",
    " ",
    ".,",
]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(answer_text)
@example(EXAMPLES[0])
@example(EXAMPLES[1])
@example(EXAMPLES[8])
def test_split_and_normalisation_equal_the_official(text):
    answer, reason = official_extract_answer_and_reason(text)
    parsed = parse_answer(text)
    assert parsed.answer_part.strip() == answer
    assert parsed.reason == reason and bool(parsed.reason) == bool(reason)
    assert parsed.normalized == official_normalize_answer_text(answer)


@FUZZ
@given(answer_text, answer_text)
@example(EXAMPLES[3], EXAMPLES[4])
@example(EXAMPLES[5], EXAMPLES[5])
@example('"B"가 옳다', EXAMPLES[6])
def test_exact_match_equals_the_official(pred, gold):
    true_ans, pred_ans, _, _ = official_split([gold], [pred])
    assert exact_match(pred, gold) == official_calc_exact_match(true_ans, pred_ans)


def test_score_equals_the_official_on_generated_files(suites):
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(st.tuples(answer_text, answer_text), min_size=1, max_size=6), st.booleans())
    @example([(EXAMPLES[0], '"X"가 옳다. 이유'), ('"X"가 옳다. 사과를 먹었다.', '"X"가 옳다. 사과를 먹었다.')], False)
    @example([(EXAMPLES[3], EXAMPLES[4]), (EXAMPLES[1], EXAMPLES[1]), (EXAMPLES[2], "")], True)
    def check(pairs, official):
        assert_parity([g for _, g in pairs], [p for p, _ in pairs], suites[official])

    check()


def test_hand_built_files(suites):
    # whitespace-only and punctuation-only reasons, '#' anywhere, both patterns, leading/trailing whitespace
    golds = [
        '"사과를 먹었다."가 옳다. 과거의 일이다.',
        '"A#B"가 옳다. 둘 다 맞다.',
        '"C# 언어를 배운다."가 옳다. 고유 명사이다.',
        '"밥"이 옳다. 그러나 "죽"가 옳다고 보는 이도 있다.',
        '"X"가 옳다.',
        '"Y"이 옳다. 이유\n둘째 줄',
    ]
    preds = [
        '"사과를 먹었다."가 옳다.\n',  # reason empty after strip + lstrip: no reason pair
        '"B"가 옳다\n. 둘 다 맞다.',  # the last '#' piece; reason '둘 다 맞다.'
        '"C# 언어를 배운다."가 옳다. 고유 명사이다.',  # the gold itself: EM 0 ('#' splits the gold)
        '  "밥"이 옳다. 그러나 "죽"가 옳다 .,\t이유 ',
        ' \t"X"가 옳다 . , 이유',
        '"Y"이 옳다,\t이유',
    ]
    for official in (False, True):
        got = assert_parity(golds, preds, suites[official])
        assert got["exact_match"] == 5 / 6 and got["n_reason_pairs"] == 4


def _answers_in(path: Path) -> list[str]:
    """Every string ``output.answer`` of a JSON list file (read as plain JSON: broken files give none)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    rows = rows if isinstance(rows, list) else []
    outs = [r.get("output") for r in rows if isinstance(r, dict)]
    return [o["answer"] for o in outs if isinstance(o, dict) and isinstance(o.get("answer"), str)]


def test_official_golds_and_test_files(data_dir, suites):
    """Every official gold and every answer in tests/data: against itself, and each against its neighbour."""
    files = [data_dir / f"korean_language_rag_V1.0_{s}.json" for s in ("train", "dev")]
    files += sorted((Path(__file__).parent / "data").rglob("*.json"))
    for path in files:
        golds = _answers_in(path)
        if not golds:
            continue
        shifted = golds[1:] + golds[:1]
        for official in (False, True):
            assert_parity(golds, golds, suites[official])
            assert_parity(golds, shifted, suites[official])


def test_dev_against_itself(data_dir, suites):
    rows = json.loads((data_dir / "korean_language_rag_V1.0_dev.json").read_text(encoding="utf-8"))
    golds = {r["id"]: r["output"]["answer"] for r in rows}
    res = score(golds, golds, suites[False])
    assert res["exact_match"] == 1.0 and res["rouge_1"] == 1.0
    assert res["n_items"] == 127 and res["n_reason_pairs"] == 126  # dev 685: nothing after '가 옳다'
    assert official_scores(list(golds.values()), list(golds.values()))["n_reason_pairs"] == 126
