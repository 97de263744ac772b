"""The hand-made bad-file corpus (tests/data/bad/, expected messages in manifest.json): every file gives one line
per problem naming the file and the problem, through the data layer and through the command line, never a
traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from malpyeong_grpo.data import DataError, load_items

BAD_DIR = Path(__file__).parent / "data" / "bad"
MANIFEST = json.loads((BAD_DIR / "manifest.json").read_text(encoding="utf-8"))
# Known bugs in other modules, reported to the lead; strict: the test fails once they are fixed, so drop them then.
KNOWN_BUGS: dict[str, str] = {}


def _cases() -> list:
    bug = {name: pytest.mark.xfail(strict=True, reason=why) for name, why in KNOWN_BUGS.items()}
    return [pytest.param(name, marks=bug[name]) if name in bug else name for name in MANIFEST]


def _check_problems(path: Path, problems: list[str], expect: list[list[str]]) -> None:
    """Each problem is one line starting with the file's path; each expected group of fragments has its own line."""
    assert problems, f"{path.name}: no problem reported"
    for line in problems:
        assert "\n" not in line and line.startswith(f"{path}:"), line
        assert "Traceback" not in line
    free = list(problems)
    for group in expect:
        hit = next((line for line in free if all(frag in line for frag in group)), None)
        assert hit is not None, f"{path.name}: no line holds {group}; got {problems}"
        free.remove(hit)


def test_manifest_lists_every_file():
    on_disk = {p.name for p in BAD_DIR.iterdir()} - {"manifest.json"}
    assert on_disk == set(MANIFEST)
    for entry in MANIFEST.values():
        assert entry["what"] and entry["expect"] and all(entry["expect"])


@pytest.mark.parametrize("name", _cases())
def test_loader_reports_each_problem(name):
    path = BAD_DIR / name
    with pytest.raises(DataError) as err:
        load_items(path, require_answer=True)
    _check_problems(path, err.value.problems, MANIFEST[name]["expect"])


def _good_file(tmp_path: Path) -> Path:
    """A small valid answered file of this test's own writing."""
    rows = [
        {
            "id": "g1",
            "input": {"question_type": "교정형", "question": '다음 문장을 바르게 고치시오. "오늘은 날씨가 않 좋다."'},
            "output": {"answer": "\"오늘은 날씨가 안 좋다.\"가 옳다. 부정의 부사는 '안'으로 적는다."},
        }
    ]
    path = tmp_path / "good.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", _cases())
@pytest.mark.parametrize("role", ["--pred", "--gold"])
def test_score_command_reports_each_problem(name, role, tmp_path, capsys):
    """`malpyeong-grpo score` with a bad prediction or gold file: exit 2, one `error: <file>: ...` line per problem."""
    pytest.importorskip("malpyeong_grpo.metrics", reason="metrics.py has not landed yet")
    from malpyeong_grpo.cli import main

    good = _good_file(tmp_path)
    other = "--gold" if role == "--pred" else "--pred"
    path = BAD_DIR / name
    rc = main(["score", role, str(path), other, str(good), "--out", str(tmp_path / "scores.json")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    _check_problems(path, [line.removeprefix("error: ") for line in lines], MANIFEST[name]["expect"])
    assert not (tmp_path / "scores.json").exists()


@pytest.mark.parametrize("name", ["truncated.json", "wrong_types.json", "deeply_nested.json"])
def test_no_traceback_from_a_real_process(name, tmp_path):
    """The installed command line, in its own process: exit code 2 and no traceback on stderr."""
    pytest.importorskip("malpyeong_grpo.metrics", reason="metrics.py has not landed yet")
    good = _good_file(tmp_path)
    cmd = [sys.executable, "-m", "malpyeong_grpo.cli", "score", "--pred", str(BAD_DIR / name), "--gold", str(good)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {BAD_DIR / name}:"), proc.stderr


@pytest.mark.parametrize("name", ["truncated.json", "wrong_types.json", "lone_surrogate.json", "bad_line.jsonl"])
@pytest.mark.parametrize("verb", ["predict", "evaluate", "train"])
def test_other_commands_report_bad_data_files(verb, name, tiny_model_dir, tmp_path, capsys):
    """`predict --data`, `evaluate --data` and `train --train_file` on a bad file: exit 2 and the loader's lines."""
    from malpyeong_grpo.cli import main

    path = BAD_DIR / name
    argv = {
        "predict": ["--model", str(tiny_model_dir), "--data", str(path), "--out", str(tmp_path / "pred.json")],
        "evaluate": ["--model", str(tiny_model_dir), "--data", str(path), "--out-dir", str(tmp_path / "eval")],
        "train": [
            "--model_name_or_path", str(tiny_model_dir), "--train_file", str(path),
            "--output_dir", str(tmp_path / "run"), "--report_to", "none",
        ],
    }[verb]  # fmt: skip
    rc = main([verb, *argv])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error: ")]
    _check_problems(path, lines, MANIFEST[name]["expect"])
    assert not (tmp_path / "pred.json").exists()
