"""Memory plan: parameter counts match real models, the budget reacts to each recipe field, every recipe plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malpyeong_grpo.cli import main
from malpyeong_grpo.files import DataError
from malpyeong_grpo.plan import budget, plan_command, read_recipe
from malpyeong_grpo.shapes import KNOWN_MODELS, ModelShape, find_config

ROOT = Path(__file__).resolve().parents[1]


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_param_count_matches_tiny_gemma(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    shape = ModelShape.from_config(cfg, "tiny")
    assert shape.total_params == _count(AutoModelForCausalLM.from_pretrained(tiny_model_dir))


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3"])
def test_param_count_matches_other_architectures(kind):
    import transformers

    common = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    }[kind]
    for tie in (True, False):
        config = config_cls(**common, num_key_value_heads=2, tie_word_embeddings=tie)
        shape = ModelShape.from_config(config.to_dict(), kind)
        assert shape.total_params == _count(model_cls(config)), (kind, tie)


def test_embedded_numbers_are_the_real_model():
    # 268,098,176 parameters: counted on the converted embedded checkpoint (see docs/throughput.md)
    shape = ModelShape.from_config(KNOWN_MODELS["google/gemma-3-270m"], "gemma")
    assert shape.total_params == 268_098_176
    assert shape.embedding_params == 262144 * 640


def test_shipped_8b_numbers_are_8b():
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B"):
        shape = ModelShape.from_config(KNOWN_MODELS[name], name)
        assert 7.9e9 < shape.total_params < 8.3e9, name


def _lines(b):
    return {name: value for name, value, _ in b.lines}


def _recipe(tmp_path: Path, **fields):
    """A recipe file read through the project's parser (TRL's real defaults for every field not given)."""
    path = tmp_path / "r.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct", **fields}))
    return read_recipe(path)


def test_budget_reacts_to_fields(tmp_path):
    shape = ModelShape.from_config(KNOWN_MODELS["meta-llama/Llama-3.1-8B-Instruct"], "llama")
    bf16 = _lines(budget(_recipe(tmp_path, dtype="bfloat16", use_peft=True), shape, gpu=True))
    q8 = _lines(budget(_recipe(tmp_path, load_in_8bit=True, use_peft=True), shape, gpu=True))
    q4 = _lines(budget(_recipe(tmp_path, load_in_4bit=True, use_peft=True), shape, gpu=True))
    assert q4["weights"] < q8["weights"] < bf16["weights"]
    assert abs(bf16["weights"] - 8.03e9 * 2 / 1024**3) < 0.05
    full = budget(_recipe(tmp_path, dtype="bfloat16"), shape, gpu=True)
    lora = budget(_recipe(tmp_path, dtype="bfloat16", use_peft=True), shape, gpu=True)
    assert lora.trainable < full.trainable / 100
    ckpt = _lines(budget(_recipe(tmp_path, gradient_checkpointing=True), shape, gpu=True))
    nockpt = _lines(budget(_recipe(tmp_path, gradient_checkpointing=False), shape, gpu=True))
    assert ckpt["activations (estimate)"] < nockpt["activations (estimate)"] / 5
    small = _lines(budget(_recipe(tmp_path, per_device_train_batch_size=2, num_generations=2), shape, gpu=True))
    big = _lines(budget(_recipe(tmp_path, per_device_train_batch_size=8, num_generations=2), shape, gpu=True))
    assert big["activations (estimate)"] == pytest.approx(4 * small["activations (estimate)"])


def test_freeze_embeddings_and_vllm_share(tmp_path):
    shape = ModelShape.from_config(KNOWN_MODELS["google/gemma-3-270m"], "gemma")
    free = budget(_recipe(tmp_path), shape, gpu=False)
    frozen = budget(_recipe(tmp_path, freeze_embeddings=True), shape, gpu=False)
    assert free.trainable - frozen.trainable == 262144 * 640
    vllm = budget(_recipe(tmp_path, use_vllm=True, vllm_gpu_memory_utilization=0.5), shape, gpu=True, gpu_gib=24)
    assert ("vLLM (colocate)", 12.0) in [(n, v) for n, v, _ in vllm.lines]  # the share of the device
    assert "KV cache (generate)" not in _lines(vllm)
    small = budget(_recipe(tmp_path, use_vllm=True, vllm_gpu_memory_utilization=0.01), shape, gpu=True, gpu_gib=24)
    assert _lines(small)["vLLM (colocate)"] > 0.24  # at least its weights copy, KV cache and runtime
    assert "raise the share" in [note for n, _, note in small.lines if n == "vLLM (colocate)"][0]


def test_cpu_speed_options_shrink_the_loss_pass(tmp_path):
    """share_prompt_prefix counts the group's prompt once, checkpoint_prompt keeps only its KV cache, completion-only
    logits score the completions alone, bf16_generation adds a half-size copy of the weights."""
    shape = ModelShape.from_config(KNOWN_MODELS["google/gemma-3-270m"], "gemma")
    base = {"gradient_checkpointing": False, "num_generations": 4, "per_device_train_batch_size": 4}
    base["max_completion_length"] = 128
    plain = _lines(budget(_recipe(tmp_path, **base), shape, gpu=False))
    head_only = _lines(budget(_recipe(tmp_path, completion_only_logits=True, **base), shape, gpu=False))
    shared = _lines(budget(_recipe(tmp_path, share_prompt_prefix=True, **base), shape, gpu=False))
    ckpt = _lines(budget(_recipe(tmp_path, share_prompt_prefix=True, checkpoint_prompt=True, **base), shape, gpu=False))
    gen = _lines(budget(_recipe(tmp_path, bf16_generation=True, **base), shape, gpu=False))
    assert head_only["LM-head tiles"] < plain["LM-head tiles"] / 2
    assert head_only["activations (estimate)"] == plain["activations (estimate)"]
    assert shared["LM-head tiles"] == head_only["LM-head tiles"]
    assert ckpt["activations (estimate)"] < shared["activations (estimate)"] < plain["activations (estimate)"] / 2
    assert "bf16 generation copy" not in plain
    assert gen["bf16 generation copy"] == pytest.approx(shape.total_params * 2 / 1024**3)


def test_every_recipe_plans(capsys):
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    assert recipes, "no recipes/*.yaml"
    assert main(["plan", "--gpu-gb", "24", *[a for r in recipes for a in ("--config", str(r))]]) == 0
    out = capsys.readouterr().out
    for r in recipes:
        assert str(r) in out
    assert out.count("  total ") == len(recipes)
    table = out[out.index("fits in 24 GiB? (one GPU)") :].splitlines()
    assert len(table) == 2 + sum("cpu" not in r.stem for r in recipes)  # a row per GPU recipe


def test_8b_lora_recipe_fits_24gb(capsys):
    recipe = ROOT / "recipes" / "llama-8b-lora.yaml"
    if not recipe.is_file():
        pytest.skip("no 8B LoRA recipe")
    assert plan_command(["--config", str(recipe), "--gpu-gb", "24"]) == 0
    assert "fits in 24 GiB" in capsys.readouterr().out
    assert plan_command(["--config", str(recipe), "--gpu-gb", "8"]) == 0
    assert "does NOT fit in 8 GiB" in capsys.readouterr().out


def test_overrides_and_bad_input(tmp_path, capsys):
    recipe = ROOT / "recipes" / "demo-cpu.yaml"
    plan_command(["--config", str(recipe), "--per_device_train_batch_size", "8", "--num_generations", "8"])
    assert "8 x " in capsys.readouterr().out
    with pytest.raises(DataError, match="recipe not found"):
        plan_command(["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: nobody/unknown-model-xyz\n")
    with pytest.raises(DataError, match="no config.json offline"):
        plan_command(["--config", str(bad)])
    bad.write_text("- just\n- a list\n")
    with pytest.raises(DataError, match="must contain a YAML mapping"):
        plan_command(["--config", str(bad)])
    bad.write_text("model_name_or_path: Qwen/Qwen3-8B\nwarp_drive: 9\n")  # the parser's own check
    with pytest.raises(DataError, match="warp_drive"):
        plan_command(["--config", str(bad)])
    bad.write_text("lora_r: 8\n")
    with pytest.raises(DataError, match="no model_name_or_path"):
        plan_command(["--config", str(bad)])
    with pytest.raises(DataError, match="warp"):
        plan_command(["--config", str(recipe), "--warp", "9"])
    assert main(["plan", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "error:" in capsys.readouterr().err


def test_local_config_folder_is_read(tiny_model_dir):
    cfg, source = find_config(str(tiny_model_dir))
    assert source.endswith("config.json") and cfg["hidden_size"] == 32


def test_recipes_are_read_with_trl_defaults(tmp_path):
    """Fields a recipe leaves out take TRL's own defaults (no hand-typed copy): GRPO and SFT recipes alike."""
    from trl import GRPOConfig, ModelConfig

    r = _recipe(tmp_path, use_peft=True)
    assert not r.sft
    assert r.train.num_generations == GRPOConfig.num_generations and r.train.beta == GRPOConfig.beta
    assert r.model.lora_r == ModelConfig.lora_r and r.train.loss_type == GRPOConfig.loss_type
    sft = read_recipe(ROOT / "recipes" / "sft-demo-cpu.yaml")
    assert sft.sft and sft.train.max_length == 1024
    assert "KV cache (generate)" not in _lines(
        budget(sft, ModelShape.from_config(KNOWN_MODELS["google/gemma-3-270m"], "g"), gpu=False)
    )
