"""Gold-context labels (which rule an answered item rests on) and the retrieval report.

* PPL-based, the method of this project: for each answered item, each candidate rule is scored by how much it
  lowers the model's perplexity of the gold answer, PPL(answer | question, rule) against PPL(answer | question),
  with teacher-forced log-probs of the answer tokens only; the rule with the largest drop is the label. Rows are
  appended to a JSONL cache as they are computed, so an interrupted run resumes where it stopped.
* Lexical, cheap and model-free: each rule scores the best IDF-weighted ROUGE-1 F between the gold reason and one
  of the rule's passages (a statement line, or a statement with its examples), over Mecab content morphemes, plus
  0.3 x the share of the terms quoted in the reason that the rule contains and 0.3 x the share of the reason's
  bracketed phonetic symbols ([ə]) that the rule names; the best-scoring rule is the label.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .answer import parse_answer
from .data import (
    DataError,
    Item,
    append_jsonl,
    atomic_write_text,
    check_outputs,
    load_items,
    lock_path,
    output_lock,
    read_jsonl,
    read_jsonl_file,
    write_jsonl,
)
from .flags import flag
from .rules import Rule, format_rule, load_rules

LABEL_METHODS = ("ppl", "lexical")
# content morphemes: nouns, verbs, adjectives, adverbs, determiners, roots, affixes, foreign words, Chinese characters
_CONTENT_TAGS = ("NN", "NR", "NP", "VV", "VA", "VX", "MA", "MM", "XR", "XSN", "XPN", "SL", "SH", "IC")


# ---------------------------------------------------------------------------------------------------------- lexical


@lru_cache(maxsize=1)
def _mecab() -> Any:
    import mecab

    return mecab.MeCab()


def content_morphemes(text: str) -> list[str]:
    """Mecab content morphemes of a text (particles, endings and punctuation dropped)."""
    return [form for form, tag in _mecab().pos(text) if tag.split("+")[0].startswith(_CONTENT_TAGS)]


def rouge1_f(
    candidate: Sequence[str], reference: Sequence[str], weights: Mapping[str, float] | None = None, default: float = 1.0
) -> float:
    """ROUGE-1 F1 of two token sequences (clipped unigram overlap); with ``weights``, each token counts its weight
    (``default`` for a token not in it) in the overlap, the precision and the recall."""
    cand, ref = Counter(candidate), Counter(reference)

    def w(t: str) -> float:
        return default if weights is None else weights.get(t, default)

    overlap = sum(min(n, ref[t]) * w(t) for t, n in cand.items())
    if not overlap:
        return 0.0
    p = overlap / sum(n * w(t) for t, n in cand.items())
    r = overlap / sum(n * w(t) for t, n in ref.items())
    return 2 * p * r / (p + r)


def rule_segments(rule: Rule) -> list[str]:
    """The passages a reason is compared with: each statement line, and each statement with its example lines."""
    units: list[str] = []
    for line in rule.text.splitlines():
        if line.startswith("- ") and units:
            units[-1] += " " + line[2:]
        else:
            units.append(line)
    return list(dict.fromkeys(rule.statements + units))


_QUOTED = re.compile(r"['‘’\"“”]([^'‘’\"“”]{1,30})['‘’\"“”]")
_BRACKETED = re.compile(r"\[([^\[\]\s가-힣]{1,3})\]")  # a phonetic symbol: [ə], [ˈa], not [한글]
# Deleted before quoted terms are matched: '(으)' (as in '-(으)로서'), whitespace, hyphens, tildes, parentheses.
_NORM = re.compile(r"\(으\)|[\s\-~()（）]")
QUOTED_WEIGHT = 0.3  # chosen on the 80 items of the "tuning" hand labels (hand_labels.json) only
BRACKET_WEIGHT = 0.3


def _norm(text: str) -> str:
    return _NORM.sub("", text)


def quoted_terms(reason: str) -> list[str]:
    """Distinct terms quoted in a reason ('...', "...", curly quotes), normalised, of 1 to 12 characters."""
    terms = (_norm(m.group(1)) for m in _QUOTED.finditer(reason))
    return list(dict.fromkeys(t for t in terms if 1 <= len(t) <= 12))


def bracket_terms(reason: str) -> list[str]:
    """Distinct phonetic symbols bracketed in a reason ([ə] -> 'ə'; stress marks stripped)."""
    terms = (m.group(1).strip("ˈˌ") for m in _BRACKETED.finditer(reason))
    return list(dict.fromkeys(t for t in terms if t))


def _names_symbol(rule_text: str, symbol: str) -> bool:
    """Whether a rule names a phonetic symbol: '[ə]' in its text, or a line 'ə는 ...' / 'ə은 ...' (the IPA table)."""
    return f"[{symbol}]" in rule_text or re.search(r"(^|\n)" + re.escape(symbol) + "[는은]", rule_text) is not None


class LexicalScorer:
    """Scores rules against a gold reason: the best IDF-weighted ROUGE-1 F of a rule's segments, plus
    ``QUOTED_WEIGHT`` x the share of the reason's quoted terms in the rule's text and title, plus ``BRACKET_WEIGHT``
    x the share of the reason's bracketed phonetic symbols the rule names. IDF is over the rules:
    log((N + 1) / (df + 0.5)), df = the number of the N rules whose segments contain the morpheme."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = list(rules)
        self.segments = [[content_morphemes(s) for s in rule_segments(r)] for r in self.rules]
        df = Counter(t for segs in self.segments for t in {t for s in segs for t in s})
        n = len(self.rules)
        self.idf = {t: math.log((n + 1) / (d + 0.5)) for t, d in df.items()}
        self.idf_unseen = math.log((n + 1) / 0.5)
        self.texts = [_norm(r.text + " " + r.title) for r in self.rules]

    def scores(self, reason: str) -> list[tuple[str, float]]:
        """(rule id, score) for every rule, best first (ties: by rule id)."""
        toks = content_morphemes(reason)
        quoted, symbols = quoted_terms(reason), bracket_terms(reason)
        out = []
        for rule, segs, text in zip(self.rules, self.segments, self.texts, strict=True):
            score = max((rouge1_f(toks, s, self.idf, self.idf_unseen) for s in segs if s), default=0.0)
            if quoted:
                score += QUOTED_WEIGHT * (sum(q in text for q in quoted) / len(quoted))
            if symbols:
                score += BRACKET_WEIGHT * (sum(_names_symbol(rule.text, b) for b in symbols) / len(symbols))
            out.append((rule.id, score))
        return sorted(out, key=lambda kv: (-kv[1], kv[0]))


def lexical_labels(items: Sequence[Item], rules: Sequence[Rule], top: int = 5) -> list[dict[str, Any]]:
    """One row per answered item: {'id', 'rule_id', 'score', 'method': 'lexical', 'top': [[rule_id, score], ...]}."""
    scorer = LexicalScorer(rules)
    rows = []
    for it in items:
        if it.answer is None:
            continue
        ranked = scorer.scores(parse_answer(it.answer).reason or it.answer)
        rows.append(
            {
                "id": it.id,
                "rule_id": ranked[0][0],
                "score": round(ranked[0][1], 6),
                "method": "lexical",
                "top": [[rid, round(s, 6)] for rid, s in ranked[:top]],
            }
        )
    return rows


HAND_LABEL_SETS = ("tuning", "validation")


def hand_labels(items: Sequence[Item], which: str | None = None) -> dict[str, str]:
    """The packaged hand labels (``hand_labels.json``: the rule each of 173 training items rests on, read by hand
    from its gold reason) of those ``items`` whose question is the one labelled: item id -> rule id. ``which``:
    'tuning' (the 80 items the lexical labeller's weights were chosen on), 'validation' (93 more), None for both."""
    import hashlib
    from importlib.resources import files

    if which not in (None, *HAND_LABEL_SETS):
        raise ValueError(f"hand label set {which!r}: expected one of {', '.join(HAND_LABEL_SETS)} or None")
    data = json.loads(files(__package__).joinpath("hand_labels.json").read_text(encoding="utf-8"))
    labelled = {k: v for name in HAND_LABEL_SETS if which in (None, name) for k, v in data[name].items()}
    out = {}
    for it in items:
        if it.id in labelled:
            rule_id, digest = labelled[it.id]
            if hashlib.sha256(it.question.encode()).hexdigest().startswith(digest):
                out[it.id] = rule_id
    return out


# -------------------------------------------------------------------------------------------------------------- PPL


def _prefix_and_target(item: Item, context: str | None, tokenizer: Any, target: str) -> tuple[str, str]:
    """Prompt text (with the rule as context, or none) and the text whose log-probs are scored."""
    from .prompts import build_prompt, has_chat_template, render

    prompt = render(build_prompt(item, contexts=[context] if context else [], tokenizer=tokenizer), tokenizer)
    answer = item.answer or ""
    sep = "" if has_chat_template(tokenizer) else " "
    if target == "reason":
        parsed = parse_answer(answer)
        return prompt + sep + parsed.answer_part + " ", parsed.reason
    return prompt + sep, answer


def answer_nll(model: Any, tokenizer: Any, prefixes: Sequence[str], target: str, batch_size: int = 4) -> list[float]:
    """Mean negative log-likelihood per token of ``target`` after each prefix (teacher forcing, one forward pass per
    batch, logits computed on the target positions only)."""
    import torch

    tgt = tokenizer(target, add_special_tokens=False)["input_ids"]
    if not tgt:
        raise ValueError("empty target")
    rows = [tokenizer(p)["input_ids"] + tgt for p in prefixes]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n = len(tgt)
    out: list[float] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):  # left padding: the target is the last n tokens of every row
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = (
                model(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=pos.to(device),
                    logits_to_keep=n + 1,
                )
                .logits[:, :-1]
                .float()
            )
        logp = torch.log_softmax(logits, dim=-1)
        gold = torch.tensor(tgt, device=logp.device).expand(len(chunk), n)
        nll = -logp.gather(-1, gold.unsqueeze(-1)).squeeze(-1).mean(dim=1)
        out += [float(x) for x in nll.cpu()]
    return out


def ppl_label_row(
    item: Item,
    candidates: Sequence[Rule],
    model: Any,
    tokenizer: Any,
    max_rule_chars: int | None = 600,
    batch_size: int = 4,
    target: str = "answer",
) -> dict[str, Any]:
    """The PPL label of one answered item among ``candidates``: the rule whose context lowers the answer's
    mean NLL the most (``gain`` = NLL without context - NLL with it; PPL = exp(NLL))."""
    contexts = [None] + [format_rule(r, max_rule_chars) for r in candidates]
    prefixes, tgts = zip(*(_prefix_and_target(item, c, tokenizer, target) for c in contexts), strict=True)
    nlls = answer_nll(model, tokenizer, prefixes, tgts[0], batch_size)
    base, per_rule = nlls[0], nlls[1:]
    ranked = sorted(zip((r.id for r in candidates), per_rule, strict=True), key=lambda kv: (kv[1], kv[0]))
    best_id, best_nll = ranked[0]
    return {
        "id": item.id,
        "rule_id": best_id,
        "gain": round(base - best_nll, 6),
        "base_ppl": round(math.exp(base), 4),
        "ppl": round(math.exp(best_nll), 4),
        "method": "ppl",
        "candidates": [[rid, round(v, 6)] for rid, v in ranked],
        "base_nll": round(base, 6),
    }


def ppl_labels(
    items: Sequence[Item],
    rules: Sequence[Rule],
    candidates: dict[str, list[str]],
    model: Any,
    tokenizer: Any,
    out: str | Path,
    config: dict[str, Any],
    max_rule_chars: int | None = 600,
    batch_size: int = 4,
    target: str = "answer",
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """PPL labels of the answered items, appended to the JSONL cache ``out`` one item at a time; items already in
    it are skipped (resume). ``config`` is stored in each row; a cache made under another config is an error."""
    out = Path(out)
    by_id = {r.id: r for r in rules}
    done = {}
    for row in read_jsonl(out):
        if row.get("config") != config:
            raise DataError(
                [f"{out}: made with other settings ({row.get('config')}); give another --out or the same options"]
            )
        done[row["id"]] = row
    todo = [it for it in items if it.answer is not None and it.id not in done]
    bar = None
    if progress:
        from tqdm import tqdm

        answered = sum(it.answer is not None for it in items)
        bar = tqdm(total=answered, initial=answered - len(todo), desc="PPL labels", unit="item", file=sys.stderr)
    try:
        for it in todo:
            cands = [by_id[c] for c in candidates[it.id]]
            row = ppl_label_row(it, cands, model, tokenizer, max_rule_chars, batch_size, target)
            row["config"] = config
            append_jsonl(out, row)
            done[it.id] = row
            if bar is not None:
                bar.update(1)
            if on_row is not None:
                on_row(row)
    finally:
        if bar is not None:
            bar.close()
    return [done[it.id] for it in items if it.id in done]


def ppl_candidates(
    items: Sequence[Item], rules: Sequence[Rule], n: int, retrieved: dict[str, list[str]] | None, lexical: int
) -> dict[str, list[str]]:
    """Candidate rules per item: the top-n retrieved ones, then the ``lexical`` best by overlap with the gold
    reason (the answer is known for labelled items), without duplicates."""
    from .retrieval import retrieve

    ret = retrieved if retrieved is not None else {r["id"]: r["rule_ids"] for r in retrieve(items, rules, "bm25", n)}
    scorer = LexicalScorer(rules) if lexical > 0 else None
    out: dict[str, list[str]] = {}
    for it in items:
        if it.answer is None:
            continue
        if it.id not in ret:
            raise DataError([f"no retrieval for item id {it.id!r} in the --retrieved file"])
        cands = list(ret[it.id][:n])
        if scorer is not None:
            cands += [rid for rid, _ in scorer.scores(parse_answer(it.answer).reason or it.answer)[:lexical]]
        out[it.id] = list(dict.fromkeys(cands))
    return out


# -------------------------------------------------------------------------------------------------------------- I/O


def load_labels(path: str | Path) -> dict[str, str]:
    """item id -> gold rule id, from a label file (JSONL rows with 'id' and 'rule_id'), read strictly: the user's
    file is never changed (a cut-off last line is an error, not dropped)."""
    path = Path(path)
    out: dict[str, str] = {}
    missing = f"file not found (make it with: malpyeong-grpo label --out {path})"
    for n, row in enumerate(read_jsonl_file(path, missing), 1):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("rule_id"), str):
            raise DataError([f"{path}: row {n}: expected {{'id': str, 'rule_id': str, ...}}"])
        out[row["id"]] = row["rule_id"]
    return out


def label_command(argv: list[str]) -> int:
    """``malpyeong-grpo label``: gold-context labels of the answered items of a data file."""
    ap = argparse.ArgumentParser(prog="malpyeong-grpo label", description=label_command.__doc__)
    ap.add_argument("--method", choices=LABEL_METHODS, default="ppl")
    ap.add_argument("--rules", required=True, help="rules.jsonl or the reference .docx")
    ap.add_argument("--data", required=True, help="answered items (official JSON or JSONL)")
    ap.add_argument("--out", required=True, help="label JSONL (the PPL run appends to it and resumes from it)")
    ap.add_argument("--model", default="embedded", help="PPL: model id, folder, .gguf or 'embedded' (default)")
    ap.add_argument("--dtype", default="float32", help="PPL: model dtype (default float32)")
    ap.add_argument(
        "--retrieved", help="PPL: candidate rules per item (retrieve output); default: BM25 top --candidates"
    )
    ap.add_argument("--candidates", type=int, default=5, help="PPL: top-N retrieved candidates per item (default 5)")
    ap.add_argument(
        *flag("lexical_candidates"), type=int, default=3, help="PPL: add the N lexically closest rules (default 3)"
    )
    ap.add_argument("--target", choices=("answer", "reason"), default="answer", help="PPL: tokens scored")
    ap.add_argument(*flag("max_rule_chars"), type=int, default=600, help="PPL: rule text cut (default 600)")
    ap.add_argument(*flag("batch_size"), type=int, default=4)
    ap.add_argument("--limit", type=int, help="only the first N items")
    ap.add_argument(*flag("max_chars"), type=int, help="longest question/answer accepted (default 4000)")
    args = ap.parse_args(argv)
    problems = [
        f"--{k.replace('_', '-')} must be at least {least}, got {getattr(args, k)}"
        for k, least in (("candidates", 1), ("batch_size", 1), ("lexical_candidates", 0), ("max_rule_chars", 1))
        if getattr(args, k) < least
    ]
    problems += [
        f"--{k.replace('_', '-')} must be at least 1, got {getattr(args, k)}"
        for k in ("limit", "max_chars")
        if getattr(args, k) is not None and getattr(args, k) < 1
    ]
    if problems:
        raise DataError(problems)
    inputs = [("--rules", args.rules), ("--data", args.data), ("--retrieved", args.retrieved)]
    check_outputs(inputs, [("--out", args.out), ("its lock", lock_path(args.out))])
    with output_lock(args.out):  # a second label run on the same --out stops here
        return _label(args)


def _label(args: argparse.Namespace) -> int:
    """label_command's work, under the --out lock."""
    rules = load_rules(args.rules)
    items = load_items(args.data, require_answer=True, max_chars=args.max_chars)  # a blank gold answer is an error
    if args.limit is not None:
        items = items[: args.limit]
    if args.method == "lexical":
        rows = lexical_labels(items, rules)
        write_jsonl(args.out, rows)
        print(f"{len(rows)} lexical labels -> {args.out}", file=sys.stderr)
        return 0
    from .models import load_model, load_tokenizer
    from .retrieval import load_retrieved

    retrieved = load_retrieved(args.retrieved) if args.retrieved else None
    cands = ppl_candidates(items, rules, args.candidates, retrieved, args.lexical_candidates)
    config = {
        "model": args.model,
        "candidates": args.candidates,
        "lexical_candidates": args.lexical_candidates,
        "retrieved": args.retrieved,
        "target": args.target,
        "max_rule_chars": args.max_rule_chars,
    }
    try:
        tokenizer = load_tokenizer(args.model)
        model = load_model(args.model, dtype=args.dtype).eval()
    except (OSError, ValueError) as e:  # a missing or malformed model folder / id
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError([f"{args.model}: cannot load the model ({first})"]) from None
    rows = ppl_labels(
        items, rules, cands, model, tokenizer, args.out, config, args.max_rule_chars, args.batch_size, args.target
    )
    gains = sum(r["gain"] > 0 for r in rows)
    print(f"{len(rows)} PPL labels -> {args.out} ({gains} where the best rule lowers the perplexity)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------------- report


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
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _generate_cached(
    cache: Path, items: Sequence[Item], prompts: Sequence[Any], model: Any, tokenizer: Any, config: dict, args: Any
) -> dict[str, str]:
    """Completions per item id, appended to a JSONL cache as each batch finishes (resumable). A cached completion
    is reused only for the same settings and the same prompt (its SHA-256), so new labels or retrievals that change
    a prompt generate again."""
    import hashlib

    from .predict import generate_answers

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
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(cell(v) for v in r) + " |" for r in rows
    ]


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

    from .data import split_path, write_json
    from .retrieval import default_embed, example_passages, retrieve

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
