"""GRPO training (TRL ``GRPOTrainer``) with the competition's metrics as rewards: ``malpyeong-grpo train``.

``malpyeong-grpo train --config recipes/demo-cpu.yaml [--any_field value ...]`` builds the prompt dataset from the
training split (minus a validation holdout; few-shot examples from the training part only, same question type, never
the item itself; optional rule context), loads the model (HF id or folder, ``embedded``, ``.gguf``; LoRA/QLoRA via
``--use_peft``/``--load_in_4bit``), trains, and writes a normal checkpoint into ``output_dir`` together with
``run_info.jsonl`` (resolved config, package versions, git commit; one line per launch) and ``log_history.json``
(``trainer.state.log_history``, rewritten at every log). ``--resume_from_checkpoint last`` (or a checkpoint folder)
continues a killed run. Works under ``accelerate launch`` and with ``--use_vllm`` when vLLM is installed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .configs import ScriptArguments, parse_args, run_record, write_run_record
from .data import Item, default_data_dir, holdout_split, load_items, sample_items, split_path
from .files import DataError, write_json
from .prompts import build_prompt, has_chat_template
from .shots import ShotSelector

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- data


def training_items(args: ScriptArguments) -> tuple[list[Item], str]:
    """The answered training items and where they came from: ``train_file``, else the official train split of
    ``data_dir`` (or the default data folder), else the package's sample set."""
    if args.train_file:
        return load_items(args.train_file, require_answer=True), str(args.train_file)
    if not args.use_sample_data:
        data_dir = args.data_dir or default_data_dir()
        if data_dir is not None:
            path = split_path("train", data_dir)
            return load_items(path, require_answer=True), str(path)
    return sample_items(), "sample set (malpyeong_grpo/sample_data.json)"


def use_chat(args: ScriptArguments, tokenizer: Any) -> bool:
    """Whether prompts are chat messages (``prompt_format`` auto: when the tokenizer has a chat template)."""
    if args.prompt_format == "chat" and not has_chat_template(tokenizer):
        raise DataError(["prompt_format chat: the tokenizer has no chat template (use auto or text)"])
    return {"auto": has_chat_template(tokenizer), "chat": True, "text": False}[args.prompt_format]


def rule_contexts(
    args: ScriptArguments, items: Sequence[Item], include_gold: bool, pool: Sequence[Item] = ()
) -> dict[str, Any]:
    """Rule context per item id (issue 5's ``retrieval.build_contexts``); empty unless ``rules_file`` is set. The
    labelled items of ``pool`` (the training part) are retrieval examples: an item never sees its own label
    (leave-one-out; ``learned``: cross-fitting)."""
    if not args.rules_file or not items:
        return {}
    from .contexts import build_contexts

    return build_contexts(
        list(items),
        args.rules_file,
        retrieved_path=args.retrieved_file,
        labels_path=args.labels_file,
        k=args.num_contexts,
        include_gold=include_gold,
        seed=args.split_seed,
        method=args.retrieval_method,
        examples=pool,
    )


def prompt_rows(
    items: Sequence[Item],
    pool: Sequence[Item],
    args: ScriptArguments,
    tokenizer: Any,
    contexts: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Dataset rows: ``prompt`` (text or messages), ``answer`` (gold), ``id``, ``question_type`` and, with rule
    context, ``gold_rule``, ``gold_rule_id`` and ``rule_ids``."""
    chat = use_chat(args, tokenizer)
    shots = ShotSelector(pool, args.shot_method, args.shot_seed)
    rows = []
    for item in items:
        ctx = (contexts or {}).get(item.id)
        row: dict[str, Any] = {
            "prompt": build_prompt(
                item,
                shots.select(item, args.num_shots),
                contexts=ctx.texts if ctx else (),
                tokenizer=tokenizer,
                chat=chat,
            ),
            "answer": item.answer or "",
            "id": item.id,
            "question_type": item.question_type,
            "question": item.question,
        }
        if contexts is not None and args.rules_file:
            row["gold_rule"] = (ctx.gold_rule_text if ctx else None) or ""
            row["gold_rule_id"] = (ctx.gold_rule_id if ctx else None) or ""
            row["rule_ids"] = list(ctx.rule_ids) if ctx else []
        rows.append(row)
    return rows


def split_rows(
    args: ScriptArguments, tokenizer: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Prompt rows of the training items and of their hold-out (GRPO and SFT both start from them), and a
    description of the data."""
    items, source = training_items(args)
    train, val = holdout_split(items, args.holdout_fraction, args.split_seed)
    if args.max_items is not None:
        train = train[: args.max_items]
    if not train:
        raise DataError([f"{source}: no training items left after the holdout (fraction {args.holdout_fraction})"])
    contexts = rule_contexts(args, train, args.include_gold_context, pool=train)
    train_rows = prompt_rows(train, train, args, tokenizer, contexts)
    val_rows = prompt_rows(val, train, args, tokenizer, rule_contexts(args, val, False, pool=train)) if val else []
    info = {
        "source": source,
        "items": len(items),
        "train_items": len(train),
        "validation_items": len(val),
        "validation_ids": [it.id for it in val],
        "chat": use_chat(args, tokenizer),
        "num_shots": args.num_shots,
        "shot_method": args.shot_method,
        "rule_context": bool(args.rules_file),
    }
    return train_rows, val_rows, info


def build_datasets(args: ScriptArguments, tokenizer: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(train dataset, validation dataset or None, a description of the data) for GRPO."""
    from datasets import Dataset

    train_rows, val_rows, info = split_rows(args, tokenizer)
    return Dataset.from_list(train_rows), (Dataset.from_list(val_rows) if val_rows else None), info


# ---------------------------------------------------------------- model


def load_policy(model_args: Any, training_args: Any, args: ScriptArguments) -> tuple[Any, Any]:
    """(model, tokenizer) for training: the embedded alias and .gguf files resolved to a checkpoint folder;
    4/8-bit bases (bitsandbytes) placed per process; embeddings frozen when ``training_args.freeze_embeddings``
    (``trainer.MalpyeongGRPOConfig`` / ``MalpyeongSFTConfig``) asks and no LoRA adapter is trained."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM
    from trl import get_quantization_config

    from .models import load_tokenizer, resolve_model

    if not model_args.model_name_or_path:
        raise DataError(["model_name_or_path is required (a Hugging Face id, a folder, a .gguf file or 'embedded')"])
    with training_args.main_process_first(desc="model conversion"):
        path = resolve_model(model_args.model_name_or_path)
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        "trust_remote_code": training_args.trust_remote_code,
    }
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        # a k-bit base cannot be moved after loading: put it on this process's device
        kwargs.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    kwargs.update(training_args.model_init_kwargs or {})
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:  # a missing or malformed model folder / id
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError([f"{model_args.model_name_or_path}: cannot load the model ({first})"]) from None
    tokenizer = load_tokenizer(path)
    if training_args.freeze_embeddings and not model_args.use_peft:
        from .speed import freeze_embeddings

        frozen = freeze_embeddings(model)
        logger.info("froze the input embedding (%d parameters)", frozen)
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need inputs that require grad
    return model, tokenizer


def complete_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Whether a checkpoint folder was written to the end: the Trainer writes ``trainer_state.json`` last, so a
    folder whose state file is missing or torn (a kill mid-save) is incomplete."""
    try:
        json.loads((Path(folder) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder, or 'last'/'true' for the newest complete one in
    ``output_dir`` (a folder torn by a kill during its save is passed over)."""
    if value is None or str(value).lower() in ("", "none", "false", "no"):
        return None
    if str(value).lower() in ("last", "latest", "true", "yes"):
        found = []
        for folder in Path(output_dir).glob("checkpoint-*") if Path(output_dir).is_dir() else []:
            step = folder.name.removeprefix("checkpoint-")
            if step.isdigit() and folder.is_dir() and complete_checkpoint(folder):
                found.append((int(step), folder))
        if not found:
            raise DataError([f"{output_dir}: no complete checkpoint-* folder to resume from"])
        return str(max(found)[1])
    if not complete_checkpoint(value):
        raise DataError([f"{value}: not a complete checkpoint folder (trainer_state.json missing or torn)"])
    return str(value)


# ---------------------------------------------------------------- training


def log_history_callback() -> Any:
    """A TrainerCallback that rewrites ``<output_dir>/log_history.json`` (atomically) at every log."""
    from transformers import TrainerCallback

    class LogHistory(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                write_json(Path(args.output_dir) / "log_history.json", state.log_history)

    return LogHistory()


def reward_spread_callback(funcs: Sequence[Any]) -> Any:
    """A TrainerCallback that adds ``rewards/<name>/group_std`` to each training log: the mean within-group
    standard deviation of each reward since the last log (``rewards.group_std``; TRL's ``rewards/<name>/std`` is
    over the whole batch, across prompts)."""
    from transformers import TrainerCallback

    class RewardSpread(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or "reward" not in logs or not state.log_history:
                return
            for f in funcs:
                seen = getattr(f, "group_std", None)
                if seen:
                    state.log_history[-1][f"rewards/{f.__name__}/group_std"] = sum(seen) / len(seen)
                    seen.clear()

    return RewardSpread()


def make_trainer(
    args: ScriptArguments,
    training_args: Any,
    model_args: Any,
    callbacks: Sequence[Any] = (),
    model_and_tokenizer: tuple[Any, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A ready ``MalpyeongGRPOTrainer`` for the configuration (``training_args``: a ``MalpyeongGRPOConfig``, whose
    speed options the trainer applies) on an already loaded model when given, and the data description."""
    from trl import get_peft_config

    from . import rewards
    from .selection import with_task_eval
    from .trainer import MalpyeongGRPOTrainer, apply_process_options

    apply_process_options(training_args)  # torch threads, malloc: before any model work
    model, tokenizer = model_and_tokenizer or load_policy(model_args, training_args, args)
    with training_args.main_process_first(desc="dataset"):
        train_ds, eval_ds, info = build_datasets(args, tokenizer)
    trainer_class: type = MalpyeongGRPOTrainer
    if args.task_eval_items and eval_ds is not None:  # checkpoint choice by the task metric (selection.py)
        rows = eval_ds.select(range(min(args.task_eval_items, len(eval_ds)))).to_list()
        trainer_class = with_task_eval(MalpyeongGRPOTrainer, rows, args.task_eval_max_new_tokens)
    if training_args.eval_strategy == "no":
        eval_ds = None
    device = args.reward_device or str(training_args.device)
    scorer = rewards.PairScorer(args.bertscore_model, args.bleurt_model, device)
    note = rewards.standin_note(args.reward_funcs, scorer)
    if note and training_args.process_index == 0:
        logger.warning(note)
    params = {"max_completion_length": training_args.max_completion_length, "overlong_cache": args.overlong_cache}
    funcs = rewards.get_rewards(args.reward_funcs, scorer, params)
    trainer = trainer_class(
        model=model,
        reward_funcs=funcs,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=[reward_spread_callback(funcs), log_history_callback(), *callbacks],
    )
    return trainer, info


def train_and_save(
    trainer: Any, config: tuple[Any, Any, Any], argv: Sequence[str], info: dict[str, Any], checkpoint: str | None
) -> Path:
    """Write the run record (``config``: script, training and model arguments), train (resuming from
    ``checkpoint``), save the model and the log history to the output folder; return the folder."""
    out = Path(config[1].output_dir)
    if trainer.is_world_process_zero():
        record = run_record(list(argv), *config)
        record.update(data=info, resumed_from=checkpoint)
        write_run_record(out, record)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    if trainer.is_world_process_zero():
        write_json(out / "log_history.json", trainer.state.log_history)
    return out


def run(
    args: ScriptArguments,
    training_args: Any,
    model_args: Any,
    argv: Sequence[str] = (),
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train and save; return the trainer (its ``state.log_history`` holds every logged metric)."""
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    trainer, info = make_trainer(args, training_args, model_args, callbacks)
    out = train_and_save(trainer, (args, training_args, model_args), argv, info, checkpoint)
    if trainer.is_world_process_zero() and args.merge_lora and model_args.use_peft:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(out / "merged")
        trainer.processing_class.save_pretrained(out / "merged")
    trainer.accelerator.wait_for_everyone()
    return trainer


def train_command(argv: list[str]) -> int:
    """``malpyeong-grpo train --config recipes/<name>.yaml [--field value ...]``."""
    from .trainer import MalpyeongGRPOConfig

    if not argv:
        argv = ["--help"]
    args, training_args, model_args = parse_args(argv, MalpyeongGRPOConfig, prog="malpyeong-grpo train")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    trainer = run(args, training_args, model_args, argv)
    if trainer.is_world_process_zero():
        print(f"saved the trained model, run_info.jsonl and log_history.json to {training_args.output_dir}")
    return 0
