"""The recipes of the task's real runs: each one parses, its header holds the budget that ``plan`` prints now, and one
GRPO step runs with its LoRA settings on a tiny random model of its architecture class (CPU, quantization off), so
that a recipe never breaks silently. Also ``benchmarks/gpu_check.sh`` in its CPU dry mode.

The tiny models take their architecture (model_type, tied embeddings) from the public config numbers that ``plan``
ships for the recipe's model; the tokenizer is tests/tiny.py's. A random model never writes the answer form, so the
competition rewards are 0 for every completion; as in test_train.py a ``length`` reward is added to give the group
different rewards, and the learned metrics are replaced by a stand-in suite (no encoder downloads).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import LenSuite

from malpyeong_grpo import plan, rewards, shapes, train
from malpyeong_grpo.configs import parse_args

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# the recipes of the task's real runs, and their transformers architecture class
REAL_RUNS = {
    "midm-2.0-base-lora.yaml": "LlamaForCausalLM",
    "midm-2.0-base-lora-24gb.yaml": "LlamaForCausalLM",
    "kanana-1.5-8b-lora.yaml": "LlamaForCausalLM",
    "qwen3-8b-lora.yaml": "Qwen3ForCausalLM",
}
SFT_RECIPES = ["sft-midm-2.0-base-lora.yaml", "sft-kanana-1.5-8b-lora.yaml", "sft-qwen3-8b-lora.yaml"]


def length(prompts, completions, **kwargs):
    """Test-only reward that differs between a random model's completions."""
    return [float(len(str(c))) / 10 for c in completions]


def tiny_model_of(model_name: str, out: Path) -> Path:
    """A tiny random model of ``model_name``'s architecture (plan's shipped config: model_type, tied embeddings,
    attention bias) with tests/tiny.py's tokenizer."""
    from tiny import make_tiny_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    make_tiny_model(out)  # writes the tokenizer (and a gemma model, replaced below)
    tok = AutoTokenizer.from_pretrained(out)
    real = shapes.KNOWN_MODELS[model_name]
    config = AutoConfig.for_model(
        real["model_type"],
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=4096,
        tie_word_embeddings=real["tie_word_embeddings"],
        attention_bias=real.get("attention_bias", False),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


def _budget_text(path: Path) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        plan.plan_command(["--config", str(path)])
    return buf.getvalue()


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_header_holds_the_current_plan_and_names_rewards_and_loss(recipe):
    """Each header's memory block is what plan prints today (total and verdict), and it names the loss variant."""
    path = RECIPES / recipe
    text = path.read_text(encoding="utf-8")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    printed = _budget_text(path)
    total = re.search(r"^  total\s+([\d.]+) GiB$", printed, re.M).group(1)
    assert re.search(rf"^#   total\s+{re.escape(total)} GiB$", header, re.M), (recipe, total)
    verdict = re.search(r"^  ((?:fits|does NOT fit) in .*)$", printed, re.M)
    if verdict:  # GPU recipes
        assert f"#   {verdict.group(1)}" in header, recipe
    r = plan.read_recipe(path)
    if r.sft:
        assert "no loss variant" in header, recipe
    else:
        for word in (f"loss_type {r.train.loss_type}", f"scale_rewards {r.train.scale_rewards}", "beta"):
            assert word in header, (recipe, word)
        assert "Rewards" in header or "reward" in header.lower()


def test_plan_knows_the_recipes_architectures():
    """Parameter counts from the shipped numbers: Midm-2.0-Base 11.5B (48 layers), kanana-1.5 8B, Qwen3-8B 8.2B."""
    counts = {
        name: shapes.ModelShape.from_config(config, name).total_params for name, config in shapes.KNOWN_MODELS.items()
    }
    assert 11.4e9 < counts["K-intelligence/Midm-2.0-Base-Instruct"] < 11.6e9
    assert 7.9e9 < counts["kakaocorp/kanana-1.5-8b-instruct-2505"] < 8.1e9
    assert 8.1e9 < counts["Qwen/Qwen3-8B"] < 8.3e9
    assert set(shapes.MODEL_SOURCES) == set(shapes.KNOWN_MODELS)
    for recipe in [*REAL_RUNS, *SFT_RECIPES]:
        r = plan.read_recipe(RECIPES / recipe)
        assert r.model.model_name_or_path in shapes.KNOWN_MODELS, recipe


def test_plan_prints_both_generation_paths_for_24gb(capsys):
    assert plan.plan_command([a for r in REAL_RUNS for a in ("--config", str(RECIPES / r))]) == 0
    out = capsys.readouterr().out
    table = out[out.index("fits in 24 GiB? (one GPU)") :]
    for recipe in REAL_RUNS:
        row = next(line for line in table.splitlines() if line.startswith(recipe))
        assert "fits" in row, row  # every real-run recipe fits one 24 GB GPU with HF generate
    midm = next(line for line in table.splitlines() if line.startswith("midm-2.0-base-lora.yaml"))
    assert "no: vLLM has no in-flight 8-bit" in midm
    qwen = next(line for line in table.splitlines() if line.startswith("qwen3-8b-lora.yaml"))
    assert re.search(r"GiB\s+fits.*GiB\s+fits \(vllm_gpu_memory_utilization", qwen), qwen


def test_midm_recipe_is_the_10th_place_configuration():
    r = plan.read_recipe(RECIPES / "midm-2.0-base-lora.yaml")
    m, t, s = r.model, r.train, r.script
    assert m.model_name_or_path == "K-intelligence/Midm-2.0-Base-Instruct" and m.load_in_8bit
    assert (m.lora_r, m.lora_alpha, m.lora_dropout) == (8, 16, 0.1)
    assert sorted(m.lora_target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert (t.num_generations, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (4, 1, 4)
    assert (t.beta, t.learning_rate, t.temperature, t.top_p) == (0.1, 2e-5, 0.6, 0.95)
    w = dict(zip(s.reward_funcs, t.reward_weights, strict=True))
    # (EM + format + (BERTScore + 3 ROUGE-1) / 2) / 3
    assert w["exact_match"] == w["format"] == pytest.approx(1 / 3, abs=1e-6)
    assert (w["rouge_1"], w["bertscore"]) == (pytest.approx(1 / 2, abs=1e-6), pytest.approx(1 / 6, abs=1e-6))
    assert w["bleurt"] == w["final"] == 0.0


def _argv(recipe: Path, model_dir: Path, out: Path, reward_funcs: list[str], weights: list[float]) -> list[str]:
    """The recipe with quantization, bf16 and vLLM off, on the tiny model and the sample set, one optimizer step."""
    return [
        "--config", str(recipe),
        "--model_name_or_path", str(model_dir),
        "--output_dir", str(out),
        "--load_in_8bit", "false", "--load_in_4bit", "false", "--bf16", "false", "--dtype", "float32",
        "--use_vllm", "false", "--reward_device", "cpu",
        "--use_sample_data", "true", "--num_shots", "0", "--max_items", "8",
        "--max_completion_length", "8", "--max_steps", "1", "--save_strategy", "no", "--logging_steps", "1",
        "--learning_rate", "1e-2", "--warmup_steps", "0", "--lr_scheduler_type", "constant",
        "--reward_funcs", *reward_funcs, "length",
        "--reward_weights", *map(str, weights), "1",
    ]  # fmt: skip


@pytest.mark.parametrize("recipe", sorted(REAL_RUNS))
def test_one_grpo_step_with_the_recipes_lora_on_its_architecture(recipe, tmp_path, monkeypatch):
    from peft import PeftModel

    from malpyeong_grpo.trainer import MalpyeongGRPOConfig

    monkeypatch.setattr(rewards, "get_suite", lambda *a, **k: LenSuite())
    monkeypatch.setitem(rewards.REWARDS, "length", length)
    path = RECIPES / recipe
    r = plan.read_recipe(path)
    model_dir = tiny_model_of(r.model.model_name_or_path, tmp_path / "model")
    assert REAL_RUNS[recipe] in (model_dir / "config.json").read_text()
    argv = _argv(path, model_dir, tmp_path / "run", list(r.script.reward_funcs), list(r.train.reward_weights))
    args, targs, margs = parse_args(argv, MalpyeongGRPOConfig, "t")
    # the recipe's LoRA, GRPO and loss settings survive the overrides
    for field in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"):
        assert getattr(margs, field) == getattr(r.model, field), field
    for field in ("num_generations", "beta", "loss_type", "scale_rewards", "gradient_checkpointing"):
        assert getattr(targs, field) == getattr(r.train, field), field

    trainer = train.run(args, targs, margs, argv)

    model = trainer.model
    assert isinstance(model, PeftModel) and type(model.get_base_model()).__name__ == REAL_RUNS[recipe]
    lora = model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (r.model.lora_r, r.model.lora_alpha, r.model.lora_dropout)
    targets = r.model.lora_target_modules
    all_linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    adapted = {name.rsplit(".", 1)[-1] for name in lora.target_modules}  # peft may list full module names
    assert adapted == (all_linear if targets in ("all-linear", ["all-linear"]) else set(targets))
    steps = [row for row in trainer.state.log_history if "reward" in row]
    assert len(steps) == 1 and trainer.state.global_step == 1
    for name in [*r.script.reward_funcs, "length"]:
        # a metric computed by a stand-in encoder is logged under a name that says so (bertscore_standin, ...)
        assert any(re.fullmatch(rf"rewards/{name}(_\w+)?/mean", key) for key in steps[0]), name
    assert steps[0]["grad_norm"] > 0
    moved = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]  # lora_B starts at zero
    assert moved, "no LoRA B matrix moved"
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)


def test_gpu_check_dry_mode_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh --device cpu: the whole check (training steps, prediction, rewards) on a tiny model."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHON=sys.executable)
    env.setdefault("GPU_CHECK_TIMEOUT", "900")  # ~1 minute of CPU work; a shared CI box may stretch its wall time
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=960, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["dry_run"] is True
    assert res["train"]["steps"] >= 2 and res["train"]["median_step_s"] > 0
    assert res["train"]["lora_moved"] is True
    assert res["predict"]["items"] >= 2 and res["predict"]["seconds"] > 0
    assert set(res["rewards"]["means"]) >= {"format", "exact_match", "rouge_1", "final"}
    assert "peak_gpu_memory_gib" in res  # None on CPU
    assert "step time" in proc.stdout and "peak GPU memory" in proc.stdout
