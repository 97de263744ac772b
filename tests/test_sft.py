"""Supervised warm start: prompt/completion rows from the same prompts, a few SFTTrainer steps on a tiny model that
learn the gold answers (loss on the completion only), and a checkpoint GRPO can start from."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from malpyeong_grpo import sft
from malpyeong_grpo.configs import parse_args
from malpyeong_grpo.trainer import MalpyeongSFTConfig as SFTConfig

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "sft-demo-cpu.yaml")


def test_completion_rows():
    rows = [
        {"prompt": "질문: x\n답변:", "answer": '"x."가 옳다. 이유.', "id": "1"},
        {"prompt": [{"role": "user", "content": "x"}], "answer": '"y."가 옳다. 이유.', "id": "2"},
    ]
    text, chat = sft.completion_rows(rows)
    assert text == {"prompt": "질문: x\n답변:", "completion": ' "x."가 옳다. 이유.', "id": "1"}
    assert chat["completion"] == [{"role": "assistant", "content": '"y."가 옳다. 이유.'}]


def test_sft_steps_learn_the_answers_and_save(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    argv = ["--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    argv += ["--use_sample_data", "true", "--num_shots", "0", "--max_steps", "6", "--learning_rate", "3e-3"]
    argv += ["--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "4", "--warmup_steps", "0"]
    argv += ["--freeze_embeddings", "false", "--save_strategy", "no"]
    args, cfg, model_args = parse_args(argv, SFTConfig, "t")
    trainer = sft.run_sft(args, cfg, model_args, argv)

    ds = trainer.train_dataset
    row = ds[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100]
    assert 0 < len(trained) < len(row["input_ids"]) // 2  # loss on the answer only, not the prompt
    assert trainer.processing_class.decode(trained).startswith(' "')  # the answer, from its opening quote
    assert trained[-1] == trainer.processing_class.eos_token_id  # the model learns to stop
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    saved = AutoModelForCausalLM.from_pretrained(str(out))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert not torch.allclose(saved.model.embed_tokens.weight, base.model.embed_tokens.weight)
    assert json.loads((out / "log_history.json").read_text()) == trainer.state.log_history
    assert (out / "run_info.jsonl").is_file()


def test_completion_only_logits_loss_equals_trl(tiny_model_dir, tmp_path):
    """The loss with the LM head from the first answer position on equals SFTTrainer's own loss (and gradient) on
    the same batch of prompt/completion rows of different lengths."""
    from malpyeong_grpo.trainer import MalpyeongSFTConfig

    argv = ["--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(tmp_path / "o")]
    argv += ["--use_sample_data", "true", "--num_shots", "1", "--max_steps", "1", "--save_strategy", "no"]
    argv += ["--freeze_embeddings", "false", "--per_device_train_batch_size", "3"]
    args, cfg, model_args = parse_args(argv, MalpyeongSFTConfig, "t")
    trainer = sft.run_sft(args, cfg, model_args, argv)
    batch = next(iter(trainer.get_train_dataloader()))
    lengths = batch["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) > 1  # padded rows of different lengths
    n = (batch["labels"][:, 1:] != -100).sum()
    model = trainer.model

    def loss_and_grad(fn):
        model.zero_grad()
        loss = fn(model, dict(batch), num_items_in_batch=n)
        loss.backward()
        return loss.detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone()

    fast = sft.CompletionLogitsLoss.compute_loss
    ours = loss_and_grad(lambda m, b, **kw: fast(trainer, m, b, **kw))
    theirs = loss_and_grad(lambda m, b, **kw: trainer.compute_loss(m, b, **kw))  # TRL SFTTrainer's own
    assert torch.allclose(ours[0], theirs[0], atol=1e-5)
    assert torch.allclose(ours[1], theirs[1], atol=1e-6)
