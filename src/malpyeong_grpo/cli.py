"""One command line: ``malpyeong-grpo <verb> [options]``.

Each verb lives in the module named for what it does; this file only dispatches and turns bad input
(DataError) into one line per problem and exit code 2, without a traceback.
"""

from __future__ import annotations

import errno
import importlib
import sys

from .files import DataError

# verb -> (module, function taking argv and returning an exit code, one-line help)
VERBS: dict[str, tuple[str, str, str]] = {
    "score": ("score_cli", "score_command", "score predictions against gold answers as the competition does"),
    "train": ("train", "train_command", "GRPO training from a recipe (TRL GRPOTrainer)"),
    "sft": ("sft", "sft_command", "supervised warm start on the training split (TRL SFTTrainer)"),
    "demo": ("demo", "demo_command", "embedded default: SFT then GRPO on CPU in minutes, held-out scores per stage"),
    "predict": ("predict", "predict_command", "generate a submission file (resumable)"),
    "evaluate": ("evaluate", "evaluate_command", "predict + score with breakdowns and a report"),
    "baseline": ("baseline", "baseline_command", "answers without a model, from the nearest training items"),
    "rules": ("rules", "rules_command", "parse the reference rule document into rules.jsonl"),
    "retrieve": ("retrieval", "retrieve_command", "retrieve rules for each item (bm25, dense, hybrid, learned)"),
    "label": ("labels", "label_command", "gold-context labels: PPL-based or lexical (resumable)"),
    "retrieval-report": ("retrieval_report", "report_command", "retriever recall/MRR and the context ablation"),
    "plan": ("plan", "plan_command", "memory budget of a recipe, computed from the model config"),
}


def _usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: malpyeong-grpo <verb> [options]   (malpyeong-grpo <verb> --help for a verb's options)", ""]
    lines += [f"  {verb:<{width}}  {help_}" for verb, (_, _, help_) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``malpyeong-grpo`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from . import __version__

        print(__version__)
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"malpyeong-grpo: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = VERBS[verb]
    command = getattr(importlib.import_module(f"malpyeong_grpo.{module}"), func)
    try:
        return int(command(rest) or 0)
    except DataError as e:
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except OSError as e:  # a write deep inside a library (a checkpoint, a cache) on a full or read-only disk
        if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f"{e.filename}: " if e.filename is not None else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
