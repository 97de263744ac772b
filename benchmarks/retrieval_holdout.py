"""Retrieval on a hold-out of the training split, and how far knowing the rule's category would take it.

The training split's ids are shuffled with ``random.Random(seed)``; the first ``--holdout`` items are held out, the
others are the labelled examples (lexical labels, ``labels.lexical_labels``) the retrievers learn from. Each
retriever ranks the rules for the held-out items; Recall@1/5/10/30 is measured against the held-out items' lexical
labels. The *oracle-category* row keeps the ``learned`` ranking but drops every rule outside the category of the
gold rule (띄어쓰기, 문장 부호, 외래어 표기법, 한글 맞춤법·표준어 규정): an upper bound for any category router put
in front of it. Dev is not read.

    python benchmarks/retrieval_holdout.py --out benchmarks/results/retrieval_holdout.json
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from malpyeong_grpo.data import default_data_dir, load_items, split_path  # noqa: E402
from malpyeong_grpo.files import write_json  # noqa: E402
from malpyeong_grpo.labels import lexical_labels  # noqa: E402
from malpyeong_grpo.retrieval import retrieve  # noqa: E402
from malpyeong_grpo.retrieval_report import retrieval_metrics  # noqa: E402
from malpyeong_grpo.retrievers import example_passages  # noqa: E402
from malpyeong_grpo.rules import load_rules  # noqa: E402

KS = (1, 5, 10, 30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", help="official data folder (default ../shared/data)")
    ap.add_argument("--rules", help="rules.jsonl or the reference .docx (default: the .docx of --data-dir)")
    ap.add_argument("--holdout", type=int, default=125, help="held-out training items (default 125)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="bm25,learned")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if data_dir is None:
        print("error: no --data-dir and no official data in ../shared/data", file=sys.stderr)
        return 2
    rules = load_rules(args.rules or data_dir / "reference_rules.docx")
    category = {r.id: r.category for r in rules}
    train = load_items(split_path("train", data_dir), require_answer=True)
    labels = {r["id"]: r["rule_id"] for r in lexical_labels(train, rules)}
    ids = [it.id for it in train]
    random.Random(args.seed).shuffle(ids)
    held = set(ids[: args.holdout])
    examples_items = [it for it in train if it.id not in held]
    holdout = [it for it in train if it.id in held]
    gold = {it.id: labels[it.id] for it in holdout}
    examples = example_passages(examples_items, {i: labels[i] for i in (it.id for it in examples_items)})

    rows: dict[str, dict] = {}
    start = time.perf_counter()
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        for variant, exs in (("rules", []), ("rules + train examples", examples)):
            if method == "learned" and not exs:
                continue
            got = {r["id"]: r["rule_ids"] for r in retrieve(holdout, rules, method, 115, exs)}
            rows[f"{method} / {variant}"] = retrieval_metrics(got, gold, KS)
            if method == "learned":
                same = {i: [d for d in got[i] if category[d] == category[gold[i]]] for i in got}
                rows["learned, oracle category"] = retrieval_metrics(same, gold, KS)
                by_cat: dict[str, dict] = {}
                for cat in sorted(set(category.values())):
                    sub = {i: g for i, g in gold.items() if category[g] == cat}
                    by_cat[cat] = {
                        "items": len(sub),
                        "learned": retrieval_metrics(got, sub, (5,)).get("recall@5"),
                        "oracle category": retrieval_metrics(same, sub, (5,)).get("recall@5"),
                    }
                rows["learned, R@5 by gold category"] = by_cat
    result = {
        "command": "python benchmarks/retrieval_holdout.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "holdout_items": len(holdout),
        "example_items": len(examples_items),
        "seconds": round(time.perf_counter() - start, 1),
        "recall": rows,
    }
    print(f"hold-out of {len(holdout)} training items, {len(examples_items)} labelled examples")
    print(f"{'retriever':36s} " + " ".join(f"R@{k:<5d}" for k in KS))
    for name, m in rows.items():
        if "n_items" in m:
            print(f"{name:36s} " + " ".join(f"{m[f'recall@{k}']:.3f}  " for k in KS))
    for cat, m in rows.get("learned, R@5 by gold category", {}).items():
        print(f"  {cat:34s} items {m['items']:3d}  R@5 {m['learned']:.3f}  oracle category {m['oracle category']:.3f}")
    if args.out:
        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
