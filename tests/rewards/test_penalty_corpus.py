"""The penalty rules on a corpus of realistic replies: 200+ clean ones (English, Chinese, code, math, lists, URLs,
Markdown) get no penalty; cut-off, generic and mixed-language ones get exactly their rule."""

import pytest

from tests.rewards.penalty_corpus import CLEAN, CUT_OFF, GENERIC, MIXED
from yulan.rewards.penalties import judge
from yulan.schema.reward import Penalties

RULES = Penalties()


def test_the_corpus_is_large_and_varied():
    assert len(CLEAN) >= 200
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in response) for _, response in CLEAN) >= 40
    assert sum("```" in response for _, response in CLEAN) >= 15
    assert sum("://" in response for _, response in CLEAN) >= 8


def test_no_clean_reply_is_penalised():
    fired = [(response, judge(prompt, response, RULES).fired) for prompt, response in CLEAN]
    assert [entry for entry in fired if entry[1]] == []


@pytest.mark.parametrize(
    "group,reason", [(CUT_OFF, "incomplete"), (GENERIC, "generic"), (MIXED, "mixed_language")], ids=str
)
def test_each_bad_reply_fires_exactly_its_rule(group, reason):
    fired = [(response, judge(prompt, response, RULES).fired) for prompt, response in group]
    assert [entry for entry in fired if entry[1] != [reason]] == []


def test_penalty_totals_on_the_corpus():
    total = sum(judge(prompt, response, RULES).penalty for prompt, response in CUT_OFF + GENERIC + MIXED)
    assert total == len(CUT_OFF) * -5.0 + len(GENERIC) * -10.0 + len(MIXED) * -5.0
