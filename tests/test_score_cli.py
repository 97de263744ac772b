"""The ``score`` command: the dev file scored against itself (stand-ins named in the table and the JSON, never an
official name), and bad input as one line per problem."""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo.data import split_path
from malpyeong_grpo.metrics import STANDIN_NAMES

OFFICIAL_NAMES = tuple(STANDIN_NAMES)  # bertscore, bleurt, descriptive_avg, final


def _numbers_under(value, names) -> list[str]:
    """The paths in a JSON-like value where one of ``names`` is a key whose value is a number."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in names and isinstance(v, int | float) and not isinstance(v, bool):
                found.append(k)
            found += [f"{k}/{p}" for p in _numbers_under(v, names)]
    elif isinstance(value, list):
        for v in value:
            found += _numbers_under(v, names)
    return found


def test_score_command_on_dev_against_itself(data_dir, tmp_path, capsys):
    from malpyeong_grpo.cli import main

    dev = str(split_path("dev", data_dir))
    out = tmp_path / "scores.json"
    assert main(["score", "--pred", dev, "--gold", dev, "--out", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "BERTScore stand-in" in captured.out and "BLEURT proxy" in captured.out
    assert "final stand-in*" in captured.out and "descriptive avg stand-in*" in captured.out
    assert "bertscore-standin: multilingual-e5-small" in captured.out
    assert "bleurt-proxy: cosine of mean-pooled multilingual-e5-small embeddings" in captured.out
    assert "note: BERTScore: no local bert-base-multilingual-cased checkpoint" in captured.err
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["exact_match"] == 1.0 and res["rouge_1"] == 1.0
    assert res["n_items"] == 127 and res["n_reason_pairs"] == 126  # dev item 685 has no reason after the split
    assert res["bertscore_standin"] == pytest.approx(1.0, abs=1e-5)
    assert res["bleurt_proxy"] == pytest.approx(1.0, abs=1e-5)
    assert res["final_standin"] == pytest.approx(1.0, abs=1e-5) and res["descriptive_avg_standin"] > 0.99999
    assert res["final_official"] is False and len(res["items"]) == 127
    assert _numbers_under(res, OFFICIAL_NAMES) == []  # no stand-in number under an official name, per item neither
    row = next(line for line in captured.out.splitlines() if "100.00" in line)
    assert row.count("100.00") == 6  # final, descriptive avg (stand-ins), EM, BLEURT proxy, BERTScore stand-in, ROUGE-1


def test_score_command_errors_are_one_line(data_dir, tmp_path, capsys):
    from malpyeong_grpo.cli import main

    dev = split_path("dev", data_dir)
    rows = json.loads(dev.read_text(encoding="utf-8"))[:3]
    rows[1]["output"] = {"answer": 5}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert main(["score", "--pred", str(bad), "--gold", str(dev)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: item 1 (id '{rows[1]['id']}'): 'output.answer' must be a string, got int"]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(json.loads(dev.read_text(encoding="utf-8"))[:2], ensure_ascii=False), encoding="utf-8")
    assert main(["score", "--pred", str(short), "--gold", str(dev), "--out", str(tmp_path / "s.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {short}: no prediction for 125 id(s) of {dev}: ")
    assert not (tmp_path / "s.json").exists()


def test_table_headers_follow_the_encoders():
    import io

    from rich.console import Console

    from malpyeong_grpo.score_cli import render_table

    result = {"n_items": 2, "n_reason_pairs": 1, "exact_match": 1.0, "rouge_1": 0.3, "bertscore": 0.2}
    result |= {"bleurt_proxy": 0.1, "descriptive_avg_standin": 0.2, "final_standin": 0.6}
    result["encoders"] = {"bertscore": {"official": True}, "bleurt": {"official": False}}
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render_table(result))
    text = console.export_text()
    assert "2 items, 1 with reasons on both sides" in text
    for header in ("final stand-in*", "descriptive avg stand-in*", "EM", "BLEURT proxy*", "BERTScore ", "ROUGE-1"):
        assert header in text, header
    assert "BERTScore stand-in" not in text
    row = next(line for line in text.splitlines() if "100.00" in line)
    assert [c.strip() for c in row.strip("│ \n").split("│")] == ["60.00", "20.00", "100.00", "10.00", "20.00", "30.00"]
