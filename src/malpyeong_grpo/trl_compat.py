"""The one module that touches TRL's private API (TRL 1.16.0, the version pinned in pyproject.toml).

TRL's ``GRPOTrainer`` has no public hooks for what the speed options change, so :class:`HookedGRPOTrainer` overrides
two of its private methods and hands the work to named hooks, which ``trainer.MalpyeongGRPOTrainer`` implements:

- ``_get_per_token_logps_and_entropies`` (every log-prob pass: loss, old and reference log-probs): to
  ``completion_logps`` when ``logps_hook`` is set, else to TRL's own pass, with TRL's fused LM head scoring completion
  positions only (``trl.trainer.utils._use_triton``, for the duration of the call) when ``completion_only_head`` is set;
- ``_generate_single_turn`` (the transformers generation path): to ``generate_batch`` when ``generation_hook`` is set.

It also extends the ids TRL cuts completions at (``GRPOTrainer.eos_token_ids``), wraps TRL's chunked log-prob kernel
for the shared-prefix pass, and names the trainer methods the step profiler times. An option that needs any of this
calls :func:`require_pinned_trl` first: another TRL version fails with :class:`TRLVersionError` instead of silently
running TRL's own path (or a changed one). With every hook off, :class:`HookedGRPOTrainer` is TRL's ``GRPOTrainer``.

:func:`reset_accelerator_state` is the one reach into the private state of accelerate, which TRL's trainers build on.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from trl import GRPOTrainer

from .files import DataError

PINNED_TRL = "1.16.0"  # pyproject.toml pins trl==1.16.0 (tests/test_trainer.py checks they agree)

# trainer methods that carry each phase of a GRPO step (speed profiler; ``backward`` is the accelerator's)
PHASE_METHODS = {
    "generate": "_generate",
    "rewards": "_calculate_rewards",
    "forward": "compute_loss",
    "clip": "_clip_grad_norm",
}


class TRLVersionError(DataError):
    """An option relies on internals of the pinned TRL and another TRL version is installed."""


def installed_trl() -> str:
    """The installed TRL version."""
    import trl

    return trl.__version__


def require_pinned_trl(options: Iterable[str]) -> None:
    """Raise :class:`TRLVersionError` when ``options`` (names of switched-on options that use TRL internals) are
    not empty and the installed TRL is not the pinned one."""
    options = list(options)
    if options and installed_trl() != PINNED_TRL:
        raise TRLVersionError(
            [
                f"{', '.join(options)}: built on TRL {PINNED_TRL}'s private GRPOTrainer internals, but TRL "
                f"{installed_trl()} is installed; install trl=={PINNED_TRL} (pip install -e .) or switch "
                f"{'it' if len(options) == 1 else 'them'} off"
            ]
        )


def reset_accelerator_state() -> None:
    """Forget accelerate's process-wide state, so that the next trainer of this process may choose another mixed
    precision (the demo's SFT stage runs under bf16 autocast, its GRPO stage in float32); accelerate otherwise raises
    "AcceleratorState has already been initialized and cannot be changed". The process state is set up again at
    once with its defaults: configurations built before the reset share it (accelerate's states share one dict)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState()


@contextlib.contextmanager
def completion_only_lm_head(on_use: Callable[[], None] = lambda: None) -> Iterator[None]:
    """While active, TRL's fused LM head projects only the positions that carry a label (the completion tokens)
    on every device; ``on_use`` is called each time the head takes that decision.

    TRL 1.16 does so only where Triton runs (CUDA/XPU) and projects every position elsewhere, to keep tile shapes
    static for compilers; on a CPU that sends each prompt token through the whole vocabulary, forward and backward,
    for nothing. The values are the same either way (TRL's chunked kernel on the same rows).
    """
    import trl.trainer.utils as tu

    original = tu._use_triton

    def compact(device: Any) -> bool:
        on_use()
        return True

    tu._use_triton = compact
    try:
        yield
    finally:
        tu._use_triton = original


def chunked_logprobs(
    hidden: Any, head: Any, labels: Any, temperature: float, softcap: float | None, scale: float, entropy: bool
) -> tuple[Any, Any]:
    """(log-probs, entropies or None) of ``labels`` under ``head`` applied to ``hidden`` (rows x hidden size), with
    TRL's chunked log-softmax kernel and chunk size (never materialises rows x vocabulary logits)."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    outputs = ("log_probs", "entropy") if entropy else ("log_probs",)
    lp, ent, *_ = ChunkedLogProbFunction.apply(
        hidden, head.weight, head.bias, labels, temperature, _CHUNKED_LOGPROB_CHUNK_SIZE, softcap, scale, outputs
    )
    return lp, (ent if entropy else None)


def add_stop_token_ids(trainer: GRPOTrainer, ids: Iterable[int]) -> list[int]:
    """Make TRL end completions at ``ids`` as at an EOS: the completion mask stops after the first of them, and a
    completion ending in one counts as terminated, not clipped. Returns the trainer's stop ids."""
    trainer.eos_token_ids = [*trainer.eos_token_ids, *(i for i in ids if i not in trainer.eos_token_ids)]
    return trainer.eos_token_ids


class HookedGRPOTrainer(GRPOTrainer):
    """TRL 1.16's ``GRPOTrainer`` with its log-prob pass and its transformers generation routed to hooks.

    Subclasses set ``logps_hook`` / ``completion_only_head`` / ``generation_hook`` (all off here) and implement
    :meth:`completion_logps` and :meth:`generate_batch`; ``speed_calls`` counts the calls that took each route.
    """

    logps_hook = False
    completion_only_head = False
    generation_hook = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.speed_calls: Counter[str] = Counter()
        super().__init__(*args, **kwargs)

    def completion_logps(
        self, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int, compute_entropy: bool
    ) -> tuple[Any, Any]:
        """(per-token log-probs, entropies or None) of the last ``logits_to_keep`` tokens (``logps_hook``)."""
        raise NotImplementedError

    def generate_batch(self, model: Any, input_ids: Any, attention_mask: Any, generation_config: Any) -> Any:
        """Prompt + completion ids for a left-padded batch of prompts (``generation_hook``)."""
        raise NotImplementedError

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: Any,
        attention_mask: Any,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **extra: Any,
    ) -> tuple[Any, Any, Any]:
        if self.logps_hook:
            passed = [k for k, v in extra.items() if v is not None] + (["compute_aux_loss"] * compute_aux_loss)
            if passed:  # multimodal inputs or an MoE auxiliary loss: not what the hook computes
                raise RuntimeError(
                    f"the log-prob hook handles text-only models without an auxiliary loss; TRL passed "
                    f"{', '.join(passed)} (switch share_prompt_prefix off)"
                )
            self.speed_calls["completion_logps"] += 1
            with self.accelerator.autocast():
                logps, entropies = self.completion_logps(
                    model, input_ids, attention_mask, logits_to_keep, compute_entropy
                )
            return logps, entropies, None
        args = (model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss)
        if not self.completion_only_head:
            return super()._get_per_token_logps_and_entropies(*args, **extra)

        def used() -> None:
            self.speed_calls["completion_only_head"] += 1

        with completion_only_lm_head(used):
            return super()._get_per_token_logps_and_entropies(*args, **extra)

    def _generate_single_turn(
        self, prompt_ids: list, images: Any, multimodal_fields: dict, num_generations: int, has_tool_images=False
    ) -> tuple[list[list[int]], Any]:
        if not self.generation_hook:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if self.use_vllm or self.use_transformers_continuous_batching or images is not None or multimodal_fields:
            raise RuntimeError("the generation hook handles text-only transformers generation (no vLLM, no images)")
        import torch
        from trl.extras.profiling import profiling_context
        from trl.models import unwrap_model_for_generation
        from trl.trainer.utils import pad

        # TRL 1.16's transformers path, with generate_batch in place of unwrapped_model.generate
        device = self.accelerator.device
        tensors = [torch.tensor(ids) for ids in prompt_ids]
        pad_id, multiple = self._tokenizer.pad_token_id, self.pad_to_multiple_of
        ids = pad(tensors, padding_value=pad_id, padding_side="left", pad_to_multiple_of=multiple).to(device)
        mask = pad(
            [torch.ones_like(t) for t in tensors], padding_value=0, padding_side="left", pad_to_multiple_of=multiple
        ).to(device)
        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            self.speed_calls["generate_batch"] += 1
            out = self.generate_batch(unwrapped_model, ids, mask, self.generation_config)
        completion_ids = out[:, ids.size(1) :]
        # keep each completion up to and including its first stop id, as TRL does
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=device))
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long, device=device)
        eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
        keep = torch.arange(is_eos.size(1), device=device).expand(is_eos.size(0), -1) <= eos_idx.unsqueeze(1)
        return [c[m].tolist() for c, m in zip(completion_ids.cpu(), keep.cpu(), strict=True)], None
