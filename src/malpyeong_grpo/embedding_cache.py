"""Cached, batched token embeddings for the learned metrics: bert-score's per-sentence (token embeddings, idf
weights) of one encoder, each text encoded once (references kept for the process, candidates in a bounded cache),
batches grouped by token length, and the torch thread count set per call."""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

PRED_CACHE = 8192  # candidate-side entries kept per cache (gold sides are kept for the process)
_SURROGATE = re.compile("[\ud800-\udfff]")


class LRU(OrderedDict):
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
def torch_threads(n: int | None) -> Iterator[None]:
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


def encodable(text: str) -> str:
    """``text`` with lone surrogates (not encodable, tokenizers refuse them) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


class TokenEncoder:
    """bert-score's per-sentence (token embeddings, idf weights) of one model, encoding only texts not seen yet:
    reference texts are kept for the process, candidate texts in a bounded cache."""

    def __init__(self, model: Any, tokenizer: Any, device: str, batch_size: int, threads: int | None = None):
        self.model, self.tokenizer, self.device, self.batch_size = model, tokenizer, device, batch_size
        self.threads = threads
        self.idf: dict[int, float] = defaultdict(lambda: 1.0)  # no idf: every token weighs 1, [CLS]/[SEP] 0
        self.idf[tokenizer.sep_token_id] = 0
        self.idf[tokenizer.cls_token_id] = 0
        self.refs: dict[str, tuple[Any, Any]] = {}
        self.preds = LRU(PRED_CACHE)

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

            clean = {encodable(t): t for t in todo}  # the text the tokenizer sees -> the caller's text
            texts_in = list(clean)
            for batch in self._batches(texts_in, [len(sent_encode(self.tokenizer, t)) for t in texts_in]):
                with torch_threads(self.threads):
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
