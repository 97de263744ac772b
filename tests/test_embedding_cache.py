"""The learned metrics' embedding cache: the bounded LRU, scoped torch threads, surrogate-free texts, and batches
grouped by token length."""

from __future__ import annotations

from types import SimpleNamespace

from malpyeong_grpo.embedding_cache import LRU, TokenEncoder, encodable, torch_threads


def test_threads_option_is_scoped():
    import torch

    before = torch.get_num_threads()
    seen = []
    with torch_threads(1):
        seen.append(torch.get_num_threads())
    assert seen == [1] and torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_lru_drops_the_least_recently_used():
    cache = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get_or_none("a") == 1  # 'a' is now the most recent
    cache.put("c", 3)
    assert list(cache) == ["a", "c"] and cache.get_or_none("b") is None


def test_lone_surrogates_become_replacement_characters():
    assert encodable("이유\ud800입니다\udfff") == "이유\ufffd입니다\ufffd" and encodable("가나") == "가나"


def test_batches_group_texts_of_similar_length():
    enc = TokenEncoder(None, SimpleNamespace(sep_token_id=3, cls_token_id=2), "cpu", batch_size=2)
    assert enc.idf[3] == 0 and enc.idf[2] == 0 and enc.idf[7] == 1.0
    texts = ["a", "ccc", "dddddddddd", "eeeeeeeeee"]
    batches = enc._batches(texts, [len(t) for t in texts])
    assert batches == [["dddddddddd", "eeeeeeeeee"], ["ccc"], ["a"]]  # longest first, at most 2, padding <= 25%
