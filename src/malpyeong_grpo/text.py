"""Korean text processing shared by every stage: the one Mecab (python-mecab-ko + mecab-ko-dic) instance and
morpheme lists for search."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_PUNCT_TAGS = ("SF", "SP", "SS", "SE", "SO", "SC", "SY")


@lru_cache(maxsize=1)
def mecab() -> Any:
    """The process's Mecab tagger (loaded once)."""
    import mecab as _mecab

    return _mecab.MeCab()


@lru_cache(maxsize=65536)
def _search_morphemes(text: str) -> tuple[str, ...]:
    return tuple(form.lower() for form, tag in mecab().pos(text) if not tag.startswith(_PUNCT_TAGS))


def search_morphemes(text: str) -> list[str]:
    """Mecab morphemes of a text for search: punctuation dropped, Latin lower-cased (memoised)."""
    return list(_search_morphemes(text))
