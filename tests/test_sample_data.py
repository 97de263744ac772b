"""The package's own sample set: schema, ids, answer form and question/answer consistency of every item."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from malpyeong_grpo.answer import normalize_answer, parse_answer, sentence_count
from malpyeong_grpo.data import Item, sample_items

CHOICE_Q = re.compile(r'^"(?P<s>[^\n]+)" 가운데 올바른 것을 선택하고, 그 이유를 설명하세요\.$')
CORRECTION_Q = re.compile(
    r'^다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요\.\n"(?P<s>[^\n]+)"$'
)
OPTIONS = re.compile(r"\{([^{}]*)\}")


def question_sentence(item: Item) -> str:
    """The quoted sentence of a question (with its option group for 선택형); AssertionError when malformed."""
    m = (CHOICE_Q if item.question_type == "선택형" else CORRECTION_Q).match(item.question)
    assert m, f"{item.id}: question not in the {item.question_type} form"
    return m.group("s")


def problems(item: Item) -> list[str]:
    """What is wrong with one sample item (empty when nothing is)."""
    out: list[str] = []
    try:
        sentence = question_sentence(item)
    except AssertionError as e:
        return [str(e)]
    parsed = parse_answer(item.answer or "")
    if parsed.pattern != "가 옳다":
        out.append(f"{item.id}: answer lacks '가 옳다'")
    if not parsed.reason:
        out.append(f"{item.id}: empty reason")
    elif not 1 <= sentence_count(parsed.reason) <= 3:
        out.append(f"{item.id}: reason of {sentence_count(parsed.reason)} sentences (1-3 expected)")
    if not (parsed.answer_part.startswith('"') and parsed.answer_part.endswith('"가 옳다')):
        out.append(f"{item.id}: answer sentence not quoted")
    answer = parsed.sentence
    if item.question_type == "선택형":
        groups = OPTIONS.findall(sentence)
        if len(groups) != 1:
            return out + [f"{item.id}: {len(groups)} option groups (1 expected)"]
        options = groups[0].split("/")
        if len(options) != 2 or len(set(options)) != 2 or not all(options):
            out.append(f"{item.id}: option group {groups[0]!r} is not two distinct options")
        filled = [OPTIONS.sub(lambda _, o=o: o, sentence) for o in options]
        if answer not in filled:
            out.append(f"{item.id}: answer sentence is not the question's sentence with one option filled in")
    else:
        if "{" in sentence or "}" in sentence:
            out.append(f"{item.id}: option braces in a 교정형 sentence")
        if normalize_answer(answer) == normalize_answer(sentence):
            out.append(f"{item.id}: corrected sentence equals the question's sentence")
    return out


ITEMS = sample_items()


def test_ids_unique_and_numbered_in_order():
    ids = [it.id for it in ITEMS]
    assert len(ids) == len(set(ids)) >= 200
    assert ids == [f"sample-{i:02d}" for i in range(1, len(ids) + 1)]


def test_types_balanced():
    counts = Counter(it.question_type for it in ITEMS)
    assert set(counts) == {"선택형", "교정형"}
    assert abs(counts["선택형"] - counts["교정형"]) <= len(ITEMS) // 10


@pytest.mark.parametrize("item", ITEMS, ids=lambda it: it.id)
def test_item_consistent(item):
    assert problems(item) == []


def test_question_sentences_distinct():
    seen = Counter(OPTIONS.sub("{}", question_sentence(it)) for it in ITEMS)
    assert [s for s, n in seen.items() if n > 1] == []


def test_checker_catches_bad_items():
    q = '"나는 {안/않} 간다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'
    good = Item("x-1", "선택형", q, "\"나는 안 간다.\"가 옳다. 부사 '안'이 용언을 꾸민다.")
    assert problems(good) == []
    assert any("option filled in" in p for p in problems(Item("x-2", "선택형", q, '"나는 안 갔다."가 옳다. 이유.')))
    assert any("empty reason" in p for p in problems(Item("x-3", "선택형", q, '"나는 안 간다."가 옳다.')))
    no_group = Item("x-4", "선택형", q.replace("{안/않}", "안"), '"나는 안 간다."가 옳다. 이유.')
    assert any("option groups" in p for p in problems(no_group))
    k = '다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요.\n"그는 의사가 됬다."'
    assert problems(Item("x-5", "교정형", k, "\"그는 의사가 됐다.\"가 옳다. '되었다'의 준말이다.")) == []
    assert any("equals" in p for p in problems(Item("x-6", "교정형", k, '"그는 의사가 됬다."가 옳다. 이유.')))
    assert any("가 옳다" in p for p in problems(Item("x-7", "교정형", k, '"그는 의사가 됐다."이 옳다. 이유.')))
    assert any("form" in p for p in problems(Item("x-8", "교정형", k.replace("\n", " "), '"a"가 옳다. b.')))
    long_reason = " ".join(["이유이다."] * 4)
    assert any("reason of 4" in p for p in problems(Item("x-9", "선택형", q, f'"나는 안 간다."가 옳다. {long_reason}')))
