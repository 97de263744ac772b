"""Reward functions: hand-computed values on crafted completions, batching and caching, and no exception on any text.

The encoder-backed metrics are replaced by a recording stand-in suite with known values (``FakeSuite``) where the
test is about the reward plumbing; ``test_rouge_1_real_suite`` uses the scorer's real ROUGE-1.
"""

from __future__ import annotations

import math

import pytest

from malpyeong_grpo import rewards
from malpyeong_grpo.files import DataError

GOLD = "\"나는 밥을 먹었다.\"가 옳다. '먹다'는 표준어이다."
GOLD_REASON = "'먹다'는 표준어이다."
RIGHT = GOLD
WRONG_SENTENCE = "\"나는 밥을 먹엇다.\"가 옳다. '먹다'는 표준어이다."
OTHER_REASON = '"나는 밥을 먹었다."가 옳다. 그냥 그렇다.'


class FakeSuite:
    """Stand-in metric suite: known values, and a log of every batch it was asked to score."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[tuple[str, list[str], list[str]]] = []
        self.fail = fail

    def _score(self, name: str, same: float, other: float, preds: list[str], refs: list[str]) -> list[float]:
        self.calls.append((name, list(preds), list(refs)))
        if name in self.fail or (name + "-batch" in self.fail and len(preds) > 1):
            raise RuntimeError(f"{name} broke")
        return [same if p == r else other for p, r in zip(preds, refs, strict=True)]

    def rouge1(self, preds, refs):
        return self._score("rouge1", 1.0, 0.25, preds, refs)

    def bertscore(self, preds, refs):
        return self._score("bertscore", 0.9, 0.5, preds, refs)

    def bleurt(self, preds, refs):
        return self._score("bleurt", 0.7, float("nan"), preds, refs)


@pytest.fixture
def fake(monkeypatch) -> FakeSuite:
    suite = FakeSuite()
    monkeypatch.setattr(rewards, "get_suite", lambda scorer=None: suite)
    rewards._default_scorer.cache.clear()
    yield suite
    rewards._default_scorer.cache.clear()


def call(name: str, completions: list, **columns) -> list[float]:
    return rewards.REWARDS[name](prompts=["p"] * len(completions), completions=completions, **columns)


def test_names_are_what_trl_logs(monkeypatch):
    monkeypatch.delenv(rewards.ENV_BERTSCORE, raising=False)
    monkeypatch.delenv(rewards.ENV_BLEURT, raising=False)
    official = rewards.PairScorer("/models/bert", "/models/bleurt")
    assert [f.__name__ for f in rewards.get_rewards(list(rewards.REWARDS), official)] == list(rewards.REWARDS)
    standin = [f.__name__ for f in rewards.get_rewards(list(rewards.REWARDS), rewards.PairScorer())]
    assert standin == [
        "format", "exact_match", "answer_similarity", "choice", "rouge_1",
        "bertscore_standin", "bleurt_proxy", "final_standin", "rule", "overlong",
    ]  # fmt: skip
    assert "bertscore -> bertscore_standin" in rewards.standin_note(["format", "bertscore"], rewards.PairScorer())
    assert rewards.standin_note(["format", "rouge_1"], rewards.PairScorer()) is None
    assert list(rewards.REWARDS) == [
        "format", "exact_match", "answer_similarity", "choice", "rouge_1", "bertscore", "bleurt", "final", "rule",
        "overlong",
    ]  # fmt: skip
    with pytest.raises(DataError, match="unknown reward"):
        rewards.get_rewards(["format", "accuracy"])


def test_format_hand_computed():
    completions = [
        GOLD,  # split found, one quoted sentence, reason: 3/3
        GOLD + "\n\n### 예시 3\n질문: ...",  # a base model's run-on is cut first: 3/3
        '"나는 밥을 먹었다."가 옳다.',  # no reason: 2/3
        "나는 밥을 먹었다가 옳다. 이유.",  # not quoted: 2/3
        '"나는 밥을 먹었다. 너도 먹었다."가 옳다. 이유.',  # two sentences: 2/3
        "나는 밥을 먹었다. 이유는 없다.",  # no '가/이 옳다': 0
        "",
    ]
    assert call("format", completions) == pytest.approx([1, 1, 2 / 3, 2 / 3, 2 / 3, 0, 0])
    two = '"나는 밥을 먹었다. 너도 먹었다."가 옳다. 이유.'  # a gold that quotes two sentences allows two
    assert call("format", [two, two], answer=[two, GOLD]) == pytest.approx([1, 2 / 3])


def test_format_gives_every_training_gold_full_marks(data_dir):
    """The format reward does not push the policy away from a well-formed gold answer: 19 of the 622 quote 2+
    sentences and score 1; only 4 golds miss the form themselves ('…"으가 옳다' twice, a quote opened with '"' and
    closed with "'", one without '가/이 옳다')."""
    from malpyeong_grpo.data import load_items, split_path

    golds = [it.answer for it in load_items(split_path("train", data_dir), require_answer=True)]
    scores = call("format", golds, answer=golds)
    assert sum(s == 1.0 for s in scores) == len(golds) - 4
    assert sum(s == 1.0 for s in call("format", golds)) == len(golds) - 4 - 18  # one sentence each, without golds


def test_exact_match_hand_computed():
    chat = [{"role": "assistant", "content": "'나는 밥을 먹었다.'가 옳다. 다른 이유."}]  # ASCII quotes are deleted
    completions = [RIGHT, WRONG_SENTENCE, chat, "", '"나는 밥을 먹었다."이 옳다. 이유']
    assert call("exact_match", completions, answer=[GOLD] * 5) == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert call("exact_match", [RIGHT], answer=None) == [0.0]  # no gold column: a number, not an error
    assert call("exact_match", [RIGHT], answer=[GOLD, GOLD]) == [1.0]  # a column longer than the batch
    assert call("exact_match", [RIGHT, RIGHT], answer="not a column") == [0.0, 0.0]


def test_reason_metrics_hand_computed_and_batched_once(fake):
    completions = [RIGHT, OTHER_REASON, OTHER_REASON, "no answer form", RIGHT]
    answer = [GOLD] * 5
    assert call("rouge_1", completions, answer=answer) == [1.0, 0.25, 0.25, 0.0, 1.0]
    assert call("bertscore", completions, answer=answer) == [0.9, 0.5, 0.5, 0.0, 0.9]
    assert call("bleurt", completions, answer=answer) == [0.7, 0.0, 0.0, 0.0, 0.7]  # NaN from the encoder -> 0
    # each metric saw the two distinct non-empty reason pairs once, in one batch
    assert [(n, len(p)) for n, p, _ in fake.calls] == [("rouge1", 2), ("bertscore", 2), ("bleurt", 2)]
    assert fake.calls[0][1] == [GOLD_REASON, "그냥 그렇다."] and fake.calls[0][2] == [GOLD_REASON] * 2
    # final = (EM + mean(R1, BS, BLEURT)) / 2, from the cache: no new encoder call
    final = call("final", completions, answer=answer)
    right = (1 + (1.0 + 0.9 + 0.7) / 3) / 2
    other = (1 + (0.25 + 0.5 + 0.0) / 3) / 2  # right sentence (EM 1), other reason
    assert final == pytest.approx([right, other, other, 0.0, right])
    assert len(fake.calls) == 3


def test_failing_encoder_batch_falls_back_to_items(fake):
    fake.fail = {"bertscore-batch"}
    assert call("bertscore", [RIGHT, OTHER_REASON], answer=[GOLD] * 2) == [0.9, 0.5]
    fake.fail = {"bleurt"}
    assert call("bleurt", [RIGHT, OTHER_REASON], answer=[GOLD] * 2) == [0.0, 0.0]


def test_rule_reward_citation_and_overlap(fake):
    ids = ["한글 맞춤법 제42항", "한글 맞춤법 제4항", "문장 부호 쉼표"]
    gold_text = "의존 명사는 띄어 쓴다."
    completions = [
        '"a"가 옳다. 한글 맞춤법 제42항에 따라 띄어 쓴다.',  # cites the gold rule only: 1
        '"a"가 옳다. 한글 맞춤법 제42항과 문장 부호 쉼표에 따른다.',  # cites two candidates: 1/2
        '"a"가 옳다. 한글 맞춤법 제4항에 따른다.',  # '제4항' is another rule, not a prefix match of 제42항: overlap
        '"a"가 옳다. 의존 명사는 띄어 쓴다.',  # no citation, reason equals the rule text: overlap 1
    ]
    n = len(completions)
    got = call("rule", completions, gold_rule=[gold_text] * n, gold_rule_id=[ids[0]] * n, rule_ids=[ids] * n)
    assert got == [1.0, 0.5, 0.25, 1.0]
    assert rewards.cited_rules("제42항 말고 한글 맞춤법 제4항", ids) == ["한글 맞춤법 제4항"]
    # no gold rule for the item: 0, constant within the group
    assert call("rule", completions[:1], gold_rule=[""], gold_rule_id=[""], rule_ids=[[]]) == [0.0]


HOSTILE = [
    "",
    " ",
    "가" * 100_000,
    '"' + "가 옳다" * 20_000,
    "\x00\x01\x1b[31m\x7f\u200b\ufeff",
    "\ud800 lone surrogate \udfff",
    "これは日本語の文です。",
    "Это русский текст.",
    "🙂" * 1000,
    '"\n"가 옳다. \x00',
    None,
    42,
    [{"role": "assistant", "content": None}],
    [{"role": "assistant"}],
    {"content": "x"},
]


@pytest.mark.parametrize("name", list(rewards.REWARDS))
def test_no_exception_on_any_text(fake, name):
    n = len(HOSTILE)
    columns = {
        "answer": [GOLD] * (n - 2) + [None, 7],
        "gold_rule": ["규정"] * n,
        "gold_rule_id": ["한글 맞춤법 제1항"] * n,
        "rule_ids": [["한글 맞춤법 제1항", None]] * n,
    }
    out = call(name, HOSTILE, **columns)
    assert len(out) == n and all(isinstance(x, float) and math.isfinite(x) for x in out)
    for sent in fake.calls:
        assert all(len(p) <= rewards.MAX_CHARS and "\x00" not in p for p in sent[1])
        assert all(p.encode("utf-8") for p in sent[1])  # no lone surrogates reach an encoder


def test_clean():
    assert rewards.clean(None) == "" and rewards.clean(3) == ""
    assert rewards.clean("a\x00b\tc\nd") == "a b\tc\nd"
    assert rewards.clean("\ud800x") == "?x"
    assert len(rewards.clean("가" * 10_000)) == rewards.MAX_CHARS


def test_rouge_1_real_suite():
    """The scorer's ROUGE-1 (Mecab morphemes), by hand: gold reason 의존/명사/는/띄/어/쓴다 (6), prediction
    조사/는/붙여/쓴다 (4), overlap 는, 쓴다: P = 2/4, R = 2/6, F = 2PR / (P + R) = 0.4."""
    rewards._default_scorer.cache.clear()
    gold = '"나도 할 수 있다."가 옳다. 의존 명사는 띄어 쓴다.'
    completions = ['"나도 할 수 있다."가 옳다. 조사는 붙여 쓴다.', gold, '"나도 할 수 있다."가 옳다. 규범.']
    assert call("rouge_1", completions, answer=[gold] * 3) == pytest.approx([0.4, 1.0, 0.0])


# --- dense answer rewards ------------------------------------------------------------------------------------------
SENT_GOLD = '"밥을 먹었다."가 옳다. 이유.'


def test_answer_similarity_hand_computed():
    """Jamo-level ratio of the normalised answer parts ('밥을 먹었다.가 옳다', as official EM compares them):
    '먹었다' vs '먹엇다' differ in one final jamo (ㅆ vs ㅅ).
    NFD: 밥을 먹었다. = 3+3+1+3+3+2+1 = 16 jamo, 가 옳다 = 2+1+3+2 = 8, so 24 each;
    difflib's ratio = 2 * 23 / (24 + 24)."""
    out = call(
        "answer_similarity",
        ['"밥을 먹었다."가 옳다. 이유.', '"밥을 먹엇다."가 옳다. 이유.', "아무 말", ""],
        answer=[SENT_GOLD] * 4,
    )
    assert out[0] == 1.0
    assert out[1] == pytest.approx(2 * 23 / 48)
    assert out[2] == 0.0 and out[3] == 0.0  # no '가 옳다': no answer part
    near, wild = call(
        "answer_similarity", ['"밥을 먹엇다."가 옳다.', '"국수를 삶는다."가 옳다.'], answer=[SENT_GOLD] * 2
    )
    assert near > wild  # a near miss outranks a wild answer


def test_answer_similarity_takes_the_closest_alternative():
    gold = '"가방을 메다."#"가방을 매다."가 옳다. 이유.'
    assert call("answer_similarity", ['"가방을 매다."가 옳다.'], answer=[gold]) == [1.0]


def test_choice_reward_hand_computed():
    q = '"우리는 {설겆이/설거지}를 했다." 가운데 올바른 것을 선택하고, 그 이유를 설명하세요.'
    gold = '"우리는 설거지를 했다."가 옳다. 표준어는 설거지이다.'
    comps = [
        '"우리는 설거지를 했다."가 옳다. 이유.',  # right option, exact: 1
        '"우리는 설거지을 했다."가 옳다. 이유.',  # right option, sentence garbled: still 1
        '"우리는 설겆이를 했다."가 옳다. 이유.',  # wrong option: 0
        "모르겠다",  # no answer: 0
    ]
    n = len(comps)
    out = call("choice", comps, answer=[gold] * n, question=[q] * n, question_type=["선택형"] * n)
    assert out == [1.0, 1.0, 0.0, 0.0]
    assert call("choice", comps[:1], answer=[gold], question=[q], question_type=["교정형"]) == [0.0]


def test_completion_is_cut_at_its_first_line_break():
    """Inference writes the first line only: a second line never reaches the scorer or the rewards."""
    assert call("exact_match", ['"밥을 먹었다."가 옳다. 이유.\n"다른 문장."가 옳다.'], answer=[SENT_GOLD]) == [1.0]
    assert rewards.answer_text('\n"밥을 먹었다."가 옳다. 이유.\n잡음') == '"밥을 먹었다."가 옳다. 이유.'


def test_group_std_is_within_groups():
    """Two groups of two: (0, 1) has std 0.5, (1, 1) has 0 -> mean 0.25; the batch-wide std (0.433) is not it."""
    assert rewards.group_std(["p", "p", "q", "q"], [0.0, 1.0, 1.0, 1.0]) == pytest.approx(0.25)
    reward = rewards.get_rewards(["exact_match"], rewards.PairScorer())[0]
    reward(["p", "p"], ['"밥을 먹었다."가 옳다. 이유.', "x"], answer=[SENT_GOLD] * 2)
    assert reward.group_std == [pytest.approx(0.5)]


def test_overlong_punishes_only_the_soft_zone():
    """Limit 10, soft zone 4: up to 6 tokens 0; 8 tokens (6 - 8) / 4 = -0.5; 10 tokens (cut at the limit) -1."""
    ids = [[1] * 3, [1] * 6, [1] * 8, [1] * 10]
    got = rewards.overlong_reward(["p"] * 4, ["x"] * 4, completion_ids=ids, max_completion_length=10, overlong_cache=4)
    assert got == [0.0, 0.0, -0.5, -1.0]
    assert rewards.overlong_reward(["p"], ["x"], completion_ids=[[1] * 50]) == [0.0]  # no limit: no punishment
    assert rewards.overlong_reward(["p"], ["x"], max_completion_length=10, overlong_cache=4) == [0.0]  # no ids


def test_get_rewards_binds_the_runs_settings():
    """The limit and soft zone given to get_rewards reach overlong on every call, beside TRL's columns."""
    params = {"max_completion_length": 8, "overlong_cache": 4}
    reward = rewards.get_rewards(["overlong"], rewards.PairScorer(), params)[0]
    assert reward(["p", "p"], ["a", "b"], completion_ids=[[1] * 2, [1] * 7]) == [0.0, -0.75]
    assert reward.group_std == [pytest.approx(0.375)]
