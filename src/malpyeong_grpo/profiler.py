"""Per-step phase profiler for a GRPO trainer: wall time of generation, rewards, forward, backward, gradient clipping
and optimizer per optimizer step, process CPU time and peak RSS (``benchmarks/train_step.py``)."""

from __future__ import annotations

import functools
import resource
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

PHASES = ("generate", "rewards", "forward", "backward", "clip", "optimizer")


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (10^9 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@dataclass
class StepRecord:
    """Wall time of one optimizer step and of its phases, in seconds."""

    step: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0  # process CPU time (all threads): less sensitive than wall time to other load
    peak_rss_gb: dict[str, float] = field(default_factory=dict)  # process peak RSS when each phase ended


class StepProfiler(TrainerCallback):
    """Times every optimizer step of a GRPOTrainer and its phases; ``attach`` it before ``trainer.train()``."""

    def __init__(self) -> None:
        self.records: list[StepRecord] = []
        self._acc: dict[str, float] = defaultdict(float)
        self._rss: dict[str, float] = {}
        self._t0 = 0.0
        self._c0 = 0.0
        self._t_opt = 0.0

    def attach(self, trainer: Any) -> StepProfiler:
        """Time the trainer's phase methods (``trl_compat.PHASE_METHODS``) and register as a callback."""
        from .trl_compat import PHASE_METHODS

        for phase, name in PHASE_METHODS.items():
            self._time(trainer, name, phase)
        self._time(trainer.accelerator, "backward", "backward")
        trainer.add_callback(self)
        return self

    def _time(self, obj: Any, name: str, phase: str) -> None:
        fn = getattr(obj, name)

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._acc[phase] += time.perf_counter() - t
                self._rss[phase] = peak_rss_gb()

        setattr(obj, name, timed)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._acc.clear()
        self._rss = {}
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        self._t_opt = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        self._acc["optimizer"] += time.perf_counter() - self._t_opt
        self._rss["optimizer"] = peak_rss_gb()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        total = time.perf_counter() - self._t0
        phases = {p: round(self._acc.get(p, 0.0), 3) for p in PHASES}
        phases["other"] = round(total - sum(phases.values()), 3)
        cpu = round(time.process_time() - self._c0, 3)
        rss = {p: round(v, 3) for p, v in self._rss.items()}
        self.records.append(StepRecord(state.global_step, round(total, 3), phases, cpu, rss))

    def summary(self, skip: int = 1) -> dict[str, Any]:
        """Median seconds per step and per phase over the steps after the first ``skip`` (warm-up) steps."""
        recs = self.records[skip:] or self.records
        if not recs:
            return {"steps": 0}
        return {
            "steps": len(recs),
            "median_s_per_step": round(statistics.median(r.seconds for r in recs), 3),
            "median_cpu_s_per_step": round(statistics.median(r.cpu_seconds for r in recs), 3),
            "phases": {p: round(statistics.median(r.phases[p] for r in recs), 3) for p in (*PHASES, "other")},
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }
