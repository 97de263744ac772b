"""MalpyeongGRPOTrainer: each speed option acts (completions end at the stop markers, the fast paths run instead of
falling back) and changes no number against TRL's own GRPOTrainer, on a left-padded batch and over whole training
steps with recipes/demo-cpu.yaml's options; trl_compat refuses another TRL version loudly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tiny import left_padded_batch
from trl import GRPOTrainer, get_peft_config

from malpyeong_grpo import speed, trl_compat
from malpyeong_grpo.configs import parse_args
from malpyeong_grpo.files import DataError
from malpyeong_grpo.train import load_policy
from malpyeong_grpo.trainer import MalpyeongGRPOConfig, MalpyeongGRPOTrainer, MalpyeongSFTConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo-cpu.yaml"
PROMPTS = ["질문: 우동이 불을 것 같아 걱정이다. 답변:", "다음 문장에서 어문 규범에 맞지 않는 부분을 고치고 답변:"]


@pytest.fixture(scope="module")
def marker_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with '###' (the token that opens STOP_MARKERS' '\\n###') added to its vocabulary and made
    likely: its embedding row points along the mean final hidden state (~10% of the samples at temperature 0.9)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["###"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    with torch.no_grad():
        h = model.model(input_ids=torch.randint(3, 399, (8, 24))).last_hidden_state.reshape(-1, 32)
        u = h.mean(0)
        model.get_input_embeddings().weight[tok.convert_tokens_to_ids("###")] = u * 4.0 / (h @ u).mean()
    out = tmp_path_factory.mktemp("marker-model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def config(out: Path, model_dir: Path, *extra: str) -> tuple:
    """(script args, MalpyeongGRPOConfig, ModelConfig) of recipes/demo-cpu.yaml (every speed option on) for the tiny
    model: 2 SGD steps of 1 prompt x 4 completions of <= 16 tokens, one reward; ``extra`` overrides."""
    argv = ["--config", str(RECIPE), "--model_name_or_path", str(model_dir), "--output_dir", str(out)]
    argv += ["--reward_funcs", "format", "--reward_weights", "1", "--max_completion_length", "16"]
    argv += ["--max_steps", "2", "--save_strategy", "no", "--learning_rate", "0.05", "--optim", "sgd"]
    argv += ["--disable_tqdm", "true", "--torch_num_threads", "1", *extra]
    return parse_args(argv, MalpyeongGRPOConfig, "t")


def no_options(*keep: str) -> list[str]:
    """Arguments that switch every speed option of the recipe off except ``keep``."""
    names = ["completion_only_logits", "share_prompt_prefix", "checkpoint_prompt", "share_prefill"]
    names += ["stop_at_markers", "bf16_generation", "freeze_embeddings", "tune_malloc"]
    return [x for n in names if n not in keep for x in (f"--{n}", "false")]


class Recorder:
    """A reward function (the completion's length) that keeps every completion's token ids."""

    __name__ = "length"

    def __init__(self) -> None:
        self.completion_ids: list[list[int]] = []
        self.completions: list[str] = []

    def __call__(self, prompts, completions, completion_ids, **kwargs):
        self.completion_ids += [list(c) for c in completion_ids]
        self.completions += list(completions)
        return [float(len(c)) for c in completions]


def build(out: Path, model_dir: Path, *extra: str, trl_side: bool = False) -> tuple:
    """(trainer, reward recorder): ours, or TRL's own GRPOTrainer on the same config (``trl_side``; TRL ignores our
    fields; the stop markers then come through TRL's own way, the model's EOS ids)."""
    script, cfg, margs = config(out, model_dir, *extra)
    model, tok = load_policy(margs, cfg, script)
    model.config.sliding_window = 8  # sliding-window layers see the prompt/completion boundary
    if trl_side and cfg.stop_at_markers:
        model.generation_config.eos_token_id = [tok.eos_token_id, *speed.stop_token_ids(tok)]
    reward = Recorder()
    cls = GRPOTrainer if trl_side else MalpyeongGRPOTrainer
    trainer = cls(
        model=model,
        reward_funcs=[reward],
        args=cfg,
        train_dataset=Dataset.from_list([{"prompt": p} for p in PROMPTS]),
        processing_class=tok,
        peft_config=get_peft_config(margs),
    )
    return trainer, reward


def params(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


# ---------------------------------------------------------------- configs and the TRL version


def test_config_fields_parse_from_the_recipe_and_are_checked(tmp_path, tiny_model_dir):
    _, cfg, _ = config(tmp_path, tiny_model_dir)
    assert cfg.trl_internal_options() == [
        "completion_only_logits",
        "share_prompt_prefix",
        "share_prefill",
        "bf16_generation",
        "stop_at_markers",
    ]
    assert cfg.freeze_embeddings and cfg.checkpoint_prompt and cfg.tune_malloc and cfg.torch_num_threads == 1
    with pytest.raises(DataError, match="checkpoint_prompt needs share_prompt_prefix"):
        config(tmp_path, tiny_model_dir, "--share_prompt_prefix", "false")
    sft = MalpyeongSFTConfig(output_dir=str(tmp_path), bf16=False, freeze_embeddings=True, torch_num_threads=2)
    assert sft.freeze_embeddings and not hasattr(sft, "share_prompt_prefix")


def test_pinned_trl_is_the_pyproject_pin_and_installed():
    pin = re.search(r'"trl==([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pin and pin.group(1) == trl_compat.PINNED_TRL == trl_compat.installed_trl()


def test_another_trl_version_fails_loudly_for_options_on_trl_internals(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(trl_compat, "installed_trl", lambda: "1.17.0")
    with pytest.raises(trl_compat.TRLVersionError) as e:
        build(tmp_path, tiny_model_dir, *no_options("share_prompt_prefix"))
    assert e.value.problems == [
        "share_prompt_prefix: built on TRL 1.16.0's private GRPOTrainer internals, but TRL 1.17.0 is installed; "
        "install trl==1.16.0 (pip install -e .) or switch it off"
    ]
    trainer, _ = build(tmp_path, tiny_model_dir, *no_options("freeze_embeddings", "tune_malloc"))
    assert isinstance(trainer, MalpyeongGRPOTrainer)  # no option on TRL internals: any TRL version


def test_bf16_generation_refuses_lora(tmp_path, tiny_model_dir):
    with pytest.raises(DataError, match="bf16_generation does not work with use_peft"):
        build(tmp_path, tiny_model_dir, *no_options("bf16_generation"), "--use_peft", "true")


# ---------------------------------------------------------------- stop markers


@pytest.mark.parametrize("generation", ["trl", "hook"])
def test_completions_end_at_the_markers(tmp_path, marker_model_dir, generation):
    """With stop_at_markers a completion ends at the first '###' (TRL's generate path, or ours with share_prefill);
    without it the same seed samples past the marker."""
    keep = ("stop_at_markers", "share_prefill") if generation == "hook" else ("stop_at_markers",)
    sampling = ("--temperature", "0.9", "--top_p", "0.95")  # this test's sampling, not the demo recipe's
    trainer, reward = build(tmp_path / "on", marker_model_dir, *no_options(*keep), *sampling)
    marker = trainer.processing_class.convert_tokens_to_ids("###")
    assert trainer.stop_ids == [marker] and marker in trainer.eos_token_ids
    assert trainer.args.generation_kwargs["eos_token_id"][-1] == marker  # through TRL's generation_kwargs
    trainer.train()
    assert trainer.speed_calls["generate_batch"] == (2 if generation == "hook" else 0)
    stopped = [c for c in reward.completion_ids if marker in c]
    assert len(stopped) >= 2 and all(c.index(marker) == len(c) - 1 for c in stopped)
    assert any(len(c) < 16 for c in stopped)
    texts = [t for t, c in zip(reward.completions, reward.completion_ids, strict=True) if marker in c]
    assert all(t.endswith("###") for t in texts)

    plain, plain_reward = build(tmp_path / "off", marker_model_dir, *no_options(*keep[1:]))
    plain.train()
    assert any(marker in c[:-1] for c in plain_reward.completion_ids)  # the option is what stops them


# ---------------------------------------------------------------- log-probs on a left-padded batch


@pytest.mark.parametrize(
    ("keep", "route"),
    [
        (("completion_only_logits",), "completion_only_head"),
        (("share_prompt_prefix",), "completion_logps"),
        (None, "completion_logps"),  # recipes/demo-cpu.yaml: every option on
    ],
)
def test_logps_and_loss_equal_trls_on_a_left_padded_batch(tmp_path, marker_model_dir, keep, route):
    """Per-token log-probs, entropies, the GRPO loss and every gradient equal TRL's own pass, and the fast path
    is the one that ran (its call counter), not a fallback to TRL's."""
    extra = no_options(*keep) if keep else []
    ours, _ = build(tmp_path / "ours", marker_model_dir, *extra)
    ref, _ = build(tmp_path / "trl", marker_model_dir, *extra, trl_side=True)
    ids, mask = left_padded_batch()
    comp = mask[:, 12:].bool()
    results = []
    for trainer in (ref, ours):
        trainer.model.eval()  # no dropout; the loss in eval mode needs no gradient-accumulation state
        lp, ent, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 7, compute_entropy=True)
        results.append((lp.detach(), ent.detach()))
    (ref_lp, ref_ent), (lp, ent) = results
    assert ours.speed_calls[route] >= 1
    torch.testing.assert_close(lp[comp], ref_lp[comp], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent[comp], ref_ent[comp], atol=1e-5, rtol=0)
    assert lp[comp].std() > 0.01  # not a constant

    inputs = {
        "prompt_ids": ids[:, :12],
        "prompt_mask": mask[:, :12],
        "completion_ids": ids[:, 12:],
        "completion_mask": mask[:, 12:],
        "advantages": torch.tensor([1.0, -0.5, 0.25, -0.75, 0.5, -0.5]),
        "old_per_token_logps": ref_lp - 0.05,  # importance ratios ~1.05: inside the clip range
        "num_items_in_batch": mask[:, 12:].sum(),
    }
    losses, grads = [], []
    for trainer in (ref, ours):
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-4, msg=name)
    if keep is None:  # the recipe freezes the tied embedding on both sides
        assert not any("embed_tokens" in n for n in grads[0])


# ---------------------------------------------------------------- whole training steps


@pytest.mark.parametrize("options", ["none", "exact"])
def test_training_steps_equal_trls(tmp_path, marker_model_dir, options):
    """Two GRPO steps (sampling, stop markers, rewards, loss, SGD update) give the parameters TRL's own trainer
    gives: with every option off, and with every exact option of recipes/demo-cpu.yaml (all but bf16_generation)."""
    from malpyeong_grpo.profiler import StepProfiler

    extra = no_options() if options == "none" else ["--bf16_generation", "false"]
    ours, ours_reward = build(tmp_path / "ours", marker_model_dir, *extra)
    before = params(ours)
    prof = StepProfiler().attach(ours)
    ours.train()
    ref, ref_reward = build(tmp_path / "trl", marker_model_dir, *extra, trl_side=True)  # seeds the RNG again
    ref.train()
    assert ours_reward.completion_ids == ref_reward.completion_ids  # the same samples
    after, ref_after = params(ours), params(ref)
    assert any(not torch.equal(after[n], before[n]) for n in after)
    for name in ref_after:
        torch.testing.assert_close(after[name], ref_after[name], atol=1e-6, rtol=1e-4, msg=name)
    if options == "none":
        assert not ours.speed_calls  # TRL's own paths only
    else:
        calls = ours.speed_calls
        assert calls["generate_batch"] == calls["shared_prefill"] == 2  # each group's prompt prefilled once
        assert calls["completion_logps"] >= 2 and not calls["completion_only_head"]  # the shared-prefix pass
        marker = ours.processing_class.convert_tokens_to_ids("###")
        assert any(c[-1] == marker for c in ours_reward.completion_ids)
        assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])  # frozen
    assert len(prof.records) == 2
    rec = prof.records[-1]
    assert rec.phases["generate"] > 0 and rec.phases["forward"] > 0 and rec.phases["backward"] > 0
    assert sum(v for k, v in rec.phases.items() if k != "other") <= rec.seconds + 1e-3
    assert prof.summary(skip=1)["steps"] == 1


def test_bf16_generation_samples_from_a_refreshed_bf16_copy(tmp_path, marker_model_dir):
    trainer, reward = build(tmp_path, marker_model_dir, *no_options("bf16_generation"))
    copy = trainer.bf16_generator.model
    assert copy is not trainer.model and all(p.dtype == torch.bfloat16 for p in copy.parameters())
    initial = {n: p.clone() for n, p in copy.named_parameters()}
    trainer.train()
    assert trainer.speed_calls["bf16_generation"] == trainer.speed_calls["generate_batch"] == 2
    assert len(reward.completion_ids) == 8
    # the copy holds the weights of the policy that sampled the last step: the parameters before its update
    trained = dict(trainer.model.named_parameters())
    moved = [n for n, p in copy.named_parameters() if not torch.equal(p, initial[n])]
    assert moved and all(trained[n].requires_grad for n in moved)
    trainer.bf16_generator.refresh()
    for name, p in copy.named_parameters():
        assert torch.equal(p, trained[name].detach().to(torch.bfloat16)), name


def test_a_second_trainer_may_change_the_mixed_precision_after_a_reset():
    from accelerate import Accelerator
    from transformers import TrainingArguments

    built_before = TrainingArguments(output_dir="unused", report_to="none")  # holds the process state
    Accelerator(mixed_precision="bf16", cpu=True)
    with pytest.raises(ValueError, match="already been initialized"):
        Accelerator(mixed_precision="no", cpu=True)
    trl_compat.reset_accelerator_state()
    assert Accelerator(mixed_precision="no", cpu=True).mixed_precision == "no"
    assert built_before.world_size == 1  # still usable after the reset
    trl_compat.reset_accelerator_state()
