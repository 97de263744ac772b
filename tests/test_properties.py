"""Property-based tests (hypothesis) on hostile input: arbitrary Unicode, huge and empty strings, control characters,
lone surrogates, deeply nested or wrongly typed JSON. Parsers, rewards and the scorer never raise; file readers
either read the file or give the data layer's one-line errors."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from malpyeong_grpo.answer import PATTERNS, exact_match, format_answer, parse_answer
from malpyeong_grpo.data import load_items
from malpyeong_grpo.files import DataError, append_jsonl, read_jsonl
from malpyeong_grpo.prompts import STOP_MARKERS, extract_answer

# Modest example counts: the whole suite shares 2 CPU cores. No deadline: timings vary with the machine's load.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

QUOTES = "\"'“”‘’"
# Pieces that matter to the parsers, mixed with arbitrary code points (surrogates included) and control characters.
PIECES = [
    *PATTERNS,
    "가",
    "이",
    "옳다",
    " ",
    ".",
    ",",
    "#",
    "\n",
    "\t",
    "\r",
    "\x00",
    "\x1b",
    "\u200b",
    "\ufeff",
    *QUOTES,
]
PIECES += [*STOP_MARKERS, "답변:", "###", "다.", "습니다", "😀", "\U0010ffff", "\ud800", "\udfff"]
any_char = st.characters(exclude_categories=())  # every code point, lone surrogates included
hostile_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(any_char, max_size=8)), max_size=24).map("".join)
HUGE = ["가" * 100_000, "가 옳다" * 20_000, '"' * 100_000, "\x00" * 50_000, "\ud800" * 10_000]
plain_char = st.characters(exclude_categories=("Cs",))  # text that can be written to a UTF-8 file


# --- answer.parse_answer ----------------------------------------------------------------------------------------


@FAST
@given(hostile_text)
@example("")
@example(HUGE[0])
@example(HUGE[1])
@example(HUGE[4])
def test_parse_answer_splits_at_the_first_pattern(text):
    parsed = parse_answer(text)
    parsed.normalized, parsed.sentence  # noqa: B018 - the derived views must not raise either
    first = next(((p, text.find(p)) for p in PATTERNS if p in text), None)
    if first is None:
        assert (parsed.answer_part, parsed.reason, parsed.pattern) == (text, "", None)
        return
    pattern, at = first
    end = at + len(pattern)
    assert parsed.pattern == pattern
    assert parsed.answer_part == text[:end]
    assert parsed.reason in text[end:] and not parsed.reason.startswith((" ", ".", ","))
    assert parsed.reason == parsed.reason.rstrip()  # stripped first, so never whitespace-only
    assert (parsed.reason == "") == (text[end:].strip().strip("., ") == "")
    assert '"' not in parsed.normalized and "'" not in parsed.normalized


@FAST
@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_parse_answer_takes_non_text(value):
    assert parse_answer(value).answer_part == ""


# --- answer.format_answer round trip ---------------------------------------------------------------------------


def _clean_sentence(s: str) -> bool:
    return bool(s) and s == s.strip() and not s.startswith(tuple(QUOTES)) and not s.endswith(tuple(QUOTES))


@FAST
@given(st.text(plain_char, min_size=1, max_size=60), st.text(plain_char, max_size=60))
@example("나는 학교에 갔다.", "과거 시제 선어말 어미 '-았-'을 쓴다.")
@example("책을 읽었음", "")
@example("값이 5,000원이다.", "숫자는 아라비아 숫자로 적는다.")
def test_format_then_parse_gives_back_sentence_and_reason(sentence, reason):
    assume(_clean_sentence(sentence) and not any(p in sentence for p in PATTERNS))
    assume(reason == reason.strip() and not reason.startswith((".", ",")) and not any(p in reason for p in PATTERNS))
    text = format_answer(sentence, reason)
    parsed = parse_answer(text)
    assert parsed.pattern is not None
    assert parsed.sentence == sentence
    assert parsed.reason == reason


@FAST
@given(hostile_text, hostile_text)
def test_format_answer_never_raises_and_always_parses(sentence, reason):
    text = format_answer(sentence, reason)
    assert parse_answer(text).pattern is not None


# --- answer.exact_match -----------------------------------------------------------------------------------------


@FAST
@given(hostile_text, hostile_text)
@example(HUGE[1], HUGE[1])
def test_exact_match_is_zero_or_one(pred, gold):
    assert exact_match(pred, gold) in (0.0, 1.0)


@FAST
@given(hostile_text, hostile_text)
def test_exact_match_of_an_answer_with_itself(text, other_reason):
    assume("#" not in text)
    assert exact_match(text, text) == 1.0
    parsed = parse_answer(text)
    if parsed.pattern and not any(p in other_reason for p in PATTERNS):  # another reason never changes EM
        assert exact_match(parsed.answer_part + " " + other_reason, text) == 1.0


clean_sentence = st.text(plain_char, min_size=1, max_size=30).filter(
    lambda s: _clean_sentence(s) and "#" not in s and not any(p in s for p in PATTERNS)
)


@FAST
@given(st.lists(clean_sentence, min_size=1, max_size=4), st.data())
@example(["C 언어", "C++ 언어"], None)
@example(["먹든지 말든지", "먹던지 말던지"], None)
def test_exact_match_accepts_every_gold_alternative(sentences, data):
    """A gold listing sentences separated by '#' inside one answer part ('"A#B"가 옳다. 이유') accepts, as the
    official scorer, the bare sentence for every piece but the last, and the full answer for the last."""
    gold = '"' + "#".join(sentences) + '"가 옳다. 이유'
    pick = len(sentences) - 1 if data is None else data.draw(st.integers(0, len(sentences) - 1))
    last = pick == len(sentences) - 1
    pred = f'"{sentences[pick]}"가 옳다. 다른 이유' if last else f'"{sentences[pick]}"'
    assert exact_match(pred, gold) == 1.0
    plain = [x.replace('"', "").replace("'", "").strip() for x in sentences]
    if not last and plain[pick] != plain[-1]:  # the full answer 'A가 옳다' matches no piece
        assert exact_match(f'"{sentences[pick]}"가 옳다. 다른 이유', gold) == 0.0


def test_a_hash_inside_a_gold_sentence_splits_it():
    gold = '"C# 언어"가 옳다. 이유'
    assert exact_match(gold, gold) == 0.0  # pieces 'C' and '언어가 옳다': the whole answer is neither
    assert exact_match('"언어"가 옳다. 이유', gold) == 1.0 and exact_match("C", gold) == 1.0


# --- prompts.extract_answer -------------------------------------------------------------------------------------


completion = st.one_of(
    hostile_text,
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["assistant", "user"]), "content": hostile_text})),
    st.none(),
    st.integers(),
    st.lists(st.integers()),
    st.just([{"role": "assistant", "content": None}]),
    st.just([{"role": "assistant"}]),
)


@FAST
@given(completion)
@example(HUGE[0] + "\n###" + HUGE[1])
def test_extract_answer_cuts_at_stop_markers(value):
    out = extract_answer(value)
    assert isinstance(out, str) and out == out.strip()
    assert not any(marker in out for marker in STOP_MARKERS if marker.strip() == marker)
    if isinstance(value, str):
        assert out in value


# --- data.load_items on arbitrary JSON and arbitrary bytes ------------------------------------------------------

json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        hostile_text,
        st.sampled_from(["선택형", "교정형", "", " "]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
item_like = st.fixed_dictionaries(
    {"id": json_value, "input": st.one_of(json_value, st.fixed_dictionaries({"question_type": json_value}))},
    optional={"output": st.one_of(json_value, st.fixed_dictionaries({"answer": json_value}))},
)


def _check_load(path: Path) -> None:
    """Either checked items or a DataError whose lines each name the file; nothing else."""
    try:
        items = load_items(path)
    except DataError as e:
        assert e.problems
        for line in e.problems:
            assert line.startswith(f"{path}:") and "\n" not in line, line
        return
    for it in items:
        assert isinstance(it.id, str) and it.id.strip() and it.question_type in ("선택형", "교정형")
        assert isinstance(it.question, str) and it.question.strip()


@FAST
@given(
    st.one_of(json_value, st.lists(st.one_of(item_like, json_value), max_size=5)), st.sampled_from([".json", ".jsonl"])
)
def test_load_items_on_arbitrary_json(value, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}"
        if suffix == ".jsonl" and isinstance(value, list):
            text = "".join(json.dumps(v) + "\n" for v in value)  # ensure_ascii: lone surrogates become \ud800 escapes
        else:
            text = json.dumps(value)
        path.write_text(text, encoding="utf-8")
        _check_load(path)


@FAST
@given(st.binary(max_size=200), st.sampled_from([".json", ".jsonl"]))
@example(b"\xef\xbb\xbf[]", ".json")
@example(b"[" * 50_000, ".json")
def test_load_items_on_arbitrary_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"in{suffix}"
        path.write_bytes(data)
        _check_load(path)


@SLOW
@given(st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3))
def test_loaded_items_can_be_written_back(surrogates):
    """Whatever load_items accepts can be written to UTF-8 again (a lone surrogate cannot: it must be refused)."""
    row = {"id": "x1", "input": {"question_type": "교정형", "question": f"문장{surrogates}"}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.json"
        path.write_text(json.dumps([row]), encoding="utf-8")
        try:
            items = load_items(path)
        except DataError:
            return
        for it in items:
            it.question.encode("utf-8")


# --- files.read_jsonl: a cache torn anywhere reads back as a prefix of its rows ---------------------------------


@SLOW
@given(
    st.lists(
        st.dictionaries(st.text(max_size=5), st.text(plain_char, max_size=20), max_size=3), min_size=1, max_size=5
    ),
    st.data(),
)
@example([{"id": "1", "a": "가나다"}, {"id": "2", "a": "가나다"}], None)
def test_read_jsonl_after_a_torn_append(rows, data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.jsonl"
        for row in rows:
            append_jsonl(path, row)
        full = path.read_bytes()
        cut = len(full) - 5 if data is None else data.draw(st.integers(0, len(full)))
        path.write_bytes(full[:cut])
        kept = full[: full[:cut].rfind(b"\n") + 1]  # the complete lines
        assert read_jsonl(path) == rows[: kept.count(b"\n")]
        assert path.read_bytes() == kept  # the torn tail is cut off, so the next append starts on a fresh line


# --- every reward in rewards.REWARDS ----------------------------------------------------------------------------

ENCODER_REWARDS = {"bertscore", "bleurt", "final"}  # these run the scorer's encoders: fewer examples
gold_like = st.one_of(
    hostile_text,
    st.builds(format_answer, st.text(plain_char, max_size=30), hostile_text),
    st.just(""),
)


def _reward_names() -> list[str]:
    from malpyeong_grpo.rewards import REWARDS

    return sorted(REWARDS)


@pytest.fixture(scope="module")
def cpu_rewards():
    """The reward module with the default encoders (stand-ins here) on the CPU."""
    from malpyeong_grpo import rewards

    rewards.configure(None, None, "cpu")
    return rewards


@pytest.mark.parametrize("name", _reward_names())
def test_every_reward_returns_a_finite_number_per_completion(name, cpu_rewards):
    func = cpu_rewards.REWARDS[name]

    @settings(
        max_examples=12 if name in ENCODER_REWARDS else 60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(st.tuples(completion, gold_like), min_size=1, max_size=4), st.lists(hostile_text, max_size=3))
    @example([(HUGE[0], HUGE[1]), (HUGE[4], '"가."가 옳다. ' + HUGE[4]), ("", "")], [])
    @example([('"나는 갔다."가 옳다. 이유 \ud800\x00', '"나는 갔다."가 옳다. 이유'), (None, None)], ["제1항"])
    def check(pairs, rule_ids):
        completions = [c for c, _ in pairs]
        golds = [g for _, g in pairs]
        out = func(
            prompts=["질문"] * len(pairs),
            completions=completions,
            answer=golds,
            gold_rule=golds,
            gold_rule_id=[rule_ids[0] if rule_ids else ""] * len(pairs),
            rule_ids=[rule_ids] * len(pairs),
        )
        assert len(out) == len(pairs)
        assert all(isinstance(x, float) and math.isfinite(x) for x in out), out
        if name in ("format", "exact_match", "rouge_1", "rule"):
            assert all(0.0 <= x <= 1.0 for x in out), out

    check()


# --- the scorer: rouge.rouge1_f and metrics.score ----------------------------------------------------------------


@FAST
@given(hostile_text, hostile_text)
@example(HUGE[0], HUGE[0])
@example("\ud800가", "가\udfff")
def test_rouge1_f_is_a_symmetric_fraction(pred, gold):
    from malpyeong_grpo.rouge import morphs, rouge1_f

    value = rouge1_f(pred, gold)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(rouge1_f(gold, pred), abs=1e-12)
    assert rouge1_f(pred, pred) == (1.0 if morphs(pred) else 0.0)


def _score_hostile(suite, preds: dict[str, str], golds: dict[str, str]) -> None:
    from malpyeong_grpo.metrics import metric_name, score

    result = score(preds, golds, suite)
    for key in ("exact_match", "rouge_1", "descriptive_avg", "final"):
        assert math.isfinite(result[metric_name(key, suite)])
    assert 0.0 <= result["exact_match"] <= 1.0 and 0.0 <= result["rouge_1"] <= 1.0
    assert result["n_items"] == len(golds)


@pytest.fixture(scope="module")
def cpu_suite():
    from malpyeong_grpo.metrics import get_suite

    return get_suite(device="cpu")


score_text = st.one_of(
    st.builds(format_answer, st.text(plain_char, max_size=20), st.text(plain_char, max_size=40)),
    st.text(plain_char, max_size=40),
)


def test_score_never_raises_on_hostile_text(cpu_suite):
    @settings(
        max_examples=6,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(st.tuples(score_text, score_text), min_size=1, max_size=4))
    @example([('"가."가 옳다. ' + "가" * 1000, '"가."가 옳다. 이유'), ('"가."가 옳다. \x00\x1b\u200b', "")])
    def check(pairs):
        preds = {f"i{n}": p for n, (p, _) in enumerate(pairs)}
        golds = {f"i{n}": g for n, (_, g) in enumerate(pairs)}
        _score_hostile(cpu_suite, preds, golds)

    check()


def test_score_with_a_lone_surrogate_in_a_reason(cpu_suite):
    _score_hostile(cpu_suite, {"1": '"가나."가 옳다. 이유\ud800입니다.'}, {"1": '"가나."가 옳다. 이유입니다.'})
