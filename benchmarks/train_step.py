"""Seconds per GRPO step and peak RSS: plain TRL ``GRPOTrainer`` defaults vs ``malpyeong-grpo train`` with a recipe.

Both sides do the same work: the same model, the same prompt dataset (the recipe's: training split minus its
holdout, k-shot prompts), the same group size, completion length, seed and reward functions, and both are built by
``train.make_trainer`` (model loading, datasets, rewards, ``trainer.MalpyeongGRPOTrainer``). Plain TRL gets only
what it needs to run that work (``num_generations``, ``per_device_train_batch_size``, ``max_completion_length``,
``seed``, fp32 since ``bf16`` needs ``use_cpu`` on a CPU-only machine); everything else is TRL's default
(``gradient_checkpointing=True``, ``learning_rate=1e-6``, ``temperature=1``...) and every speed option is off, so
the trainer is TRL's own ``GRPOTrainer`` (tests/test_trainer.py). Ours is the recipe; ``--opts`` switches more
options on (on either side: ``--trl-opts`` for per-option comparisons).

Each run is its own subprocess (peak RSS per process, from ``getrusage``); runs alternate TRL, ours, TRL, ours...
The first ``--warmup`` steps of each run are not timed.

    flock /tmp/heavy.lock python benchmarks/train_step.py --steps 3 --rounds 2 --out train_step.json
    python benchmarks/train_step.py --worker ours --opts share_prefix --steps 2     # one run, JSON on stdout

``--learning SECONDS`` runs each set-up for that wall-clock budget instead and reports the reward of the trained
policy on the first ``--heldout`` prompts of the training split's hold-out (greedy, the same decoding for every
set-up) and the mean training reward of its last 5 steps (the learning table of docs/throughput.md); there TRL gets
the recipe's learning rate and sampling settings. ``--worker ... --learning 0`` scores the untrained policy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# speed options: applied by hand on top of plain TRL (--worker trl), as recipe fields on our side (--worker ours)
OPTIONS = (
    "freeze_embeddings",  # do not train the tied 262k x 640 embedding (recipe field freeze_embeddings)
    "completion_only_logits",  # LM head on completion positions only, in TRL's own loss forward
    "share_prefix",  # each group's prompt through the backbone once in the loss forward (implies the above)
    "checkpoint_prompt",  # with share_prefix: recompute the prompt pass in backward instead of keeping it
    "no_grad_ckpt",  # gradient_checkpointing=False (TRL's default is True)
    "share_prefill",  # generation: the group's prompt prefilled once
    "bf16_generation",  # generation with a bfloat16 copy of the policy
    "stop_at_markers",  # generation ends where a base model starts a new few-shot block
    "bf16",  # bf16 autocast (use_cpu=True)
    "lora",  # peft LoRA (recipe fields use_peft, lora_r...)
    "tune_malloc",  # glibc mallopt: large blocks via mmap, 2 arenas (peak RSS)
)
OURS_DEFAULT = ""  # the recipe as it is
ALIGNED = ("learning_rate", "temperature", "top_p", "top_k", "lr_scheduler_type", "beta")


class Stopper:
    """A TrainerCallback that ends training once ``budget`` seconds of steps have elapsed."""

    def __new__(cls, budget: float):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def __init__(self) -> None:
                self.start = None

            def on_step_begin(self, args, state, control, **kw):
                if self.start is None:
                    self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if time.perf_counter() - self.start >= budget:
                    control.should_training_stop = True

        return _Stop()


def recipe_args(args: argparse.Namespace, steps: int, out_dir: str):
    """(script args, MalpyeongGRPOConfig, ModelConfig) of the recipe with the benchmark's overrides."""
    from malpyeong_grpo.configs import parse_args
    from malpyeong_grpo.trainer import MalpyeongGRPOConfig

    argv = [
        "--config",
        args.recipe,
        "--output_dir",
        out_dir,
        "--max_steps",
        str(steps),
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--logging_steps",
        "1",
        "--seed",
        str(args.seed),
        "--num_generations",
        str(args.generations),
        "--per_device_train_batch_size",
        str(args.generations),
        "--gradient_accumulation_steps",
        "1",
        "--max_completion_length",
        str(args.max_completion_length),
        "--reward_funcs",
        *args.reward_funcs,
        "--reward_weights",
        *[str(w) for w in args.reward_weights or [1.0] * len(args.reward_funcs)],
        *[part for kv in args.override for part in ("--" + kv.partition("=")[0], kv.partition("=")[2])],
    ]
    return parse_args(argv, MalpyeongGRPOConfig, prog="train_step")


def option_fields(opt: str) -> list[tuple[str, str, object]]:
    """The fields (config / model arguments) that switch an option on; the rest are MalpyeongGRPOConfig fields."""
    fields = {
        "share_prefix": [("config", "share_prompt_prefix", True)],
        "no_grad_ckpt": [("config", "gradient_checkpointing", False)],
        "bf16": [("config", "bf16", True), ("config", "use_cpu", True)],
        "lora": [("model", "use_peft", True)],
    }
    return fields.get(opt, [("config", opt, True)])


def set_options(opts: set[str], config, model_args) -> None:
    """Switch ``opts`` on as fields."""
    for opt in opts:
        for obj, name, value in option_fields(opt):
            setattr({"config": config, "model": model_args}[obj], name, value)


def plain_trl_config(args, opts, config, model_args, steps, out_dir):
    """A config with TRL's defaults for everything but the shared work (every speed option off), plus ``opts``."""
    from malpyeong_grpo.trainer import MalpyeongGRPOConfig

    kwargs = {
        "output_dir": out_dir,
        "num_generations": args.generations,
        "per_device_train_batch_size": args.generations,
        "max_completion_length": args.max_completion_length,
        "max_steps": steps,
        "seed": args.seed,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "bf16": False,
        "reward_weights": config.reward_weights,
    }
    if args.learning is not None:  # the learning comparison is about speed, not hyperparameters
        kwargs.update({k: getattr(config, k) for k in ALIGNED})
    model_args.use_peft = False
    for opt in opts:  # at construction: bf16 / use_cpu act in the config's __post_init__
        for obj, name, value in option_fields(opt):
            if obj == "config":
                kwargs[name] = value
            else:
                setattr(model_args, name, value)
    return MalpyeongGRPOConfig(**kwargs)


def heldout_reward(trainer, script, n: int) -> dict:
    """Greedy completions of the trained policy for the first ``n`` prompts of the training split's hold-out
    (the same decoding for every set-up: the float32 policy itself, up to the completion length, stopping at the
    few-shot markers) and their weighted reward, the training objective."""
    from malpyeong_grpo import generation, rewards, train

    tok = trainer.processing_class
    _, val, _ = train.build_datasets(script, tok)
    rows = val.select(range(min(n, len(val))))
    model = trainer.accelerator.unwrap_model(trainer.model)  # the float32 policy (not a bf16 sampling copy)
    texts = generation.generate_answers(
        model, tok, rows["prompt"], max_new_tokens=trainer.args.max_completion_length, batch_size=4, progress=False
    )
    extra = {c: rows[c] for c in rows.column_names if c != "prompt"}
    funcs = rewards.get_rewards(script.reward_funcs)
    weights = trainer.args.reward_weights or [1.0] * len(funcs)
    per_func = [f(prompts=rows["prompt"], completions=texts, **extra) for f in funcs]
    total = [sum(w * r[i] for w, r in zip(weights, per_func, strict=True)) for i in range(len(texts))]
    return {
        "heldout_items": len(texts),
        "heldout_reward": round(sum(total) / len(total), 4),
        "heldout_by_reward": {
            name: round(sum(r) / len(r), 4) for name, r in zip(script.reward_funcs, per_func, strict=True)
        },
    }


def worker(args: argparse.Namespace) -> dict:
    """Build one trainer (``trl`` or ``ours``), train, return the profile as a dict."""
    import torch

    from malpyeong_grpo import train
    from malpyeong_grpo.profiler import StepProfiler

    opts = set(filter(None, args.opts.split(",")))
    if unknown := opts - set(OPTIONS):
        raise SystemExit(f"unknown options: {sorted(unknown)} (known: {', '.join(OPTIONS)})")
    learning = args.learning is not None
    steps = 10**6 if learning else args.warmup + args.steps
    out_dir = tempfile.mkdtemp(prefix="train-step-")
    script, config, model_args = recipe_args(args, steps, out_dir)
    callbacks = [Stopper(args.learning)] if learning else []
    if args.worker == "ours":  # the recipe; options are its fields
        set_options(opts, config, model_args)
    else:
        config = plain_trl_config(args, opts, config, model_args, steps, out_dir)
    trainer, _ = train.make_trainer(script, config, model_args, callbacks)
    prof = StepProfiler().attach(trainer)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    if not learning or args.learning > 0:  # --learning 0: the policy before training, for reference
        trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "reward" in h]
    heldout = heldout_reward(trainer, script, args.heldout) if learning else {}
    targs = trainer.args
    return {
        "side": args.worker,
        "opts": sorted(opts),
        "threads": torch.get_num_threads(),
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "settings": {
            k: getattr(targs, k)
            for k in ("gradient_checkpointing", "bf16", "learning_rate", "temperature", "top_p", "beta")
        },
        "train_wall_s": round(wall, 2),
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **prof.summary(skip=0 if learning else args.warmup),
        "steps_s": [r.seconds for r in prof.records],
        "steps_cpu_s": [r.cpu_seconds for r in prof.records],
        "step_phases": [r.phases for r in prof.records],
        "step_peak_rss_gb": [r.peak_rss_gb for r in prof.records],
        "rewards": [h["reward"] for h in logs],
        "completion_mean_length": [h.get("completions/mean_length") for h in logs],
        **heldout,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=("trl", "ours"), help="run one set-up in this process, print JSON")
    ap.add_argument("--opts", default="", help=f"speed options for --worker: {', '.join(OPTIONS)}")
    ap.add_argument("--ours", default=OURS_DEFAULT, help="--opts of our side: recipe fields to switch on")
    ap.add_argument("--trl-opts", default="", help="--opts of the TRL side (for per-option comparisons)")
    ap.add_argument("--recipe", default="recipes/demo-cpu.yaml")
    ap.add_argument("--override", nargs="*", default=[], help="more recipe fields as field=value (nargs: yes)")
    ap.add_argument("--reward-funcs", nargs="+", default=["format"])
    ap.add_argument("--reward-weights", nargs="+", type=float, default=None)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds (each: one TRL run, one ours)")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--max-completion-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--learning", type=float, default=None, help="wall-clock budget per run, seconds (0: the untrained policy)"
    )
    ap.add_argument("--heldout", type=int, default=16, help="--learning: hold-out prompts scored after the budget")
    ap.add_argument("--out", default=None, help="write the JSON results here")
    return ap.parse_args(argv)


def run_child(args: argparse.Namespace, side: str, opts: str) -> dict:
    """Run one worker in a subprocess and return its JSON (last stdout line)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, f"--opts={opts}"]
    cmd += ["--recipe", args.recipe, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--generations", str(args.generations), "--max-completion-length", str(args.max_completion_length)]
    cmd += ["--seed", str(args.seed), "--reward-funcs", *args.reward_funcs]
    if args.reward_weights:
        cmd += ["--reward-weights", *map(str, args.reward_weights)]
    if args.learning is not None:
        cmd += ["--learning", str(args.learning), "--heldout", str(args.heldout)]
    if args.override:
        cmd += ["--override", *args.override]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.learning is not None and args.learning <= 0 and not args.worker:
        raise SystemExit("--learning 0 (the untrained policy) is for --worker runs")
    if args.worker:
        print(json.dumps(worker(args), ensure_ascii=False))
        return 0
    runs: dict[str, list[dict]] = {"trl": [], "ours": []}
    for r in range(args.rounds):
        for side, opts in (("trl", args.trl_opts), ("ours", args.ours)):
            res = run_child(args, side, opts)
            runs[side].append(res)
            print(
                f"round {r + 1} {side}: {res['median_s_per_step']} s/step over {res['steps']} steps "
                f"(phases {res['phases']}), peak RSS {res['peak_rss_gb']} GB",
                flush=True,
            )
    summary = {}
    for side, rs in runs.items():
        skip = 0 if args.learning is not None else args.warmup
        steps = [s for res in rs for s in res["steps_s"][skip:]]
        summary[side] = {
            "median_s_per_step": round(statistics.median(steps), 2),
            "peak_rss_gb": max(res["peak_rss_gb"] for res in rs),
            "steps": len(steps),
        }
        if args.learning is not None:
            summary[side]["heldout_reward"] = round(statistics.mean(res["heldout_reward"] for res in rs), 4)
            summary[side]["train_reward_last5"] = round(
                statistics.mean(r for res in rs for r in res["rewards"][-5:]), 4
            )
    ratio = summary["ours"]["median_s_per_step"] / summary["trl"]["median_s_per_step"]
    trl, ours = summary["trl"], summary["ours"]
    print(f"plain TRL: {trl['median_s_per_step']} s/step (median of {trl['steps']}), peak RSS {trl['peak_rss_gb']} GB")
    print(
        f"ours ({args.recipe} + {args.ours or 'nothing'}): {ours['median_s_per_step']} s/step "
        f"(median of {ours['steps']}), peak RSS {ours['peak_rss_gb']} GB"
    )
    print(f"ratio ours/TRL: {ratio:.2f}")
    if args.learning is not None:
        for side in ("trl", "ours"):
            res = summary[side]
            print(
                f"{side}: {res['steps']} steps in {args.learning:g} s, hold-out reward {res['heldout_reward']}, "
                f"training reward of the last 5 steps {res['train_reward_last5']}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "ratio": ratio, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
