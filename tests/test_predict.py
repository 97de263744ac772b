"""Batched generation, candidate log-probabilities and the resumable predict command, on the tiny offline model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from malpyeong_grpo import predict as predict_mod
from malpyeong_grpo.answer import parse_answer
from malpyeong_grpo.cli import main as cli_main
from malpyeong_grpo.data import load_items, split_path
from malpyeong_grpo.files import DataError, read_jsonl
from malpyeong_grpo.generation import _stop_criteria, candidate_logprobs, generate_answers
from malpyeong_grpo.models import load_model, load_tokenizer
from malpyeong_grpo.repair import candidates


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


PROMPTS = ["질문: 선택형", "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고", "답변:", "한글 맞춤법 제1항"]


def test_generate_answers_keeps_prompt_order_across_batches(tiny):
    model, tok = tiny
    one_by_one = [generate_answers(model, tok, [p], max_new_tokens=8, progress=False)[0] for p in PROMPTS]
    batched = generate_answers(model, tok, PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    assert batched == one_by_one
    assert all(isinstance(t, str) and t for t in batched)


def test_generation_stops_at_a_marker(tiny):
    model, tok = tiny
    free = generate_answers(model, tok, PROMPTS[:1], max_new_tokens=24, progress=False, stop_markers=())[0]
    marker = free.lstrip()[3:6]  # a piece of what the model writes anyway, past its start
    assert marker.strip() and len(free) > 12
    stopped = generate_answers(model, tok, PROMPTS[:1], max_new_tokens=24, progress=False, stop_markers=(marker,))[0]
    assert marker in stopped and len(stopped) < len(free)
    assert free.startswith(stopped)


def test_stop_criteria_is_per_row_and_ignores_the_prompt(tiny):
    _, tok = tiny
    import torch

    prompt = tok("### 예시\n###", add_special_tokens=False).input_ids  # the prompt holds the marker: no stop
    rows = [prompt + tok(" 답변\n### 다음", add_special_tokens=False).input_ids, prompt + [tok.pad_token_id] * 6]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    done = _stop_criteria(len(prompt), tok, ("\n###",))(ids, None)
    assert done.tolist() == [True, False]


def test_candidate_logprobs_match_a_single_unpadded_forward(tiny):
    model, tok = tiny
    import torch

    from malpyeong_grpo.answer import format_answer

    prompts = ["질문: 선택형 답변:", "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고 답변:"]
    cands = [["우동이 불을 것", "우동이 불 것"], ["규정 조항"]]
    got = candidate_logprobs(model, tok, prompts, cands, batch_size=2)
    for p, cs, lps in zip(prompts, cands, got, strict=True):
        assert set(lps) == set(cs)
        for c in cs:
            prompt_ids = tok(p).input_ids
            cont = tok(" " + format_answer(c, ""), add_special_tokens=False).input_ids
            ids = torch.tensor([prompt_ids + cont])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            want = sum(float(logp[len(prompt_ids) + j - 1, t]) for j, t in enumerate(cont))
            assert lps[c] == pytest.approx(want, abs=1e-3)


# --- the predict command ---------------------------------------------------------------------------------------


def _argv(model_dir, data, out, *extra):
    return [
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-new-tokens",
        "4",
        "--quiet",
        *extra,
    ]


def _check_submission(out: Path, data: Path, limit: int | None = None) -> list[dict]:
    sub = json.loads(out.read_text(encoding="utf-8"))
    items = load_items(data)[:limit]
    assert [row["id"] for row in sub] == [it.id for it in items]
    assert [row["input"]["question"] for row in sub] == [it.question for it in items]
    for row in sub:
        assert parse_answer(row["output"]["answer"]).pattern is not None, row
    return sub


@pytest.mark.slow
def test_predict_on_the_official_test_file_writes_every_answer_parsed(tiny_model_dir, data_dir, tmp_path, capsys):
    """A degenerate (random) model: with repair every one of the 498 answers parses, in input order."""
    data, out = split_path("test", data_dir), tmp_path / "submission.json"
    argv = _argv(tiny_model_dir, data, out, "--batch-size", "64", "--num-shots", "0", "--choice", "snap")
    assert predict_mod.predict_command(argv) == 0
    sub = _check_submission(out, data)
    assert len(sub) == 498
    text = capsys.readouterr().out
    assert "498 answers (498 generated now" in text and "parsed by the scorer: 498/498" in text
    rows = read_jsonl(predict_mod.cache_path_for(out))
    assert sorted(r["id"] for r in rows) == sorted(row["id"] for row in sub)
    # --no-repair reuses the cache and writes the answers as generated: the random model's do not parse
    raw_out = tmp_path / "raw.json"
    raw_out.with_name("raw.cache.jsonl").write_bytes(predict_mod.cache_path_for(out).read_bytes())
    assert predict_mod.predict_command([*argv[:5], str(raw_out), *argv[6:], "--no-repair"]) == 0
    assert "0 generated now" in capsys.readouterr().out
    raw = json.loads(raw_out.read_text(encoding="utf-8"))
    assert sum(parse_answer(r["output"]["answer"]).pattern is not None for r in raw) < 498


def test_predict_resumes_after_a_failure_without_recomputing(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    data, out = split_path("dev", data_dir), tmp_path / "dev.json"
    argv = _argv(
        tiny_model_dir,
        data,
        out,
        "--limit",
        "20",
        "--batch-size",
        "4",
        "--train-file",
        str(split_path("train", data_dir)),
    )
    real = predict_mod.iter_generate

    def failing(*args, **kwargs):
        for n, batch in enumerate(real(*args, **kwargs)):
            if n == 2:
                raise RuntimeError("injected failure")
            yield batch

    monkeypatch.setattr(predict_mod, "iter_generate", failing)
    with pytest.raises(RuntimeError, match="injected"):
        predict_mod.predict_command(argv)
    assert not out.exists()
    first = [r["id"] for r in read_jsonl(predict_mod.cache_path_for(out))]
    assert len(first) == 8 and len(set(first)) == 8

    seen: list[int] = []

    def counting(model, tokenizer, prompts, **kwargs):
        seen.append(len(prompts))
        yield from real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(predict_mod, "iter_generate", counting)
    assert predict_mod.predict_command(argv) == 0
    assert seen == [12]
    rows = read_jsonl(predict_mod.cache_path_for(out))
    ids = [r["id"] for r in rows]
    assert len(ids) == 20 and len(set(ids)) == 20 and ids[:8] == first
    by_id = {r["id"]: r for r in rows}
    assert all(bool(by_id[it.id].get("logprobs")) == bool(candidates(it)) for it in load_items(data)[:20])
    assert len(_check_submission(out, data, limit=20)) == 20

    seen.clear()  # a third run only reads the cache
    assert predict_mod.predict_command(argv) == 0 and seen == []


@pytest.mark.slow
def test_killed_predict_resumes_where_it_stopped(tiny_model_dir, data_dir, tmp_path):
    data, out = split_path("test", data_dir), tmp_path / "test.json"
    cache = predict_mod.cache_path_for(out)
    cmd = [
        sys.executable,
        "-m",
        "malpyeong_grpo.cli",
        "predict",
        *_argv(
            tiny_model_dir,
            data,
            out,
            "--limit",
            "60",
            "--batch-size",
            "1",
            "--num-shots",
            "0",
            "--max-new-tokens",
            "32",
            "--choice",
            "snap",
        ),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and cache.read_text(encoding="utf-8").count("\n") >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()  # still running: killed midway
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [r["id"] for r in read_jsonl(cache)]
    assert 5 <= len(done) < 60 and not out.exists()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"60 answers ({60 - len(done)} generated now in " in res.stdout and f", {len(done)} from" in res.stdout
    ids = [r["id"] for r in read_jsonl(cache)]
    assert len(ids) == 60 and len(set(ids)) == 60 and ids[: len(done)] == done
    assert len(_check_submission(out, data, limit=60)) == 60


def test_changed_settings_refuse_the_cache_until_restart(tiny_model_dir, data_dir, tmp_path, capsys):
    data, out = split_path("test", data_dir), tmp_path / "s.json"
    base = _argv(tiny_model_dir, data, out, "--limit", "3", "--num-shots", "0")
    assert predict_mod.predict_command(base) == 0
    with pytest.raises(DataError, match=r"other settings \(max_new_tokens: 4 -> 5.*--restart"):
        predict_mod.predict_command([*base, "--max-new-tokens", "5"])
    assert cli_main(["predict", *base, "--max-new-tokens", "5"]) == 2
    assert "error:" in capsys.readouterr().err
    assert predict_mod.predict_command([*base, "--max-new-tokens", "5", "--restart"]) == 0
    assert "3 generated now" in capsys.readouterr().out


def test_bad_options_are_one_line_errors(tiny_model_dir, data_dir, tmp_path, capsys):
    dev, test = split_path("dev", data_dir), split_path("test", data_dir)
    cases = [
        (_argv(tiny_model_dir, test, tmp_path / "a.json", "--train-file", str(dev)), "never come from dev"),
        (_argv(tiny_model_dir, test, test), "must not overwrite the input"),
        (_argv(tiny_model_dir, tmp_path / "missing.json", tmp_path / "b.json"), "file not found"),
        (_argv(tiny_model_dir, test, tmp_path / "c.json", "--adapter", str(tmp_path)), "not a peft adapter"),
        (_argv(tiny_model_dir, test, tmp_path / "d.json", "--batch-size", "0"), "--batch_size must be at least 1"),
        (_argv(tiny_model_dir, test, tmp_path / "e.json", "--context_k", "2"), "--context_k needs --rules"),
    ]
    for argv, message in cases:
        assert cli_main(["predict", *argv]) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_prompts_carry_shots_from_train_and_retrieved_rules(tiny_model_dir, data_dir, tmp_path, monkeypatch):
    seen: list = []
    real = predict_mod.iter_generate

    def capture(model, tokenizer, prompts, **kwargs):
        seen.extend(prompts)
        yield from real(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(predict_mod, "iter_generate", capture)
    docx = data_dir / "reference_rules.docx"
    argv = _argv(tiny_model_dir, split_path("test", data_dir), tmp_path / "c.json", "--limit", "3", "--num-shots", "2")
    assert predict_mod.predict_command([*argv, "--context-k", "2", "--rules", str(docx), "--choice", "snap"]) == 0
    train_answers = {it.answer for it in load_items(split_path("train", data_dir))}
    assert len(seen) == 3
    for prompt in seen:
        assert isinstance(prompt, str) and prompt.count("### 예시") == 2 and "[참고 규정]\n(1) " in prompt
        shots = [block.split("답변: ", 1)[1].split("\n\n")[0] for block in prompt.split("### 예시")[1:]]
        assert all(s in train_answers for s in shots)


def test_chat_models_get_their_template(tmp_path, data_dir):
    from tiny import make_tiny_model

    from malpyeong_grpo.prompts import build_prompt, render

    folder = make_tiny_model(tmp_path / "chat", chat_template=True)
    model, tok = load_model(str(folder)), load_tokenizer(str(folder))
    item = load_items(split_path("test", data_dir))[1]
    prompt = build_prompt(item, tokenizer=tok)
    assert isinstance(prompt, list) and render(prompt, tok).endswith("<assistant>")
    (text,) = generate_answers(model, tok, [prompt], max_new_tokens=4, progress=False)
    assert isinstance(text, str)
    lps = candidate_logprobs(model, tok, [prompt], [["가", "나"]])
    assert set(lps[0]) == {"가", "나"} and all(v < 0 for v in lps[0].values())


def test_adapter_alone_names_its_base_model(tiny_model_dir, data_dir, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model

    base = load_model(str(tiny_model_dir))
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "a.json"
    argv = ["--adapter", str(tmp_path / "adapter"), "--data", str(split_path("test", data_dir)), "--out", str(out)]
    assert (
        predict_mod.predict_command([*argv, "--limit", "2", "--max-new-tokens", "3", "--num-shots", "0", "--quiet"])
        == 0
    )
    settings = read_jsonl(predict_mod.cache_path_for(out))[0]["settings"]
    assert settings["model"] == str(tiny_model_dir) and settings["adapter"] == str(tmp_path / "adapter")
    bad = ["--model", str(tmp_path / "no-model"), *argv[2:5], str(tmp_path / "b.json"), "--num-shots", "0"]
    assert cli_main(["predict", *bad]) == 2
    assert "cannot load the model" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [{"num_beams": 3}, {"do_sample": True, "temperature": 0.7, "top_p": 0.9}])
def test_beam_search_and_sampling(tiny, kwargs):
    import torch

    model, tok = tiny
    torch.manual_seed(0)
    out = generate_answers(model, tok, PROMPTS, max_new_tokens=5, batch_size=2, progress=False, **kwargs)
    assert len(out) == len(PROMPTS) and all(isinstance(t, str) for t in out)
    if "num_beams" in kwargs:  # deterministic: the order is restored as for greedy decoding
        single = [generate_answers(model, tok, [p], max_new_tokens=5, progress=False, **kwargs)[0] for p in PROMPTS]
        assert out == single


# --- the options -------------------------------------------------------------------------------------------------


def _options_parser():
    import argparse

    from malpyeong_grpo.predict_options import add_predict_args

    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    add_predict_args(parser)
    return parser


def test_options_defaults_are_the_command_lines_and_unknown_attributes_are_ignored():
    from malpyeong_grpo.predict_options import PredictOptions

    parsed = _options_parser().parse_args(["--data", "x.json"])
    assert PredictOptions.from_args(parsed) == PredictOptions()
    opts = PredictOptions.from_args(
        _options_parser().parse_args(["--num-shots", "0", "--top_p", "0.5", "--no_stop_at_newline", "--chat", "no"])
    )
    assert (opts.num_shots, opts.top_p, opts.prompt_format, opts.chat) == (0, 0.5, "text", False)
    assert "\n" not in opts.stop_markers and "\n" in PredictOptions().stop_markers
    assert PredictOptions().chat is None and PredictOptions(prompt_format="chat").chat is True


def test_options_are_frozen_and_validated_on_construction(tmp_path):
    import dataclasses

    from malpyeong_grpo.predict_options import PredictOptions

    opts = PredictOptions(train_file=tmp_path / "train.json")
    assert opts.train_file == str(tmp_path / "train.json")  # a Path is kept as its string (the cache key is JSON)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.num_shots = 3  # type: ignore[misc]
    with pytest.raises(DataError) as e:
        PredictOptions(batch_size=0, top_p=0, context_k=2, sample=True, num_beams=2, choice="best")
    assert e.value.problems == [
        "--batch_size must be at least 1, got 0",
        "--context_k needs --rules (rules.jsonl from 'malpyeong-grpo rules', or the reference .docx)",
        "--sample and --num_beams > 1 cannot be combined",
        "--top_p must be in (0, 1], got 0",
        "--choice must be one of hybrid, snap, logprob, got 'best'",
    ]
    with pytest.raises(DataError, match="not a peft adapter folder"):
        dataclasses.replace(opts, adapter=str(tmp_path))


def test_predict_items_takes_options_built_without_a_command_line(tiny_model_dir, data_dir, tmp_path):
    """The library path (as the demo uses it): options built directly, the cache beside any file."""
    from malpyeong_grpo.predict_options import PredictOptions, generation_settings

    data = split_path("test", data_dir)
    items = load_items(data)[:2]
    opts = PredictOptions(model=str(tiny_model_dir), num_shots=0, max_new_tokens=3, choice="snap", quiet=True)
    pred = predict_mod.predict_items(opts, data, items, tmp_path / "c.jsonl")
    assert pred.generated == 2 and [it.id for it in pred.items] == [it.id for it in items]
    assert read_jsonl(tmp_path / "c.jsonl")[0]["settings"] == generation_settings(opts)
    again = predict_mod.predict_items(opts, data, items, tmp_path / "c.jsonl")
    assert again.generated == 0 and again.raw == pred.raw
