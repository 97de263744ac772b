"""Supervised warm start (TRL ``SFTTrainer``) on the training split: ``malpyeong-grpo sft``.

Same prompts as GRPO (``train.prompt_rows``: system text, per-type instruction, few-shot examples from the training
part, optional rule context), the gold answer as the completion; the loss is on the completion only and TRL appends
the EOS token, so a base model learns to stop after its answer. The saved folder is a normal checkpoint that
``malpyeong-grpo train --model_name_or_path <it>`` starts GRPO from.

    malpyeong-grpo sft --config recipes/sft-demo-cpu.yaml [--field value ...]
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .configs import ScriptArguments, parse_args
from .train import load_policy, log_history_callback, resolve_checkpoint, split_rows, train_and_save


def completion_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """prompt/completion rows for SFTTrainer: the gold answer as an assistant message (chat prompts) or as text
    after the plain prompt's '답변:'."""
    out = []
    for row in rows:
        answer = row["answer"]
        chat = isinstance(row["prompt"], list)
        completion = [{"role": "assistant", "content": answer}] if chat else " " + answer
        out.append({"prompt": row["prompt"], "completion": completion, "id": row["id"]})
    return out


class CompletionLogitsLoss:
    """Mix into ``SFTTrainer``: the loss with the LM head applied only from the first labelled position of the batch
    on (``logits_to_keep`` as indices), summed over labelled tokens and divided by ``num_items_in_batch`` as the
    Trainer expects of a model that takes loss kwargs; equal to TRL's loss on a completion-only dataset."""

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        import torch
        import torch.nn.functional as F

        labels = inputs["labels"][:, 1:]  # position t predicts token t + 1
        labelled = (labels != -100).any(0).nonzero()
        start = int(labelled.min()) if labelled.numel() else labels.shape[1] - 1
        keep = torch.arange(start, labels.shape[1], device=labels.device)
        model_inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
        outputs = model(**model_inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits.float()
        target = labels[:, start:]
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
        )
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else (target != -100).sum().clamp(min=1))
        return (loss, outputs) if return_outputs else loss


def build_sft_datasets(args: ScriptArguments, tokenizer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, validation dataset or None, data description) in TRL's prompt/completion format."""
    from datasets import Dataset

    train_rows, val_rows, info = split_rows(args, tokenizer)
    train_ds = Dataset.from_list(completion_rows(train_rows))
    return train_ds, (Dataset.from_list(completion_rows(val_rows)) if val_rows else None), info


def run_sft(
    args: ScriptArguments, sft_args: Any, model_args: Any, argv: Sequence[str] = (), callbacks: Sequence[Any] = ()
) -> Any:
    """Train with SFTTrainer (plus ``callbacks``) and save the model; return the trainer."""
    import torch
    from datasets import Dataset
    from trl import SFTTrainer, get_peft_config

    from .selection import with_task_eval

    if sft_args.torch_num_threads:
        torch.set_num_threads(sft_args.torch_num_threads)
    checkpoint = resolve_checkpoint(sft_args.resume_from_checkpoint, sft_args.output_dir)
    model, tokenizer = load_policy(model_args, sft_args, args)
    with sft_args.main_process_first(desc="dataset"):
        train_rows, val_rows, info = split_rows(args, tokenizer)
    train_ds = Dataset.from_list(completion_rows(train_rows))
    eval_ds = Dataset.from_list(completion_rows(val_rows)) if val_rows else None
    if sft_args.eval_strategy == "no":
        eval_ds = None
    trainer_class: type = SFTTrainer
    if getattr(sft_args, "completion_only_logits", False):
        trainer_class = type("CompletionLogitsSFTTrainer", (CompletionLogitsLoss, SFTTrainer), {})
    if args.task_eval_items and val_rows:
        trainer_class = with_task_eval(trainer_class, val_rows[: args.task_eval_items], args.task_eval_max_new_tokens)
    trainer = trainer_class(
        model=model,
        args=sft_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[log_history_callback(), *callbacks],
    )
    train_and_save(trainer, (args, sft_args, model_args), argv, info, checkpoint)
    return trainer


def sft_command(argv: list[str]) -> int:
    """``malpyeong-grpo sft --config recipes/<name>.yaml [--field value ...]``."""
    from .trainer import MalpyeongSFTConfig

    if not argv:
        argv = ["--help"]
    args, sft_args, model_args = parse_args(argv, MalpyeongSFTConfig, prog="malpyeong-grpo sft")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer = run_sft(args, sft_args, model_args, argv)
    if trainer.is_world_process_zero():
        print(
            f"saved the warm-started model to {sft_args.output_dir}; start GRPO from it with "
            f"--model_name_or_path {sft_args.output_dir}"
        )
    return 0
