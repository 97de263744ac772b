"""The demo's progress display: the budget clock and its bars, readable step lines, and the stage callback that
stops a training stage before its deadline and prints one line per step."""

from __future__ import annotations

import pytest

from malpyeong_grpo import demo_progress as progress


def test_clock_and_bars():
    now = [100.0]
    clock = progress.Clock(540, now=lambda: now[0])
    now[0] += 135
    assert clock.elapsed() == 135 and clock.left() == 405
    assert clock.status() == "demo [███░░░░░░░░░] 2:15/9:00, ETA 6:45"
    now[0] += 500
    assert clock.status() == "demo [████████████] 10:35/9:00, over budget by 1:35"
    assert progress.bar(5, 10, 10) == "[█████░░░░░]" and progress.bar(20, 10, 4) == "[████]"
    assert progress.bar(1, 0, 2) == "[██]" and progress.bar(-1, 10, 2) == "[░░]"
    assert progress.mmss(59.6) == "1:00" and progress.mmss(-5) == "0:00"


def test_say_numbers_the_stage(capsys):
    progress.say("SFT", "hello")
    assert capsys.readouterr().out == "[demo 3/7 SFT] hello\n"
    with pytest.raises(ValueError):
        progress.say("no such stage", "x")


def test_step_lines_are_readable():
    line = progress.step_line(
        "SFT", {"step": 3, "loss": 1.23456, "mean_token_accuracy": 0.5, "grad_norm": 9.0}, (), 8.0
    )
    assert line == "step 3 (8.0 s): loss 1.235 | token accuracy 0.500"
    logs = {"step": 2, "reward": 1.5, "rewards/format/mean": 1.0, "rewards/rouge_1/mean": 0.25}
    logs |= {"rewards/format/group_std": 0.0, "rewards/rouge_1/group_std": 0.1, "completions/mean_length": 40}
    line = progress.step_line("GRPO", logs, ["format", "rouge_1"], 20.0)
    assert line == "step 2 (20.0 s): reward 1.500 | format 1.00 rouge_1 0.25 | within-group spread 0.050"
    assert "{" not in line and "completions" not in line


def test_budget_callback_stops_before_the_deadline_and_prints_one_line_per_step(capsys):
    from types import SimpleNamespace

    now = [0.0]
    clock = progress.Clock(600, now=lambda: now[0])
    cb = progress.stage_callback("GRPO", deadline=100.0, clock=clock, names=["format"])
    state = SimpleNamespace(global_step=0, max_steps=30, log_history=[])
    control = SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(None, state, control)
    for step in (1, 2, 3):
        now[0] += 30.0
        state.global_step = step
        cb.on_step_end(None, state, control)
        state.log_history.append({"step": step, "reward": 0.5, "rewards/format/mean": 1.0})
        cb.on_log(None, state, control, logs={"reward": 0.5, "rewards/format/mean": 1.0})
        if control.should_training_stop:
            break
    assert state.global_step == 3  # 90 s + a 30-s step would pass 100 s
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("[demo 5/7 GRPO] ") for line in lines)
    assert "step 3 (30.0 s): reward 0.500 | format 1.00" in lines[2] and "ETA" in lines[2]
    assert "stage budget reached after 3 steps" in lines[3]
