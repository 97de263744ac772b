"""The computations behind the training-speed options; ``trainer.MalpyeongGRPOTrainer`` switches them on from its
config fields (docs/throughput.md). Plain functions on a model, a tokenizer or the process, nothing patched:

- ``prefix_shared_logps``: per-token log-probs with each group's prompt through the backbone once and only the
  completion positions through the LM head (``share_prompt_prefix``, ``checkpoint_prompt``);
- ``shared_prefill_generate``: ``generate`` for a batch of identical prompts (a GRPO group) with the prompt
  prefilled once (``share_prefill``);
- ``BF16Generator``: a bfloat16 copy of the policy to sample from, refreshed from the trained weights
  (``bf16_generation``);
- ``stop_token_ids``: the single tokens that open one of ``prompts.STOP_MARKERS`` (``stop_at_markers``);
- ``freeze_embeddings``, ``set_threads``, ``tune_malloc``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from .prompts import STOP_MARKERS


def set_threads(n: int | None) -> None:
    """Set torch's intra-op thread count (None leaves torch's default)."""
    import torch

    if n:
        torch.set_num_threads(n)


def _libc() -> Any:
    """The C library (``ctypes.CDLL``), or None where it cannot be found or loaded."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def tune_malloc(mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """glibc malloc: serve blocks of ``mmap_threshold`` bytes and more with mmap (returned to the OS when freed,
    instead of the dynamic threshold that grows up to 32 MB and keeps freed tensors in the heap) and cap the number
    of arenas. Lowers the peak RSS of a training step; a no-op (False) without glibc."""
    libc = _libc()
    try:
        m_mmap_threshold, m_arena_max = -3, -8
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(libc.mallopt(m_arena_max, arenas))
    except AttributeError:  # no C library, or one without mallopt
        return False


def release_memory() -> None:
    """Collect garbage and hand the heap's free pages back to the OS (glibc ``malloc_trim``; elsewhere only the
    collection): between the stages of one process, so that a stage's peak does not stay resident after it."""
    import gc

    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


def freeze_embeddings(model: Any) -> int:
    """Stop training the input embedding (and the LM head tied to it); return the number of parameters frozen."""
    n = 0
    for p in model.get_input_embeddings().parameters():
        if p.requires_grad:
            p.requires_grad_(False)
            n += p.numel()
    return n


def stop_token_ids(tokenizer: Any, markers: Sequence[str] = STOP_MARKERS, max_newlines: int = 32) -> list[int]:
    """Ids of the single tokens that open a stop marker (``prompts.STOP_MARKERS``, where ``extract_answer`` cuts a
    completion): a marker's text after its leading newline ('###' of '\\n###'), and for a marker of newlines alone
    each run of at least that many newlines. Markers that are no single token of this tokenizer are left out."""
    texts: list[str] = []
    for marker in markers:
        body = marker.lstrip("\n")
        texts += [body] if body else [marker + "\n" * k for k in range(max(0, max_newlines - len(marker)) + 1)]
    ids: list[int] = []
    for text in texts:
        toks = tokenizer(text, add_special_tokens=False).input_ids
        if len(toks) == 1 and toks[0] not in ids:
            ids.append(toks[0])
    return ids


def shared_prefill_generate(model: Any, input_ids: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, bool]:
    """(``model.generate`` output, whether the prefill was shared) for a batch of prompts.

    When every row holds the same unpadded prompt (a GRPO group), the prompt minus its last token runs once with a
    KV cache, the cache is repeated for the batch, and ``generate`` continues from it exactly as it would have from
    its own prefill (same tokens, same samples). Other batches generate as usual.
    """
    import torch

    shared = (
        input_ids.shape[0] > 1
        and input_ids.shape[1] > 1
        and bool(attention_mask.all())
        and bool((input_ids == input_ids[:1]).all())
    )
    if not shared:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs), False
    with torch.no_grad():
        out = model(input_ids=input_ids[:1, :-1], use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None) or out.past_key_values
    cache.batch_repeat_interleave(input_ids.shape[0])
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **kwargs), True


class BF16Generator:
    """A bfloat16 copy of a model to sample from (half the weight traffic per decoded token on CPU).

    ``refresh`` copies the trainable parameters of the trained model into it (frozen ones never change); the trainer
    calls it before each generation. Not for PEFT models.
    """

    def __init__(self, model: Any) -> None:
        import copy

        import torch

        # deep-copy with each parameter already cast (tied ones stay tied): no transient float32 copy of the model
        memo = {
            id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False) for p in model.parameters()
        }
        self.model = copy.deepcopy(model, memo).eval()
        self._pairs = [(p, self.model.get_parameter(n)) for n, p in model.named_parameters() if p.requires_grad]

    def refresh(self) -> Any:
        """Copy the trained parameters into the bfloat16 copy; return the copy."""
        import torch

        with torch.no_grad():
            for src, dst in self._pairs:
                dst.copy_(src)
        return self.model


def _backbone_and_head(model: Any) -> tuple[Any, Any, Any]:
    """(causal LM, its backbone, its LM head) of a model or a PeftModel around one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, base.base_model, base.get_output_embeddings()


def _cache_kwarg(backbone: Any) -> str:
    return "cache" if "cache" in inspect.signature(backbone.forward).parameters else "past_key_values"


def _checkpointed_prompt_pass(backbone: Any, prompt: Any, config: Any) -> tuple[Any, Any]:
    """(last hidden state, KV cache) of the prompt, with the pass checkpointed: autograd keeps the cache tensors,
    not the pass's activations, and runs the pass again in backward."""
    from torch.utils.checkpoint import checkpoint
    from transformers import DynamicCache

    def run(ids: Any) -> tuple[Any, ...]:
        out = backbone(input_ids=ids, use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        return (out.last_hidden_state[:, -1:], *[t for layer in cache.layers for t in (layer.keys, layer.values)])

    last, *kv = checkpoint(run, prompt, use_reentrant=False)
    cache = DynamicCache(ddp_cache_data=list(zip(kv[::2], kv[1::2], strict=True)), config=config)
    for layer in cache.layers:  # sliding layers keep their last window - 1 tokens; they saw the whole prompt
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = prompt.shape[1]
    return last, cache


def prefix_shared_logps(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    logits_to_keep: int,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    checkpoint_prompt: bool = False,
) -> tuple[Any, Any]:
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens, running each distinct prompt
    through the backbone once per group instead of once per completion.

    Rows whose prompt part (ids and mask) is identical form a group: the prompt (padding stripped) runs once with a
    KV cache, the cache is repeated for the group's completions, and only the completion tokens run again; gradients
    flow back through the shared cache into the single prompt pass. Only completion positions go through the LM head
    (TRL's chunked log-softmax kernel, ``trl_compat.chunked_logprobs``). Values equal the full forward's of each
    group without its padding (tests/test_speed.py).

    ``checkpoint_prompt``: keep only the prompt's KV cache for backward and recompute the prompt pass there
    (activation checkpointing of the prompt alone: less memory for one more prompt forward; same values).
    """
    import torch

    from .trl_compat import chunked_logprobs

    base, backbone, head = _backbone_and_head(model)
    cfg = base.config.get_text_config()
    softcap = getattr(cfg, "final_logit_softcapping", None)
    scale = getattr(cfg, "logit_scale", None) or 1.0
    cache_kw = _cache_kwarg(backbone)
    p_len = input_ids.shape[1] - logits_to_keep
    groups: dict[tuple, list[int]] = {}
    prompt_rows = torch.cat([input_ids[:, :p_len], attention_mask[:, :p_len]], dim=1).tolist()
    for i, row in enumerate(prompt_rows):
        groups.setdefault(tuple(row), []).append(i)
    parts = []  # (row indices, log-probs, entropies) per group
    for rows in groups.values():
        idx = torch.tensor(rows, device=input_ids.device)
        keep = attention_mask[rows[0], :p_len].bool()
        prompt = input_ids[rows[0], :p_len][keep].unsqueeze(0)
        comp, comp_mask = input_ids[idx, p_len:], attention_mask[idx, p_len:]
        n, q_len = len(rows), prompt.shape[1]
        if checkpoint_prompt and torch.is_grad_enabled():
            last, cache = _checkpointed_prompt_pass(backbone, prompt, base.config)
        else:
            first = backbone(input_ids=prompt, use_cache=True)
            last, cache = first.last_hidden_state[:, -1:], getattr(first, "cache", None) or first.past_key_values
        cache.batch_repeat_interleave(n)
        second = backbone(
            input_ids=comp,
            attention_mask=torch.cat([comp_mask.new_ones((n, q_len)), comp_mask], dim=1),
            position_ids=torch.arange(q_len, q_len + logits_to_keep, device=comp.device).expand(n, -1),
            use_cache=True,
            **{cache_kw: cache},
        )
        # the hidden state before each completion token predicts it: the prompt's last, then the completion's own
        hidden = torch.cat([last.expand(n, 1, -1), second.last_hidden_state[:, :-1]], 1)
        mask = comp_mask.bool()
        lp, ent = chunked_logprobs(hidden[mask], head, comp[mask], temperature, softcap, scale, compute_entropy)
        lp = lp.new_zeros(mask.shape).masked_scatter(mask, lp)
        ent = ent.new_zeros(mask.shape).masked_scatter(mask, ent) if ent is not None else None
        parts.append((idx, lp, ent))
    order = torch.cat([idx for idx, _, _ in parts]).argsort()
    logps = torch.cat([lp for _, lp, _ in parts])[order]
    ents = torch.cat([e for _, _, e in parts])[order] if compute_entropy else None
    return logps, ents
