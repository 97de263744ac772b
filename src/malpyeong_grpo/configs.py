"""Run configuration: the script's own arguments beside TRL's ``GRPOConfig``/``SFTConfig`` and ``ModelConfig``, parsed
with ``TrlParser`` (``--config recipe.yaml``, every field overridable on the command line), and the run record
(resolved config, package versions, git commit) written into every run directory."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import dev_split_problem
from .files import DataError, read_jsonl
from .flags import DEFAULT_RETRIEVAL, PROMPT_FORMATS, RETRIEVAL_METHODS

DEFAULT_REWARDS = ["format", "exact_match", "rouge_1", "bertscore", "bleurt", "final"]
RECORDED_PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bert-score",
    "kiwipiepy",
    "python-mecab-ko",
    "bitsandbytes",
    "deepspeed",
    "vllm",
)


@dataclass
class ScriptArguments:
    """What to train on and how to reward it; everything that is not a TRL trainer or model field."""

    # data
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Official data folder (default: $MALPYEONG_DATA_DIR or ../shared/data when it holds the "
            "files, else the package's sample set)."
        },
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training items in the official schema (overrides data_dir's train split)."}
    )
    allow_dev_training: bool = field(
        default=False, metadata={"help": "Accept the dev split (the evaluation split) as train_file."}
    )
    use_sample_data: bool = field(
        default=False, metadata={"help": "Train on the package's own sample set instead of the official data."}
    )
    holdout_fraction: float = field(
        default=0.1, metadata={"help": "Share of the training items held out as a validation split (0 for none)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the holdout split."})
    max_items: int | None = field(default=None, metadata={"help": "Use at most this many training items."})
    # prompts
    num_shots: int = field(default=2, metadata={"help": "Few-shot examples per prompt, same question type."})
    shot_seed: int = field(default=0, metadata={"help": "Seed of the few-shot choice."})
    shot_method: str = field(
        default="random",
        metadata={
            "help": "random (same question type) or similar (the most similar training questions by BM25 over "
            "Mecab morphemes of the quoted sentence and options; never the item itself)."
        },
    )
    prompt_format: str = field(
        default="auto", metadata={"help": "auto (chat template when the tokenizer has one), chat, or text."}
    )
    # checkpoint choice by the task metric (selection.py)
    task_eval_items: int = field(
        default=0,
        metadata={
            "help": "Hold-out items answered greedily at each evaluation; their (EM + ROUGE-1) / 2 is "
            "eval_task_score (metric_for_best_model: task_score keeps the best checkpoint). 0: the trainer's own "
            "evaluation."
        },
    )
    task_eval_max_new_tokens: int = field(default=192, metadata={"help": "Answer length limit of that evaluation."})
    # rewards
    reward_funcs: list[str] = field(
        default_factory=lambda: list(DEFAULT_REWARDS),
        metadata={
            "help": "Reward functions (format exact_match answer_similarity choice rouge_1 bertscore bleurt final "
            "rule overlong); weights come from --reward_weights in the same order."
        },
    )
    overlong_cache: int = field(
        default=48,
        metadata={
            "help": "The overlong reward's soft zone: completions longer than max_completion_length minus this "
            "many tokens are punished linearly, down to -1 at the limit (DAPO)."
        },
    )
    bertscore_model: str | None = field(
        default=None, metadata={"help": "BERTScore encoder (default: the scorer's; bert-base-multilingual-cased)."}
    )
    bleurt_model: str | None = field(default=None, metadata={"help": "BLEURT checkpoint (default: the scorer's)."})
    reward_device: str | None = field(
        default=None, metadata={"help": "Device of the reward encoders (default: the training device)."}
    )
    # retrieval-augmented prompts (issue 5); off unless rules_file is set
    rules_file: str | None = field(default=None, metadata={"help": "rules.jsonl: put rule context into prompts."})
    retrieved_file: str | None = field(default=None, metadata={"help": "Retrieved candidates (retrieve's output)."})
    labels_file: str | None = field(default=None, metadata={"help": "Gold-context labels (label's output)."})
    num_contexts: int = field(default=3, metadata={"help": "Rules per prompt."})
    include_gold_context: bool = field(
        default=True, metadata={"help": "In training, make sure the gold rule is among the candidates."}
    )
    retrieval_method: str = field(
        default=DEFAULT_RETRIEVAL,
        metadata={"help": "bm25, dense, hybrid or learned (needs labels_file), without retrieved_file."},
    )
    merge_lora: bool = field(
        default=False, metadata={"help": "With use_peft, also save the adapter merged into the base as 'merged/'."}
    )

    def check(self, where: str = "arguments") -> None:
        """Raise DataError naming every bad value."""
        from .rewards import REWARDS

        problems = []
        if not 0 <= self.holdout_fraction < 1:
            problems.append(f"{where}: holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.max_items is not None and self.max_items < 1:
            problems.append(f"{where}: max_items must be at least 1, got {self.max_items}")
        if self.num_shots < 0:
            problems.append(f"{where}: num_shots must be >= 0, got {self.num_shots}")
        if self.task_eval_items < 0 or self.task_eval_max_new_tokens < 1:
            problems.append(f"{where}: task_eval_items must be >= 0 and task_eval_max_new_tokens >= 1")
        if self.overlong_cache < 0:
            problems.append(f"{where}: overlong_cache must be >= 0, got {self.overlong_cache}")
        if self.num_contexts < 1:
            problems.append(f"{where}: num_contexts must be at least 1, got {self.num_contexts}")
        if self.shot_method not in ("random", "similar"):
            problems.append(f"{where}: shot_method must be random or similar, got {self.shot_method!r}")
        if self.prompt_format not in PROMPT_FORMATS:
            problems.append(f"{where}: prompt_format must be one of {', '.join(PROMPT_FORMATS)}")
        if self.retrieval_method not in RETRIEVAL_METHODS:
            problems.append(f"{where}: retrieval_method must be one of {', '.join(RETRIEVAL_METHODS)}")
        elif self.retrieval_method == "learned" and self.rules_file and not (self.labels_file or self.retrieved_file):
            problems.append(f"{where}: retrieval_method learned needs labels_file (the labels it learns from)")
        unknown = [r for r in self.reward_funcs if r not in REWARDS]
        if unknown:
            problems.append(f"{where}: unknown reward(s) {', '.join(unknown)} (known: {', '.join(REWARDS)})")
        if "rule" in self.reward_funcs and not self.rules_file:
            problems.append(f"{where}: the 'rule' reward needs rules_file (and labels_file for the gold rule)")
        for name in ("train_file", "rules_file", "retrieved_file", "labels_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                problems.append(f"{where}: {name} {value}: file not found")
        dev = dev_split_problem(
            self.train_file, f"{where}: train_file {self.train_file}", "set allow_dev_training to train on it anyway"
        )
        if dev and not self.allow_dev_training:
            problems.append(dev)
        if self.data_dir and not Path(self.data_dir).is_dir():
            problems.append(f"{where}: data_dir {self.data_dir}: folder not found")
        if problems:
            raise DataError(problems)


def parse_args(argv: list[str], config_class: type, prog: str, extras: bool = True) -> tuple[Any, Any, Any]:
    """(ScriptArguments, config_class instance, ModelConfig) from ``--config FILE`` and command-line overrides;
    a missing or bad config file, an unknown key or an inconsistent value raises DataError. ``extras=False`` skips
    the check that optional packages and a GPU are present (``plan`` reads GPU recipes on any machine)."""
    import yaml
    from trl import ModelConfig, TrlParser

    parser = TrlParser((ScriptArguments, config_class, ModelConfig), prog=prog)
    _order_help(parser, config_class, ModelConfig)
    argv = [part for arg in argv for part in (arg.split("=", 1) if arg.startswith("--config=") else [arg])]
    if not has_accelerator():
        parser.set_defaults(bf16=False)  # TRL defaults to bf16, which a CPU-only machine refuses; a recipe may say so
    where = "arguments"
    if "--config" in argv:
        i = argv.index("--config")
        where = argv[i + 1] if i + 1 < len(argv) else "--config"
        if i + 1 >= len(argv):
            raise DataError(["--config needs a YAML file"])
        from .files import check_input_file

        check_input_file(where, missing="config file not found")  # a folder or FIFO is named as such, never opened
        _check_recipe_types(where, parser)

    def one_line_error(message: str) -> None:  # argparse would print the whole usage and exit
        raise DataError([f"arguments: {message}"])

    parser.error = one_line_error  # type: ignore[method-assign]
    try:
        script_args, config, model_args = parser.parse_args_and_config(argv)
    except (ValueError, TypeError, yaml.YAMLError) as e:
        raise DataError([f"{where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"]) from None
    script_args.check(where)
    if extras:
        _check_extras(where, config, model_args)
    if len(script_args.reward_funcs) != len(getattr(config, "reward_weights", None) or script_args.reward_funcs):
        raise DataError(
            [
                f"{where}: {len(config.reward_weights)} reward_weights for {len(script_args.reward_funcs)} "
                f"reward_funcs ({', '.join(script_args.reward_funcs)})"
            ]
        )
    limit = getattr(config, "max_completion_length", None)
    if "overlong" in script_args.reward_funcs and limit is not None and script_args.overlong_cache >= limit:
        raise DataError(
            [
                f"{where}: overlong_cache ({script_args.overlong_cache}) must be below max_completion_length "
                f"({limit}), or every completion is punished"
            ]
        )
    return script_args, config, model_args


def _order_help(parser: Any, config_class: type, model_class: type) -> None:
    """``--help`` in the order a user needs it: ``--config``, the project's own options (ScriptArguments, then the
    fields the project's config class adds to TRL's), TRL's ModelConfig, and TRL's inherited trainer options last.
    Only the help changes: ``--config`` is taken out of argv by TrlParser before parsing (SUPPRESS keeps it out of
    the parsed namespace) and every option keeps its action."""
    import argparse

    parser.usage = f"{parser.prog} [--config RECIPE.yaml] [--<field> VALUE ...]"
    trl_base = next(c for c in config_class.__mro__ if c.__module__.startswith("trl."))
    inherited = {f.name for f in dataclasses.fields(trl_base)}
    config_group = parser.add_argument_group("recipe")
    config_group.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="RECIPE.yaml",
        help="YAML recipe (recipes/*.yaml): its keys set any field below; options on the command line override it.",
    )
    sections = [
        ("project options: ScriptArguments (data, prompts, rewards, retrieval)", _names(ScriptArguments)),
        (f"project options: {config_class.__name__} (fields added to TRL's {trl_base.__name__})",
         _names(config_class) - inherited),
        (f"model: TRL {model_class.__name__}", _names(model_class)),
        (f"TRL {trl_base.__name__} (inherited, with transformers TrainingArguments)", inherited),
    ]  # fmt: skip
    groups = [parser.add_argument_group(title) for title, _ in sections]
    for old in list(parser._action_groups):
        if old in groups or old is config_group:
            continue
        for action in list(old._group_actions):
            target = next((g for g, (_, names) in zip(groups, sections, strict=True) if action.dest in names), None)
            if target is not None:
                old._group_actions.remove(action)
                target._group_actions.append(action)


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


_BOOL_WORDS = {"yes", "no", "true", "false", "t", "f", "y", "n", "1", "0"}


def _check_recipe_types(where: str, parser: Any) -> None:
    """Every recipe value of the type its field takes: argparse converts a recipe's strings but lets a list or a
    number of the wrong kind through to fail deep inside transformers/TRL. One line per bad value, naming the
    recipe, the field and the expected type."""
    import yaml

    from .files import read_text

    try:
        recipe = yaml.safe_load(read_text(where))
    except yaml.YAMLError:
        return  # parse_args_and_config reports it
    if not isinstance(recipe, dict):
        return
    actions = {a.dest: a for a in parser._actions}
    own = {f.name for f in dataclasses.fields(ScriptArguments)}

    def scalar_ok(kind: Any, value: Any, from_text: bool) -> bool:
        if kind is int:
            return (isinstance(value, int) and not isinstance(value, bool)) or (from_text and _parses(int, value))
        if kind is float:
            return (isinstance(value, int | float) and not isinstance(value, bool)) or (
                from_text and _parses(float, value)
            )
        if getattr(kind, "__name__", "") == "string_to_bool":
            return isinstance(value, bool) or (from_text and isinstance(value, str) and value.lower() in _BOOL_WORDS)
        return True

    def expected(kind: Any) -> str:
        if kind is int:
            return "an integer"
        if kind is float:
            return "a number"
        return "true or false" if getattr(kind, "__name__", "") == "string_to_bool" else "a string"

    problems = []
    for key, value in recipe.items():
        action = actions.get(key)
        if action is None or key == "env":
            continue
        got = "null" if value is None else f"{type(value).__name__} {value!r}"[:80]
        if value is None:
            if action.default is not None:
                problems.append(f"{where}: {key}: expected {expected(action.type)}, got null")
            continue
        if action.nargs in ("+", "*"):
            if isinstance(value, str) and action.type is str and key not in own:
                continue  # e.g. lora_target_modules: all-linear
            if not isinstance(value, list) or not all(
                scalar_ok(action.type, v, False) and (action.type is not str or isinstance(v, str)) for v in value
            ):
                kind = "strings" if action.type is str else "numbers" if action.type is float else "integers"
                problems.append(f"{where}: {key}: expected a list of {kind}, got {got}")
        elif not scalar_ok(action.type, value, True):
            problems.append(f"{where}: {key}: expected {expected(action.type)}, got {got}")
        elif action.choices is not None and isinstance(value, str) and value not in action.choices:
            problems.append(f"{where}: {key}: expected one of {', '.join(map(str, action.choices))}, got {value!r}")
    if problems:
        raise DataError(problems)


def _parses(kind: type, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        kind(value)
    except ValueError:
        return False
    return True


def _check_extras(where: str, config: Any, model_args: Any) -> None:
    """Options that need an optional package or a GPU: a one-line error instead of an ImportError deep in TRL."""
    from importlib.util import find_spec

    problems = []
    if getattr(config, "use_vllm", False) and find_spec("vllm") is None:
        problems.append(f"{where}: use_vllm needs vLLM (pip install -e .[vllm])")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        if find_spec("bitsandbytes") is None:
            problems.append(f"{where}: load_in_4bit/load_in_8bit need bitsandbytes (pip install -e .[gpu])")
        elif not has_accelerator():
            problems.append(f"{where}: load_in_4bit/load_in_8bit need a GPU")
    if problems:
        raise DataError(problems)


def has_accelerator() -> bool:
    """Whether torch sees a CUDA or XPU device (else training runs on the CPU)."""
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out: dict[str, str | None] = {"python": platform.python_version(), "malpyeong-grpo": __version__}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    return obj


def run_record(argv: list[str], *configs: Any) -> dict[str, Any]:
    """What produced a run: the command, each resolved config, package versions, git commit, host and time."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": [sys.argv[0], *argv],
        "configs": {type(c).__name__: _jsonable(c) for c in configs},
        "packages": package_versions(),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def write_run_record(output_dir: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Append the record to ``run_info.jsonl`` in the run directory (one line per launch, resumes included)."""
    from .files import append_jsonl

    path = Path(output_dir) / "run_info.jsonl"
    read_jsonl(path)  # drops a torn last line left by a killed launch
    append_jsonl(path, json.loads(json.dumps(record, default=str)))
    return path
