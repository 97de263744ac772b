"""Reward metrics: the metric suite vs the straightforward way, on the same completions.

Completions are built from training golds with perturbations (``--steps`` GRPO steps x ``--generations``
completions, duplicates included as a policy produces them). Per step, both ways score the reasons of all
completions with ROUGE-1, BERTScore and BLEURT:

* straightforward: a fresh ``bert_score.score(...)`` per step (model and tokenizer reloaded each call, as an
  ``evaluate.load("bertscore")``-style compute does), a new ROUGE scorer (Mecab tagger) per item, and for BLEURT a
  freshly loaded encoder per step;
* suite: ``metrics.MetricSuite`` (encoders loaded once, one batch per step, reference embeddings cached, duplicate
  pairs scored once, morpheme analyses memoised).

The numbers must agree (ROUGE-1 exactly, the learned metrics within ``--tol``); the script prints both timings and
the speed ratio. Without local official checkpoints both ways use the same stand-ins (e5 BERTScore, e5-cosine BLEURT
proxy), the only encoders on an offline machine.

    python benchmarks/rewards.py --steps 16 --generations 8
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path


def build_completions(golds: list[str], steps: int, generations: int, seed: int) -> list[tuple[list[str], str]]:
    """(completions, gold) per step: the gold itself, cut, shuffled, swapped and duplicated reasons."""
    from malpyeong_grpo.answer import parse_answer

    rng = random.Random(seed)
    out = []
    for step in range(steps):
        gold = golds[step % len(golds)]
        p = parse_answer(gold)
        words = p.reason.split()
        other = parse_answer(rng.choice(golds)).reason
        variants = [
            gold,
            f"{p.answer_part}. {' '.join(words[: max(1, len(words) // 2)])}",
            f"{p.answer_part}. {' '.join(rng.sample(words, len(words)))}",
            f"{p.answer_part}. {other}",
            f"{p.answer_part}. {p.reason} {' '.join(other.split()[:6])}",
            f'"{p.sentence[:-1]}"가 옳다. {p.reason}',
        ]
        comps = [rng.choice(variants) for _ in range(generations)]
        comps[-1] = comps[0]  # a policy repeats itself: at least one duplicate per step
        out.append((comps, gold))
    return out


# ------------------------------------------------------------------ the straightforward way
def naive_rouge1(pred: str, ref: str) -> float:
    """A new scorer per item: a fresh Mecab tagger, the official preprocessing and py-rouge's F."""
    import re

    import mecab

    tagger = mecab.MeCab()

    def tokens(text: str) -> list[str]:
        text = " ".join(" ".join(text.split("\n")).split()[:1000])
        text = re.sub("[^A-Za-z0-9가-힣]", " ", text.lower()).strip()
        return " ".join(tagger.morphs(text)).split() if text else []

    h, r = tokens(pred), tokens(ref)
    hc, rc = Counter(h), Counter(r)
    overlap = sum(min(hc[g], rc[g]) for g in set(hc) & set(rc))
    p = overlap / len(h) if h else 0.0
    rr = overlap / len(r) if r else 0.0
    return 0.0 if p == 0.0 or rr == 0.0 else p * rr / (0.5 * p + 0.5 * rr)


def naive_bertscore(preds: list[str], refs: list[str], model_type: str, num_layers: int, device: str) -> list[float]:
    import bert_score

    _, _, f1 = bert_score.score(preds, refs, model_type=model_type, num_layers=num_layers, device=device)
    return f1.tolist()


def naive_bleurt_proxy(preds: list[str], refs: list[str], device: str) -> list[float]:
    """The BLEURT proxy (cosine of mean-pooled e5 token embeddings) with the encoder loaded for this call."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from malpyeong_grpo.e5 import e5_checkpoint

    path = e5_checkpoint()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, add_pooling_layer=False).eval().to(device)

    def emb(texts: list[str]) -> torch.Tensor:
        enc = tok([t.strip() for t in texts], padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc.to(device)).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    cos = torch.nn.functional.cosine_similarity(emb(preds), emb(refs), dim=-1).tolist()
    return [c if p.strip() and r.strip() else 0.0 for c, p, r in zip(cos, preds, refs, strict=True)]


def naive_step(preds: list[str], refs: list[str], suite_info: dict, device: str) -> dict[str, list[float]]:
    out = {"rouge1": [naive_rouge1(p, r) for p, r in zip(preds, refs, strict=True)]}
    bs = suite_info["bertscore"]
    model_type, layers = (bs.path, 9) if bs.official else (str(_e5_path()), 12)
    keep = [i for i, (p, r) in enumerate(zip(preds, refs, strict=True)) if p.strip() and r.strip()]
    f1 = naive_bertscore([preds[i] for i in keep], [refs[i] for i in keep], model_type, layers, device) if keep else []
    out["bertscore"] = [0.0] * len(
        preds
    )  # bert-score scores an empty side 0 (its encoding of "" fails on transformers 5)
    for i, v in zip(keep, f1, strict=True):
        out["bertscore"][i] = v
    if suite_info["bleurt"].official:
        from malpyeong_grpo.bleurt import bleurt_scores, load_bleurt

        model, tok = load_bleurt(suite_info["bleurt"].path, device)
        out["bleurt"] = bleurt_scores(model, tok, refs, preds)
    else:
        out["bleurt"] = naive_bleurt_proxy(preds, refs, device)
    return out


def _e5_path() -> Path:
    from malpyeong_grpo.e5 import e5_checkpoint

    return e5_checkpoint()


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data", help="folder with the official training split")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bertscore-model", default=None)
    ap.add_argument("--bleurt-model", default=None)
    ap.add_argument(
        "--threads", type=int, help="torch CPU threads for both ways (default: each its own: suite 1 on CPU, torch's)"
    )
    ap.add_argument("--tol", type=float, default=1e-5, help="largest accepted difference of the learned metrics")
    ap.add_argument("--out", help="write the measurements to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from malpyeong_grpo.answer import parse_answer
    from malpyeong_grpo.data import load_items, split_path
    from malpyeong_grpo.metrics import MetricSuite

    if args.threads:
        torch.set_num_threads(args.threads)  # the same for both ways
    _e5_path()  # convert once, outside both timings
    golds = [it.answer for it in load_items(split_path("train", args.data_dir), require_answer=True)]
    steps = build_completions(golds, args.steps, args.generations, args.seed)
    pairs = [
        ([parse_answer(c).reason for c in comps], [parse_answer(gold).reason] * len(comps)) for comps, gold in steps
    ]

    t0, c0 = time.perf_counter(), time.process_time()
    suite = MetricSuite(args.bertscore_model, args.bleurt_model, args.device, threads=args.threads)
    fast = []
    for preds, refs in pairs:
        fast.append({"rouge1": suite.rouge1(preds, refs), "bertscore": suite.bertscore(preds, refs),
                     "bleurt": suite.bleurt(preds, refs)})  # fmt: skip
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    slow = [naive_step(preds, refs, suite.encoders, args.device) for preds, refs in pairs]
    t_slow, c_slow = time.perf_counter() - t0, time.process_time() - c0

    diffs = {m: max(abs(a - b) for f, s in zip(fast, slow, strict=True) for a, b in zip(f[m], s[m], strict=True))
             for m in ("rouge1", "bertscore", "bleurt")}  # fmt: skip
    ok = diffs["rouge1"] == 0.0 and diffs["bertscore"] <= args.tol and diffs["bleurt"] <= args.tol
    n = sum(len(p) for p, _ in pairs)
    result = {
        "steps": args.steps,
        "generations": args.generations,
        "completions": n,
        "distinct_pairs": len({pair for p, r in pairs for pair in zip(p, r, strict=True)}),
        "encoders": {k: v.label for k, v in suite.encoders.items()},
        "suite_s": round(t_fast, 2),
        "straightforward_s": round(t_slow, 2),
        "speedup": round(t_slow / t_fast, 1),
        "suite_cpu_s": round(c_fast, 2),  # process CPU time: less sensitive to other jobs on a shared machine
        "straightforward_cpu_s": round(c_slow, 2),
        "speedup_cpu": round(c_slow / c_fast, 1),
        "load_avg_1min": os.getloadavg()[0],
        "max_abs_diff": diffs,
        "identical": ok,
        "torch_threads": torch.get_num_threads(),
        "suite_threads": suite.threads,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    print(
        f"{n} completions in {args.steps} steps: suite {t_fast:.1f}s wall / {c_fast:.1f}s CPU, straightforward "
        f"{t_slow:.1f}s wall / {c_slow:.1f}s CPU -> {t_slow / t_fast:.1f}x faster (wall), "
        f"{c_slow / c_fast:.1f}x (CPU); numbers {'agree' if ok else 'DIFFER'} (max |diff| {diffs})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
