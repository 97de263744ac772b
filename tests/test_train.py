"""GRPO training with a tiny random model: the dataset, parameters that move, every reward logged, the run record,
and resume after SIGKILL.

A random model never writes '가 옳다', so every competition reward is 0 for all its completions and GRPO gets no
gradient from them; the tests add a ``length`` reward (the completion's length) to the registry to give the group
different rewards, and replace the learned metrics by ``LenSuite`` (no encoder downloads). The reward plumbing, TRL
and the checkpoints are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny import LEN_SUITE, LenSuite

from malpyeong_grpo import rewards, train
from malpyeong_grpo.configs import parse_args
from malpyeong_grpo.data import load_items, split_path
from malpyeong_grpo.files import DataError
from malpyeong_grpo.trainer import MalpyeongGRPOConfig as GRPOConfig

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes" / "demo-cpu.yaml")


def length(prompts, completions, **kwargs):
    """Test-only reward that differs between a random model's completions."""
    return [float(len(str(c))) / 10 for c in completions]


def tiny_argv(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config", RECIPE,
        "--model_name_or_path", str(model_dir),
        "--output_dir", str(out),
        "--use_sample_data", "true",
        "--num_shots", "0",
        "--max_completion_length", "12",
        "--temperature", "1.0",
        "--top_p", "1.0",
        "--learning_rate", "1e-2",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("shot_method", ["random", "similar"])
def test_dataset_holds_out_validation_and_never_shows_an_item_its_own_answer(data_dir, tiny_model_dir, shot_method):
    """Leave-one-out in training: no prompt shows its own answer or a held-out item's, with either shot method."""
    from malpyeong_grpo.models import load_tokenizer

    argv = ["--data_dir", str(data_dir), "--num_shots", "2", "--holdout_fraction", "0.2", "--shot_method", shot_method]
    args, _, _ = parse_args(argv, GRPOConfig, "t")
    tok = load_tokenizer(str(tiny_model_dir))
    train_ds, val_ds, info = train.build_datasets(args, tok)
    items = {it.id: it for it in load_items(split_path("train", data_dir), require_answer=True)}
    assert info["train_items"] + info["validation_items"] == len(items) == 622
    assert len(train_ds) == info["train_items"] and len(val_ds) == info["validation_items"] == round(0.2 * 622)
    val_answers = [items[i].answer for i in val_ds["id"]]
    for row in train_ds:
        prompt = row["prompt"]
        assert isinstance(prompt, str) and prompt.endswith("답변:")  # the tiny tokenizer has no chat template
        assert row["answer"] == items[row["id"]].answer
        assert row["answer"] not in prompt  # its own answer is never a shot
        assert not any(a in prompt for a in val_answers)  # nor a held-out item's
        assert prompt.count("### 예시") == 2
    for row in val_ds:  # validation prompts take their shots from the training part only
        assert not any(a in row["prompt"] for a in val_answers)
    assert set(train_ds.column_names) == {"prompt", "answer", "id", "question_type", "question"}


def test_training_items_sources(data_dir, tmp_path):
    args, _, _ = parse_args(["--use_sample_data", "true"], GRPOConfig, "t")
    items, source = train.training_items(args)
    assert len(items) >= 30 and "sample" in source
    assert {it.question_type for it in items} == {"선택형", "교정형"}
    args, _, _ = parse_args(["--data_dir", str(data_dir)], GRPOConfig, "t")
    assert len(train.training_items(args)[0]) == 622
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "1"}]', encoding="utf-8")
    args, _, _ = parse_args(["--train_file", str(bad)], GRPOConfig, "t")
    with pytest.raises(DataError, match="bad.json: item 0"):
        train.training_items(args)


def test_rule_context_columns_from_retrieval(data_dir, tiny_model_dir, tmp_path):
    """rules_file switches on retrieval (issue 5's build_contexts): prompts carry the candidates, training rows the
    gold rule among them (labels_file), validation rows no forced gold."""
    from malpyeong_grpo.models import load_tokenizer

    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(json.dumps({"id": i, "rule_id": "한글 맞춤법 제42항"}) + "\n" for i in ("sample-07", "sample-26")),
        encoding="utf-8",
    )
    argv = ["--use_sample_data", "true", "--rules_file", str(data_dir / "reference_rules.docx")]
    argv += ["--labels_file", str(labels), "--num_contexts", "2", "--holdout_fraction", "0.1", "--num_shots", "1"]
    args, _, _ = parse_args(argv, GRPOConfig, "t")
    train_ds, val_ds, info = train.build_datasets(args, load_tokenizer(str(tiny_model_dir)))
    assert info["rule_context"]
    rows = {r["id"]: r for r in train_ds}
    for i in ("sample-07", "sample-26"):
        row = rows[i]
        assert row["gold_rule_id"] == "한글 맞춤법 제42항" and row["gold_rule_id"] in row["rule_ids"]
        assert row["gold_rule"].startswith("한글 맞춤법 제42항: 의존 명사는 띄어 쓴다.")
        assert len(row["rule_ids"]) == 2 and row["prompt"].count("\n(") >= 2 and "[참고 규정]" in row["prompt"]
    unlabelled = [r for r in train_ds if r["id"] not in ("sample-07", "sample-26")]
    assert all(r["gold_rule"] == "" and len(r["rule_ids"]) == 2 for r in unlabelled)
    assert all(r["gold_rule_id"] == "" for r in val_ds)
    args, _, _ = parse_args([*argv, "--retrieval_method", "learned"], GRPOConfig, "t")  # learns from labels_file
    learned_ds, _, _ = train.build_datasets(args, load_tokenizer(str(tiny_model_dir)))
    assert all(len(r["rule_ids"]) == 2 for r in learned_ds)
    assert {r["id"]: r["gold_rule_id"] for r in learned_ds} == {r["id"]: r["gold_rule_id"] for r in train_ds}


def test_resolve_checkpoint(tmp_path):
    assert train.resolve_checkpoint(None, str(tmp_path)) is None
    with pytest.raises(DataError, match="no complete checkpoint"):
        train.resolve_checkpoint("last", str(tmp_path))
    with pytest.raises(DataError, match="not a complete checkpoint folder"):
        train.resolve_checkpoint(str(tmp_path), str(tmp_path))
    for step, state in ((3, "{}"), (10, '{"global_step": '), (12, None)):  # 10: torn state file, 12: no state yet
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("x")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert train.resolve_checkpoint("last", str(tmp_path)) == str(tmp_path / "checkpoint-3")
    assert train.resolve_checkpoint("true", str(tmp_path)) == str(tmp_path / "checkpoint-3")
    with pytest.raises(DataError, match="checkpoint-10: not a complete checkpoint"):
        train.resolve_checkpoint(str(tmp_path / "checkpoint-10"), str(tmp_path))


def fake_contexts(args, items, include_gold, pool=()):
    """What retrieval.build_contexts returns, for items of the sample set: two candidates, the first the gold."""
    return {
        it.id: SimpleNamespace(
            texts=["한글 맞춤법 제42항: 의존 명사는 띄어 쓴다.", "문장 부호 쉼표: 쉼표를 쓴다."],
            rule_ids=["한글 맞춤법 제42항", "문장 부호 쉼표"],
            gold_rule_id="한글 맞춤법 제42항" if include_gold else None,
            gold_rule_text="의존 명사는 띄어 쓴다." if include_gold else None,
        )
        for it in items
    }


def test_grpo_steps_move_parameters_and_log_every_reward(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(rewards, "get_suite", lambda scorer=None: LenSuite())
    monkeypatch.setitem(rewards.REWARDS, "length", length)
    monkeypatch.setattr(train, "rule_contexts", fake_contexts)
    rules = tmp_path / "rules.jsonl"
    rules.write_text("{}\n", encoding="utf-8")
    names = list(rewards.REWARDS)  # the ten rewards and 'length'
    out = tmp_path / "run"
    argv = tiny_argv(tiny_model_dir, out, "--max_steps", "3", "--save_strategy", "no", "--rules_file", str(rules))
    argv += ["--reward_funcs", *names, "--reward_weights", *["1"] * len(names), "--overlong_cache", "4"]
    args, targs, margs = parse_args(argv, GRPOConfig, "t")
    before = {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).state_dict().items()}

    trainer = train.run(args, targs, margs, argv)

    assert set(trainer.train_dataset.column_names) >= {"gold_rule", "gold_rule_id", "rule_ids"}
    assert "[참고 규정]" in trainer.train_dataset[0]["prompt"]
    steps = [r for r in trainer.state.log_history if "reward" in r]
    assert len(steps) == 3
    for name in names:  # stand-in encoders: their metrics are logged under the stand-in names
        logged = rewards.logged_name(name, rewards.PairScorer())
        assert all(f"rewards/{logged}/mean" in r and f"rewards/{logged}/group_std" in r for r in steps), logged
    assert not any("rewards/bertscore/mean" in r or "rewards/final/mean" in r for r in steps)
    # overlong sees TRL's completion_ids and the run's limit (12 tokens, punished from 8): the random model's
    # completions run into the zone, and it is never a bonus
    assert all(r["rewards/overlong/mean"] <= 0 for r in steps) and any(r["rewards/overlong/mean"] < 0 for r in steps)
    assert any(r["grad_norm"] > 0 for r in steps)
    after = trainer.model.state_dict()
    embed = "model.embed_tokens.weight"
    assert torch.equal(before[embed], after[embed])  # freeze_embeddings (demo recipe) keeps it
    moved = [k for k in before if k != embed and not torch.allclose(before[k], after[k])]
    assert len(moved) >= 5, moved
    # the run directory: a loadable checkpoint, the log history, the run record
    saved = AutoModelForCausalLM.from_pretrained(str(out))
    assert torch.allclose(saved.state_dict()["model.norm.weight"], after["model.norm.weight"])
    assert json.loads((out / "log_history.json").read_text()) == trainer.state.log_history
    record = json.loads((out / "run_info.jsonl").read_text().splitlines()[0])
    assert record["packages"]["trl"] and record["git_commit"] and record["data"]["train_items"] > 0
    assert record["configs"]["MalpyeongGRPOConfig"]["max_steps"] == 3
    assert record["configs"]["ScriptArguments"]["reward_funcs"] == names


SCRIPT = LEN_SUITE + textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from malpyeong_grpo import rewards, train
    from malpyeong_grpo.configs import parse_args
    from malpyeong_grpo.trainer import MalpyeongGRPOConfig as GRPOConfig

    rewards.get_suite = lambda scorer=None: LenSuite()
    rewards.REWARDS["length"] = lambda prompts, completions, **kw: [len(str(c)) / 10 for c in completions]
    rewards.REWARDS["length"].__name__ = "length"  # the same function as the test module's 'length'
    kill_at = int(sys.argv[1])

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    argv = sys.argv[2:]
    a, t, m = parse_args(argv, GRPOConfig, "test")
    train.run(a, t, m, argv, callbacks=[KillAfterSave()])
    """
)


def run_script(kill_at: int, argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(kill_at), *argv], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_model_dir, tmp_path, monkeypatch):
    common = ["--max_steps", "4", "--save_steps", "2", "--seed", "3", "--reward_funcs", "format", "length"]
    common += ["--reward_weights", "1", "1", "--save_total_limit", "5"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"

    first = run_script(2, tiny_argv(tiny_model_dir, killed, *common))  # a process killed right after checkpoint-2
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert (killed / "checkpoint-2" / "optimizer.pt").is_file() and not (killed / "checkpoint-4").exists()
    at_kill = json.loads((killed / "checkpoint-2" / "trainer_state.json").read_text())

    monkeypatch.setitem(rewards.REWARDS, "length", length)
    for argv in (tiny_argv(tiny_model_dir, killed, *common, "--resume_from_checkpoint", "last"),
                 tiny_argv(tiny_model_dir, straight, *common)):  # fmt: skip
        train.run(*parse_args(argv, GRPOConfig, "t"), argv)

    state = json.loads((killed / "checkpoint-4" / "trainer_state.json").read_text())
    ref_state = json.loads((straight / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == ref_state["global_step"] == 4
    logged = [r for r in state["log_history"] if "reward" in r]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert state["log_history"][: len(at_kill["log_history"])] == at_kill["log_history"]  # history kept
    ref_logged = [r for r in ref_state["log_history"] if "reward" in r]
    for key in ("reward", "rewards/length/mean", "grad_norm"):
        assert [r[key] for r in logged] == pytest.approx([r[key] for r in ref_logged], rel=1e-4), key
    # optimizer state and weights after the resumed steps equal the uninterrupted run's
    opt = torch.load(killed / "checkpoint-4" / "optimizer.pt", weights_only=True)
    ref_opt = torch.load(straight / "checkpoint-4" / "optimizer.pt", weights_only=True)
    assert opt["state"].keys() == ref_opt["state"].keys() and opt["state"]
    for k, st in opt["state"].items():
        assert int(st["step"]) == int(ref_opt["state"][k]["step"]) == 4
        assert torch.allclose(st["exp_avg_sq"], ref_opt["state"][k]["exp_avg_sq"], rtol=1e-4, atol=1e-10)
    from safetensors.torch import load_file

    weights, ref_weights = load_file(killed / "model.safetensors"), load_file(straight / "model.safetensors")
    assert all(torch.allclose(weights[k], ref_weights[k], atol=1e-6) for k in ref_weights)
    launches = [json.loads(line) for line in (killed / "run_info.jsonl").read_text().splitlines()]
    assert len(launches) == 2 and launches[1]["resumed_from"].endswith("checkpoint-2")


def test_cli_errors_are_one_line(tmp_path, capsys):
    from malpyeong_grpo.cli import main

    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope.yaml'}: config file not found"
    assert main(["train", "--config", RECIPE, "--reward_funcs", "format", "magic"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown reward(s) magic" in err and "Traceback" not in err


def test_speed_fields_switch_the_trainers_fast_paths_on(tiny_model_dir, tmp_path, monkeypatch):
    """The recipe's speed fields (MalpyeongGRPOConfig) reach the trainer: each fast path ran (its call counter),
    and nothing process-wide or on the model stays patched (tests/test_trainer.py checks they are exact)."""
    import trl.trainer.utils as tu

    from malpyeong_grpo.speed import stop_token_ids
    from malpyeong_grpo.trainer import MalpyeongGRPOTrainer

    original = tu._use_triton
    monkeypatch.setitem(rewards.REWARDS, "length", length)

    def run(out: str, *extra: str):
        argv = tiny_argv(tiny_model_dir, tmp_path / out, "--max_steps", "2", "--save_strategy", "no", *extra)
        argv += ["--reward_funcs", "format", "length", "--reward_weights", "1", "1"]
        return train.run(*parse_args(argv, GRPOConfig, "t"), argv)

    trainer = run("all")  # the demo recipe: every option on
    assert isinstance(trainer, MalpyeongGRPOTrainer)
    calls = trainer.speed_calls
    assert calls["completion_logps"] >= 2 and not calls["completion_only_head"]  # the shared-prefix pass
    assert calls["generate_batch"] == calls["shared_prefill"] == calls["bf16_generation"] == 2
    assert trainer.stop_ids == stop_token_ids(trainer.processing_class)
    assert "generate" not in vars(trainer.model) and tu._use_triton is original
    off = ("share_prompt_prefix", "checkpoint_prompt", "share_prefill", "bf16_generation")
    trainer = run("head", *[x for k in off for x in (f"--{k}", "false")])
    assert trainer.speed_calls["completion_only_head"] >= 2 and not trainer.speed_calls["completion_logps"]
    assert tu._use_triton is original  # the completion-only head is scoped to the trainer's log-prob pass
    steps = [r for r in trainer.state.log_history if "reward" in r]
    assert len(steps) == 2 and any(r["grad_norm"] > 0 for r in steps)
