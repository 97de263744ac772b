"""Query analysis: what a question is about (its sentences, the {A/B} options and what differs between them, the
instruction's topical words, the punctuation marks by name), the retrieval query built from it, search morphemes, and
the tagged focus features the learned retriever's classifier reads."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .data import Item
from .text import search_morphemes

SPACING_HINT = "띄어쓰기: 띄어 쓴다 붙여 쓴다"

_OPTIONS = re.compile(r"\{([^{}]*/[^{}]*)\}")
_QUOTED = re.compile(r"[\"“”]([^\"“”]+)[\"“”]")
_DASH_LINE = re.compile(r"^\s*[―ㅡ—–-]\s*(.+)$")
_BOILERPLATE = [
    r"다음\s*(?:문장|표현)?\s*(?:에서|이|중)?",
    r"어문\s*규범에\s*(?:부합하지\s*않(?:는|은)|부합하는|부합하도록|맞지\s*않는|맞는)?",
    r"부분을\s*찾아\s*고치고",
    r",?\s*그\s*이유를\s*설명하(?:세요|시오)\.?",
    r"(?:가운데|중에서|중에|중)\s*(?:올바른|옳은)\s*것(?:을|은)\s*(?:선택하고)?\??",
    r"것을\s*선택하고",
    r"것은\?",
    r"올바르게\s*고치려면\s*어떻게\s*해야\s*하는가\??",
    r"(?:을|를)?\s*(?:고치시오|나타내시오|추가하시오)[.,]?",
    r"하고,?|,",
]
_BOILER = re.compile("|".join(f"(?:{p})" for p in _BOILERPLATE))
# punctuation marks named as the rule document names them, so that a question about a mark finds its rule
MARK_NAMES = {
    "?": "물음표",
    "!": "느낌표",
    "~": "물결표",
    "～": "물결표",
    "·": "가운뎃점",
    "ㆍ": "가운뎃점",
    "…": "줄임표",
    "...": "줄임표",
    "[": "대괄호",
    "]": "대괄호",
    "(": "소괄호",
    ")": "소괄호",
    "{": "중괄호",
    "}": "중괄호",
    "「": "홑낫표",
    "」": "홑낫표",
    "『": "겹낫표",
    "』": "겹낫표",
    "〈": "홑화살괄호",
    "〉": "홑화살괄호",
    "《": "겹화살괄호",
    "》": "겹화살괄호",
    "≪": "겹화살괄호",
    "≫": "겹화살괄호",
    "'": "작은따옴표",
    "‘": "작은따옴표",
    "’": "작은따옴표",
    "/": "빗금",
    ":": "쌍점",
    ",": "쉼표",
    ".": "마침표",
    "―": "줄표",
    "-": "붙임표",
    '"': "큰따옴표",
    "“": "큰따옴표",
    "”": "큰따옴표",
}


@dataclass(frozen=True)
class QueryParts:
    """What a question is about: its sentences, the {A/B} options, what differs between them, the topical words
    of the instruction (e.g. '문장 부호를 추가'), and the punctuation marks it contains, by name."""

    sentences: list[str]
    options: list[list[str]]
    differences: list[str]
    instruction: str
    marks: list[str]


def _differences(options: Sequence[str]) -> list[str]:
    """The substrings in which the options differ (e.g. '불을'/'불' -> ['을'])."""
    out: list[str] = []
    for a, b in zip(options, options[1:], strict=False):
        sm = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag != "equal":
                out += [s.strip() for s in (a[i1:i2], b[j1:j2]) if s.strip()]
    return list(dict.fromkeys(out))


def query_parts(item: Item) -> QueryParts:
    """Split a question into what it is about and the boilerplate instruction (dropped)."""
    q = item.question.strip()
    sentences: list[str] = []
    rest = q
    for m in _QUOTED.finditer(q):
        sentences.append(m.group(1).strip())
    rest = _QUOTED.sub(" ", rest)
    kept = []
    for line in rest.splitlines():
        m = _DASH_LINE.match(line)
        if m:
            sentences.append(m.group(1).strip())
        else:
            kept.append(line)
    rest = " ".join(kept)
    if not sentences:  # no quotes and no dash lines: the whole question is the content
        sentences, rest = [q], ""
    options = [[o.strip() for o in m.group(1).split("/")] for s in sentences for m in _OPTIONS.finditer(s)]
    differences = [d for opts in options for d in _differences(opts)]
    instruction = re.sub(r"\s+", " ", _BOILER.sub(" ", rest)).strip(" .,?")
    if len(sentences) > 1 and not options:  # '다음 중 … 선택' lists variants: their differences are the point
        differences += _differences(sentences)
    if any(opts and len({o.replace(" ", "") for o in opts}) == 1 for opts in options):
        differences.append(SPACING_HINT)  # the options differ only in spacing
    # marks inside the sentences (a sentence's own final mark says nothing) and in the differences
    inner = " ".join(re.sub(r"[.?!。]+[\"'”’)]*\s*$", "", _OPTIONS.sub(" ", s)) for s in sentences)
    marks = [name for mark, name in MARK_NAMES.items() if mark in inner or any(mark in d for d in differences)]
    if instruction and len(instruction) <= 2:  # a stray particle left by the boilerplate
        instruction = ""
    return QueryParts(sentences, options, differences, instruction, list(dict.fromkeys(marks)))


def build_query(item: Item) -> str:
    """The retrieval query of an item: its sentence(s) with every option spelled out, the options and their
    differences again (they are what the question is about), the instruction's topical words and the names of
    the punctuation marks involved; not the boilerplate instruction."""
    p = query_parts(item)
    sentences = [_OPTIONS.sub(lambda m: " ".join(m.group(1).split("/")), s) for s in p.sentences]
    parts = sentences + [" ".join(o) for o in p.options] + p.differences + [p.instruction] + p.marks
    return "\n".join(s for s in parts if s)


def morphemes(text: str) -> list[str]:
    """Mecab morphemes of a text, punctuation dropped, Latin lower-cased (``text.search_morphemes``, memoised)."""
    return search_morphemes(text)


# --------------------------------------------------------------------------------------------------- focus features


def jamo(text: str) -> str:
    """Hangul syllables decomposed into their conjoining jamo (others kept): '까스' -> '까스'."""
    out = []
    for ch in text:
        c = ord(ch) - 0xAC00
        if 0 <= c < 11172:
            out += [chr(0x1100 + c // 588), chr(0x1161 + (c % 588) // 28)] + ([chr(0x11A7 + c % 28)] if c % 28 else [])
        else:
            out.append(ch)
    return "".join(out)


def focus_tokens(item: Item) -> str:
    """What the question is about, as tagged tokens: each difference between the options (also as jamo), each
    option, the punctuation marks by name, the instruction's words and the question type."""
    p = query_parts(item)
    toks: list[str] = []
    for d in p.differences:
        toks += ["D_" + d, "J_" + jamo(d)]
    for opts in p.options:
        toks += ["O_" + o for o in opts]
    toks += ["M_" + m for m in p.marks]
    toks += ["I_" + w for w in p.instruction.split()]
    toks.append("T_" + item.question_type)
    return " ".join(t.replace(" ", "_") for t in toks)


def focus_chars(item: Item) -> str:
    """The differences and options (else the sentences), for character n-grams."""
    p = query_parts(item)
    return " | ".join(p.differences + [" ".join(o) for o in p.options]) or " ".join(p.sentences)


def query_morphemes(item: Item) -> str:
    """The Mecab morphemes of ``build_query``, space-separated."""
    return " ".join(morphemes(build_query(item)))
