"""Prompts: a system prompt, a per-type instruction, k few-shot examples from the training split, optional rule
context; the tokenizer's chat template when it has one, a plain-text template for base models."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

from .data import Item

SYSTEM_PROMPT = (
    "당신은 한국어 어문 규범(한글 맞춤법, 표준어 규정, 띄어쓰기, 문장 부호, 외래어 표기법) 전문가입니다. "
    "질문에 답할 때는 어문 규범에 맞는 문장 전체를 큰따옴표 안에 쓰고 '가 옳다.'를 붙인 뒤, "
    "근거가 되는 규정을 들어 그 이유를 설명하십시오."
)
INSTRUCTIONS = {
    "선택형": "보기 {A/B} 가운데 어문 규범에 맞는 것을 골라 문장 전체를 완성하고, 그 이유를 설명하십시오.",
    "교정형": "문장에서 어문 규범에 맞지 않는 부분을 고쳐 문장 전체를 쓰고, 그 이유를 설명하십시오.",
}
ANSWER_FORM = '답변 형식: "<올바른 문장>"가 옳다. <이유>'
STOP_MARKERS = ("\n###", "\n질문:", "\n\n\n", "<end_of_turn>", "<|im_end|>", "<|eot_id|>")


def can_show(candidate: Item, item: Item) -> bool:
    """Whether ``candidate`` may be a demonstration for ``item``: answered, of the same question type, and not the
    item itself (by id or by question)."""
    return (
        bool(candidate.answer)
        and candidate.question_type == item.question_type
        and candidate.id != item.id
        and candidate.question != item.question
    )


def select_shots(item: Item, pool: Sequence[Item], k: int, seed: int = 0) -> list[Item]:
    """k answered examples of the item's question type from ``pool``, never the item itself (by id or question);
    deterministic in (item id, seed), different across items."""
    if k <= 0:
        return []
    cands = [p for p in pool if can_show(p, item)]
    digest = hashlib.sha256(f"{seed}:{item.id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big")).sample(cands, min(k, len(cands)))


def _context_block(contexts: Sequence[str]) -> str:
    lines = ["[참고 규정]"]
    lines += [f"({i}) {c.strip()}" for i, c in enumerate(contexts, 1)]
    return "\n".join(lines)


def user_message(item: Item, contexts: Sequence[str] = ()) -> str:
    """The task text for one item: instruction, optional rule context, the question."""
    parts = [INSTRUCTIONS[item.question_type], ANSWER_FORM]
    if contexts:
        parts.append(_context_block(contexts))
    parts.append(f"질문: {item.question.strip()}")
    return "\n".join(parts)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def build_messages(item: Item, shots: Sequence[Item] = (), contexts: Sequence[str] = ()) -> list[dict[str, str]]:
    """Conversational prompt: system, then each shot as a user/assistant pair, then the item."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for shot in shots:
        messages += [
            {"role": "user", "content": user_message(shot)},
            {"role": "assistant", "content": shot.answer or ""},
        ]
    messages.append({"role": "user", "content": user_message(item, contexts)})
    return messages


def build_text(item: Item, shots: Sequence[Item] = (), contexts: Sequence[str] = ()) -> str:
    """Plain-text prompt for base models; the completion is the answer after the last '답변:'."""
    blocks = [SYSTEM_PROMPT, ANSWER_FORM]
    for i, shot in enumerate(shots, 1):
        blocks.append(f"### 예시 {i}\n질문: {shot.question.strip()}\n답변: {shot.answer}")
    head = "### 문제"
    if contexts:
        head += "\n" + _context_block(contexts)
    blocks.append(f"{head}\n{INSTRUCTIONS[item.question_type]}\n질문: {item.question.strip()}\n답변:")
    return "\n\n".join(blocks)


def build_prompt(
    item: Item,
    shots: Sequence[Item] = (),
    contexts: Sequence[str] = (),
    tokenizer: Any = None,
    chat: bool | None = None,
) -> str | list[dict[str, str]]:
    """Messages when ``chat`` (default: the tokenizer has a chat template), else plain text."""
    use_chat = has_chat_template(tokenizer) if chat is None else chat
    return build_messages(item, shots, contexts) if use_chat else build_text(item, shots, contexts)


def render(prompt: str | list[dict[str, str]], tokenizer: Any) -> str:
    """Prompt text to feed a model: the chat template applied to messages, plain text as it is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion (a string, or a list of messages for conversational prompts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def extract_answer(completion: Any) -> str:
    """The answer a completion gives: its text cut at the first stop marker (a base model runs on into a new
    example), stripped. Never raises."""
    text = completion_text(completion)
    cut = len(text)
    for marker in STOP_MARKERS:
        i = text.find(marker)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut].strip()
