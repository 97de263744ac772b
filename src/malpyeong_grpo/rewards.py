"""The competition's metrics as TRL reward functions.

Each reward is ``f(prompts, completions, **columns) -> list[float]`` and TRL logs it as ``rewards/<name>/mean``:
``format``, ``exact_match``, ``rouge_1``, ``bertscore``, ``bleurt``, ``final`` and ``rule``. The gold answer comes
from the dataset column ``answer``; the ``rule`` reward reads ``gold_rule``, ``gold_rule_id`` and ``rule_ids``.
Completions are cut with ``prompts.extract_answer`` and split as the official scorer splits them. The encoders are
the scorer's (``metrics.get_suite``, loaded once per process); all completions of a step go to them in one batch,
and every (prediction, reference) pair is scored once per process, so ``final`` reuses what ``rouge_1``,
``bertscore`` and ``bleurt`` computed in the same step. A reward never raises on any text: it returns a number.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from .answer import ParsedAnswer, exact_match, is_one_sentence, parse_answer, sentence_count
from .prompts import extract_answer

logger = logging.getLogger(__name__)

MAX_CHARS = 4000  # longer texts are cut before scoring (gold answers are at most ~350 characters)
CACHE_SIZE = 200_000  # scored pairs kept per metric before the cache is cleared
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_QUOTED_SENTENCE = re.compile(r'^\s*"(.+)"\s*[이가] 옳다$', re.S)

_settings: dict[str, Any] = {"bertscore_model": None, "bleurt_model": None, "device": None}
_cache: dict[str, dict[tuple[str, str], float]] = {}
_warned: set[str] = set()

RewardFunc = Callable[..., list[float]]


def configure(bertscore_model: str | None = None, bleurt_model: str | None = None, device: str | None = None) -> None:
    """Choose the encoders (and their device) the rewards use in this process."""
    new = {"bertscore_model": bertscore_model, "bleurt_model": bleurt_model, "device": device}
    if new != _settings:
        _settings.update(new)
        _cache.clear()


def get_suite() -> Any:
    """The scorer's metric suite for the configured encoders (cached per process by ``metrics.get_suite``)."""
    from .metrics import get_suite as _get_suite

    return _get_suite(**_settings)


def clean(text: Any) -> str:
    """Text safe for any tokenizer: a string, lone surrogates replaced, control characters (but tab and newline)
    made spaces, at most MAX_CHARS characters."""
    if not isinstance(text, str):
        return ""
    text = text[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text)


def _parsed(completions: Sequence[Any]) -> list[ParsedAnswer]:
    return [parse_answer(clean(extract_answer(c))) for c in completions]


def _golds(answer: Sequence[Any] | None, n: int) -> list[str]:
    golds = list(answer)[:n] if isinstance(answer, list | tuple) else []
    return [clean(g) for g in golds] + [""] * (n - len(golds))


def _finite(x: Any) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) else 0.0


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


def pair_scores(metric: str, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """``suite.<metric>`` ('rouge1', 'bertscore', 'bleurt') of each pair; new distinct pairs go to the encoder in one
    batch, known ones come from the cache, an empty side scores 0. A failing batch is retried item by item; an item
    that still fails scores 0 (logged once)."""
    cache = _cache.setdefault(metric, {})
    if len(cache) > CACHE_SIZE:
        cache.clear()
    todo = list(dict.fromkeys((p, r) for p, r in zip(preds, refs, strict=True) if p.strip() and r.strip()))
    todo = [pair for pair in todo if pair not in cache]
    if todo:
        try:
            fn = getattr(get_suite(), metric)
            values = fn([p for p, _ in todo], [r for _, r in todo])
            cache.update(zip(todo, map(_finite, values), strict=True))
        except Exception as batch_error:  # noqa: BLE001 - a reward returns a number whatever happens
            _warn_once(f"{metric} failed on a batch ({batch_error!r}); scoring item by item")
            for pair in todo:
                try:
                    cache[pair] = _finite(getattr(get_suite(), metric)([pair[0]], [pair[1]])[0])
                except Exception as e:  # noqa: BLE001
                    _warn_once(f"{metric} failed on an item ({e!r}); it scores 0")
                    cache[pair] = 0.0
    return [cache.get((p, r), 0.0) for p, r in zip(preds, refs, strict=True)]


def format_score(parsed: ParsedAnswer, gold: str = "") -> float:
    """Mean of three checks: the official split finds '가/이 옳다'; before it stands one quoted sentence (or no
    more sentences than the gold answer quotes, when given); a non-empty reason follows. 0 when there is no split."""
    if parsed.pattern is None:
        return 0.0
    allowed = sentence_count(parse_answer(gold).sentence) if gold else 1
    quoted = bool(_QUOTED_SENTENCE.match(parsed.answer_part)) and is_one_sentence(parsed.sentence, allowed)
    return (1.0 + float(quoted) + float(bool(parsed.reason.strip()))) / 3.0


def format_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """Whether the completion has the official answer form (see ``format_score``; the gold answer, when the
    dataset has one, sets how many sentences the quote may hold)."""
    parsed = _parsed(completions)
    return [format_score(p, g) for p, g in zip(parsed, _golds(answer, len(parsed)), strict=True)]


def exact_match_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """Official EM: the answer part, ASCII quotes deleted, equals the gold's (or one of its '#' alternatives)."""
    parsed = _parsed(completions)
    golds = _golds(answer, len(parsed))
    return [exact_match(p.answer_part, g) if g else 0.0 for p, g in zip(parsed, golds, strict=True)]


def _reason_scores(metric: str, completions: Sequence[Any], answer: Sequence[str] | None) -> list[float]:
    parsed = _parsed(completions)
    golds = [parse_answer(g).reason for g in _golds(answer, len(parsed))]
    return pair_scores(metric, [p.reason for p in parsed], golds)


def rouge_1_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """ROUGE-1 F1 on Mecab morphemes between the completion's reason and the gold reason."""
    return _reason_scores("rouge1", completions, answer)


def bertscore_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """BERTScore F1 between the reasons (the scorer's encoder)."""
    return _reason_scores("bertscore", completions, answer)


def bleurt_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """BLEURT between the reasons (the official checkpoint or the scorer's labelled stand-in)."""
    return _reason_scores("bleurt", completions, answer)


def final_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """The per-item official final score: (EM + mean(ROUGE-1, BERTScore, BLEURT)) / 2."""
    em = exact_match_reward(prompts, completions, answer)
    parts = [_reason_scores(m, completions, answer) for m in ("rouge1", "bertscore", "bleurt")]
    return [(e + (r + b + t) / 3.0) / 2.0 for e, r, b, t in zip(em, *parts, strict=True)]


def cited_rules(text: str, rule_ids: Sequence[str]) -> list[str]:
    """The candidate rule ids named in ``text`` ('한글 맞춤법 제4항' does not match inside '… 제42항')."""
    return [rid for rid in rule_ids if rid and re.search(re.escape(rid) + r"(?![0-9])", text)]


def rule_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    gold_rule: Sequence[str] | None = None,
    gold_rule_id: Sequence[str] | None = None,
    rule_ids: Sequence[Sequence[str]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Using the right rule: the larger of (a) ROUGE-1 F1 between the reason and the gold rule's text and (b) 1/n
    when the completion names the gold rule's id among n cited candidate ids. 0 for items without a gold rule
    (constant within a group, so it does not move the policy)."""
    n = len(completions)
    texts = [clean(extract_answer(c)) for c in completions]
    reasons = [parse_answer(t).reason for t in texts]
    gold_texts = [clean(g) for g in (gold_rule or [])] + [""] * n
    gold_ids = [g if isinstance(g, str) else "" for g in (gold_rule_id or [])] + [""] * n
    cands = [list(c) if isinstance(c, list | tuple) else [] for c in (rule_ids or [])] + [[]] * n
    overlap = pair_scores("rouge1", reasons, gold_texts[:n])
    out = []
    for i in range(n):
        citation = 0.0
        if gold_ids[i]:
            cited = cited_rules(texts[i], [c for c in cands[i] if isinstance(c, str)] or [gold_ids[i]])
            citation = 1.0 / len(cited) if gold_ids[i] in cited else 0.0
        out.append(max(overlap[i], citation))
    return out


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "exact_match": exact_match_reward,
    "rouge_1": rouge_1_reward,
    "bertscore": bertscore_reward,
    "bleurt": bleurt_reward,
    "final": final_reward,
    "rule": rule_reward,
}
for _name, _func in REWARDS.items():
    _func.__name__ = _name  # TRL logs rewards/<__name__>/mean; __qualname__ stays, so they still pickle


def get_rewards(names: Sequence[str]) -> list[RewardFunc]:
    """The reward functions named, in order; an unknown name raises DataError."""
    from .data import DataError

    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise DataError([f"unknown reward(s) {', '.join(unknown)} (known: {', '.join(REWARDS)})"])
    return [REWARDS[n] for n in names]
