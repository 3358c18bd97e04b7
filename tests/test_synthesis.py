"""Math distillation against a local OpenAI-compatible server answering like a teacher model (right and wrong)."""

import json
import re

import pytest

from schema.compose import load
from schema.curation import MathSynthesis
from tests.conftest import chat_reply, json_server
from yulan.curation import synthesis
from yulan.curation.stage import run as run_curation


def teacher_reply(body: dict) -> dict:
    """n replies per question: the first n-1 wrong, the last right; 'impossible' questions are always wrong."""
    question = body["messages"][0]["content"]
    a, b = map(int, re.findall(r"\d+", question)[:2])
    last = a + b + (1 if "impossible" in question else 0)
    wrong = [f"{a} + {b} = {a + b + 1 + k}. So \\boxed{{{a + b + 1 + k}}}." for k in range(body["n"] - 1)]
    return chat_reply(*wrong, f"{a} + {b} = {last}. So \\boxed{{{last}}}.")


@pytest.fixture()
def teacher():
    with json_server(teacher_reply) as url:
        yield url


def seed_file(tmp_path, count=6):
    path = tmp_path / "seed.jsonl"
    rows = [{"problem": f"What is {i} + {i + 2}?" + (" (impossible)" if i == 0 else ""), "expected_answer": str(2 * i + 2),
             "problem_source": "augmented_math"} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_only_responses_matching_the_ground_truth_are_kept(tmp_path, teacher):
    config = MathSynthesis(endpoint=teacher, seed_dataset=str(seed_file(tmp_path)), samples_per_question=3)
    report = synthesis.run_math(config, tmp_path / "math.jsonl")
    assert report == {"questions": 6, "kept": 5, "dropped": {"no_response_matches_ground_truth": 1}}
    kept = [json.loads(line) for line in (tmp_path / "math.jsonl").read_text().splitlines()]
    assert all(k["category"] == "math" and f"\\boxed{{{k['answer']}}}" in k["messages"][1]["content"] for k in kept)
    dropped = json.loads((tmp_path / "math.dropped.jsonl").read_text())
    assert "impossible" in dropped["question"]


def test_a_seed_dataset_that_is_not_a_local_file_is_named(tmp_path, teacher):
    with pytest.raises(FileNotFoundError, match="nvidia/OpenMathInstruct-2"):
        synthesis.run_math(MathSynthesis(endpoint=teacher), tmp_path / "math.jsonl")


def test_the_curation_stage_curates_distilled_math_with_its_inputs(tmp_path, teacher):
    experiment = load(["experiment=smoke", f"run_dir={tmp_path}", "stages=[curation]", "curation.steps=[dedup,heuristics]",
                       "curation.sources.synthesis=[math]", f"curation.sources.math.endpoint={teacher}",
                       f"curation.sources.math.seed_dataset={seed_file(tmp_path)}"])
    assert run_curation(experiment, str(tmp_path / "curation")) == 0
    curated = [json.loads(line) for line in (tmp_path / "curation" / "data" / "sft.jsonl").read_text().splitlines()]
    assert sum(s.get("source") == "synthesis/math" for s in curated) == 5
    assert len(curated) > 100  # the shipped samples came through too
    report = json.loads((tmp_path / "curation" / "report.json").read_text())["steps"]
    assert report["synthesis/math"]["kept"] == 5


def test_math_synthesis_without_a_teacher_server_is_refused_before_anything_runs(tmp_path):
    from tests.conftest import run

    result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}", "curation.sources.synthesis=[math,science]")
    assert result.returncode == 1
    assert "curation.sources.math.endpoint" in result.stderr and "vllm serve" in result.stderr
    assert "only the math synthesis job is built" in result.stderr and "science" in result.stderr
    assert list(tmp_path.iterdir()) == []
