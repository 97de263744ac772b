"""``malpyeong-grpo demo``: the embedded default, end to end on a CPU in minutes.

With nothing supplied it takes the embedded gemma-3-270m and the package's sample set (a holdout of it is the
evaluation set); with ``--data_dir`` it trains on the official training split and evaluates on a subset of the
official dev split (evaluation only: dev never reaches training, prompts or few-shot choice). It scores greedy answers
before training, runs GRPO for a wall-clock budget, scores again, and writes to ``--output_dir``:

- ``metrics.json``: before/after scores (the scorer's ``score``), the data, the settings and the timings;
- ``metrics.txt``: the before/after table printed at the end;
- ``learning_curve.png``: each reward's mean per GRPO step;
- ``predictions_before.json`` / ``predictions_after.json``: the answers in the official schema;
- ``model/``: the trained checkpoint, with ``run_info.jsonl`` and ``log_history.json``.

Any GRPOConfig or script field can follow ``--`` (``malpyeong-grpo demo -- --learning_rate 2e-5``).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import (
    QUESTION_TYPES,
    DataError,
    Item,
    atomic_write_text,
    holdout_split,
    load_items,
    sample_items,
    split_path,
    write_items,
    write_json,
)
from .flags import flag

# The demo's GRPO settings; recipes/demo-cpu.yaml holds the same values (tests/test_demo.py checks they agree).
DEMO_RECIPE: dict[str, Any] = {
    "model_name_or_path": "embedded",
    "dtype": "float32",
    "seed": 0,
    "num_shots": 2,
    "reward_funcs": ["format", "exact_match", "rouge_1", "bertscore", "bleurt", "final"],
    "reward_weights": [0.25, 0.0, 0.0, 0.0, 0.0, 1.0],
    "freeze_embeddings": True,
    "torch_num_threads": 2,
    "completion_only_logits": True,
    "share_prompt_prefix": True,
    "checkpoint_prompt": True,
    "share_prefill": True,
    "stop_at_markers": True,
    "bf16_generation": True,
    "tune_malloc": True,
    "gradient_checkpointing": False,
    "bf16": False,
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 128,
    "temperature": 0.9,
    "top_p": 0.95,
    "beta": 0.0,
    "learning_rate": 1.0e-5,
    "lr_scheduler_type": "constant",
    "logging_steps": 1,
    "report_to": "none",
}


def _argv(recipe: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in recipe.items():
        out.append(f"--{key}")
        out += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def subset(items: Sequence[Item], n: int, seed: int) -> list[Item]:
    """``n`` items stratified by question type (proportional), deterministic in ``seed``, in file order."""
    if n >= len(items):
        return list(items)
    rng = random.Random(seed)
    picked: set[str] = set()
    for qtype in QUESTION_TYPES:
        group = [it.id for it in items if it.question_type == qtype]
        picked.update(rng.sample(group, min(len(group), round(n * len(group) / len(items)))))
    return [it for it in items if it.id in picked]


def demo_data(data_dir: str | None, eval_items: int, seed: int) -> tuple[list[Item], list[Item], dict[str, Any]]:
    """(training items, evaluation items, description): the official train split and a dev subset, or the
    sample set split into a training part and a held-out evaluation part."""
    if data_dir:
        train = load_items(split_path("train", data_dir), require_answer=True)
        dev = load_items(split_path("dev", data_dir), require_answer=True)
        evaluation = subset(dev, eval_items, seed)
        info = {"train": str(split_path("train", data_dir)), "eval": f"{split_path('dev', data_dir)} (subset)"}
    else:
        items = sample_items()
        train, evaluation = holdout_split(items, min(0.5, eval_items / len(items)), seed)
        info = {"train": "sample set (training part)", "eval": "sample set (held-out part)"}
    info.update(train_items=len(train), eval_items=len(evaluation), eval_ids=[it.id for it in evaluation])
    return train, evaluation, info


def evaluate(model: Any, tokenizer: Any, items: Sequence[Item], pool: Sequence[Item], args: Any, label: str) -> tuple:
    """Greedy answers for ``items`` (few-shot from ``pool``) and their official scores."""
    from . import metrics, rewards
    from .predict import generate_answers
    from .prompts import build_prompt, extract_answer, select_shots
    from .train import use_chat

    chat = use_chat(args, tokenizer)
    prompts = [
        build_prompt(it, select_shots(it, pool, args.num_shots, args.shot_seed), tokenizer=tokenizer, chat=chat)
        for it in items
    ]
    print(f"[demo] {label}: generating {len(items)} answers (greedy, up to {args.eval_max_new_tokens} tokens)")
    t = time.perf_counter()
    was_training = model.training
    model.eval()
    raw = generate_answers(
        model, tokenizer, prompts, max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch_size
    )
    model.train(was_training)
    answers = [extract_answer(r) for r in raw]
    gen_s = time.perf_counter() - t
    suite = rewards.get_suite()
    scores = metrics.score(
        {it.id: a for it, a in zip(items, answers, strict=True)}, {it.id: it.answer for it in items}, suite
    )
    return answers, scores, {"generate_s": round(gen_s, 1), "score_s": round(time.perf_counter() - t - gen_s, 1)}


def time_budget_callback(seconds: float) -> Any:
    """Stop training at the first step end after ``seconds`` of training."""
    from transformers import TrainerCallback

    class Budget(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            elapsed = time.perf_counter() - self.start
            per_step = elapsed / max(state.global_step, 1)
            if elapsed + per_step > seconds:  # the next step would overrun the budget
                print(f"[demo] training budget reached after {state.global_step} steps ({elapsed:.0f} s)")
                control.should_training_stop = True

    return Budget()


def plot_learning_curve(
    log_history: Sequence[dict[str, Any]], path: Path, notes: dict[str, str] | None = None
) -> list[str]:
    """PNG of each reward's mean per step (and the weighted total); ``notes`` add to a reward's legend label (e.g.
    'stand-in'). Return the plotted series names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in log_history if "step" in r and "reward" in r]
    keys = sorted({k for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for key in ["reward", *keys]:
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
        if pts:
            name = key.split("/")[1] if key != "reward" else ""
            label = "reward (weighted sum)" if key == "reward" else f"{name} {(notes or {}).get(name, '')}".strip()
            ax.plot(*zip(*pts, strict=True), marker="o", lw=2.5 if key == "reward" else 1.2, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward over the step's completions")
    ax.set_title("Learning curve (demo)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return ["reward", *[k.split("/")[1] for k in keys]]


def metrics_table(before: dict[str, Any], after: dict[str, Any], title: str) -> tuple[Any, str]:
    """A rich table of every numeric score before and after, and its plain-text rendering."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        table.add_column(col, justify=justify)
    for key, b in before.items():
        a = after.get(key)
        if isinstance(b, bool) or not isinstance(b, int | float) or not isinstance(a, int | float):
            continue
        if isinstance(b, int) and isinstance(a, int):
            table.add_row(key, str(b), str(a), f"{a - b:+d}")
        else:
            table.add_row(key, f"{b:.4f}", f"{a:.4f}", f"{a - b:+.4f}")
    console = Console(record=True, width=100)
    console.print(table)
    return table, console.export_text()


def parse_demo_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The demo's own options, and the GRPO overrides after ``--``."""
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(
        prog="malpyeong-grpo demo",
        description=__doc__.split("\n\n")[0],
        epilog="Any GRPO or script field of `malpyeong-grpo train` can follow '--', e.g. -- --learning_rate 2e-5.",
    )
    p.add_argument(*flag("data_dir"), help="official data folder: train on its train split, evaluate on a dev subset")
    p.add_argument(*flag("output_dir"), default="runs/demo", help="where the outputs go (default runs/demo)")
    p.add_argument("--model", default="embedded", help="model to train (default: the embedded gemma-3-270m)")
    p.add_argument("--minutes", type=float, default=6.0, help="wall-clock budget of the GRPO phase (default 6)")
    p.add_argument(*flag("max_steps"), type=int, default=100, help="at most this many GRPO steps (default 100)")
    p.add_argument(*flag("eval_items"), type=int, default=12, help="evaluation items (default 12)")
    p.add_argument(
        *flag("eval_max_new_tokens"), type=int, default=128, help="answer length in evaluation (default 128)"
    )
    p.add_argument(*flag("eval_batch_size"), type=int, default=4, help="generation batch in evaluation (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data subset, shots and sampling (default 0)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.max_steps < 1 or args.eval_items < 1:
        raise DataError(["demo: --minutes, --max_steps and --eval_items must be positive"])
    if args.data_dir and not split_path("train", args.data_dir).is_file():
        raise DataError([f"{args.data_dir}: no {split_path('train', args.data_dir).name} in this folder"])
    return args, extra


def demo_command(argv: list[str]) -> int:
    """``malpyeong-grpo demo [--data_dir DIR] [--output_dir DIR] [--minutes M] [-- GRPO overrides]``."""
    from . import rewards
    from .configs import parse_args
    from .train import load_policy, make_trainer
    from .trainer import MalpyeongGRPOConfig

    t0 = time.perf_counter()
    opts, extra = parse_demo_args(argv)
    out = Path(opts.output_dir)
    recipe = dict(DEMO_RECIPE, model_name_or_path=opts.model, seed=opts.seed, shot_seed=opts.seed)
    recipe.update(output_dir=str(out / "model"), max_steps=opts.max_steps, save_strategy="no", holdout_fraction=0.0)
    script_args, training_args, model_args = parse_args(
        _argv(recipe) + extra, MalpyeongGRPOConfig, prog="malpyeong-grpo demo"
    )
    script_args.eval_max_new_tokens, script_args.eval_batch_size = opts.eval_max_new_tokens, opts.eval_batch_size

    print(f"[demo 1/6] data: {'official train split + dev subset' if opts.data_dir else 'sample set'}")
    train_items, eval_items, data_info = demo_data(opts.data_dir, opts.eval_items, opts.seed)
    train_file = out / "train_items.json"
    write_items(train_file, train_items)
    script_args.train_file = str(train_file)
    print(f"[demo 2/6] model {opts.model} (the embedded model is converted once, ~1 min, then cached)")
    model, tokenizer = load_policy(model_args, training_args, script_args)
    rewards.configure(script_args.bertscore_model, script_args.bleurt_model, script_args.reward_device or "cpu")
    timings: dict[str, Any] = {"setup_s": round(time.perf_counter() - t0, 1)}

    print("[demo 3/6] scores before training")
    before_answers, before, timings["before"] = evaluate(
        model, tokenizer, eval_items, train_items, script_args, "before"
    )
    write_items(out / "predictions_before.json", _with_answers(eval_items, before_answers))

    print(f"[demo 4/6] GRPO for up to {opts.minutes:g} min / {opts.max_steps} steps on {len(train_items)} items")
    t = time.perf_counter()
    trainer, train_info = make_trainer(
        script_args, training_args, model_args, [time_budget_callback(opts.minutes * 60)], (model, tokenizer)
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    write_json(Path(training_args.output_dir) / "log_history.json", trainer.state.log_history)
    timings["grpo_s"] = round(time.perf_counter() - t, 1)
    timings["grpo_steps"] = trainer.state.global_step

    print("[demo 5/6] scores after training")
    after_answers, after, timings["after"] = evaluate(
        trainer.model, tokenizer, eval_items, train_items, script_args, "after"
    )
    write_items(out / "predictions_after.json", _with_answers(eval_items, after_answers))

    print("[demo 6/6] learning curve and table")
    encoders = rewards.get_suite().encoders
    notes = {name: "(stand-in)" for name in ("bertscore", "bleurt") if not encoders[name].official}
    series = plot_learning_curve(trainer.state.log_history, out / "learning_curve.png", notes)
    where = "official dev subset" if opts.data_dir else "held-out sample items"
    _, text = metrics_table(before, after, f"Scores on {len(eval_items)} {where}, before and after GRPO")
    atomic_write_text(out / "metrics.txt", text)
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    write_json(
        out / "metrics.json",
        {
            "before": before,
            "after": after,
            "data": {**data_info, **{k: v for k, v in train_info.items() if k != "validation_ids"}},
            "model": opts.model,
            "recipe": {**recipe, **{"overrides": extra}},
            "learning_curve": series,
            "timings": timings,
        },
    )
    print(f"[demo] done in {timings['total_s'] / 60:.1f} min; outputs in {out}")
    return 0


def _with_answers(items: Sequence[Item], answers: Sequence[str]) -> list[Item]:
    return [Item(it.id, it.question_type, it.question, a) for it, a in zip(items, answers, strict=True)]
