"""``malpyeong-grpo demo``: the embedded model learning the task on a CPU, measured honestly, in minutes.

Stages, all inside one wall-clock budget (``--minutes``, the one-time model conversion included):

1. setup: the data (without ``--data_dir`` the package's sample set, with it the official train split; in both a
   stratified hold-out of ``--eval_items`` items that no stage ever trains on, and few-shot examples only from the
   training part; the dev split is never read) and the model (the embedded gemma-3-270m is converted once);
2. before: the base model answers the hold-out greedily, with the prompts and answer repair of ``predict``, scored
   as ``evaluate`` scores (``predict.predict_items`` + ``evaluate.score_predictions``);
3. SFT (``sft.run_sft`` with ``recipes/sft-demo-cpu.yaml``) on the training part;
4. after SFT: the hold-out again;
5. GRPO (``train.make_trainer`` with ``recipes/demo-cpu.yaml``) from the SFT model;
6. after GRPO: the hold-out again;
7. results: the table before / after SFT / after GRPO, paired 95% bootstrap intervals of the per-item
   (EM + ROUGE-1) / 2 for each stage's change, the verdict in words, the learning-curve PNG, the outputs and their
   sizes.

The training stages get what the budget leaves after the measured evaluation time; a training stage stops at the
step that would overrun its share. Outputs in ``--output_dir``: ``metrics.json``, ``metrics.txt``,
``learning_curve.png``, ``predictions_{before,sft,grpo}.json``, ``train_items.json`` / ``heldout_items.json``, and
``sft/`` / ``grpo/`` (log history and run record; the 1 GB checkpoints only with ``--keep_model``).

This module runs the stages; the progress lines are ``demo_progress``'s, the results (intervals, table, curve,
listing) ``demo_report``'s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .data import Item, holdout_split, load_items, sample_items, split_path, write_items
from .demo_progress import Clock, mmss, quiet_trainer, say, stage_callback
from .demo_report import (
    EVAL_STAGES,
    mean,
    output_lines,
    plot_learning_curve,
    results_text,
    score_rows,
    size_of,
    stage_changes,
    stage_records,
    task_scores,
)
from .files import DataError, atomic_write_text, write_json
from .flags import flag

GRPO_RECIPE = "demo-cpu.yaml"
SFT_RECIPE = "sft-demo-cpu.yaml"
SAVE_S = 15.0  # saving a 1 GB checkpoint and loading it for the evaluation that follows (reserved per stage)
FINAL_S = 15.0  # results: table, intervals, PNG, clean-up
MIN_TRAIN_S = 30.0
EVAL_MARGIN = 1.1  # an evaluation after training takes about this times the one before it (measured 0.9-1.3x)


# ---------------------------------------------------------------- recipes and data


def recipe_path(name: str) -> Path:
    """A recipe of the repository (``recipes/<name>`` beside the package's source tree, else under the current
    folder)."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = base / "recipes" / name
        if path.is_file():
            return path
    raise DataError([f"recipes/{name}: recipe not found (run from the repository, or give --recipe/--sft_recipe)"])


def demo_data(data_dir: str | None, eval_items: int, seed: int) -> tuple[list[Item], list[Item], dict[str, Any]]:
    """(training part, held-out part, description): a stratified hold-out of ``eval_items`` items of the official
    train split (``data_dir``) or of the sample set. The dev split is not read."""
    if data_dir:
        path = split_path("train", data_dir)
        items, source = load_items(path, require_answer=True), str(path)
    else:
        items, source = sample_items(), "sample set (malpyeong_grpo/sample_data.json)"
    if not 2 <= eval_items <= len(items) // 2:
        raise DataError([f"demo: --eval_items must be between 2 and {len(items) // 2} for {source}"])
    train, held = holdout_split(items, eval_items / len(items), seed)
    info = {
        "source": source,
        "items": len(items),
        "train_items": len(train),
        "heldout_items": len(held),
        "heldout_ids": [it.id for it in held],
    }
    return train, held, info


# ---------------------------------------------------------------- evaluation (predict + evaluate's scoring)


def predict_args(model: str, heldout_file: Path, train_file: Path, script_args: Any, opts: argparse.Namespace) -> Any:
    """``predict``'s options for one evaluation: greedy, repair on (hybrid), the training recipes' prompts (shots
    and their method) from the training part, a fresh cache."""
    from .predict_options import PredictOptions

    return PredictOptions(
        model=model,
        train_file=str(train_file),
        num_shots=script_args.num_shots,
        shot_method=script_args.shot_method,
        seed=script_args.shot_seed,
        max_new_tokens=opts.eval_max_new_tokens,
        batch_size=opts.eval_batch_size,
        dtype=opts.eval_dtype,
        backend="transformers",
        prompt_format=script_args.prompt_format,
        restart=True,
    )


def evaluate_model(
    model: str, items: list[Item], heldout_file: Path, train_file: Path, script_args: Any, opts: Any, out: Path
) -> dict[str, Any]:
    """Greedy answers of ``model`` to ``items`` with ``predict``'s prompts and repair, scored by ``evaluate``'s
    scorer: {scores, items (per-item scores), seconds, repairs}; the submission goes to ``out``."""
    from .evaluate import score_predictions
    from .predict import predict_items, submission

    args = predict_args(model, heldout_file, train_file, script_args, opts)
    cache = out.with_name(out.stem + ".cache.jsonl")
    pred = predict_items(args, heldout_file, items, cache)
    write_json(out, submission(items, pred.answers))
    cache.unlink(missing_ok=True)
    scored = score_predictions(pred, False, {"bertscore_model": None, "bleurt_model": None, "device": None})
    return {
        "scores": scored["scores"],
        "items": scored["items"],
        "seconds": pred.seconds,
        "repairs": pred.repair_counts,
    }


# ---------------------------------------------------------------- outputs


def drop_weights(folder: Path) -> int:
    """Delete a checkpoint's weight files (and the tokenizer copy) but keep its logs; return the bytes freed."""
    freed = 0
    for p in list(folder.iterdir()) if folder.is_dir() else []:
        if p.name in ("log_history.json", "run_info.jsonl"):
            continue
        freed += size_of(p)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return freed


# ---------------------------------------------------------------- the command


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
    p.add_argument(*flag("data_dir"), help="official data folder: train on its train split, score on a hold-out of it")
    p.add_argument(*flag("output_dir"), default="runs/demo", help="where the outputs go (default runs/demo)")
    p.add_argument("--model", default="embedded", help="model to start from (default: the embedded gemma-3-270m)")
    p.add_argument("--minutes", type=float, default=9.5, help="wall-clock budget of the whole demo (default 9.5)")
    p.add_argument(*flag("sft_share"), type=float, default=0.85, help="SFT's share of the training time (default 0.85)")
    p.add_argument(
        *flag("max_steps"), type=int, help="cap each training stage at this many steps (default: the recipes')"
    )
    p.add_argument(*flag("eval_items"), type=int, default=48, help="held-out items (default 48)")
    p.add_argument(*flag("eval_max_new_tokens"), type=int, default=128, help="answer length limit (default 128)")
    p.add_argument(
        *flag("eval_batch_size"), type=int, default=16, help="generation batch of the evaluations (default 16)"
    )
    p.add_argument(
        "--precision",
        *flag("eval_dtype"),
        dest="precision",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="number format of the evaluations (they load the weights in it) and of SFT (bfloat16 autocast; weights "
        "and optimizer stay float32); GRPO follows its recipe. auto (default): bfloat16 where the "
        "hardware multiplies it natively (a CPU with AMX or AVX512-BF16, a CUDA GPU with bf16), else float32",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out, the shots and training (default 0)")
    p.add_argument("--recipe", help=f"GRPO recipe (default recipes/{GRPO_RECIPE})")
    p.add_argument(*flag("sft_recipe"), help=f"SFT recipe (default recipes/{SFT_RECIPE})")
    p.add_argument(*flag("keep_model"), action="store_true", help="keep the SFT and GRPO checkpoints (~1.07 GB each)")
    args = p.parse_args(argv)
    if args.minutes <= 0 or (args.max_steps is not None and args.max_steps < 1) or args.eval_items < 1:
        raise DataError(["demo: --minutes, --max_steps and --eval_items must be positive"])
    if args.precision == "auto":
        from .models import native_bf16

        args.precision = "bfloat16" if native_bf16() else "float32"
    args.eval_dtype = args.precision
    if not 0 < args.sft_share < 1:
        raise DataError(["demo: --sft_share must be between 0 and 1"])
    if args.data_dir and not split_path("train", args.data_dir).is_file():
        raise DataError([f"{args.data_dir}: no {split_path('train', args.data_dir).name} in this folder"])
    return args, extra


def precision_argv(precision: str) -> list[str]:
    """Training arguments for the demo's precision: bfloat16 autocast (on a CPU-only machine TRL needs ``use_cpu``
    for it); float32 leaves the recipe as it is."""
    if precision != "bfloat16":
        return []
    from .configs import has_accelerator

    return ["--bf16", "true"] + ([] if has_accelerator() else ["--use_cpu", "true"])


def stage_argv(
    recipe: Path, model: str, out: Path, train_file: Path, seed: int, max_steps: int | None, precision: str = "float32"
) -> list[str]:
    """A training stage's arguments: the recipe, then only what the demo sets (model, output, data, seed,
    precision, no checkpoints or in-training evaluation: the demo's own evaluations measure each stage)."""
    argv = ["--config", str(recipe), "--model_name_or_path", model, "--output_dir", str(out)]
    argv += precision_argv(precision)
    argv += ["--train_file", str(train_file), "--holdout_fraction", "0", "--seed", str(seed), "--shot_seed", str(seed)]
    argv += ["--save_strategy", "no", "--eval_strategy", "no", "--task_eval_items", "0", "--disable_tqdm", "true"]
    argv += ["--logging_steps", "1", "--report_to", "none"]
    return argv + (["--max_steps", str(max_steps)] if max_steps else [])


def training_budget(left: float, eval_s: float, share: float) -> tuple[float, float]:
    """(SFT seconds, GRPO seconds) of ``left`` seconds after reserving two more evaluations of ``eval_s`` (times
    EVAL_MARGIN) and the results; each stage's seconds include its model load and save; at least MIN_TRAIN_S each."""
    train = left - 2 * EVAL_MARGIN * eval_s - FINAL_S
    return max(MIN_TRAIN_S, share * train), max(MIN_TRAIN_S, (1 - share) * train)


def demo_command(argv: list[str]) -> int:
    """``malpyeong-grpo demo [--data_dir DIR] [--output_dir DIR] [--minutes M] [-- GRPO overrides]``."""
    opts, extra = parse_demo_args(argv)
    clock = Clock(opts.minutes * 60)
    from .profiler import peak_rss_gb
    from .speed import release_memory, tune_malloc
    from .trl_compat import reset_accelerator_state

    tune_malloc()  # from the start: large tensors freed by one stage go back to the OS, not into the heap
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    grpo_recipe = Path(opts.recipe) if opts.recipe else recipe_path(GRPO_RECIPE)
    sft_recipe = Path(opts.sft_recipe) if opts.sft_recipe else recipe_path(SFT_RECIPE)
    from .configs import parse_args
    from .models import resolve_model
    from .trainer import MalpyeongGRPOConfig, MalpyeongSFTConfig

    out = Path(opts.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_file, heldout_file = out / "train_items.json", out / "heldout_items.json"
    sft_dir, grpo_dir = out / "sft", out / "grpo"

    # 1. setup: the data, both stages' configurations (checked before any model work), the model
    where = f"official train split in {opts.data_dir}" if opts.data_dir else "package's sample set"
    train_items, held, data_info = demo_data(opts.data_dir, opts.eval_items, opts.seed)
    write_items(train_file, train_items)
    write_items(heldout_file, held)
    say(
        "setup", f"data: the {where}: {len(train_items)} training items, {len(held)} held out (never trained on)", clock
    )
    sft_argv = stage_argv(sft_recipe, opts.model, sft_dir, train_file, opts.seed, opts.max_steps, opts.precision)
    # GRPO keeps the recipe's precision: it already samples from a bfloat16 copy, and autocast saved only ~7% of a
    # step there for ~1 GB more peak RSS
    grpo_argv = stage_argv(grpo_recipe, str(sft_dir), grpo_dir, train_file, opts.seed, opts.max_steps)
    grpo_argv += extra
    sft_cfg = parse_args(sft_argv, MalpyeongSFTConfig, prog="malpyeong-grpo demo (SFT)")
    grpo_cfg = parse_args(grpo_argv, MalpyeongGRPOConfig, prog="malpyeong-grpo demo (GRPO)")
    prompt_fields = ("num_shots", "shot_method", "shot_seed", "prompt_format")
    differ = [f for f in prompt_fields if getattr(sft_cfg[0], f) != getattr(grpo_cfg[0], f)]
    if differ:
        raise DataError([f"{grpo_recipe}: {', '.join(differ)} differ from {sft_recipe} (the stages share prompts)"])
    note = " (converted once, ~1 min, then cached)" if opts.model == "embedded" else ""
    say("setup", f"model {opts.model}{note}", clock)
    resolve_model(opts.model)
    timings: dict[str, Any] = {"setup_s": round(clock.elapsed(), 1)}
    stages: dict[str, dict[str, Any]] = {}

    def evaluate(key: str, model: str) -> None:
        stage = EVAL_STAGES[key]
        say(stage, f"answering the {len(held)} held-out items (greedy, {opts.eval_dtype}, repair as predict)", clock)
        t = clock.elapsed()
        res = evaluate_model(model, held, heldout_file, train_file, sft_cfg[0], opts, out / f"predictions_{key}.json")
        res["task_scores"] = task_scores(res["items"], [it.id for it in held])
        res["seconds_total"] = round(clock.elapsed() - t, 1)
        res["peak_rss_gb"] = round(peak_rss_gb(), 2)
        release_memory()
        stages[key] = res
        s = res["scores"]
        say(
            stage,
            f"EM {s['exact_match']:.3f}, ROUGE-1 {s['rouge_1']:.3f}, (EM + ROUGE-1)/2 {mean(res['task_scores']):.3f} "
            f"({res['seconds_total']:.0f} s)",
            clock,
        )

    # 2. before
    evaluate("before", opts.model)
    sft_s, grpo_s = training_budget(clock.left(), stages["before"]["seconds_total"], opts.sft_share)
    timings["planned_sft_s"], timings["planned_grpo_s"] = round(sft_s, 1), round(grpo_s, 1)

    # 3. SFT
    from .sft import run_sft

    say("SFT", f"supervised warm start ({sft_recipe.name}) for about {sft_s:.0f} s", clock)
    t = clock.elapsed()
    sft_cb = stage_callback("SFT", t + sft_s - SAVE_S, clock)
    with quiet_trainer():
        trainer = run_sft(*sft_cfg, sft_argv, callbacks=[sft_cb])
    sft_log = list(trainer.state.log_history)
    timings["sft_s"], timings["sft_steps"] = round(clock.elapsed() - t, 1), trainer.state.global_step
    timings["sft_peak_rss_gb"] = round(peak_rss_gb(), 2)
    del trainer
    release_memory()
    reset_accelerator_state()  # GRPO may train in another precision than SFT
    say("SFT", f"{timings['sft_steps']} steps in {timings['sft_s']:.0f} s, model saved to {sft_dir}", clock)

    # 4. after SFT
    evaluate("sft", str(sft_dir))

    # 5. GRPO
    from . import rewards
    from .train import make_trainer, train_and_save

    script_args, grpo_args, model_args = grpo_cfg
    weights = grpo_args.reward_weights or [1.0] * len(script_args.reward_funcs)
    optimised = [rewards.logged_name(n) for n, w in zip(script_args.reward_funcs, weights, strict=True) if w]
    grpo_deadline = clock.total - (EVAL_MARGIN * stages["sft"]["seconds_total"] + FINAL_S)
    grpo_deadline = max(grpo_deadline, clock.elapsed() + MIN_TRAIN_S)
    say(
        "GRPO",
        f"GRPO from the SFT model ({grpo_recipe.name}) for about {grpo_deadline - clock.elapsed():.0f} s; "
        f"optimising {', '.join(f'{w:g} x {n}' for n, w in zip(script_args.reward_funcs, weights, strict=True))}",
        clock,
    )
    t = clock.elapsed()
    grpo_cb = stage_callback("GRPO", grpo_deadline - SAVE_S, clock, optimised)
    with quiet_trainer():
        trainer, train_info = make_trainer(script_args, grpo_args, model_args, [grpo_cb])
    train_and_save(trainer, grpo_cfg, grpo_argv, train_info, None)
    grpo_log = list(trainer.state.log_history)
    timings["grpo_s"], timings["grpo_steps"] = round(clock.elapsed() - t, 1), trainer.state.global_step
    timings["grpo_peak_rss_gb"] = round(peak_rss_gb(), 2)
    del trainer
    release_memory()
    say("GRPO", f"{timings['grpo_steps']} steps in {timings['grpo_s']:.0f} s, model saved to {grpo_dir}", clock)

    # 6. after GRPO
    evaluate("grpo", str(grpo_dir))

    # 7. results
    say("results", "table, intervals, learning curve", clock)
    changes = stage_changes(stages, opts.seed)
    report = results_text(stages, changes, f"{len(held)} held-out items of the {where}", len(held))
    print(report, flush=True)
    atomic_write_text(out / "metrics.txt", report)
    stage_names = [EVAL_STAGES[k] for k in stages]
    drawn = plot_learning_curve(
        sft_log, grpo_log, optimised, score_rows(stages), stage_names, out / "learning_curve.png"
    )
    write_json(sft_dir / "log_history.json", sft_log)
    freed = {}
    if not opts.keep_model:
        for folder in (sft_dir, grpo_dir):
            freed[folder.name] = drop_weights(folder)
    timings["total_s"] = round(clock.elapsed(), 1)
    rss = round(peak_rss_gb(), 2)
    write_json(
        out / "metrics.json",
        {
            "stages": stage_records(stages, data_info["heldout_ids"]),
            "changes": changes,
            "data": data_info,
            "model": opts.model,
            "recipes": {"sft": str(sft_recipe), "grpo": str(grpo_recipe), "grpo_overrides": extra},
            "evaluation": {
                "dtype": opts.eval_dtype,
                "max_new_tokens": opts.eval_max_new_tokens,
                "shots": f"{sft_cfg[0].num_shots} {sft_cfg[0].shot_method}",
                "repair": "hybrid (predict's default)",
            },
            "grpo_rewards_optimised": optimised,
            "learning_curve": drawn,
            "timings": timings,
            "peak_rss_gb": rss,
            "kept_models": opts.keep_model,
        },
    )
    say("results", f"done in {mmss(timings['total_s'])} (budget {mmss(clock.total)}), peak RSS {rss:.2f} GB", clock)
    for line in output_lines(out, (sft_dir, grpo_dir) if opts.keep_model else (), freed):
        print(line)
    sys.stdout.flush()
    return 0
