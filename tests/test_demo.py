"""The demo's command: stages before / SFT / after SFT / GRPO / after GRPO on a hold-out of the training data (never
dev), its settings from the two demo recipes, wall-clock budgeting, and an end-to-end run with a tiny model (the
progress lines: test_demo_progress.py; the results: test_demo_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from malpyeong_grpo import demo
from malpyeong_grpo.data import load_items, sample_items, split_path
from malpyeong_grpo.demo_progress import STAGES
from malpyeong_grpo.files import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_reads_its_recipes_and_both_stages_share_prompts():
    assert demo.recipe_path(demo.GRPO_RECIPE) == ROOT / "recipes" / "demo-cpu.yaml"
    assert demo.recipe_path(demo.SFT_RECIPE) == ROOT / "recipes" / "sft-demo-cpu.yaml"
    assert not hasattr(demo, "DEMO_RECIPE")  # one source of truth: the recipe files
    grpo = yaml.safe_load((ROOT / "recipes" / "demo-cpu.yaml").read_text(encoding="utf-8"))
    sft = yaml.safe_load((ROOT / "recipes" / "sft-demo-cpu.yaml").read_text(encoding="utf-8"))
    for key in ("num_shots", "shot_method", "shot_seed", "prompt_format"):
        assert grpo[key] == sft[key], key
    assert (grpo["num_shots"], grpo["shot_method"]) == (1, "similar")
    assert grpo["reward_funcs"] == ["format", "exact_match", "answer_similarity", "choice", "rouge_1"]
    assert (grpo["loss_type"], grpo["scale_rewards"], grpo["beta"]) == ("dapo", "none", 0.0)
    with pytest.raises(DataError, match="recipe not found"):
        demo.recipe_path("no-such-recipe.yaml")


def test_stage_arguments_set_only_data_output_seed_and_stop(tmp_path):
    argv = demo.stage_argv(Path("r.yaml"), "m", tmp_path / "o", tmp_path / "t.json", 3, None)
    pairs = dict(zip(argv[0::2], argv[1::2], strict=True))
    assert pairs["--config"] == "r.yaml" and pairs["--holdout_fraction"] == "0" and pairs["--seed"] == "3"
    assert pairs["--save_strategy"] == "no" and pairs["--disable_tqdm"] == "true" and "--max_steps" not in pairs
    assert demo.stage_argv(Path("r.yaml"), "m", tmp_path, tmp_path, 0, 5)[-2:] == ["--max_steps", "5"]


def test_precision_reaches_sft_only_and_auto_follows_the_hardware(tmp_path, monkeypatch):
    import torch

    from malpyeong_grpo import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert demo.precision_argv("float32") == []
    assert demo.precision_argv("bfloat16") == ["--bf16", "true", "--use_cpu", "true"]
    argv = demo.stage_argv(Path("r.yaml"), "m", tmp_path, tmp_path, 0, None, "bfloat16")
    assert argv[argv.index("--bf16") + 1] == "true"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(models, "native_bf16", lambda native=native: native)
        opts, _ = demo.parse_demo_args([])
        assert opts.precision == opts.eval_dtype == expected
    opts, _ = demo.parse_demo_args(["--eval-dtype", "float32"])  # the old spelling
    assert opts.precision == "float32"


def test_holdout_comes_from_training_data_never_dev(data_dir):
    train, held, info = demo.demo_data(str(data_dir), 48, seed=0)
    official = load_items(split_path("train", data_dir), require_answer=True)
    dev_ids = {it.id for it in load_items(split_path("dev", data_dir), require_answer=True)}
    assert len(train) + len(held) == len(official) and abs(len(held) - 48) <= 1
    assert not {it.id for it in held} & dev_ids and not {it.id for it in train} & dev_ids
    assert not {it.id for it in train} & {it.id for it in held}
    train, held, info = demo.demo_data(None, 48, seed=0)
    assert len(train) + len(held) == len(sample_items()) and len(held) == 48
    assert {it.question_type for it in held} == {"선택형", "교정형"}
    assert sum(it.question_type == "선택형" for it in held) == 24  # stratified
    assert info["heldout_ids"] == [it.id for it in held] and not {it.id for it in train} & set(info["heldout_ids"])
    assert demo.demo_data(None, 48, seed=0)[1] == held and demo.demo_data(None, 48, seed=1)[1] != held
    with pytest.raises(DataError, match="--eval.items"):
        demo.demo_data(None, 150, seed=0)


def test_training_budget():
    sft, grpo = demo.training_budget(left=400, eval_s=50, share=0.5)
    assert sft == grpo == pytest.approx((400 - 2 * demo.EVAL_MARGIN * 50 - demo.FINAL_S) / 2)
    assert demo.training_budget(left=10, eval_s=50, share=0.5) == (demo.MIN_TRAIN_S, demo.MIN_TRAIN_S)


def test_drop_weights_keeps_the_logs(tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_bytes(b"x" * 10)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    (tmp_path / "log_history.json").write_text("[]")
    (tmp_path / "run_info.jsonl").write_text("{}\n")
    assert demo.drop_weights(tmp_path) == 110
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log_history.json", "run_info.jsonl"]
    assert demo.drop_weights(tmp_path / "missing") == 0


def test_demo_end_to_end_with_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--model", str(tiny_model_dir), "--output-dir", str(out), "--minutes", "60", "--max-steps", "2"]
    # bfloat16: SFT under bf16 autocast, then GRPO in float32 in the same process (accelerate's state is reset)
    argv += ["--eval-items", "4", "--eval-max-new-tokens", "8", "--eval-batch-size", "4", "--precision", "bfloat16"]
    argv += ["--", "--max_completion_length", "8"]
    assert demo.demo_command(argv) == 0
    printed = capsys.readouterr().out
    for i, stage in enumerate(STAGES, 1):
        assert f"[demo {i}/7 {stage}]" in printed
    assert "{'loss'" not in printed and "'reward':" not in printed  # no raw trainer dicts
    assert printed.count("[demo 3/7 SFT] step ") == 2 and printed.count("[demo 5/7 GRPO] step ") == 2
    assert "ETA" in printed and "deleted the trained checkpoints" in printed and "--keep_model" in printed
    assert "paired 95% bootstrap" in printed.lower() and "GRPO" in printed.split("Paired 95%")[1]
    result = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert list(result["stages"]) == ["before", "sft", "grpo"]
    for stage in result["stages"].values():
        assert {"exact_match", "rouge_1", "n_items"} <= set(stage["scores"]) and stage["scores"]["n_items"] == 4
        assert list(stage["task_scores"]) == result["data"]["heldout_ids"]
    assert set(result["changes"]) == {"sft-before", "grpo-sft", "grpo-before"}
    assert all(len(c["ci95"]) == 2 and c["verdict"] for c in result["changes"].values())
    assert result["timings"]["sft_steps"] == 2 and result["timings"]["grpo_steps"] == 2
    assert 0 < result["timings"]["sft_peak_rss_gb"] <= result["timings"]["grpo_peak_rss_gb"] <= result["peak_rss_gb"]
    assert result["grpo_rewards_optimised"] == ["format", "exact_match", "answer_similarity", "choice", "rouge_1"]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "metrics.txt").read_text(encoding="utf-8") + "\n" in printed  # the printed results, as written
    assert f"outputs in {out.resolve()}:\n  grpo/ " in printed and "  metrics.json " in printed
    assert "(EM + ROUGE-1)/2" in (out / "metrics.txt").read_text(encoding="utf-8")
    held = load_items(out / "heldout_items.json", require_answer=True)
    trained = load_items(out / "train_items.json", require_answer=True)
    assert not {it.id for it in held} & {it.id for it in trained}
    for key in ("before", "sft", "grpo"):
        assert [it.id for it in load_items(out / f"predictions_{key}.json")] == [it.id for it in held]
    for stage in ("sft", "grpo"):  # logs kept, weights deleted without --keep-model
        assert (out / stage / "log_history.json").is_file() and not (out / stage / "model.safetensors").exists()
    grpo_log = json.loads((out / "grpo" / "log_history.json").read_text(encoding="utf-8"))
    assert any("rewards/exact_match/mean" in r for r in grpo_log)


def test_bad_options(tmp_path, capsys):
    from malpyeong_grpo.cli import main

    assert main(["demo", "--data-dir", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: no korean_language_rag_V1.0_train.json" in capsys.readouterr().err
    assert main(["demo", "--minutes", "0"]) == 2
    assert main(["demo", "--sft-share", "1.5"]) == 2
