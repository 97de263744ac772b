"""The file layer: atomic writes that keep the old file on failure, JSONL caches that survive a torn append.

(One-line errors for every kind of bad input file are exercised by test_bad_files.py.)"""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo.files import DataError, append_jsonl, atomic_write_text, read_jsonl, write_json


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "scores.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})  # not serialisable: fails before anything is written
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "bad \ud800")  # fails while writing the temporary file
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temporary file left behind


def test_jsonl_cache_append_and_torn_tail(tmp_path):
    path = tmp_path / "cache.jsonl"
    assert read_jsonl(path) == []
    rows = [{"id": "1", "answer": "가나다"}, {"id": "2", "answer": "라마바"}]
    for row in rows:
        append_jsonl(path, row)
    assert read_jsonl(path) == rows
    full = path.read_bytes()
    path.write_bytes(full[:-4])  # killed in the middle of a multi-byte character of the last line
    assert read_jsonl(path) == rows[:1]
    assert path.read_bytes() == full[: full.index(b"\n") + 1]  # the torn tail is cut off
    append_jsonl(path, rows[1])
    assert read_jsonl(path) == rows
    path.write_bytes(full + b"not json\n")
    with pytest.raises(DataError, match="line 3: not JSON"):
        read_jsonl(path)
