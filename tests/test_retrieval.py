"""Retrieval on small hand-made corpora with known answers, queries, contexts and the retrieve command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from malpyeong_grpo.cli import main
from malpyeong_grpo.contexts import build_contexts
from malpyeong_grpo.data import Item, write_items
from malpyeong_grpo.files import DataError
from malpyeong_grpo.learned import LearnedRetriever
from malpyeong_grpo.query import SPACING_HINT, build_query, query_parts
from malpyeong_grpo.retrieval import make_retriever, retrieve
from malpyeong_grpo.retrievers import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Passage,
    example_passages,
    rule_passages,
)
from malpyeong_grpo.rules import Rule, rule_segments, write_rules


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


def test_rule_passages_are_the_rule_segments_plus_title_and_whole_text():
    rule = _rule("R", "첫째 규정.\n- 예1\n- 예2\n둘째 규정.")
    assert rule_segments(rule) == ["첫째 규정.", "둘째 규정.", "첫째 규정. 예1 예2"]
    texts = [p.text for p in rule_passages([rule])]
    assert texts == [f"R\n{t}" for t in ["R 첫째 규정.", *rule_segments(rule), rule.text]]
    assert {p.doc_id for p in rule_passages([rule])} == {"R"}


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


# rules whose text shares no word with the questions: only the labelled items tell which rule a question rests on
OPAQUE_RULES = [
    _rule("R가", "첫째 규정 문장이다."),
    _rule("R나", "둘째 규정 문장이다."),
    _rule("R다", "셋째 규정 문장이다."),
]
FILLER = ["사과", "포도", "딸기", "수박", "참외", "자두"]
TRAFFIC = "기차 버스 택시 비행기 자전거"


def _learned_train() -> tuple[list[Item], dict[str, str]]:
    """'{되어/돼}' questions rest on R가, '{않/안}' questions (all about trains and buses) on R나, and one
    '{쨔/쟈}' question alone on R다."""
    items, labels = [], {}
    for n, word in enumerate(FILLER):
        items.append(_item(f"a{n}", f'"{word} {{되어/돼}} {word}" 가운데 올바른 것을 선택하고', answer="x"))
        labels[f"a{n}"] = "R가"
        items.append(_item(f"b{n}", f'"{TRAFFIC} {word} {{않/안}}" 가운데 올바른 것을 선택하고', answer="x"))
        labels[f"b{n}"] = "R나"
    items.append(_item("u1", '"하늘 {쨔/쟈} 구름" 가운데 올바른 것을 선택하고', answer="x"))
    labels["u1"] = "R다"
    return items, labels


def test_learned_retriever_learns_what_bm25_cannot_find():
    train, labels = _learned_train()
    exs = example_passages(train, labels)
    # all about vehicles, like the R나 questions, but its options differ as in the R가 questions
    query = _item("d1", f'"{TRAFFIC} {{되어/돼}}" 가운데 올바른 것을 선택하고')
    assert set(make_retriever("bm25", OPAQUE_RULES).score_items([query])[0].values()) == {0.0}  # no rule matches
    learned = LearnedRetriever(OPAQUE_RULES, exs)
    assert learned.classifier_ranks([query])[0][0] == "R가"
    rows = retrieve([query], OPAQUE_RULES, "learned", 3, exs)
    assert rows[0]["rule_ids"][0] == "R가" and len(rows[0]["rule_ids"]) == 3
    assert rows[0]["scores"] == sorted(rows[0]["scores"], reverse=True)
    assert retrieve([query], OPAQUE_RULES, "learned", 3, exs) == rows  # deterministic


def test_learned_retriever_cross_fits_so_an_item_never_sees_its_own_label():
    train, labels = _learned_train()
    exs = example_passages(train, labels)
    twin = _item("d2", train[-1].question)  # the same question as u1, not a training item
    learned = LearnedRetriever(OPAQUE_RULES, exs)
    assert learned.score_items([twin])[0]  # scores every rule
    assert _top1(learned, twin) == "R다"  # learnable from u1 ...
    assert _top1(learned, train[-1]) != "R다"  # ... but u1 is ranked by a classifier that never saw it
    assert "R다" not in learned.classifier_ranks([train[-1]])[0]
    rows = {r["id"]: r["rule_ids"][0] for r in retrieve(train, OPAQUE_RULES, "learned", 3, exs)}
    assert rows["u1"] != "R다" and sum(rows[f"a{n}"] == "R가" for n in range(len(FILLER))) >= 5


def _top1(retriever, item):
    scores = retriever.score_items([item])[0]
    return max(sorted(scores), key=lambda d: scores[d])


def test_learned_retriever_needs_labelled_examples(tmp_path, capsys):
    with pytest.raises(DataError, match="needs labelled training examples"):
        make_retriever("learned", RULES)
    with pytest.raises(DataError, match="needs labelled training examples"):
        retrieve([_item("q", '"꽃마저" 가운데')], RULES, "learned", 2, [Passage("R조사", "꽃마저")])
    with pytest.raises(NotImplementedError):
        LearnedRetriever(OPAQUE_RULES, example_passages(*_learned_train())).scores(["꽃"])
    rules_path = tmp_path / "rules.jsonl"
    write_rules(RULES, rules_path)
    data = tmp_path / "d.json"
    write_items(data, [_item("a", '"9월 15일{~/-}9월 25일" 가운데 올바른 것을 선택하고')])
    argv = ["retrieve", "--rules", str(rules_path), "--data", str(data), "--method", "learned"]
    assert main([*argv, "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "error: --method learned needs --examples and --example-labels" in err and len(err.splitlines()) == 1


def test_build_contexts_learns_from_labelled_examples(tmp_path):
    """Training contexts with ``method='learned'``: the labelled examples teach which rule a question rests on;
    no labels, no learned retrieval."""
    rules_path = tmp_path / "rules.jsonl"
    write_rules(OPAQUE_RULES, rules_path)
    train, labels = _learned_train()
    labels_path = tmp_path / "l.jsonl"
    labels_path.write_text(
        "".join(json.dumps({"id": i, "rule_id": r}) + "\n" for i, r in labels.items()), encoding="utf-8"
    )
    query = _item("d1", f'"{TRAFFIC} {{되어/돼}}" 가운데 올바른 것을 선택하고')
    ctx = build_contexts(
        [query], rules_path, labels_path=labels_path, k=1, include_gold=False, method="learned", examples=train
    )
    assert ctx["d1"].rule_ids == ["R가"]
    bm25 = build_contexts([query], rules_path, labels_path=labels_path, k=3, include_gold=False, examples=train)
    assert len(bm25["d1"].rule_ids) == 3  # the examples serve BM25 too
    with pytest.raises(DataError, match="'learned' needs labelled training examples"):
        build_contexts([query], rules_path, k=1, method="learned", examples=train)


def test_learned_retrieve_command(tmp_path):
    rules_path = tmp_path / "rules.jsonl"
    write_rules(OPAQUE_RULES, rules_path)
    train, labels = _learned_train()
    train_path, dev_path, labels_path = tmp_path / "t.json", tmp_path / "d.json", tmp_path / "l.jsonl"
    write_items(train_path, train)
    write_items(dev_path, [_item("d1", f'"{TRAFFIC} {{되어/돼}}" 가운데 올바른 것을 선택하고')])
    labels_path.write_text(
        "".join(json.dumps({"id": i, "rule_id": r}) + "\n" for i, r in labels.items()), encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    argv = ["retrieve", "--rules", str(rules_path), "--data", str(dev_path), "--method", "learned", "--k", "2"]
    argv += ["--examples", str(train_path), "--example-labels", str(labels_path), "--out", str(out)]
    assert main(argv) == 0
    row = json.loads(out.read_text(encoding="utf-8"))
    assert row["id"] == "d1" and row["rule_ids"][0] == "R가" and len(row["rule_ids"]) == 2


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
