"""Checkpoint choice by the task metric: hand-computed hold-out scores, and an SFT run on a tiny model that keeps
and ends with the checkpoint whose hold-out score is best, not the last one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from malpyeong_grpo import selection, sft
from malpyeong_grpo.configs import parse_args

RECIPE = str(Path(__file__).resolve().parents[1] / "recipes" / "method" / "sft-gemma-270m-cpu.yaml")
GOLD = '"나는 밥을 먹었다."가 옳다. 먹다는 표준어이다.'


def test_task_scores_hand_computed():
    """EM 1/2; ROUGE-1: the exact reason scores 1, '그냥' against 먹/다/는/표준어/이/다 scores 0 -> 1/2."""
    out = selection.task_scores([GOLD, '"나는 밥을 먹엇다."가 옳다. 그냥.\n잡음'], [GOLD, GOLD])
    assert out == {"exact_match": 0.5, "rouge_1": pytest.approx(0.5), "task_score": pytest.approx(0.5)}
    assert selection.task_scores([], [])["task_score"] == 0.0


def test_sft_keeps_the_checkpoint_with_the_best_task_score(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from malpyeong_grpo.trainer import MalpyeongSFTConfig

    seen: list[int] = []
    planned = {2: 0.8, 4: 0.2}  # the hold-out score of step 2 is better than that of the last step

    def fake_scores(completions, golds):
        seen.append(len(completions))
        return {"exact_match": 0.0, "rouge_1": 0.0, "task_score": planned[2 * len(seen)]}

    monkeypatch.setattr(selection, "task_scores", fake_scores)
    out = tmp_path / "sft"
    argv = ["--config", RECIPE, "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out)]
    argv += ["--use_sample_data", "true", "--num_shots", "1", "--max_steps", "4", "--learning_rate", "3e-3"]
    argv += ["--eval_steps", "2", "--save_steps", "2", "--task_eval_items", "3", "--task_eval_max_new_tokens", "4"]
    argv += ["--gradient_accumulation_steps", "1", "--warmup_steps", "0", "--freeze_embeddings", "false"]
    argv += ["--logging_steps", "1"]
    args, cfg, model_args = parse_args(argv, MalpyeongSFTConfig, "t")
    trainer = sft.run_sft(args, cfg, model_args, argv)

    assert seen == [3, 3]  # each evaluation answered the 3 hold-out items
    scores = {r["step"]: r["eval_task_score"] for r in trainer.state.log_history if "eval_task_score" in r}
    assert scores == {2: 0.8, 4: 0.2}
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    final = AutoModelForCausalLM.from_pretrained(str(out))
    best = AutoModelForCausalLM.from_pretrained(str(out / "checkpoint-2"))
    for a, b in zip(final.parameters(), best.parameters(), strict=True):
        assert torch.equal(a, b)  # the saved model is the best checkpoint, not the last step's
