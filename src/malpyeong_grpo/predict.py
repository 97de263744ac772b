"""Inference: batched generation (transformers, or vLLM when installed) that stops at the prompts' stop markers,
candidate log-probabilities for 선택형 items, and the resumable ``predict`` command writing a submission file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .prompts import STOP_MARKERS, render

Prompt = str | list[dict[str, str]]


@dataclass
class VllmEngine:
    """A vLLM ``LLM`` with an optional LoRA request; ``generate_answers`` accepts it in place of a model."""

    llm: Any
    lora_request: Any = None


def _stop_criteria(prompt_len: int, tokenizer: Any, markers: Sequence[str]) -> Any:
    """A per-sequence StoppingCriteria: a row is done once its generated text, leading whitespace stripped, holds a
    stop marker."""
    import torch
    from transformers import StoppingCriteria

    class StopOnMarkers(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=False)
            done = [any(m in t.lstrip() for m in markers) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopOnMarkers()


def _encode(prompts: Sequence[Prompt], tokenizer: Any) -> list[list[int]]:
    """Token ids of each rendered prompt; chat-rendered text already holds its special tokens."""
    ids = []
    for p in prompts:
        text = render(p, tokenizer)
        ids.append(tokenizer(text, add_special_tokens=isinstance(p, str)).input_ids)
    return ids


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids, mask


def _device(model: Any) -> Any:
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def iter_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_beams: int = 1,
    batch_size: int = 8,
    progress: bool = True,
    stop_markers: Sequence[str] = STOP_MARKERS,
) -> Iterator[list[tuple[int, str]]]:
    """Yield, batch by batch, ``(prompt index, raw completion)`` pairs; prompts are batched longest first."""
    if isinstance(model, VllmEngine):
        args = (max_new_tokens, do_sample, temperature, top_p, num_beams, stop_markers)
        yield _vllm_batch(model, tokenizer, prompts, *args)
        return
    import torch
    from tqdm.auto import tqdm

    encoded = _encode(prompts, tokenizer)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = _device(model)
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # greedy or beam: neutralise sampling settings a checkpoint's generation_config may carry
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    model.eval()
    bar = tqdm(total=len(order), desc="generate", unit="item", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = _left_pad([encoded[i] for i in idx], pad_id)
            stop = _stop_criteria(ids.shape[1], tokenizer, stop_markers)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    pad_token_id=pad_id,
                    stopping_criteria=[stop],
                    **gen_kwargs,
                )
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            yield list(zip(idx, texts, strict=True))
            bar.update(len(idx))
    finally:
        bar.close()


def _vllm_batch(
    engine: VllmEngine,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    num_beams: int,
    stop_markers: Sequence[str],
) -> list[tuple[int, str]]:
    """vLLM generation of all prompts in one call (vLLM batches internally); stop markers end each sequence
    (whitespace-only markers are left to ``extract_answer``: vLLM would stop on a leading newline)."""
    from vllm import SamplingParams

    if num_beams > 1:
        raise ValueError("beam search is not supported on the vLLM backend; use --backend transformers")
    params = SamplingParams(
        max_tokens=max_new_tokens,
        temperature=temperature if do_sample else 0.0,
        top_p=top_p if do_sample else 1.0,
        stop=[m for m in stop_markers if m.strip()],
    )
    texts = [render(p, tokenizer) for p in prompts]
    outs = engine.llm.generate(texts, params, lora_request=engine.lora_request, use_tqdm=False)
    return [(i, o.outputs[0].text) for i, o in enumerate(outs)]


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_beams: int = 1,
    batch_size: int = 8,
    progress: bool = True,
    stop_markers: Sequence[str] = STOP_MARKERS,
) -> list[str]:
    """Raw completion texts of ``prompts``, in order (apply ``prompts.extract_answer`` to each).

    Batched, left-padded transformers generation; prompts are sorted by length for batching and the order restored;
    a batch stops as soon as every sequence has passed a stop marker (a base model runs on into a new example).
    ``model`` may be a :class:`VllmEngine` instead.
    """
    out: list[str | None] = [None] * len(prompts)
    for batch in iter_generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_p=top_p,
        num_beams=num_beams,
        batch_size=batch_size,
        progress=progress,
        stop_markers=stop_markers,
    ):
        for i, text in batch:
            out[i] = text
    return [t or "" for t in out]
