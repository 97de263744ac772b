"""Inference: batched generation (transformers, or vLLM when installed) that stops at the prompts' stop markers,
candidate log-probabilities for 선택형 items, and the resumable ``predict`` command writing a submission file."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer import parse_answer
from .data import (
    SPLIT_FILES,
    DataError,
    Item,
    append_jsonl,
    check_outputs,
    default_data_dir,
    load_items,
    lock_path,
    output_lock,
    read_jsonl,
    split_path,
    write_json,
)
from .flags import DEFAULT_RETRIEVAL, PROMPT_FORMAT_TO_CHAT, RETRIEVAL_METHODS, add_prompt_format, flag
from .lm import left_pad, model_device
from .models import EMBEDDED, adapter_base, load_model, load_tokenizer, resolve_model
from .prompts import STOP_MARKERS, build_prompt, extract_answer, has_chat_template, render
from .repair import CHOICE_MODES, Repair, candidates, count_repairs, repair_answer
from .shots import ShotSelector

Prompt = str | list[dict[str, str]]


@dataclass
class VllmEngine:
    """A vLLM ``LLM`` with an optional LoRA request; ``generate_answers`` accepts it in place of a model."""

    llm: Any
    lora_request: Any = None


def _stop_criteria(prompt_len: int, tokenizer: Any, markers: Sequence[str]) -> Any:
    """A per-sequence StoppingCriteria: a row is done once its generated text, leading whitespace stripped, holds a
    stop marker."""
    import torch
    from transformers import StoppingCriteria

    class StopOnMarkers(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=False)
            done = [any(m in t.lstrip() for m in markers) for t in texts]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StopOnMarkers()


def _encode(prompts: Sequence[Prompt], tokenizer: Any) -> list[list[int]]:
    """Token ids of each rendered prompt; chat-rendered text already holds its special tokens."""
    ids = []
    for p in prompts:
        text = render(p, tokenizer)
        ids.append(tokenizer(text, add_special_tokens=isinstance(p, str)).input_ids)
    return ids


def iter_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_beams: int = 1,
    batch_size: int = 8,
    progress: bool = True,
    stop_markers: Sequence[str] = STOP_MARKERS,
) -> Iterator[list[tuple[int, str]]]:
    """Yield, batch by batch, ``(prompt index, raw completion)`` pairs; prompts are batched longest first."""
    if isinstance(model, VllmEngine):
        args = (max_new_tokens, do_sample, temperature, top_p, num_beams, stop_markers)
        yield _vllm_batch(model, tokenizer, prompts, *args)
        return
    import torch
    from tqdm.auto import tqdm

    encoded = _encode(prompts, tokenizer)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model_device(model)
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:  # greedy or beam: neutralise sampling settings a checkpoint's generation_config may carry
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    model.eval()
    bar = tqdm(total=len(order), desc="generate", unit="item", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = left_pad([encoded[i] for i in idx], pad_id)
            stop = _stop_criteria(ids.shape[1], tokenizer, stop_markers)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    pad_token_id=pad_id,
                    stopping_criteria=[stop],
                    **gen_kwargs,
                )
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            yield list(zip(idx, texts, strict=True))
            bar.update(len(idx))
    finally:
        bar.close()


def _vllm_batch(
    engine: VllmEngine,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    num_beams: int,
    stop_markers: Sequence[str],
) -> list[tuple[int, str]]:
    """vLLM generation of all prompts in one call (vLLM batches internally); stop markers end each sequence
    (whitespace-only markers are left to ``extract_answer``: vLLM would stop on a leading newline)."""
    from vllm import SamplingParams

    if num_beams > 1:
        raise ValueError("beam search is not supported on the vLLM backend; use --backend transformers")
    params = SamplingParams(
        max_tokens=max_new_tokens,
        temperature=temperature if do_sample else 0.0,
        top_p=top_p if do_sample else 1.0,
        stop=[m for m in stop_markers if m.strip()],
    )
    texts = [render(p, tokenizer) for p in prompts]
    outs = engine.llm.generate(texts, params, lora_request=engine.lora_request, use_tqdm=False)
    return [(i, o.outputs[0].text) for i, o in enumerate(outs)]


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[Prompt], **options: Any) -> list[str]:
    """Raw completion texts of ``prompts``, in order (apply ``prompts.extract_answer`` to each); ``options`` are
    those of :func:`iter_generate` (batched, left-padded generation, longest prompts first, a batch stopping once
    every sequence has passed a stop marker; ``model`` may be a :class:`VllmEngine`)."""
    out: list[str | None] = [None] * len(prompts)
    for batch in iter_generate(model, tokenizer, prompts, **options):
        for i, text in batch:
            out[i] = text
    return [t or "" for t in out]


def candidate_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    cands: Sequence[Sequence[str]],
    *,
    batch_size: int = 8,
) -> list[dict[str, float]]:
    """For each prompt, the model's summed log-probability of answering with each candidate sentence: the
    continuation ``"<candidate>"가 옳다.`` (after a space for plain-text prompts, which end in '답변:')."""
    from .answer import format_answer
    from .lm import continuation_logprobs

    encoded = _encode(prompts, tokenizer)
    pairs = []  # (prompt index, candidate, prompt ids, continuation ids)
    for i, (p, cs) in enumerate(zip(prompts, cands, strict=True)):
        lead = " " if isinstance(p, str) else ""
        for c in cs:
            cont = tokenizer(lead + format_answer(c, ""), add_special_tokens=False).input_ids
            pairs.append((i, c, encoded[i], cont))
    out: list[dict[str, float]] = [{} for _ in prompts]
    pairs.sort(key=lambda x: -(len(x[2]) + len(x[3])))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    lps = continuation_logprobs(model, [(p, c) for _, _, p, c in pairs], pad_id, batch_size)
    for (i, c, _, _), lp in zip(pairs, lps, strict=True):
        out[i][c] = float(lp.sum())
    return out


# ---------------------------------------------------------------------------------------------------------------
# The predict command: options, resumable cache, submission file


def add_predict_args(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``predict`` and ``evaluate``: model, decoding, prompt, context, repair."""
    m = parser.add_argument_group("model")
    m.add_argument(
        "--model",
        help="HF id or folder, a .gguf file, or 'embedded' (default: the base named by --adapter, else 'embedded')",
    )
    m.add_argument("--adapter", help="peft LoRA adapter folder loaded on top of --model")
    m.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"])
    m.add_argument(*flag("load_in_4bit"), action="store_true", help="4-bit base (bitsandbytes, GPU)")
    m.add_argument(*flag("load_in_8bit"), action="store_true", help="8-bit base (bitsandbytes, GPU)")
    m.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "transformers", "vllm"],
        help="auto: vLLM when installed and a GPU is present, else transformers",
    )
    g = parser.add_argument_group("decoding")
    g.add_argument(*flag("max_new_tokens"), type=int, default=256)
    g.add_argument(*flag("batch_size"), type=int, default=8)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument(*flag("top_p"), type=float, default=1.0)
    g.add_argument(*flag("num_beams"), type=int, default=1, help="beam search when > 1")
    g.add_argument(
        *flag("no_stop_at_newline"),
        action="store_true",
        help="let an answer run past its first line (the gold answers are one line)",
    )
    p = parser.add_argument_group("prompt")
    p.add_argument(
        *flag("num_shots"), type=int, default=2, help="few-shot examples from the training split (default 2)"
    )
    p.add_argument(*flag("train_file"), help="shot pool (default: the official train file beside --data); never dev")
    p.add_argument("--seed", type=int, default=0, help="shot selection seed")
    p.add_argument(
        *flag("shot_method"),
        default="random",
        choices=["random", "similar"],
        help="random shots of the item's type (default), or the most similar training questions (BM25 over Mecab "
        "morphemes of the quoted sentence and options)",
    )
    add_prompt_format(p, "chat-template prompts (chat), plain text (text) or auto (default: chat given a template)")
    c = parser.add_argument_group("retrieved context (RAG)")
    c.add_argument(
        *flag("context_k"), type=int, default=0, help="put the top K retrieved rules in each prompt (default 0: none)"
    )
    c.add_argument("--rules", help="rules.jsonl (malpyeong-grpo rules) or the reference .docx")
    c.add_argument("--retrieved", help="retrieval output (malpyeong-grpo retrieve); default: retrieve now")
    c.add_argument(
        *flag("retrieval_method"),
        default=DEFAULT_RETRIEVAL,
        choices=RETRIEVAL_METHODS,
        help=f"retriever when --retrieved is not given (default {DEFAULT_RETRIEVAL}, as train's retrieval_method)",
    )
    r = parser.add_argument_group("repair")
    r.add_argument(*flag("no_repair"), action="store_true", help="write the answers as generated (cut at stop markers)")
    r.add_argument(
        "--choice",
        default="hybrid",
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


@dataclass
class Predictions:
    """A finished prediction run over ``items`` (in input order)."""

    items: list[Item]
    raw: list[str]  # completions as generated
    unrepaired: list[str]  # completions cut at their stop markers
    answers: list[str]  # what the submission holds (repaired unless --no_repair)
    repairs: list[Repair]  # the repairs of each answer (what repair would do, also under --no_repair)
    generated: int  # items generated in this run (the rest came from the cache)
    cache_path: Path
    repaired: bool  # whether ``answers`` are the repaired ones
    seconds: float = 0.0  # wall time of generation (and option scoring) in this run, model loading excluded
    logprobs: list[dict[str, float]] | None = None  # option log-probabilities of each item ({} when none)

    @property
    def repair_counts(self) -> dict[str, int]:
        return count_repairs(self.repairs)

    @property
    def parsed(self) -> int:
        """Answers in which the official scorer finds its pattern."""
        return sum(parse_answer(a).pattern is not None for a in self.answers)


def cache_path_for(out: str | os.PathLike[str]) -> Path:
    """The resumable JSONL cache beside an output file: ``submission.json`` -> ``submission.cache.jsonl``."""
    out = Path(out)
    return out.with_name(out.stem + ".cache.jsonl")


def _pool_path(args: argparse.Namespace, data_path: Path) -> Path:
    """The few-shot pool file: --train_file, else the official train file beside --data or in the data folder."""
    if args.train_file:
        return Path(args.train_file)
    beside = data_path.parent / SPLIT_FILES["train"]
    data_dir = default_data_dir()
    return beside if beside.is_file() else (split_path("train", data_dir) if data_dir else beside)


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | Path | None]]:
    """(option, path) of every file that predict (or evaluate) reads: no output may be one of them."""
    pool = _pool_path(args, Path(args.data)) if args.num_shots > 0 else None
    return [
        ("--data", args.data),
        ("--train_file", pool),
        ("--rules", args.rules),
        ("--retrieved", args.retrieved),
    ]


def _train_pool(args: argparse.Namespace, data_path: Path) -> list[Item]:
    if args.num_shots <= 0:
        return []
    path = _pool_path(args, data_path)
    if path.name == SPLIT_FILES["dev"]:
        raise DataError([f"{path}: --train_file is the dev split; few-shot examples never come from dev"])
    if not path.is_file():
        raise DataError([f"{path}: training file for few-shot examples not found (give --train_file or --num_shots 0)"])
    return load_items(path, require_answer=True, max_chars=args.max_chars)


def _contexts(args: argparse.Namespace, items: list[Item]) -> list[list[str]]:
    """The retrieved rule texts of each item (never the gold rule: that is for training and ablations)."""
    if args.context_k == 0:
        return [[] for _ in items]
    from .contexts import build_contexts

    ctx = build_contexts(
        items, args.rules, args.retrieved, k=args.context_k, include_gold=False, method=args.retrieval_method
    )
    return [list(ctx[it.id].texts) for it in items]


def generation_settings(args: argparse.Namespace) -> dict[str, Any]:
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
    cfg = {k: getattr(args, k) for k in keys}
    cfg["chat"] = PROMPT_FORMAT_TO_CHAT[cfg.pop("prompt_format")]  # the old key and values: earlier caches stay valid
    cfg["model"] = model_name(args)
    if not cfg["context_k"]:  # --rules alone (evaluate's rule categories) changes no prompt
        cfg["rules"] = cfg["retrieved"] = cfg["retrieval_method"] = None
    if cfg["shot_method"] == "random":  # the default: caches made before the option existed stay valid
        del cfg["shot_method"]
    cfg["logprobs"] = args.choice != "snap"  # scored under --no_repair too: the cache then serves both
    if not cfg["sample"]:
        cfg["temperature"] = cfg["top_p"] = None
    return cfg


def model_name(args: argparse.Namespace) -> str:
    """The base model to load: --model, else the base named in the --adapter folder, else the embedded model."""
    return args.model or (adapter_base(args.adapter) if args.adapter else None) or EMBEDDED


def _config_key(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _question_key(item: Item) -> str:
    return hashlib.sha256(f"{item.question_type}\n{item.question}".encode()).hexdigest()[:12]


def _load_engine(args: argparse.Namespace) -> tuple[Any, Any]:
    """(model or VllmEngine, tokenizer) as the options ask."""
    backend = args.backend
    if backend == "auto":
        backend = "vllm" if _vllm_usable() and not (args.load_in_4bit or args.load_in_8bit) else "transformers"
    name = model_name(args)
    try:
        tokenizer = load_tokenizer(args.adapter if args.adapter and _has_tokenizer(args.adapter) else name)
        if backend == "vllm":
            from vllm import LLM
            from vllm.lora.request import LoRARequest

            llm = LLM(model=resolve_model(name), dtype=args.dtype, enable_lora=bool(args.adapter))
            return VllmEngine(llm, LoRARequest("adapter", 1, args.adapter) if args.adapter else None), tokenizer
        model = load_model(name, args.dtype, args.load_in_4bit, args.load_in_8bit, adapter=args.adapter)
    except (OSError, ValueError) as e:  # a missing or malformed model folder / id
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError([f"{name}: cannot load the model ({first})"]) from None
    if not (args.load_in_4bit or args.load_in_8bit):
        import torch

        if torch.cuda.is_available():
            model = model.to("cuda")
    return model, tokenizer


def _vllm_usable() -> bool:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _has_tokenizer(folder: str) -> bool:
    return (Path(folder) / "tokenizer_config.json").is_file()


def _check_args(args: argparse.Namespace) -> None:
    problems = []
    for name in ("max_new_tokens", "batch_size", "num_beams"):
        if getattr(args, name) < 1:
            problems.append(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.num_shots < 0 or args.context_k < 0:
        problems.append("--num_shots and --context_k must not be negative")
    if args.context_k and not args.rules:
        problems.append("--context_k needs --rules (rules.jsonl from 'malpyeong-grpo rules', or the reference .docx)")
    if args.limit is not None and args.limit < 1:
        problems.append(f"--limit must be at least 1, got {args.limit}")
    if args.sample and args.num_beams > 1:
        problems.append("--sample and --num_beams > 1 cannot be combined")
    if args.sample and not args.temperature > 0:
        problems.append(f"--temperature must be above 0 when sampling, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        problems.append(f"--top_p must be in (0, 1], got {args.top_p}")
    if args.max_chars is not None and args.max_chars < 1:
        problems.append(f"--max_chars must be at least 1, got {args.max_chars}")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        problems.append(f"{args.adapter}: not a peft adapter folder (no adapter_config.json)")
    if problems:
        raise DataError(problems)


def predict_items(args: argparse.Namespace, data_path: Path, items: list[Item], cache: Path) -> Predictions:
    """Generate (or take from ``cache``) a completion for every item, then repair; resumable item by item."""
    _check_args(args)
    cfg = generation_settings(args)
    key = _config_key(cfg)
    if args.restart:
        cache.unlink(missing_ok=True)
    rows = read_jsonl(cache)
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("raw"), str):
            raise DataError([f"{cache}: line {n}: not a prediction cache row (delete the file or pass --restart)"])
        if row.get("config") != key:
            old = rows[0].get("settings") if isinstance(rows[0].get("settings"), dict) else {}
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in cfg.items() if old.get(k) != v)
            raise DataError(
                [
                    f"{cache}: line {n} (id {row['id']!r}): made with other settings ({diff or 'unknown'}); "
                    "pass --restart to discard it, or choose another --out"
                ]
            )
    done: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows, 1):
        if row["id"] in done:  # two runs wrote this cache at once (before the lock existed)
            raise DataError(
                [f"{cache}: line {n}: id {row['id']!r} is cached twice; pass --restart to discard the cache"]
            )
        done[row["id"]] = row
    for it in items:
        if it.id in done and done[it.id].get("q") != _question_key(it):
            raise DataError(
                [
                    f"{cache}: id {it.id!r} was answered for another question (another data file?); pass --restart "
                    "to discard the cache, or choose another --out"
                ]
            )
    todo = [it for it in items if it.id not in done]
    generated, seconds = 0, 0.0
    if todo:
        pool = _train_pool(args, data_path)
        contexts = _contexts(args, todo)
        engine, tokenizer = _load_engine(args)
        if isinstance(engine, VllmEngine) and args.choice == "logprob" and not args.no_repair:
            raise DataError(["--choice logprob needs the transformers backend (--backend transformers)"])
        chat = None if args.prompt_format == "auto" else args.prompt_format == "chat"
        if chat and not has_chat_template(tokenizer):
            raise DataError([f"{model_name(args)}: --prompt_format chat, but the tokenizer has no chat template"])
        shots = ShotSelector(pool, args.shot_method, args.seed)
        prompts = [
            build_prompt(it, shots.select(it, args.num_shots), ctx, tokenizer, chat)
            for it, ctx in zip(todo, contexts, strict=True)
        ]
        markers = STOP_MARKERS if args.no_stop_at_newline else (*STOP_MARKERS, "\n")
        start = time.perf_counter()
        for batch in iter_generate(
            engine,
            tokenizer,
            prompts,
            max_new_tokens=args.max_new_tokens,
            do_sample=args.sample,
            temperature=args.temperature,
            top_p=args.top_p,
            num_beams=args.num_beams,
            batch_size=args.batch_size,
            progress=not args.quiet,
            stop_markers=markers,
        ):
            lps: list[dict[str, float]] = [{} for _ in batch]
            if cfg["logprobs"] and not isinstance(engine, VllmEngine):  # vLLM: hybrid works as snap
                sel = [(n, i) for n, (i, _) in enumerate(batch) if candidates(todo[i])]
                scored = candidate_logprobs(
                    engine,
                    tokenizer,
                    [prompts[i] for _, i in sel],
                    [candidates(todo[i]) for _, i in sel],
                    batch_size=args.batch_size,
                )
                for (n, _), lp in zip(sel, scored, strict=True):
                    lps[n] = lp
            for (i, text), lp in zip(batch, lps, strict=True):
                row = {"id": todo[i].id, "q": _question_key(todo[i]), "raw": text, "config": key}
                if lp:
                    row["logprobs"] = lp
                if not done:
                    row["settings"] = cfg
                append_jsonl(cache, row)
                done[todo[i].id] = row
                generated += 1
        seconds = time.perf_counter() - start
    raw = [done[it.id]["raw"] for it in items]
    unrepaired = [extract_answer(t) for t in raw]
    repairs = [
        repair_answer(it, text, done[it.id].get("logprobs"), args.choice)
        for it, text in zip(items, unrepaired, strict=True)
    ]
    answers = unrepaired if args.no_repair else [r.answer for r in repairs]
    logprobs = [done[it.id].get("logprobs") or {} for it in items]
    return Predictions(
        items, raw, unrepaired, answers, repairs, generated, cache, not args.no_repair, seconds, logprobs
    )


def _read_data(args: argparse.Namespace) -> tuple[Path, list[Item]]:
    data_path = Path(args.data)
    items = load_items(data_path, max_chars=args.max_chars)
    return data_path, items[: args.limit] if args.limit else items


def submission(items: Sequence[Item], answers: Sequence[str]) -> list[dict[str, Any]]:
    """The official submission: the items in input order, ``output.answer`` holding each prediction."""
    return [Item(it.id, it.question_type, it.question, a).to_json() for it, a in zip(items, answers, strict=True)]


def summary_lines(pred: Predictions) -> list[str]:
    """A few lines on a finished run: counts, parse rate, repairs."""
    n = len(pred.items)
    counts = pred.repair_counts
    kinds = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("answers", "repaired")) or "none"
    unparsed = sum(parse_answer(a).pattern is None for a in pred.unrepaired)
    rate = f" in {pred.seconds:.0f} s, {pred.seconds / pred.generated:.2f} s/item" if pred.generated else ""
    return [
        f"{n} answers ({pred.generated} generated now{rate}, {n - pred.generated} from {pred.cache_path})",
        f"parsed by the scorer: {pred.parsed}/{n} (as generated: {n - unparsed}/{n})",
        f"repairs{'' if pred.repaired else ' (not applied: --no_repair)'}: {counts['repaired']}/{n} answers; {kinds}",
    ]


def predict_command(argv: list[str]) -> int:
    """``malpyeong-grpo predict --data FILE --out submission.json``: a resumable submission file."""
    parser = argparse.ArgumentParser(prog="malpyeong-grpo predict", description=predict_command.__doc__)
    parser.add_argument("--data", required=True, help="official JSON (or JSONL) file to answer, e.g. the test split")
    parser.add_argument("--out", required=True, help="submission JSON to write")
    add_predict_args(parser)
    args = parser.parse_args(argv)
    _check_args(args)
    out = Path(args.out)
    outputs = [("--out", out), ("its cache", cache_path_for(out)), ("its lock", lock_path(out))]
    check_outputs(input_paths(args), outputs)
    with output_lock(out):  # a second predict on the same --out stops here
        data_path, items = _read_data(args)
        pred = predict_items(args, data_path, items, cache_path_for(out))
        write_json(out, submission(items, pred.answers))
    for line in summary_lines(pred):
        print(line)
    print(f"wrote {out}")
    return 0
