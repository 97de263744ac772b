"""Evaluation: predict + score on an answered split, broken down by question type and rule category, with the worst
items, the repairs made, and a comparison against the earlier runs in the same folder (Markdown, JSON, PNG)."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .answer import exact_match, parse_answer
from .data import Item
from .files import DataError, atomic_write_text, check_outputs, lock_path, output_lock, read_json_file, write_json
from .flags import flag
from .metrics import STANDIN_NAMES, metric_name
from .predict import Predictions, input_paths, predict_items, read_items, submission, summary_lines
from .predict_options import PredictOptions, add_predict_args, generation_settings
from .repair import CHOICE_MODES, REPAIR_KINDS, repair_answer
from .tables import markdown_table

RESULT = "result.json"
# leaderboard order; a stand-in's number sits under its own key (e.g. 'bertscore_standin'), never the official one
METRIC_ORDER = (
    "final",
    "final_standin",
    "descriptive_avg",
    "descriptive_avg_standin",
    "exact_match",
    "bleurt",
    "bleurt_proxy",
    "bertscore",
    "bertscore_standin",
    "rouge_1",
)
REASON_METRICS = ("rouge_1", "bertscore", "bertscore_standin", "bleurt", "bleurt_proxy")
# computed here, per item, for every run: EM of the repaired and of the unrepaired answers, and the scorer's parse
LOCAL = ("exact_match_repaired", "exact_match_unrepaired", "parsed", "parsed_unrepaired")
LOCAL_NAMES = ("EM with repair", "EM as generated", "parsed", "parsed as generated")


def _stand_in_key(key: str, d: Mapping[str, Any]) -> str:
    """The name a score dict's number is shown under: an official key of an older result computed with stand-ins
    (``final_official`` false; ``encoders`` say which) gets the stand-in's name (``metrics.metric_name``)."""
    if key not in STANDIN_NAMES or d.get("final_official") is not False:
        return key
    enc = d.get("encoders")
    return metric_name(key, enc) if isinstance(enc, Mapping) and enc else STANDIN_NAMES[key]


def _metrics(d: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics of a score dict (fractions), leaderboard order first; counts (``n_*``) left out; a
    stand-in's number under the stand-in's name only."""
    nums = {
        _stand_in_key(k, d): float(v)
        for k, v in d.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith("n_")
    }
    ordered = [k for k in METRIC_ORDER if k in nums] + sorted(k for k in nums if k not in METRIC_ORDER)
    return {k: nums[k] for k in ordered}


def score_predictions(pred: Predictions, em_only: bool, encoders: Mapping[str, Any]) -> dict[str, Any]:
    """Scores of the submitted answers (the official scorer, or EM alone) plus, per item, EM and parse flags of the
    answers with and without repair."""
    golds = {it.id: it.answer or "" for it in pred.items}
    preds = {it.id: a for it, a in zip(pred.items, pred.answers, strict=True)}
    repaired = [r.answer for r in pred.repairs]
    per_item: dict[str, dict[str, Any]] = {}
    for it, ans, raw, rep in zip(pred.items, pred.answers, pred.unrepaired, repaired, strict=True):
        per_item[it.id] = {
            "exact_match": exact_match(ans, golds[it.id]),
            "exact_match_repaired": exact_match(rep, golds[it.id]),
            "exact_match_unrepaired": exact_match(raw, golds[it.id]),
            "parsed": float(parse_answer(ans).pattern is not None),
            "parsed_unrepaired": float(parse_answer(raw).pattern is not None),
        }
    if pred.logprobs and any(pred.logprobs):  # the same generations repaired under each option-choice mode
        for it, raw, lp in zip(pred.items, pred.unrepaired, pred.logprobs, strict=True):
            for mode in CHOICE_MODES:
                per_item[it.id][f"exact_match_{mode}"] = exact_match(
                    repair_answer(it, raw, lp, mode).answer, golds[it.id]
                )
    scores: dict[str, Any] = {"n_items": len(pred.items)}
    if em_only:
        scores["scorer"] = "exact match only (--em_only)"
        scores["exact_match"] = _mean(v["exact_match"] for v in per_item.values())
    else:
        try:
            from .metrics import get_suite, score
        except ImportError as e:
            raise DataError([f"the scorer is not available ({e}); use --em_only"]) from None

        official = score(preds, golds, get_suite(**encoders), per_item=True)
        for item_id, vals in (official.get("items") or {}).items():
            if item_id in per_item and isinstance(vals, Mapping):
                per_item[item_id].update({k: v for k, v in vals.items() if k not in per_item[item_id]})
        scores.update({k: v for k, v in official.items() if k != "items"})
        scores["scorer"] = "malpyeong_grpo.metrics"
    for key in ("exact_match_repaired", "exact_match_unrepaired", "parsed", "parsed_unrepaired"):
        scores[key] = _mean(v[key] for v in per_item.values())
    choice = {m: _mean(v.get(f"exact_match_{m}") for v in per_item.values()) for m in CHOICE_MODES}
    if all(v is not None for v in choice.values()):
        scores["exact_match_by_choice"] = choice
    return {"scores": scores, "items": per_item}


def _mean(values: Any) -> float | None:
    vals = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(vals) / len(vals) if vals else None


def item_categories(items: Sequence[Item], rules_path: str | None, labels_path: str | None) -> dict[str, str] | None:
    """item id -> rule category (from gold-context labels and the rule corpus); None when no labels are given."""
    if not labels_path:
        return None
    from .rules import default_docx, load_labels, load_rules

    path = rules_path or default_docx()
    if path is None:
        raise DataError(["--labels needs --rules (rules.jsonl or the reference .docx) to name the categories"])
    category = {r.id: r.category for r in load_rules(path)}
    labels = load_labels(labels_path)
    unknown = sorted({labels[it.id] for it in items if it.id in labels and labels[it.id] not in category})
    if unknown:
        raise DataError([f"{labels_path}: rule id {u!r} is not in {path}" for u in unknown[:5]])
    return {it.id: category[labels[it.id]] if it.id in labels else "(no label)" for it in items}


def breakdown(groups: Mapping[str, str], per_item: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean of every per-item metric within each group (item id -> group name), with the group's size."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(set(groups.values())):
        ids = [i for i, g in groups.items() if g == name]
        keys = dict.fromkeys(k for i in ids for k in per_item[i])
        row: dict[str, Any] = {"n_items": len(ids)}
        row.update({k: _mean(per_item[i].get(k) for i in ids) for k in keys})
        out[name] = row
    return out


def _item_quality(vals: Mapping[str, Any]) -> tuple[float, float]:
    reason = _mean(v for k, v in vals.items() if k in REASON_METRICS)
    return float(vals.get("exact_match", 0.0)), reason if reason is not None else 0.0


def worst_items(pred: Predictions, per_item: Mapping[str, Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` items that scored lowest (EM first, then the mean of the reason metrics), with gold and answers."""
    rows = []
    for it, ans, raw, rep in zip(pred.items, pred.answers, pred.unrepaired, pred.repairs, strict=True):
        rows.append(
            {
                "id": it.id,
                "question_type": it.question_type,
                "question": it.question,
                "gold": it.answer,
                "prediction": ans,
                "generated": raw,
                "repairs": list(rep.kinds),
                "scores": dict(per_item[it.id]),
            }
        )
    rows.sort(key=lambda r: (*_item_quality(r["scores"]), r["id"]))
    return rows[:n]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(text.rstrip("/")).name).strip("-") or "model"


def run_name(opts: PredictOptions, data: str | Path) -> str:
    """A run's folder name: model (+ adapter) and a digest of the options that change the predictions of ``data``."""
    key = {**generation_settings(opts), "data": str(data), "limit": opts.limit}
    key.update(no_repair=opts.no_repair, choice=opts.choice)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = _slug(opts.model_name) + (f"+{_slug(opts.adapter)}" if opts.adapter else "")
    return f"{name}-{digest}"


def _run_problem(run: Any) -> str | None:
    """Why an earlier run's result cannot go into the comparison, or None when it can."""
    if not isinstance(run, dict):
        return f"expected a JSON object, got {type(run).__name__}"
    scores = run.get("scores")
    if not isinstance(scores, dict):
        return "'scores' is not an object"
    for key in (*METRIC_ORDER, *LOCAL, "n_items"):
        val = scores.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, int | float)):
            return f"scores.{key} is {type(val).__name__}, not a number"
    for key in ("run", "created", "data"):
        if run.get(key) is not None and not isinstance(run[key], str):
            return f"'{key}' is {type(run[key]).__name__}, not a string"
    try:
        _metrics(scores)
    except Exception as e:  # whatever else an edited or foreign file holds: the run is left out, never the report
        return f"unreadable scores ({type(e).__name__})"
    return None


def load_runs(out_dir: Path, current: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The result of every run in ``out_dir`` (one sub-folder each), oldest first. An earlier run that cannot be
    read (not UTF-8, not JSON, not a regular file, a value of the wrong type) is skipped with a one-line warning;
    ``current``, the run just made, is always in (from memory, whatever its file holds)."""
    runs = []
    for path in sorted(out_dir.glob(f"*/{RESULT}")):
        if path.parent.name.startswith(".") or (current is not None and path.parent.name == current.get("run")):
            continue  # a hidden (temporary) folder; the current run comes from memory
        try:
            run = read_json_file(path)
            problem = _run_problem(run)
        except DataError as e:
            problem = e.problems[0].removeprefix(f"{path}: ")
        if problem:
            print(f"warning: {path}: left out of the comparison ({problem})", file=sys.stderr)
            continue
        runs.append(run)
    if current is not None:
        runs.append(dict(current))
    return sorted(runs, key=lambda r: (str(r.get("created", "")), str(r.get("run", ""))))


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}" if isinstance(v, int | float) and not isinstance(v, bool) else "–"


def _cell(text: Any, limit: int = 160) -> str:
    s = str(text if text is not None else "").replace("\n", " ⏎ ").replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _metric_columns(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(k for k in _metrics(run["scores"]) if k not in LOCAL))
    ordered = [k for k in METRIC_ORDER if k in keys]
    return ordered + [k for k in keys if k not in ordered]


def plot_runs(runs: Sequence[Mapping[str, Any]], path: Path, last: int = 8) -> None:
    """A grouped bar chart of the metrics (×100) of the last ``last`` runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(runs)[-last:]
    cols = [*_metric_columns(runs), "exact_match_unrepaired", "parsed"]
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(cols) + 2), 4.6 + 0.25 * ((len(runs) + 1) // 2)))
    for i, run in enumerate(runs):
        named = _metrics(run["scores"])
        vals = [100 * named.get(k, 0.0) for k in cols]  # a metric a run lacks shows as 0
        xs = [c + (i - (len(runs) - 1) / 2) * width for c in range(len(cols))]
        bars = ax.bar(xs, vals, width, label=_cell(run.get("run"), 48))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right")
    ax.set_ylabel("score × 100")
    ax.set_ylim(0, 110)
    data = {Path(str(r.get("data", ""))).name for r in runs}
    ax.set_title(f"metrics per run ({', '.join(sorted(data))})", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _breakdown_table(name: str, table: Mapping[str, Mapping[str, Any]], cols: Sequence[str]) -> list[str]:
    header = [name, "n", *cols]
    return markdown_table(header, [[g, row["n_items"], *(_pct(row.get(c)) for c in cols)] for g, row in table.items()])


def render_report(result: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown report: every run compared, then the details of ``result`` (the run just made)."""
    s = result["scores"]
    lines = [f"# Evaluation report: {Path(result['data']).name}", ""]
    lines += [f"Written {result['created']} by `malpyeong-grpo evaluate`; each run's full data is in `<run>/{RESULT}`."]
    lines += ["", "## Runs in this folder", ""]
    cols = _metric_columns(runs)
    head = ["run", "created", "data", "n", *cols, *LOCAL_NAMES]
    rows = [
        [
            f"`{r.get('run')}`",
            str(r.get("created", ""))[:16],
            Path(str(r.get("data", ""))).name,
            r["scores"].get("n_items", "–"),
            *(_pct(_metrics(r["scores"]).get(c)) for c in (*cols, *LOCAL)),
        ]
        for r in runs
    ]
    lines += markdown_table(head, rows) + ["", "![metrics per run](metrics.png)", ""]
    lines += [f"## This run: `{result['run']}`", ""]
    st = result["settings"]
    decoding = "sampling" if st.get("sample") else f"beam {st['num_beams']}" if st.get("num_beams", 1) > 1 else "greedy"
    adapter = f" + adapter `{st['adapter']}`" if st.get("adapter") else ""
    lines += [
        "Command: `" + result["command"] + "`",
        "",
        f"Model `{st.get('model')}`{adapter}; {st.get('num_shots')} shots; context k={st.get('context_k')}; "
        f"{decoding}, max_new_tokens {st.get('max_new_tokens')}; repair {'on' if result['repaired'] else 'off'} "
        f"(choice {st.get('choice')}); scorer: {s.get('scorer')}.",
        "",
    ]
    if result.get("generated"):
        lines += [
            f"Generated {result['generated']} items in {result['seconds']:.0f} s "
            f"({result['seconds'] / result['generated']:.2f} s/item); the rest came from the cache.",
            "",
        ]
    lines += markdown_table(
        ["metric", "×100"],
        [[k, _pct(v)] for k, v in _metrics(s).items()],
    )
    if s.get("final_official") is False:
        lines += [
            "",
            "The learned metrics here come from stand-in encoders: their numbers, `descriptive_avg_standin` and "
            "`final_standin` are not the official metrics.",
        ]
    enc = s.get("encoders")
    if isinstance(enc, Mapping):
        lines += [""] + [
            f"- {k}: {_cell(v.get('label') if isinstance(v, Mapping) else v, 200)}" for k, v in enc.items()
        ]
    lines += ["", "### Repairs", ""]
    counts = result["repairs"]
    lines += [
        f"{counts['repaired']} of {counts['answers']} answers repaired"
        + ("" if result["repaired"] else " (counted, not applied: --no_repair)")
        + ".",
        "",
    ]
    lines += markdown_table(
        ["repair", "answers", "what"],
        [[k, v, REPAIR_KINDS.get(k, "")] for k, v in counts.items() if k not in ("answers", "repaired")],
    )
    lines += [
        "",
        f"EM ×100: as generated {_pct(s.get('exact_match_unrepaired'))}, repaired "
        f"{_pct(s.get('exact_match_repaired'))}.",
    ]
    by_choice = s.get("exact_match_by_choice")
    if isinstance(by_choice, Mapping):
        lines[-1] += (
            " The same generations repaired under each `--choice`: "
            + ", ".join(f"{m} {_pct(v)}" for m, v in by_choice.items())
            + "."
        )
    aggregates = ("final", "final_standin", "descriptive_avg", "descriptive_avg_standin")
    item_cols = [k for k in _metric_columns([result]) if k not in aggregates] + list(LOCAL)
    lines += ["", "### By question type", ""]
    lines += _breakdown_table("type", result["by_type"], item_cols)
    lines += ["", "### By rule category", ""]
    if result.get("by_category"):
        lines += _breakdown_table("category", result["by_category"], item_cols)
    else:
        lines += ["No gold-context labels given (`--labels`, from `malpyeong-grpo label`): breakdown skipped."]
    lines += ["", f"### The {len(result['worst'])} worst items", ""]
    for w in result["worst"]:
        sc = ", ".join(f"{k} {_pct(v)}" for k, v in w["scores"].items() if isinstance(v, int | float))
        lines += [
            f"- **{w['id']}** ({w['question_type']}): {_cell(w['question'], 200)}",
            f"  - gold: {_cell(w['gold'], 300)}",
            f"  - answer: {_cell(w['prediction'], 300)}",
            f"  - generated: {_cell(w['generated'], 300)}",
            f"  - repairs: {', '.join(w['repairs']) or 'none'}; scores: {sc}",
        ]
    return "\n".join(lines) + "\n"


def evaluate_command(argv: list[str]) -> int:
    """``malpyeong-grpo evaluate --data dev.json --out_dir DIR``: predict + score + report (resumable)."""
    parser = argparse.ArgumentParser(prog="malpyeong-grpo evaluate", description=evaluate_command.__doc__)
    parser.add_argument("--data", required=True, help="answered official file, e.g. the dev split")
    parser.add_argument(*flag("out_dir"), required=True, help="folder of runs; the report compares every run in it")
    parser.add_argument(*flag("run_name"), help="sub-folder of this run (default: model name + digest of the options)")
    parser.add_argument("--labels", help="gold-context labels (malpyeong-grpo label) for the per-category breakdown")
    parser.add_argument("--worst", type=int, default=10, help="worst items listed in the report (default 10)")
    s = parser.add_argument_group("scoring")
    s.add_argument(*flag("em_only"), action="store_true", help="exact match and parse rate only (no learned metrics)")
    s.add_argument(*flag("bertscore_model"), help="local bert-base-multilingual-cased folder (official BERTScore)")
    s.add_argument(*flag("bleurt_model"), help="local BLEURT-20 folder (official BLEURT)")
    s.add_argument("--device", help="device of the scoring encoders (default: the scorer's choice)")
    add_predict_args(parser)
    args = parser.parse_args(argv)
    opts = PredictOptions.from_args(args)
    if args.worst < 0:
        raise DataError([f"--worst must not be negative, got {args.worst}"])
    out_dir = Path(args.out_dir)
    name = args.run_name or run_name(opts, args.data)
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise DataError([f"--run_name {name!r}: use letters, digits, '.', '_', '+' and '-' only"])
    files = ("predictions.json", "predictions.cache.jsonl", RESULT)
    outputs = [(f"output {f}", out_dir / name / f) for f in files]
    outputs += [(f"output {f}", out_dir / f) for f in ("report.md", "report.json", "metrics.png")]
    outputs += [("its lock", lock_path(out_dir))]
    check_outputs([*input_paths(opts, args.data), ("--labels", args.labels)], outputs, [("--out_dir", out_dir)])
    with output_lock(out_dir):  # a second evaluate into the same folder stops here
        return _evaluate(args, opts, argv)


def _evaluate(args: argparse.Namespace, opts: PredictOptions, argv: list[str]) -> int:
    """The evaluation itself, under the output folder's lock: ``args`` holds evaluate's own options (data, output
    folder, labels, scoring), ``opts`` those of the predictions."""
    data_path = Path(args.data)
    items = read_items(opts, data_path, require_answer=True)
    categories = item_categories(items, opts.rules, args.labels)  # checked before any generation
    out_dir = Path(args.out_dir)
    name = args.run_name or run_name(opts, args.data)
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise DataError([f"--run_name {name!r}: use letters, digits, '.', '_', '+' and '-' only"])
    run_dir = out_dir / name
    pred = predict_items(opts, data_path, items, run_dir / "predictions.cache.jsonl")
    write_json(run_dir / "predictions.json", submission(items, pred.answers))
    encoders = {"bertscore_model": args.bertscore_model, "bleurt_model": args.bleurt_model, "device": args.device}
    scored = score_predictions(pred, args.em_only, encoders)
    per_item = scored["items"]
    result: dict[str, Any] = {
        "run": name,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": str(data_path),
        "command": "malpyeong-grpo evaluate " + " ".join(argv),
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("out_dir", "run_name", "quiet", "restart")},
            "model": opts.model_name,
        },
        "repaired": pred.repaired,
        "generated": pred.generated,
        "seconds": pred.seconds,
        "scores": scored["scores"],
        "repairs": pred.repair_counts,
        "by_type": breakdown({it.id: it.question_type for it in items}, per_item),
        "by_category": breakdown(categories, per_item) if categories else None,
        "worst": worst_items(pred, per_item, args.worst),
        "items": per_item,
    }
    write_json(run_dir / RESULT, result)
    runs = load_runs(out_dir, current=result)
    try:
        plot_runs(runs, out_dir / "metrics.png")
    except (DataError, OSError, ValueError, TypeError, OverflowError) as e:  # the chart is optional, the report not
        print(f"warning: {out_dir / 'metrics.png'}: not drawn ({e})", file=sys.stderr)
    write_json(
        out_dir / "report.json",
        {"runs": [{k: r.get(k) for k in ("run", "created", "data", "command", "scores", "repairs")} for r in runs]},
    )
    atomic_write_text(out_dir / "report.md", render_report(result, runs))
    for line in summary_lines(pred):
        print(line)
    m = _metrics(scored["scores"])
    print("scores (×100): " + ", ".join(f"{k} {_pct(v)}" for k, v in m.items()))
    print(f"wrote {out_dir / 'report.md'}, {out_dir / 'report.json'}, {out_dir / 'metrics.png'} and {run_dir}/")
    return 0
