"""Generation engines: batched transformers generation that stops each row at the prompts' stop markers, vLLM when
installed, candidate log-probabilities for 선택형 items, and loading a model (or a vLLM engine) with its tokenizer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import DataError
from .lm import left_pad, model_device
from .models import load_model, load_tokenizer, resolve_model
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
    device = model_device(model)
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
            ids, mask = left_pad([encoded[i] for i in idx], pad_id)
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


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[Prompt], **options: Any) -> list[str]:
    """Raw completion texts of ``prompts``, in order (apply ``prompts.extract_answer`` to each); ``options`` are
    those of :func:`iter_generate` (batched, left-padded generation, longest prompts first, a batch stopping once
    every sequence has passed a stop marker; ``model`` may be a :class:`VllmEngine`)."""
    out: list[str | None] = [None] * len(prompts)
    for batch in iter_generate(model, tokenizer, prompts, **options):
        for i, text in batch:
            out[i] = text
    return [t or "" for t in out]


def candidate_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    cands: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
) -> list[dict[str, float]]:
    """For each prompt, the model's summed log-probability of answering with each candidate sentence: the
    continuation ``"<candidate>"가 옳다.`` (after a space for plain-text prompts, which end in '답변:')."""
    from .answer import format_answer
    from .lm import continuation_logprobs

    encoded = _encode(prompts, tokenizer)
    pairs = []  # (prompt index, candidate, prompt ids, continuation ids)
    for i, (p, cs) in enumerate(zip(prompts, cands, strict=True)):
        lead = " " if isinstance(p, str) else ""
        for c in cs:
            cont = tokenizer(lead + format_answer(c, ""), add_special_tokens=False).input_ids
            pairs.append((i, c, encoded[i], cont))
    out: list[dict[str, float]] = [{} for _ in prompts]
    pairs.sort(key=lambda x: -(len(x[2]) + len(x[3])))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    lps = continuation_logprobs(model, [(p, c) for _, _, p, c in pairs], pad_id, batch_size)
    for (i, c, _, _), lp in zip(pairs, lps, strict=True):
        out[i][c] = float(lp.sum())
    return out


def load_engine(
    name: str,
    *,
    adapter: str | None = None,
    dtype: str = "float32",
    backend: str = "auto",
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
) -> tuple[Any, Any]:
    """(model or :class:`VllmEngine`, tokenizer) of the base model ``name`` with an optional peft ``adapter``;
    ``backend`` auto takes vLLM when installed with a GPU (and no bitsandbytes quantization), else transformers. A
    model that cannot be loaded raises DataError."""
    quantized = load_in_4bit or load_in_8bit
    if backend == "auto":
        backend = "vllm" if _vllm_usable() and not quantized else "transformers"
    try:
        tokenizer = load_tokenizer(adapter if adapter and _has_tokenizer(adapter) else name)
        if backend == "vllm":
            from vllm import LLM
            from vllm.lora.request import LoRARequest

            llm = LLM(model=resolve_model(name), dtype=dtype, enable_lora=bool(adapter))
            return VllmEngine(llm, LoRARequest("adapter", 1, adapter) if adapter else None), tokenizer
        model = load_model(name, dtype, load_in_4bit, load_in_8bit, adapter=adapter)
    except (OSError, ValueError) as e:  # a missing or malformed model folder / id
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError([f"{name}: cannot load the model ({first})"]) from None
    if not quantized:
        import torch

        if torch.cuda.is_available():
            model = model.to("cuda")
    return model, tokenizer


def _vllm_usable() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _has_tokenizer(folder: str) -> bool:
    return (Path(folder) / "tokenizer_config.json").is_file()
