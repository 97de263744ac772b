"""The competition's metrics, and dense rewards for the answer, as TRL reward functions.

``REWARDS`` is the registry (as open-r1's): ``format``, ``exact_match``, ``answer_similarity``, ``choice``,
``rouge_1``, ``bertscore``, ``bleurt``, ``final``, ``rule`` and ``overlong``; each is ``f(prompts, completions,
**columns) -> list[float]``. ``get_rewards(names, scorer, params)`` builds the callables a trainer gets: each
carries the name TRL logs as ``rewards/<name>/mean``, and a metric computed by a stand-in encoder says so
(``bertscore_standin``, ``bleurt_proxy``, ``final_standin``). The gold answer comes from the dataset column
``answer``; ``choice`` reads ``question`` and ``question_type``; ``rule`` reads ``gold_rule``, ``gold_rule_id`` and
``rule_ids``; ``overlong`` reads TRL's ``completion_ids`` and the run's length limit. A completion is cut with
``prompts.extract_answer`` and at its first line break (the answer is one line, as at inference) and split as the
official scorer splits it. The encoders are the scorer's (``metrics.get_suite``, loaded once per process)
behind a ``PairScorer``: all completions of a step go to them in one batch, and every (prediction, reference) pair is
scored once, so ``final`` reuses what ``rouge_1``, ``bertscore`` and ``bleurt`` computed in the same step. A reward
never raises on any text: it returns a number.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from .answer import (
    ParsedAnswer,
    exact_match,
    gold_alternatives,
    is_one_sentence,
    normalize_answer,
    parse_answer,
    sentence_count,
)
from .data import Item
from .prompts import extract_answer

logger = logging.getLogger(__name__)

MAX_CHARS = 4000  # longer texts are cut before scoring (gold answers are at most ~350 characters)
CACHE_SIZE = 200_000  # scored pairs kept per metric before the cache is cleared
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_QUOTED_SENTENCE = re.compile(r'^\s*"(.+)"\s*[이가] 옳다$', re.S)

_warned: set[str] = set()
ENV_BERTSCORE = "MALPYEONG_BERTSCORE_MODEL"  # the scorer's variables (metrics.ENV_*), read here without loading it
ENV_BLEURT = "MALPYEONG_BLEURT_MODEL"

RewardFunc = Callable[..., list[float]]


class PairScorer:
    """The encoders one trainer's rewards use (official checkpoints when given, else the scorer's named stand-ins),
    and a cache of every (prediction, reference) pair they scored."""

    def __init__(self, bertscore_model: str | None = None, bleurt_model: str | None = None, device: str | None = None):
        self.bertscore_model = bertscore_model or os.environ.get(ENV_BERTSCORE) or None
        self.bleurt_model = bleurt_model or os.environ.get(ENV_BLEURT) or None
        self.device = device
        self.cache: dict[str, dict[tuple[str, str], float]] = {}

    def official(self, metric: str) -> bool:
        """Whether ``metric`` ('bertscore', 'bleurt', 'final') is computed with the official checkpoint(s)."""
        return {
            "bertscore": bool(self.bertscore_model),
            "bleurt": bool(self.bleurt_model),
            "final": bool(self.bertscore_model and self.bleurt_model),
        }.get(metric, True)

    def suite(self) -> Any:
        """The scorer's metric suite for these encoders (loaded once per process by ``metrics.get_suite``)."""
        return get_suite(self)


_default_scorer = PairScorer()


def configure(bertscore_model: str | None = None, bleurt_model: str | None = None, device: str | None = None) -> None:
    """Choose the encoders of the default scorer (the one a reward uses when it is called without ``scorer``)."""
    global _default_scorer
    new = PairScorer(bertscore_model, bleurt_model, device)
    if vars(new) != vars(_default_scorer):
        _default_scorer = new


def get_suite(scorer: PairScorer | None = None) -> Any:
    """The metric suite of ``scorer`` (default: the default scorer's)."""
    from .metrics import get_suite as _get_suite

    s = scorer or _default_scorer
    return _get_suite(bertscore_model=s.bertscore_model, bleurt_model=s.bleurt_model, device=s.device)


def clean(text: Any) -> str:
    """Text safe for any tokenizer: a string, lone surrogates replaced, control characters (but tab and newline)
    made spaces, at most MAX_CHARS characters."""
    if not isinstance(text, str):
        return ""
    text = text[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(" ", text)


def answer_text(completion: Any) -> str:
    """The answer a completion gives, as inference writes it: cut at the stop markers and at the first line break."""
    return clean(extract_answer(completion)).split("\n", 1)[0].strip()


def _parsed(completions: Sequence[Any]) -> list[ParsedAnswer]:
    return [parse_answer(answer_text(c)) for c in completions]


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


def pair_scores(
    metric: str, preds: Sequence[str], refs: Sequence[str], scorer: PairScorer | None = None
) -> list[float]:
    """``suite.<metric>`` ('rouge1', 'bertscore', 'bleurt') of each pair under ``scorer`` (default: the default
    scorer); new distinct pairs go to the encoder in one batch, known ones come from the cache, an empty side scores
    0. A failing batch is retried item by item; an item that still fails scores 0 (logged once)."""
    scorer = scorer or _default_scorer
    cache = scorer.cache.setdefault(metric, {})
    if len(cache) > CACHE_SIZE:
        cache.clear()
    todo = list(dict.fromkeys((p, r) for p, r in zip(preds, refs, strict=True) if p.strip() and r.strip()))
    todo = [pair for pair in todo if pair not in cache]
    if todo:
        try:
            fn = getattr(get_suite(scorer), metric)
            values = fn([p for p, _ in todo], [r for _, r in todo])
            cache.update(zip(todo, map(_finite, values), strict=True))
        except Exception as batch_error:  # noqa: BLE001 - a reward returns a number whatever happens
            _warn_once(f"{metric} failed on a batch ({batch_error!r}); scoring item by item")
            for pair in todo:
                try:
                    cache[pair] = _finite(getattr(get_suite(scorer), metric)([pair[0]], [pair[1]])[0])
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


def jamo(text: str) -> str:
    """Hangul syllables decomposed into their jamo (NFD), so that one wrong letter costs one of two or three."""
    return unicodedata.normalize("NFD", text)


def similarity(a: str, b: str) -> float:
    """Jamo-level similarity of two sentences in [0, 1] (difflib's ratio, no junk heuristic); 1 when equal."""
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, jamo(a), jamo(b), autojunk=False).ratio()


def answer_similarity_score(parsed: ParsedAnswer, gold: str) -> float:
    """How close the answer part is to the gold's (its closest '#' alternative), both normalised as the official
    EM normalises them: 1 for an exact match, a near miss (one wrong letter) close to 1, 0 without an answer part."""
    if parsed.pattern is None or not gold:
        return 0.0
    pred = normalize_answer(parsed.answer_part)
    return max((similarity(pred, g) for g in gold_alternatives(gold)), default=0.0)


def answer_similarity_reward(
    prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str] | None = None, **kwargs: Any
) -> list[float]:
    """Dense reward for the corrected sentence: jamo-level similarity of the answer part to the gold's."""
    parsed = _parsed(completions)
    return [answer_similarity_score(p, g) for p, g in zip(parsed, _golds(answer, len(parsed)), strict=True)]


def choice_score(parsed: ParsedAnswer, gold: str, options: Sequence[str]) -> float:
    """선택형: 1 when the answer's sentence is closer to the gold sentence than to every other option's sentence
    (the right option picked, even if the sentence is not copied exactly), else 0; 0 without options."""
    if parsed.pattern is None or not gold or len(options) < 2:
        return 0.0
    pred = normalize_answer(parsed.sentence)
    golds = {normalize_answer(g) for g in parse_answer(gold).sentence.split("#")}
    sims = [(similarity(pred, normalize_answer(o)), normalize_answer(o) in golds) for o in options]
    best = max(sim for sim, _ in sims)
    right = [sim for sim, is_gold in sims if is_gold]
    wrong = [sim for sim, is_gold in sims if not is_gold]
    return float(bool(right) and max(right) == best and (not wrong or max(wrong) < best))


def choice_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    question: Sequence[str] | None = None,
    question_type: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Picking the right option of a 선택형 question (``choice_score``); 0 for 교정형 items (constant within a group,
    so it does not move the policy there)."""
    from .repair import candidates

    parsed = _parsed(completions)
    golds = _golds(answer, len(parsed))
    out = []
    for i, p in enumerate(parsed):
        q = question[i] if question is not None and i < len(question) else None
        qt = question_type[i] if question_type is not None and i < len(question_type) else "선택형"
        if not isinstance(q, str) or qt != "선택형":
            out.append(0.0)
            continue
        options = candidates(Item(id="-", question_type="선택형", question=q, answer=None))
        out.append(choice_score(p, golds[i], options))
    return out


def _reason_scores(
    metric: str, completions: Sequence[Any], answer: Sequence[str] | None, scorer: PairScorer | None
) -> list[float]:
    parsed = _parsed(completions)
    golds = [parse_answer(g).reason for g in _golds(answer, len(parsed))]
    return pair_scores(metric, [p.reason for p in parsed], golds, scorer)


def rouge_1_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    scorer: PairScorer | None = None,
    **kwargs: Any,
) -> list[float]:
    """ROUGE-1 F1 on Mecab morphemes between the completion's reason and the gold reason."""
    return _reason_scores("rouge1", completions, answer, scorer)


def bertscore_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    scorer: PairScorer | None = None,
    **kwargs: Any,
) -> list[float]:
    """BERTScore F1 between the reasons (the scorer's encoder, or its named stand-in)."""
    return _reason_scores("bertscore", completions, answer, scorer)


def bleurt_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    scorer: PairScorer | None = None,
    **kwargs: Any,
) -> list[float]:
    """BLEURT between the reasons (the official checkpoint or the scorer's labelled proxy)."""
    return _reason_scores("bleurt", completions, answer, scorer)


def final_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    scorer: PairScorer | None = None,
    **kwargs: Any,
) -> list[float]:
    """The per-item final score: (EM + mean(ROUGE-1, BERTScore, BLEURT)) / 2 (a stand-in's when one is used)."""
    em = exact_match_reward(prompts, completions, answer)
    parts = [_reason_scores(m, completions, answer, scorer) for m in ("rouge1", "bertscore", "bleurt")]
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
    texts = [answer_text(c) for c in completions]
    reasons = [parse_answer(t).reason for t in texts]
    gold_texts = [clean(g) for g in (gold_rule or [])] + [""] * n
    gold_ids = [g if isinstance(g, str) else "" for g in (gold_rule_id or [])] + [""] * n
    cands = [list(c) if isinstance(c, list | tuple) else [] for c in (rule_ids or [])] + [[]] * n
    overlap = pair_scores("rouge1", reasons, gold_texts[:n], kwargs.get("scorer"))
    out = []
    for i in range(n):
        citation = 0.0
        if gold_ids[i]:
            cited = cited_rules(texts[i], [c for c in cands[i] if isinstance(c, str)] or [gold_ids[i]])
            citation = 1.0 / len(cited) if gold_ids[i] in cited else 0.0
        out.append(max(overlap[i], citation))
    return out


def overlong_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]] | None = None,
    max_completion_length: int = 0,
    overlong_cache: int = 0,
    **kwargs: Any,
) -> list[float]:
    """DAPO's soft overlong punishment (TRL's ``get_soft_overlong_punishment``) on the completion's token count: 0 up
    to ``max_completion_length - overlong_cache`` tokens, then falling linearly to -1 at the limit. 0 for every
    completion without a limit or without TRL's ``completion_ids`` column."""
    if max_completion_length <= 0 or completion_ids is None:
        return [0.0] * len(completions)
    from trl.rewards import get_soft_overlong_punishment

    punish = get_soft_overlong_punishment(max_completion_length, min(max(overlong_cache, 0), max_completion_length))
    return [float(v) for v in punish([list(ids) for ids in completion_ids])]


REWARDS: dict[str, RewardFunc] = {
    "format": format_reward,
    "exact_match": exact_match_reward,
    "answer_similarity": answer_similarity_reward,
    "choice": choice_reward,
    "rouge_1": rouge_1_reward,
    "bertscore": bertscore_reward,
    "bleurt": bleurt_reward,
    "final": final_reward,
    "rule": rule_reward,
    "overlong": overlong_reward,
}
for _name, _func in REWARDS.items():
    _func.__name__ = _name  # direct calls and old scripts see the registry name; __qualname__ stays (pickling)
STANDIN_NAMES = {"bertscore": "bertscore_standin", "bleurt": "bleurt_proxy", "final": "final_standin"}


def logged_name(name: str, scorer: PairScorer | None = None) -> str:
    """The name a reward is logged under: the registry name, or what says a stand-in computed it."""
    scorer = scorer or _default_scorer
    return name if name not in STANDIN_NAMES or scorer.official(name) else STANDIN_NAMES[name]


class NamedReward:
    """A registry reward bound to one scorer, carrying the name TRL logs (``__name__``); picklable."""

    def __init__(self, name: str, func: RewardFunc, scorer: PairScorer, params: dict[str, Any] | None = None):
        self.name = name
        self.func = func
        self.scorer = scorer
        self.params = dict(params or {})  # fixed keyword arguments from the run's settings (e.g. the length limit)
        self.__name__ = logged_name(name, scorer)
        self.group_std: list[float] = []  # per call: the mean within-group standard deviation (``group_std``)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        values = self.func(prompts, completions, scorer=self.scorer, **{**columns, **self.params})
        self.group_std.append(group_std(prompts, values))
        return values

    def __repr__(self) -> str:
        return f"NamedReward({self.__name__})"


def group_std(prompts: Sequence[Any], values: Sequence[float]) -> float:
    """Mean over groups (runs of one repeated prompt, as GRPO lays them out) of the population standard deviation of
    the values: how much a reward tells a group's completions apart (0: no learning signal)."""
    groups: list[list[float]] = []
    for i, v in enumerate(values):
        if i == 0 or prompts[i] != prompts[i - 1]:
            groups.append([])
        groups[-1].append(float(v))
    stds = [math.sqrt(sum((x - sum(g) / len(g)) ** 2 for x in g) / len(g)) for g in groups if g]
    return sum(stds) / len(stds) if stds else 0.0


def get_rewards(
    names: Sequence[str], scorer: PairScorer | None = None, params: dict[str, Any] | None = None
) -> list[NamedReward]:
    """The reward functions named, in order, bound to ``scorer`` (default: the default scorer) and to ``params``
    (keyword arguments every call gets, e.g. ``max_completion_length`` and ``overlong_cache`` for ``overlong``); an
    unknown name raises DataError."""
    from .files import DataError

    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise DataError([f"unknown reward(s) {', '.join(unknown)} (known: {', '.join(REWARDS)})"])
    scorer = scorer or _default_scorer
    return [NamedReward(n, REWARDS[n], scorer, params) for n in names]


def standin_note(names: Sequence[str], scorer: PairScorer | None = None) -> str | None:
    """One line naming each stand-in behind the given rewards, or None when every one is official."""
    renamed = [f"{n} -> {logged_name(n, scorer)}" for n in names if logged_name(n, scorer) != n]
    if not renamed:
        return None
    return (
        "rewards computed with stand-in encoders (no official BERTScore/BLEURT checkpoint given), logged as: "
        + ", ".join(renamed)
    )
