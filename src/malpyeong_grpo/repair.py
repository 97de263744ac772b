"""Answer repair: a model's answer put into the official form, so that formatting never costs EM.

For questions that offer options (``{A/B}`` inside a quoted sentence, or one ``― option`` line per choice) the
answer sentence is snapped to a valid candidate, or chosen by the model's log-probability of each candidate.
Quotes, spacing before the particle, ``이``/``가`` and the period after ``옳다`` are normalised; a missing
answer falls back to the question's own sentence. Every repair is named, so that a run can count them.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .answer import format_answer, has_final_consonant, normalize_answer, parse_answer, particle
from .data import Item

REPAIR_KINDS = {
    "runon": "text after the first line cut (the gold answers are one line)",
    "quotes": "curly quotes made ASCII, or missing quotes around the sentence added",
    "prefix": "text before the quoted sentence dropped",
    "spacing": "space between the sentence and the particle removed",
    "particle": "이/가 before 옳다 corrected",
    "period": "period after 옳다 added",
    "pattern": "'가 옳다' added after a quoted sentence",
    "fallback": "no answer sentence: the question's sentence (or first candidate) used",
    "snap": "sentence snapped to the nearest option candidate",
    "logprob": "option candidate chosen by the model's log-probability",
    "undecided": "sentence named no single option: first candidate (or log-probability) used",
    "final_punct": "final punctuation of the question's sentence restored",
}
# how an option is chosen: 'hybrid' snaps a sentence that names one option and asks the model's log-probabilities
# otherwise; 'snap' never uses log-probabilities (an undecided answer takes the first option); 'logprob' always does
CHOICE_MODES = ("hybrid", "snap", "logprob")

_CURLY = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "‘": "'", "’": "'", "‚": "'", "′": "'"})
_DASH_LINE = re.compile(r"^\s*[―ㅡ\-–—]\s*(.*?)\s*$")
_BRACES = re.compile(r"\{([^{}]*/[^{}]*)\}")
# particle alternations written after an option, e.g. '{플랙/플래그}가(이)': (form after 받침, form after a vowel)
_PAIRS = {
    frozenset(p): p for p in (("이", "가"), ("을", "를"), ("은", "는"), ("과", "와"), ("으로", "로"), ("아", "야"))
}
_PARTICLE_ALT = re.compile(r"^(으로|이|가|을|를|은|는|과|와|로|아|야)\((으로|이|가|을|를|은|는|과|와|로|아|야)\)")
_TERMINAL = ".?!…"


@dataclass(frozen=True)
class Repair:
    """A repaired answer and the names of the repairs made (keys of ``REPAIR_KINDS``)."""

    answer: str
    kinds: tuple[str, ...]


def _pick_particle(option: str, alt: tuple[str, str]) -> str:
    """The particle of an alternation that fits after ``option``'s last syllable."""
    after_consonant, after_vowel = _PAIRS[frozenset(alt)]
    last = option.rstrip()[-1:]
    if not ("가" <= last <= "힣"):
        return alt[0]
    if after_consonant == "으로":  # 'ㄹ' 받침 takes '로'
        return "로" if (ord(last) - 0xAC00) % 28 == 8 else ("으로" if has_final_consonant(last) else "로")
    return after_consonant if has_final_consonant(last) else after_vowel


def expand_options(sentence: str) -> list[str]:
    """Every sentence that the ``{A/B}`` groups of ``sentence`` allow, particle alternations after a group resolved
    ('{갭/개프}이 있다' -> '갭이 있다', '개프이 있다'; '{플랙/플래그}가(이)' -> '플랙이', '플래그가')."""
    parts = _BRACES.split(sentence)  # text, options, text, options, ..., text
    texts, groups = parts[0::2], [[o.strip() for o in g.split("/")] for g in parts[1::2]]
    out: list[str] = []
    for combo in itertools.product(*groups):
        pieces = [texts[0]]
        for option, text in zip(combo, texts[1:], strict=True):
            m = _PARTICLE_ALT.match(text)
            if m and frozenset(m.groups()) in _PAIRS:
                text = _pick_particle(option, m.groups()) + text[m.end() :]
            pieces += [option, text]
        cand = "".join(pieces).strip()
        if cand not in out:
            out.append(cand)
    return out


def _dash_lines(question: str) -> list[str]:
    """The option/sentence lines after the instruction line ('― ...', 'ㅡ...', or plain lines)."""
    lines = [ln for ln in question.split("\n")[1:] if ln.strip()]
    return [(m.group(1) if (m := _DASH_LINE.match(ln)) else ln.strip()) for ln in lines]


def _quoted_span(question: str, start: int, end: int) -> str | None:
    """The double-quoted text around question[start:end], or None."""
    q = question.translate(_CURLY)
    left, right = q.rfind('"', 0, start), q.find('"', end)
    return q[left + 1 : right] if left >= 0 and right >= 0 else None


def candidates(item: Item) -> list[str]:
    """The valid answer sentences an item offers: the expansions of its ``{A/B}`` groups, or its option lines when
    it lists two or more; [] for an open correction."""
    q = item.question
    groups = list(_BRACES.finditer(q))
    lines = _dash_lines(q)
    if len(lines) >= 2 and "고치" not in q.split("\n", 1)[0]:  # a choice among lines, not 'find and correct'
        return list(dict.fromkeys(lines))
    if groups:
        sentence = _quoted_span(q, groups[0].start(), groups[-1].end())
        if sentence is None:  # no quotes: the line that holds the options
            line_start = q.rfind("\n", 0, groups[0].start()) + 1
            line_end = q.find("\n", groups[-1].end())
            sentence = q[line_start : line_end if line_end >= 0 else len(q)]
        return expand_options(sentence)
    return []


def source_sentence(item: Item) -> str | None:
    """The sentence a question asks to correct: its first line after the instruction, else its quoted text."""
    lines = _dash_lines(item.question.translate(_CURLY))
    if lines:
        line = lines[0]
        return line[1:-1].strip() if len(line) > 2 and line[0] == line[-1] == '"' and line.count('"') == 2 else line
    q = item.question.translate(_CURLY)
    left, right = q.find('"'), q.rfind('"')
    if 0 <= left < right:
        return q[left + 1 : right].strip()
    return None


def _same(a: str, b: str) -> bool:
    return normalize_answer(a) == normalize_answer(b)


def choose_candidate(
    sentence: str | None,
    cands: list[str],
    logprobs: Mapping[str, float] | None = None,
    mode: str = "hybrid",
) -> tuple[str, str | None]:
    """(candidate, repair kind or None when the sentence already was that candidate).

    ``hybrid``/``snap``: the candidate equal to the sentence, else the most similar one (difflib ratio); a sentence
    that still holds the options (``{``, ``/``) or is missing is undecided and goes to the best log-probability when
    ``logprobs`` are given, else to the first candidate. ``logprob``: the candidate with the highest log-probability,
    whatever the sentence.
    """
    if mode not in CHOICE_MODES:
        raise ValueError(f"unknown choice mode {mode!r} (expected one of {', '.join(CHOICE_MODES)})")
    have_lp = bool(logprobs) and all(c in logprobs for c in cands)
    best_lp = max(cands, key=lambda c: logprobs[c]) if have_lp else None
    if sentence is not None:
        for c in cands:
            if _same(sentence, c):
                if mode == "logprob" and best_lp is not None and best_lp != c:
                    return best_lp, "logprob"
                return c, None
    if mode == "logprob" and best_lp is not None:
        return best_lp, "logprob"
    if sentence is None or not sentence.strip() or "{" in sentence or not _names_one_option(sentence, cands):
        return (best_lp, "logprob") if best_lp is not None else (cands[0], "undecided")
    plain = normalize_answer(sentence)
    scores = [difflib.SequenceMatcher(None, plain, normalize_answer(c), autojunk=False).ratio() for c in cands]
    top = max(scores)
    tied = [c for c, s in zip(cands, scores, strict=True) if s == top]
    if len(tied) > 1:
        return (max(tied, key=lambda c: logprobs[c]), "logprob") if have_lp else (tied[0], "undecided")
    return tied[0], "snap"


def _names_one_option(sentence: str, cands: list[str]) -> bool:
    """False when the sentence writes several options side by side ('카라멜/캐러멜 소스는 ...')."""
    return "/" not in sentence or any("/" in c for c in cands)


def _split_quoted(answer_part: str, pattern: str) -> tuple[str, bool, bool, bool]:
    """(sentence, had prefix text, was quoted in ASCII, had space before the particle) of an answer part."""
    head = answer_part[: -len(pattern)]
    spaced = head != head.rstrip()
    head = head.rstrip()
    if head.endswith('"') and head.count('"') >= 2:
        start = head.find('"')
        return head[start + 1 : -1].strip(), bool(head[:start].strip()), True, spaced
    return head.strip().strip("\"'").strip(), False, False, spaced


def repair_answer(
    item: Item,
    text: str,
    logprobs: Mapping[str, float] | None = None,
    choice: str = "hybrid",
) -> Repair:
    """The answer ``text`` (a completion cut at its stop markers) in the official form, with the repairs made."""
    kinds: list[str] = []
    text = text.strip()
    if "\n" in text:
        text = text.split("\n", 1)[0].strip()
        kinds.append("runon")
    fixed = text.translate(_CURLY)
    if fixed != text:
        kinds.append("quotes")
    parsed = parse_answer(fixed)
    sentence: str | None
    if parsed.pattern:
        sentence, prefixed, quoted, spaced = _split_quoted(parsed.answer_part, parsed.pattern)
        reason = parsed.reason
        kinds += ["prefix"] * prefixed + ["quotes"] * (not quoted and "quotes" not in kinds) + ["spacing"] * spaced
        if sentence and parsed.pattern[0] != particle(sentence):
            kinds.append("particle")
        if not fixed[len(parsed.answer_part) :].lstrip(" ").startswith("."):
            kinds.append("period")
    elif m := re.match(r'\s*"([^"]+)"(.*)', fixed, re.S):
        sentence, reason = m.group(1).strip(), m.group(2).lstrip(" .,")
        kinds.append("pattern")
    else:
        sentence, reason = None, fixed
    cands = candidates(item)
    if cands:
        chosen, how = choose_candidate(sentence or None, cands, None if choice == "snap" else logprobs, choice)
        if sentence is None or not sentence:
            kinds.append("fallback")
        if how:
            kinds.append(how)
        sentence = chosen
    elif not sentence:
        sentence = source_sentence(item) or item.question.strip()
        kinds.append("fallback")
    else:
        src = source_sentence(item)
        if src and src[-1] in _TERMINAL and sentence[-1] not in _TERMINAL:
            sentence += src[-1]
            kinds.append("final_punct")
    return Repair(format_answer(sentence, reason), tuple(dict.fromkeys(kinds)))


def count_repairs(repairs: Iterable[Repair]) -> dict[str, int]:
    """How many answers each repair kind touched, plus ``answers`` (all) and ``repaired`` (any repair)."""
    counts: Counter[str] = Counter()
    for r in repairs:
        counts["answers"] += 1
        counts["repaired"] += bool(r.kinds)
        counts.update(r.kinds)
    return {"answers": counts.pop("answers", 0), "repaired": counts.pop("repaired", 0), **dict(sorted(counts.items()))}
