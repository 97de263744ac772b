"""Recipes and arguments: every recipe parses, the command line overrides the recipe, bad input is one DataError
line naming the file, and the run record holds config, versions and commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from malpyeong_grpo.configs import ScriptArguments, parse_args, run_record, write_run_record
from malpyeong_grpo.files import DataError
from malpyeong_grpo.trainer import MalpyeongGRPOConfig as GRPOConfig
from malpyeong_grpo.trainer import MalpyeongSFTConfig as SFTConfig

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
# what a GPU recipe needs a GPU for, switched off so that the rest parses on this CPU machine
GPU_ONLY = {
    "qwen2-0.5b-instruct.yaml": {"bf16": "false"},
    "llama-8b-lora.yaml": {"bf16": "false", "load_in_4bit": "false"},
    "qwen3-8b-lora.yaml": {"bf16": "false", "load_in_4bit": "false"},
    "midm-2.0-base-lora.yaml": {"bf16": "false", "load_in_8bit": "false"},
    "midm-2.0-base-lora-24gb.yaml": {"bf16": "false", "load_in_8bit": "false"},
    "kanana-1.5-8b-lora.yaml": {"bf16": "false"},
    "sft-qwen3-8b-lora.yaml": {"bf16": "false", "load_in_4bit": "false"},
    "sft-midm-2.0-base-lora.yaml": {"bf16": "false", "load_in_8bit": "false"},
    "sft-kanana-1.5-8b-lora.yaml": {"bf16": "false"},
}


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_parses_and_documents_its_memory(recipe):
    path = RECIPES / recipe
    text = path.read_text(encoding="utf-8")
    assert "memory" in text.lower() and "GB" in text  # each recipe documents its expected memory
    off = GPU_ONLY.get(recipe, {})
    extra = [x for k, v in off.items() for x in (f"--{k}", v)]
    config_class = SFTConfig if recipe.startswith("sft") else GRPOConfig
    script, config, model = parse_args(["--config", str(path), *extra], config_class, "t")
    raw = yaml.safe_load(text)
    for key, value in raw.items():
        obj = next(o for o in (script, config, model) if hasattr(o, key))
        got = getattr(obj, key)
        got = got.value if hasattr(got, "value") else got  # enums such as lr_scheduler_type
        if key == "report_to" and value == "none":
            value = []
        if key not in off:
            assert got == value or str(got) == str(value), (recipe, key, got, value)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (RECIPES / "method").glob("*.yaml")))
def test_every_method_recipe_parses_to_its_values(recipe, tmp_path, monkeypatch):
    """The method table's CPU recipes (docs/method.md): every key lands on a field with the written value."""
    path = RECIPES / "method" / recipe
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # the files a recipe names (rules, labels) are made in the working folder
    for key in ("rules_file", "labels_file"):
        if key in raw:
            (tmp_path / raw[key]).write_text("{}\n", encoding="utf-8")
    config_class = SFTConfig if recipe.startswith("sft") else GRPOConfig
    script, config, model = parse_args(["--config", str(path)], config_class, "t")
    for key, value in raw.items():
        got = getattr(next(o for o in (script, config, model) if hasattr(o, key)), key)
        got = got.value if hasattr(got, "value") else got
        assert got == value or str(got) == str(value) or (key == "report_to" and got == []), (recipe, key, got)
    if "overlong" in script.reward_funcs:  # the soft zone lies inside the completion limit
        assert 0 < script.overlong_cache < config.max_completion_length


def test_overlong_zone_must_lie_inside_the_limit():
    argv = ["--config", str(RECIPES / "method" / "grpo-long-gemma-270m-cpu.yaml"), "--max_completion_length", "32"]
    with pytest.raises(DataError, match="overlong_cache \\(48\\) must be below max_completion_length \\(32\\)"):
        parse_args(argv, GRPOConfig, "t")
    assert parse_args([*argv, "--overlong_cache", "8"], GRPOConfig, "t")[0].overlong_cache == 8


def test_qwen_recipe_is_the_original_design():
    _, cfg, model = parse_args(
        ["--config", str(RECIPES / "qwen2-0.5b-instruct.yaml"), "--bf16", "false"], GRPOConfig, "t"
    )
    assert model.model_name_or_path == "Qwen/Qwen2-0.5B-Instruct"
    assert (cfg.num_generations, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (4, 2, 2)
    assert (cfg.learning_rate, cfg.num_train_epochs) == (1e-5, 3)


def test_llama_recipe_is_qlora():
    recipe = yaml.safe_load((RECIPES / "llama-8b-lora.yaml").read_text(encoding="utf-8"))
    assert recipe["load_in_4bit"] and recipe["use_peft"] and recipe["lora_r"] == 16
    assert recipe["model_name_or_path"].startswith("meta-llama/") and "8B" in recipe["model_name_or_path"]


def test_command_line_overrides_the_recipe():
    argv = ["--config", str(RECIPES / "demo-cpu.yaml"), "--max_steps", "2", "--num_shots", "1"]
    argv += ["--reward_funcs", "format", "final", "--reward_weights", "0.5", "1", "--model_name_or_path", "x"]
    script, cfg, model = parse_args(argv, GRPOConfig, "t")
    assert (cfg.max_steps, script.num_shots, model.model_name_or_path) == (2, 1, "x")
    assert script.reward_funcs == ["format", "final"] and cfg.reward_weights == [0.5, 1.0]
    assert cfg.num_generations == 4 and cfg.freeze_embeddings  # the rest from the recipe
    assert not cfg.bf16  # CPU machine: TRL's bf16 default is switched off


def test_defaults_without_a_recipe():
    script, cfg, _ = parse_args([], GRPOConfig, "t")
    assert script == ScriptArguments()
    assert script.reward_funcs == ["format", "exact_match", "rouge_1", "bertscore", "bleurt", "final"]
    assert script.rules_file is None and not cfg.freeze_embeddings


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("num_shots: 2\nnot_a_field: 1\n", [], "Unknown arguments from config file"),
        ("- just\n- a list\n", [], "must contain a YAML mapping"),
        ("num_shots: [\n", [], "while parsing"),
        ("reward_funcs: [format, final]\nreward_weights: [1.0]\n", [], "1 reward_weights for 2 reward_funcs"),
        ("holdout_fraction: 1.5\n", [], "holdout_fraction must be in [0, 1)"),
        ("reward_funcs: [format, bleu]\n", [], "unknown reward(s) bleu"),
        ("reward_funcs: [rule]\n", [], "the 'rule' reward needs rules_file"),
        ("prompt_format: markdown\n", [], "prompt_format must be one of"),
        ("checkpoint_prompt: true\n", [], "checkpoint_prompt needs share_prompt_prefix"),
        ("retrieval_method: learned\n", ["--rules_file", __file__], "retrieval_method learned needs labels_file"),
        ("retrieval_method: tfidf\n", [], "retrieval_method must be one of"),
        ("num_shots: 1\n", ["--train_file", "/nonexistent/train.json"], "train_file /nonexistent/train.json: file not"),
        ("num_generations: 3\nper_device_train_batch_size: 4\n", [], "divisible by num_generations"),
    ],
)
def test_bad_recipes_are_one_line_errors_naming_the_file(tmp_path, text, extra, message):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(DataError) as e:
        parse_args(["--config", path, *extra], GRPOConfig, "t")
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith(path + ": ") and message in e.value.problems[0], e.value.problems


def test_optional_extras_are_one_line_errors(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name in ("vllm", "bitsandbytes") else real(name)
    )
    with pytest.raises(DataError, match="use_vllm needs vLLM"):
        parse_args(["--use_vllm", "true"], GRPOConfig, "t")
    with pytest.raises(DataError, match="need bitsandbytes"):
        parse_args(["--config", str(RECIPES / "llama-8b-lora.yaml"), "--bf16", "false"], GRPOConfig, "t")


def test_dev_split_as_train_file_needs_the_explicit_flag(data_dir):
    dev = str(data_dir / "korean_language_rag_V1.0_dev.json")
    with pytest.raises(DataError) as e:
        ScriptArguments(train_file=dev).check()
    assert e.value.problems == [
        f"arguments: train_file {dev} is the dev split (the evaluation split); set allow_dev_training to train on it "
        "anyway"
    ]
    ScriptArguments(train_file=dev, allow_dev_training=True).check()  # the user says they mean it
    ScriptArguments(train_file=str(data_dir / "korean_language_rag_V1.0_train.json")).check()
    script, _, _ = parse_args(["--train_file", dev, "--allow_dev_training", "true"], GRPOConfig, "t")
    assert script.allow_dev_training and script.train_file == dev
    with pytest.raises(DataError, match="is the dev split"):
        parse_args(["--train_file", dev], GRPOConfig, "t")


def test_missing_config_file(tmp_path):
    with pytest.raises(DataError, match="config file not found"):
        parse_args(["--config", str(tmp_path / "none.yaml")], GRPOConfig, "t")


def test_sft_parses_with_the_same_script_arguments():
    script, cfg, _ = parse_args(["--config", str(RECIPES / "sft-demo-cpu.yaml"), "--max_length", "512"], SFTConfig, "t")
    assert isinstance(cfg, SFTConfig) and cfg.max_length == 512 and script.num_shots == 1


def test_run_record_and_its_file(tmp_path):
    script, cfg, model = parse_args(["--config", str(RECIPES / "demo-cpu.yaml")], GRPOConfig, "t")
    record = run_record(["--config", "x.yaml"], script, cfg, model)
    assert record["argv"][1:] == ["--config", "x.yaml"]
    assert set(record["configs"]) == {"ScriptArguments", "MalpyeongGRPOConfig", "ModelConfig"}
    assert record["configs"]["MalpyeongGRPOConfig"]["num_generations"] == 4
    assert record["configs"]["ModelConfig"]["model_name_or_path"] == "embedded"
    assert record["packages"]["trl"] and record["packages"]["torch"] and record["packages"]["python"]
    assert len(record["git_commit"]) == 40
    path = write_run_record(tmp_path, record)
    with path.open("a", encoding="utf-8") as f:
        f.write('{"torn": ')  # a launch killed mid-write
    write_run_record(tmp_path, record)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and lines[1]["configs"]["MalpyeongGRPOConfig"]["num_generations"] == 4


@pytest.mark.parametrize("verb", ["train", "sft", "demo"])
def test_help(verb, capsys):
    from malpyeong_grpo.cli import main

    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: malpyeong-grpo {verb}")
    assert ("--freeze_embeddings" in out) == (verb != "demo")


def documented_commands() -> list[tuple[str, list[str]]]:
    """(verb, arguments) of every `train`/`sft` command in docs/training.md's bash blocks."""
    import re
    import shlex

    text = (RECIPES.parent / "docs" / "training.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            for verb in ("train", "sft"):
                for head in (f"malpyeong-grpo {verb} ", f"malpyeong_grpo.cli {verb} "):
                    if head in line:
                        out.append((verb, shlex.split(line.split(head, 1)[1], comments=True)))
    return out


def test_documented_commands_parse(monkeypatch):
    import malpyeong_grpo.configs as configs

    monkeypatch.chdir(RECIPES.parent)
    monkeypatch.setattr(configs, "_check_extras", lambda *a: None)  # vLLM / bitsandbytes / GPU are not here
    commands = documented_commands()
    assert len(commands) >= 8
    for verb, argv in commands:
        parse_args([*argv, "--bf16", "false"], SFTConfig if verb == "sft" else GRPOConfig, "t")
