"""The data layer: the official files, one-line errors naming file/item/problem, splits, the sample set.

(The corpus of broken files is exercised by test_bad_files.py; atomic writes and JSONL caches by test_files.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from malpyeong_grpo.data import Item, default_data_dir, holdout_split, load_items, sample_items, split_path, write_items
from malpyeong_grpo.files import DataError


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def _row(i="1", qtype="교정형", question="다음 문장을 고치시오.", answer=None) -> dict:
    row = {"id": i, "input": {"question_type": qtype, "question": question}}
    if answer is not None:
        row["output"] = {"answer": answer}
    return row


def _problems(path: Path, **kw) -> list[str]:
    with pytest.raises(DataError) as err:
        load_items(path, **kw)
    for line in err.value.problems:
        assert line.startswith(f"{path}:") and "\n" not in line
    return err.value.problems


def test_official_splits(data_dir):
    sizes = {"train": 622, "dev": 127, "test": 498}
    for name, n in sizes.items():
        items = load_items(split_path(name, data_dir), require_answer=name != "test")
        assert len(items) == n and len({it.id for it in items}) == n
        assert {it.question_type for it in items} == {"선택형", "교정형"}
        assert all((it.answer is None) == (name == "test") for it in items)


def test_test_split_without_answers_is_an_error_per_item(data_dir):
    problems = _problems(split_path("test", data_dir), require_answer=True)
    assert len(problems) == 498 and all("missing key 'output.answer'" in p for p in problems)


def test_every_problem_of_every_item_is_reported(tmp_path):
    rows = [
        _row("a", qtype="서술형"),
        _row("b", question="   "),
        {"id": "c"},
        _row("a"),
        _row(7),
        {"id": "d", "input": {"question_type": "선택형", "question": 3}},
        _row("e", answer=None) | {"output": {"answer": ["x"]}},
        "not an object",
    ]
    problems = _problems(_write(tmp_path / "x.json", rows))
    expected = [
        "item 0 (id 'a'): unknown question_type '서술형'",
        "item 1 (id 'b'): empty question",
        "item 2 (id 'c'): missing key 'input'",
        "item 3 (id 'a'): duplicate id (first at item 0)",
        "item 4 (id 7): 'id' must be a non-empty string, got 7",
        "item 5 (id 'd'): 'input.question' must be a string, got int",
        "item 6 (id 'e'): 'output.answer' must be a string, got list",
        "item 7: expected an object, got str",
    ]
    assert len(problems) == len(expected)
    for line, want in zip(problems, expected, strict=True):
        assert line.startswith(f"{tmp_path / 'x.json'}: {want}")


def test_file_level_errors(tmp_path):
    assert _problems(tmp_path / "nope.json") == [f"{tmp_path / 'nope.json'}: file not found"]
    (tmp_path / "t.json").write_text('[{"id": "1",', encoding="utf-8")
    assert "not JSON" in _problems(tmp_path / "t.json")[0]
    assert "no items" in _problems(_write(tmp_path / "e.json", []))[0]
    assert "expected a JSON list of items, got dict" in _problems(_write(tmp_path / "d.json", {"id": "1"}))[0]
    (tmp_path / "k.json").write_bytes("[]".encode("cp949") + "가".encode("cp949"))
    assert "not UTF-8 text" in _problems(tmp_path / "k.json")[0]
    (tmp_path / "big.json").write_text('[{"id": ' + "7" * 5000 + "}]", encoding="utf-8")
    assert "not JSON" in _problems(tmp_path / "big.json")[0]


def test_lone_surrogates_are_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([_row("s1", question="문장 \ud800", answer="답 \udfff")]), encoding="utf-8")
    problems = _problems(path)
    assert any("'input.question' holds a lone surrogate" in p for p in problems)
    assert any("'output.answer' holds a lone surrogate" in p for p in problems)


def test_jsonl_files(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [_row("1", answer="답"), _row("2", question="줄 구분\u2028문자가 든 질문")]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    items = load_items(path)
    assert [it.id for it in items] == ["1", "2"] and items[1].question == "줄 구분\u2028문자가 든 질문"
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(rows[1])[:-3] + "\n", encoding="utf-8")
    (line,) = _problems(path)
    assert line.startswith(f"{path}: line 2: not JSON (")


def test_write_items_round_trip(tmp_path):
    items = [Item("1", "선택형", "질문 하나", "답 하나"), Item("2", "교정형", "질문 둘")]
    write_items(tmp_path / "out" / "items.json", items)
    assert load_items(tmp_path / "out" / "items.json") == items
    assert json.loads((tmp_path / "out" / "items.json").read_text(encoding="utf-8"))[1] == items[1].to_json()
    assert "output" not in items[1].to_json()


def test_holdout_split_is_stratified_and_deterministic(data_dir):
    items = load_items(split_path("train", data_dir), require_answer=True)
    train, val = holdout_split(items, 0.1, seed=3)
    assert holdout_split(items, 0.1, seed=3) == (train, val)
    assert holdout_split(items, 0.1, seed=4) != (train, val)
    assert {it.id for it in train} | {it.id for it in val} == {it.id for it in items}
    assert not {it.id for it in train} & {it.id for it in val}
    for qtype in ("선택형", "교정형"):
        n = sum(it.question_type == qtype for it in items)
        assert sum(it.question_type == qtype for it in val) == round(n * 0.1)
    order = [it.id for it in items]
    assert [it.id for it in val] == [i for i in order if i in {it.id for it in val}]  # original order kept


def test_default_data_dir(monkeypatch, tmp_path, data_dir):
    monkeypatch.setenv("MALPYEONG_DATA_DIR", str(data_dir))
    assert default_data_dir() == data_dir
    monkeypatch.setenv("MALPYEONG_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert default_data_dir() is None


def test_sample_items_cover_both_types_and_parse():
    from malpyeong_grpo.answer import parse_answer

    items = sample_items()
    assert {it.question_type for it in items} == {"선택형", "교정형"}
    assert all(it.answer and parse_answer(it.answer).reason for it in items)
