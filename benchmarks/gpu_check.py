"""The GPU path in a few minutes (run by benchmarks/gpu_check.sh): bf16 LoRA GRPO steps of a small model with the
speed options, prediction with the trained adapter, and the reward suite on the device; prints step time and peak
GPU memory and writes them to a JSON file.

    python benchmarks/gpu_check.py [--device cuda] [--model embedded] [--steps 6] [--out gpu_check.json]
    python benchmarks/gpu_check.py --device cpu      # dry mode: tiny random model, stand-in encoders, fp32

Everything runs offline: the default model is the embedded gemma-3-270m (shipped with the package), the prompts
come from the package's sample set, and the reward encoders from the Hugging Face cache (or the scorer's stand-ins).
The dry mode builds the tests' tiny random model (tests/tiny.py) and replaces the learned metrics by functions of
the text length, so that CI runs the same code path in about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REWARDS = ["format", "exact_match", "answer_similarity", "choice", "rouge_1", "bertscore", "bleurt", "final"]
# the speed options that act on a PEFT policy (docs/throughput.md); bf16_generation needs a full model
SPEED = ["completion_only_logits", "share_prompt_prefix", "share_prefill", "stop_at_markers"]


class StandInSuite:
    """Dry mode: the learned metrics as functions of the text length (no encoder downloads)."""

    def rouge1(self, preds: list[str], refs: list[str]) -> list[float]:
        return [min(len(p), 40) / 40 for p in preds]

    def bertscore(self, preds: list[str], refs: list[str]) -> list[float]:
        return [(len(p) % 7) / 7 for p in preds]

    def bleurt(self, preds: list[str], refs: list[str]) -> list[float]:
        return [(len(p) % 5) / 5 for p in preds]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--model", default=None, help="model (default: embedded on cuda, a tiny random model on cpu)")
    ap.add_argument("--steps", type=int, default=None, help="GRPO steps (default 6 on cuda, 2 on cpu)")
    ap.add_argument("--max-completion-length", type=int, default=None, help="default 128 on cuda, 8 on cpu")
    ap.add_argument("--predict-items", type=int, default=None, help="default 16 on cuda, 3 on cpu")
    ap.add_argument("--out", default="gpu_check.json")
    return ap.parse_args(argv)


def tiny_model(out: Path) -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import make_tiny_model

    return str(make_tiny_model(out, chat_template=True))


def train_argv(model: str, out: Path, args: argparse.Namespace, cuda: bool) -> list[str]:
    """A GRPO run on the sample set with LoRA, bf16 on CUDA, the speed options on (share_prompt_prefix needs the
    KV cache that gradient checkpointing switches off, so checkpointing is off: a 270M model needs none)."""
    argv = [
        "--model_name_or_path", model, "--output_dir", str(out), "--use_sample_data", "true", "--num_shots", "1",
        "--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.05",
        "--lora_target_modules", "all-linear",
        "--num_generations", "4", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
        "--max_completion_length", str(args.max_completion_length), "--max_steps", str(args.steps),
        "--learning_rate", "1e-3", "--lr_scheduler_type", "constant", "--warmup_steps", "0",
        "--temperature", "1.0", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
        "--gradient_checkpointing", "false", "--seed", "0",
        "--reward_funcs", *REWARDS, *([] if cuda else ["length"]),
        "--reward_weights", *["0.25", "0", "0.5", "0.5", "0", "0", "0", "1"], *([] if cuda else ["1"]),
        "--dtype", "bfloat16" if cuda else "float32", "--bf16", "true" if cuda else "false",
    ]  # fmt: skip
    if not cuda:
        argv += ["--use_cpu", "true"]
    for name in SPEED:
        argv += [f"--{name}", "true"]
    return argv


def step_timer() -> Any:
    """A TrainerCallback that records each optimizer step's wall time (device synchronised)."""
    import torch
    from transformers import TrainerCallback

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t0 = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            self._t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            self.times.append(time.perf_counter() - self._t0)

    return StepTimer()


def run_training(model: str, work: Path, args: argparse.Namespace, cuda: bool) -> tuple[Any, dict[str, Any]]:
    import torch

    from malpyeong_grpo import train
    from malpyeong_grpo.configs import parse_args
    from malpyeong_grpo.trainer import MalpyeongGRPOConfig

    argv = train_argv(model, work / "run", args, cuda)
    script, targs, margs = parse_args(argv, MalpyeongGRPOConfig, "gpu_check")
    timer = step_timer()
    trainer = train.run(script, targs, margs, argv, callbacks=[timer])
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    logged = [r for r in trainer.state.log_history if "reward" in r]
    times = timer.times[1:] or timer.times  # the first step holds the CUDA warm-up
    return trainer, {
        "steps": trainer.state.global_step,
        "step_s": [round(t, 3) for t in timer.times],
        "median_step_s": round(statistics.median(times), 3),
        "lora_moved": bool(lora_b) and any(bool(p.detach().abs().sum() > 0) for p in lora_b),
        "reward_mean_per_step": [round(r["reward"], 4) for r in logged],
        "dtype": str(next(trainer.model.parameters()).dtype) if not cuda else "bfloat16 base, fp32 LoRA",
        "speed_options": SPEED,
        "torch": torch.__version__,
    }


def run_prediction(trainer: Any, n: int, max_new_tokens: int) -> tuple[list[str], list[dict[str, Any]], dict]:
    from malpyeong_grpo.generation import generate_answers

    rows = [trainer.train_dataset[i] for i in range(min(n, len(trainer.train_dataset)))]
    model = trainer.model
    model.eval()
    t0 = time.perf_counter()
    texts = generate_answers(
        model, trainer.processing_class, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens
    )
    seconds = time.perf_counter() - t0
    return texts, rows, {"items": len(rows), "seconds": round(seconds, 3), "max_new_tokens": max_new_tokens}


def run_rewards(texts: list[str], rows: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """Every reward of the suite on the predictions and on the gold answers, encoders on ``device``."""
    from malpyeong_grpo import rewards

    scorer = rewards.PairScorer(device=device)
    columns = {k: [r.get(k) for r in rows] for k in ("answer", "question", "question_type")}
    prompts = [r["prompt"] for r in rows]
    t0 = time.perf_counter()
    means, gold = {}, {}
    for fn in rewards.get_rewards(REWARDS, scorer):
        means[fn.name] = round(statistics.fmean(fn(prompts, texts, **columns)), 4)
        gold[fn.name] = round(statistics.fmean(fn(prompts, columns["answer"], **columns)), 4)
    return {"means": means, "gold_means": gold, "seconds": round(time.perf_counter() - t0, 3), "device": device}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); --device cpu runs the dry mode")
        return 2
    args.steps = args.steps or (6 if cuda else 2)
    args.max_completion_length = args.max_completion_length or (128 if cuda else 8)
    args.predict_items = args.predict_items or (16 if cuda else 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    result: dict[str, Any] = {"device": args.device, "dry_run": not cuda}
    if cuda:
        result["gpu"] = torch.cuda.get_device_name(0)
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        if not cuda:
            from malpyeong_grpo import rewards

            rewards.get_suite = lambda *a, **k: StandInSuite()  # dry mode: no encoder downloads
            # a random model never writes the answer form (every reward 0, no gradient): add the completion length
            rewards.REWARDS["length"] = lambda prompts, completions, **kw: [len(str(c)) / 10 for c in completions]
            torch.set_num_threads(min(2, os.cpu_count() or 1))
        model = args.model or ("embedded" if cuda else tiny_model(work / "tiny"))
        result["model"] = "tiny random gemma3 (tests/tiny.py)" if not args.model and not cuda else model
        trainer, result["train"] = run_training(model, work, args, cuda)
        texts, rows, result["predict"] = run_prediction(trainer, args.predict_items, args.max_completion_length)
        result["rewards"] = run_rewards(texts, rows, "cuda" if cuda else "cpu")
    result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3) if cuda else None
    result["total_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    peak = "n/a (CPU dry mode)" if not cuda else f"{result['peak_gpu_memory_gib']:.2f} GiB"
    t = result["train"]
    print(f"gpu_check on {result.get('gpu', 'cpu')} ({'dry mode' if not cuda else 'bf16'}), model {result['model']}")
    print(
        f"  step time: median {t['median_step_s']:.2f} s over {t['steps']} GRPO steps (LoRA moved: {t['lora_moved']})"
    )
    print(f"  prediction: {result['predict']['items']} items in {result['predict']['seconds']:.1f} s")
    print(
        f"  rewards on {result['rewards']['device']}: {result['rewards']['seconds']:.1f} s, "
        f"means {result['rewards']['means']}"
    )
    print(f"  peak GPU memory: {peak}; total {result['total_s']:.0f} s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
