"""Gold-context labels: which rule an answered item rests on (the retrieval report is retrieval_report.py).

* PPL-based, the method of this project: for each answered item, each candidate rule is scored by how much it
  lowers the model's perplexity of the gold answer, PPL(answer | question, rule) against PPL(answer | question),
  with teacher-forced log-probs of the answer tokens only; the rule with the largest drop is the label. Rows are
  appended to a JSONL cache as they are computed, so an interrupted run resumes where it stopped.
* Lexical, cheap and model-free: each rule scores the best IDF-weighted ROUGE-1 F (``rouge.unigram_f``) between
  the gold reason and one of the rule's segments (``rules.rule_segments``: a statement line, or a statement with its
  examples), over Mecab content morphemes, plus 0.3 x the share of the terms quoted in the reason that the rule
  contains and 0.3 x the share of the reason's bracketed phonetic symbols ([ə]) that the rule names; the
  best-scoring rule is the label.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .answer import parse_answer
from .data import Item, load_items
from .files import DataError, append_jsonl, check_outputs, lock_path, output_lock, read_jsonl, write_jsonl
from .flags import flag
from .rouge import unigram_f
from .rules import Rule, format_rule, load_rules, rule_segments
from .text import mecab

LABEL_METHODS = ("ppl", "lexical")
# content morphemes: nouns, verbs, adjectives, adverbs, determiners, roots, affixes, foreign words, Chinese characters
_CONTENT_TAGS = ("NN", "NR", "NP", "VV", "VA", "VX", "MA", "MM", "XR", "XSN", "XPN", "SL", "SH", "IC")


# ---------------------------------------------------------------------------------------------------------- lexical


def content_morphemes(text: str) -> list[str]:
    """Mecab content morphemes of a text (particles, endings and punctuation dropped)."""
    return [form for form, tag in mecab().pos(text) if tag.split("+")[0].startswith(_CONTENT_TAGS)]


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
            score = max((unigram_f(toks, s, self.idf, self.idf_unseen) for s in segs if s), default=0.0)
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
    batch, logits computed on the target positions only: ``lm.continuation_logprobs``)."""
    from .lm import continuation_logprobs

    tgt = tokenizer(target, add_special_tokens=False)["input_ids"]
    if not tgt:
        raise ValueError("empty target")
    rows = [(tokenizer(p)["input_ids"], tgt) for p in prefixes]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return [float(-lp.mean()) for lp in continuation_logprobs(model, rows, pad, batch_size)]


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


# -------------------------------------------------------------------------------------------------------------- CLI


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
