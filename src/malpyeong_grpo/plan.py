"""Memory budget of a training recipe, computed from the model's config, before anything is loaded.

``malpyeong-grpo plan [--config recipes/<x>.yaml ...] [--gpu_gb 24] [--field value ...]`` reads each recipe through
the project's own parser (``configs.parse_args``: TRL's ``GRPOConfig`` or ``SFTConfig`` and ``ModelConfig`` with
their real defaults, the recipe, then the overrides) and prints the memory that training needs on one device:
weights (as loaded: fp32/bf16, or 8/4-bit bitsandbytes), the LoRA adapter, gradients, optimizer state, activations
of one micro-batch (with or without gradient checkpointing), the LM-head buffers, the generation KV cache or the
vLLM share, the reward encoders and a fixed runtime reserve. A closing table says, for every recipe, whether it fits
the device (24 GiB unless ``--gpu_gb``) with generation by HF ``generate`` and with vLLM colocated.

The model's numbers come from a local ``config.json`` (a folder, the embedded model, the Hugging Face cache) or,
offline, from the public configs of the recipes' models written down in ``shapes`` (``KNOWN_MODELS``, each with its
source in ``MODEL_SOURCES``). Activation sizes are estimates (documented per term below); weights, adapter,
gradients and optimizer state are exact counts times bytes.
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

from .files import DataError
from .flags import flag
from .shapes import ModelShape, find_config

GIB = 1024**3


# Reward encoders that the reward suite may load onto the training device: parameters, float32.
REWARDS_NEED = {"bertscore": ("bertscore",), "bleurt": ("bleurt",), "final": ("bertscore", "bleurt")}
REWARD_ENCODERS = {
    "bertscore": ("bert-base-multilingual-cased", 177_853_440),
    "bleurt": ("BLEURT-20 (RemBERT, 32 layers)", 579_000_000),
}
# Prompt length (tokens) assumed per number of few-shot examples: the longest 2-shot training prompt is 641 gemma-3
# tokens (instruction ~150 tokens, each shot ~170, the question ~60-100); see docs/throughput.md.
PROMPT_TOKENS_BASE = 300
PROMPT_TOKENS_PER_SHOT = 170
SFT_ANSWER_TOKENS = 256  # gold answers: 96 gemma-3 tokens on average, 218 at most
RUNTIME_RESERVE_GIB = 1.0  # CUDA context, cuBLAS workspace and allocator fragmentation (GPU only)
VLLM_OVERHEAD_GIB = 1.5  # vLLM beside its weights and KV cache: profiling activations (4096 batched tokens), graphs
DEFAULT_GPU_GIB = 24.0  # the task's limit: one 24 GB GPU


# ---------------------------------------------------------------- recipes


@dataclass
class Recipe:
    """A recipe as the training commands see it: ``configs.parse_args`` output (TRL defaults filled in)."""

    path: str
    script: Any  # configs.ScriptArguments
    train: Any  # trainer.MalpyeongGRPOConfig or MalpyeongSFTConfig
    model: Any  # trl.ModelConfig

    @property
    def sft(self) -> bool:
        """An SFT recipe (``malpyeong-grpo sft``): no completions to sample, no rewards."""
        return not hasattr(self.train, "num_generations")

    def option(self, name: str) -> bool:
        """A speed option of the trainer config (off when this kind of config has no such field)."""
        return bool(getattr(self.train, name, False))


def read_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Parse a recipe as ``sft`` does when its name starts with 'sft' (the project's convention), else as ``train``
    (GRPO) does; the other kind when the file holds fields of the other kind only. ``overrides`` (``--field value``
    strings) apply; optional packages and the GPU are not required here."""
    from .configs import has_accelerator, parse_args
    from .trainer import MalpyeongGRPOConfig, MalpyeongSFTConfig

    argv = ["--config", str(path), *overrides]
    if not has_accelerator():
        argv += ["--use_cpu", "true"]  # TrainingArguments refuses bf16 without a GPU; plan only reads the fields
    kinds = [MalpyeongGRPOConfig, MalpyeongSFTConfig]
    if Path(path).name.startswith("sft"):
        kinds.reverse()
    try:
        script, train, model = parse_args(argv, kinds[0], "malpyeong-grpo plan", extras=False)
    except DataError as e:
        if not any("Unknown arguments from config file" in p for p in e.problems):
            raise
        try:
            script, train, model = parse_args(argv, kinds[1], "malpyeong-grpo plan", extras=False)
        except DataError:
            raise e from None
    if not model.model_name_or_path:
        raise DataError([f"{path}: no model_name_or_path"])
    return Recipe(str(path), script, train, model)


# ---------------------------------------------------------------- budget terms


Line = tuple[str, float, str]  # name, GiB, what it assumes


@dataclass
class Budget:
    """Memory lines in GiB and what they assume."""

    recipe: str
    model: str
    source: str
    device: str
    lines: list[Line]
    params: int
    trainable: int

    @property
    def total(self) -> float:
        return sum(v for _, v, _ in self.lines)


@dataclass(frozen=True)
class Tokens:
    """The token counts of one training micro-batch."""

    prompt: int
    completion: int
    seq: int  # prompt + completion (cut at max_length for SFT)
    micro_batch: int
    tokens: int  # tokens through the model in the loss pass (the group's prompt once with share_prompt_prefix)
    groups: int
    shared: bool
    note: str


def _dtype_bytes(name: str | None, gpu: bool) -> int:
    if name in (None, "auto"):
        return 2 if gpu else 4
    return {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}.get(str(name).replace("torch.", ""), 4)


def _quantized(r: Recipe) -> bool:
    return bool(r.model.load_in_4bit or r.model.load_in_8bit)


def _activation_bytes(r: Recipe, gpu: bool) -> int:
    """2 with bf16/fp16 autocast, a 16-bit model or a k-bit base (bf16 compute), else 4."""
    half = r.train.bf16 or r.train.fp16 or _dtype_bytes(r.model.dtype, gpu) == 2 or _quantized(r)
    return 2 if half else 4


def _lora_targets(shape: ModelShape, targets: Any) -> list[str]:
    names = list(shape.linear_shapes())
    if targets in (None, "all-linear", ["all-linear"]):
        return names
    if isinstance(targets, str):
        targets = [targets]
    return [n for n in names if n in targets]


def weight_line(r: Recipe, shape: ModelShape, gpu: bool) -> tuple[Line, float]:
    """The loaded weights (line) and their size in bytes: linear layers in nf4/int8 for a k-bit base, embeddings,
    LM head and norms in bf16; else every parameter in the model dtype."""
    n_lin = shape.num_layers * shape.layer_linear_params
    n_rest = shape.total_params - n_lin
    if r.model.load_in_4bit:
        # nf4: 0.5 byte per weight + one fp32 absmax per 64 (or 8-bit absmax + fp32 per 256 with nested quant)
        per = 0.5 + (1 / 64 + 4 / (64 * 256) if r.model.use_bnb_nested_quant else 4 / 64)
        w = n_lin * per + n_rest * 2
        return ("weights", w / GIB, f"{n_lin / 1e9:.2f}B linear in 4-bit nf4 + {n_rest / 1e9:.2f}B in bf16"), w
    if r.model.load_in_8bit:
        w = n_lin * 1.0 + n_rest * 2
        return ("weights", w / GIB, f"{n_lin / 1e9:.2f}B linear in int8 + {n_rest / 1e9:.2f}B in bf16"), w
    b = _dtype_bytes(r.model.dtype, gpu)
    w = shape.total_params * b
    return ("weights", w / GIB, f"{shape.total_params / 1e9:.3f}B x {b} bytes ({r.model.dtype})"), w


def training_lines(r: Recipe, shape: ModelShape, gpu: bool, weight_bytes: float) -> tuple[list[Line], int]:
    """LoRA adapter, gradients, optimizer state (and a reference model for full fine-tuning with beta > 0), and the
    number of trainable parameters."""
    lines: list[Line] = []
    if r.model.use_peft:
        rank = int(r.model.lora_r)
        targets = _lora_targets(shape, r.model.lora_target_modules)
        shapes = shape.linear_shapes()
        trainable = shape.num_layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)
        train_b = 4  # peft keeps adapter weights in fp32 (autocast_adapter_dtype)
        note = f"r={rank} on {','.join(targets)}: {trainable / 1e6:.1f}M fp32"
        lines.append(("LoRA adapter", trainable * train_b / GIB, note))
    else:
        trainable = shape.total_params - (shape.embedding_params if r.option("freeze_embeddings") else 0)
        train_b = 2 if _quantized(r) else _dtype_bytes(r.model.dtype, gpu)
    lines.append(("gradients", trainable * train_b / GIB, f"{trainable / 1e6:.1f}M trainable x {train_b} bytes"))
    optim = str(getattr(r.train.optim, "value", r.train.optim))
    if "8bit" in optim:
        state_b = 2.0
    elif "sgd" in optim:
        state_b = 0.0
    elif "adafactor" in optim:
        state_b = 4 * 2 / math.sqrt(max(trainable, 1)) * 1000  # factored second moments: negligible
    else:
        state_b = 2.0 * train_b
    lines.append(("optimizer", trainable * state_b / GIB, f"{optim}: {state_b:g} bytes per trainable parameter"))
    if not r.sft and float(r.train.beta) > 0 and not r.model.use_peft:
        lines.append(("reference model", weight_bytes / GIB, "beta > 0: a frozen copy of the weights"))
    return lines, trainable


def micro_batch_tokens(r: Recipe, prompt_tokens: int | None = None) -> Tokens:
    """Token counts of one micro-batch: prompt (from num_shots unless given) + completion (max_completion_length;
    SFT: the gold answer, cut at max_length); with share_prompt_prefix a group's prompt runs once."""
    prompt = prompt_tokens
    if prompt is None:
        prompt = PROMPT_TOKENS_BASE + PROMPT_TOKENS_PER_SHOT * int(r.script.num_shots or 0)
    completion = SFT_ANSWER_TOKENS if r.sft else int(r.train.max_completion_length)
    seq = prompt + completion
    if r.sft:
        seq = min(seq, int(r.train.max_length or 1024))
    mb = int(r.train.per_device_train_batch_size)
    shared = r.option("share_prompt_prefix") and not r.sft
    if shared:  # speed.share_prompt_prefix: each group's prompt once, then its completions over the shared cache
        groups = max(1, mb // max(1, int(r.train.num_generations)))
        tokens = groups * prompt + mb * completion
        note = f"{groups} x {prompt} prompt + {mb} x {completion} completion tokens"
    else:
        groups, tokens, note = mb, mb * seq, f"{mb} x {seq} tokens"
    return Tokens(prompt, completion, seq, mb, tokens, groups, shared, note)


def activation_line(r: Recipe, shape: ModelShape, t: Tokens, act_b: int) -> Line:
    """Activations of one micro-batch saved for backward (estimate)."""
    h, i, q, kv = shape.hidden_size, shape.intermediate_size, shape.q_dim, shape.kv_dim
    # saved per token per block: norm inputs/outputs and residual (4h), q and attention output (2q), k and v (2kv),
    # gate, up, act(gate) and act*up (4i); LoRA dropout keeps a copy of each adapted module's input
    per_tok_layer = 4 * h + 2 * q + 2 * kv + 4 * i
    if r.model.use_peft and float(r.model.lora_dropout) > 0:
        ins = {n: s[0] for n, s in shape.linear_shapes().items()}
        per_tok_layer += sum(ins[m] for m in _lora_targets(shape, r.model.lora_target_modules))
    attn_note = ""
    if r.model.attn_implementation == "eager":
        per_tok_layer += shape.num_heads * t.seq * 2  # attention probabilities (S x S per head), fp32 then cast
        attn_note = " + eager attention probabilities"
    layers = shape.num_layers
    if r.train.gradient_checkpointing:
        act = t.tokens * (layers * h + per_tok_layer) * act_b
        note = f"checkpointing: {t.note} x ({layers} block inputs + 1 block){attn_note}"
    elif t.shared and r.option("checkpoint_prompt"):  # the prompt keeps only its KV cache; its pass reruns in backward
        kept = t.groups * t.prompt * layers * 2 * kv + t.micro_batch * t.completion * layers * per_tok_layer
        act = (kept + max(t.groups * t.prompt, t.micro_batch * t.completion) * per_tok_layer) * act_b
        note = f"{t.note}, prompt pass recomputed in backward (its KV cache kept){attn_note}"
    else:
        act = t.tokens * layers * per_tok_layer * act_b
        note = f"{t.note} x {layers} blocks, ~{per_tok_layer} values/token/block{attn_note}"
    return ("activations (estimate)", act / GIB, note)


def lm_head_line(r: Recipe, shape: ModelShape, t: Tokens, act_b: int, gpu: bool) -> Line:
    """GRPO: TRL's chunked log-softmax, one [min(N,4096) x 32768] tile at a time with fp32 folding, + its gradient
    buffers; SFT: the full logits of the micro-batch, upcast to fp32 for the loss, and their gradient."""
    h = shape.hidden_size
    if r.sft:  # completion_only_logits: the LM head on the answer positions only
        n = t.micro_batch * min(t.completion, t.seq) if r.option("completion_only_logits") else t.tokens
        head = n * shape.vocab_size * (act_b + 4 + 4)
        note = f"{n} positions x {shape.vocab_size} logits (+ fp32 copy and gradient)"
    else:
        completion_only = gpu or t.shared or r.option("completion_only_logits")
        n_scored = t.micro_batch * t.completion if completion_only else t.tokens
        tile = min(n_scored, 4096) * min(shape.vocab_size, 32768)
        head = tile * (act_b + 4 * 3) + n_scored * h * 4
        note = f"{n_scored} scored positions, 32768-wide vocabulary tiles"
    if not r.model.use_peft and not r.option("freeze_embeddings"):
        head += shape.vocab_size * h * 4  # fp32 gradient accumulator of the LM head weight
    return ("LM-head tiles" if not r.sft else "logits", head / GIB, note)


def vllm_copy_bytes(r: Recipe, shape: ModelShape) -> float:
    """vLLM's own weights: bitsandbytes 4-bit when the policy is 4-bit (TRL passes quantization='bitsandbytes'),
    else bf16 (TRL refuses an 8-bit policy: vLLM has no in-flight 8-bit)."""
    n_lin = shape.num_layers * shape.layer_linear_params
    if r.model.load_in_4bit:
        return n_lin * (0.5 + 4 / 64) + (shape.total_params - n_lin) * 2
    return shape.total_params * 2


def generation_lines(
    r: Recipe, shape: ModelShape, t: Tokens, act_b: int, gpu: bool, mode: str, gpu_gib: float | None
) -> list[Line]:
    """Sampling: the KV cache of HF ``generate`` for the whole generation batch (per-device batch x
    steps_per_generation), or vLLM's share of the device (colocate), or nothing here (vLLM server, SFT)."""
    if r.sft:
        return []
    gen_batch = int(
        r.train.generation_batch_size
        or t.micro_batch * int(r.train.steps_per_generation or r.train.gradient_accumulation_steps)
    )
    kv = t.seq * shape.num_layers * 2 * shape.kv_dim
    if mode == "server":
        return [("vLLM (server)", 0.0, "generation runs on another device")]
    if mode == "colocate":
        if not gpu:
            return []
        copy = vllm_copy_bytes(r, shape)
        need = (copy + gen_batch * kv * 2) / GIB + VLLM_OVERHEAD_GIB
        share = float(r.train.vllm_gpu_memory_utilization)
        size = share * gpu_gib if gpu_gib else need
        note = (
            f"{share:.0%} of {gpu_gib or 0:g} GiB; needs ~{need:.1f} GiB: weights copy {copy / GIB:.2f} GiB, "
            f"KV cache of {gen_batch} x {t.seq} tokens, ~{VLLM_OVERHEAD_GIB:g} GiB runtime"
        )
        return [("vLLM (colocate)", max(size, need), note + ("" if size >= need else " -> raise the share"))]
    lines = [("KV cache (generate)", gen_batch * kv * act_b / GIB, f"{gen_batch} sequences x {t.seq} tokens")]
    if r.option("bf16_generation"):
        copy = shape.total_params * 2
        lines.append(("bf16 generation copy", copy / GIB, f"{shape.total_params / 1e9:.3f}B x 2 bytes"))
    return lines


def reward_lines(r: Recipe, gpu: bool) -> list[Line]:
    """The reward encoders placed on this device (every listed reward is computed, logged even at weight 0)."""
    if r.sft:
        return []
    device = r.script.reward_device
    if gpu and device is not None and not str(device).startswith("cuda"):
        return []
    needed = {k for f in r.script.reward_funcs or [] for k in REWARDS_NEED.get(f, ())}
    if not needed:
        return []
    enc = sum(REWARD_ENCODERS[k][1] * 4 for k in needed)
    names = ", ".join(REWARD_ENCODERS[k][0] for k in sorted(needed))
    return [("reward encoders", enc / GIB, f"{names} in fp32 (parameter counts approximate)")]


def generation_mode(r: Recipe) -> str:
    """How the recipe samples: 'generate' (HF), 'colocate' or 'server' (vLLM); '' for SFT."""
    if r.sft:
        return ""
    return str(r.train.vllm_mode) if r.train.use_vllm else "generate"


def budget(
    r: Recipe,
    shape: ModelShape,
    *,
    gpu: bool,
    prompt_tokens: int | None = None,
    generation: str | None = None,
    gpu_gib: float | None = None,
) -> Budget:
    """The memory lines of one recipe on one device (GPU when ``gpu``, else CPU RAM); ``generation`` ('generate',
    'colocate', 'server') replaces the recipe's own way of sampling; ``gpu_gib`` sizes the vLLM share."""
    weights, weight_bytes = weight_line(r, shape, gpu)
    train, trainable = training_lines(r, shape, gpu, weight_bytes)
    act_b = _activation_bytes(r, gpu)
    t = micro_batch_tokens(r, prompt_tokens)
    mode = generation_mode(r) if generation is None else ("" if r.sft else generation)
    lines = [weights, *train, activation_line(r, shape, t, act_b), lm_head_line(r, shape, t, act_b, gpu)]
    lines += generation_lines(r, shape, t, act_b, gpu, mode, gpu_gib)
    lines += reward_lines(r, gpu)
    if gpu:
        lines.append(("runtime reserve", RUNTIME_RESERVE_GIB, "CUDA context, workspaces, fragmentation"))
    kind = "SFT" if r.sft else f"GRPO ({'HF generate' if mode == 'generate' else 'vLLM ' + mode})"
    device = f"{kind} on {'GPU' if gpu else 'CPU'}"
    return Budget(r.path, shape.name, "", device, lines, shape.total_params, trainable)


# ---------------------------------------------------------------- output


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


def colocate_verdict(r: Recipe, shape: ModelShape, gpu_gib: float, prompt_tokens: int | None) -> str:
    """Whether the recipe fits with vLLM colocated, at the smallest share (0.05 steps) that holds vLLM's needs."""
    if r.model.load_in_8bit:
        return "no: vLLM has no in-flight 8-bit (TRL refuses an 8-bit policy)"
    b = budget(r, shape, gpu=True, prompt_tokens=prompt_tokens, generation="colocate")
    need = next(v for n, v, _ in b.lines if n == "vLLM (colocate)")
    share = min(0.95, math.ceil(need / gpu_gib / 0.05 - 1e-9) * 0.05)
    others = b.total - need
    total = others + share * gpu_gib
    verdict = "fits" if total <= gpu_gib and share * gpu_gib >= need else "does NOT fit"
    return f"{total:.2f} GiB  {verdict} (vllm_gpu_memory_utilization {share:.2f})"


def summary(rows: list[tuple[Recipe, ModelShape]], gpu_gib: float, prompt_tokens: int | None) -> str:
    """One line per recipe: its total with HF generate and with vLLM colocated on one ``gpu_gib`` device."""
    width = max(len(Path(r.path).name) for r, _ in rows)
    head = f"{'recipe':<{width}}  {'SFT, or GRPO with HF generate':<29}  GRPO with vLLM colocate"
    out = [f"fits in {gpu_gib:g} GiB? (one GPU)", head]
    for r, shape in rows:
        b = budget(r, shape, gpu=True, prompt_tokens=prompt_tokens, generation="" if r.sft else "generate")
        fits = "fits" if b.total <= gpu_gib else "does NOT fit"
        gen = f"{b.total:6.2f} GiB  {fits}"
        vllm = "-" if r.sft else colocate_verdict(r, shape, gpu_gib, prompt_tokens)
        out.append(f"{Path(r.path).name:<{width}}  {gen:<29}  {vllm}")
    return "\n".join(out)


def _model_config(model: str, path: str | None) -> tuple[dict[str, Any], str]:
    if not path:
        return find_config(model)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), path
    except (OSError, ValueError) as e:
        raise DataError([f"{path}: cannot read config.json ({e})"]) from None


def plan_command(argv: list[str]) -> int:
    """``malpyeong-grpo plan [--config recipes/x.yaml ...] [--gpu_gb 24] [--field value ...]``."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", help="recipe YAML (repeatable; default: every recipes/*.yaml)")
    ap.add_argument(*flag("gpu_gb"), type=float, default=DEFAULT_GPU_GIB, help="device memory in GiB (default 24)")
    ap.add_argument("--cpu", action="store_true", help="budget for CPU RAM (default: GPU unless the name says cpu)")
    ap.add_argument(*flag("prompt_tokens"), type=int, default=None, help="prompt length (default: from num_shots)")
    ap.add_argument(*flag("model_config"), default=None, help="config.json to use instead of looking the model up")
    args, overrides = ap.parse_known_args(argv)
    paths = args.config or sorted(str(p) for p in Path("recipes").glob("*.yaml"))
    if not paths:
        raise DataError(["plan: no --config given and no recipes/*.yaml here"])
    blocks, rows = [], []
    for path in paths:
        if not Path(path).is_file():
            raise DataError([f"{path}: recipe not found"])
        r = read_recipe(path, overrides)
        model = str(r.model.model_name_or_path)
        cfg, source = _model_config(model, args.model_config)
        shape = ModelShape.from_config(cfg, model)
        gpu = not (args.cpu or "cpu" in Path(path).stem)
        b = budget(r, shape, gpu=gpu, prompt_tokens=args.prompt_tokens, gpu_gib=args.gpu_gb)
        b.source = source
        blocks.append(render(b, args.gpu_gb if gpu else None))
        if gpu:
            rows.append((r, shape))
    if rows:
        blocks.append(summary(rows, args.gpu_gb, args.prompt_tokens))
    print("\n\n".join(blocks))
    return 0
