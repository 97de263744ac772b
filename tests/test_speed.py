"""Speed options change the cost of a GRPO step, not its numbers: log-probs, gradients, samples and a whole
training step agree with TRL's own path on a tiny model."""

from __future__ import annotations

import pytest
import torch

from malpyeong_grpo import speed


@pytest.fixture()
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.sliding_window = 8  # sliding-window layers see the prompt/completion boundary
    return model


def _batch(prompt_len=12, comp_len=7):
    """Two groups: 4 completions of one prompt (two of them right-padded) and 2 of a left-padded shorter prompt."""
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
    ids, mask = _batch()
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


def test_completion_only_logits_same_values(tiny):
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(tiny, outputs=("log_probs", "entropy"))
    ids, mask = _batch()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-7] = -100
    before = tiny(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    speed.completion_only_logits()
    try:
        after = tiny(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    finally:
        speed.completion_only_logits(False)
    torch.testing.assert_close(after.log_probs, before.log_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(after.entropy, before.entropy, atol=1e-5, rtol=0)
    import trl.trainer.utils as tu

    assert not hasattr(tu._use_triton, "_original")  # restored


def test_share_prefill_generates_the_same(tiny, tiny_model_dir):
    from transformers import AutoModelForCausalLM, GenerationConfig

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    plain.config.sliding_window = 8
    ids = torch.randint(3, 300, (1, 20), generator=torch.Generator().manual_seed(1)).repeat(4, 1)
    kw = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    speed.share_prefill(tiny)
    for sample in (False, True):
        gc = GenerationConfig(max_new_tokens=15, do_sample=sample, pad_token_id=0, eos_token_id=2)
        torch.manual_seed(3)
        ref = plain.generate(**kw, generation_config=gc)
        torch.manual_seed(3)
        assert torch.equal(tiny.generate(**kw, generation_config=gc), ref)
    mixed = torch.cat([ids[:2], ids[:2].flip(1)])  # different prompts: falls back to the plain path
    gc = GenerationConfig(max_new_tokens=5, do_sample=False, pad_token_id=0, eos_token_id=2)
    out = tiny.generate(input_ids=mixed, attention_mask=torch.ones_like(mixed), generation_config=gc)
    ref = plain.generate(input_ids=mixed, attention_mask=torch.ones_like(mixed), generation_config=gc)
    assert torch.equal(out, ref)


def test_freeze_embeddings_freezes_the_tied_head(tiny):
    n = speed.freeze_embeddings(tiny)
    assert n == tiny.config.vocab_size * tiny.config.hidden_size
    assert not tiny.get_output_embeddings().weight.requires_grad
    assert speed.freeze_embeddings(tiny) == 0


def test_stop_at_markers(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["###"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    eos = speed.stop_at_markers(model, tok, markers=("###",))
    assert eos[0] == tok.eos_token_id and tok.convert_tokens_to_ids("###") in eos
    assert speed.stop_at_markers(model, tok, markers=("###",)) == eos  # idempotent


def _train_one_step(model_dir, options, seed=0):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.sliding_window = 8
    if "freeze" in options:
        speed.freeze_embeddings(model)
    if "prefill" in options:
        speed.share_prefill(model)
    prompts = ["질문: 우동이 불을 것 같아 걱정이다. 답변:", "다음 문장에서 어문 규범에 맞지 않는 부분을 고치고 답변:"]
    args = GRPOConfig(
        output_dir=str(model_dir / f"run-{'-'.join(options) or 'plain'}"),
        num_generations=4,
        per_device_train_batch_size=4,
        max_completion_length=12,
        max_steps=2,
        learning_rate=1e-2,
        seed=seed,
        bf16=False,
        report_to="none",
        save_strategy="no",
        gradient_checkpointing="ckpt" in options,
        disable_tqdm=True,
    )

    def reward(completions, **kw):
        return [float(len(c)) for c in completions]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tok,
    )
    if "prefix" in options:
        speed.share_prompt_prefix(trainer)
    prof = speed.StepProfiler().attach(trainer)
    trainer.train()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, prof


def test_training_step_is_unchanged_by_the_options(tiny_model_dir):
    """Two GRPO steps with every exact option give the parameters plain TRL gives (same seed)."""
    from transformers import AutoModelForCausalLM

    before = {n: p.detach().clone() for n, p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters()}
    plain, _ = _train_one_step(tiny_model_dir, ())
    fast, prof = _train_one_step(tiny_model_dir, ("prefix", "prefill"))
    changed = [n for n in plain if not torch.equal(plain[n], before[n])]
    assert changed, "plain TRL did not change any parameter"
    for name in plain:
        torch.testing.assert_close(fast[name], plain[name], atol=2e-5, rtol=1e-4, msg=name)
    assert len(prof.records) == 2
    rec = prof.records[-1]
    assert rec.phases["generate"] > 0 and rec.phases["forward"] > 0 and rec.phases["backward"] > 0
    assert sum(v for k, v in rec.phases.items() if k != "other") <= rec.seconds + 1e-3
    summary = prof.summary(skip=1)
    assert summary["steps"] == 1 and summary["peak_rss_gb"] > 0


def test_frozen_embedding_is_not_trained(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach().clone()
    after, _ = _train_one_step(tiny_model_dir, ("freeze", "prefix", "prefill"))
    emb = [n for n in after if "embed_tokens" in n]
    assert emb and torch.equal(after[emb[0]], before)
    assert any("layers.0" in n for n in after)
