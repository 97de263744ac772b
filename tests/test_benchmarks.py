"""The benchmarks end to end: train_step.py on the tiny model (both sides in subprocesses), retrieval_holdout.py on
the official training split."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str = "train_step"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _common(tiny_model_dir, data_dir):
    return [
        "--recipe",
        str(ROOT / "recipes" / "demo-cpu.yaml"),
        "--generations",
        "2",
        "--max-completion-length",
        "8",
        "--override",
        f"model_name_or_path={tiny_model_dir}",
        f"data_dir={data_dir}",
        "max_items=8",
        "num_shots=0",
    ]


def _worker(tiny_model_dir, data_dir, *argv: str) -> dict:
    bench = _load()
    return bench.worker(bench.parse_args([*_common(tiny_model_dir, data_dir), *argv]))


@pytest.mark.slow
def test_side_by_side_reports_both_sides_and_the_ratio(tmp_path, tiny_model_dir, data_dir, capsys):
    bench = _load()
    out = tmp_path / "train_step.json"
    argv = [*_common(tiny_model_dir, data_dir), "--steps", "1", "--warmup", "1", "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.read_text())
    trl, ours = res["runs"]["trl"][0], res["runs"]["ours"][0]
    # plain TRL keeps its defaults; ours is the recipe (speed fields on)
    assert trl["settings"]["gradient_checkpointing"] is True and trl["settings"]["learning_rate"] == 1e-6
    assert ours["settings"]["gradient_checkpointing"] is False
    assert trl["trainable_params"] > ours["trainable_params"]  # the recipe freezes the tied embedding
    for side in (trl, ours):
        assert len(side["steps_s"]) == 2 and side["steps"] == 1 and side["peak_rss_gb"] > 0
    summary = res["summary"]
    assert res["ratio"] == pytest.approx(summary["ours"]["median_s_per_step"] / summary["trl"]["median_s_per_step"])
    assert "ratio ours/TRL" in capsys.readouterr().out


@pytest.mark.slow
def test_learning_mode_scores_the_holdout_after_the_budget(tiny_model_dir, data_dir):
    res = _worker(tiny_model_dir, data_dir, "--worker", "trl", "--learning", "1", "--heldout", "3")
    assert res["heldout_items"] == 3 and 0.0 <= res["heldout_reward"] <= 1.0
    assert set(res["heldout_by_reward"]) == {"format"}
    assert res["steps"] >= 1 and res["settings"]["learning_rate"] == 1e-5  # aligned with the recipe


@pytest.mark.slow
def test_learning_zero_scores_the_untrained_policy(tiny_model_dir, data_dir):
    res = _worker(tiny_model_dir, data_dir, "--worker", "ours", "--learning", "0", "--heldout", "2")
    assert res["steps"] == 0 and res["rewards"] == [] and res["heldout_items"] == 2


def test_unknown_option_is_refused(tiny_model_dir, data_dir):
    with pytest.raises(SystemExit, match="unknown options"):
        _worker(tiny_model_dir, data_dir, "--worker", "ours", "--opts", "warp_drive")


def test_retrieval_holdout(data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["--data-dir", str(data_dir), "--holdout", "60", "--methods", "bm25,learned", "--out", str(out)]
    assert _load("retrieval_holdout").main(argv) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))["recall"]
    assert {"bm25 / rules", "learned / rules + train examples", "learned, oracle category"} <= set(rec)
    learned, oracle = rec["learned / rules + train examples"], rec["learned, oracle category"]
    assert learned["n_items"] == oracle["n_items"] == 60
    # dropping rules of other categories can only move the gold rule up
    assert all(learned[f"recall@{k}"] <= oracle[f"recall@{k}"] for k in (1, 5, 10, 30))
    assert sum(m["items"] for m in rec["learned, R@5 by gold category"].values()) == 60
    assert "oracle category" in capsys.readouterr().out
