"""Curation split over shards (curation.shards > 1) decides exactly what one job decides, on this machine; the
same on a real SLURM is in test_slurm.py."""

import json

import pytest

from tests.conftest import chat_reply, json_server, run
from yulan.compose import ConfigError, load
from yulan.stages.curation.io import shard_bounds

DIMENSIONS = ("instruction_following", "informativeness", "truthfulness")
CALLS: list[str] = []


def judge_reply(body: dict) -> dict:
    prompt = body["messages"][0]["content"]
    CALLS.append(prompt)
    response = prompt.split("[assistant]\n", 1)[1]
    return chat_reply(json.dumps({d: 1 + len(response) % 5 for d in DIMENSIONS}))


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 500])
def test_every_line_falls_in_exactly_one_shard_in_order(tmp_path, shards):
    path = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": i, "text": "é" * (i % 13)}) + "\n" for i in range(101)]
    path.write_text("".join(lines))
    data = path.read_bytes()
    pieces = []
    for shard in range(shards):
        start, end = shard_bounds(path, shard, shards)
        assert start == 0 or data[start - 1 : start] == b"\n"
        pieces.append(data[start:end])
    assert b"".join(pieces) == data


@pytest.mark.slow
def test_sharded_curation_with_a_judge_decides_what_one_job_decides(tmp_path):
    pytest.importorskip("torch")
    steps = "curation.steps=[dedup,heuristics,judge,mix]"
    with json_server(judge_reply) as url:
        judge = [
            "curation.judge.backend=openai",
            f"curation.judge.endpoint={url}",
            "curation.judge.discard_lower_percentile=30",
        ]
        CALLS.clear()
        one = run("launch.py", "experiment=smoke", "stages=[curation]", steps, *judge, f"run_root={tmp_path}/one")
        assert one.returncode == 0, one.stderr
        one_job_calls = len(CALLS)
        CALLS.clear()
        sharded = run(
            "launch.py",
            "experiment=smoke",
            "stages=[curation]",
            steps,
            *judge,
            "curation.shards=3",
            f"run_root={tmp_path}/sharded",
        )
        assert sharded.returncode == 0, sharded.stderr
    assert len(CALLS) == one_job_calls  # each sample judged once, by its shard's task
    out = {name: tmp_path / name / "smoke" / "curation" for name in ("one", "sharded")}
    assert (out["sharded"] / "data" / "sft.jsonl").read_text() == (out["one"] / "data" / "sft.jsonl").read_text()
    reports = {name: json.loads((path / "report.json").read_text())["steps"] for name, path in out.items()}
    for step in ("dedup", "heuristics", "mix"):
        assert reports["sharded"][step] == reports["one"][step]
    assert reports["sharded"]["judge"]["judge_calls"] == 0  # the merge asks nothing: the shards' caches answer
    assert reports["sharded"]["judge"]["threshold"] == reports["one"]["judge"]["threshold"]  # one global percentile
    assert (out["sharded"] / "DONE").exists()


def test_sharded_judging_without_its_cache_is_refused():
    with pytest.raises(ConfigError) as error:
        load(
            [
                "experiment=smoke",
                "curation.steps=[dedup,judge,mix]",
                "curation.judge.backend=openai",
                "curation.judge.endpoint=http://127.0.0.1:9/v1",
                "curation.shards=4",
                "curation.judge.cache=false",
            ]
        )
    assert "curation.shards" in str(error.value) and "judge.cache=true" in str(error.value)
