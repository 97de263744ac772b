"""The competition's metrics: the fast metric suite behind the rewards (per pair) and the scorer (aggregated).

Official definitions: EM on the answer part (see ``answer.py``); on the reasons of the items where both reasons are
non-empty, ROUGE-1 F (py-rouge, alpha 0.5, Mecab morphemes: ``rouge.py``), BERTScore F1
(bert-base-multilingual-cased, layer 9, no idf, no baseline rescaling) and BLEURT-20; final = (EM + mean(ROUGE-1,
BERTScore, BLEURT)) / 2. The ``score`` verb that prints them for a prediction file is ``score_cli.py``.

The learned metrics need local checkpoints (option or environment variable). Without them the suite says so in one
line and uses named stand-ins (BERTScore computed on multilingual-e5-small; for BLEURT the cosine of the mean-pooled
e5 embeddings); their numbers, and every aggregate built on them, are stored under their own names
(``bertscore_standin``, ``bleurt_proxy``, ``descriptive_avg_standin``, ``final_standin``: see ``metric_name``), never
under the official ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .answer import exact_match, parse_answer
from .embedding_cache import LRU, PRED_CACHE, TokenEncoder, encodable, torch_threads
from .files import DataError
from .rouge import rouge1_f

BERTSCORE_OFFICIAL = "bert-base-multilingual-cased"
BERTSCORE_LAYER = 9
BLEURT_OFFICIAL = "BLEURT-20"
ENV_BERTSCORE = "MALPYEONG_BERTSCORE_MODEL"
ENV_BLEURT = "MALPYEONG_BLEURT_MODEL"
ENV_THREADS = "MALPYEONG_METRIC_THREADS"


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
        from . import e5 as e5_module

        self.device = device or _default_device()
        self.batch_size = batch_size
        env_threads = os.environ.get(ENV_THREADS, "").strip()
        self.threads = threads or (int(env_threads) if env_threads.isdigit() else None)
        if self.threads is None and self.device == "cpu":
            self.threads = 1  # small per-step batches: one thread is as fast idle, far faster on a busy CPU
        self.notes: list[str] = []
        bertscore_model = bertscore_model or os.environ.get(ENV_BERTSCORE) or None
        bleurt_model = bleurt_model or os.environ.get(ENV_BLEURT) or None
        e5 = f"{e5_module.E5_NAME} ({e5_module.E5_SOURCE})"
        if bertscore_model:
            path = _check_folder(bertscore_model, "BERTScore")
            bs = EncoderInfo(BERTSCORE_OFFICIAL, path, True, f"bertscore: {BERTSCORE_OFFICIAL} layer {BERTSCORE_LAYER}")
        else:
            bs = EncoderInfo(
                e5, str(e5_module.e5_folder()), False, f"bertscore-standin: {e5_module.E5_NAME} (last layer)"
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
                str(e5_module.e5_folder()),
                False,
                f"bleurt-proxy: cosine of mean-pooled {e5_module.E5_NAME} embeddings",
            )
            self.notes.append(
                f"BLEURT: no local {BLEURT_OFFICIAL} checkpoint (--bleurt-model or ${ENV_BLEURT}); "
                f"using the proxy {bl.label}"
            )
        self.encoders: dict[str, EncoderInfo] = {"bertscore": bs, "bleurt": bl}
        self._bs: TokenEncoder | None = None
        self._e5: TokenEncoder | None = None
        self._bl: tuple[Any, Any] | None = None
        self._pair_cache: LRU = LRU(4 * PRED_CACHE)  # (pred, ref) -> score (official BLEURT)

    # ---------------------------------------------------------- ROUGE-1
    def rouge1(self, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
        """Per-pair ROUGE-1 F (official definition)."""
        return [rouge1_f(p, r) for p, r in zip(preds, refs, strict=True)]

    # ---------------------------------------------------------- BERTScore
    def _bs_encoder(self) -> TokenEncoder:
        """BERTScore's token encoder: layer 9 of the official checkpoint, or the e5 stand-in's last layer."""
        if self._bs is None:
            info = self.encoders["bertscore"]
            if info.official:
                from bert_score.utils import get_model, get_tokenizer

                tokenizer = get_tokenizer(info.path, use_fast=False)
                model = get_model(info.path, BERTSCORE_LAYER).to(self.device)
                limit = getattr(model.config, "max_position_embeddings", 512)
                tokenizer.model_max_length = min(tokenizer.model_max_length, limit)  # a missing limit reads 1e30
                self._bs = TokenEncoder(model, tokenizer, self.device, self.batch_size, self.threads)
            else:
                self._bs = self._e5_encoder()
        return self._bs

    def _e5_encoder(self) -> TokenEncoder:
        """multilingual-e5-small's last-layer token embeddings (shared by the BERTScore stand-in and BLEURT proxy)."""
        if self._e5 is None:
            from .e5 import load_e5

            model, tokenizer = load_e5(self.device)
            self._e5 = TokenEncoder(model, tokenizer, self.device, self.batch_size, self.threads)
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
            refs_in, preds_in = [encodable(r) for _, r in todo], [encodable(p) for p, _ in todo]
            with torch_threads(self.threads):
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
        problems.append(f"{len(missing)} gold id(s) have no prediction: {id_list(missing)}")
    if extra:
        problems.append(f"{len(extra)} predicted id(s) are not in the gold file: {id_list(extra)}")
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


def id_list(ids: list[str], limit: int = 30) -> str:
    """The first ``limit`` ids joined by commas, and how many more there are."""
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
