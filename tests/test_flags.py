"""One flag dialect across verbs: TRL's underscores, with the old hyphen spellings accepted for one release."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from malpyeong_grpo.cli import main
from malpyeong_grpo.flags import DEFAULT_RETRIEVAL, flag
from malpyeong_grpo.predict import add_predict_args

VERBS = ["score", "predict", "evaluate", "baseline", "rules", "retrieve", "label", "retrieval-report", "plan", "demo"]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_predict_args(parser)
    return parser


def test_flag_puts_the_underscore_spelling_first() -> None:
    assert flag("num_shots") == ["--num_shots", "--num-shots"]
    assert flag("--max-new-tokens") == ["--max_new_tokens", "--max-new-tokens"]
    assert flag("model") == ["--model"]


def test_both_spellings_parse_to_the_same_value() -> None:
    parser = _predict_parser()
    new = parser.parse_args(["--num_shots", "3", "--max_new_tokens", "9", "--shot_method", "similar", "--top_p", ".5"])
    old = parser.parse_args(["--num-shots", "3", "--max-new-tokens", "9", "--shot-method", "similar", "--top-p", ".5"])
    assert vars(new) == vars(old)
    assert (new.num_shots, new.max_new_tokens, new.shot_method, new.top_p) == (3, 9, "similar", 0.5)


@pytest.mark.parametrize(("chat", "prompt_format"), [("yes", "chat"), ("no", "text"), ("auto", "auto")])
def test_chat_is_the_old_spelling_of_prompt_format(chat: str, prompt_format: str) -> None:
    parser = _predict_parser()
    assert parser.parse_args(["--chat", chat]).prompt_format == prompt_format
    assert parser.parse_args(["--prompt_format", prompt_format]).prompt_format == prompt_format
    assert parser.parse_args([]).prompt_format == "auto"
    assert not hasattr(parser.parse_args([]), "chat")


def test_the_cache_key_of_prompt_format_is_the_old_chat_key() -> None:
    from malpyeong_grpo.predict_options import PredictOptions, generation_settings

    args = PredictOptions.from_args(_predict_parser().parse_args(["--prompt_format", "text", "--model", "embedded"]))
    assert generation_settings(args)["chat"] == "no" and "prompt_format" not in generation_settings(args)


def test_every_verb_shows_the_underscore_form_first(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in VERBS:
        text = _help([verb, "--help"], capsys)
        for hyphen in set(re.findall(r"--[a-z0-9]+(?:-[a-z0-9]+)+", text)):
            under = hyphen[:2] + hyphen[2:].replace("-", "_")
            assert under in text and text.index(under) < text.index(hyphen), (verb, hyphen)


def test_one_retrieval_default_in_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    from malpyeong_grpo.configs import ScriptArguments

    assert ScriptArguments().retrieval_method == DEFAULT_RETRIEVAL
    assert _predict_parser().parse_args([]).retrieval_method == DEFAULT_RETRIEVAL
    assert f"({DEFAULT_RETRIEVAL})" in " ".join(_help(["retrieve", "--help"], capsys).split())


@pytest.mark.parametrize("verb", ["train", "sft"])
def test_train_help_shows_config_and_the_projects_options_first(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help([verb, "--help"], capsys)
    assert text.splitlines()[0] == f"usage: malpyeong-grpo {verb} [--config RECIPE.yaml] [--<field> VALUE ...]"
    config, script = text.index("--config RECIPE.yaml  "), text.index("project options: ScriptArguments")
    model, trl = text.index("model: TRL ModelConfig"), text.index("(inherited, with transformers TrainingArguments)")
    assert config < script < model < trl
    assert script < text.index("--num_shots") < model  # a ScriptArguments field
    assert script < text.index("--freeze_embeddings") < model  # a field the project's config class adds
    assert model < text.index("--model_name_or_path") < trl
    assert trl < text.index("--learning_rate")  # TRL's inherited options come last


def test_config_with_an_equals_sign_reads_the_recipe() -> None:
    from malpyeong_grpo.configs import parse_args
    from malpyeong_grpo.trainer import MalpyeongGRPOConfig

    recipe = str(Path(__file__).parents[1] / "recipes" / "demo-cpu.yaml")
    spaced = parse_args(["--config", recipe], MalpyeongGRPOConfig, "t", extras=False)
    joined = parse_args([f"--config={recipe}"], MalpyeongGRPOConfig, "t", extras=False)
    assert vars(spaced[0]) == vars(joined[0]) and vars(spaced[2]) == vars(joined[2])
    assert spaced[1].learning_rate == joined[1].learning_rate and spaced[1].beta == joined[1].beta
    assert joined[2].model_name_or_path == "embedded"
