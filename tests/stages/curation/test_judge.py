"""The judge step against a local OpenAI-compatible server that answers like a judge model would (well and badly)."""

import json

import pytest

from tests.conftest import chat_reply, json_server
from yulan.schema.curation import JudgeConfig
from yulan.stages.curation import judge
from yulan.stages.curation.cache import ResultCache, cache_path

DIMENSIONS = ("instruction_following", "informativeness", "truthfulness")


@pytest.mark.parametrize(
    "reply,expected",
    [
        ('{"instruction_following": 5, "informativeness": 4, "truthfulness": 5}', (5, 4, 5)),
        (
            'Here is my grading:\n```json\n{"Instruction Following": 3, "informativeness": 2, '
            '"truthfulness": "4"}\n```',
            (3, 2, 4),
        ),
        ("Instruction following: 4/5\nInformativeness - 3\nTruthfulness: 5", (4, 3, 5)),
    ],
)
def test_judge_replies_are_parsed_leniently(reply, expected):
    assert tuple(judge.parse(reply, JudgeConfig()).values()) == expected


@pytest.mark.parametrize(
    "reply",
    [
        '{"instruction_following": 6, "informativeness": 4, "truthfulness": 5}',  # out of range
        '{"instruction_following": 4.5, "informativeness": 4, "truthfulness": 5}',  # not an integer
        '{"instruction_following": 4, "informativeness": 4}',  # a dimension missing
        "I cannot grade this.",
    ],
)
def test_unusable_judge_replies_are_rejected(reply):
    with pytest.raises(judge.JudgeError):
        judge.parse(reply, JudgeConfig())


CALLS: list[str] = []


def judge_reply(body: dict) -> dict:
    """Scores a response by its length; answers the first request for a 'flaky' sample with garbage."""
    prompt = body["messages"][0]["content"]
    CALLS.append(prompt)
    response = prompt.split("[assistant]\n", 1)[1].split("\n\nReply with only", 1)[0]
    if CALLS.count(prompt) == 1 and "flaky" in response:
        return chat_reply("Sorry, let me think.")
    return chat_reply(json.dumps({d: min(5, 1 + len(response) // 20) for d in DIMENSIONS}))


@pytest.fixture()
def server():
    CALLS.clear()
    with json_server(judge_reply) as url:
        yield url


def test_judge_step_drops_the_lower_percentile_retries_and_caches(tmp_path, server):
    answers = ["ok", "a flaky but decent answer of some length here", "x" * 45, "y" * 90, "z" * 10]
    samples = [
        {
            "id": str(i),
            "category": "general_en",
            "messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": a}],
        }
        for i, a in enumerate(answers)
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(s) + "\n" for s in samples))
    config = JudgeConfig(backend="openai", endpoint=server, discard_lower_percentile=30.0, max_retries=2)
    report = judge.run(source, tmp_path / "out.jsonl", config)
    assert report["judge_calls"] == 5 and len(CALLS) == 6  # one garbage reply, retried
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (tmp_path / "out.dropped.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in dropped) == ["0", "4"]  # the two shortest answers score lowest
    assert all(k["judge"]["mean"] >= report["threshold"] for k in kept) and report["unjudged"] == 0

    again = judge.run(source, tmp_path / "out.jsonl", config)
    assert again["judge_calls"] == 0 and again["cached"] == 5 and len(CALLS) == 6  # a rerun costs nothing
    assert again["kept"] == report["kept"]

    chunked = judge.run(source, tmp_path / "chunked.jsonl", config, chunk_records=2)  # two samples at a time
    assert chunked["judge_calls"] == 5 and chunked["threshold"] == report["threshold"]
    assert (tmp_path / "chunked.jsonl").read_text() == (tmp_path / "out.jsonl").read_text()


def test_a_sample_the_judge_never_scores_is_kept_and_counted(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "a", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]})
        + "\n"
    )
    config = JudgeConfig(backend="openai", endpoint="http://127.0.0.1:9/v1", max_retries=1)  # nothing listens
    report = judge.run(source, tmp_path / "out.jsonl", config)
    assert report["kept"] == 1 and report["unjudged"] == 1
    assert "error" in json.loads((tmp_path / "out.jsonl").read_text())["judge"]
    with ResultCache(cache_path(tmp_path / "out.jsonl")) as cache:
        assert cache.get([judge.content_key(json.loads(source.read_text()), config)]) == {}  # failures are not cached
