"""Gold-context labels: lexical on the real data against hand labels, resumable PPL labelling with the tiny model."""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo import labels
from malpyeong_grpo.cli import main
from malpyeong_grpo.data import Item, load_items, split_path, write_items
from malpyeong_grpo.files import DataError
from malpyeong_grpo.labels import (
    HAND_LABEL_SETS,
    LexicalScorer,
    answer_nll,
    bracket_terms,
    hand_labels,
    lexical_labels,
    ppl_labels,
    quoted_terms,
)
from malpyeong_grpo.retrieval_report import retrieval_metrics
from malpyeong_grpo.rouge import morphs, rouge1_f, unigram_f
from malpyeong_grpo.rules import Rule, load_labels, parse_docx


def test_unigram_f():
    assert unigram_f(["a", "b"], ["a", "b"]) == 1.0
    assert unigram_f(["a", "a", "b"], ["a", "c"]) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert unigram_f([], ["a"]) == 0.0 and unigram_f(["a"], []) == 0.0 and unigram_f(["b"], ["a"]) == 0.0


def test_unigram_f_weighted():
    w = {"a": 2.0, "b": 1.0}
    assert unigram_f(["a", "b"], ["a", "c"], w, default=1.0) == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert unigram_f(["a"], ["a", "b"], w) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert unigram_f(["a", "z"], ["a"], w, default=0.5) == pytest.approx(2 * 0.8 * 1 / 1.8)  # 'z' weighs 0.5


def test_the_lexical_labeller_and_the_official_metric_share_one_rouge():
    """The labeller's weighted ROUGE-1 with every weight equal is the official ROUGE-1 on the official tokens."""
    pred, gold = "의존 명사는 띄어 쓴다.", "의존 명사 '것'은 앞말과 띄어 쓴다."
    ones = {t: 1.0 for t in morphs(pred) + morphs(gold)}
    assert unigram_f(morphs(pred), morphs(gold), ones) == rouge1_f(pred, gold) > 0


def test_lexical_labels_agree_with_hand_labels(data_dir):
    """Measured 2026-11-25, top-1 / top-3: 72/77 of the 80 hand labels of the tuning set (the ROUGE-only labeller
    before it: 54/64) and 80/83 of the 93 of the validation set (before: 56/67). The floors guard against
    regressions."""
    rules = parse_docx(data_dir / "reference_rules.docx")
    train = load_items(split_path("train", data_dir), require_answer=True)
    by_id = {it.id: it for it in train}
    got = {}
    for name in HAND_LABEL_SETS:
        hand = hand_labels(train, name)
        rows = lexical_labels([by_id[i] for i in hand], rules, top=3)
        gold = list(hand.values())
        top1 = sum(r["rule_id"] == g for r, g in zip(rows, gold, strict=True))
        top3 = sum(g in [rid for rid, _ in r["top"]] for r, g in zip(rows, gold, strict=True))
        got[name] = (top1, top3, len(hand))
    assert got["tuning"][2] == 80 and got["validation"][2] == 93, got
    assert got["tuning"][0] >= 70 and got["tuning"][1] >= 75, got
    assert got["validation"][0] >= 77 and got["validation"][1] >= 80, got
    assert {r.id for r in rules} >= set(hand_labels(train).values())


def test_hand_labels_need_the_labelled_question():
    """A label is used only for the item whose question it was made for (same id, other question: none)."""
    items = [Item("1", "선택형", "다른 질문", '"가"가 옳다.')]
    assert hand_labels(items) == {}
    with pytest.raises(ValueError, match="hand label set 'dev'"):
        hand_labels(items, "dev")


def test_lexical_scorer_quoted_and_bracketed_terms(monkeypatch):
    """A term quoted in the reason and a bracketed phonetic symbol move the label to the rule that contains them;
    on morpheme overlap alone rule A wins both."""
    rules = [
        Rule("A", "c", "s", "1", "t", "조사는 앞말에 붙여 쓴다.\n외래어의 모음은 한글로 적는다."),
        Rule("B", "c", "s", "2", "t", "조사 '이다'는 붙여 쓴다."),
        Rule("C", "c", "s", "3", "t", "ə는 외래어의 모음이며 한글 '어'로 적는다."),
    ]
    reasons = ["'이다'는 조사이므로 앞말에 붙여 쓴다.", "[ə]는 외래어의 모음이므로 한글로 적는다."]
    assert [LexicalScorer(rules).scores(r)[0][0] for r in reasons] == ["B", "C"]
    monkeypatch.setattr(labels, "QUOTED_WEIGHT", 0.0)
    assert [LexicalScorer(rules).scores(r)[0][0] for r in reasons] == ["A", "C"]
    monkeypatch.setattr(labels, "BRACKET_WEIGHT", 0.0)
    assert [LexicalScorer(rules).scores(r)[0][0] for r in reasons] == ["A", "A"]
    assert quoted_terms("'먹을 만큼', ‘-(으)ㄹ게’, '먹을만큼'") == ["먹을만큼", "ㄹ게"]
    assert bracket_terms("[ˈə], [ə], [한], [p h]") == ["ə"]


RULES = [
    Rule("R1", "c", "s", "1", "t", "조사는 그 앞말에 붙여 쓴다."),
    Rule("R2", "c", "s", "2", "t", "의존 명사는 띄어 쓴다."),
    Rule("R3", "c", "s", "3", "t", "물결표를 쓴다."),
]
ITEMS = [
    Item(str(n), "선택형", f'"{q}" 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.', f'"{a}"가 옳다. {why}')
    for n, (q, a, why) in enumerate(
        [
            ("꽃{이/ 이} 핀다.", "꽃이 핀다.", "조사는 붙여 쓴다."),
            ("{먹을만큼/먹을 만큼} 먹어라.", "먹을 만큼 먹어라.", "의존 명사는 띄어 쓴다."),
            ("9월{~/ ~ }10월", "9월~10월", "물결표는 붙여 쓴다."),
            ("아는 {것이/ 것이} 힘", "아는 것이 힘", "의존 명사 것."),
        ]
    )
]
CANDS = {it.id: ["R1", "R2", "R3"] for it in ITEMS}
CONFIG = {"model": "tiny"}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from malpyeong_grpo.models import load_model, load_tokenizer

    return load_model(str(tiny_model_dir)).eval(), load_tokenizer(str(tiny_model_dir))


def test_answer_nll_is_independent_of_batching(tiny):
    model, tok = tiny
    prefixes = ["질문: 가", "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고 답변:"]
    together = answer_nll(model, tok, prefixes, " 조사는 붙여 쓴다.", batch_size=2)
    alone = [answer_nll(model, tok, [p], " 조사는 붙여 쓴다.", batch_size=1)[0] for p in prefixes]
    assert together == pytest.approx(alone, abs=1e-4)
    assert all(v > 0 for v in together)


def test_ppl_labels_resume_after_interrupt_gives_the_same_file(tiny, tmp_path):
    model, tok = tiny
    straight = tmp_path / "straight.jsonl"
    rows = ppl_labels(ITEMS, RULES, CANDS, model, tok, straight, CONFIG, progress=False)
    assert [r["id"] for r in rows] == [it.id for it in ITEMS]
    for r in rows:
        nlls = dict(r["candidates"])
        assert r["rule_id"] == min(nlls, key=nlls.get) and set(nlls) == {"R1", "R2", "R3"}
        assert r["gain"] == pytest.approx(r["base_nll"] - nlls[r["rule_id"]], abs=1e-5)

    resumed = tmp_path / "resumed.jsonl"
    seen = []

    def stop_after_two(row):
        seen.append(row["id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ppl_labels(ITEMS, RULES, CANDS, model, tok, resumed, CONFIG, progress=False, on_row=stop_after_two)
    assert len(resumed.read_text(encoding="utf-8").splitlines()) == 2
    with resumed.open("a", encoding="utf-8") as f:  # a torn line, as a kill during a write leaves it
        f.write('{"id": "2", "rule_')
    again = []
    ppl_labels(ITEMS, RULES, CANDS, model, tok, resumed, CONFIG, progress=False, on_row=lambda r: again.append(r["id"]))
    assert again == ["2", "3"]  # only what was missing was computed
    assert resumed.read_text(encoding="utf-8") == straight.read_text(encoding="utf-8")
    assert load_labels(resumed) == {r["id"]: r["rule_id"] for r in rows}
    with pytest.raises(DataError, match="made with other settings"):
        ppl_labels(ITEMS, RULES, CANDS, model, tok, resumed, {"model": "other"}, progress=False)


def test_label_command(tiny_model_dir, tmp_path, capsys):
    rules = tmp_path / "rules.jsonl"
    rules.write_text("".join(json.dumps(r.__dict__, ensure_ascii=False) + "\n" for r in RULES), encoding="utf-8")
    data = tmp_path / "d.json"
    write_items(data, ITEMS[:2])
    lex = tmp_path / "lex.jsonl"
    assert main(["label", "--method", "lexical", "--rules", str(rules), "--data", str(data), "--out", str(lex)]) == 0
    assert load_labels(lex) == {"0": "R1", "1": "R2"}
    ppl = tmp_path / "ppl.jsonl"
    argv = ["label", "--rules", str(rules), "--data", str(data), "--model", str(tiny_model_dir), "--out", str(ppl)]
    assert main([*argv, "--candidates", "2", "--lexical-candidates", "1"]) == 0
    rows = [json.loads(x) for x in ppl.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["0", "1"] and all(len(r["candidates"]) >= 2 for r in rows)
    assert main([*argv, "--candidates", "0"]) == 2
    assert "error: --candidates" in capsys.readouterr().err


def test_load_labels_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_labels(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "rule_id": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match="row 1"):
        load_labels(bad)


def test_retrieval_metrics():
    got = {"a": ["R1", "R2"], "b": ["R2", "R3", "R1"], "c": ["R3"]}
    m = retrieval_metrics(got, {"a": "R1", "b": "R1", "c": "R2"}, ks=(1, 3))
    assert m["n_items"] == 3 and m["recall@1"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(2 / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 0) / 3)


@pytest.mark.slow
def test_retrieval_report_with_tiny_model(data_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "rep"
    argv = ["retrieval-report", "--rules", str(data_dir / "reference_rules.docx"), "--data-dir", str(data_dir)]
    argv += ["--methods", "bm25,learned", "--ablation-method", "bm25", "--ablation-items", "2"]
    argv += ["--model", str(tiny_model_dir)]
    argv += ["--max-new-tokens", "4", "--num-shots", "0", "--out-dir", str(out)]
    assert main(argv) == 0
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    names = {"bm25 / rules", "bm25 / rules + train examples", "learned / rules + train examples"}
    assert set(rep["retrieval"]) == names
    assert rep["retrieval"]["bm25 / rules"]["lexical"]["n_items"] == 127
    assert all(0 <= m["lexical"]["recall@10"] <= m["lexical"]["recall@30"] <= 1 for m in rep["retrieval"].values())
    assert "| R@30 | MRR@30 |" in (out / "report.md").read_text(encoding="utf-8")
    hand = rep["hand"]
    assert hand["n_items"] == 173 and set(hand["retrieval"]) == names
    assert hand["labeller"]["tuning"][1] == 80 and hand["labeller"]["validation"][1] == 93
    assert all(m["n_items"] == 173 and 0 <= m["recall@5"] <= m["recall@30"] <= 1 for m in hand["retrieval"].values())
    assert "## Against hand labels (173 training items)" in (out / "report.md").read_text(encoding="utf-8")
    conds = rep["ablation"]["conditions"]
    finals = [c.get("final", c.get("final_standin")) for c in conds.values()]  # official or stand-in name
    assert len(conds) == 3 and all(c["n_items"] == 2 for c in conds.values()) and all(0 <= f <= 1 for f in finals)
    assert "| no context |" in (out / "report.md").read_text(encoding="utf-8")
    caches = sorted(out.glob("ablation_*.jsonl"))
    before = [p.read_text(encoding="utf-8") for p in caches]
    assert len(caches) == 3 and all(len(t.splitlines()) == 2 for t in before)
    assert main(argv) == 0  # cached completions are reused, not generated again
    assert [p.read_text(encoding="utf-8") for p in caches] == before
    assert main([*argv, "--context-k", "1"]) == 0  # other retrieved prompts are generated again, the rest reused
    after = [p.read_text(encoding="utf-8") for p in caches]
    assert after[0] == before[0] and after[2] == before[2] and len(after[1].splitlines()) == 4
    assert main([*argv[:-2], "--oracle", "ppl", "--out-dir", str(out)]) == 2  # the PPL oracle needs --ppl-labels
