"""The method table on dev: each row's prediction file scored once with the official logic, with 95% bootstrap
intervals, and paired comparisons (GRPO rows e and h against their SFT starts d and g, and more).

Each row's predictions come from one documented CLI command (ROWS below; README "The method table"); this script
only scores what those commands wrote:

    python benchmarks/method_table.py --runs-dir runs/table [--rows a b c d e f g h i]

A row whose prediction file is missing is left out (and reported). BERTScore and BLEURT are the named stand-ins
unless --bertscore_model / --bleurt_model give the official checkpoints; their names say which.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from malpyeong_grpo.data import load_items  # noqa: E402
from malpyeong_grpo.demo_report import paired_bootstrap, task_scores  # noqa: E402
from malpyeong_grpo.files import write_json  # noqa: E402
from malpyeong_grpo.metrics import get_suite, metric_name, score  # noqa: E402

D = "../shared/data"
DEV = f"{D}/korean_language_rag_V1.0_dev.json"
TRAIN = f"{D}/korean_language_rag_V1.0_train.json"
PRED = f"--data {DEV} --train_file {TRAIN} --max_new_tokens 160 --batch_size 16"
ROWS: dict[str, tuple[str, str]] = {  # row -> (name, the command that wrote runs/table/<row>/predictions.json)
    "a": (
        "no model: nearest training items (BM25) vote the option, the nearest one's reason",
        f"malpyeong-grpo baseline --data {DEV} --train_file {TRAIN} --out runs/table/a/predictions.json",
    ),
    "b": (
        "base gemma-3-270m, 2 random shots, repair",
        f"malpyeong-grpo predict --model embedded {PRED} --shot_method random --out runs/table/b/predictions.json",
    ),
    "c": (
        "base gemma-3-270m, 2 similar shots, repair",
        f"malpyeong-grpo predict --model embedded {PRED} --shot_method similar --out runs/table/c/predictions.json",
    ),
    "d": (
        "SFT (1 similar shot), repair",
        "malpyeong-grpo sft --config recipes/method/sft-gemma-270m-cpu.yaml --data_dir ../shared/data "
        f"--output_dir runs/method/sft && malpyeong-grpo predict --model runs/method/sft {PRED} --shot_method "
        "similar --num_shots 1 --out runs/table/d/predictions.json",
    ),
    "e": (
        "SFT + GRPO (1 similar shot), repair",
        "malpyeong-grpo train --config recipes/method/grpo-gemma-270m-cpu.yaml --data_dir ../shared/data "
        f"--model_name_or_path runs/method/sft --output_dir runs/method/grpo && malpyeong-grpo predict --model "
        f"runs/method/grpo {PRED} --shot_method similar --num_shots 1 --out runs/table/e/predictions.json",
    ),
    "f": (
        "SFT + GRPO with rule context (1 similar shot, 2 retrieved rules), repair",
        "malpyeong-grpo train --config recipes/method/grpo-rag-gemma-270m-cpu.yaml --data_dir ../shared/data "
        "--model_name_or_path runs/method/sft --output_dir runs/method/grpo-rag && malpyeong-grpo predict --model "
        f"runs/method/grpo-rag {PRED} --shot_method similar --num_shots 1 --context_k 2 --rules rules.jsonl "
        "--retrieved retrieved_dev.jsonl --out runs/table/f/predictions.json (rules, labels, retrieval: "
        "docs/method.md)",
    ),
    "g": (
        "longer SFT (all 560 training-part items, 50 steps of 8, lr 1e-4, 1 similar shot), repair",
        "malpyeong-grpo sft --config recipes/method/sft-long-gemma-270m-cpu.yaml --data_dir ../shared/data "
        f"--output_dir runs/method/sft-long && malpyeong-grpo predict --model runs/method/sft-long {PRED} "
        "--shot_method similar --num_shots 1 --out runs/table/g/predictions.json",
    ),
    "h": (
        "longer SFT + GRPO with the overlong reward (1 similar shot), repair",
        "malpyeong-grpo train --config recipes/method/grpo-long-gemma-270m-cpu.yaml --data_dir ../shared/data "
        "--model_name_or_path runs/method/sft-long --output_dir runs/method/grpo-long && malpyeong-grpo predict "
        f"--model runs/method/grpo-long {PRED} --shot_method similar --num_shots 1 --out runs/table/h/predictions.json "
        "(or all of g and h: bash benchmarks/reproduce_method.sh)",
    ),
    "i": (
        "longer SFT + GRPO, cut completions learn their overlong penalty, lr 1e-5 (1 similar shot), repair",
        "malpyeong-grpo train --config recipes/method/grpo-long-gemma-270m-cpu.yaml --data_dir ../shared/data "
        "--model_name_or_path runs/method/sft-long --output_dir runs/method/grpo-long-i --mask_truncated_completions "
        "false --learning_rate 1e-5 --max_steps 20 --eval_steps 20 --save_steps 20 --eval_on_start false && "
        f"malpyeong-grpo predict --model runs/method/grpo-long-i {PRED} --shot_method similar --num_shots 1 "
        "--out runs/table/i/predictions.json",
    ),
}
METRICS = ("exact_match", "rouge_1", "bertscore", "bleurt", "final")


def per_item(result: dict[str, Any], names: dict[str, str]) -> dict[str, np.ndarray]:
    """Per-item arrays in gold order: EM for all items; the reason metrics with NaN where an item has no pair."""
    items = list(result["items"].values())
    out = {"exact_match": np.array([r["exact_match"] for r in items], dtype=float)}
    for m in ("rouge_1", "bertscore", "bleurt"):
        key = names.get(m, m)
        out[m] = np.array([np.nan if r[key] is None else r[key] for r in items], dtype=float)
    return out


def aggregate(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, float]:
    """The official aggregates over the items ``idx`` (EM over all; reason metrics over those with a pair)."""
    em = float(arrays["exact_match"][idx].mean())
    out = {"exact_match": em}
    for m in ("rouge_1", "bertscore", "bleurt"):
        vals = arrays[m][idx]
        vals = vals[~np.isnan(vals)]
        out[m] = float(vals.mean()) if vals.size else 0.0
    out["final"] = (em + (out["rouge_1"] + out["bertscore"] + out["bleurt"]) / 3) / 2
    return out


def bootstrap(arrays: dict[str, np.ndarray], n: int, seed: int = 0) -> dict[str, list[float]]:
    """95% percentile intervals of every aggregate over ``n`` resamples of the items."""
    rng = np.random.default_rng(seed)
    size = len(arrays["exact_match"])
    draws = [aggregate(arrays, rng.integers(0, size, size)) for _ in range(n)]
    return {m: [float(np.percentile([d[m] for d in draws], q)) for q in (2.5, 97.5)] for m in METRICS}


def paired(a: list[float], b: list[float], n: int) -> dict[str, Any]:
    """Mean of b - a per item, with its 95% paired-bootstrap interval (the demo's ``paired_bootstrap``) and whether
    the interval excludes 0."""
    change = paired_bootstrap(a, b, n)
    lo, hi = change["ci95"]
    return {"mean": change["mean"], "ci95": change["ci95"], "excludes_0": bool(lo > 0 or hi < 0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs-dir", default="runs/table")
    ap.add_argument("--gold", default=DEV)
    ap.add_argument("--rows", nargs="+", default=list(ROWS))
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--bertscore_model", "--bertscore-model")
    ap.add_argument("--bleurt_model", "--bleurt-model")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "method_table.json"))
    args = ap.parse_args()
    golds = {it.id: it.answer or "" for it in load_items(args.gold, require_answer=True)}
    suite = get_suite(args.bertscore_model, args.bleurt_model)
    names = {m: metric_name(m, suite) for m in METRICS}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    rows, qualities = [], {}
    for row in args.rows:
        path = Path(args.runs_dir) / row / "predictions.json"
        if not path.is_file():
            print(f"row {row}: {path} missing, left out")
            continue
        preds = {it.id: it.answer or "" for it in load_items(path)}
        result = score(preds, golds, suite, per_item=True)
        arrays = per_item(result, names)
        point = aggregate(arrays, np.arange(len(arrays["exact_match"])))
        ci = bootstrap(arrays, args.resamples)
        qualities[row] = task_scores(result["items"], list(result["items"]))
        rows.append(
            {
                "row": row,
                "name": ROWS[row][0],
                **{names[m]: point[m] for m in METRICS},
                "ci95": {names[m]: ci[m] for m in METRICS},
                "n_items": len(golds),
                "n_reason_pairs": result["n_reason_pairs"],
                "command": ROWS[row][1],
                "predictions": str(path),
                "commit": commit.stdout.strip() or None,
                "date": time.strftime("%Y-%m-%d"),
            }
        )
        cells = [f"{names[m]} {point[m]:.3f} [{ci[m][0]:.3f}, {ci[m][1]:.3f}]" for m in METRICS]
        print(f"row {row}: " + ", ".join(cells))
    comparisons = {}
    pairs = (
        ("d", "e"), ("b", "d"), ("c", "d"), ("a", "d"), ("e", "f"), ("b", "c"), ("d", "g"), ("c", "g"), ("a", "g"),
        ("g", "h"), ("a", "h"), ("g", "i"), ("h", "i"), ("a", "i"),
    )  # fmt: skip
    for a, b in pairs:
        if a in qualities and b in qualities:
            comparisons[f"{b}-{a}"] = paired(qualities[a], qualities[b], args.resamples)
            print(f"paired (EM + ROUGE-1) / 2, row {b} - row {a}: {comparisons[f'{b}-{a}']}")
    write_json(args.out, rows)
    write_json(Path(args.out).with_name(Path(args.out).stem + "_paired.json"), comparisons)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
