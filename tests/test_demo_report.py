"""The demo's results: paired intervals with a verdict in words, per-item task scores, the table of every stage
(stand-ins named), the printed results, the per-stage record, the learning-curve PNG and the output listing."""

from __future__ import annotations

import pytest

from malpyeong_grpo import demo_report as report


def test_paired_bootstrap_and_verdicts():
    before = [0.1, 0.2, 0.3, 0.2] * 10
    after = [b + 0.2 for b in before]
    up = report.paired_bootstrap(before, after)
    assert up["mean"] == pytest.approx(0.2) and up["ci95"] == pytest.approx([0.2, 0.2])
    assert report.verdict(up, "SFT").startswith("SFT helped:")
    down = report.paired_bootstrap(after, before)
    assert "WORSE" in report.verdict(down, "GRPO")
    noisy = report.paired_bootstrap([0.0, 1.0] * 10, [1.0, 0.0] * 10)
    assert noisy["ci95"][0] < 0 < noisy["ci95"][1]
    assert "did not change" in report.verdict(noisy, "GRPO") and "includes 0" in report.verdict(noisy, "GRPO")
    assert report.paired_bootstrap(before, after, seed=3) == report.paired_bootstrap(before, after, seed=3)


def test_task_scores_count_a_missing_reason_as_zero():
    items = {"a": {"exact_match": 1.0, "rouge_1": 0.5}, "b": {"exact_match": 0.0, "rouge_1": None}}
    assert report.task_scores(items, ["b", "a"]) == [0.0, 0.75]


def _stage(em: float, rouge: float) -> dict:
    scores = {"exact_match": em, "rouge_1": rouge, "bertscore": 0.8, "final": 0.4, "n_items": 2}
    scores |= {"final_official": False, "encoders": {"bertscore": {"official": False}, "bleurt": {"official": False}}}
    return {"scores": scores, "task_scores": [(em + rouge) / 2] * 2}


def test_results_table_names_stand_ins_and_shows_every_stage():
    stages = {"before": _stage(0.25, 0.2), "sft": _stage(0.5, 0.4), "grpo": _stage(0.5, 0.45)}
    text = report.results_table(stages, "t")
    assert "before" in text and "after SFT" in text and "after GRPO" in text
    assert "bertscore_standin" in text and "final_standin" in text and "(EM + ROUGE-1)/2" in text
    assert "| bertscore " not in text.replace("│", "|") and "encoders" not in text and "n_items" not in text
    assert "0.4750" in text  # (0.5 + 0.45) / 2


def test_learning_curve_png(tmp_path):
    sft_log = [{"step": s, "loss": 2.0 / s} for s in range(1, 6)] + [{"step": 5, "train_runtime": 9.0}]
    grpo_log = [
        {"step": s, "reward": 0.1 * s, "rewards/format/mean": 0.2 * s, "rewards/rouge_1/mean": None} for s in (1, 2, 3)
    ]
    rows = report.score_rows({"before": _stage(0.25, 0.2), "sft": _stage(0.5, 0.4)})
    drawn = report.plot_learning_curve(
        sft_log, grpo_log, ["format", "rouge_1"], rows, ["before", "after SFT"], tmp_path / "c.png"
    )
    assert drawn == ["reward", "format"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.smooth([1.0, 3.0, 5.0], window=2) == [1.0, 2.0, 4.0]


def _stages() -> dict:
    stages = {"before": _stage(0.25, 0.2), "sft": _stage(0.5, 0.4), "grpo": _stage(0.5, 0.45)}
    for k, v in stages.items():
        v |= {"items": {"a": {"exact_match": 1.0}}, "repairs": {"format": 1}, "seconds": 3.14, "seconds_total": 5.0}
        v["task_scores"] = {"before": [0.0, 0.5], "sft": [1.0, 0.5], "grpo": [1.0, 1.0]}[k]
    return stages


def test_changes_and_the_printed_results():
    stages = _stages()
    changes = report.stage_changes(stages, seed=0)
    assert list(changes) == ["sft-before", "grpo-sft", "grpo-before"]
    assert changes["grpo-before"]["mean"] == pytest.approx(0.75) and changes["grpo-before"]["n_items"] == 2
    assert changes["sft-before"]["verdict"].startswith("SFT ") and changes["grpo-before"]["verdict"].startswith(
        "SFT + GRPO "
    )
    text = report.results_text(stages, changes, "2 held-out items", 2)
    lines = text.splitlines()
    assert text.endswith("\n") and text.startswith(report.results_table(stages, "2 held-out items").rstrip() + "\n")
    assert lines[-5].startswith("Stand-ins: bertscore_standin, bleurt_proxy") and "not the official" in lines[-5]
    assert lines[-4] == "Paired 95% bootstrap intervals (2000 resamples of the 2 items), per-item (EM + ROUGE-1)/2:"
    assert lines[-3:] == [f"  {c['verdict']}" for c in changes.values()]


def test_stage_records_key_task_scores_by_item():
    records = report.stage_records(_stages(), ["i1", "i2"])
    assert list(records) == ["before", "sft", "grpo"]
    assert records["before"]["task_scores"] == {"i1": 0.0, "i2": 0.5} and records["before"]["task_score"] == 0.25
    assert records["sft"]["generate_s"] == 3.1 and records["sft"]["seconds"] == 5.0
    assert records["grpo"]["repairs"] == {"format": 1} and records["grpo"]["items"] == {"a": {"exact_match": 1.0}}
    assert report.mean([]) == 0.0


def test_output_listing_and_sizes(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "w.bin").write_bytes(b"x" * 1500)
    (tmp_path / "metrics.json").write_bytes(b"x" * 12)
    assert report.size_of(tmp_path / "sft") == 1500 and report.size_of(tmp_path) == 1512
    assert [report.human(n) for n in (12, 1500, 2_500_000, 3e9, 4e12)] == [
        "12 B",
        "1.50 KB",
        "2.50 MB",
        "3.00 GB",
        "4000.00 GB",
    ]
    deleted = report.output_lines(tmp_path, (), {"sft": 2_000_000, "grpo": 0})
    assert deleted == [
        f"outputs in {tmp_path.resolve()}:",
        f"  {'metrics.json':<28} {'12 B':>10}",
        f"  {'sft/':<28} {'1.50 KB':>10}",
        "  deleted the trained checkpoints (sft/ 2.00 MB, grpo/ 0 B); --keep_model keeps them",
    ]
    kept = report.output_lines(tmp_path, (tmp_path / "sft",), {})
    assert kept[-1] == f"  kept the trained checkpoints: {tmp_path / 'sft'} (1.50 KB)"
