"""The ``predict`` command: prompts (few-shot examples, retrieved rules) for each item, generation through
:mod:`generation`, a resumable JSONL cache beside the output, answer repair, and the submission file. The options are
one :class:`~predict_options.PredictOptions` value."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer import parse_answer
from .data import SPLIT_FILES, Item, default_data_dir, dev_split_problem, load_items, split_path
from .files import DataError, append_jsonl, check_outputs, lock_path, output_lock, read_jsonl, write_json
from .generation import Prompt, VllmEngine, candidate_logprobs, iter_generate, load_engine
from .predict_options import PredictOptions, add_predict_args, generation_settings
from .prompts import build_prompt, extract_answer, has_chat_template
from .repair import Repair, candidates, count_repairs, repair_answer
from .shots import ShotSelector


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


def _pool_path(opts: PredictOptions, data_path: Path) -> Path:
    """The few-shot pool file: --train_file, else the official train file beside --data or in the data folder."""
    if opts.train_file:
        return Path(opts.train_file)
    beside = data_path.parent / SPLIT_FILES["train"]
    data_dir = default_data_dir()
    return beside if beside.is_file() else (split_path("train", data_dir) if data_dir else beside)


def input_paths(opts: PredictOptions, data: str | os.PathLike[str]) -> list[tuple[str, str | Path | None]]:
    """(option, path) of every file that predict (or evaluate) reads from ``data`` and ``opts``: no output may be
    one of them."""
    pool = _pool_path(opts, Path(data)) if opts.num_shots > 0 else None
    return [
        ("--data", data),
        ("--train_file", pool),
        ("--rules", opts.rules),
        ("--retrieved", opts.retrieved),
    ]


def _train_pool(opts: PredictOptions, data_path: Path) -> list[Item]:
    if opts.num_shots <= 0:
        return []
    path = _pool_path(opts, data_path)
    dev = dev_split_problem(path, f"{path}: --train_file", "few-shot examples never come from dev")
    if dev:
        raise DataError([dev])
    if not path.is_file():
        raise DataError([f"{path}: training file for few-shot examples not found (give --train_file or --num_shots 0)"])
    return load_items(path, require_answer=True, max_chars=opts.max_chars)


def _contexts(opts: PredictOptions, items: list[Item]) -> list[list[str]]:
    """The retrieved rule texts of each item (never the gold rule: that is for training and ablations)."""
    if opts.context_k == 0:
        return [[] for _ in items]
    from .contexts import build_contexts

    ctx = build_contexts(
        items, opts.rules, opts.retrieved, k=opts.context_k, include_gold=False, method=opts.retrieval_method
    )
    return [list(ctx[it.id].texts) for it in items]


def _config_key(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _question_key(item: Item) -> str:
    return hashlib.sha256(f"{item.question_type}\n{item.question}".encode()).hexdigest()[:12]


def _read_cache(cache: Path, cfg: dict[str, Any], key: str, items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    """The cached rows by item id; a cache made under other settings, for other questions or damaged is refused."""
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
    return done


def _prompts(
    opts: PredictOptions, todo: list[Item], contexts: list[list[str]], pool: list[Item], tokenizer: Any
) -> list[Prompt]:
    """The prompt of each item: shots from the pool, its retrieved rules, the chat template as --prompt_format asks."""
    if opts.chat and not has_chat_template(tokenizer):
        raise DataError([f"{opts.model_name}: --prompt_format chat, but the tokenizer has no chat template"])
    shots = ShotSelector(pool, opts.shot_method, opts.seed)
    return [
        build_prompt(it, shots.select(it, opts.num_shots), ctx, tokenizer, opts.chat)
        for it, ctx in zip(todo, contexts, strict=True)
    ]


def predict_items(opts: PredictOptions, data_path: Path, items: list[Item], cache: Path) -> Predictions:
    """Generate (or take from ``cache``) a completion for every item, then repair; resumable item by item (each
    finished batch is appended to ``cache``). ``data_path`` locates the default few-shot pool."""
    cfg = generation_settings(opts)
    key = _config_key(cfg)
    if opts.restart:
        cache.unlink(missing_ok=True)
    done = _read_cache(cache, cfg, key, items)
    todo = [it for it in items if it.id not in done]
    generated, seconds = 0, 0.0
    if todo:
        pool = _train_pool(opts, data_path)
        contexts = _contexts(opts, todo)
        engine, tokenizer = load_engine(
            opts.model_name,
            adapter=opts.adapter,
            dtype=opts.dtype,
            backend=opts.backend,
            load_in_4bit=opts.load_in_4bit,
            load_in_8bit=opts.load_in_8bit,
        )
        vllm = isinstance(engine, VllmEngine)
        if vllm and opts.choice == "logprob" and not opts.no_repair:
            raise DataError(["--choice logprob needs the transformers backend (--backend transformers)"])
        prompts = _prompts(opts, todo, contexts, pool, tokenizer)
        start = time.perf_counter()
        for batch in iter_generate(
            engine,
            tokenizer,
            prompts,
            max_new_tokens=opts.max_new_tokens,
            do_sample=opts.sample,
            temperature=opts.temperature,
            top_p=opts.top_p,
            num_beams=opts.num_beams,
            batch_size=opts.batch_size,
            progress=not opts.quiet,
            stop_markers=opts.stop_markers,
        ):
            lps: list[dict[str, float]] = [{} for _ in batch]
            if cfg["logprobs"] and not vllm:  # vLLM: hybrid works as snap
                sel = [(n, i) for n, (i, _) in enumerate(batch) if candidates(todo[i])]
                scored = candidate_logprobs(
                    engine,
                    tokenizer,
                    [prompts[i] for _, i in sel],
                    [candidates(todo[i]) for _, i in sel],
                    batch_size=opts.batch_size,
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
        repair_answer(it, text, done[it.id].get("logprobs"), opts.choice)
        for it, text in zip(items, unrepaired, strict=True)
    ]
    answers = unrepaired if opts.no_repair else [r.answer for r in repairs]
    logprobs = [done[it.id].get("logprobs") or {} for it in items]
    return Predictions(
        items, raw, unrepaired, answers, repairs, generated, cache, not opts.no_repair, seconds, logprobs
    )


def read_items(opts: PredictOptions, data: str | os.PathLike[str], require_answer: bool = False) -> list[Item]:
    """The items of ``data`` (at most --limit of them, each within --max_chars)."""
    items = load_items(Path(data), require_answer=require_answer, max_chars=opts.max_chars)
    return items[: opts.limit] if opts.limit else items


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
    opts = PredictOptions.from_args(args)
    out = Path(args.out)
    outputs = [("--out", out), ("its cache", cache_path_for(out)), ("its lock", lock_path(out))]
    check_outputs(input_paths(opts, args.data), outputs)
    with output_lock(out):  # a second predict on the same --out stops here
        items = read_items(opts, args.data)
        pred = predict_items(opts, Path(args.data), items, cache_path_for(out))
        write_json(out, submission(items, pred.answers))
    for line in summary_lines(pred):
        print(line)
    print(f"wrote {out}")
    return 0
