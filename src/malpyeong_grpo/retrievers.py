"""Retrievers over rule passages: each rule is indexed as several short passages (its segments and its whole text)
and scores the best of its passages; labelled training items can be added as passages of their gold rule
(``examples``), which turns retrieval into nearest-neighbour search over solved questions as well. BM25 (bm25s) runs
over Mecab morphemes, dense retrieval over ``e5.embed`` vectors, hybrid fuses both by reciprocal rank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Item
from .query import build_query, morphemes
from .rules import Rule, rule_segments

RRF_K = 60


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
    """Each rule as several passages: its id and title, its segments (``rules.rule_segments``: each statement line,
    each statement with its example lines) and the whole text."""
    out: list[Passage] = []
    for r in rules:
        texts = [f"{r.id} {r.title}", *rule_segments(r), r.text]
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


def top_docs(scores: dict[str, float], k: int) -> list[tuple[str, float]]:
    """The k best (doc_id, score), best first (ties in doc-id order)."""
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
        return [top_docs(s, k) for s in self.scores(queries, exclude)]

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
    """The project's offline multilingual encoder (``malpyeong_grpo.e5.embed``)."""
    from .e5 import embed

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
                for rank, (doc, _) in enumerate(top_docs(sc, len(sc)), 1):
                    acc[doc] = acc.get(doc, 0.0) + 1.0 / (self.rrf_k + rank)
        return fused
