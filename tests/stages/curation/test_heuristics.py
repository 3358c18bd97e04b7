"""Heuristic filters: realistic English, Chinese, code and math samples that must stay, and garbage that must go."""

import base64
import json

import pytest

from tests.conftest import run
from yulan.schema.curation import HeuristicsConfig
from yulan.stages.curation.heuristics import check

CONFIG = HeuristicsConfig()


def sample(instruction, response, category="general_en", system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": instruction},
        {"role": "assistant", "content": response},
    ]
    return {"id": "x", "category": category, "messages": messages}


KEEP = [
    sample("What is 7 * 8?", "56"),
    sample("Is water wet?", "Yes."),
    sample("Capital of Japan?", "Tokyo"),
    sample(
        "Explain TCP briefly.",
        "TCP is a connection-oriented protocol: it orders packets, retransmits lost ones and "
        "controls the sending rate so the network is not overwhelmed.",
    ),
    sample("List some fruits.", "- apple\n- banana\n- cherry\n- date"),
    sample(
        "Compare two languages.",
        "| Language | Typing |\n|----------|--------|\n| Python | dynamic |\n| Rust | static |",
    ),
    sample("Write a title.", "Chapter One\n===========\n\nIt was a quiet morning..."),
    sample(
        "Check equality in Python.",
        "```python\nif a != b:\n    print('!=!=!=')\n```\nThe `!=` operator tests inequality.",
        "code",
    ),
    sample("Write a separator function.", "def line():\n    return '=' * 40 + '####' + '////'\n", "code"),
    sample("Solve x^2 = 4.", "$$x^2 = 4 \\implies x = \\pm 2$$\n\nSo the solutions are $x = 2$ and $x = -2$.", "math"),
    sample("Compute 1/3 + 1/6.", "1/3 + 1/6 = 2/6 + 1/6 = 3/6 = 1/2.\n\n**Answer:** $\\frac{1}{2}$", "math"),
    sample(
        "请介绍一下杭州。",
        "杭州是浙江省的省会，以西湖闻名。它历史悠久，风景秀丽，也是中国重要的电子商务中心之一。",
        "general_zh",
    ),
    sample("1+1等于几？", "等于2。", "general_zh"),
    sample("列出三种编程语言。", "1. Python\n2. Java\n3. C++", "general_zh"),
    sample("Say hello.", "Hello!", system="You are friendly."),
    sample("Repeat after me: ok", "ok ok"),
    sample(
        "Write a poem with a refrain.",
        "The sea is calm tonight.\nThe tide is full, the moon lies fair.\n"
        "Upon the straits the light gleams and is gone.\nThe sea is calm tonight.",
    ),
]

DROP = [
    (
        sample(
            "Explain",
            " ".join(
                "we can see that the model is good and we can see that the data is clean so we can see that".split() * 3
            )
            + ".",
        ),
        "repetition",
    ),
    (
        sample("Tell me a joke", "Why did the chicken cross the road!!!!!!!! To get to the other side."),
        "punctuation_run",
    ),
    (
        sample(
            "Explain gravity",
            "Gravity pulls things together. Gravity pulls things together. Gravity pulls things "
            "together. Gravity pulls things together.",
        ),
        "repeated_span",
    ),
    (
        sample(
            "Explain",
            "\n".join(
                [
                    "Step one is easy.",
                    "Then we wait.",
                    "Step one is easy.",
                    "Now check it.",
                    "Step one is easy.",
                    "Then we wait.",
                    "Done.",
                ]
            ),
        ),
        "repetition",
    ),
    (sample("Describe France", "The cafÃ© was lovely and the Ã©tÃ© was warm in the south of France."), "garbled"),
    (sample("Describe Paris", "Paris is the capital of France \ufffd\ufffd and its largest city."), "garbled"),
    (sample("Send data", "Here it is: " + base64.b64encode(bytes(range(256))).decode() + " done."), "long_word"),
    (sample("Show art", "Art: @#$%^&*()_+{}|:<>?~[];',./\\ !#$%&*^()[]{}<>?/|~`;:'\" -+= ok."), "non_alnum"),
    (sample("Who are you?", "As an AI language model, I do not have personal opinions."), "ai_identity"),
    (sample("你是谁？", "作为一个人工智能语言模型，我没有个人观点。", "general_zh"), "ai_identity"),
    (sample("Write code", "```python\ndef f(x):\n    return x +"), "truncated"),
    (
        sample("Explain photosynthesis", "Photosynthesis is the process by which green plants use sunlight to make"),
        "truncated",
    ),
    (sample("Hi", ""), "structure"),
    ({"id": "x", "category": "general_en", "messages": [{"role": "assistant", "content": "Hi."}]}, "structure"),
    ({"id": "x", "category": "general_en", "messages": [{"role": "user", "content": "Hi."}]}, "structure"),
    (sample("Echo this", "Echo this"), "structure"),
    (sample("Long", "x" * 100_001), "length"),
    (
        sample(
            "介绍长城",
            "长城很长很长很长很长很长很长很长很长很长很长很长很长很长很长很长很长很长很长很长。",
            "general_zh",
        ),
        "repeated_span",
    ),
]


@pytest.mark.parametrize("good", KEEP, ids=[s["messages"][-1]["content"][:25] for s in KEEP])
def test_good_samples_are_kept(good):
    assert check(good, CONFIG) is None


@pytest.mark.parametrize(("bad", "rule"), DROP, ids=[f"{rule}-{i}" for i, (_, rule) in enumerate(DROP)])
def test_garbage_is_dropped_for_the_right_reason(bad, rule):
    verdict = check(bad, CONFIG)
    assert verdict is not None and verdict[0] == rule, verdict


def test_code_keeps_symbol_heavy_lines_but_general_text_does_not():
    symbols = "Use this banner: " + "#" * 3 + "!!!!!!" + " now."
    assert check(sample("Banner?", symbols, "code"), CONFIG) is None
    assert check(sample("Banner?", symbols, "general_en"), CONFIG)[0] == "punctuation_run"


def test_rules_can_be_switched_off_per_category():
    config = HeuristicsConfig(rules_off={"general_en": ("ai_identity",)})
    assert check(sample("Who?", "As an AI language model, I help."), config) is None


def test_heuristics_step_streams_and_reports(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in KEEP + [bad for bad, _ in DROP]))
    result = run(
        "-m", "yulan.cli", "curate", "heuristics", "--input", str(source), "--output", str(tmp_path / "out.jsonl")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["kept"] == len(KEEP) and sum(report["dropped"].values()) == len(DROP)
    first = json.loads((tmp_path / "out.dropped.jsonl").read_text().splitlines()[0])
    assert first["dropped"]["step"] == "heuristics" and first["dropped"]["reason"] == "repetition"
    bad = run(
        "-m",
        "yulan.cli",
        "curate",
        "heuristics",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "o2.jsonl"),
        "rules_off.code=[bogus]",
    )
    assert bad.returncode == 1 and "curation.heuristics.rules_off.code.0" in bad.stderr
