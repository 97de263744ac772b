"""The retrieval report (``malpyeong-grpo retrieval-report``): Recall@k and MRR of each retriever on dev against the
lexical (and PPL) gold-context labels and the hand labels, and the dev ablation of final scores with no context,
the retrieved rules and the gold rule (completions cached in resumable JSONL files)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .data import Item, load_items
from .files import (
    DataError,
    append_jsonl,
    atomic_write_text,
    check_outputs,
    lock_path,
    output_lock,
    read_jsonl,
    write_jsonl,
)
from .flags import flag
from .labels import HAND_LABEL_SETS, LABEL_METHODS, hand_labels, lexical_labels
from .rules import Rule, format_rule, load_labels, load_rules
from .tables import markdown_table


def retrieval_metrics(
    retrieved: dict[str, list[str]], labels: dict[str, str], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, Any]:
    """Recall@k and MRR of a retrieval against gold labels, over the labelled items."""
    ids = [i for i in labels if i in retrieved]
    if not ids:
        return {"n_items": 0}
    out: dict[str, Any] = {"n_items": len(ids)}
    for k in ks:
        out[f"recall@{k}"] = sum(labels[i] in retrieved[i][:k] for i in ids) / len(ids)
    out["mrr"] = sum(1 / (retrieved[i].index(labels[i]) + 1) if labels[i] in retrieved[i] else 0.0 for i in ids) / len(
        ids
    )
    return out


def _memo(embed: Callable[[Sequence[str], str], Any]) -> Callable[[Sequence[str], str], Any]:
    """An embedding function that computes each (text, kind) once (the report builds several dense indexes)."""
    import numpy as np

    cache: dict[tuple[str, str], Any] = {}

    def wrapped(texts: Sequence[str], kind: str) -> Any:
        todo = list(dict.fromkeys(t for t in texts if (t, kind) not in cache))
        if todo:
            for t, v in zip(todo, np.asarray(embed(todo, kind)), strict=True):
                cache[(t, kind)] = v
        return np.stack([cache[(t, kind)] for t in texts])

    return wrapped


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    write_jsonl(path, rows)


def _generate_cached(
    cache: Path, items: Sequence[Item], prompts: Sequence[Any], model: Any, tokenizer: Any, config: dict, args: Any
) -> dict[str, str]:
    """Completions per item id, appended to a JSONL cache as each batch finishes (resumable). A cached completion
    is reused only for the same settings and the same prompt (its SHA-256), so new labels or retrievals that change
    a prompt generate again."""
    import hashlib

    from .generation import generate_answers

    digests = {
        it.id: hashlib.sha256(json.dumps(p, ensure_ascii=False).encode()).hexdigest()
        for it, p in zip(items, prompts, strict=True)
    }
    done = {}
    for row in read_jsonl(cache):
        if row.get("config") == config and row.get("prompt_sha256") == digests.get(row.get("id")):
            done[row["id"]] = row["completion"]
    todo = [(it, p) for it, p in zip(items, prompts, strict=True) if it.id not in done]
    for start in range(0, len(todo), args.batch_size):
        chunk = todo[start : start + args.batch_size]
        outs = generate_answers(
            model,
            tokenizer,
            [p for _, p in chunk],
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=False,
        )
        for (it, _), text in zip(chunk, outs, strict=True):
            append_jsonl(cache, {"id": it.id, "completion": text, "config": config, "prompt_sha256": digests[it.id]})
            done[it.id] = text
    return done


def _ablation(args: Any, rules: list[Rule], dev: list[Item], train: list[Item], contexts: dict, out_dir: Path) -> dict:
    """Final scores of the same model on the same dev items with no context, the retrieved rules and the gold
    (oracle) rule."""
    import time

    from .metrics import get_suite, score
    from .models import load_model, load_tokenizer
    from .prompts import build_prompt, extract_answer, select_shots

    items = dev[: args.ablation_items]
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=args.dtype).eval()
    by_id = {r.id: r for r in rules}
    conditions = {
        "no context": {it.id: [] for it in items},
        f"retrieved top-{args.context_k} ({args.ablation_method})": {
            it.id: [format_rule(by_id[r], args.max_rule_chars) for r in contexts[it.id][: args.context_k]]
            for it in items
        },
        f"gold rule ({args.oracle} label, oracle)": {
            it.id: [format_rule(by_id[args.oracle_labels[it.id]], args.max_rule_chars)] for it in items
        },
    }
    golds = {it.id: it.answer or "" for it in items}
    suite = get_suite()
    results = {}
    for n, (name, ctx) in enumerate(conditions.items()):
        prompts = [
            build_prompt(it, select_shots(it, train, args.num_shots, seed=0), ctx[it.id], tokenizer) for it in items
        ]
        config = {"model": args.model, "condition": name, "shots": args.num_shots, "max_new": args.max_new_tokens}
        t0 = time.time()
        print(f"ablation: {name} ({len(items)} items)", file=sys.stderr)
        raw = _generate_cached(out_dir / f"ablation_{n}.jsonl", items, prompts, model, tokenizer, config, args)
        preds = {it.id: extract_answer(raw[it.id]) for it in items}
        res = score(preds, golds, suite)
        res["seconds"] = round(time.time() - t0)
        results[name] = res
    return {"n_items": len(items), "item_ids": [it.id for it in items], "conditions": results}


def _md_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return markdown_table(head, rows, lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))


REPORT_K = 30  # rules retrieved per dev item in the report: Recall@1/5/10/30 and MRR over the top 30
REPORT_KS = (1, 5, 10, 30)


def report_command(argv: list[str]) -> int:
    """``malpyeong-grpo retrieval-report``: Recall@1/5/10/30 and MRR (over the top 30) of each retriever on dev
    against the lexical (and PPL) labels (``learned`` only with the training examples it learns from), and the dev
    ablation of final scores with no context, retrieved context and the gold rule."""
    from .data import default_data_dir, split_path
    from .retrieval import METHODS

    ap = argparse.ArgumentParser(prog="malpyeong-grpo retrieval-report", description=report_command.__doc__)
    ap.add_argument("--rules", required=True, help="rules.jsonl or the reference .docx")
    ap.add_argument(*flag("data_dir"), help="official data folder (default ../shared/data)")
    ap.add_argument(*flag("ppl_labels"), help="PPL labels of the dev items (malpyeong-grpo label --method ppl)")
    ap.add_argument("--methods", default=",".join(METHODS), help="retrievers to compare (default all)")
    ap.add_argument(*flag("ablation_items"), type=int, default=20, help="first N dev items for the ablation (0: skip)")
    ap.add_argument(*flag("ablation_method"), choices=METHODS, default="hybrid", help="retriever for the ablation")
    ap.add_argument("--oracle", choices=LABEL_METHODS, default="lexical", help="labels giving the oracle rule")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument(*flag("context_k"), type=int, default=3, help="retrieved rules per prompt (default 3)")
    ap.add_argument(*flag("num_shots"), type=int, default=2, help="few-shot examples from train (default 2)")
    ap.add_argument(*flag("max_rule_chars"), type=int, default=400)
    ap.add_argument(*flag("max_new_tokens"), type=int, default=160)
    ap.add_argument(*flag("batch_size"), type=int, default=4)
    ap.add_argument(
        *flag("out_dir"), default="reports/rag", help="report.md, report.json and caches (default reports/rag)"
    )
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if data_dir is None:
        raise DataError(["no --data-dir and no official data in ../shared/data"])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise DataError([f"--methods: unknown retriever(s) {bad} (expected some of {', '.join(METHODS)})"])
    if args.ablation_items < 0 or args.context_k < 1:
        raise DataError(["--ablation-items must be >= 0 and --context-k >= 1"])
    if args.ablation_items and args.oracle == "ppl" and not args.ppl_labels:
        raise DataError(["--oracle ppl needs --ppl-labels"])
    if min(args.max_rule_chars, args.max_new_tokens, args.batch_size) < 1 or args.num_shots < 0:
        raise DataError(["--max-rule-chars, --max-new-tokens and --batch-size must be at least 1, --num-shots >= 0"])
    out_dir = Path(args.out_dir)
    names = ["report.json", "report.md", "labels_lexical_train.jsonl", "labels_lexical_dev.jsonl"]
    names += [f"retrieved_dev_{m}{x}.jsonl" for m in METHODS for x in ("", "_examples")]
    names += [f"ablation_{n}.jsonl" for n in range(3)]
    inputs = [("--rules", args.rules), ("--ppl-labels", args.ppl_labels)]
    inputs += [(f"the {s} split", split_path(s, data_dir)) for s in ("train", "dev")]
    outputs = [(f"output {n}", out_dir / n) for n in names] + [("its lock", lock_path(out_dir))]
    check_outputs(inputs, outputs, [("--out-dir", out_dir)])
    with output_lock(out_dir):  # a second report into the same folder stops here
        return _report(args, argv, data_dir, methods)


def _report(args: argparse.Namespace, argv: list[str], data_dir: Path, methods: list[str]) -> int:
    """report_command's work, under the --out-dir lock."""
    import datetime as dt
    import platform

    from .data import split_path
    from .files import write_json
    from .retrieval import retrieve
    from .retrievers import default_embed, example_passages

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rules = load_rules(args.rules)
    train = load_items(split_path("train", data_dir), require_answer=True)
    dev = load_items(split_path("dev", data_dir), require_answer=True)
    lex_train, lex_dev = lexical_labels(train, rules), lexical_labels(dev, rules)
    _write_rows(out_dir / "labels_lexical_train.jsonl", lex_train)
    _write_rows(out_dir / "labels_lexical_dev.jsonl", lex_dev)
    label_sets = {"lexical": {r["id"]: r["rule_id"] for r in lex_dev}}
    if args.ppl_labels:
        label_sets["ppl"] = load_labels(args.ppl_labels)
    examples = example_passages(train, {r["id"]: r["rule_id"] for r in lex_train})
    # the hand-labelled training items (each retrieved without its own label) go through the same retrievers
    hand_sets = {name: hand_labels(train, name) for name in HAND_LABEL_SETS}
    hand = {i: g for gold in hand_sets.values() for i, g in gold.items()}
    hand_items = [it for it in train if it.id in hand]
    lex_all = {r["id"]: r["rule_id"] for r in lex_train}
    hand_report: dict[str, Any] = {
        "n_items": len(hand_items),
        "labeller": {n: [sum(lex_all[i] == g for i, g in gold.items()), len(gold)] for n, gold in hand_sets.items()},
        "retrieval": {},
    }
    embed = _memo(default_embed)
    retrieval: dict[str, Any] = {}
    retrieved_by: dict[str, dict[str, list[str]]] = {}
    for method in methods:
        for variant, exs in (("rules", []), ("rules + train examples", examples)):
            if method == "learned" and not exs:
                continue  # the learned retriever learns from the labelled training examples
            name = f"{method} / {variant}"
            print(f"retrieval: {name}", file=sys.stderr)
            rows = retrieve(dev + hand_items, rules, method, REPORT_K, exs, embed)  # one index for both
            dev_rows = rows[: len(dev)]
            got = {r["id"]: r["rule_ids"] for r in dev_rows}
            retrieved_by[name] = got
            slug = f"{method}{'_examples' if exs else ''}"
            _write_rows(out_dir / f"retrieved_dev_{slug}.jsonl", dev_rows)
            retrieval[name] = {lab: retrieval_metrics(got, ls, REPORT_KS) for lab, ls in label_sets.items()}
            hand_got = {r["id"]: r["rule_ids"] for r in rows[len(dev) :]}
            hand_report["retrieval"][name] = retrieval_metrics(hand_got, hand, REPORT_KS)
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os_cpus()} CPU cores, no GPU" if not _cuda() else "GPU",
        "command": "malpyeong-grpo retrieval-report " + " ".join(argv),
        "dev_items": len(dev),
        "labels": {
            "lexical": "best IDF-weighted ROUGE-1 F (content morphemes) between the gold reason and a rule segment,"
            " plus quoted-term and phonetic-symbol matches",
            **({"ppl": str(args.ppl_labels)} if args.ppl_labels else {}),
        },
        "retrieval": retrieval,
        "hand": hand_report,
    }
    if args.ablation_items:
        oracle = label_sets[args.oracle]
        missing = [it.id for it in dev[: args.ablation_items] if it.id not in oracle]
        if missing:
            raise DataError([f"{args.ppl_labels}: no label for dev item(s) {', '.join(missing[:5])}"])
        args.oracle_labels = oracle
        ctx = retrieved_by.get(f"{args.ablation_method} / rules + train examples")
        if ctx is None:
            rows = retrieve(dev, rules, args.ablation_method, REPORT_K, examples, embed)
            ctx = {r["id"]: r["rule_ids"] for r in rows}
        report["ablation"] = _ablation(args, rules, dev, train, ctx, out_dir)
    write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", "\n".join(_markdown(report)) + "\n")
    print("\n".join(_markdown(report)))
    print(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.json'}", file=sys.stderr)
    return 0


def os_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _markdown(report: dict[str, Any]) -> list[str]:
    lines = [
        "# Retrieval report",
        "",
        f"{report['date']}, {report['machine']}: `{report['command']}`",
        "",
        f"## Retrieval on dev ({report['dev_items']} items)",
        "",
    ]
    for lab in report["labels"]:
        rows = []
        for name, res in report["retrieval"].items():
            m = res.get(lab, {})
            rows.append([name, m.get("n_items", 0), *(m.get(f"recall@{k}", "") for k in REPORT_KS), m.get("mrr", "")])
        lines += [f"Against the {lab} labels:", ""]
        head = ["retriever", "items", *(f"R@{k}" for k in REPORT_KS), f"MRR@{REPORT_K}"]
        lines += _md_table(head, rows) + [""]
    hand = report.get("hand") or {}
    if hand.get("n_items"):
        agree = ", ".join(f"{name} set {a}/{n}" for name, (a, n) in hand["labeller"].items())
        lines += [
            f"## Against hand labels ({hand['n_items']} training items)",
            "",
            f"The lexical label equals the hand label for: {agree}. Each item is retrieved without its own label"
            " (its example passage left out; `learned`: cross-fitted).",
            "",
        ]
        rows = [
            [name, m.get("n_items", 0), *(m.get(f"recall@{k}", "") for k in REPORT_KS), m.get("mrr", "")]
            for name, m in hand["retrieval"].items()
        ]
        lines += _md_table(["retriever", "items", *(f"R@{k}" for k in REPORT_KS), f"MRR@{REPORT_K}"], rows) + [""]
    abl = report.get("ablation")
    if abl:
        lines += [f"## Context ablation (first {abl['n_items']} dev items, same model)", ""]
        keys = ["final", "final_standin", "exact_match", "rouge_1", "bertscore", "bertscore_standin", "bleurt"]
        keys.append("bleurt_proxy")
        present = [k for k in keys if any(c.get(k) is not None for c in abl["conditions"].values())]
        rows = [[name, *(c.get(k) for k in present), c.get("seconds")] for name, c in abl["conditions"].items()]
        lines += _md_table(["context", *present, "seconds"], rows) + [""]
        notes = {n for c in abl["conditions"].values() for n in c.get("notes", [])}
        lines += [f"- {n}" for n in sorted(notes)]
    return lines
