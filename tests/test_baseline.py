"""The no-model baseline: the nearest training items vote the option, the nearest item's reason is copied, an open
correction keeps the asked sentence; never the item itself; bad options give one-line errors."""

from __future__ import annotations

import json

import pytest

from malpyeong_grpo.answer import parse_answer
from malpyeong_grpo.baseline import baseline_command, nearest_answers
from malpyeong_grpo.data import Item
from malpyeong_grpo.files import DataError

Q = "가운데 올바른 것을 선택하고, 그 이유를 설명하세요."
FIX = "다음 문장에서 어문 규범에 부합하지 않는 부분을 찾아 고치고, 그 이유를 설명하세요."
POOL = [
    Item("1", "선택형", f'"학생{{으로서/으로써}} 말한다." {Q}', '"학생으로서 말한다."가 옳다. 자격에는 로서를 쓴다.'),
    Item("2", "선택형", f'"교사{{로서/로써}} 일한다." {Q}', '"교사로서 일한다."가 옳다. 자격에는 로서를 쓴다.'),
    Item("3", "선택형", f'"{{왠지/웬지}} 좋다." {Q}', '"왠지 좋다."가 옳다. 왠지는 왜인지의 준말이다.'),
    Item("4", "교정형", f'{FIX}\n"케익을 샀다."', '"케이크를 샀다."가 옳다. 외래어 표기법에 따라 케이크로 적는다.'),
]  # fmt: skip


def test_vote_and_reason_from_the_nearest_items():
    """The option whose own words (here '왠지') occur in the nearest items' gold sentences wins, though listed second;
    the reason is the nearest item's."""
    item = Item("q", "선택형", f'"{{웬지/왠지}} 좋다고 한다." {Q}', None)
    (answer,) = nearest_answers([item], POOL, k=2)
    parsed = parse_answer(answer)
    assert parsed.sentence == "왠지 좋다고 한다."
    assert parsed.reason == "왠지는 왜인지의 준말이다."


def test_open_correction_keeps_the_sentence_and_never_uses_itself():
    (answer,) = nearest_answers([POOL[3]], POOL, k=3)
    assert parse_answer(answer).sentence == "케익을 샀다."  # no correction without a model
    assert "외래어 표기법" not in answer  # its own reason is never copied (the only 교정형 item is itself)


def test_command_writes_a_submission_and_checks_its_options(tmp_path):
    data = tmp_path / "items.json"
    data.write_text(json.dumps([it.to_json() for it in POOL], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    assert baseline_command(["--data", str(data), "--train_file", str(data), "--out", str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"] and all("가 옳다" in r["output"]["answer"] for r in rows)
    with pytest.raises(DataError, match="--k"):
        baseline_command(["--data", str(data), "--train_file", str(data), "--out", str(out), "--k", "0"])
    with pytest.raises(DataError, match="input"):
        baseline_command(["--data", str(data), "--train_file", str(data), "--out", str(data)])


def test_dev_split_is_refused_as_the_training_pool(tmp_path):
    """The one dev refusal (data.dev_split_problem), as predict's shots and train's train_file refuse it."""
    from malpyeong_grpo.data import SPLIT_FILES, dev_split_problem

    dev = tmp_path / SPLIT_FILES["dev"]
    dev.write_text(json.dumps([it.to_json() for it in POOL], ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    with pytest.raises(DataError) as e:
        baseline_command(["--data", str(dev), "--train_file", str(dev), "--out", str(out)])
    assert e.value.problems == [
        f"{dev}: --train_file is the dev split (the evaluation split); the baseline never learns from dev"
    ]
    assert not out.exists()
    assert dev_split_problem(tmp_path / SPLIT_FILES["train"], "x", "y") is None
    assert dev_split_problem(None, "x", "y") is None
    assert dev_split_problem(f"a/{SPLIT_FILES['dev']}", "x", "y") == "x is the dev split (the evaluation split); y"
