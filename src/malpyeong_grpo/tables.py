"""The project's one Markdown table writer (evaluate's report, the retrieval report)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], cell: Callable[[Any], str] = str) -> list[str]:
    """A GitHub Markdown table as lines: the header, the ``---`` rule, one line per row (``cell`` renders a value)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
