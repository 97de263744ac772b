"""Few-shot selection: random and similar shots, never the item itself, leave-one-out in training, deterministic."""

from __future__ import annotations

import pytest

from malpyeong_grpo.data import Item
from malpyeong_grpo.shots import ShotSelector, option_features, query_tokens


def item(i: str, qtype: str, question: str, answer: str | None = '"x"가 옳다. 이유.') -> Item:
    return Item(id=i, question_type=qtype, question=question, answer=answer)


POOL = [
    item("1", "선택형", '"나는 학생{으로서/으로써} 최선을 다했다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'),
    item("2", "선택형", '"대화{로서/로써} 갈등을 풀었다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'),
    item("3", "선택형", '"오늘은 {왠지/웬지} 기분이 좋다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'),
    item("4", "선택형", '"{케익/케이크}을 먹었다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'),
    item(
        "5",
        "교정형",
        '다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요.\n"케익을 샀다."',
    ),
    item("6", "선택형", '"무슨 {일로서/일로써} 왔니?" 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.', answer=None),
]


def test_option_features():
    assert option_features("캐 갔다/캐갔다") == ["<spacing>"]
    assert option_features("로서/로써") == ["~서", "~써"]


def test_query_tokens_weight_the_options():
    tokens = query_tokens(POOL[1])
    assert tokens.count("~서") == 2 and "대화" in tokens


def test_similar_shots_are_nearest_same_type_never_the_item():
    sel = ShotSelector(POOL, "similar")
    query = item("q", "선택형", '"회장{으로서/으로써} 말한다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.')
    shots = sel.select(query, 2)
    assert {s.id for s in shots} == {"1", "2"}  # the two 로서/로써 items, not 왠지 or 케이크
    assert shots[-1].id == sel.ranked(query)[0][0].id  # the most similar stands last, next to the question
    assert all(s.question_type == "선택형" and s.answer for s in shots)  # never unanswered (item 6) or 교정형
    # leave-one-out: a pool item never gets itself, by id or by an identical question
    assert "1" not in {s.id for s in sel.select(POOL[0], 3)}
    twin = item("other-id", "선택형", POOL[0].question)
    assert "1" not in {s.id for s in sel.select(twin, 3)}


def test_selection_is_deterministic():
    for method in ("random", "similar"):
        a = [s.id for s in ShotSelector(POOL, method, seed=3).select(POOL[2], 2)]
        b = [s.id for s in ShotSelector(list(POOL), method, seed=3).select(POOL[2], 2)]
        assert a == b and len(a) == 2


def test_unknown_method():
    with pytest.raises(ValueError, match="similar"):
        ShotSelector(POOL, "nearest")
