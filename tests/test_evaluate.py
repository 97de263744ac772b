"""The evaluate command on the tiny offline model: report files, breakdowns by type and rule category, worst items,
comparison across runs, and the numbers checked against a direct computation."""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo.answer import exact_match, parse_answer
from malpyeong_grpo.cli import main as cli_main
from malpyeong_grpo.data import load_items, split_path
from malpyeong_grpo.evaluate import breakdown, evaluate_command, load_runs
from malpyeong_grpo.files import append_jsonl
from malpyeong_grpo.rules import parse_docx


def _argv(model_dir, data_dir, out_dir, *extra):
    return [
        "--model", str(model_dir), "--data", str(split_path("dev", data_dir)), "--out-dir", str(out_dir),
        "--limit", "12", "--max-new-tokens", "6", "--num-shots", "1", "--em-only", "--quiet", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def labels_file(data_dir, tmp_path_factory):
    """Gold-context labels for the first 12 dev items (rule ids of the real corpus; 11 labelled, 1 left out)."""
    rules = parse_docx(data_dir / "reference_rules.docx")
    by_cat: dict[str, str] = {}
    for r in rules:
        by_cat.setdefault(r.category, r.id)
    ids = [it.id for it in load_items(split_path("dev", data_dir))[:12]]
    path = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    cats = sorted(by_cat)
    for n, item_id in enumerate(ids[:11]):
        append_jsonl(path, {"id": item_id, "rule_id": by_cat[cats[n % len(cats)]]})
    return path


def test_evaluate_writes_the_report_with_breakdowns(tiny_model_dir, data_dir, tmp_path, labels_file, capsys):
    out = tmp_path / "eval"
    rules = str(data_dir / "reference_rules.docx")
    argv = _argv(tiny_model_dir, data_dir, out, "--labels", str(labels_file), "--rules", rules, "--worst", "5")
    assert evaluate_command([*argv, "--run-name", "first"]) == 0
    assert "parsed by the scorer: 12/12" in capsys.readouterr().out
    result = json.loads((out / "first" / "result.json").read_text(encoding="utf-8"))
    items = load_items(split_path("dev", data_dir))[:12]
    preds = json.loads((out / "first" / "predictions.json").read_text(encoding="utf-8"))
    assert [p["id"] for p in preds] == [it.id for it in items]
    # the numbers against a direct computation from the written predictions
    em = [exact_match(p["output"]["answer"], it.answer) for p, it in zip(preds, items, strict=True)]
    assert result["scores"]["exact_match"] == pytest.approx(sum(em) / 12)
    assert result["scores"]["parsed"] == 1.0 and result["scores"]["parsed_unrepaired"] < 1.0
    by_choice = result["scores"]["exact_match_by_choice"]  # default --choice hybrid: options were scored
    assert set(by_choice) == {"hybrid", "snap", "logprob"} and by_choice["hybrid"] == pytest.approx(sum(em) / 12)
    assert all(parse_answer(p["output"]["answer"]).pattern for p in preds)
    # per type and per category
    by_type = result["by_type"]
    assert set(by_type) == {"선택형", "교정형"}
    assert sum(row["n_items"] for row in by_type.values()) == 12
    sel = [e for e, it in zip(em, items, strict=True) if it.question_type == "선택형"]
    assert by_type["선택형"]["exact_match"] == pytest.approx(sum(sel) / len(sel))
    cats = result["by_category"]
    assert "(no label)" in cats and cats["(no label)"]["n_items"] == 1
    assert set(cats) - {"(no label)"} <= {r.category for r in parse_docx(data_dir / "reference_rules.docx")}
    assert sum(row["n_items"] for row in cats.values()) == 12
    # worst items carry gold and answers, lowest EM first
    worst = result["worst"]
    assert len(worst) == 5 and all(w["gold"] and w["prediction"] for w in worst)
    assert [w["scores"]["exact_match"] for w in worst] == sorted(w["scores"]["exact_match"] for w in worst)
    assert result["repairs"]["answers"] == 12
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Runs in this folder", "### By question type", "### By rule category", "### The 5 worst"):
        assert heading in report
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second run (other settings) is compared with the first; the first's cache is untouched
    assert evaluate_command([*argv, "--run-name", "second", "--no-repair", "--choice", "snap"]) == 0
    runs = load_runs(out)
    assert [r["run"] for r in runs] == ["first", "second"]
    second = runs[1]
    assert second["repaired"] is False and second["scores"]["parsed"] == second["scores"]["parsed_unrepaired"]
    summary = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["run"] for r in summary["runs"]] == ["first", "second"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "`first`" in report and "`second`" in report and "counted, not applied" in report


def test_evaluate_without_labels_skips_categories_and_resumes(tiny_model_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = _argv(tiny_model_dir, data_dir, out)
    assert evaluate_command(argv) == 0
    assert evaluate_command(argv) == 0  # same settings: the same run folder, everything from its cache
    text = capsys.readouterr().out
    assert "12 answers (0 generated now, 12 from" in text
    (run,) = load_runs(out)
    assert run["by_category"] is None
    assert "breakdown skipped" in (out / "report.md").read_text(encoding="utf-8")


def test_evaluate_errors_are_one_liners(tiny_model_dir, data_dir, tmp_path, capsys):
    test_file = split_path("test", data_dir)
    cases = [
        (["--data", str(test_file)], "missing key 'output.answer'"),
        (["--labels", str(tmp_path / "none.jsonl")], "file not found"),
        (["--run_name", "a b"], "--run_name"),
    ]
    for extra, message in cases:
        assert cli_main(["evaluate", *_argv(tiny_model_dir, data_dir, tmp_path / "e"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


def test_breakdown_means_skip_missing_values():
    per_item = {"a": {"em": 1.0, "r": 0.5}, "b": {"em": 0.0, "r": None}, "c": {"em": 1.0}}
    table = breakdown({"a": "x", "b": "x", "c": "y"}, per_item)
    assert table == {"x": {"n_items": 2, "em": 0.5, "r": 0.5}, "y": {"n_items": 1, "em": 1.0}}


@pytest.mark.slow
def test_evaluate_with_the_scorer(tiny_model_dir, data_dir, tmp_path):
    """The official scorer's numbers land in the result unchanged (stand-in encoders under their own keys)."""
    from malpyeong_grpo.metrics import get_suite, metric_name, score

    out = tmp_path / "eval"
    argv = [a for a in _argv(tiny_model_dir, data_dir, out) if a != "--em-only"]
    assert evaluate_command([*argv, "--run-name", "scored", "--device", "cpu"]) == 0
    result = json.loads((out / "scored" / "result.json").read_text(encoding="utf-8"))
    preds = json.loads((out / "scored" / "predictions.json").read_text(encoding="utf-8"))
    golds = {it.id: it.answer for it in load_items(split_path("dev", data_dir))[:12]}
    direct = score({p["id"]: p["output"]["answer"] for p in preds}, golds, get_suite(device="cpu"))
    for key in ("exact_match", "rouge_1", "final", "descriptive_avg"):
        key = metric_name(key, direct["encoders"])
        assert result["scores"][key] == pytest.approx(direct[key])
    assert result["scores"]["scorer"] == "malpyeong_grpo.metrics"
    assert all("rouge_1" in row for row in result["items"].values())
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "rouge_1" in report and ("stand-in" in report or direct["final_official"])
    if not direct["final_official"]:  # no stand-in number under an official name, in the result or the report
        official = {"bertscore", "bleurt", "descriptive_avg", "final"}
        rows = [result["scores"], *result["items"].values(), *(w["scores"] for w in result["worst"])]
        rows += [*result["by_type"].values()]
        assert not [k for row in rows for k, v in row.items() if k in official and isinstance(v, float)]
        assert "| final |" not in report and "final_standin" in report


def _scored_result(scores: dict, items: dict) -> dict:
    """A minimal run result as ``evaluate`` writes it, with the given scores and per-item scores."""
    return {
        "run": "r1",
        "created": "2026-01-01T00:00:00+00:00",
        "data": "dev.json",
        "command": "malpyeong-grpo evaluate ...",
        "settings": {"model": "m", "num_shots": 0, "context_k": 0, "num_beams": 1, "max_new_tokens": 8},
        "repaired": True,
        "generated": 0,
        "seconds": 0.0,
        "scores": scores,
        "repairs": {"answers": 1, "repaired": 0},
        "by_type": breakdown({"1": "교정형"}, items),
        "by_category": None,
        "worst": [],
        "items": items,
    }


STANDIN_ENCODERS = {"bertscore": {"official": False, "label": "bertscore-standin: e5"}, "bleurt": {"official": False}}
STANDIN_SCORES = {
    "exact_match": 1.0,
    "rouge_1": 0.5,
    "bertscore_standin": 0.9,
    "bleurt_proxy": 0.8,
    "descriptive_avg_standin": 0.7333,
    "final_standin": 0.8667,
    "final_official": False,
    "n_items": 1,
    "encoders": STANDIN_ENCODERS,
    "exact_match_unrepaired": 1.0,
    "parsed": 1.0,
}


def test_report_and_plot_never_show_a_standin_number_under_an_official_name(tmp_path):
    from malpyeong_grpo import evaluate

    legacy = dict(STANDIN_SCORES)  # an older result.json: stand-in aggregates under the official keys
    legacy["final"], legacy["descriptive_avg"] = legacy.pop("final_standin"), legacy.pop("descriptive_avg_standin")
    new = _scored_result(STANDIN_SCORES, {"1": {"exact_match": 1.0, "rouge_1": 0.5, "final_standin": 0.8667}})
    old = _scored_result(legacy, {"1": {"exact_match": 1.0}}) | {"run": "r0"}
    for scores in (STANDIN_SCORES, legacy):
        names = list(evaluate._metrics(scores))
        assert names[:2] == ["final_standin", "descriptive_avg_standin"], names
        assert not {"final", "descriptive_avg", "bertscore", "bleurt"} & set(names)
    cols = evaluate._metric_columns([old, new])
    assert cols[:2] == ["final_standin", "descriptive_avg_standin"] and "final" not in cols
    report = evaluate.render_report(new, [old, new])
    header = next(line for line in report.splitlines() if line.startswith("| run |"))
    assert "final_standin" in header and "| final |" not in header and "| descriptive_avg |" not in header
    row_old = next(line for line in report.splitlines() if line.startswith("| `r0`"))
    assert "86.67" in row_old  # the legacy run's stand-in final, shown under final_standin
    assert "| final | " not in report and "`final_standin` are not the official metrics" in report
    assert "| final_standin | 86.67 |" in report
    evaluate.plot_runs([old, new], tmp_path / "m.png")  # labels come from the same columns
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_official_scores_keep_the_official_names():
    from malpyeong_grpo import evaluate

    scores = {"exact_match": 1.0, "rouge_1": 0.5, "bertscore": 0.9, "bleurt": 0.8, "descriptive_avg": 0.7,
              "final": 0.85, "final_official": True, "encoders": {"bertscore": {"official": True}}}  # fmt: skip
    assert list(evaluate._metrics(scores))[:2] == ["final", "descriptive_avg"]
    assert {"bertscore", "bleurt"} <= set(evaluate._metrics(scores))
