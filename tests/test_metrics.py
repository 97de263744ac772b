"""The metric suite and the scorer: the aggregation, id matching, stand-in labelling, thread settings, BERTScore as
bert-score and the BLEURT proxy / official path (ROUGE-1 itself: test_rouge.py; the ``score`` command:
test_score_cli.py)."""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo import metrics
from malpyeong_grpo.files import DataError
from malpyeong_grpo.metrics import MetricSuite, metric_name, score


# ---------------------------------------------------------------- aggregation (fixed learned metrics)
class FixedSuite(MetricSuite):
    """The real ROUGE-1 with fixed learned metrics (0.5 and 0.25 per pair) and stand-in labels."""

    def __init__(self, official: bool = False):
        super().__init__()
        if official:
            self.encoders = {
                k: metrics.EncoderInfo(k, "/x", True, k) for k in ("bertscore", "bleurt")
            }  # pretend official
        self.calls: list[tuple[str, int]] = []

    def bertscore(self, preds, refs):
        self.calls.append(("bertscore", len(preds)))
        return [0.5] * len(preds)

    def bleurt(self, preds, refs):
        self.calls.append(("bleurt", len(preds)))
        return [0.25] * len(preds)


OFFICIAL_NAMES = ("bertscore", "bleurt", "descriptive_avg", "final")


GOLDS = {
    "1": '"사과를 먹었다."가 옳다. 사과를 먹는다.',
    "2": '"밥을 먹었다."가 옳다. 밥을 먹었다.',
    "3": '"책을 읽었다."가 옳다. 책을 읽는다.',
    "4": '"물을 마셨다."가 옳다. 물을 마셨다.',
}


def test_score_perturbed_predictions_hand_computed():
    preds = {
        "4": '"물을 마셨다."가 옳다.',  # right answer, no reason: drops out of the reason metrics
        "1": '"사과를 먹었다."가 옳다. 사과를 먹었다.',  # EM 1, ROUGE-1 2/3 (see above)
        "2": '"밥을 먹는다."가 옳다. 밥을 먹었다.',  # EM 0, ROUGE-1 1
        "3": '"책을 읽었다"가 옳다. 전혀 다른 말',  # EM 0 (period missing), ROUGE-1 0
    }
    suite = FixedSuite()
    res = score(preds, GOLDS, suite, per_item=True)
    assert res["exact_match"] == 0.5 and res["n_items"] == 4 and res["n_reason_pairs"] == 3
    assert res["rouge_1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3, abs=1e-12)
    assert suite.calls == [("bertscore", 3), ("bleurt", 3)]  # one batch per metric
    # stand-ins: never under the official keys, nor anything built on them
    assert not set(OFFICIAL_NAMES) & set(res) and not any(set(OFFICIAL_NAMES) & set(r) for r in res["items"].values())
    assert res["bertscore_standin"] == 0.5 and res["bleurt_proxy"] == 0.25
    desc = (5 / 9 + 0.5 + 0.25) / 3
    assert res["descriptive_avg_standin"] == pytest.approx(desc)
    assert res["final_standin"] == pytest.approx((0.5 + desc) / 2)
    assert res["final_official"] is False
    assert res["encoders"]["bertscore"]["official"] is False and "e5" in res["encoders"]["bertscore"]["label"]
    items = res["items"]
    assert items["4"] == {
        "exact_match": 1.0,
        "has_reason_pair": False,
        "rouge_1": None,
        "bertscore_standin": None,
        "bleurt_proxy": None,
        "final_standin": 0.5,
    }
    assert items["1"]["rouge_1"] == pytest.approx(2 / 3)
    assert items["1"]["final_standin"] == pytest.approx((1 + (2 / 3 + 0.75) / 3) / 2)


def test_score_official_encoders_use_official_keys():
    res = score(GOLDS, GOLDS, FixedSuite(official=True), per_item=True)
    assert res["bertscore"] == 0.5 and res["bleurt"] == 0.25 and res["final_official"] is True
    assert not {"bertscore_standin", "bleurt_proxy", "descriptive_avg_standin", "final_standin"} & set(res)
    assert res["exact_match"] == 1.0 and res["rouge_1"] == 1.0
    assert res["descriptive_avg"] == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert res["final"] == pytest.approx((1 + res["descriptive_avg"]) / 2) and "final" in res["items"]["1"]


def test_metric_name_follows_the_encoders_each_metric_depends_on():
    official = {"bertscore": True, "bleurt": True}
    mixed = {"bertscore": metrics.EncoderInfo("b", "/x", True, "b"), "bleurt": {"official": False, "label": "p"}}
    assert [metric_name(m, official) for m in OFFICIAL_NAMES] == list(OFFICIAL_NAMES)
    assert [metric_name(m, mixed) for m in OFFICIAL_NAMES] == [
        "bertscore",
        "bleurt_proxy",
        "descriptive_avg_standin",
        "final_standin",
    ]
    assert [metric_name(m, MetricSuite()) for m in OFFICIAL_NAMES] == [
        "bertscore_standin",
        "bleurt_proxy",
        "descriptive_avg_standin",
        "final_standin",
    ]
    assert metric_name("exact_match", {}) == "exact_match" and metric_name("rouge_1", MetricSuite()) == "rouge_1"
    assert metric_name("format", {}) == "format"


def test_score_with_no_reasons_at_all():
    res = score({"1": '"사과를 먹었다."가 옳다'}, {"1": GOLDS["1"]}, FixedSuite())
    assert res["n_reason_pairs"] == 0 and res["rouge_1"] == 0.0 and res["final_standin"] == 0.5


def test_ids_are_matched_not_positions():
    flipped = dict(reversed(list(GOLDS.items())))
    assert score(flipped, GOLDS, FixedSuite())["exact_match"] == 1.0
    with pytest.raises(DataError) as err:
        score({"1": GOLDS["1"], "9": "x", "8": "y"}, GOLDS, FixedSuite())
    assert err.value.problems == [
        "3 gold id(s) have no prediction: 2, 3, 4",
        "2 predicted id(s) are not in the gold file: 9, 8",
    ]


def test_id_lists_are_cut_after_thirty():
    assert metrics.id_list(["a", "b"]) == "a, b"
    assert metrics.id_list([str(i) for i in range(32)]).endswith(", 29, ... (2 more)")


def test_threads_setting(monkeypatch):
    monkeypatch.setenv("MALPYEONG_METRIC_THREADS", "1")
    assert MetricSuite().threads == 1 and MetricSuite(threads=3).threads == 3
    monkeypatch.delenv("MALPYEONG_METRIC_THREADS")
    assert MetricSuite(device="cpu").threads == 1 and MetricSuite(device="cuda").threads is None


def test_bad_encoder_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="BERTScore checkpoint folder not found"):
        MetricSuite(bertscore_model=str(tmp_path))
    with pytest.raises(DataError, match="BLEURT checkpoint folder not found"):
        MetricSuite(bleurt_model=str(tmp_path / "nope"))


# ---------------------------------------------------------------- learned metrics on real (small) encoders
@pytest.fixture(scope="module")
def suite():
    return metrics.get_suite(device="cpu")


REASONS = [
    ("사과를 먹었다.", "사과를 먹는다."),
    ("띄어쓰기는 단어 단위로 한다.", "단어는 띄어 쓴다."),
    ("사과를 먹었다.", "사과를 먹는다."),  # duplicate pair
    ("", "비어 있는 후보"),
    ("전혀 관계없는 이야기이다.", "의존 명사는 띄어 쓴다."),
]


def test_standin_bertscore_equals_bert_score_package(suite):
    import bert_score

    from malpyeong_grpo.e5 import e5_checkpoint

    preds, refs = map(list, zip(*REASONS, strict=True))
    ours = suite.bertscore(preds, refs)
    assert ours[0] == ours[2] and ours[3] == 0.0  # an empty side scores 0, as bert-score
    keep = [i for i, p in enumerate(preds) if p]  # bert-score's own encoding of "" fails under transformers 5
    _, _, f1 = bert_score.score(
        [preds[i] for i in keep], [refs[i] for i in keep], model_type=str(e5_checkpoint()), num_layers=12
    )
    assert [ours[i] for i in keep] == pytest.approx(f1.tolist(), abs=1e-6)
    assert suite.bertscore(["사과를 먹는다."], ["사과를 먹는다."])[0] == pytest.approx(1.0, abs=1e-6)
    assert suite is metrics.get_suite(device="cpu")  # loaded once per process


def test_bleurt_proxy_is_cosine_of_mean_pooled_e5(suite):
    import torch

    from malpyeong_grpo.e5 import load_e5

    preds, refs = ["사과를 먹었다. ", "주가가 폭락했다.", " "], ["사과를 먹는다.", "사과를 먹는다.", "사과를 먹는다."]
    got = suite.bleurt(preds, refs)
    model, tok = load_e5()

    def vec(text):
        with torch.no_grad():
            return model(**tok(text.strip(), return_tensors="pt")).last_hidden_state[0].mean(0)

    for p, r, g in zip(preds[:2], refs[:2], got[:2], strict=True):
        assert g == pytest.approx(float(torch.cosine_similarity(vec(p), vec(r), dim=0)), abs=1e-5)
    assert got[0] > got[1] and got[2] == 0.0
    assert suite.encoders["bleurt"].label == "bleurt-proxy: cosine of mean-pooled multilingual-e5-small embeddings"
    assert suite.encoders["bleurt"].official is False


def test_hostile_reasons_get_numbers(suite):
    preds = ["이유\ud800입니다.", "\x00\x07 제어 문자", "가" * 3000, "   ", "English only reason."]
    refs = ["이유입니다."] * len(preds)
    for name in ("rouge1", "bertscore", "bleurt"):
        vals = getattr(suite, name)(preds, refs)
        assert len(vals) == len(preds) and all(isinstance(v, float) and -1.0 <= v <= 1.0 + 1e-6 for v in vals), name
    assert suite.bertscore(preds[:1], refs[:1])[0] > 0.5  # the surrogate became U+FFFD, the rest still counts


def _tiny_bert(folder, layers=10):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *"가나다라마바사아자차카타파하",
        "사과",
        "##를",
        "먹",
        "##었다",
    ]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast.from_pretrained(folder, do_lower_case=False, model_max_length=64)
    assert tok.convert_tokens_to_ids("사과") == 19
    tok.save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(folder)


def test_official_bertscore_path_uses_layer_9(tmp_path):
    """With a local checkpoint the suite is bert-score with num_layers=9 (a tiny random BERT stands in for
    bert-base-multilingual-cased here)."""
    import bert_score

    _tiny_bert(tmp_path)
    s = MetricSuite(bertscore_model=str(tmp_path), device="cpu")
    assert s.encoders["bertscore"].official and s.encoders["bertscore"].name == "bert-base-multilingual-cased"
    preds, refs = ["사과를 먹었다", "가나다", "라마 바사"], ["사과 먹었다", "가나 다라", "아자차"]
    _, _, f9 = bert_score.score(preds, refs, model_type=str(tmp_path), num_layers=9, device="cpu")
    _, _, f10 = bert_score.score(preds, refs, model_type=str(tmp_path), num_layers=10, device="cpu")
    got = s.bertscore(preds, refs)
    assert got == pytest.approx(f9.tolist(), abs=1e-6)
    assert got != pytest.approx(f10.tolist(), abs=1e-6)


def test_official_bleurt_path(tmp_path):
    import torch
    from test_bleurt import BLEURT_CFG, _tiny_bleurt_state, _tiny_spm

    from malpyeong_grpo.bleurt import bleurt_scores, load_bleurt

    sp = _tiny_spm(tmp_path)
    cfg = dict(BLEURT_CFG, vocab_size=sp.get_piece_size())
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(_tiny_bleurt_state(cfg), tmp_path / "pytorch_model.bin")
    s = MetricSuite(bleurt_model=str(tmp_path), device="cpu")
    assert s.encoders["bleurt"].official and s.encoders["bleurt"].label == "bleurt: BLEURT-20"
    preds, refs = ["the cat", "고양이", "the cat"], ["the mat", "고양이가 앉았다", "the mat"]
    model, tok = load_bleurt(tmp_path)
    assert s.bleurt(preds, refs) == pytest.approx(bleurt_scores(model, tok, refs, preds), abs=1e-6)
