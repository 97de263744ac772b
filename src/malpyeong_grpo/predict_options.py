"""The options of ``predict`` and ``evaluate`` as one typed, validated value (:class:`PredictOptions`), their command
line (``add_predict_args``: underscore flags with the old hyphen spellings, defaults taken from the dataclass), and
the settings that decide a completion (the prediction cache's key)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .files import DataError
from .flags import (
    DEFAULT_RETRIEVAL,
    PROMPT_FORMAT_TO_CHAT,
    PROMPT_FORMATS,
    RETRIEVAL_METHODS,
    add_prompt_format,
    flag,
)
from .models import EMBEDDED, adapter_base
from .prompts import STOP_MARKERS
from .repair import CHOICE_MODES

DTYPES = ("float32", "bfloat16", "float16", "auto")
BACKENDS = ("auto", "transformers", "vllm")
SHOT_METHODS = ("random", "similar")
_PATHS = ("model", "adapter", "train_file", "rules", "retrieved")  # os.PathLike values are stored as str


@dataclass(frozen=True)
class PredictOptions:
    """Everything ``predict`` needs besides the data: model, decoding, prompt, retrieved context, repair and run
    options (the command line's flags by the same names). Construction checks the values and raises DataError with
    one line per problem."""

    # model
    model: str | None = None  # HF id or folder, a .gguf file or 'embedded'; None: the base named by the adapter
    adapter: str | None = None  # peft LoRA adapter folder loaded on top of the model
    dtype: str = "float32"
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    backend: str = "auto"
    # decoding
    max_new_tokens: int = 256
    batch_size: int = 8
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1
    no_stop_at_newline: bool = False
    # prompt
    num_shots: int = 2
    train_file: str | None = None  # shot pool; None: the official train file beside the data (never dev)
    seed: int = 0
    shot_method: str = "random"
    prompt_format: str = "auto"
    # retrieved context
    context_k: int = 0
    rules: str | None = None
    retrieved: str | None = None
    retrieval_method: str = DEFAULT_RETRIEVAL
    # repair
    no_repair: bool = False
    choice: str = "hybrid"
    # run
    limit: int | None = None
    max_chars: int | None = None
    restart: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in _PATHS:
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
        problems = []
        for name in ("max_new_tokens", "batch_size", "num_beams"):
            if getattr(self, name) < 1:
                problems.append(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.num_shots < 0 or self.context_k < 0:
            problems.append("--num_shots and --context_k must not be negative")
        if self.context_k and not self.rules:
            problems.append(
                "--context_k needs --rules (rules.jsonl from 'malpyeong-grpo rules', or the reference .docx)"
            )
        if self.limit is not None and self.limit < 1:
            problems.append(f"--limit must be at least 1, got {self.limit}")
        if self.sample and self.num_beams > 1:
            problems.append("--sample and --num_beams > 1 cannot be combined")
        if self.sample and not self.temperature > 0:
            problems.append(f"--temperature must be above 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"--top_p must be in (0, 1], got {self.top_p}")
        if self.max_chars is not None and self.max_chars < 1:
            problems.append(f"--max_chars must be at least 1, got {self.max_chars}")
        if self.adapter and not (Path(self.adapter) / "adapter_config.json").is_file():
            problems.append(f"{self.adapter}: not a peft adapter folder (no adapter_config.json)")
        choices = {
            "dtype": DTYPES,
            "backend": BACKENDS,
            "shot_method": SHOT_METHODS,
            "prompt_format": PROMPT_FORMATS,
            "retrieval_method": RETRIEVAL_METHODS,
            "choice": tuple(CHOICE_MODES),
        }
        for name, allowed in choices.items():  # the command line checks these; a library caller may not have
            if getattr(self, name) not in allowed:
                problems.append(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if problems:
            raise DataError(problems)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PredictOptions:
        """The options parsed by a parser that :func:`add_predict_args` set up (other attributes are ignored)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    @property
    def model_name(self) -> str:
        """The base model to load: --model, else the base named in the --adapter folder, else the embedded model."""
        return self.model or (adapter_base(self.adapter) if self.adapter else None) or EMBEDDED

    @property
    def stop_markers(self) -> tuple[str, ...]:
        """Where a completion ends: the prompts' stop markers, and the first newline unless --no_stop_at_newline."""
        return STOP_MARKERS if self.no_stop_at_newline else (*STOP_MARKERS, "\n")

    @property
    def chat(self) -> bool | None:
        """--prompt_format as the prompt builder takes it: True (chat), False (text) or None (auto)."""
        return None if self.prompt_format == "auto" else self.prompt_format == "chat"


def generation_settings(opts: PredictOptions) -> dict[str, Any]:
    """Everything that decides a completion: a cache made under another config is not reused."""
    keys = (
        "model",
        "adapter",
        "dtype",
        "load_in_4bit",
        "load_in_8bit",
        "max_new_tokens",
        "sample",
        "temperature",
        "top_p",
        "num_beams",
        "no_stop_at_newline",
        "num_shots",
        "train_file",
        "seed",
        "shot_method",
        "prompt_format",
        "context_k",
        "rules",
        "retrieved",
        "retrieval_method",
    )
    cfg = {k: getattr(opts, k) for k in keys}
    cfg["chat"] = PROMPT_FORMAT_TO_CHAT[cfg.pop("prompt_format")]  # the old key and values: earlier caches stay valid
    cfg["model"] = opts.model_name
    if not cfg["context_k"]:  # --rules alone (evaluate's rule categories) changes no prompt
        cfg["rules"] = cfg["retrieved"] = cfg["retrieval_method"] = None
    if cfg["shot_method"] == "random":  # the default: caches made before the option existed stay valid
        del cfg["shot_method"]
    cfg["logprobs"] = opts.choice != "snap"  # scored under --no_repair too: the cache then serves both
    if not cfg["sample"]:
        cfg["temperature"] = cfg["top_p"] = None
    return cfg


_DEFAULTS = PredictOptions()


def add_predict_args(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``predict`` and ``evaluate`` (every field of :class:`PredictOptions`, defaults from it):
    model, decoding, prompt, context, repair, run. Parse, then build the options with ``PredictOptions.from_args``."""
    d = _DEFAULTS
    m = parser.add_argument_group("model")
    m.add_argument(
        "--model",
        help="HF id or folder, a .gguf file, or 'embedded' (default: the base named by --adapter, else 'embedded')",
    )
    m.add_argument("--adapter", help="peft LoRA adapter folder loaded on top of --model")
    m.add_argument("--dtype", default=d.dtype, choices=DTYPES)
    m.add_argument(*flag("load_in_4bit"), action="store_true", help="4-bit base (bitsandbytes, GPU)")
    m.add_argument(*flag("load_in_8bit"), action="store_true", help="8-bit base (bitsandbytes, GPU)")
    m.add_argument(
        "--backend",
        default=d.backend,
        choices=BACKENDS,
        help="auto: vLLM when installed and a GPU is present, else transformers",
    )
    g = parser.add_argument_group("decoding")
    g.add_argument(*flag("max_new_tokens"), type=int, default=d.max_new_tokens)
    g.add_argument(*flag("batch_size"), type=int, default=d.batch_size)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument(*flag("top_p"), type=float, default=d.top_p)
    g.add_argument(*flag("num_beams"), type=int, default=d.num_beams, help="beam search when > 1")
    g.add_argument(
        *flag("no_stop_at_newline"),
        action="store_true",
        help="let an answer run past its first line (the gold answers are one line)",
    )
    p = parser.add_argument_group("prompt")
    p.add_argument(
        *flag("num_shots"),
        type=int,
        default=d.num_shots,
        help=f"few-shot examples from the training split (default {d.num_shots})",
    )
    p.add_argument(*flag("train_file"), help="shot pool (default: the official train file beside --data); never dev")
    p.add_argument("--seed", type=int, default=d.seed, help="shot selection seed")
    p.add_argument(
        *flag("shot_method"),
        default=d.shot_method,
        choices=SHOT_METHODS,
        help="random shots of the item's type (default), or the most similar training questions (BM25 over Mecab "
        "morphemes of the quoted sentence and options)",
    )
    add_prompt_format(p, "chat-template prompts (chat), plain text (text) or auto (default: chat given a template)")
    c = parser.add_argument_group("retrieved context (RAG)")
    c.add_argument(
        *flag("context_k"),
        type=int,
        default=d.context_k,
        help="put the top K retrieved rules in each prompt (default 0: none)",
    )
    c.add_argument("--rules", help="rules.jsonl (malpyeong-grpo rules) or the reference .docx")
    c.add_argument("--retrieved", help="retrieval output (malpyeong-grpo retrieve); default: retrieve now")
    c.add_argument(
        *flag("retrieval_method"),
        default=d.retrieval_method,
        choices=RETRIEVAL_METHODS,
        help=f"retriever when --retrieved is not given (default {d.retrieval_method}, as train's retrieval_method)",
    )
    r = parser.add_argument_group("repair")
    r.add_argument(*flag("no_repair"), action="store_true", help="write the answers as generated (cut at stop markers)")
    r.add_argument(
        "--choice",
        default=d.choice,
        choices=list(CHOICE_MODES),
        help="option questions: hybrid (default) snaps a sentence that names one option to it and takes the "
        "option the model finds most probable otherwise; snap never scores options (an undecided answer takes the "
        "first); logprob always takes the most probable option",
    )
    o = parser.add_argument_group("run")
    o.add_argument("--limit", type=int, help="only the first N items of --data")
    o.add_argument(
        *flag("max_chars"),
        type=int,
        help="longest question/answer accepted, in characters (default: $MALPYEONG_MAX_CHARS or 4000); a longer "
        "one is refused before tokenisation",
    )
    o.add_argument("--restart", action="store_true", help="discard the cache of an earlier run with other settings")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
