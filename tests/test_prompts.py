"""Prompts: few-shot choice by question type (never the item itself), plain text for base models, chat messages
for chat models, rule context, and cutting a base model's run-on."""

from __future__ import annotations

import pytest

from malpyeong_grpo.data import Item, sample_items
from malpyeong_grpo.prompts import (
    INSTRUCTIONS,
    SYSTEM_PROMPT,
    build_messages,
    build_prompt,
    build_text,
    extract_answer,
    has_chat_template,
    render,
    select_shots,
)

ITEMS = sample_items()


def test_select_shots_same_type_never_the_item_deterministic():
    for item in ITEMS:
        shots = select_shots(item, ITEMS, 3, seed=1)
        assert len(shots) == 3
        assert all(s.question_type == item.question_type and s.id != item.id for s in shots)
        assert shots == select_shots(item, ITEMS, 3, seed=1)
    firsts = {tuple(s.id for s in select_shots(it, ITEMS, 2)) for it in ITEMS}
    assert len(firsts) > len(ITEMS) // 2  # varies across items
    twin = Item("twin", ITEMS[0].question_type, ITEMS[0].question, "x")  # same question, other id: excluded
    assert all(s.question != ITEMS[0].question for s in select_shots(ITEMS[0], [*ITEMS, twin], 50))
    assert select_shots(ITEMS[0], ITEMS, 0) == []
    unanswered = [Item(f"u{i}", it.question_type, it.question + " ", None) for i, it in enumerate(ITEMS)]
    assert select_shots(ITEMS[0], unanswered, 2) == []  # test items (no answer) are never shots


def test_plain_text_prompt():
    item = next(it for it in ITEMS if it.question_type == "교정형")
    shots = select_shots(item, ITEMS, 2)
    text = build_text(item, shots, contexts=["한글 맞춤법 제1항: 규정 본문", "문장 부호: 쉼표"])
    assert text.startswith(SYSTEM_PROMPT)
    assert text.count("### 예시") == 2 and all(s.answer in text for s in shots)
    assert item.answer not in text
    assert INSTRUCTIONS["교정형"] in text and INSTRUCTIONS["선택형"] not in text
    assert "[참고 규정]\n(1) 한글 맞춤법 제1항: 규정 본문\n(2) 문장 부호: 쉼표" in text
    assert text.endswith(f"질문: {item.question.strip()}\n답변:")


def test_chat_messages():
    item = ITEMS[0]
    shots = select_shots(item, ITEMS, 2)
    msgs = build_messages(item, shots, contexts=["규정 A"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    assert [msgs[2]["content"], msgs[4]["content"]] == [s.answer for s in shots]
    assert "(1) 규정 A" in msgs[-1]["content"] and item.question.strip() in msgs[-1]["content"]
    assert "규정 A" not in msgs[1]["content"]  # context only for the item asked


def test_build_prompt_follows_the_tokenizer(tmp_path):
    from tiny import make_tiny_model

    from malpyeong_grpo.models import load_tokenizer

    plain = load_tokenizer(str(make_tiny_model(tmp_path / "plain")))
    chat = load_tokenizer(str(make_tiny_model(tmp_path / "chat", chat_template=True)))
    assert not has_chat_template(plain) and has_chat_template(chat)
    item = ITEMS[3]
    assert isinstance(build_prompt(item, tokenizer=plain), str)
    messages = build_prompt(item, tokenizer=chat)
    assert isinstance(messages, list)
    assert isinstance(build_prompt(item, tokenizer=chat, chat=False), str)
    rendered = render(messages, chat)
    assert rendered.startswith("<system>" + SYSTEM_PROMPT) and rendered.endswith("<assistant>")
    assert render("plain", plain) == "plain"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (' "가."가 옳다. 이유.\n\n### 예시 3\n질문: 다음', '"가."가 옳다. 이유.'),
        ('"가."가 옳다. 이유.\n질문: 또', '"가."가 옳다. 이유.'),
        ('"가."가 옳다. 이유.<end_of_turn>\n<start_of_turn>user', '"가."가 옳다. 이유.'),
        ('"가."가 옳다.\n이유는 두 줄.', '"가."가 옳다.\n이유는 두 줄.'),
        ([{"role": "assistant", "content": '"가."가 옳다. 이유.<|im_end|>'}], '"가."가 옳다. 이유.'),
        (None, ""),
        ([{"role": "assistant", "content": 3}], ""),
        ("", ""),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected
