"""Batched generation, candidate log-probabilities and the resumable predict command, on the tiny offline model."""

from __future__ import annotations

import pytest

from malpyeong_grpo.models import load_model, load_tokenizer
from malpyeong_grpo.predict import _stop_criteria, generate_answers


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


PROMPTS = ["질문: 선택형", "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고", "답변:", "한글 맞춤법 제1항"]


def test_generate_answers_keeps_prompt_order_across_batches(tiny):
    model, tok = tiny
    one_by_one = [generate_answers(model, tok, [p], max_new_tokens=8, progress=False)[0] for p in PROMPTS]
    batched = generate_answers(model, tok, PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    assert batched == one_by_one
    assert all(isinstance(t, str) and t for t in batched)


def test_generation_stops_at_a_marker(tiny):
    model, tok = tiny
    free = generate_answers(model, tok, PROMPTS[:1], max_new_tokens=24, progress=False, stop_markers=())[0]
    marker = free.lstrip()[3:6]  # a piece of what the model writes anyway, past its start
    assert marker.strip() and len(free) > 12
    stopped = generate_answers(model, tok, PROMPTS[:1], max_new_tokens=24, progress=False, stop_markers=(marker,))[0]
    assert marker in stopped and len(stopped) < len(free)
    assert free.startswith(stopped)


def test_stop_criteria_is_per_row_and_ignores_the_prompt(tiny):
    _, tok = tiny
    import torch

    prompt = tok("### 예시\n###", add_special_tokens=False).input_ids  # the prompt holds the marker: no stop
    rows = [prompt + tok(" 답변\n### 다음", add_special_tokens=False).input_ids, prompt + [tok.pad_token_id] * 6]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    done = _stop_criteria(len(prompt), tok, ("\n###",))(ids, None)
    assert done.tolist() == [True, False]
