"""The project's trainer configs and its GRPO trainer: the speed options of docs/throughput.md as config fields.

- ``MalpyeongGRPOConfig(GRPOConfig)``: TRL's fields plus the speed options (recipe keys of the same names);
- ``MalpyeongSFTConfig(SFTConfig)``: TRL's fields plus ``freeze_embeddings``, ``torch_num_threads`` and
  ``completion_only_logits`` (the SFT loss's, ``sft.py``);
- ``MalpyeongGRPOTrainer``: TRL's ``GRPOTrainer`` that acts on those fields. Stop markers reach TRL through its own
  ``generation_kwargs``; the log-prob pass and the generation go through hooks that ``trl_compat`` (the only module
  touching TRL internals, version-checked) routes to. With every option off it is TRL's ``GRPOTrainer``.

``freeze_embeddings`` acts when the model is loaded (``train.load_policy``), ``torch_num_threads`` and
``tune_malloc`` on the process (:func:`apply_process_options`, before any model work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig, SFTConfig

from . import speed
from .files import DataError
from .trl_compat import HookedGRPOTrainer, add_stop_token_ids, require_pinned_trl

# options that run through TRL internals (trl_compat): they need the pinned TRL version
TRL_INTERNAL_OPTIONS = (
    "completion_only_logits",
    "share_prompt_prefix",
    "share_prefill",
    "bf16_generation",
    "stop_at_markers",
)


@dataclass
class ModelSpeedFields:
    """Speed fields shared by the GRPO and SFT configs."""

    freeze_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Do not train the input embedding (and the LM head tied to it): for gemma-3-270m that is "
            "168M of 268M parameters, so the optimizer state and update shrink by about two thirds."
        },
    )
    torch_num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (CPU)."})


@dataclass
class MalpyeongSFTConfig(ModelSpeedFields, SFTConfig):
    """TRL's ``SFTConfig``, the shared speed fields and the SFT loss's completion-only LM head (``sft.py``)."""

    completion_only_logits: bool = field(
        default=False,
        metadata={"help": "LM head from the first answer position on only (sft.CompletionLogitsLoss); exact."},
    )


@dataclass
class MalpyeongGRPOConfig(ModelSpeedFields, GRPOConfig):
    """TRL's ``GRPOConfig`` and the project's speed options (all off by default: then training is TRL's own)."""

    completion_only_logits: bool = field(
        default=False,
        metadata={"help": "LM head on completion positions only in the loss pass (TRL does so on CUDA only); exact."},
    )
    share_prompt_prefix: bool = field(
        default=False,
        metadata={"help": "Log-probs: each group's prompt runs once, its KV cache shared by the completions; exact."},
    )
    checkpoint_prompt: bool = field(
        default=False,
        metadata={
            "help": "With share_prompt_prefix: keep only the prompt's KV cache for backward and run the prompt pass "
            "again there (less memory, one more prompt forward per group); exact."
        },
    )
    share_prefill: bool = field(
        default=False, metadata={"help": "Generation: a group's identical prompts are prefilled once; exact."}
    )
    stop_at_markers: bool = field(
        default=False,
        metadata={"help": "End a base model's completion at the token that starts a new few-shot block ('###')."},
    )
    bf16_generation: bool = field(
        default=False, metadata={"help": "Sample from a bfloat16 copy of the policy (CPU: half the weight traffic)."}
    )
    tune_malloc: bool = field(
        default=False,
        metadata={"help": "glibc: large blocks via mmap (returned to the OS when freed), 2 arenas; lowers peak RSS."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint_prompt and not self.share_prompt_prefix:
            raise ValueError("checkpoint_prompt needs share_prompt_prefix")
        if (self.share_prefill or self.bf16_generation) and (
            self.use_vllm or self.use_transformers_continuous_batching
        ):
            raise ValueError("share_prefill and bf16_generation act on transformers generation, not vLLM's")

    def trl_internal_options(self) -> list[str]:
        """The switched-on options that run through TRL internals."""
        return [name for name in TRL_INTERNAL_OPTIONS if getattr(self, name)]


def apply_process_options(config: ModelSpeedFields) -> None:
    """Process-wide settings of a config: torch threads, and glibc malloc tuning when the config has it on."""
    speed.set_threads(config.torch_num_threads)
    if getattr(config, "tune_malloc", False):
        speed.tune_malloc()


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids TRL ends completions at: the tokenizer's EOS and every EOS id of the model's generation config."""
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return eos if tokenizer.eos_token_id in eos else [tokenizer.eos_token_id, *eos]


class MalpyeongGRPOTrainer(HookedGRPOTrainer):
    """TRL's ``GRPOTrainer`` with the speed options of a :class:`MalpyeongGRPOConfig`.

    ``stop_ids`` are the marker tokens completions end at (``stop_at_markers``); ``speed_calls`` counts the calls
    each option's path took (``completion_logps``, ``completion_only_head``, ``generate_batch``,
    ``shared_prefill``, ``bf16_generation``).
    """

    def __init__(
        self,
        model: Any,
        reward_funcs: Any,
        args: MalpyeongGRPOConfig,
        processing_class: Any = None,
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        from accelerate.utils import is_peft_model

        if not isinstance(args, MalpyeongGRPOConfig):
            raise TypeError(f"MalpyeongGRPOTrainer needs a MalpyeongGRPOConfig, got {type(args).__name__}")
        require_pinned_trl(args.trl_internal_options())
        if args.bf16_generation and (peft_config is not None or is_peft_model(model)):
            raise DataError(["bf16_generation does not work with use_peft"])
        self.stop_ids: list[int] = []
        if args.stop_at_markers:
            if isinstance(model, str) or processing_class is None:
                raise ValueError("stop_at_markers needs a loaded model and its tokenizer")
            tokenizer = getattr(processing_class, "tokenizer", processing_class)
            self.stop_ids = speed.stop_token_ids(tokenizer)
            # TRL's own generation settings carry the stop ids (vLLM: stop_token_ids of its SamplingParams)
            key, ids = (
                ("stop_token_ids", self.stop_ids)
                if args.use_vllm
                else ("eos_token_id", [*_eos_ids(model, tokenizer), *self.stop_ids])
            )
            args.generation_kwargs = {**(args.generation_kwargs or {}), key: ids}
        self.logps_hook = args.share_prompt_prefix
        self.completion_only_head = args.completion_only_logits and not args.share_prompt_prefix
        self.generation_hook = args.share_prefill or args.bf16_generation
        self.bf16_generator = speed.BF16Generator(model) if args.bf16_generation else None
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            processing_class=processing_class,
            peft_config=peft_config,
            **kwargs,
        )
        if self.stop_ids:  # TRL's completion mask then ends at a marker as at an EOS
            add_stop_token_ids(self, self.stop_ids)

    def completion_logps(
        self, model: Any, input_ids: Any, attention_mask: Any, logits_to_keep: int, compute_entropy: bool
    ) -> tuple[Any, Any]:
        """Per-token log-probs (and entropies) with each group's prompt run once (``share_prompt_prefix``)."""
        return speed.prefix_shared_logps(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            self.temperature,
            compute_entropy=compute_entropy,
            checkpoint_prompt=self.args.checkpoint_prompt,
        )

    def generate_batch(self, model: Any, input_ids: Any, attention_mask: Any, generation_config: Any) -> Any:
        """Sample completions from the bfloat16 copy (``bf16_generation``) and/or with the group's prompt
        prefilled once (``share_prefill``)."""
        if self.bf16_generator is not None:
            model = self.bf16_generator.refresh()
            self.speed_calls["bf16_generation"] += 1
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "generation_config": generation_config}
        if not self.args.share_prefill:
            return model.generate(**kwargs)
        out, shared = speed.shared_prefill_generate(model, **kwargs)
        self.speed_calls["shared_prefill"] += shared
        return out
