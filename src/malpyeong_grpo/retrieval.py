"""Rule retrieval: what a question is about -> the rules that govern it.

Each rule is indexed as several short passages (each statement line, each statement with its examples, the whole
rule) and scores the best of its passages; labelled training items can be added as passages of their gold rule
(``examples``), which turns retrieval into nearest-neighbour search over solved questions as well. BM25 (bm25s)
runs over Mecab morphemes, dense retrieval over ``encoders.embed`` vectors, hybrid fuses both by reciprocal rank.
``learned`` trains a question -> rule classifier on the labelled items and fuses its ranking with BM25's.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import (
    DataError,
    Item,
    check_outputs,
    load_items,
    lock_path,
    output_lock,
    read_jsonl_file,
    write_jsonl,
)
from .flags import DEFAULT_RETRIEVAL, flag
from .rules import Rule, load_labels, load_rules
from .text import search_morphemes

METHODS = ("bm25", "dense", "hybrid", "learned")
RRF_K = 60
# learned: logistic regression's inverse regularisation, cross-fitting folds, and the rank fusion (rank counted
# from 0): weight / (LEARNED_RRF_K + rank) for the classifier, BM25 over rules + examples, BM25 over rules only.
# Chosen on a 125-item hold-out of the training split (docs/rag.md), never on dev.
LEARNED_C = 30.0
LEARNED_FOLDS = 5
LEARNED_RRF_K = 10
LEARNED_WEIGHTS = (2.0, 1.0, 0.5)
SPACING_HINT = "띄어쓰기: 띄어 쓴다 붙여 쓴다"

# ---------------------------------------------------------------------------------------------------------- queries

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


# ------------------------------------------------------------------------------------------------------- tokenising


def morphemes(text: str) -> list[str]:
    """Mecab morphemes of a text, punctuation dropped, Latin lower-cased (``text.search_morphemes``, memoised)."""
    return search_morphemes(text)


# -------------------------------------------------------------------------------------------------------- passages


@dataclass(frozen=True)
class Passage:
    """A searchable text standing for a document (a rule); ``origin`` names the item it came from, if any;
    ``kind`` is how an encoder embeds it ('passage' for rule text, 'query' for questions: e5's symmetric use);
    ``item`` is the labelled item itself for example passages (the learned retriever trains on it)."""

    doc_id: str
    text: str
    origin: str | None = None
    kind: str = "passage"
    item: Item | None = field(default=None, compare=False, repr=False)


def rule_passages(rules: Sequence[Rule]) -> list[Passage]:
    """Each rule as several passages: its id and title, each statement line, each statement with its example
    lines, and the whole text."""
    out: list[Passage] = []
    for r in rules:
        units: list[str] = []
        for line in r.text.splitlines():
            if line.startswith("- ") and units:
                units[-1] += " " + line[2:]
            else:
                units.append(line)
        texts = [f"{r.id} {r.title}", *r.statements, *units, r.text]
        for t in dict.fromkeys(texts):
            out.append(Passage(r.id, f"{r.id}\n{t}"))
    return out


def example_passages(items: Sequence[Item], labels: dict[str, str]) -> list[Passage]:
    """Labelled (training) items as passages of their gold rule: their query, embedded as a query."""
    out: list[Passage] = []
    for it in items:
        rid = labels.get(it.id)
        if rid:
            out.append(Passage(rid, build_query(it), origin=it.id, kind="query", item=it))
    return out


# ------------------------------------------------------------------------------------------------------ retrievers


def _top(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _max_pool(passages: Sequence[Passage], scores: np.ndarray, exclude: str | None) -> dict[str, float]:
    best: dict[str, float] = {}
    for p, s in zip(passages, scores, strict=True):
        if exclude is not None and p.origin == exclude:
            continue
        if p.doc_id not in best or s > best[p.doc_id]:
            best[p.doc_id] = float(s)
    return best


class Retriever:
    """Scores documents for queries: ``search(queries, k)`` -> per query, the top k (doc_id, score), best first.
    ``exclude`` names, per query, an item whose own example passages must not count (leave-one-out)."""

    def scores(self, queries: Sequence[str], exclude: Sequence[str | None] | None = None) -> list[dict[str, float]]:
        raise NotImplementedError

    def search(
        self, queries: Sequence[str], k: int, exclude: Sequence[str | None] | None = None
    ) -> list[list[tuple[str, float]]]:
        return [_top(s, k) for s in self.scores(queries, exclude)]

    def score_items(self, items: Sequence[Item]) -> list[dict[str, float]]:
        """Scores for items (their ``build_query``), each leaving its own example passages out."""
        return self.scores([build_query(it) for it in items], [it.id for it in items])


class BM25Retriever(Retriever):
    """BM25 (bm25s) over passages; a document scores its best passage."""

    def __init__(self, passages: Sequence[Passage], tokenize: Callable[[str], list[str]] = morphemes):
        import bm25s

        if not passages:
            raise ValueError("no passages to index")
        self.passages = list(passages)
        self.tokenize = tokenize
        self.index = bm25s.BM25()
        self.index.index([tokenize(p.text) or [""] for p in self.passages], show_progress=False)

    def scores(self, queries: Sequence[str], exclude: Sequence[str | None] | None = None) -> list[dict[str, float]]:
        exclude = list(exclude) if exclude is not None else [None] * len(queries)
        out = []
        for q, ex in zip(queries, exclude, strict=True):
            toks = self.tokenize(q)
            s = self.index.get_scores(toks) if toks else np.zeros(len(self.passages))
            out.append(_max_pool(self.passages, s, ex))
        return out


def default_embed(texts: Sequence[str], kind: str) -> np.ndarray:
    """The project's offline multilingual encoder (``malpyeong_grpo.encoders.embed``)."""
    from .encoders import embed

    return np.asarray(embed(list(texts), kind=kind), dtype=np.float32)


class DenseRetriever(Retriever):
    """Cosine similarity of encoder vectors (queries as 'query', passages as 'passage'); best passage per document."""

    def __init__(self, passages: Sequence[Passage], embed: Callable[[Sequence[str], str], Any] = default_embed):
        if not passages:
            raise ValueError("no passages to index")
        self.passages = list(passages)
        self.embed = embed
        matrix = np.zeros((0, 0), dtype=np.float32)
        for kind in dict.fromkeys(p.kind for p in self.passages):
            rows = [i for i, p in enumerate(self.passages) if p.kind == kind]
            vecs = np.asarray(embed([self.passages[i].text for i in rows], kind), dtype=np.float32)
            if matrix.size == 0:
                matrix = np.zeros((len(self.passages), vecs.shape[1]), dtype=np.float32)
            matrix[rows] = vecs
        self.matrix = _normalise(matrix)

    def scores(self, queries: Sequence[str], exclude: Sequence[str | None] | None = None) -> list[dict[str, float]]:
        exclude = list(exclude) if exclude is not None else [None] * len(queries)
        if not queries:
            return []
        q = _normalise(np.asarray(self.embed(list(queries), "query"), dtype=np.float32))
        sims = q @ self.matrix.T
        return [_max_pool(self.passages, row, ex) for row, ex in zip(sims, exclude, strict=True)]


def _normalise(m: np.ndarray) -> np.ndarray:
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


class HybridRetriever(Retriever):
    """Reciprocal rank fusion: a document scores sum(1 / (rrf_k + rank)) over the fused retrievers."""

    def __init__(self, retrievers: Sequence[Retriever], rrf_k: int = RRF_K):
        self.retrievers = list(retrievers)
        self.rrf_k = rrf_k

    def scores(self, queries: Sequence[str], exclude: Sequence[str | None] | None = None) -> list[dict[str, float]]:
        fused: list[dict[str, float]] = [{} for _ in queries]
        for r in self.retrievers:
            for acc, sc in zip(fused, r.scores(queries, exclude), strict=True):
                for rank, (doc, _) in enumerate(_top(sc, len(sc)), 1):
                    acc[doc] = acc.get(doc, 0.0) + 1.0 / (self.rrf_k + rank)
        return fused


# --------------------------------------------------------------------------------------------- learned retriever


def _jamo(text: str) -> str:
    """Hangul syllables decomposed into their conjoining jamo (others kept): '까스' -> '까스'."""
    out = []
    for ch in text:
        c = ord(ch) - 0xAC00
        if 0 <= c < 11172:
            out += [chr(0x1100 + c // 588), chr(0x1161 + (c % 588) // 28)] + ([chr(0x11A7 + c % 28)] if c % 28 else [])
        else:
            out.append(ch)
    return "".join(out)


def _focus_tokens(item: Item) -> str:
    """What the question is about, as tagged tokens: each difference between the options (also as jamo), each
    option, the punctuation marks by name, the instruction's words and the question type."""
    p = query_parts(item)
    toks: list[str] = []
    for d in p.differences:
        toks += ["D_" + d, "J_" + _jamo(d)]
    for opts in p.options:
        toks += ["O_" + o for o in opts]
    toks += ["M_" + m for m in p.marks]
    toks += ["I_" + w for w in p.instruction.split()]
    toks.append("T_" + item.question_type)
    return " ".join(t.replace(" ", "_") for t in toks)


def _focus_chars(item: Item) -> str:
    """The differences and options (else the sentences), for character n-grams."""
    p = query_parts(item)
    return " | ".join(p.differences + [" ".join(o) for o in p.options]) or " ".join(p.sentences)


def _query_morphemes(item: Item) -> str:
    return " ".join(morphemes(build_query(item)))


class QuestionClassifier:
    """A question -> rule classifier: TF-IDF (sublinear tf) of three views of the question (``_focus_tokens``
    split on spaces; character 1-3-grams, within word bounds, of ``_focus_chars``; the Mecab morphemes of
    ``build_query``), stacked, and a multinomial logistic regression (lbfgs, ``c``). Deterministic."""

    VIEWS: tuple[Callable[[Item], str], ...] = (_focus_tokens, _focus_chars, _query_morphemes)

    def __init__(self, items: Sequence[Item], labels: Sequence[str], c: float = LEARNED_C):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.classes: list[str] = sorted(set(labels))
        self.model: Any = None
        if len(self.classes) < 2:  # nothing to learn: the one label seen (if any) ranks first for every item
            return
        self.vectorizers = [
            TfidfVectorizer(analyzer=str.split, token_pattern=None, sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True),
            TfidfVectorizer(analyzer=str.split, token_pattern=None, sublinear_tf=True),
        ]
        x = self._features(items, fit=True)
        self.model = LogisticRegression(C=c, max_iter=3000, random_state=0).fit(x, list(labels))
        self.classes = [str(cl) for cl in self.model.classes_]

    def _features(self, items: Sequence[Item], fit: bool = False) -> Any:
        from scipy.sparse import hstack

        mats = []
        for vec, view in zip(self.vectorizers, self.VIEWS, strict=True):
            texts = [view(it) for it in items]
            mats.append(vec.fit_transform(texts) if fit else vec.transform(texts))
        return hstack(mats).tocsr()

    def rank(self, items: Sequence[Item]) -> list[list[str]]:
        """Per item, the rules seen in training, most probable first (ties in rule-id order)."""
        if not items:
            return []
        if self.model is None:
            return [list(self.classes) for _ in items]
        probs = self.model.predict_proba(self._features(items))
        return [[self.classes[j] for j in np.argsort(-p, kind="stable")] for p in probs]


def _fold(item_id: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(f"fold:{item_id}".encode()).digest()[:8], "big") % folds


class LearnedRetriever(Retriever):
    """A supervised retriever: ``QuestionClassifier`` trained on the labelled items of the example passages,
    fused by weighted reciprocal rank with BM25 over rules + examples and BM25 over the rules alone: a rule scores
    sum(weight / (rrf_k + rank)), ranks counted from 0, ``weights`` in that order.

    Leave-one-out by cross-fitting: the labelled items are split into ``folds`` folds by a hash of their id; a query
    item that is one of them is scored by the classifier trained on the other folds (and BM25 leaves its example
    passage out), so no item is ranked by a model that saw its own label. Other items (dev, test) are scored by the
    classifier trained on all labelled items. Scores items, not query strings (the features need the question)."""

    def __init__(
        self,
        rules: Sequence[Rule],
        examples: Sequence[Passage],
        c: float = LEARNED_C,
        folds: int = LEARNED_FOLDS,
        weights: Sequence[float] = LEARNED_WEIGHTS,
        rrf_k: int = LEARNED_RRF_K,
    ):
        labelled = [(p.item, p.doc_id) for p in examples if p.item is not None]
        if not labelled:
            raise DataError(["method 'learned' needs labelled training examples (--examples and --example-labels)"])
        if folds < 2:
            raise ValueError("cross-fitting needs at least 2 folds")
        self.labelled = {it.id: (it, rid) for it, rid in labelled}
        self.c, self.folds, self.weights, self.rrf_k = c, folds, tuple(weights), rrf_k
        rule_ps = rule_passages(rules)
        self.bm25_all = BM25Retriever(rule_ps + list(examples))
        self.bm25_rules = BM25Retriever(rule_ps)
        self._models: dict[int | None, QuestionClassifier] = {}

    def _model(self, fold: int | None) -> QuestionClassifier:
        """The classifier trained on every labelled item (``fold`` None) or on all folds but ``fold``."""
        if fold not in self._models:
            train = [
                (it, rid) for i, (it, rid) in self.labelled.items() if fold is None or _fold(i, self.folds) != fold
            ]
            self._models[fold] = QuestionClassifier([it for it, _ in train], [rid for _, rid in train], self.c)
        return self._models[fold]

    def classifier_ranks(self, items: Sequence[Item]) -> list[list[str]]:
        """Per item, the classifier's ranking (cross-fitted for the labelled items themselves)."""
        groups: dict[int | None, list[int]] = {}
        for n, it in enumerate(items):
            groups.setdefault(_fold(it.id, self.folds) if it.id in self.labelled else None, []).append(n)
        out: list[list[str]] = [[] for _ in items]
        for fold, idx in sorted(groups.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            for n, ranking in zip(idx, self._model(fold).rank([items[n] for n in idx]), strict=True):
                out[n] = ranking
        return out

    def scores(self, queries: Sequence[str], exclude: Sequence[str | None] | None = None) -> list[dict[str, float]]:
        raise NotImplementedError("the learned retriever scores items (score_items, retrieve), not query strings")

    def score_items(self, items: Sequence[Item]) -> list[dict[str, float]]:
        clf = self.classifier_ranks(items)
        queries, ids = [build_query(it) for it in items], [it.id for it in items]
        bm_all = self.bm25_all.scores(queries, ids)
        bm_rules = self.bm25_rules.scores(queries)
        out = []
        for c_rank, a, r in zip(clf, bm_all, bm_rules, strict=True):
            lists = [c_rank, [d for d, _ in _top(a, len(a))], [d for d, _ in _top(r, len(r))]]
            fused: dict[str, float] = {}
            for w, ranking in zip(self.weights, lists, strict=True):
                for rank, doc in enumerate(ranking):
                    fused[doc] = fused.get(doc, 0.0) + w / (self.rrf_k + rank)
            out.append(fused)
        return out


def make_retriever(
    method: str,
    rules: Sequence[Rule],
    examples: Sequence[Passage] = (),
    embed: Callable[[Sequence[str], str], Any] | None = None,
) -> Retriever:
    """A retriever of ``method``: bm25 or dense over the rules' passages plus the example passages, hybrid,
    the reciprocal rank fusion of BM25 and dense, each over the rules and (when given) over the examples apart, or
    learned (``LearnedRetriever``: needs example passages made by ``example_passages``)."""
    embed = embed or default_embed
    rule_ps, example_ps = rule_passages(rules), list(examples)
    if method == "bm25":
        return BM25Retriever(rule_ps + example_ps)
    if method == "dense":
        return DenseRetriever(rule_ps + example_ps, embed)
    if method == "hybrid":
        parts: list[Retriever] = [BM25Retriever(rule_ps), DenseRetriever(rule_ps, embed)]
        if example_ps:
            parts += [BM25Retriever(example_ps), DenseRetriever(example_ps, embed)]
        return HybridRetriever(parts)
    if method == "learned":
        return LearnedRetriever(rules, example_ps)
    raise DataError([f"unknown retrieval method {method!r} (expected one of {', '.join(METHODS)})"])


def retrieve(
    items: Sequence[Item],
    rules: Sequence[Rule],
    method: str = "bm25",
    k: int = 10,
    examples: Sequence[Passage] = (),
    embed: Callable[[Sequence[str], str], Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per item: {'id', 'rule_ids', 'scores'}; an item never sees its own example passage (nor, with
    ``learned``, a classifier trained on its own label)."""
    retriever = make_retriever(method, rules, examples, embed)
    hits = [_top(s, k) for s in retriever.score_items(items)]
    return [
        {"id": it.id, "rule_ids": [d for d, _ in h], "scores": [round(s, 6) for _, s in h]}
        for it, h in zip(items, hits, strict=True)
    ]


def load_retrieved(path: str | Path) -> dict[str, list[str]]:
    """item id -> retrieved rule ids, from a retrieve output file, read strictly (the file is never changed)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for n, row in enumerate(read_jsonl_file(path), 1):
        ids = row.get("rule_ids") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(ids, list):
            raise DataError([f"{path}: row {n}: expected {{'id': str, 'rule_ids': [str, ...]}}"])
        if not all(isinstance(r, str) for r in ids):
            raise DataError([f"{path}: row {n} (id {row['id']!r}): 'rule_ids' must hold strings"])
        out[row["id"]] = list(ids)
    return out


# ------------------------------------------------------------------------------------------------------------ CLI


def retrieve_command(argv: list[str]) -> int:
    """``malpyeong-grpo retrieve``: the top-k rules for each item of a data file, one JSONL row per item."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo retrieve", description=retrieve_command.__doc__)
    ap.add_argument("--rules", required=True, help="rules.jsonl (from `malpyeong-grpo rules`) or the reference .docx")
    ap.add_argument("--data", required=True, help="items to retrieve for (official JSON or JSONL)")
    ap.add_argument(
        "--method", choices=METHODS, default=DEFAULT_RETRIEVAL, help=f"learned needs --examples ({DEFAULT_RETRIEVAL})"
    )
    ap.add_argument("--k", type=int, default=10, help="rules per item (default 10)")
    ap.add_argument("--examples", help="labelled items (the training split) added as passages of their gold rule")
    ap.add_argument(*flag("example_labels"), help="labels of --examples (from `malpyeong-grpo label`)")
    ap.add_argument("--out", required=True, help="output JSONL: {id, rule_ids, scores} per item")
    ap.add_argument(
        *flag("max_chars"), type=int, help="longest question accepted (default 4000): Mecab slows down fast"
    )
    args = ap.parse_args(argv)
    if args.k < 1:
        raise DataError([f"--k must be at least 1, got {args.k}"])
    if args.max_chars is not None and args.max_chars < 1:
        raise DataError([f"--max-chars must be at least 1, got {args.max_chars}"])
    if bool(args.examples) != bool(args.example_labels):
        raise DataError(["--examples and --example-labels go together"])
    if args.method == "learned" and not args.examples:
        raise DataError(["--method learned needs --examples and --example-labels (it learns from labelled items)"])
    inputs = [
        ("--rules", args.rules),
        ("--data", args.data),
        ("--examples", args.examples),
        ("--example-labels", args.example_labels),
    ]
    check_outputs(inputs, [("--out", args.out), ("its lock", lock_path(args.out))])
    with output_lock(args.out):
        rules = load_rules(args.rules)
        items = load_items(args.data, max_chars=args.max_chars)
        examples: list[Passage] = []
        if args.examples:
            labelled = load_items(args.examples, require_answer=True, max_chars=args.max_chars)
            examples = example_passages(labelled, load_labels(args.example_labels))
        rows = retrieve(items, rules, args.method, args.k, examples)
        write_jsonl(args.out, rows)
    print(f"{len(rows)} items, top {args.k} by {args.method} -> {args.out}", file=sys.stderr)
    return 0
