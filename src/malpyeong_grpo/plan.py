"""Memory budget of a training recipe, computed from the model's config, before anything is loaded.

``malpyeong-grpo plan --config recipes/<x>.yaml [--gpu-gb 24]`` prints, for each recipe, the memory that
training needs on one device: weights (as loaded: fp32/bf16, or 8/4-bit bitsandbytes), the LoRA adapter, gradients,
optimizer state, activations of one micro-batch (with or without gradient checkpointing), the chunked LM-head
buffers, the generation KV cache or the vLLM share, the reward encoders and a fixed runtime reserve, and whether
the total fits the given device size.

The model's numbers come from a local ``config.json`` (a folder, the embedded model, the Hugging Face cache) or,
offline, from the key numbers of the recipes' models shipped here (``KNOWN_MODELS``). Activation sizes are estimates
(documented per term below); weights, adapter, gradients and optimizer state are exact counts times bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import DataError

GIB = 1024**3


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


# Key config numbers of the recipes' models (from their config.json), so that ``plan`` works offline.
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
}
EMBEDDED_CONFIG = "google/gemma-3-270m"  # the embedded model is this checkpoint (GGUF-dequantized, same config)

# Reward encoders that the reward suite may load onto the training device: parameters, float32.
REWARDS_NEED = {"bertscore": ("bertscore",), "bleurt": ("bleurt",), "final": ("bertscore", "bleurt")}
REWARD_ENCODERS = {
    "bertscore": ("bert-base-multilingual-cased", 177_853_440),
    "bleurt": ("BLEURT-20 (RemBERT, 32 layers)", 579_000_000),
}

# Defaults of the TRL / transformers fields the budget depends on (TRL 1.16 GRPOConfig and ModelConfig).
FIELD_DEFAULTS: dict[str, Any] = {
    "dtype": "float32",
    "load_in_4bit": False,
    "load_in_8bit": False,
    "use_bnb_nested_quant": False,
    "use_peft": False,
    "lora_r": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": None,
    "per_device_train_batch_size": 8,
    "num_generations": 8,
    "gradient_accumulation_steps": 1,
    "steps_per_generation": None,
    "generation_batch_size": None,
    "max_completion_length": 512,
    "gradient_checkpointing": True,
    "use_vllm": False,
    "vllm_mode": "colocate",
    "vllm_gpu_memory_utilization": 0.3,
    "beta": 0.0,
    "bf16": None,
    "optim": "adamw_torch_fused",
    "num_shots": 2,
    "freeze_embeddings": False,
    "completion_only_logits": False,
    "share_prompt_prefix": False,
    "checkpoint_prompt": False,
    "bf16_generation": False,
    "reward_funcs": [],
    "reward_weights": None,
    "reward_device": None,
    "attn_implementation": None,
}
# Prompt length (tokens) assumed per number of few-shot examples: the longest 2-shot training prompt is 641 gemma-3
# tokens (instruction ~150 tokens, each shot ~170, the question ~60-100); see docs/throughput.md.
PROMPT_TOKENS_BASE = 300
PROMPT_TOKENS_PER_SHOT = 170
SFT_ANSWER_TOKENS = 256  # gold answers: 96 gemma-3 tokens on average, 218 at most
RUNTIME_RESERVE_GIB = 1.0  # CUDA context, cuBLAS workspace and allocator fragmentation (GPU only)


def _dtype_bytes(name: str | None, gpu: bool) -> int:
    if name in (None, "auto"):
        return 2 if gpu else 4
    return {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}.get(str(name).replace("torch.", ""), 4)


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
        return KNOWN_MODELS[model], f"shipped numbers of {model}"
    raise DataError(
        [
            f"{model}: no config.json offline (not a local folder, not in the HF cache, not one of {len(KNOWN_MODELS)} "
            "shipped models); pass --model-config path/to/config.json"
        ]
    )


def load_recipe(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipe YAML as a dict with the budget-relevant defaults filled in and ``overrides`` applied."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError([f"{path}: recipe not found"]) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError([f"{path}: not a readable YAML recipe ({str(e).splitlines()[0]})"]) from None
    if not isinstance(raw, dict):
        raise DataError([f"{path}: expected a mapping of fields, got {type(raw).__name__}"])
    if not raw.get("model_name_or_path"):
        raise DataError([f"{path}: no model_name_or_path"])
    # an SFT recipe (malpyeong-grpo sft) has no completions to sample and no rewards
    grpo_keys = {"num_generations", "reward_funcs", "reward_weights", "max_completion_length", "use_vllm", "beta"}
    sft_keys = {"max_length", "packing", "completion_only_loss", "assistant_only_loss", "dataset_text_field"}
    kind = "sft" if sft_keys & raw.keys() and not grpo_keys & raw.keys() else "grpo"
    return {**FIELD_DEFAULTS, **raw, **(overrides or {}), "kind": kind}


@dataclass
class Budget:
    """Memory lines in GiB and what they assume."""

    recipe: str
    model: str
    source: str
    device: str
    lines: list[tuple[str, float, str]]
    params: int
    trainable: int

    @property
    def total(self) -> float:
        return sum(v for _, v, _ in self.lines)


def _lora_targets(shape: ModelShape, targets: Any) -> list[str]:
    names = list(shape.linear_shapes())
    if targets in (None, "all-linear", ["all-linear"]):
        return names
    if isinstance(targets, str):
        targets = [targets]
    return [n for n in names if n in targets]


def budget(recipe: dict[str, Any], shape: ModelShape, *, gpu: bool, prompt_tokens: int | None = None) -> Budget:
    """Compute the memory lines of one recipe on one device (GPU when ``gpu``, else CPU RAM)."""
    r = recipe
    gib = 1 / GIB
    lines: list[tuple[str, float, str]] = []
    n_lin = shape.num_layers * shape.layer_linear_params
    n_rest = shape.total_params - n_lin
    dtype_b = _dtype_bytes(r["dtype"], gpu)
    four, eight = bool(r["load_in_4bit"]), bool(r["load_in_8bit"])
    if four:
        # nf4: 0.5 byte per weight + one fp32 absmax per 64 (or 8-bit absmax + fp32 per 256 with nested quant)
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if r["use_bnb_nested_quant"] else 4 / 64)
        rest_b = 2  # embeddings, LM head and norms stay in the compute dtype (bf16)
        w = n_lin * per + n_rest * rest_b
        lines.append(("weights", w * gib, f"{n_lin / 1e9:.2f}B linear in 4-bit nf4 + {n_rest / 1e9:.2f}B in bf16"))
    elif eight:
        w = n_lin * 1.0 + n_rest * 2
        lines.append(("weights", w * gib, f"{n_lin / 1e9:.2f}B linear in int8 + {n_rest / 1e9:.2f}B in bf16"))
    else:
        w = shape.total_params * dtype_b
        lines.append(("weights", w * gib, f"{shape.total_params / 1e9:.3f}B x {dtype_b} bytes ({r['dtype']})"))

    # trainable parameters, their gradients and optimizer state
    lora = bool(r["use_peft"])
    if lora:
        rank = int(r["lora_r"])
        targets = _lora_targets(shape, r["lora_target_modules"])
        shapes = shape.linear_shapes()
        trainable = shape.num_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)
        train_b = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)
        lines.append(
            ("LoRA adapter", trainable * train_b * gib, f"r={rank} on {','.join(targets)}: {trainable / 1e6:.1f}M fp32")
        )
    else:
        trainable = shape.total_params
        if r["freeze_embeddings"]:
            trainable -= shape.embedding_params
        train_b = 2 if (four or eight) else dtype_b
    lines.append(("gradients", trainable * train_b * gib, f"{trainable / 1e6:.1f}M trainable x {train_b} bytes"))
    optim = str(r["optim"])
    if "8bit" in optim:
        state_b = 2.0
    elif "sgd" in optim:
        state_b = 0.0
    elif "adafactor" in optim:
        state_b = 4 * 2 / math.sqrt(max(trainable, 1)) * 1000  # factored second moments: negligible
    else:
        state_b = 2 * train_b
    lines.append(("optimizer", trainable * state_b * gib, f"{optim}: {state_b:g} bytes per trainable parameter"))
    if float(r["beta"]) > 0 and not lora:
        lines.append(("reference model", w * gib, "beta > 0: a frozen copy of the weights"))

    # one micro-batch of training: activations saved for backward
    sft = r.get("kind") == "sft"
    if prompt_tokens is None:
        prompt_tokens = PROMPT_TOKENS_BASE + PROMPT_TOKENS_PER_SHOT * int(r["num_shots"] or 0)
    # SFT trains on prompt + gold answer (at most ~220 tokens on the training split), cut at max_length
    completion = SFT_ANSWER_TOKENS if sft else int(r["max_completion_length"])
    seq = prompt_tokens + completion
    if sft:
        seq = min(seq, int(r.get("max_length") or 1024))
    mb = int(r["per_device_train_batch_size"])
    tokens = mb * seq
    bf16 = r["bf16"] if r["bf16"] is not None else gpu  # TRL's bf16=None means True (on a GPU)
    act_b = 2 if (bf16 or dtype_b == 2 or four or eight) else 4
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.q_dim, shape.kv_dim
    # saved per token per block: norm inputs/outputs and residual (4h), q and attention output (2q), k and v (2kv),
    # gate, up, act(gate) and act*up (4i); LoRA dropout keeps a copy of each adapted module's input
    per_tok_layer = 4 * h + 2 * q + 2 * kv + 4 * i
    if lora and float(r["lora_dropout"]) > 0:
        ins = {n: s[0] for n, s in shape.linear_shapes().items()}
        per_tok_layer += sum(ins[t] for t in _lora_targets(shape, r["lora_target_modules"]))
    attn_note = ""
    if r.get("attn_implementation") == "eager":
        per_tok_layer += shape.num_heads * seq * 2  # attention probabilities (S x S per head), fp32 then cast
        attn_note = " + eager attention probabilities"
    shared = bool(r["share_prompt_prefix"]) and not sft
    if shared:  # speed.share_prompt_prefix: each group's prompt once, then its completions over the shared cache
        groups = max(1, mb // max(1, int(r["num_generations"])))
        tokens = groups * prompt_tokens + mb * completion
        seq_note = f"{groups} x {prompt_tokens} prompt + {mb} x {completion} completion tokens"
    else:
        seq_note = f"{mb} x {seq} tokens"
    if r["gradient_checkpointing"]:
        act = tokens * (shape.num_layers * h + per_tok_layer) * act_b
        note = f"checkpointing: {seq_note} x ({shape.num_layers} block inputs + 1 block){attn_note}"
    elif shared and r["checkpoint_prompt"]:  # the prompt keeps only its KV cache; its pass reruns in backward
        kept = groups * prompt_tokens * shape.num_layers * 2 * kv + mb * completion * shape.num_layers * per_tok_layer
        act = (kept + max(groups * prompt_tokens, mb * completion) * per_tok_layer) * act_b
        note = f"{seq_note}, prompt pass recomputed in backward (its KV cache kept){attn_note}"
    else:
        act = tokens * shape.num_layers * per_tok_layer * act_b
        note = f"{seq_note} x {shape.num_layers} blocks, ~{per_tok_layer} values/token/block{attn_note}"
    lines.append(("activations (estimate)", act * gib, note))
    # TRL's chunked log-softmax: one [min(N,4096) x 32768] tile at a time, fp32 folding, + its gradient buffers
    completion_only = gpu or shared or bool(r["completion_only_logits"])
    n_scored = mb * completion if completion_only else tokens
    tile = min(n_scored, 4096) * min(shape.vocab_size, 32768)
    head = tile * (act_b + 4 * 3) + n_scored * h * 4
    if not lora and not r["freeze_embeddings"]:
        head += shape.vocab_size * h * 4  # fp32 gradient accumulator of the LM head weight
    lines.append(("LM-head tiles", head * gib, f"{n_scored} scored positions, 32768-wide vocabulary tiles"))

    # generation: TRL samples the whole generation batch (per-device batch x steps_per_generation) at once
    gen_batch = int(
        r["generation_batch_size"] or mb * int(r["steps_per_generation"] or r["gradient_accumulation_steps"])
    )
    if sft:
        pass
    elif r["use_vllm"] and r["vllm_mode"] == "colocate":
        share = float(r["vllm_gpu_memory_utilization"])
        # vLLM loads its own copy: bitsandbytes 4-bit when the policy is 4-bit, else bf16
        copy = (n_lin * 0.53 + n_rest * 2) if four else shape.total_params * 2
        if gpu:
            note = f"{share:.0%} of the device, holding its own weights copy ({copy * gib:.2f} GiB) and KV cache"
            lines.append(("vLLM (colocate)", -share, note))
    elif r["use_vllm"]:
        lines.append(("vLLM (server)", 0.0, "generation runs on another device"))
    else:
        cache = gen_batch * seq * shape.num_layers * 2 * kv * act_b
        lines.append(("KV cache (generate)", cache * gib, f"{gen_batch} sequences x {seq} tokens"))
        if r["bf16_generation"]:
            copy = shape.total_params * 2
            lines.append(("bf16 generation copy", copy * gib, f"{shape.total_params / 1e9:.3f}B x 2 bytes"))

    # reward encoders placed on this device (computed for every listed reward, logged even at weight 0)
    on_device = not gpu or r["reward_device"] is None or str(r["reward_device"]).startswith("cuda")
    needed = set() if sft else {k for f in r["reward_funcs"] or [] for k in REWARDS_NEED.get(f, ())}
    if on_device and needed:
        enc = sum(REWARD_ENCODERS[k][1] * 4 for k in needed)
        names = ", ".join(REWARD_ENCODERS[k][0] for k in sorted(needed))
        lines.append(("reward encoders", enc * gib, f"{names} in fp32 (parameter counts approximate)"))
    if gpu:
        lines.append(("runtime reserve", RUNTIME_RESERVE_GIB, "CUDA context, workspaces, fragmentation"))
    kind = "SFT" if sft else "GRPO"
    return Budget("", shape.name, "", f"{kind} on {'GPU' if gpu else 'CPU'}", lines, shape.total_params, trainable)


def resolve_share(b: Budget, gpu_gib: float) -> None:
    """Turn a negative line (a share of the device) into GiB of ``gpu_gib``."""
    b.lines = [(n, (-v * gpu_gib if v < 0 else v), note) for n, v, note in b.lines]


def render(b: Budget, gpu_gib: float | None) -> str:
    """The budget as an aligned text table, with the verdict when a device size is given."""
    width = max(len(n) for n, _, _ in b.lines)
    out = [
        f"{b.recipe}: {b.device}, {b.model} ({b.params / 1e9:.3f}B params, {b.trainable / 1e6:.1f}M trainable)",
        f"  model numbers: {b.source}",
    ]
    out += [f"  {n:<{width}}  {v:7.2f} GiB  {note}" for n, v, note in b.lines]
    out.append(f"  {'total':<{width}}  {b.total:7.2f} GiB")
    if gpu_gib is not None:
        left = gpu_gib - b.total
        verdict = "fits" if left >= 0 else "does NOT fit"
        out.append(f"  {verdict} in {gpu_gib:g} GiB ({left:+.2f} GiB headroom)")
    return "\n".join(out)


def _overrides(rest: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    it = iter(rest)
    for tok in it:
        if not tok.startswith("--"):
            raise DataError([f"plan: unexpected argument {tok!r} (overrides are --field value)"])
        key, _, val = tok[2:].partition("=")
        if not _:
            val = next(it, None)
            if val is None:
                raise DataError([f"plan: --{key} needs a value"])
        out[key.replace("-", "_")] = yaml.safe_load(val)
    return out


def plan_command(argv: list[str]) -> int:
    """``malpyeong-grpo plan --config recipes/x.yaml [--gpu-gb 24] [--field value ...]``."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="recipe YAML (repeatable; default: every recipes/*.yaml)")
    ap.add_argument("--gpu-gb", type=float, default=None, help="device memory in GiB to check the total against")
    ap.add_argument("--cpu", action="store_true", help="budget for CPU RAM (default: GPU unless the recipe says cpu)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (default: from num_shots)")
    ap.add_argument("--model-config", default=None, help="config.json to use instead of looking the model up")
    args, rest = ap.parse_known_args(argv)
    overrides = _overrides(rest)
    paths = args.config or sorted(str(p) for p in Path("recipes").glob("*.yaml"))
    if not paths:
        raise DataError(["plan: no --config given and no recipes/*.yaml here"])
    blocks = []
    for path in paths:
        recipe = load_recipe(path, overrides)
        model = str(recipe["model_name_or_path"])
        if args.model_config:
            try:
                cfg = json.loads(Path(args.model_config).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise DataError([f"{args.model_config}: cannot read config.json ({e})"]) from None
            source = args.model_config
        else:
            cfg, source = find_config(model)
        shape = ModelShape.from_config(cfg, model)
        gpu = not (args.cpu or recipe.get("use_cpu") or "cpu" in Path(path).stem)
        b = budget(recipe, shape, gpu=gpu, prompt_tokens=args.prompt_tokens)
        b.recipe, b.source = str(path), source
        resolve_share(b, args.gpu_gb or 0.0)
        if gpu and args.gpu_gb is None and any(n.startswith("vLLM (colocate)") for n, _, _ in b.lines):
            b.lines = [(n, v, note + " (pass --gpu-gb to size it)") for n, v, note in b.lines]
        blocks.append(render(b, args.gpu_gb if gpu else None))
    print("\n\n".join(blocks))
    return 0
