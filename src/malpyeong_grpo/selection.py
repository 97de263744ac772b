"""Checkpoint choice by the task metric: a trainer mixin whose ``evaluate()`` answers the training hold-out by
greedy generation and scores it with the official EM and ROUGE-1, instead of a loss.

With ``eval_strategy``/``save_strategy`` on the same steps, ``metric_for_best_model: task_score`` and
``load_best_model_at_end: true``, the Trainer keeps (and ends with) the checkpoint with the best
``eval_task_score`` = (EM + ROUGE-1) / 2 on the hold-out; ``eval_exact_match`` and ``eval_rouge_1`` are logged
beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)
TASK_METRIC = "task_score"


def task_scores(completions: Sequence[str], golds: Sequence[str]) -> dict[str, float]:
    """Mean official EM and ROUGE-1 of completions against gold answers (a completion is cut as the rewards cut
    it: at the stop markers and its first line break), and their mean ``task_score``."""
    from .rewards import exact_match_reward, rouge_1_reward

    n = len(completions)
    if n == 0:
        return {"exact_match": 0.0, "rouge_1": 0.0, TASK_METRIC: 0.0}
    em = sum(exact_match_reward([""] * n, list(completions), answer=list(golds))) / n
    rouge = sum(rouge_1_reward([""] * n, list(completions), answer=list(golds))) / n
    return {"exact_match": em, "rouge_1": rouge, TASK_METRIC: (em + rouge) / 2}


class TaskMetricEvalMixin:
    """Mix into a transformers ``Trainer`` subclass (SFTTrainer, GRPOTrainer): ``evaluate()`` generates greedy
    answers to ``task_rows`` (dicts with ``prompt`` and ``answer``) and returns ``eval_exact_match``,
    ``eval_rouge_1`` and ``eval_task_score``."""

    task_rows: list[dict[str, Any]] = []
    task_max_new_tokens: int = 192
    task_batch_size: int = 8

    def evaluate(
        self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        from .generation import generate_answers

        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        start = time.perf_counter()
        completions = generate_answers(
            model,
            self.processing_class,
            [r["prompt"] for r in self.task_rows],
            max_new_tokens=self.task_max_new_tokens,
            batch_size=self.task_batch_size,
            progress=False,
        )
        model.train(was_training)
        scores = task_scores(completions, [r["answer"] for r in self.task_rows])
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
        metrics[f"{metric_key_prefix}_seconds"] = time.perf_counter() - start
        logger.info(
            "hold-out (%d items): EM %.3f, ROUGE-1 %.3f, task score %.3f",
            len(self.task_rows),
            scores["exact_match"],
            scores["rouge_1"],
            scores[TASK_METRIC],
        )
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def with_task_eval(trainer_class: type, rows: Sequence[dict[str, Any]], max_new_tokens: int = 192) -> type:
    """``trainer_class`` with ``TaskMetricEvalMixin``'s ``evaluate()`` on ``rows``."""
    return type(
        f"TaskEval{trainer_class.__name__}",
        (TaskMetricEvalMixin, trainer_class),
        {"task_rows": list(rows), "task_max_new_tokens": max_new_tokens},
    )
