"""Retrieval on small hand-made corpora with known answers, queries, contexts and the retrieve command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from malpyeong_grpo.cli import main
from malpyeong_grpo.data import DataError, Item, write_items
from malpyeong_grpo.retrieval import (
    SPACING_HINT,
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Passage,
    build_contexts,
    build_query,
    example_passages,
    make_retriever,
    query_parts,
    retrieve,
)
from malpyeong_grpo.rules import Rule, write_rules


def _rule(rid: str, text: str, category: str = "테스트") -> Rule:
    lines = text.splitlines()
    return Rule(rid, category, "규정", rid, lines[0], text, [x[2:] for x in lines if x.startswith("- ")], [])


RULES = [
    _rule("R조사", "조사는 그 앞말에 붙여 쓴다.\n- 꽃이, 꽃마저, 꽃밖에"),
    _rule("R의존", "의존 명사는 띄어 쓴다.\n- 아는 것이 힘이다, 먹을 만큼 먹어라"),
    _rule("R물결", "기간이나 거리 또는 범위를 나타낼 때 물결표를 쓴다.\n- 9월 15일~9월 25일"),
    _rule("R외래", "파열음 표기에는 된소리를 쓰지 않는 것을 원칙으로 한다.\n- 가스, 버스"),
]


def _item(i: str, q: str, qtype: str = "선택형", answer: str | None = None) -> Item:
    return Item(i, qtype, q, answer)


def test_query_keeps_content_and_drops_boilerplate():
    it = _item("1", '"우동이 {불을/불} 것 같아 걱정이다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.')
    p = query_parts(it)
    assert p.sentences == ["우동이 {불을/불} 것 같아 걱정이다."]
    assert p.options == [["불을", "불"]] and p.differences == ["을"]
    assert p.instruction == "" and p.marks == []  # the sentence's own final period says nothing
    q = build_query(it)
    assert "우동이 불을 불 것 같아 걱정이다." in q and "선택" not in q and "이유" not in q
    spacing = query_parts(_item("2", '"{외출 시에는/외출시에는} 에어컨을 꼭 끕시다." 가운데 올바른 것을 선택하고'))
    assert SPACING_HINT in spacing.differences
    dash = _item(
        "3",
        "다음 문장이 어문 규범에 부합하도록 문장 부호를 추가하고, 그 이유를 설명하세요."
        "\n― 저장할까요? 또는 취소할까요?",
        "교정형",
    )
    p = query_parts(dash)
    assert p.sentences == ["저장할까요? 또는 취소할까요?"]
    assert p.instruction == "문장 부호를 추가" and p.marks == ["물음표"]


def test_bm25_finds_known_rules():
    r = BM25Retriever([Passage(x.id, x.text) for x in RULES])
    hits = r.search(["의존 명사 만큼 띄어 쓴다", "물결표 기간 범위", "꽃마저 조사"], k=2)
    assert [h[0][0] for h in hits] == ["R의존", "R물결", "R조사"]
    assert all(len(h) == 2 and h[0][1] >= h[1][1] for h in hits)


def test_documents_score_their_best_passage_and_exclude_own_examples():
    ps = [
        Passage("A", "사과 배 포도"),
        Passage("A", "기차 버스"),
        Passage("B", "사과 사과 사과"),
        Passage("C", "버스 기차", "item1"),
    ]
    r = BM25Retriever(ps)
    top = dict(r.search(["버스 기차"], k=3)[0])
    assert top["A"] == pytest.approx(top["C"]) and top["A"] > 0 and top["B"] == 0
    assert [d for d, _ in r.search(["버스 기차"], k=3, exclude=["item1"])[0]] == ["A", "B"]


def _bag_embed(texts, kind):
    """A deterministic stand-in encoder for the ranking logic: character bags over a fixed alphabet."""
    alphabet = sorted(set("".join(x.text for x in RULES)) | set("만큼띄어물결표기간된소리가스"))
    return np.array([[t.count(c) for c in alphabet] for t in texts], dtype=np.float32)


def test_dense_and_hybrid_rank_by_similarity():
    passages = [Passage(x.id, x.text) for x in RULES]
    dense = DenseRetriever(passages, _bag_embed)
    assert dense.search(["된소리 가스 버스"], k=1)[0][0][0] == "R외래"
    hybrid = HybridRetriever([BM25Retriever(passages), dense])
    hits = hybrid.search(["의존 명사 만큼 띄어 쓴다"], k=4)[0]
    assert hits[0][0] == "R의존" and hits[0][1] == pytest.approx(2 / 61)  # first for both: 1/61 + 1/61
    assert len(hits) == 4


def test_examples_make_similar_questions_find_their_rule():
    train = [_item("t1", '"외출 전에 {까스/가스} 밸브를 잠그자." 가운데 올바른 것을 선택하고', answer="x")]
    exs = example_passages(train, {"t1": "R외래"})
    assert exs == [Passage("R외래", build_query(train[0]), "t1", "query")]
    query = _item("d1", '"{까스/가스} 요금이 올랐다." 가운데 올바른 것을 선택하고')
    r = make_retriever("bm25", RULES, exs)
    assert r.search([build_query(query)], 1)[0][0][0] == "R외래"
    rows = retrieve(train, RULES, "bm25", 4, exs)  # an item never finds itself
    assert rows[0]["id"] == "t1" and len(rows[0]["rule_ids"]) <= 4


def test_unknown_method():
    with pytest.raises(DataError, match="unknown retrieval method"):
        make_retriever("tfidf", RULES)


def test_build_contexts_inserts_gold_at_seeded_position(tmp_path):
    rules_path = tmp_path / "rules.jsonl"
    write_rules(RULES, rules_path)
    items = [_item(f"i{n}", f'"꽃마저 {n}" 가운데 올바른 것을 선택하고', answer="x") for n in range(12)]
    retrieved = tmp_path / "ret.jsonl"
    retrieved.write_text(
        "".join(
            json.dumps({"id": it.id, "rule_ids": ["R조사", "R의존", "R물결"], "scores": []}) + "\n" for it in items
        ),
        encoding="utf-8",
    )
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(json.dumps({"id": it.id, "rule_id": "R외래"}) + "\n" for it in items[:-1])
        + json.dumps({"id": items[-1].id, "rule_id": "R의존"})
        + "\n",
        encoding="utf-8",
    )
    ctx = build_contexts(items, rules_path, retrieved, labels, k=3, seed=0)
    positions = set()
    for it in items[:-1]:
        c = ctx[it.id]
        assert len(c.rule_ids) == 3 and "R외래" in c.rule_ids and c.gold_rule_id == "R외래"
        assert c.texts[c.rule_ids.index("R외래")] == c.gold_rule_text
        assert c.gold_rule_text.startswith("R외래: 파열음 표기에는")
        positions.add(c.rule_ids.index("R외래"))
    assert len(positions) > 1  # the gold's place varies across items
    last = ctx[items[-1].id].rule_ids  # retrieved already: the same three, shuffled
    assert sorted(last) == sorted(["R조사", "R의존", "R물결"])
    again = build_contexts(items, rules_path, retrieved, labels, k=3, seed=0)
    assert {i: c.rule_ids for i, c in again.items()} == {i: c.rule_ids for i, c in ctx.items()}
    plain = build_contexts(items, rules_path, retrieved, labels, k=2, include_gold=False)
    assert plain[items[0].id].rule_ids == ["R조사", "R의존"] and plain[items[0].id].gold_rule_id == "R외래"
    on_the_fly = build_contexts(items[:2], rules_path, k=2)
    assert on_the_fly[items[0].id].rule_ids[0] == "R조사" and on_the_fly[items[0].id].gold_rule_id is None
    with pytest.raises(DataError, match="no retrieval for item ids zz"):
        build_contexts([_item("zz", "꽃")], rules_path, retrieved)


def test_retrieve_command(tmp_path, capsys):
    rules_path = tmp_path / "rules.jsonl"
    write_rules(RULES, rules_path)
    data = tmp_path / "d.json"
    write_items(data, [_item("a", '"9월 15일{~/-}9월 25일" 가운데 올바른 것을 선택하고')])
    out = tmp_path / "out.jsonl"
    argv = ["retrieve", "--rules", str(rules_path), "--data", str(data), "--method", "bm25", "--k", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["id"] == "a" and row["rule_ids"][0] == "R물결" and len(row["scores"]) == 2
    assert main([*argv[:-2], "--k", "0", "--out", str(out)]) == 2
    assert main([*argv, "--out", str(out), "--examples", str(data)]) == 2
    err = capsys.readouterr().err
    assert "error: --k must be at least 1" in err and "go together" in err


def test_dense_embeds_each_passage_kind_as_such():
    calls = []

    def embed(texts, kind):
        calls.append((kind, list(texts)))
        return _bag_embed(texts, kind)

    ps = [
        Passage("R외래", RULES[3].text),
        Passage("R외래", "까스 가스", "t1", "query"),
        Passage("R물결", RULES[2].text),
    ]
    r = DenseRetriever(ps, embed)
    assert calls == [("passage", [RULES[3].text, RULES[2].text]), ("query", ["까스 가스"])]
    assert r.matrix.shape[0] == 3 and r.search(["까스 가스"], 1)[0][0][0] == "R외래"
