"""BLEURT: ``load_bleurt`` reads the official BLEURT-20 PyTorch checkpoint (``lucadiliello/BLEURT-20`` layout,
``model_type: bleurt``) into transformers' ``RemBertForSequenceClassification``, or any folder already in an
``AutoModelForSequenceClassification`` format; ``bleurt_scores`` gives the regression logits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _bleurt_to_rembert(cfg: dict[str, Any], state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A ``RemBertConfig`` and state dict equal to a ``BleurtForSequenceClassification`` checkpoint.

    BLEURT's embeddings (and their LayerNorm) live in ``embedding_size``; ``bleurt.encoder.embedding_projection``
    maps them to ``hidden_size`` at the start of the encoder, exactly where RemBERT applies
    ``encoder.embedding_hidden_mapping_in``. Without ``embedding_size`` (BERT-sized BLEURT) the mapping is the
    identity."""
    import torch
    from transformers import RemBertConfig

    hidden = cfg.get("hidden_size", 768)
    emb = cfg.get("embedding_size") or hidden
    config = RemBertConfig(
        vocab_size=cfg.get("vocab_size", 30522),
        hidden_size=hidden,
        num_hidden_layers=cfg.get("num_hidden_layers", 12),
        num_attention_heads=cfg.get("num_attention_heads", 12),
        input_embedding_size=emb,
        output_embedding_size=emb,
        intermediate_size=cfg.get("intermediate_size", 3072),
        hidden_act=cfg.get("hidden_act", "gelu"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
        max_position_embeddings=cfg.get("max_position_embeddings", 512),
        type_vocab_size=cfg.get("type_vocab_size", 2),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        pad_token_id=cfg.get("pad_token_id", 0),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_id=cfg.get("eos_token_id"),
        num_labels=1,
        problem_type="regression",
    )
    out = {}
    for key, val in state.items():
        if key.endswith("position_ids") or key.startswith("cls."):
            continue
        key = key.replace("bleurt.encoder.embedding_projection.", "rembert.encoder.embedding_hidden_mapping_in.")
        out[key.replace("bleurt.", "rembert.", 1) if key.startswith("bleurt.") else key] = val
    if "rembert.encoder.embedding_hidden_mapping_in.weight" not in out and emb == hidden:
        out["rembert.encoder.embedding_hidden_mapping_in.weight"] = torch.eye(hidden)
        out["rembert.encoder.embedding_hidden_mapping_in.bias"] = torch.zeros(hidden)
    return config, out


def _read_state_dict(folder: Path) -> dict[str, Any]:
    import torch

    st = sorted(folder.glob("*.safetensors"))
    if st:
        from safetensors.torch import load_file

        state = {}
        for path in st:
            state.update(load_file(str(path)))
        return state
    for name in ("pytorch_model.bin", "model.bin"):
        if (folder / name).is_file():
            return torch.load(folder / name, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no model weights (*.safetensors or pytorch_model.bin)")


class SentencePiecePairTokenizer:
    """BLEURT-20's tokenization: SentencePiece ids of each text (``spm.model``, no lower-casing), packed as
    ``[CLS] reference [SEP] candidate [SEP]`` with segment ids 0/1, longest-first truncation and right padding.
    The reference implementation reads ``spm.model`` through DeBERTa-v2's SentencePiece tokenizer (no punctuation
    split, no lower-casing), which encodes plain text the same way; transformers 5 cannot read ``spm.model``
    without protobuf, hence this direct reader. (Not checked against the official files, which are not here.)"""

    def __init__(self, spm_file: str | os.PathLike[str], model_max_length: int = 512):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(spm_file))
        self.model_max_length = model_max_length
        ids = {p: self.sp.piece_to_id(p) for p in ("[CLS]", "[SEP]", "[PAD]")}
        unk = self.sp.unk_id()
        missing = [p for p, i in ids.items() if i == unk]
        if missing:
            raise ValueError(f"{spm_file}: no {', '.join(missing)} piece (not a BLEURT SentencePiece model)")
        self.cls_token_id, self.sep_token_id, self.pad_token_id = ids["[CLS]"], ids["[SEP]"], ids["[PAD]"]

    def __call__(
        self,
        references: Sequence[str],
        candidates: Sequence[str],
        padding: str = "longest",
        truncation: bool = True,
        max_length: int | None = None,
        return_tensors: str = "pt",
    ) -> Any:
        import torch
        from transformers import BatchEncoding

        limit = (max_length or self.model_max_length) - 3
        rows, types = [], []
        for ref, cand in zip(self.sp.encode(list(references)), self.sp.encode(list(candidates)), strict=True):
            while truncation and len(ref) + len(cand) > limit:  # longest first, as BLEURT's truncate_seq_pair
                (ref if len(ref) > len(cand) else cand).pop()
            rows.append([self.cls_token_id, *ref, self.sep_token_id, *cand, self.sep_token_id])
            types.append([0] * (len(ref) + 2) + [1] * (len(cand) + 1))
        length = max(map(len, rows), default=0)
        enc = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        for row, typ in zip(rows, types, strict=True):
            pad = length - len(row)
            enc["input_ids"].append(row + [self.pad_token_id] * pad)
            enc["token_type_ids"].append(typ + [0] * pad)
            enc["attention_mask"].append([1] * len(row) + [0] * pad)
        return BatchEncoding({k: torch.tensor(v, dtype=torch.long) for k, v in enc.items()})


def load_bleurt_tokenizer(folder: str | os.PathLike[str]) -> Any:
    """The tokenizer of a BLEURT folder: ``tokenizer.json`` (any transformers tokenizer), else BLEURT-20's
    SentencePiece ``spm.model``, else a WordPiece ``vocab.txt`` (the BERT-sized BLEURT checkpoints)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    folder = Path(folder)
    cfg = _read_json(folder / "tokenizer_config.json")
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    if (folder / "spm.model").is_file():
        return SentencePiecePairTokenizer(folder / "spm.model", cfg.get("model_max_length", 512))
    if (folder / "vocab.txt").is_file():
        return BertTokenizerFast.from_pretrained(folder, do_lower_case=cfg.get("do_lower_case", True))
    return AutoTokenizer.from_pretrained(folder)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_bleurt(path: str | os.PathLike[str], device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a local BLEURT checkpoint folder, in eval mode.

    The ``lucadiliello/BLEURT-20`` layout (config ``model_type: "bleurt"``, keys ``bleurt.*``) becomes a
    ``RemBertForSequenceClassification``; any other folder is read by ``AutoModelForSequenceClassification``."""
    from transformers import AutoModelForSequenceClassification, RemBertForSequenceClassification

    folder = Path(path)
    cfg = _read_json(folder / "config.json")
    if not cfg:
        raise FileNotFoundError(f"{folder}: no config.json (not a model folder)")
    if cfg.get("model_type") == "bleurt":
        config, state = _bleurt_to_rembert(cfg, _read_state_dict(folder))
        model = RemBertForSequenceClassification(config)
        try:
            missing, unexpected = model.load_state_dict(state, strict=True)
        except RuntimeError as e:  # shapes that disagree with config.json
            raise ValueError(f"{folder}: not a BLEURT checkpoint ({str(e).splitlines()[-1].strip()})") from None
        if missing or unexpected:
            raise ValueError(f"{folder}: not a BLEURT checkpoint (missing {missing[:5]}, unexpected {unexpected[:5]})")
    else:
        model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.eval()
    if device:
        model.to(device)
    return model, load_bleurt_tokenizer(folder)


def bleurt_scores(
    model: Any, tokenizer: Any, references: Sequence[str], candidates: Sequence[str], batch_size: int = 32
) -> list[float]:
    """BLEURT scores: the regression logit of each ``tokenizer(reference, candidate)`` pair (batched by length)."""
    import torch

    pairs = list(zip(references, candidates, strict=True))
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    scores = [0.0] * len(pairs)
    dev = next(model.parameters()).device
    limit = min(getattr(tokenizer, "model_max_length", 512), model.config.max_position_embeddings)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [pairs[i][0] for i in idx],
                [pairs[i][1] for i in idx],
                padding="longest",
                truncation=True,
                max_length=limit,
                return_tensors="pt",
            ).to(dev)
            logits = model(**enc).logits[:, 0].float().cpu().tolist()
            for i, val in zip(idx, logits, strict=True):
                scores[i] = val
    return scores
