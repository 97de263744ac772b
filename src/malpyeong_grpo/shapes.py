"""The numbers of decoder-only transformers that a memory plan depends on: ``ModelShape`` from a ``config.json``,
and the public configs of the recipes' models for offline use (``KNOWN_MODELS``, each with its source in
``MODEL_SOURCES``); ``find_config`` looks a model's config up (local folder, embedded model, HF cache, shipped)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import DataError


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that its memory depends on."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_embeddings: bool
    qkv_bias: bool = False
    qk_norm: bool = False
    extra_norms: int = 0  # per-layer norms beyond the two (gemma3: pre/post feed-forward norms)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder block, by peft module name."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """Parameters of a separate LM head (0 when tied to the embedding)."""
        return 0 if self.tie_embeddings else self.vocab_size * self.hidden_size

    @property
    def layer_linear_params(self) -> int:
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return sum(a * b for a, b in self.linear_shapes().values()) + bias

    @property
    def layer_other_params(self) -> int:
        """Norm weights of one block."""
        return (2 + self.extra_norms) * self.hidden_size + (2 * self.head_dim if self.qk_norm else 0)

    @property
    def total_params(self) -> int:
        per_layer = self.layer_linear_params + self.layer_other_params
        return self.embedding_params + self.lm_head_params + self.num_layers * per_layer + self.hidden_size

    @classmethod
    def from_config(cls, cfg: dict[str, Any], name: str) -> ModelShape:
        """From a Hugging Face ``config.json`` dict (text config of multimodal models included)."""
        cfg = cfg.get("text_config") or cfg
        try:
            heads = cfg["num_attention_heads"]
            hidden = cfg["hidden_size"]
            mtype = cfg.get("model_type", "")
            return cls(
                name=name,
                vocab_size=cfg["vocab_size"],
                hidden_size=hidden,
                intermediate_size=cfg["intermediate_size"],
                num_layers=cfg["num_hidden_layers"],
                num_heads=heads,
                num_kv_heads=cfg.get("num_key_value_heads") or heads,
                head_dim=cfg.get("head_dim") or hidden // heads,
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                qkv_bias=bool(cfg.get("attention_bias", mtype in ("qwen2",))),
                qk_norm=mtype in ("qwen3", "gemma3_text", "gemma3"),
                extra_norms=2 if mtype.startswith("gemma") else 0,
            )
        except (KeyError, TypeError) as e:
            raise DataError([f"{name}: config.json lacks {e} (not a decoder-only causal LM config?)"]) from None


# Public config.json numbers of the recipes' models, so that ``plan`` works offline; MODEL_SOURCES says where each
# set was read. A local config.json (folder or HF cache) always wins over these.
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "google/gemma-3-270m": {
        "model_type": "gemma3_text",
        "vocab_size": 262144,
        "hidden_size": 640,
        "intermediate_size": 2048,
        "num_hidden_layers": 18,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2-0.5B-Instruct": {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    },
    "Qwen/Qwen2.5-7B-Instruct": {
        "model_type": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "tie_word_embeddings": False,
    },
    "Qwen/Qwen3-8B": {
        "model_type": "qwen3",
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
    "meta-llama/Llama-3.1-8B-Instruct": {
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct": {
        "model_type": "exaone",
        "vocab_size": 102400,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": False,
    },
    "K-intelligence/Midm-2.0-Base-Instruct": {
        "model_type": "llama",  # architectures: LlamaForCausalLM
        "vocab_size": 131392,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
    "kakaocorp/kanana-1.5-8b-instruct-2505": {
        "model_type": "llama",  # architectures: LlamaForCausalLM
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
        "attention_bias": False,
    },
}
MODEL_SOURCES: dict[str, str] = {
    "google/gemma-3-270m": "config.json of the embedded checkpoint (268,098,176 parameters counted)",
    "Qwen/Qwen2-0.5B-Instruct": "huggingface.co/Qwen/Qwen2-0.5B-Instruct config.json",
    "Qwen/Qwen2.5-7B-Instruct": "huggingface.co/Qwen/Qwen2.5-7B-Instruct config.json",
    "Qwen/Qwen3-8B": "huggingface.co/Qwen/Qwen3-8B config.json (Qwen3ForCausalLM; as copied verbatim in "
    "huggingface.co/thejaminator/qwen-hook-layer-9 commit 478fb72)",
    "meta-llama/Llama-3.1-8B-Instruct": "huggingface.co/meta-llama/Llama-3.1-8B-Instruct config.json",
    "LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct": "huggingface.co/LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct config.json",
    "K-intelligence/Midm-2.0-Base-Instruct": "huggingface.co/K-intelligence/Midm-2.0-Base-Instruct config.json "
    "(LlamaForCausalLM, depth-up-scaled from an 8B model: 48 layers of the Llama-3-8B shape); not re-read here, the "
    "count (11.55B) matches the model card's 11.5B",
    "kakaocorp/kanana-1.5-8b-instruct-2505": "huggingface.co/kakaocorp/kanana-1.5-8b-instruct-2505 config.json "
    "(LlamaForCausalLM, the Llama-3-8B shape with a 128,256-token vocabulary); not re-read here, the count (8.03B) "
    "matches the model card's 8B",
}
EMBEDDED_CONFIG = "google/gemma-3-270m"  # the embedded model is this checkpoint (GGUF-dequantized, same config)


def find_config(model: str) -> tuple[dict[str, Any], str]:
    """The config dict of a model and where it came from: a local folder, the HF cache, or ``KNOWN_MODELS``."""
    from .models import EMBEDDED_ALIASES

    if model in EMBEDDED_ALIASES:
        return KNOWN_MODELS[EMBEDDED_CONFIG], f"shipped numbers of {EMBEDDED_CONFIG} (the embedded model)"
    path = Path(model)
    if path.is_dir() and (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text(encoding="utf-8")), str(path / "config.json")
    if model.endswith(".gguf"):
        raise DataError([f"{model}: GGUF files: convert first (malpyeong-grpo train does) and plan the folder"])
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path.home() / ".cache" / "huggingface" / "hub")
    cached = sorted(hub.glob(f"models--{model.replace('/', '--')}/snapshots/*/config.json"))
    if cached:
        return json.loads(cached[-1].read_text(encoding="utf-8")), str(cached[-1])
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model], f"shipped numbers of {model}: {MODEL_SOURCES[model]}"
    raise DataError(
        [
            f"{model}: no config.json offline (not a local folder, not in the HF cache, not one of {len(KNOWN_MODELS)} "
            "shipped models); pass --model_config path/to/config.json"
        ]
    )
