"""Answer repair on crafted model outputs: candidates from the real question formats, snapping, log-probability
choice, quote/spacing/particle/period normalisation, fallbacks; never a loss of EM on a well-formed answer."""

from __future__ import annotations

import pytest

from malpyeong_grpo.answer import exact_match, normalize_answer, parse_answer
from malpyeong_grpo.data import Item, load_items, split_path
from malpyeong_grpo.repair import (
    REPAIR_KINDS,
    Repair,
    candidates,
    choose_candidate,
    count_repairs,
    expand_options,
    repair_answer,
    source_sentence,
)

CHOICE = Item("c1", "선택형", '"우동이 {불을/불} 것 같아 걱정이다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.')
LINES = Item(
    "c2",
    "교정형",
    "다음 중 어문 규범에 부합하는 것을 선택하고, 그 이유를 설명하세요.\n― 참 재미있네요.\n― 참 재미있네요,",
)
OPEN = Item(
    "o1",
    "교정형",
    '다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요.\n"오똑한 코가 예쁘다."',
)
GOLD = "\"우동이 불을 것 같아 걱정이다.\"가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다."


def test_expand_options_resolves_particles_and_groups():
    assert expand_options("이론과 실제 사이에는 {갭/개프}이 있다.") == [
        "이론과 실제 사이에는 갭이 있다.",
        "이론과 실제 사이에는 개프이 있다.",
    ]
    assert expand_options("경기 중 {플랙/플래그}가(이) 떨어지면") == [
        "경기 중 플랙이 떨어지면",
        "경기 중 플래그가 떨어지면",
    ]
    assert expand_options("자연스럽게 {애드립/애드리브}을(를) 쳐서") == [
        "자연스럽게 애드립을 쳐서",
        "자연스럽게 애드리브를 쳐서",
    ]
    assert expand_options("{사과든/사과던} {배든/배던} 먹어라.") == [
        "사과든 배든 먹어라.",
        "사과든 배던 먹어라.",
        "사과던 배든 먹어라.",
        "사과던 배던 먹어라.",
    ]
    assert expand_options("우주 관측 {센터/센터}를 운영") == ["우주 관측 센터를 운영"]
    assert expand_options("{앎/알음/아름}이 힘이다.") == ["앎이 힘이다.", "알음이 힘이다.", "아름이 힘이다."]


def test_candidates_from_the_question_formats():
    assert candidates(CHOICE) == ["우동이 불을 것 같아 걱정이다.", "우동이 불 것 같아 걱정이다."]
    assert candidates(LINES) == ["참 재미있네요.", "참 재미있네요,"]
    assert candidates(OPEN) == []
    inner = Item("c3", "선택형", "\"{우장춘박사의/우장춘 박사의} 논문 제목은 '종(種)의 합성'이다.\" 가운데?")
    assert candidates(inner)[1] == "우장춘 박사의 논문 제목은 '종(種)의 합성'이다."
    no_quotes = Item("c4", "선택형", "{멜론/메론}이 달고 맛있다. 중에 올바른 것은?")
    assert candidates(no_quotes)[0].startswith("멜론이 달고")
    fix_lines = Item("o2", "교정형", "다음 문장에서 부합하지 않는 부분을 찾아 고치세요.\n― A:B\n― A :B")
    assert candidates(fix_lines) == []  # 'find and correct': an open correction, not a choice
    assert source_sentence(OPEN) == "오똑한 코가 예쁘다."
    assert source_sentence(Item("o3", "교정형", "다음 문장을 고치세요.\nㅡ2022. 4. 11")) == "2022. 4. 11"


def test_well_formed_answer_is_left_alone():
    r = repair_answer(CHOICE, GOLD)
    assert r == Repair(GOLD, ())


@pytest.mark.parametrize(
    ("output", "kinds"),
    [
        ("“우동이 불을 것 같아 걱정이다.”가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"quotes"}),
        ("\"우동이 불을 것 같아 걱정이다.\" 가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"spacing"}),
        ("\"우동이 불을 것 같아 걱정이다.\"이 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"particle"}),
        ("\"우동이 불을 것 같아 걱정이다.\"가 옳다 '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"period"}),
        ("우동이 불을 것 같아 걱정이다.가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"quotes"}),
        ("정답은 \"우동이 불을 것 같아 걱정이다.\"가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"prefix"}),
        ("\"우동이 불을 것 같아 걱정이다.\". '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"pattern"}),
        ("\"우동이 불을 것 같아 걱정이다\"가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.", {"snap"}),
        ("\"우동이 불을 것 같아 걱정이다.\"가 옳다. '붇다'는 모음 앞에서 'ㄹ'로 바뀐다.\n\"우동이", {"runon"}),
    ],
)
def test_repairs_restore_the_gold_form(output, kinds):
    r = repair_answer(CHOICE, output)
    assert set(r.kinds) == kinds and set(r.kinds) <= set(REPAIR_KINDS)
    assert exact_match(r.answer, GOLD) == 1.0
    assert parse_answer(r.answer).reason == "'붇다'는 모음 앞에서 'ㄹ'로 바뀐다."


def test_option_choice_snap_and_logprob():
    cands = candidates(CHOICE)
    assert choose_candidate("우동이 불 것 같아 걱정이다", cands) == (cands[1], "snap")
    assert choose_candidate("우동이 불 것 같아 걱정이다.", cands) == (cands[1], None)
    lp = {cands[0]: -12.0, cands[1]: -20.0}
    # a sentence that still holds the options is undecided: log-probability when given, else the first candidate
    assert choose_candidate("우동이 {불을/불} 것 같아 걱정이다.", cands, lp) == (cands[0], "logprob")
    assert choose_candidate("우동이 불을/불 것 같아 걱정이다.", cands[::-1]) == (cands[1], "undecided")
    assert choose_candidate(None, cands[::-1], lp) == (cands[0], "logprob")
    # logprob mode overrides the written choice
    assert choose_candidate("우동이 불 것 같아 걱정이다.", cands, lp, mode="logprob") == (cands[0], "logprob")
    with pytest.raises(ValueError, match="choice mode"):
        choose_candidate("x", cands, mode="vote")


def test_degenerate_outputs_still_parse():
    for item in (CHOICE, LINES, OPEN):
        for output in ("", "   ", "\n\n###", "답변: 모르겠다", "가 옳다", '""가 옳다.'):
            r = repair_answer(item, output)
            parsed = parse_answer(r.answer)
            assert parsed.pattern is not None and parsed.sentence, (item.id, output, r)
            assert "fallback" in r.kinds or output == "답변: 모르겠다"
    assert parse_answer(repair_answer(OPEN, "").answer).sentence == "오똑한 코가 예쁘다."
    assert parse_answer(repair_answer(LINES, "").answer).sentence == "참 재미있네요."


def test_open_correction_keeps_the_models_sentence_and_restores_final_punctuation():
    r = repair_answer(OPEN, '"오뚝한 코가 예쁘다"가 옳다. 표준어는 오뚝하다이다.')
    assert r.answer == '"오뚝한 코가 예쁘다."가 옳다. 표준어는 오뚝하다이다.' and r.kinds == ("final_punct",)
    r = repair_answer(OPEN, "오뚝한 코가 예쁘다. 표준어는 오뚝하다이다.")  # no quotes, no pattern
    assert r.kinds == ("fallback",) and parse_answer(r.answer).sentence == "오똑한 코가 예쁘다."


def test_count_repairs():
    rs = [Repair("a", ()), Repair("b", ("quotes", "snap")), Repair("c", ("snap",))]
    assert count_repairs(rs) == {"answers": 3, "repaired": 2, "quotes": 1, "snap": 2}


def test_repair_of_the_training_golds_keeps_em(data_dir):
    """The gold answers pass through repair with their EM kept, apart from the few golds that break the particle
    rule or whose sentence is none of the question's options (noise in the data): at most 20 of 622."""
    items = load_items(split_path("train", data_dir), require_answer=True)
    kept = sum(exact_match(repair_answer(it, it.answer).answer, it.answer) for it in items)
    assert kept >= 602
    with_cands = [it for it in items if candidates(it)]
    assert len(with_cands) >= 320  # every 선택형 item and the 'choose a line' 교정형 items


@pytest.fixture(scope="module")
def some_items(data_dir):
    items = load_items(split_path("train", data_dir), require_answer=True)
    return items[:40] + items[-40:]


def test_any_text_repairs_to_a_parseable_answer(some_items):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    pieces = st.sampled_from(['"', "“", "”", "가 옳다", "이 옳다", "{", "/", "}", "\n", ".", " ", "우동이", "###"])
    texts = st.one_of(st.text(max_size=80), st.lists(pieces, max_size=12).map("".join))

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(some_items), texts, st.sampled_from(["hybrid", "snap", "logprob"]))
    def check(item, text, choice):
        r = repair_answer(item, text, None, choice)
        parsed = parse_answer(r.answer)
        assert parsed.pattern is not None and parsed.sentence.strip()
        assert set(r.kinds) <= set(REPAIR_KINDS)
        assert "\n" not in parsed.answer_part
        cands = candidates(item)
        if cands:  # an option question's answer is always one of its options (ASCII quotes aside, as EM compares)
            assert normalize_answer(parsed.sentence) in {normalize_answer(c) for c in cands}

    check()
