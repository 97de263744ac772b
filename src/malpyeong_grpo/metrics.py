"""The competition's metrics and scorer (``malpyeong-grpo score``), and the fast metric suite behind the rewards.

Official definitions: EM on the answer part (see ``answer.py``); on the reasons of the items where both reasons are
non-empty, ROUGE-1 F (py-rouge, alpha 0.5, Mecab morphemes), BERTScore F1 (bert-base-multilingual-cased, layer 9,
no idf, no baseline rescaling) and BLEURT-20; final = (EM + mean(ROUGE-1, BERTScore, BLEURT)) / 2.

The learned metrics need local checkpoints (option or environment variable). Without them the suite says so in one
line and uses named stand-ins (BERTScore computed on multilingual-e5-small; for BLEURT the cosine of the mean-pooled
e5 embeddings); their numbers, and every aggregate built on them, are stored under their own names
(``bertscore_standin``, ``bleurt_proxy``, ``descriptive_avg_standin``, ``final_standin``: see ``metric_name``), never
under the official ones.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .answer import exact_match, parse_answer
from .data import load_items
from .files import DataError, check_outputs, lock_path, output_lock, write_json
from .flags import flag
from .text import mecab

BERTSCORE_OFFICIAL = "bert-base-multilingual-cased"
BERTSCORE_LAYER = 9
BLEURT_OFFICIAL = "BLEURT-20"
ENV_BERTSCORE = "MALPYEONG_BERTSCORE_MODEL"
ENV_BLEURT = "MALPYEONG_BLEURT_MODEL"
ENV_THREADS = "MALPYEONG_METRIC_THREADS"
ROUGE_LENGTH_LIMIT = 1000  # words, applied before tokenisation (as the official py-rouge call)
ROUGE_ALPHA = 0.5
_NOT_ROUGE_CHAR = re.compile(r"[^A-Za-z0-9가-힣]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_PRED_CACHE = 8192  # candidate-side entries kept per cache (gold sides are kept for the process)


# ------------------------------------------------------------------ ROUGE-1
@lru_cache(maxsize=1 << 16)
def _rouge_tokens(text: str) -> tuple[str, ...]:
    """py-rouge's ``_preprocess_summary_as_a_whole`` with the official Korean tokeniser: split at newlines, keep the
    first 1000 whitespace words, lowercase, non-[A-Za-z0-9가-힣] -> space, Mecab morphemes, re-split on spaces."""
    summary = " ".join(" ".join(text.split("\n")).split()[:ROUGE_LENGTH_LIMIT])
    summary = _NOT_ROUGE_CHAR.sub(" ", summary.lower()).strip()
    return tuple(" ".join(mecab().morphs(summary)).split()) if summary else ()


def morphs(text: str) -> list[str]:
    """The official ROUGE preprocessing: lowercase, every char outside ``[A-Za-z0-9가-힣]`` -> space, Mecab
    morphemes (python-mecab-ko with mecab-ko-dic). Memoised."""
    return list(_rouge_tokens(text))


def unigram_f(
    candidate: Sequence[str],
    reference: Sequence[str],
    weights: Mapping[str, float] | None = None,
    default: float = 1.0,
    alpha: float = ROUGE_ALPHA,
) -> float:
    """The one ROUGE-1 F of two token sequences: clipped unigram overlap, P = overlap / candidate tokens, R = overlap
    / reference tokens, F = P R / ((1 - alpha) P + alpha R); 0 when nothing overlaps (or a side is empty). With
    ``weights`` each token counts its weight (``default`` for a token not in it) in the overlap and both totals."""
    cand, ref = Counter(candidate), Counter(reference)

    def w(t: str) -> float:
        return 1 if weights is None else weights.get(t, default)

    overlap = sum(min(n, ref[t]) * w(t) for t, n in cand.items() if t in ref)
    if not overlap:
        return 0.0
    precision = overlap / sum(n * w(t) for t, n in cand.items())
    recall = overlap / sum(n * w(t) for t, n in ref.items())
    return precision * recall / ((1 - alpha) * precision + alpha * recall)


def rouge1_f(pred_reason: str, gold_reason: str) -> float:
    """Per-item ROUGE-1 F as py-rouge computes it (clipped unigram counts, alpha 0.5; 0 when a side is empty) on the
    official tokens (``morphs``): ``unigram_f`` of the two."""
    return unigram_f(_rouge_tokens(pred_reason), _rouge_tokens(gold_reason))


# ------------------------------------------------------------------ encoders and the suite
@dataclass(frozen=True)
class EncoderInfo:
    """The model behind a learned metric: ``official`` False marks a stand-in (its number is not the metric)."""

    name: str
    path: str
    official: bool
    label: str


def _check_folder(path: str, what: str) -> str:
    if not (Path(path) / "config.json").is_file():
        raise DataError([f"{path}: {what} checkpoint folder not found (expected a folder with config.json)"])
    return str(Path(path).resolve())


class _LRU(OrderedDict):
    """A small bounded mapping (least recently used entries dropped)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or_none(self, key: Any) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (unchanged when None), then restore the previous number."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _encodable(text: str) -> str:
    """``text`` with lone surrogates (not encodable, tokenizers refuse them) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


class _TokenEncoder:
    """bert-score's per-sentence (token embeddings, idf weights) of one model, encoding only texts not seen yet:
    reference texts are kept for the process, candidate texts in a bounded cache."""

    def __init__(self, model: Any, tokenizer: Any, device: str, batch_size: int, threads: int | None = None):
        self.model, self.tokenizer, self.device, self.batch_size = model, tokenizer, device, batch_size
        self.threads = threads
        self.idf: dict[int, float] = defaultdict(lambda: 1.0)  # no idf: every token weighs 1, [CLS]/[SEP] 0
        self.idf[tokenizer.sep_token_id] = 0
        self.idf[tokenizer.cls_token_id] = 0
        self.refs: dict[str, tuple[Any, Any]] = {}
        self.preds = _LRU(_PRED_CACHE)

    def _batches(self, texts: list[str], lengths: list[int]) -> list[list[str]]:
        """Texts grouped by token length, longest first: at most ``batch_size`` per batch, padding under 25%."""
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        batches: list[list[int]] = []
        for i in order:
            cur = batches[-1] if batches else []
            total = sum(lengths[j] for j in cur) + lengths[i]
            if cur and len(cur) < self.batch_size and lengths[cur[0]] * (len(cur) + 1) <= 1.25 * total:
                cur.append(i)
            else:
                batches.append([i])
        return [[texts[i] for i in batch] for batch in batches]

    def encode(self, texts: Sequence[str], is_ref: bool) -> dict[str, tuple[Any, Any]]:
        """``{text: (embeddings [n, d], idf [n])}`` for the distinct texts, new ones encoded in batches."""
        found: dict[str, tuple[Any, Any]] = {}
        for t in dict.fromkeys(texts):
            hit = self.refs.get(t)
            if hit is None:
                hit = self.preds.get_or_none(t)
            if hit is not None:
                found[t] = hit
        todo = [t for t in dict.fromkeys(texts) if t not in found]
        if todo:
            from bert_score.utils import get_bert_embedding, sent_encode

            clean = {_encodable(t): t for t in todo}  # the text the tokenizer sees -> the caller's text
            texts_in = list(clean)
            for batch in self._batches(texts_in, [len(sent_encode(self.tokenizer, t)) for t in texts_in]):
                with _torch_threads(self.threads):
                    embs, masks, idf = get_bert_embedding(
                        batch, self.model, self.tokenizer, self.idf, device=self.device
                    )
                for i, sen in enumerate(map(clean.get, batch)):
                    n = int(masks[i].sum().item())
                    found[sen] = (embs[i, :n].clone(), idf[i, :n].to(embs.device))  # clone: frees the batch
        for t, val in found.items():
            if is_ref:
                self.refs[t] = val
            elif t not in self.refs:
                self.preds.put(t, val)
        return found


class MetricSuite:
    """ROUGE-1, BERTScore and BLEURT for lists of (prediction, reference) reasons, fast enough for rewards.

    Encoders load once (on first use), every call encodes its new texts in batches, references' token embeddings
    are cached for the process, candidates' in a bounded cache, duplicate pairs are scored once, morpheme analyses
    are memoised, and the BERTScore stand-in and the BLEURT proxy share one e5 forward pass per text. BERTScore
    uses the bert-score package's own ``get_bert_embedding`` and ``greedy_cos_idf``, so its numbers are
    ``bert_score.score(...)``'s on the same model and layer.
    """

    def __init__(
        self,
        bertscore_model: str | None = None,
        bleurt_model: str | None = None,
        device: str | None = None,
        batch_size: int = 64,
        threads: int | None = None,
    ):
        from . import e5 as encoders

        self.device = device or _default_device()
        self.batch_size = batch_size
        env_threads = os.environ.get(ENV_THREADS, "").strip()
        self.threads = threads or (int(env_threads) if env_threads.isdigit() else None)
        if self.threads is None and self.device == "cpu":
            self.threads = 1  # small per-step batches: one thread is as fast idle, far faster on a busy CPU
        self.notes: list[str] = []
        bertscore_model = bertscore_model or os.environ.get(ENV_BERTSCORE) or None
        bleurt_model = bleurt_model or os.environ.get(ENV_BLEURT) or None
        e5 = f"{encoders.E5_NAME} ({encoders.E5_SOURCE})"
        if bertscore_model:
            path = _check_folder(bertscore_model, "BERTScore")
            bs = EncoderInfo(BERTSCORE_OFFICIAL, path, True, f"bertscore: {BERTSCORE_OFFICIAL} layer {BERTSCORE_LAYER}")
        else:
            bs = EncoderInfo(
                e5, str(encoders.e5_folder()), False, f"bertscore-standin: {encoders.E5_NAME} (last layer)"
            )
            self.notes.append(
                f"BERTScore: no local {BERTSCORE_OFFICIAL} checkpoint (--bertscore-model or ${ENV_BERTSCORE}); "
                f"using the stand-in {bs.label}"
            )
        if bleurt_model:
            path = _check_folder(bleurt_model, "BLEURT")
            bl = EncoderInfo(BLEURT_OFFICIAL, path, True, f"bleurt: {BLEURT_OFFICIAL}")
        else:
            bl = EncoderInfo(
                e5,
                str(encoders.e5_folder()),
                False,
                f"bleurt-proxy: cosine of mean-pooled {encoders.E5_NAME} embeddings",
            )
            self.notes.append(
                f"BLEURT: no local {BLEURT_OFFICIAL} checkpoint (--bleurt-model or ${ENV_BLEURT}); "
                f"using the proxy {bl.label}"
            )
        self.encoders: dict[str, EncoderInfo] = {"bertscore": bs, "bleurt": bl}
        self._bs: _TokenEncoder | None = None
        self._e5: _TokenEncoder | None = None
        self._bl: tuple[Any, Any] | None = None
        self._pair_cache: _LRU = _LRU(4 * _PRED_CACHE)  # (pred, ref) -> score (official BLEURT)

    # ---------------------------------------------------------- ROUGE-1
    def rouge1(self, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
        """Per-pair ROUGE-1 F (official definition)."""
        return [rouge1_f(p, r) for p, r in zip(preds, refs, strict=True)]

    # ---------------------------------------------------------- BERTScore
    def _bs_encoder(self) -> _TokenEncoder:
        """BERTScore's token encoder: layer 9 of the official checkpoint, or the e5 stand-in's last layer."""
        if self._bs is None:
            info = self.encoders["bertscore"]
            if info.official:
                from bert_score.utils import get_model, get_tokenizer

                tokenizer = get_tokenizer(info.path, use_fast=False)
                model = get_model(info.path, BERTSCORE_LAYER).to(self.device)
                limit = getattr(model.config, "max_position_embeddings", 512)
                tokenizer.model_max_length = min(tokenizer.model_max_length, limit)  # a missing limit reads 1e30
                self._bs = _TokenEncoder(model, tokenizer, self.device, self.batch_size, self.threads)
            else:
                self._bs = self._e5_encoder()
        return self._bs

    def _e5_encoder(self) -> _TokenEncoder:
        """multilingual-e5-small's last-layer token embeddings (shared by the BERTScore stand-in and BLEURT proxy)."""
        if self._e5 is None:
            from .e5 import load_e5

            model, tokenizer = load_e5(self.device)
            self._e5 = _TokenEncoder(model, tokenizer, self.device, self.batch_size, self.threads)
        return self._e5

    def bertscore(self, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
        """Per-pair BERTScore F1 (bert-score's greedy matching; no idf, no rescaling)."""
        import torch
        from bert_score.utils import greedy_cos_idf
        from torch.nn.utils.rnn import pad_sequence

        pairs = list(zip(preds, refs, strict=True))
        # bert-score gives 0 when a side is empty after strip() (its sent_encode of "" fails under transformers 5)
        unique = [pair for pair in dict.fromkeys(pairs) if pair[0].strip() and pair[1].strip()]
        scores: dict[tuple[str, str], float] = dict.fromkeys(pairs, 0.0)
        if not unique:
            return [0.0] * len(pairs)
        enc = self._bs_encoder()
        ref_stats = enc.encode([r for _, r in unique], True)
        pred_stats = enc.encode([p for p, _ in unique], False)

        def pad(stats: list[tuple[Any, Any]]) -> tuple[Any, Any, Any]:
            emb = pad_sequence([e for e, _ in stats], batch_first=True, padding_value=2.0)
            idf = pad_sequence([i for _, i in stats], batch_first=True)
            lens = torch.tensor([e.size(0) for e, _ in stats])
            mask = (torch.arange(int(lens.max()))[None, :] < lens[:, None]).to(emb.device)
            return emb, mask, idf

        with torch.no_grad():
            for start in range(0, len(unique), self.batch_size):
                batch = unique[start : start + self.batch_size]
                _, _, f1 = greedy_cos_idf(
                    *pad([ref_stats[r] for _, r in batch]), *pad([pred_stats[p] for p, _ in batch])
                )
                scores.update(zip(batch, f1.cpu().tolist(), strict=True))
        return [scores[pair] for pair in pairs]

    # ---------------------------------------------------------- BLEURT
    def bleurt(self, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
        """Per-pair BLEURT-20 score with the official checkpoint, else the labelled proxy: the cosine of the
        mean-pooled e5 token embeddings of the two texts (the BERTScore stand-in's own forward pass, so a step
        scored with both costs one encoding; 0 when a side is empty)."""
        pairs = list(zip(preds, refs, strict=True))
        unique = list(dict.fromkeys(pairs))
        if not self.encoders["bleurt"].official:
            import torch

            unique = [pair for pair in unique if pair[0].strip() and pair[1].strip()]
            scores = dict.fromkeys(pairs, 0.0)
            if unique:
                enc = self._e5_encoder()
                ref_stats = enc.encode([r for _, r in unique], True)
                pred_stats = enc.encode([p for p, _ in unique], False)
                with torch.no_grad():
                    for p, r in unique:
                        a, b = pred_stats[p][0].mean(0), ref_stats[r][0].mean(0)
                        scores[(p, r)] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
            return [scores[pair] for pair in pairs]
        from .bleurt import bleurt_scores, load_bleurt

        if self._bl is None:
            self._bl = load_bleurt(self.encoders["bleurt"].path, self.device)
        found = {pair: self._pair_cache.get_or_none(pair) for pair in unique}
        todo = [pair for pair, val in found.items() if val is None]
        if todo:
            model, tok = self._bl
            refs_in, preds_in = [_encodable(r) for _, r in todo], [_encodable(p) for p, _ in todo]
            with _torch_threads(self.threads):
                vals = bleurt_scores(model, tok, refs_in, preds_in, self.batch_size)
            for pair, val in zip(todo, vals, strict=True):
                found[pair] = val
                self._pair_cache.put(pair, val)
        return [found[pair] for pair in pairs]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_SUITES: dict[tuple[Any, ...], MetricSuite] = {}


def get_suite(
    bertscore_model: str | None = None,
    bleurt_model: str | None = None,
    device: str | None = None,
    batch_size: int = 64,
    threads: int | None = None,
) -> MetricSuite:
    """The process-wide suite for these settings (environment variables resolved first): encoders load once."""
    env_threads = os.environ.get(ENV_THREADS, "").strip()
    key = (
        bertscore_model or os.environ.get(ENV_BERTSCORE) or None,
        bleurt_model or os.environ.get(ENV_BLEURT) or None,
        device or _default_device(),
        batch_size,
        threads or (int(env_threads) if env_threads.isdigit() else None),
    )
    if key not in _SUITES:
        _SUITES[key] = MetricSuite(*key)
    return _SUITES[key]


# ------------------------------------------------------------------ the scorer
STANDIN_NAMES = {  # official metric -> the name its number takes when a stand-in computed it
    "bertscore": "bertscore_standin",
    "bleurt": "bleurt_proxy",
    "descriptive_avg": "descriptive_avg_standin",
    "final": "final_standin",
}
_NEEDS = {"bertscore": ("bertscore",), "bleurt": ("bleurt",), "descriptive_avg": ("bertscore", "bleurt")}
_NEEDS["final"] = _NEEDS["descriptive_avg"]


def _is_official(info: Any) -> bool:
    """Whether an encoder entry is official: an ``EncoderInfo``, its dict form (``score``'s ``encoders``) or a bool."""
    if isinstance(info, EncoderInfo):
        return info.official
    if isinstance(info, Mapping):
        return bool(info.get("official"))
    return bool(info)


def metric_name(metric: str, suite: MetricSuite | Mapping[str, Any]) -> str:
    """The name to store, print, plot or log ``metric``'s number under: the official name (``bertscore``,
    ``bleurt``, ``descriptive_avg``, ``final``) when the official encoders it depends on computed it, else the
    stand-in's name (``STANDIN_NAMES``). ``suite``: a ``MetricSuite``, or its ``encoders`` as a mapping
    (``{"bertscore": EncoderInfo | {"official": bool, ...} | bool, "bleurt": ...}``, e.g. a ``score`` result's
    ``encoders``). Any other metric (``exact_match``, ``rouge_1``, ``format``, ...) keeps its name."""
    encoders = suite.encoders if isinstance(suite, MetricSuite) else suite
    needs = _NEEDS.get(metric, ())
    return metric if all(_is_official(encoders.get(n)) for n in needs) else STANDIN_NAMES[metric]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def score(preds: dict[str, str], golds: dict[str, str], suite: MetricSuite, per_item: bool = False) -> dict[str, Any]:
    """Score predictions against golds (both ``{id: answer text}``) as the competition does.

    EM over all items; ROUGE-1, BERTScore and BLEURT over the items where both reasons are non-empty (an item
    without a reason drops out of those three; 0 when no item has one); final = (EM + their mean) / 2. With
    ``per_item`` the result holds ``items: {id: {...}}`` (per-item final = (EM + mean of the three) / 2, the
    three counting 0 for an item without a reason pair). A number that a stand-in computed, or that is built on
    one, is stored under ``metric_name``'s stand-in name only (``final_standin``, ...; ``final_official`` False)."""
    missing = [i for i in golds if i not in preds]
    extra = [i for i in preds if i not in golds]
    problems = []
    if missing:
        problems.append(f"{len(missing)} gold id(s) have no prediction: {_id_list(missing)}")
    if extra:
        problems.append(f"{len(extra)} predicted id(s) are not in the gold file: {_id_list(extra)}")
    if problems:
        raise DataError(problems)
    ids = list(golds)
    em = {i: exact_match(preds[i], golds[i]) for i in ids}
    reasons = {i: (parse_answer(preds[i]).reason, parse_answer(golds[i]).reason) for i in ids}
    paired = [i for i in ids if reasons[i][0] and reasons[i][1]]
    p_reasons, g_reasons = [reasons[i][0] for i in paired], [reasons[i][1] for i in paired]
    name = {m: metric_name(m, suite) for m in STANDIN_NAMES}
    columns = {
        "rouge_1": suite.rouge1(p_reasons, g_reasons),
        name["bertscore"]: suite.bertscore(p_reasons, g_reasons),
        name["bleurt"]: suite.bleurt(p_reasons, g_reasons),
    }
    means = {k: _mean(v) for k, v in columns.items()}
    descriptive = _mean(list(means.values()))
    exact = _mean([em[i] for i in ids])
    result: dict[str, Any] = {"exact_match": exact, **means}
    result |= {
        name["descriptive_avg"]: descriptive,
        name["final"]: (exact + descriptive) / 2,
        "final_official": name["final"] == "final",
        "n_items": len(ids),
        "n_reason_pairs": len(paired),
        "encoders": {k: asdict(v) for k, v in suite.encoders.items()},
        "notes": list(suite.notes),
    }
    if per_item:
        by_id = {i: {k: v[n] for k, v in columns.items()} for n, i in enumerate(paired)}
        items = {}
        for i in ids:
            row: dict[str, Any] = {"exact_match": em[i], "has_reason_pair": i in by_id}
            row |= by_id.get(i, dict.fromkeys(columns))
            desc = _mean(list(by_id[i].values())) if i in by_id else 0.0
            row[name["final"]] = (em[i] + desc) / 2
            items[i] = row
        result["items"] = items
    return result


def _id_list(ids: list[str], limit: int = 30) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


# ------------------------------------------------------------------ the command
COLUMNS = [  # (official result key, header) in leaderboard order
    ("final", "final"),
    ("descriptive_avg", "descriptive avg"),
    ("exact_match", "EM"),
    ("bleurt", "BLEURT"),
    ("bertscore", "BERTScore"),
    ("rouge_1", "ROUGE-1"),
]
STANDIN_HEADERS = {
    "final_standin": "final stand-in*",
    "descriptive_avg_standin": "descriptive avg stand-in*",
    "bleurt_proxy": "BLEURT proxy*",
    "bertscore_standin": "BERTScore stand-in*",
}


def render_table(result: dict[str, Any]) -> Any:
    """A rich table of a ``score`` result (x100, leaderboard columns; a stand-in's column under its own name)."""
    from rich.table import Table

    table = Table(title=f"{result['n_items']} items, {result['n_reason_pairs']} with reasons on both sides")
    keys = [metric_name(k, result["encoders"]) if k in STANDIN_NAMES else k for k, _ in COLUMNS]
    for key, (_, header) in zip(keys, COLUMNS, strict=True):
        table.add_column(STANDIN_HEADERS.get(key, header), justify="right")
    table.add_row(*(f"{100 * result[k]:.2f}" for k in keys))
    return table


def score_command(argv: list[str]) -> int:
    """``malpyeong-grpo score --pred P --gold G [--out scores.json]``: score a prediction file as the competition."""
    parser = argparse.ArgumentParser(prog="malpyeong-grpo score", description=score_command.__doc__)
    parser.add_argument("--pred", required=True, help="predictions: official JSON list (or JSONL) with output.answer")
    parser.add_argument("--gold", required=True, help="gold answers in the same schema (e.g. the dev split)")
    parser.add_argument("--out", help="write the scores (with per-item scores under 'items') to this JSON file")
    parser.add_argument(*flag("bertscore_model"), help=f"local {BERTSCORE_OFFICIAL} folder (or ${ENV_BERTSCORE})")
    parser.add_argument(*flag("bleurt_model"), help=f"local {BLEURT_OFFICIAL} folder (or ${ENV_BLEURT})")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument(*flag("batch_size"), type=int, default=64)
    parser.add_argument(
        "--threads", type=int, help=f"torch CPU threads for the encoders (default: 1 on CPU; or ${ENV_THREADS})"
    )
    parser.add_argument(
        *flag("max_chars"), type=int, help="longest answer/question accepted (default: $MALPYEONG_MAX_CHARS or 4000)"
    )
    args = parser.parse_args(argv)
    bad = [f"--{k.replace('_', '-')} must be at least 1, got {v}" for k, v in vars(args).items()
           if k in ("batch_size", "threads", "max_chars") and v is not None and v < 1]  # fmt: skip
    if bad:
        raise DataError(bad)
    outputs = [("--out", args.out), ("its lock", lock_path(args.out))] if args.out else []
    check_outputs([("--pred", args.pred), ("--gold", args.gold)], outputs)  # before any work
    with output_lock(args.out) if args.out else contextlib.nullcontext():
        return _score_files(args)


def _score_files(args: argparse.Namespace) -> int:
    """score_command's work (under the --out lock)."""
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the note and the table
    gold_items = load_items(args.gold, require_answer=True, max_chars=args.max_chars)  # a blank gold is an error
    pred_items = load_items(args.pred, require_answer=True, max_chars=args.max_chars, blank_answer_ok=True)
    gold_ids = {it.id for it in gold_items}
    missing = [it.id for it in gold_items if it.id not in {p.id for p in pred_items}]
    extra = [it.id for it in pred_items if it.id not in gold_ids]
    problems = [f"{args.pred}: no prediction for {len(missing)} id(s) of {args.gold}: {_id_list(missing)}"] * bool(
        missing
    )
    problems += [f"{args.pred}: {len(extra)} id(s) are not in {args.gold}: {_id_list(extra)}"] * bool(extra)
    if problems:
        raise DataError(problems)
    suite = get_suite(args.bertscore_model, args.bleurt_model, args.device, args.batch_size, args.threads)
    for note in suite.notes:
        print(f"note: {note}", file=sys.stderr)
    result = score(
        {it.id: it.answer for it in pred_items}, {it.id: it.answer for it in gold_items}, suite, per_item=True
    )
    out = Console() if sys.stdout.isatty() else Console(width=120)  # piped: wide enough for the headers
    out.print(render_table(result))
    for name, info in result["encoders"].items():
        out.print(f"{name}: {info['label']} ({info['path']})", highlight=False, markup=False, soft_wrap=True)
    if not result["final_official"]:
        out.print("* computed with stand-in encoders: not the official metric / final score", soft_wrap=True)
    summary = {k: v for k, v in result.items() if k != "items"}
    if args.out:
        write_json(args.out, result)
        out.print(f"scores written to {args.out}", highlight=False, soft_wrap=True)
    else:
        import json

        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    return 0
