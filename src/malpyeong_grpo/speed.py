"""Training-speed options for TRL's GRPOTrainer and a per-step phase profiler.

Each option is a plain function applied to a model or a trainer, so that a recipe field can switch it on:

- ``freeze_embeddings(model)``: the (tied) token embedding is not trained; no gradient, no Adam state for it.
- ``completion_only_logits()``: the LM head scores only completion positions (TRL does so on CUDA only; on CPU it
  projects every prompt position through the whole vocabulary and throws the result away).
- ``stop_at_markers(model, tokenizer)``: generation of a base model ends where its answer ends (at the start of a
  new few-shot block) instead of running on to ``max_completion_length``.
- ``set_threads(n)``: torch intra-op threads.

``StepProfiler`` splits each optimizer step's wall time into generation, rewards, forward, backward, gradient
clipping and optimizer phases, and records peak RSS.
"""

from __future__ import annotations

import functools
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

PHASES = ("generate", "rewards", "forward", "backward", "clip", "optimizer")


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (10^9 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@dataclass
class StepRecord:
    """Wall time of one optimizer step and of its phases, in seconds."""

    step: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # process CPU time (all threads): less sensitive than wall time to other load
    peak_rss_gb: dict[str, float] = field(default_factory=dict)  # process peak RSS when each phase ended


class StepProfiler(TrainerCallback):
    """Times every optimizer step of a GRPOTrainer and its phases; ``attach`` it before ``trainer.train()``."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self._acc: dict[str, float] = defaultdict(float)
        self._rss: dict[str, float] = {}
        self._t0 = 0.0
        self._c0 = 0.0
        self._t_opt = 0.0

    def attach(self, trainer: Any) -> StepProfiler:
        """Wrap the trainer's phase methods with timers and register as a callback."""
        self._wrap(trainer, "_generate", "generate")
        self._wrap(trainer, "_calculate_rewards", "rewards")
        self._wrap(trainer, "compute_loss", "forward")
        self._wrap(trainer, "_clip_grad_norm", "clip")
        self._wrap(trainer.accelerator, "backward", "backward")
        trainer.add_callback(self)
        return self

    def _wrap(self, obj: Any, name: str, phase: str) -> None:
        fn = getattr(obj, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._acc[phase] += time.perf_counter() - t
                self._rss[phase] = peak_rss_gb()

        setattr(obj, name, timed)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._acc.clear()
        self._rss = {}
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        self._t_opt = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        self._acc["optimizer"] += time.perf_counter() - self._t_opt
        self._rss["optimizer"] = peak_rss_gb()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        total = time.perf_counter() - self._t0
        phases = {p: round(self._acc.get(p, 0.0), 3) for p in PHASES}
        phases["other"] = round(total - sum(phases.values()), 3)
        cpu = round(time.process_time() - self._c0, 3)
        rss = {p: round(v, 3) for p, v in self._rss.items()}
        self.records.append(StepRecord(state.global_step, round(total, 3), phases, cpu, rss))

    def summary(self, skip: int = 1) -> dict[str, Any]:
        """Median seconds per step and per phase over the steps after the first ``skip`` (warm-up) steps."""
        recs = self.records[skip:] or self.records
        if not recs:
            return {"steps": 0}
        return {
            "steps": len(recs),
            "median_s_per_step": round(statistics.median(r.seconds for r in recs), 3),
            "median_cpu_s_per_step": round(statistics.median(r.cpu_seconds for r in recs), 3),
            "phases": {p: round(statistics.median(r.phases[p] for r in recs), 3) for p in (*PHASES, "other")},
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }


def set_threads(n: int | None) -> None:
    """Set torch's intra-op thread count (None leaves torch's default)."""
    import torch

    if n:
        torch.set_num_threads(n)


def freeze_embeddings(model: Any) -> int:
    """Stop training the input embedding (and the LM head tied to it); return the number of frozen parameters."""
    emb = model.get_input_embeddings()
    n = 0
    for p in emb.parameters():
        if p.requires_grad:
            p.requires_grad_(False)
            n += p.numel()
    return n


def completion_only_logits(enable: bool = True) -> None:
    """Make TRL's fused LM head score only the positions that carry a label (the completion tokens) on every device
    (``enable=False`` restores TRL's choice). Process-wide: it patches ``trl.trainer.utils``.

    TRL 1.16 projects only labelled positions when Triton runs (CUDA/XPU) and every position elsewhere, to keep tile
    shapes static for compilers; on CPU that projects each prompt token through the whole vocabulary, forward and
    backward, for nothing. The projection itself is TRL's chunked kernel either way (torch ops on CPU).
    """
    import trl.trainer.utils as tu

    if not hasattr(tu, "_use_triton"):
        raise RuntimeError("completion_only_logits: this TRL version has no trl.trainer.utils._use_triton to patch")
    current = tu._use_triton
    original = getattr(current, "_original", current)
    if not enable:
        tu._use_triton = original
        return
    if current is not original:
        return

    def compact(device: Any) -> bool:
        return True

    compact._original = original  # type: ignore[attr-defined]
    tu._use_triton = compact


def stop_token_ids(tokenizer: Any, markers: Sequence[str] = ("###", "\n\n\n", "\n\n\n\n")) -> list[int]:
    """Token ids that begin a new few-shot block (or a run of blank lines) in the base-model prompt."""
    ids: list[int] = []
    for m in markers:
        toks = tokenizer(m, add_special_tokens=False).input_ids
        if len(toks) == 1 and toks[0] not in ids:
            ids.append(toks[0])
    return ids


def stop_at_markers(model: Any, tokenizer: Any, markers: Sequence[str] = ("###", "\n\n\n", "\n\n\n\n")) -> list[int]:
    """Add the single-token stop markers to the model's EOS ids (before building the trainer, which reads them).

    Generation then ends a sequence where a base model starts a new few-shot block; TRL masks everything after the
    first EOS id, so the marker is the last trained token and nothing after it is. Returns the EOS id list.
    """
    gc = model.generation_config
    eos = gc.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.insert(0, tokenizer.eos_token_id)
    for tid in stop_token_ids(tokenizer, markers):
        if tid not in eos:
            eos.append(tid)
    gc.eos_token_id = eos
    return eos


def tune_malloc(mmap_threshold: int = 1 << 20, arenas: int = 2) -> bool:
    """glibc malloc: serve blocks of ``mmap_threshold`` bytes and more with mmap (returned to the OS when freed,
    instead of the dynamic threshold that grows up to 32 MB and keeps freed tensors in the heap) and cap the number
    of arenas. Lowers the peak RSS of a training step; a no-op (False) without glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_mmap_threshold, m_arena_max = -3, -8
        return bool(libc.mallopt(m_mmap_threshold, mmap_threshold)) and bool(libc.mallopt(m_arena_max, arenas))
    except (OSError, AttributeError):
        return False


def timed_call(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return (result, seconds)."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _backbone_and_head(model: Any) -> tuple[Any, Any, Any]:
    """(causal LM, its backbone, its LM head) of a model or a PeftModel around one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, base.base_model, base.get_output_embeddings()


def _cache_kwarg(backbone: Any) -> str:
    import inspect

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

    ``checkpoint_prompt``: keep only the prompt's KV cache for backward and recompute the prompt pass there
    (activation checkpointing of the prompt alone: less memory for one more prompt forward; same values).

    Rows whose prompt part (ids and mask) is identical form a group: the prompt (padding stripped) runs once with a
    KV cache, the cache is repeated for the group's completions, and only the completion tokens run again; gradients
    flow back through the shared cache into the single prompt pass. Only completion positions go through the LM head
    (TRL's chunked log-softmax kernel). Values equal the full forward's (see tests/test_speed.py).
    """
    import torch
    from trl.kernels import ChunkedLogProbFunction

    base, backbone, head = _backbone_and_head(model)
    cfg = base.config.get_text_config()
    softcap = getattr(cfg, "final_logit_softcapping", None)
    scale = getattr(cfg, "logit_scale", None) or 1.0
    cache_kw = _cache_kwarg(backbone)
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
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
        lp, ent, *_ = ChunkedLogProbFunction.apply(
            hidden[mask], head.weight, head.bias, comp[mask], temperature, 32768, softcap, scale, outputs
        )
        lp = lp.new_zeros(mask.shape).masked_scatter(mask, lp)
        ent = ent.new_zeros(mask.shape).masked_scatter(mask, ent) if ent is not None else None
        parts.append((idx, lp, ent))
    order = torch.cat([idx for idx, _, _ in parts]).argsort()
    logps = torch.cat([lp for _, lp, _ in parts])[order]
    ents = torch.cat([e for _, _, e in parts])[order] if compute_entropy else None
    return logps, ents


def share_prompt_prefix(trainer: Any, checkpoint_prompt: bool = False) -> None:
    """Route the trainer's log-prob computation (loss forward and old/ref log-probs) through
    ``prefix_shared_logps``: each group's prompt runs once, only completion positions reach the LM head; under the
    trainer's autocast, as TRL's own path. ``checkpoint_prompt``: see ``prefix_shared_logps``."""
    original = trainer._get_per_token_logps_and_entropies

    @functools.wraps(original)
    def logps(
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **extra,
    ):
        if compute_aux_loss or any(v is not None for v in extra.values()):
            return original(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **extra,
            )
        with trainer.accelerator.autocast():
            lp, ent = prefix_shared_logps(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                trainer.temperature,
                compute_entropy=compute_entropy,
                checkpoint_prompt=checkpoint_prompt,
            )
        return lp, ent, None

    trainer._get_per_token_logps_and_entropies = logps


def share_prefill(model: Any) -> None:
    """Make ``model.generate`` run a batch of identical prompts (a GRPO group) through the prompt once.

    The prompt minus its last token runs once with a KV cache, the cache is repeated for the batch, and
    ``generate`` continues from it exactly as it would have from its own prefill. Batches of different prompts
    generate as before.
    """
    import torch

    original = model.generate

    @functools.wraps(original)
    def generate(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        shared = (
            ids is not None
            and not args
            and ids.shape[0] > 1
            and ids.shape[1] > 1
            and kwargs.get("cache") is None
            and kwargs.get("past_key_values") is None
            and (mask is None or bool(mask.all()))
            and bool((ids == ids[:1]).all())
        )
        if not shared:
            return original(*args, **kwargs)
        with torch.no_grad():
            out = model(input_ids=ids[:1, :-1], use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(ids.shape[0])
        return original(**kwargs, cache=cache)

    model.generate = generate


def bf16_generation(model: Any) -> Any:
    """Sample with a bfloat16 copy of the model (half the weight traffic per decoded token on CPU).

    The copy is refreshed from the trained parameters before each ``generate`` call (only the trainable ones,
    frozen ones never change). Call before the trainer patches the model; not for PEFT models. Returns the copy.
    """
    import copy

    import torch

    # deep-copy with each parameter already cast (tied ones stay tied): no transient float32 copy of the model
    memo = {id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False) for p in model.parameters()}
    gen = copy.deepcopy(model, memo).eval()
    pairs = [(p, gen.get_parameter(n)) for n, p in model.named_parameters() if p.requires_grad]

    def generate(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            for src, dst in pairs:
                dst.copy_(src)
        return gen.generate(*args, **kwargs)  # looked up now: share_prefill(gen) may wrap it

    model.generate = generate
    return gen
