"""Seconds per GRPO step and peak RSS: plain TRL GRPOTrainer defaults vs ours, same work, side by side.

Each run is its own subprocess (peak RSS is per process); runs alternate between the two set-ups.

    flock /tmp/heavy.lock python benchmarks/train_step.py --steps 3 --rounds 2
    python benchmarks/train_step.py --worker --opts freeze_embeddings,completion_only_logits --steps 3
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

OPTIONS = (
    "freeze_embeddings",  # do not train the tied 262k x 640 embedding
    "completion_only_logits",  # LM head on completion positions only (TRL's own loss forward)
    "share_prefix",  # each group's prompt through the backbone once in the loss forward (implies the above)
    "no_grad_ckpt",  # gradient_checkpointing=False (TRL's default is True)
    "share_prefill",  # generation: the group's prompt prefilled once
    "bf16_generation",  # generation with a bfloat16 copy of the policy
    "stop_at_markers",  # generation ends where a base model starts a new few-shot block
    "bf16",  # TRL bf16 autocast (use_cpu=True)
    "lora",  # peft LoRA on all linear layers (r=--lora-r)
)


def format_reward(completions, **kwargs) -> list[float]:
    """1.0 when the completion's answer parses as the official scorer parses it and a reason follows."""
    from malpyeong_grpo.answer import parse_answer
    from malpyeong_grpo.prompts import extract_answer

    out = []
    for c in completions:
        p = parse_answer(extract_answer(c))
        out.append(1.0 if p.pattern and p.reason else 0.0)
    return out


def build_dataset(data_dir: str, shots: int, seed: int):
    """Plain-text k-shot prompts for every training item (shots drawn from the training split)."""
    from datasets import Dataset

    from malpyeong_grpo.data import load_items, split_path
    from malpyeong_grpo.prompts import build_prompt, select_shots

    items = load_items(split_path("train", data_dir), require_answer=True)
    rows = [
        {"prompt": build_prompt(it, select_shots(it, items, shots, seed), chat=False), "answer": it.answer}
        for it in items
    ]
    return Dataset.from_list(rows)


def worker(args: argparse.Namespace) -> dict:
    """Build one trainer, run warm-up + ``steps`` steps, return the profile as a dict."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from malpyeong_grpo import speed
    from malpyeong_grpo.models import load_tokenizer, resolve_model

    opts = set(filter(None, args.opts.split(",")))
    unknown = opts - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown options: {sorted(unknown)}")
    speed.set_threads(args.threads)
    path = resolve_model(args.model)
    tok = load_tokenizer(path)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if "freeze_embeddings" in opts:
        speed.freeze_embeddings(model)
    if "completion_only_logits" in opts:
        speed.completion_only_logits()
    if "stop_at_markers" in opts:
        speed.stop_at_markers(model, tok)
    gen_model = speed.bf16_generation(model) if "bf16_generation" in opts else model
    if "share_prefill" in opts:
        speed.share_prefill(gen_model)
    peft_config = None
    if "lora" in opts:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    # fp32 unless asked: TRL's default bf16=True is refused on a CPU-only machine without use_cpu
    kwargs = {"bf16": "bf16" in opts, "use_cpu": "bf16" in opts}
    if "no_grad_ckpt" in opts:
        kwargs["gradient_checkpointing"] = False
    if args.lr is not None:
        kwargs["learning_rate"] = args.lr
    out_dir = tempfile.mkdtemp(prefix="train-step-")
    config = GRPOConfig(
        output_dir=out_dir,
        num_generations=args.generations,
        per_device_train_batch_size=args.generations,
        max_completion_length=args.max_completion_length,
        max_steps=args.warmup + args.steps,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        **kwargs,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[format_reward],
        args=config,
        train_dataset=build_dataset(args.data_dir, args.shots, args.seed),
        processing_class=tok,
        peft_config=peft_config,
    )
    if "share_prefix" in opts:
        speed.share_prompt_prefix(trainer)
    prof = speed.StepProfiler().attach(trainer)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    comp_len = [h.get("completions/mean_length") for h in trainer.state.log_history if "reward" in h]
    return {
        "opts": sorted(opts),
        "threads": torch.get_num_threads(),
        "trainable_params": trainable,
        "train_wall_s": round(wall, 2),
        **prof.summary(skip=args.warmup),
        "steps_s": [r.seconds for r in prof.records],
        "step_phases": [r.phases for r in prof.records],
        "rewards": rewards,
        "completion_mean_length": comp_len,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help="run one set-up in this process and print JSON")
    ap.add_argument("--opts", default="", help=f"comma-separated speed options for --worker: {', '.join(OPTIONS)}")
    ap.add_argument(
        "--ours",
        default="freeze_embeddings,share_prefix,no_grad_ckpt,share_prefill,stop_at_markers",
        help="options of our set-up",
    )
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--data-dir", default=os.environ.get("MALPYEONG_DATA_DIR", "../shared/data"))
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds (each: one TRL run, one ours)")
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--max-completion-length", type=int, default=128)
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--out", default=None, help="write the JSON results here")
    return ap.parse_args(argv)


def run_child(argv: list[str]) -> dict:
    """Run one worker in a subprocess and return its JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args), ensure_ascii=False))
        return 0
    common = [
        f"--model={args.model}",
        f"--data-dir={args.data_dir}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--generations={args.generations}",
        f"--max-completion-length={args.max_completion_length}",
        f"--shots={args.shots}",
        f"--seed={args.seed}",
    ]
    runs: dict[str, list[dict]] = {"trl": [], "ours": []}
    for r in range(args.rounds):
        for name, opts in (("trl", ""), ("ours", args.ours)):
            res = run_child([*common, f"--opts={opts}"])
            runs[name].append(res)
            print(f"round {r + 1} {name}: {res['median_s_per_step']} s/step, peak RSS {res['peak_rss_gb']} GB")
    summary = {}
    for name, rs in runs.items():
        steps = [s for res in rs for s in res["steps_s"][args.warmup :]]
        summary[name] = {
            "median_s_per_step": round(statistics.median(steps), 2),
            "peak_rss_gb": max(res["peak_rss_gb"] for res in rs),
        }
    ratio = summary["ours"]["median_s_per_step"] / summary["trl"]["median_s_per_step"]
    print(f"plain TRL: {summary['trl']['median_s_per_step']} s/step, peak RSS {summary['trl']['peak_rss_gb']} GB")
    ours = summary["ours"]
    print(f"ours ({args.ours}): {ours['median_s_per_step']} s/step, peak RSS {ours['peak_rss_gb']} GB")
    print(f"ratio ours/TRL: {ratio:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "ratio": ratio, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
