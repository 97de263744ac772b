"""The rule corpus parsed from the real reference document."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pytest

from malpyeong_grpo.cli import main
from malpyeong_grpo.files import DataError
from malpyeong_grpo.rules import Rule, format_rule, load_rules, parse_docx, rule_segments, write_rules


@pytest.fixture(scope="module")
def rules(data_dir) -> list[Rule]:
    return parse_docx(data_dir / "reference_rules.docx")


def test_all_entries_with_category_counts(rules):
    assert len(rules) == 115
    assert Counter(r.category for r in rules) == {
        "한글 맞춤법, 표준어 규정": 65,
        "외래어 표기법": 23,
        "문장 부호": 17,
        "띄어쓰기": 10,
    }
    assert len({r.id for r in rules}) == 115
    assert all(r.text and r.title and r.source for r in rules)


def test_exact_records(rules):
    by_id = {r.id: r for r in rules}
    r = by_id["한글 맞춤법 제43항"]
    assert (r.category, r.source, r.article) == ("띄어쓰기", "한글 맞춤법", "제43항")
    assert r.title == "단위를 나타내는 명사는 띄어 쓴다."
    assert r.examples[0].startswith("한 개, 차 한 대, 금 서 돈")
    assert r.clauses == ["다만, 순서를 나타내는 경우나 숫자와 어울려 쓰이는 경우에는 붙여 쓸 수 있다."]
    p = by_id["문장 부호 가운뎃점 규정"]
    assert (p.source, p.article, p.title) == ("문장 부호", "가운뎃점 규정", "가운뎃점")
    assert any(c.startswith("[붙임] 이때는 가운뎃점 대신 쉼표를") for c in p.clauses)
    assert p.clauses[-1] == "￭ 가운뎃점의 띄어쓰기: 가운뎃점은 앞말과 뒷말에 붙여 쓴다."
    f = by_id["외래어 표기법 제3장 제1절 제1항"]
    assert (f.category, f.source, f.article) == ("외래어 표기법", "외래어 표기법", "제3장 제1절 제1항")
    assert "gap[gæp] 갭, cat[kæt] 캣, book[buk] 북" in f.examples
    s = by_id["표준어 사정 원칙 제12항"]
    assert s.source == "표준어 사정 원칙" and [c[:4] for c in s.clauses] == ["다만 1", "다만 2"]
    # the document's doubled CSV quotes are read as one
    assert '그는 "지금 바로 떠나자."라고' in by_id["문장 부호 마침표 규정"].text


def test_write_load_roundtrip_and_cli(rules, data_dir, tmp_path, capsys):
    out = tmp_path / "rules.jsonl"
    write_rules(rules, out)
    assert load_rules(out) == rules
    assert main(["rules", "--docx", str(data_dir / "reference_rules.docx"), "--out", str(tmp_path / "r2.jsonl")]) == 0
    assert (tmp_path / "r2.jsonl").read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    assert "115 rules" in capsys.readouterr().out


def test_format_rule_cuts_examples_first(rules):
    r = next(r for r in rules if r.id == "표준어 사정 원칙 제17항")
    full = format_rule(r)
    assert full.startswith("표준어 사정 원칙 제17항: 비슷한 발음의") and "\n" not in full
    short = format_rule(r, max_chars=200)
    assert len(short) <= 200 and short.endswith("…") and "거든-그리다" not in short
    assert len(format_rule(r, max_chars=20)) <= 20


def test_rule_segments_join_each_statement_with_its_examples():
    text = "조사는 붙여 쓴다.\n- 꽃이\n- 꽃마저\n다만, 예외가 있다.\n조사는 붙여 쓴다."
    r = Rule("R", "테스트", "규정", "제1항", "조사", text, ["꽃이", "꽃마저"], ["다만, 예외가 있다."])
    # statement lines first (the repeated one once), then each statement with its example lines
    assert rule_segments(r) == ["조사는 붙여 쓴다.", "다만, 예외가 있다.", "조사는 붙여 쓴다. 꽃이 꽃마저"]
    lead = Rule("L", "테스트", "규정", "제2항", "예", "- 앞선 예\n규정.", ["앞선 예"], [])
    assert rule_segments(lead) == ["규정.", "- 앞선 예"]  # an example line with no statement before it stands alone


def test_rule_segments_of_the_reference_document(rules):
    for r in rules:
        segs = rule_segments(r)
        assert segs and len(segs) == len(set(segs)) and set(r.statements) <= set(segs)
        assert all(ex in " ".join(segs) for ex in r.examples)


def test_damaged_and_foreign_docx(tmp_path, capsys):
    bad = tmp_path / "bad.docx"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="bad.docx: not a readable .docx"):
        parse_docx(bad)
    empty_zip = tmp_path / "empty.docx"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(DataError, match="empty.docx: not a readable .docx"):
        parse_docx(empty_zip)
    import docx

    doc = docx.Document()
    doc.add_paragraph("회의록: 규정과 무관한 문서")
    foreign = tmp_path / "foreign.docx"
    doc.save(str(foreign))
    with pytest.raises(DataError, match="foreign.docx: no rule entries"):
        parse_docx(foreign)
    assert main(["rules", "--docx", str(bad), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_load_rules_bad_file(tmp_path):
    p = tmp_path / "rules.jsonl"
    p.write_text('{"id": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_rules(p)
    assert any("line 1" in m and "missing" in m for m in e.value.problems)
    assert any("line 2: not JSON" in m for m in e.value.problems)
    with pytest.raises(DataError, match="file not found"):
        load_rules(tmp_path / "none.jsonl")
    row = {"id": "x", "category": "c", "source": "s", "article": "", "title": "t", "text": "t"}
    p.write_text(json.dumps({**row, "examples": [], "clauses": []}) * 1 + "\n", encoding="utf-8")
    assert load_rules(p)[0].id == "x"
