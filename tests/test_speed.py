"""The computations behind the speed options (malpyeong_grpo.speed) on a tiny model: the shared-prefix log-prob pass
equals the full forward with its gradients, the shared prefill generates the same tokens, the stop ids come from
prompts.STOP_MARKERS. tests/test_trainer.py checks them inside the trainer against TRL's own GRPOTrainer."""

from __future__ import annotations

import pytest
import torch
from tiny import left_padded_batch

from malpyeong_grpo import speed
from malpyeong_grpo.prompts import STOP_MARKERS, extract_answer


@pytest.fixture()
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.sliding_window = 8  # sliding-window layers see the prompt/completion boundary
    return model


def _reference(model, ids, mask, comp_len):
    """TRL's fused LM head on each group alone, prompt padding removed."""
    p_len = ids.shape[1] - comp_len
    lp = torch.zeros(ids.shape[0], comp_len)
    ent = torch.zeros_like(lp)
    total = 0
    for rows in ([0, 1, 2, 3], [4, 5]):
        r = torch.tensor(rows)
        keep = mask[rows[0], :p_len].bool()
        x = torch.cat([ids[r, :p_len][:, keep], ids[r, p_len:]], 1)
        a = torch.cat([mask[r, :p_len][:, keep], mask[r, p_len:]], 1)
        labels = x.masked_fill(a == 0, -100)
        labels[:, :-comp_len] = -100
        out = model(input_ids=x, attention_mask=a, labels=labels, fused_lm_head=True)
        lp[r], ent[r] = out.log_probs[:, -comp_len:], out.entropy[:, -comp_len:]
        total = total + (out.log_probs[:, -comp_len:] * mask[r, p_len:]).sum()
    return lp, ent, total


@pytest.mark.parametrize(("attn", "checkpoint_prompt"), [("sdpa", False), ("eager", False), ("sdpa", True)])
def test_prefix_shared_logps_equal_full_forward(tiny_model_dir, attn, checkpoint_prompt):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attn)
    model.config.sliding_window = 8
    add_fused_lm_head(model, temperature=0.9, outputs=("log_probs", "entropy"))
    ids, mask = left_padded_batch()
    ref_lp, ref_ent, total = _reference(model, ids, mask, 7)
    total.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    lp, ent = speed.prefix_shared_logps(
        model, ids, mask, 7, temperature=0.9, compute_entropy=True, checkpoint_prompt=checkpoint_prompt
    )
    (lp * mask[:, -7:]).sum().backward()
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=0)
    assert (lp[mask[:, -7:] == 0] == 0).all()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_shared_prefill_generates_the_same(tiny, tiny_model_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    plain.config.sliding_window = 8
    ids = torch.randint(3, 300, (1, 20), generator=torch.Generator().manual_seed(1)).repeat(4, 1)
    mask = torch.ones_like(ids)
    for sample in (False, True):
        gc = GenerationConfig(max_new_tokens=15, do_sample=sample, pad_token_id=0, eos_token_id=2)
        torch.manual_seed(3)
        ref = plain.generate(input_ids=ids, attention_mask=mask, generation_config=gc)
        torch.manual_seed(3)
        out, shared = speed.shared_prefill_generate(tiny, ids, mask, generation_config=gc)
        assert shared and torch.equal(out, ref)
    mixed = torch.cat([ids[:2], ids[:2].flip(1)])  # different prompts: the plain path
    gc = GenerationConfig(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=2)
    out, shared = speed.shared_prefill_generate(tiny, mixed, torch.ones_like(mixed), generation_config=gc)
    ref = plain.generate(input_ids=mixed, attention_mask=torch.ones_like(mixed), generation_config=gc)
    assert not shared and torch.equal(out, ref)


def test_freeze_embeddings_freezes_the_tied_head(tiny):
    n = speed.freeze_embeddings(tiny)
    assert n == tiny.config.vocab_size * tiny.config.hidden_size
    assert not tiny.get_output_embeddings().weight.requires_grad
    assert speed.freeze_embeddings(tiny) == 0


def test_stop_token_ids_come_from_the_stop_markers(tiny_model_dir):
    """The stop tokens are the single tokens that open a marker of prompts.STOP_MARKERS (the set extract_answer
    cuts at): '###' of '\\n###', newline runs of '\\n\\n\\n', chat end tokens; a multi-token marker is left out."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert speed.stop_token_ids(tok) == []  # the tiny byte-level vocabulary has none as one token
    tok.add_tokens(["###", "\n\n\n", "\n\n\n\n\n"])
    tok.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    ids = speed.stop_token_ids(tok)
    names = ["###", "\n\n\n", "\n\n\n\n\n", "<end_of_turn>"]
    assert ids == [tok.convert_tokens_to_ids(n) for n in names]
    assert "\n질문:" in STOP_MARKERS  # several tokens here: not a stop token
    for i in ids:  # after a line of answer, each stop token opens a marker where extract_answer cuts
        assert extract_answer('"답."가 옳다.\n' + tok.decode([i]) + " 다음 예시") == '"답."가 옳다.'


def test_bf16_generator_copies_trainable_weights(tiny):
    speed.freeze_embeddings(tiny)
    gen = speed.BF16Generator(tiny)
    assert gen.model is not tiny and all(p.dtype == torch.bfloat16 for p in gen.model.parameters())
    with torch.no_grad():
        for p in tiny.parameters():
            p.add_(0.5)
    gen.refresh()
    for name, p in tiny.named_parameters():
        copied = torch.equal(gen.model.get_parameter(name), p.detach().to(torch.bfloat16))
        assert copied == p.requires_grad, name  # frozen parameters are never copied again


def test_release_memory_frees_unreachable_cycles():
    import gc
    import weakref

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    ref = weakref.ref(a)
    gc.disable()
    try:
        del a, b
        assert ref() is not None
        speed.release_memory()
        assert ref() is None
    finally:
        gc.enable()


def test_tune_malloc_and_threads():
    assert speed.tune_malloc() in (True, False)
    n = torch.get_num_threads()
    speed.set_threads(None)
    assert torch.get_num_threads() == n
