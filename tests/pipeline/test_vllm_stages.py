"""Every generating stage on real vLLM (the CPU build) with the tiny model: colocated GRPO rollouts with weight
pushes, preference sampling, an evaluation generation row, and curation's job-started servers (a synthesis job and
the LLM judge). Each engine is shut down when its stage part ends."""

import json

import pytest

pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

from tests.conftest import write_jsonl  # noqa: E402
from tests.runtime.test_generation import engine_processes  # noqa: E402
from yulan.cli.job import run_stage  # noqa: E402
from yulan.compose import load  # noqa: E402

pytestmark = pytest.mark.slow
VLLM = ["generation.backend=vllm", "generation.vllm.enforce_eager=true", "tracking.mode=disabled"]


def smoke(tmp_path, *overrides, experiment="smoke"):
    return load([f"experiment={experiment}", f"run_dir={tmp_path}", *VLLM, *overrides])


def test_two_colocated_grpo_rollouts_push_weights_and_match_the_trainer(tmp_path):
    prompts = [{"id": str(i), "prompt": f"What is {i} + {i}?", "label": str(2 * i)} for i in range(8)]
    source = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    experiment = smoke(
        tmp_path,
        "stages=[ppo]",
        "ppo.actor.init_from=tiny:policy",
        f"ppo.prompts.source={source}",
        "ppo.prompts.count=8",
        "ppo.max_steps=2",
        "ppo.generate_max_length=16",
        "ppo.is_correction.level=token",
        experiment="smoke_grpo",
    )
    assert run_stage(experiment, "ppo", str(tmp_path / "ppo")) == 0
    metrics = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2
    for rollout in metrics:  # the second rollout samples from pushed weights: a stale engine would differ
        assert rollout["rollout/logprob_diff"] < 1e-4
        assert rollout["rollout/is_filtered"] == 0.0
        assert rollout["rollout/weight_push_s"] > 0
    assert engine_processes() == []


def test_preference_pairs_sampled_on_vllm(tmp_path):
    experiment = smoke(tmp_path, "stages=[preference]", "preference.policy=tiny:policy")
    assert run_stage(experiment, "preference", str(tmp_path / "preference")) == 0
    pairs = (tmp_path / "preference" / "data" / "pairs.jsonl").read_text().splitlines()
    assert len(pairs) > 0
    assert engine_processes() == []


def test_an_eval_generation_row_on_vllm_equals_transformers(tmp_path):
    from yulan.runtime import tiny
    from yulan.stages.evaluation.stage import evaluate

    path = tiny.resolve("tiny:policy", 4096, 1024)
    rows = ["eval.selected=[gsm8k_0shot_cot]", "eval.benchmarks.gsm8k_0shot_cot.max_problems=6"]
    texts = {}
    for backend in ("vllm", "transformers"):
        experiment = smoke(tmp_path / backend, *rows, f"eval.backend={backend}")
        evaluate(experiment, path, tmp_path / backend)
        samples = (tmp_path / backend / "gsm8k_0shot_cot.samples.jsonl").read_text().splitlines()
        texts[backend] = [json.loads(line)["completion"] for line in samples]
    assert len(texts["vllm"]) == 6 and texts["vllm"] == texts["transformers"]  # greedy: the same completions
    assert engine_processes() == []


def test_curation_serves_a_synthesis_teacher_and_the_judge_from_the_job(tmp_path):
    """Both servers are `vllm serve` started by the job with generation.vllm's settings and stopped after it; the
    judge's JSON grammar without free whitespace gets every sample scored."""
    from yulan.runtime import tiny

    model = tiny.resolve("tiny:policy", 4096, 1024)
    seeds = write_jsonl(
        tmp_path / "seed.jsonl", [{"problem": f"What is {i} + 1?", "expected_answer": str(i + 1)} for i in range(4)]
    )
    experiment = smoke(
        tmp_path,
        "stages=[curation]",
        "curation.steps=[judge]",
        "curation.inputs=[]",
        "curation.sources.synthesis=[math]",
        f"curation.sources.math.teacher={model}",
        f"curation.sources.math.seed_dataset={seeds}",
        "curation.sources.math.match_ground_truth=false",
        "curation.sources.math.samples_per_question=1",
        "curation.sources.math.max_new_tokens=32",
        f"curation.judge.model={model}",
        "curation.judge.max_new_tokens=64",
        "curation.judge.discard_lower_percentile=0",
    )
    assert run_stage(experiment, "curation", str(tmp_path / "curation")) == 0
    report = json.loads((tmp_path / "curation" / "report.json").read_text())["steps"]
    assert report["synthesis/math"]["kept"] == 4
    assert report["judge"]["judge_calls"] == 4 and report["judge"]["unjudged"] == 0
    judged = (tmp_path / "curation" / "data" / "sft.jsonl").read_text().splitlines()
    assert len(judged) == 4
