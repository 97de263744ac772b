"""A tiny randomly initialised causal LM with its own byte-level tokenizer, built offline for tests."""

from __future__ import annotations

import inspect
from pathlib import Path

_CORPUS = [
    '"우동이 불을 것 같아 걱정이다."가 옳다. 어간 끝 받침이 모음 앞에서 바뀌면 바뀐 대로 적는다.',
    "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요.",
    "가운데 올바른 것을 선택하고, 그 이유를 설명하세요. 선택형 교정형 질문 답변 규정 조항",
    "한글 맞춤법 표준어 규정 띄어쓰기 문장 부호 외래어 표기법 제1항 제42항 다만 붙임",
]


def make_tiny_model(out_dir: str | Path, seed: int = 0, chat_template: bool = False) -> Path:
    """Write a tiny Gemma3 causal LM (2 layers, hidden 32) and a byte-level BPE tokenizer to ``out_dir``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = Tokenizer(models.BPE(unk_token=None))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    if chat_template:
        tok.chat_template = (
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}"
        )
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
        sliding_window=128,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(out)
    return out


class LenSuite:
    """Stand-in metric suite: functions of the reasons' lengths (different for different completions), no encoder."""

    def rouge1(self, preds, refs):
        return [min(len(p), 40) / 40 for p in preds]

    def bertscore(self, preds, refs):
        return [(len(p) % 7) / 7 for p in preds]

    def bleurt(self, preds, refs):
        return [(len(p) % 5) / 5 for p in preds]


LEN_SUITE = inspect.getsource(LenSuite)  # the same class for scripts run in a subprocess


def left_padded_batch(prompt_len: int = 12, comp_len: int = 7):  # -> tuple[torch.Tensor, torch.Tensor]
    """Two groups: 4 completions of one prompt (two right-padded) and 2 of a shorter, left-padded prompt."""
    import torch

    g = torch.Generator().manual_seed(0)
    p1 = torch.randint(3, 300, (1, prompt_len), generator=g).repeat(4, 1)
    p2 = torch.randint(3, 300, (1, prompt_len), generator=g).repeat(2, 1)
    p2[:, :3] = 0
    ids = torch.cat([torch.cat([p1, p2]), torch.randint(3, 300, (6, comp_len), generator=g)], 1)
    mask = torch.ones_like(ids)
    mask[4:, :3] = 0
    mask[1, prompt_len + 4 :] = 0
    mask[3, prompt_len + 6 :] = 0
    return ids, mask
