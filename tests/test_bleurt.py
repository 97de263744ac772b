"""The BLEURT-20 checkpoint -> RemBERT loader, its SentencePiece pair tokenizer and ``bleurt_scores``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from malpyeong_grpo import bleurt


def _tiny_spm(folder):
    import sentencepiece as spm

    corpus = ["the cat sat on the mat", "고양이가 매트 위에 앉았다", "띄어쓰기는 단어 단위로 한다"] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(folder / "spm"),
        vocab_size=80,
        hard_vocab_limit=False,
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        pad_piece="[PAD]",
        unk_piece="[UNK]",
        user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=str(folder / "spm.model"))


BLEURT_CFG = {
    "model_type": "bleurt",
    "architectures": ["BleurtForSequenceClassification"],
    "vocab_size": 80,
    "embedding_size": 8,
    "hidden_size": 12,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "intermediate_size": 20,
    "hidden_act": "gelu",
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "num_labels": 1,
}


def _tiny_bleurt_state(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    e, h, f = cfg["embedding_size"], cfg["hidden_size"], cfg["intermediate_size"]

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.3

    sd = {
        "bleurt.embeddings.word_embeddings.weight": r(cfg["vocab_size"], e),
        "bleurt.embeddings.position_embeddings.weight": r(cfg["max_position_embeddings"], e),
        "bleurt.embeddings.token_type_embeddings.weight": r(2, e),
        "bleurt.embeddings.LayerNorm.weight": 1 + r(e),
        "bleurt.embeddings.LayerNorm.bias": r(e),
        "bleurt.embeddings.position_ids": torch.arange(cfg["max_position_embeddings"])[None],
        "bleurt.encoder.embedding_projection.weight": r(h, e),
        "bleurt.encoder.embedding_projection.bias": r(h),
        "bleurt.pooler.dense.weight": r(h, h),
        "bleurt.pooler.dense.bias": r(h),
        "classifier.weight": r(1, h),
        "classifier.bias": r(1),
    }
    for i in range(cfg["num_hidden_layers"]):
        p = f"bleurt.encoder.layer.{i}."
        for name, (o, n) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (f, h),
            "output.dense": (h, f),
        }.items():
            sd[p + name + ".weight"], sd[p + name + ".bias"] = r(o, n), r(o)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + name + ".weight"], sd[p + name + ".bias"] = 1 + r(h), r(h)
    return sd


def _bleurt_direct(sd, cfg, ids, types):
    """BLEURT's forward pass for one unpadded sequence, written out with the checkpoint's own tensors."""
    F = torch.nn.functional
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    ids, types = torch.tensor(ids), torch.tensor(types)
    pos = torch.arange(len(ids))
    x = (
        sd["bleurt.embeddings.word_embeddings.weight"][ids]
        + sd["bleurt.embeddings.token_type_embeddings.weight"][types]
        + sd["bleurt.embeddings.position_embeddings.weight"][pos]
    )
    e = x.shape[-1]
    x = F.layer_norm(x, (e,), sd["bleurt.embeddings.LayerNorm.weight"], sd["bleurt.embeddings.LayerNorm.bias"], eps)
    x = x @ sd["bleurt.encoder.embedding_projection.weight"].T + sd["bleurt.encoder.embedding_projection.bias"]
    h = x.shape[-1]
    d = h // heads

    def lin(name, v):
        return v @ sd[name + ".weight"].T + sd[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"bleurt.encoder.layer.{i}."
        q, k, v = (
            lin(p + f"attention.self.{n}", x).view(-1, heads, d).transpose(0, 1) for n in ("query", "key", "value")
        )
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1) @ v
        att = lin(p + "attention.output.dense", att.transpose(0, 1).reshape(-1, h))
        x = F.layer_norm(
            att + x, (h,), sd[p + "attention.output.LayerNorm.weight"], sd[p + "attention.output.LayerNorm.bias"], eps
        )
        ff = lin(p + "output.dense", F.gelu(lin(p + "intermediate.dense", x)))
        x = F.layer_norm(ff + x, (h,), sd[p + "output.LayerNorm.weight"], sd[p + "output.LayerNorm.bias"], eps)
    pooled = torch.tanh(lin("bleurt.pooler.dense", x[0]))
    return float(lin("classifier", pooled)[0])


def test_load_bleurt_checkpoint_layout(tmp_path):
    sp = _tiny_spm(tmp_path)
    cfg = dict(BLEURT_CFG, vocab_size=sp.get_piece_size())
    sd = _tiny_bleurt_state(cfg)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(sd, tmp_path / "pytorch_model.bin")
    model, tok = bleurt.load_bleurt(tmp_path)
    assert type(model).__name__ == "RemBertForSequenceClassification"
    refs = ["the cat sat on the mat", "고양이가 매트 위에 앉았다", "띄어쓰기"]
    cands = ["the cat sat", "고양이가 앉았다", "띄어쓰기는 단어 단위로 한다 the mat"]
    got = bleurt.bleurt_scores(model, tok, refs, cands, batch_size=2)  # batches mix lengths: padding is masked
    cls, sep = sp.piece_to_id("[CLS]"), sp.piece_to_id("[SEP]")
    for ref, cand, score in zip(refs, cands, got, strict=True):
        a, b = sp.encode(ref), sp.encode(cand)
        ids = [cls, *a, sep, *b, sep]
        want = _bleurt_direct(sd, cfg, ids, [0] * (len(a) + 2) + [1] * (len(b) + 1))
        assert score == pytest.approx(want, abs=1e-5)
    assert len(set(round(s, 6) for s in got)) == 3  # a random model still separates the pairs

    # the same weights saved in an ordinary AutoModelForSequenceClassification folder load as they are
    other = tmp_path / "hf"
    model.save_pretrained(other)
    (other / "spm.model").write_bytes((tmp_path / "spm.model").read_bytes())
    again, tok2 = bleurt.load_bleurt(other)
    assert bleurt.bleurt_scores(again, tok2, refs, cands) == pytest.approx(got, abs=1e-6)


def test_bleurt_wordpiece_tokenizer(tmp_path):
    # BERT-sized BLEURT checkpoints ship a WordPiece vocab.txt (lower-cased by default)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "##s"]) + "\n")
    tok = bleurt.load_bleurt_tokenizer(tmp_path)
    assert tok(["The cats"], ["cat"])["input_ids"][0] == [2, 4, 5, 6, 3, 5, 3]


def test_load_bleurt_rejects_non_bleurt_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        bleurt.load_bleurt(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BLEURT_CFG))
    torch.save({"bleurt.something.weight": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="not a BLEURT checkpoint"):
        bleurt.load_bleurt(tmp_path)


def test_pair_tokenizer_truncates_longest_first(tmp_path):
    sp = _tiny_spm(tmp_path)
    tok = bleurt.SentencePiecePairTokenizer(tmp_path / "spm.model")
    long_ref, short = "the cat sat on the mat " * 5, "the cat"
    n = len(sp.encode(short))
    enc = tok([long_ref, short], [short, short], max_length=2 * n + 5)
    assert enc["input_ids"].shape == (2, 2 * n + 5)
    row = enc["input_ids"][0].tolist()
    assert row[0] == tok.cls_token_id and row.count(tok.sep_token_id) == 2
    assert row[1 : n + 3] == sp.encode(long_ref)[: n + 2]  # only the longer side was cut
    assert row[-n - 1 : -1] == sp.encode(short)  # the short candidate is kept whole
    assert enc["attention_mask"][1].tolist() == [1] * (2 * n + 3) + [0, 0]
    assert enc["token_type_ids"][1].tolist() == [0] * (n + 2) + [1] * (n + 1) + [0, 0]
