"""The demo's progress display: its wall-clock budget (``Clock``), one line per stage event with the demo's bar and
ETA (``say``), one readable line per training step instead of the trainer's raw log dict (``stage_callback``, which
also stops a training stage at its deadline), and a quiet trainer construction (``quiet_trainer``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

STAGES = ("setup", "before", "SFT", "after SFT", "GRPO", "after GRPO", "results")


def mmss(seconds: float) -> str:
    """``m:ss`` of a number of seconds (rounded, at least 0)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def bar(done: float, total: float, width: int = 20) -> str:
    """``[███████░░░░░]``: the share ``done / total`` (clipped to 0..1)."""
    frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
    full = int(round(frac * width))
    return "[" + "█" * full + "░" * (width - full) + "]"


class Clock:
    """The demo's wall-clock budget: elapsed, left, and a status with a bar and the ETA of the whole demo."""

    def __init__(self, seconds: float, now: Any = time.perf_counter):
        self.now = now
        self.start = now()
        self.total = seconds

    def elapsed(self) -> float:
        return self.now() - self.start

    def left(self) -> float:
        return self.total - self.elapsed()

    def status(self) -> str:
        e = self.elapsed()
        eta = f"ETA {mmss(self.total - e)}" if e <= self.total else f"over budget by {mmss(e - self.total)}"
        return f"demo {bar(e, self.total, 12)} {mmss(e)}/{mmss(self.total)}, {eta}"


def say(stage: str, text: str, clock: Clock | None = None) -> None:
    """One progress line: ``[demo i/7 stage] text | demo bar elapsed/budget, ETA``."""
    i = STAGES.index(stage) + 1
    print(f"[demo {i}/{len(STAGES)} {stage}] {text}" + (f" | {clock.status()}" if clock else ""), flush=True)


def step_line(kind: str, logs: Mapping[str, Any], names: Sequence[str], step_s: float) -> str:
    """The readable line of one training step: SFT loss and token accuracy, or GRPO's weighted reward, the mean of
    each reward it optimises and their mean within-group spread."""
    if kind == "SFT":
        parts = [f"loss {logs['loss']:.3f}"] if isinstance(logs.get("loss"), int | float) else []
        acc = logs.get("mean_token_accuracy")
        if isinstance(acc, int | float):
            parts.append(f"token accuracy {acc:.3f}")
    else:
        parts = [f"reward {logs.get('reward', float('nan')):.3f}"]
        means = [f"{n} {logs[f'rewards/{n}/mean']:.2f}" for n in names if f"rewards/{n}/mean" in logs]
        if means:
            parts.append(" ".join(means))
        spreads = [logs[f"rewards/{n}/group_std"] for n in names if f"rewards/{n}/group_std" in logs]
        if spreads:
            parts.append(f"within-group spread {sum(spreads) / len(spreads):.3f}")
    return f"step {logs.get('step', '?')} ({step_s:.1f} s): " + " | ".join(parts)


def stage_callback(kind: str, deadline: float, clock: Clock, names: Sequence[str] = ()) -> Any:
    """A TrainerCallback for one training stage: it stops training at the end of the step after which one more step
    would pass ``deadline`` (seconds on ``clock``), and prints one line per logged step (instead of the trainer's
    raw log dict) with the stage's time bar and the demo's ETA."""
    from transformers import TrainerCallback

    stage = STAGES[2] if kind == "SFT" else STAGES[4]

    class Stage(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[float] = []
            self.began = self.last = 0.0
            self.stopped_by_budget = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.began = self.last = clock.elapsed()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now = clock.elapsed()
            self.steps.append(now - self.last)
            self.last = now
            per_step = sum(self.steps) / len(self.steps)
            if now + per_step > deadline and state.global_step < state.max_steps:
                self.stopped_by_budget = True
                control.should_training_stop = True

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if not logs or ("loss" not in logs and "reward" not in logs) or not state.log_history:
                return
            row = {**state.log_history[-1], **logs}
            now = clock.elapsed()
            span = max(deadline - self.began, now - self.began, 1e-9)
            line = step_line(kind, row, names, self.steps[-1] if self.steps else 0.0)
            line += f" | stage {bar(now - self.began, span, 10)} {now - self.began:.0f}/{span:.0f} s"
            say(stage, line, clock)
            if self.stopped_by_budget:
                say(stage, f"stage budget reached after {state.global_step} steps", clock)

    return Stage()


@contextlib.contextmanager
def quiet_trainer() -> Iterator[None]:
    """While a trainer is built: no ``PrinterCallback`` (it prints each raw log dict; the stage callback prints a
    readable line instead), no datasets progress bars."""
    import datasets
    import transformers.trainer as hf_trainer
    from transformers import TrainerCallback

    class Silent(TrainerCallback):
        pass

    saved = hf_trainer.PrinterCallback
    hf_trainer.PrinterCallback = Silent  # type: ignore[misc]
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_trainer.PrinterCallback = saved  # type: ignore[misc]
        datasets.enable_progress_bars()
