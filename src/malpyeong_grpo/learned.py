"""The learned retriever: a question -> rule classifier trained on labelled items, cross-fitted so that no labelled
item is ranked by a model that saw its own label, fused by weighted reciprocal rank with BM25."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .data import Item
from .files import DataError
from .query import build_query, focus_chars, focus_tokens, query_morphemes
from .retrievers import BM25Retriever, Passage, Retriever, rule_passages, top_docs
from .rules import Rule

# learned: logistic regression's inverse regularisation, cross-fitting folds, and the rank fusion (rank counted
# from 0): weight / (LEARNED_RRF_K + rank) for the classifier, BM25 over rules + examples, BM25 over rules only.
# Chosen on a 125-item hold-out of the training split (docs/rag.md), never on dev.
LEARNED_C = 30.0
LEARNED_FOLDS = 5
LEARNED_RRF_K = 10
LEARNED_WEIGHTS = (2.0, 1.0, 0.5)


class QuestionClassifier:
    """A question -> rule classifier: TF-IDF (sublinear tf) of three views of the question (``focus_tokens``
    split on spaces; character 1-3-grams, within word bounds, of ``focus_chars``; the Mecab morphemes of
    ``build_query``), stacked, and a multinomial logistic regression (lbfgs, ``c``). Deterministic."""

    VIEWS: tuple[Callable[[Item], str], ...] = (focus_tokens, focus_chars, query_morphemes)

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
            lists = [c_rank, [d for d, _ in top_docs(a, len(a))], [d for d, _ in top_docs(r, len(r))]]
            fused: dict[str, float] = {}
            for w, ranking in zip(self.weights, lists, strict=True):
                for rank, doc in enumerate(ranking):
                    fused[doc] = fused.get(doc, 0.0) + w / (self.rrf_k + rank)
            out.append(fused)
        return out
