"""The official answer form: parsing exactly as the competition scorer does, and writing answers in that form."""

from __future__ import annotations

import re
from dataclasses import dataclass

PATTERNS = ("가 옳다", "이 옳다")  # tried in this order: the first occurrence of the first that occurs
_QUOTES = str.maketrans("", "", "\"'")  # the official normalisation deletes ASCII " and '
REASON_LSTRIP = "., "  # the official reason: rest.strip().lstrip("., ")
_QUOTE_CHARS = "\"'“”‘’"
_QUOTED = re.compile(r'^\s*["“”\'‘’]?(.*?)["“”\'‘’]?\s*[이가] 옳다$', re.S)
_SENTENCE_END = re.compile(r"[.?!][\"'”’)]*\s+(?=[가-힣A-Za-z])")


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer split as the official scorer (``extract_answer_and_reason``) splits it."""

    answer_part: str  # raw text up to and including the pattern (the whole text when no pattern occurs)
    reason: str  # the rest, ``.strip()``ped and then ``.lstrip("., ")``ped ("" when no pattern occurs)
    pattern: str | None  # "가 옳다", "이 옳다" or None

    @property
    def normalized(self) -> str:
        """The answer part as EM compares it: ASCII quotes deleted, stripped (``normalize_answer_text``)."""
        return normalize_answer(self.answer_part)

    @property
    def sentence(self) -> str:
        """The corrected sentence: the answer part without the pattern and the surrounding quotes."""
        m = _QUOTED.match(self.answer_part) if self.pattern else None
        return (m.group(1) if m else self.answer_part).strip()


def parse_answer(text: str) -> ParsedAnswer:
    """Split at the first '가 옳다', else the first '이 옳다', as the official scorer does: the reason is the rest,
    stripped, then with leading '.', ',' and spaces removed (a newline or tab after those stays, as officially)."""
    text = text if isinstance(text, str) else ""
    for pat in PATTERNS:
        i = text.find(pat)
        if i >= 0:
            end = i + len(pat)
            return ParsedAnswer(text[:end], text[end:].strip().lstrip(REASON_LSTRIP), pat)
    return ParsedAnswer(text, "", None)


def normalize_answer(part: str) -> str:
    """Delete ASCII double and single quotes, then strip (the official ``normalize_answer_text``)."""
    return part.translate(_QUOTES).strip()


def gold_alternatives(gold: str) -> list[str]:
    """The accepted answers of a gold, as the official ``calc_exact_match`` sees them: the gold's normalised answer
    part split on '#', each piece stripped. '"A#B"가 옳다' gives ['A', 'B가 옳다'] (only the last piece keeps the
    pattern); '"A"가 옳다#"B"가 옳다' gives ['A가 옳다'] (the split comes first: '#"B"…' is the reason). Odd, but
    parity with the official scorer is the point (docs/scoring.md)."""
    return [alt.strip() for alt in parse_answer(gold).normalized.split("#")]


def exact_match(pred: str, gold: str) -> float:
    """1.0 when the prediction's normalised answer part equals one of the gold alternatives, else 0.0 (the
    prediction itself is never split on '#')."""
    return float(parse_answer(pred).normalized in gold_alternatives(gold))


def has_final_consonant(syllable: str) -> bool:
    """Whether a precomposed Hangul syllable has a final consonant (받침)."""
    code = ord(syllable) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def particle(sentence: str) -> str:
    """The particle before '옳다' as the gold data chooses it.

    '이' when the sentence ends in punctuation after a Hangul syllable with a final consonant (받침),
    else '가'. On the training split this rule agrees with 612 of 622 golds: the gold writes '가' after
    most sentences, even after a bare syllable with 받침 (9 of 12), but '이' after '<받침>.' (8 of 14).
    """
    s = sentence.rstrip()
    if not s or "가" <= s[-1] <= "힣":
        return "가"
    for ch in reversed(s):
        if "가" <= ch <= "힣":
            return "이" if has_final_consonant(ch) else "가"
    return "가"


def format_answer(sentence: str, reason: str) -> str:
    """Write an answer in the official form: '"<sentence>"가 옳다. <reason>'."""
    sentence = sentence.strip()
    if len(sentence) >= 2 and sentence[0] in _QUOTE_CHARS and sentence[-1] in _QUOTE_CHARS:
        sentence = sentence[1:-1].strip()  # one surrounding pair only: '"A"라고 말했다.' keeps its opening quote
    head = f'"{sentence}"{particle(sentence)} 옳다.'
    reason = reason.strip()
    return f"{head} {reason}" if reason else head


def sentence_count(text: str) -> int:
    """Sentences in a one-line text: 1 + the sentence ends followed by more text (0 for an empty text)."""
    s = text.strip()
    return 1 + len(_SENTENCE_END.findall(s)) if s else 0


def is_one_sentence(sentence: str, allowed: int = 1) -> bool:
    """True when the text holds a single sentence (at most ``allowed`` ones): non-empty, one line, no sentence
    end followed by more text. A gold answer may quote more ('네. 또 다른 질문 있으신가요?'): pass its count."""
    s = sentence.strip()
    return bool(s) and "\n" not in s and sentence_count(s) <= max(1, allowed)
