"""The demo's results: per-item task scores, paired bootstrap intervals of each stage's change with a verdict in
words, the table of every stage's scores, the learning-curve PNG, the per-stage record of ``metrics.json`` and the
listing of the outputs with their sizes."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EVAL_STAGES = {"before": "before", "sft": "after SFT", "grpo": "after GRPO"}
CHANGES = (("sft", "before", "SFT"), ("grpo", "sft", "GRPO"), ("grpo", "before", "SFT + GRPO"))
RESAMPLES = 2000


# ---------------------------------------------------------------- scores, intervals, verdicts


def task_scores(per_item: Mapping[str, Mapping[str, Any]], ids: Sequence[str]) -> list[float]:
    """Per-item (EM + ROUGE-1) / 2, ROUGE-1 counting 0 for an item without a reason (as the rewards count it)."""
    out = []
    for i in ids:
        row = per_item[i]
        rouge = row.get("rouge_1")
        out.append((float(row["exact_match"]) + (float(rouge) if isinstance(rouge, int | float) else 0.0)) / 2)
    return out


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Mean of ``b - a`` over paired items and its 95% percentile interval over ``resamples`` resamples of the items
    (with replacement)."""
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95": [float(lo), float(hi)], "n_items": len(diff), "resamples": resamples}


def verdict(change: Mapping[str, Any], what: str) -> str:
    """Words for a paired change: helped (interval above 0), made worse (below 0), or no measurable change."""
    lo, hi = change["ci95"]
    span = f"{change['mean']:+.3f}, 95% interval [{lo:+.3f}, {hi:+.3f}]"
    if lo > 0:
        return f"{what} helped: held-out (EM + ROUGE-1)/2 {span}."
    if hi < 0:
        return f"{what} made the held-out answers WORSE: (EM + ROUGE-1)/2 {span}."
    return f"{what} did not change the held-out answers measurably: (EM + ROUGE-1)/2 {span} includes 0."


def score_rows(stages: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[float | None]]]:
    """(metric name, value per stage) for the table: the scorer's metrics in leaderboard order, under stand-in
    names where a stand-in computed them, and the task score (EM + ROUGE-1) / 2."""
    from .evaluate import METRIC_ORDER, _metrics

    named = {k: _metrics(v["scores"]) for k, v in stages.items()}
    order = ["exact_match", "rouge_1"] + [k for k in METRIC_ORDER if k not in ("exact_match", "rouge_1")]
    keys = [k for k in order if any(k in m for m in named.values())]
    rows = [(k, [named[s].get(k) for s in stages]) for k in keys]
    rows.insert(2, ("(EM + ROUGE-1)/2", [mean(v["task_scores"]) for v in stages.values()]))
    return rows


def mean(xs: Sequence[float]) -> float:
    """The mean of ``xs`` (0 when empty)."""
    return sum(xs) / len(xs) if xs else 0.0


def results_table(stages: Mapping[str, Mapping[str, Any]], title: str) -> str:
    """The table of every stage's scores (a rich table rendered to text)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric", justify="left")
    for stage in stages:
        table.add_column(EVAL_STAGES[stage], justify="right")
    for name, values in score_rows(stages):
        table.add_row(name, *("–" if v is None else f"{v:.4f}" for v in values))
    console = Console(record=True, width=110, file=io.StringIO())
    console.print(table)
    return console.export_text()


def stage_changes(stages: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """Each change of ``CHANGES`` (key ``"<after>-<before>"``): the paired bootstrap of the per-item task scores
    and its verdict."""
    changes = {}
    for b, a, what in CHANGES:
        change = paired_bootstrap(stages[a]["task_scores"], stages[b]["task_scores"], seed=seed)
        change["verdict"] = verdict(change, what)
        changes[f"{b}-{a}"] = change
    return changes


def results_text(
    stages: Mapping[str, Mapping[str, Any]], changes: Mapping[str, Mapping[str, Any]], title: str, n_items: int
) -> str:
    """The printed results (also ``metrics.txt``): the table, the stand-in note, the intervals and verdicts."""
    lines = [
        results_table(stages, title).rstrip(),
        "Stand-ins: bertscore_standin, bleurt_proxy, descriptive_avg_standin and final_standin come from stand-in "
        "encoders (no official BERTScore/BLEURT checkpoint on this machine); they are not the official metrics.",
        f"Paired 95% bootstrap intervals ({RESAMPLES} resamples of the {n_items} items), per-item (EM + ROUGE-1)/2:",
    ]
    lines += [f"  {changes[f'{b}-{a}']['verdict']}" for b, a, _ in CHANGES]
    return "\n".join(lines) + "\n"


def stage_records(stages: Mapping[str, Mapping[str, Any]], ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``metrics.json``'s record of each evaluated stage: scores, task scores by item id, repairs, seconds."""
    return {
        k: {
            "scores": v["scores"],
            "task_score": mean(v["task_scores"]),
            "task_scores": dict(zip(ids, v["task_scores"], strict=True)),
            "items": v["items"],
            "repairs": v["repairs"],
            "generate_s": round(v["seconds"], 1),
            "seconds": v["seconds_total"],
        }
        for k, v in stages.items()
    }


# ---------------------------------------------------------------- learning curve


def smooth(values: Sequence[float], window: int = 5) -> list[float]:
    """Trailing moving average (the first points average what there is)."""
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        out.append(sum(part) / len(part))
    return out


def plot_learning_curve(
    sft_log: Sequence[Mapping[str, Any]],
    grpo_log: Sequence[Mapping[str, Any]],
    optimised: Sequence[str],
    stage_rows: Sequence[tuple[str, list[float | None]]],
    stage_names: Sequence[str],
    path: Path,
) -> list[str]:
    """PNG in three panels: SFT loss per step; the rewards GRPO optimises (``optimised``, logged names) and their
    weighted sum per step, raw points with a smoothed line; the held-out scores per stage (stand-ins labelled).
    Return the GRPO series drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(17, 5), dpi=110, gridspec_kw={"width_ratios": [1, 1.6, 1.2]})
    ax = axes[0]
    pts = [(r["step"], r["loss"]) for r in sft_log if "step" in r and _finite(r.get("loss"))]
    if pts:
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "o", alpha=0.4, color="tab:blue", label="per step")
        ax.plot(xs, smooth(ys), "-", lw=2, color="tab:blue", label="smoothed (5 steps)")
        ax.legend(fontsize=8)
    ax.set_title("SFT: training loss (answer tokens)")
    ax.set_xlabel("SFT step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)

    ax = axes[1]
    drawn = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, key in enumerate(["reward", *[f"rewards/{name}/mean" for name in optimised]]):
        pts = [(r["step"], r[key]) for r in grpo_log if "step" in r and _finite(r.get(key))]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        label = "weighted sum (what GRPO maximises)" if key == "reward" else key.split("/")[1]
        if "standin" in label or "proxy" in label:
            label += " (stand-in)"
        c = colors[n % len(colors)]
        ax.plot(xs, ys, "o", alpha=0.35, color=c, ms=4)
        ax.plot(xs, smooth(ys), "-", lw=2.5 if key == "reward" else 1.3, color=c, label=label)
        drawn.append(key.split("/")[1] if key != "reward" else "reward")
    ax.set_title("GRPO: rewards per step (points) and smoothed (lines)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean over the step's sampled completions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="best")

    ax = axes[2]
    shown = [(k, v) for k, v in stage_rows if k in ("exact_match", "rouge_1", "(EM + ROUGE-1)/2") or "standin" in k]
    shown += [(k, v) for k, v in stage_rows if k == "bleurt_proxy"]
    x = range(len(stage_names))
    for k, values in shown:
        label = f"{k} (stand-in)" if ("standin" in k or "proxy" in k) else k
        ys = [float("nan") if v is None else v for v in values]
        style = "--" if "stand-in" in label else "-"
        ax.plot(x, ys, marker="o", ls=style, lw=2.5 if k.startswith("(EM") else 1.2, label=label)
    ax.set_xticks(list(x), list(stage_names))
    ax.set_title("held-out scores per stage")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return drawn


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------- outputs


def size_of(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human(n: float) -> str:
    """A byte count for people: B, KB, MB or GB (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


def output_lines(out: Path, kept: Sequence[Path], freed: Mapping[str, int]) -> list[str]:
    """The listing of ``out`` with sizes, then the trained checkpoints: ``kept`` (with --keep_model), else the
    bytes ``freed`` per folder."""
    lines = [f"outputs in {out.resolve()}:"]
    lines += [f"  {p.name + ('/' if p.is_dir() else ''):<28} {human(size_of(p)):>10}" for p in sorted(out.iterdir())]
    if kept:
        lines.append(f"  kept the trained checkpoints: {', '.join(f'{d} ({human(size_of(d))})' for d in kept)}")
    else:
        lines.append(
            f"  deleted the trained checkpoints ({', '.join(f'{k}/ {human(v)}' for k, v in freed.items())}); "
            "--keep_model keeps them"
        )
    return lines
