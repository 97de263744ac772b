"""The demo: its settings are the demo-cpu recipe's, dev stays evaluation-only, and an end-to-end run with a tiny
model writes the table, the JSON, the predictions and the learning-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from malpyeong_grpo import demo
from malpyeong_grpo.data import load_items, sample_items, split_path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo-cpu.yaml"


def test_demo_settings_are_the_recipe():
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    for key, value in demo.DEMO_RECIPE.items():
        assert recipe[key] == value, key


def test_subset_is_stratified_and_deterministic(data_dir):
    dev = load_items(split_path("dev", data_dir), require_answer=True)
    a, b = demo.subset(dev, 20, seed=1), demo.subset(dev, 20, seed=1)
    assert a == b and len(a) == 20 and a != demo.subset(dev, 20, seed=2)
    share = sum(it.question_type == "선택형" for it in dev) / len(dev)
    assert abs(sum(it.question_type == "선택형" for it in a) - 20 * share) <= 1
    assert [it.id for it in a] == [it.id for it in dev if it in a]  # file order


def test_demo_data_keeps_evaluation_out_of_training(data_dir):
    train, evaluation, info = demo.demo_data(str(data_dir), 16, seed=0)
    dev_ids = {it.id for it in load_items(split_path("dev", data_dir), require_answer=True)}
    assert len(train) == 622 and len(evaluation) == 16 and {it.id for it in evaluation} <= dev_ids
    assert not {it.answer for it in evaluation} & {it.answer for it in train}
    train, evaluation, info = demo.demo_data(None, 8, seed=0)
    assert len(train) + len(evaluation) == len(sample_items()) and len(evaluation) == 8
    assert not {it.id for it in train} & {it.id for it in evaluation}
    assert {it.question_type for it in evaluation} == {"선택형", "교정형"}
    assert info["eval_ids"] == [it.id for it in evaluation]


def test_learning_curve_png(tmp_path):
    log = [
        {"step": s, "reward": 0.1 * s, "rewards/format/mean": 0.2 * s, "rewards/final/mean": None, "loss": 0.0}
        for s in (1, 2, 3)
    ] + [{"step": 3, "train_runtime": 9.0}]
    series = demo.plot_learning_curve(log, tmp_path / "curve.png")
    assert series == ["reward", "final", "format"]
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_table():
    _, text = demo.metrics_table(
        {"exact_match": 0.25, "final": 0.3, "n_items": 4, "final_official": False, "encoders": {}},
        {"exact_match": 0.5, "final": 0.35, "n_items": 4, "final_official": False, "encoders": {}},
        "t",
    )
    assert "exact_match" in text and "+0.2500" in text and "+0.0500" in text and "+0 " in text
    assert "encoders" not in text and "final_official" not in text


def test_demo_end_to_end_with_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--model", str(tiny_model_dir), "--output-dir", str(out), "--minutes", "1", "--max-steps", "2"]
    argv += [
        "--eval-items",
        "4",
        "--eval-max-new-tokens",
        "8",
        "--",
        "--max_completion_length",
        "8",
        "--num_shots",
        "0",
    ]
    assert demo.demo_command(argv) == 0
    printed = capsys.readouterr().out
    assert all(f"[demo {i}/6]" in printed for i in range(1, 7))
    assert "held-out sample items, before and after GRPO" in " ".join(printed.split())
    result = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for side in ("before", "after"):
        assert {"exact_match", "rouge_1", "final", "n_items"} <= set(result[side]) and result[side]["n_items"] == 4
    assert result["timings"]["grpo_steps"] == 2 and result["timings"]["total_s"] > 0
    assert result["learning_curve"] == ["reward", "bertscore", "bleurt", "exact_match", "final", "format", "rouge_1"]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "exact_match" in (out / "metrics.txt").read_text(encoding="utf-8")
    evaluated = load_items(out / "predictions_after.json", require_answer=True)
    trained = load_items(out / "train_items.json", require_answer=True)
    assert [it.id for it in evaluated] == result["data"]["eval_ids"]
    assert not {it.id for it in evaluated} & {it.id for it in trained}
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "log_history.json").is_file()


def test_bad_options(tmp_path, capsys):
    from malpyeong_grpo.cli import main

    assert main(["demo", "--data-dir", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: no korean_language_rag_V1.0_train.json" in capsys.readouterr().err
    assert main(["demo", "--minutes", "0"]) == 2
