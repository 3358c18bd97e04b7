"""Rows run by the reference harnesses: lm-evaluation-harness (harness=lm_eval) and EvalPlus (harness=evalplus).

lm_eval: one `simple_evaluate` per row with the row's task, shots and generation budget (lm-eval's vLLM default of
256 new tokens truncates chains of thought). Chain-of-thought rows are rendered with the model's chat template,
their few-shot examples as earlier turns; log-likelihood rows see lm-eval's raw prompts. With `data_path` a
single task reads local JSONL: a task file that includes the built-in one and swaps its dataset is written to the
run directory. A group (mmlu, minerva_math) spans many datasets; it reads the Hugging Face cache (fill HF_HOME on
a machine with internet and copy it), or runs natively from local files.

evalplus: completions come from this project's generation and are judged against EvalPlus's base and extended
tests by EvalPlus's own rules, isolated as every code verdict is (the completion in the sandbox, the comparison in
the judge); pass@k uses the unbiased estimator over the samples that pass both.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from yulan.rewards import sandbox
from yulan.rewards.sandbox import code_of
from yulan.runtime.records import write_text, writing
from yulan.schema.evaluation import Benchmark
from yulan.schema.experiment import Experiment
from yulan.stages.evaluation.scoring import pass_at_k, warn
from yulan.stages.tasks import read_records


# -- lm-evaluation-harness ------------------------------------------------------------------------------------
def lm_eval_task(benchmark: Benchmark, directory: Path, manager) -> tuple[str, str]:
    """(what to ask the harness for: the task's name or a task file, the name its results come under). Local data
    for a group is refused with the alternatives."""
    from lm_eval.tasks._index import Kind

    entry = manager.task_index.get(benchmark.task)
    if entry is None:
        raise ValueError(f"lm-evaluation-harness has no task '{benchmark.task}'")
    if benchmark.data_path is None:
        return benchmark.task, benchmark.task
    if entry.kind is not Kind.TASK:
        raise ValueError(
            f"'{benchmark.task}' is an lm-eval group of many datasets; data_path works for single tasks. "
            "Leave data_path unset and fill the Hugging Face cache (HF_HOME), or use harness=native"
        )
    name = f"{benchmark.task}_local"
    config = {
        "include": str(entry.yaml_path),
        "task": name,
        "tag": [],
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(Path(benchmark.data_path).resolve())}},
        "test_split": "test",
        "validation_split": None,
        "training_split": None,
    }
    if benchmark.num_fewshot:  # shots come from the same file (lm-eval never picks the question itself)
        config["fewshot_split"] = "test"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return str(directory / f"{name}.yaml"), name


def headline_metrics(task_results: dict) -> dict[str, float]:
    """lm-eval keys results 'metric,filter'; keep one value per metric: no filter, else strict-match, else the
    first filter."""
    metrics: dict[str, float] = {}
    for preferred in ("none", "strict-match", None):
        for key, value in task_results.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, filtered = key.split(",", 1)
            if metric not in metrics and (preferred is None or filtered == preferred):
                metrics[metric] = value
    return metrics


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_lm_eval(
    benchmark: Benchmark, model_path: str, backend: str, experiment: Experiment, directory: Path, gpus: int = 1
) -> dict:
    context_length = experiment.model.context_length
    if backend == "vllm":
        from yulan.runtime import vllm_engine

        engine = experiment.generation.vllm
        vllm_engine.check_servable(model_path, engine, context_length)
        os.environ.update(vllm_engine.engine_environment(engine))
        view = vllm_engine.distribution_view(directory / ".vllm-metadata")
        if view and view not in sys.path:
            sys.path.insert(0, view)
        model_args = {
            "pretrained": model_path,
            "tensor_parallel_size": gpus,
            "max_model_len": engine.max_model_len or context_length,
            "gpu_memory_utilization": engine.gpu_memory_utilization,
            "dtype": vllm_engine.dtype_name(engine),
            "enforce_eager": engine.enforce_eager,
            "seed": experiment.seed,
            **vllm_engine.scheduler_options(engine.max_model_len or context_length),
        }
    else:
        model_args = {"pretrained": model_path, "max_length": context_length, "dtype": "auto"}
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager()  # indexing every task takes seconds: once
    spec, task = lm_eval_task(benchmark, directory, manager)
    gen_kwargs = {
        "max_gen_toks": benchmark.max_new_tokens,
        "temperature": benchmark.temperature,
        "do_sample": benchmark.temperature > 0,
    }
    if backend == "vllm":  # built here, so that its engine can be shut down when the row ends
        from lm_eval.models.vllm_causallms import VLLM

        model = VLLM(**model_args, batch_size="auto")
    else:
        model = "hf"
    try:
        output = evaluate_row(lm_eval, model, model_args, spec, manager, benchmark, gen_kwargs, backend)
    finally:
        if backend == "vllm":
            model.model.llm_engine.engine_core.shutdown()
    results = output["results"]
    metrics = headline_metrics(results[task])
    metrics["problems"] = sum(v["effective"] for v in output.get("n-samples", {}).values())
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / f"{benchmark.task}.lm_eval.json", json.dumps(results, indent=2, default=str))
    with writing(directory / f"{benchmark.task}.lm_eval.samples.jsonl") as sink:  # per-question responses
        for subtask_samples in output["samples"].values():
            sink.writelines(json.dumps(sample, default=str, ensure_ascii=False) + "\n" for sample in subtask_samples)
    return metrics


def evaluate_row(lm_eval, model, model_args: dict, spec, manager, benchmark: Benchmark, gen_kwargs: dict, backend):
    return lm_eval.simple_evaluate(
        model=model,
        model_args=None if backend == "vllm" else model_args,
        tasks=[spec],
        task_manager=manager,
        num_fewshot=benchmark.num_fewshot,
        limit=benchmark.max_problems,
        gen_kwargs=gen_kwargs,
        apply_chat_template=benchmark.chain_of_thought,
        fewshot_as_multiturn=benchmark.chain_of_thought,
        batch_size="auto" if backend == "vllm" else 16,
        log_samples=True,
        device=device(),
    )


# -- EvalPlus ---------------------------------------------------------------------------------------------------
GROUNDTRUTH_TIMEOUT_S = 3600  # EvalPlus's canonical solutions on all plus inputs: minutes for the whole set


def evalplus_problems(benchmark: Benchmark) -> list[dict]:
    """EvalPlus's problems (prompt, entry_point, canonical_solution, base_input, plus_input, atol, ...)."""
    if benchmark.data_path is None:
        from evalplus.data import get_human_eval_plus, get_mbpp_plus

        problems = list((get_human_eval_plus() if benchmark.task == "humaneval" else get_mbpp_plus()).values())
    else:
        problems = read_records(benchmark.data_path)
    return problems[: benchmark.max_problems] if benchmark.max_problems else problems


def evalplus_timeout(truth_path: Path) -> float:
    """A sample's whole time: EvalPlus's per-input limits (its reference time x factor, at least the minimum)
    summed per part and capped as EvalPlus caps a part, plus start-up."""
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT

    with open(truth_path, "rb") as file:  # our own file, written by the ground-truth run
        truth = pickle.load(file)
    limits = [
        sum(max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR * t) for t in truth[f"{part}_time"])
        for part in ("base", "plus")
    ]
    return sum(min(60.0, limit) + 1 for limit in limits) + 10


def score_evalplus(
    benchmark: Benchmark,
    problems: list[dict],
    samples: list[dict],
    directory: Path,
    isolation: str,
    memory_mb: int = 4096,
    workers: int = 4,
) -> tuple[dict, list[dict]]:
    """`samples`: human-eval format (task_id, completion), several per task. EvalPlus's inputs, reference outputs
    (its own `trusted_exec` of the canonical solutions, in a trusted subprocess) and comparison rules, with the
    completion in the sandbox and the comparison in the judge (yulan.rewards.calls), as every code verdict."""
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT

    known = {p["task_id"]: p for p in problems}
    directory = directory.resolve()
    truth_dir = directory / f"{benchmark.task}_plus.groundtruth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    sampled = [p for p in problems if p["task_id"] in {s["task_id"] for s in samples}]
    dataset = directory / f"{benchmark.task}_plus.problems.jsonl"  # exactly the problems sampled
    dataset.write_text("".join(json.dumps(p) + "\n" for p in sampled))
    try:
        done = subprocess.run(
            [sys.executable, "-I", str(sandbox.CALLS), "groundtruth", str(dataset), str(truth_dir), benchmark.task],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)},
            capture_output=True,
            text=True,
            timeout=GROUNDTRUTH_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"EvalPlus's reference outputs took over {GROUNDTRUTH_TIMEOUT_S} s for {len(sampled)} problems"
        ) from None
    if done.returncode != 0:
        raise RuntimeError(f"EvalPlus's reference outputs failed (exit {done.returncode}): {done.stderr[-2000:]}")
    truth_of = {p["task_id"]: truth_dir / f"{index}.pkl" for index, p in enumerate(sampled)}
    timeout_of = {task_id: evalplus_timeout(path) for task_id, path in truth_of.items()}  # one read per problem

    def judge(sample: dict) -> sandbox.Outcome:
        problem = known[sample["task_id"]]
        job = {
            "mode": "evalplus",
            "groundtruth": str(truth_of[sample["task_id"]]),
            "entry_point": problem["entry_point"],
            "dataset": benchmark.task,
            "min_time_limit": DEFAULT_MIN_TIME_LIMIT,
            "time_factor": DEFAULT_GT_TIME_LIMIT_FACTOR,
        }
        timeout = timeout_of[sample["task_id"]]
        code = problem["prompt"] + code_of(sample["completion"])
        return sandbox.judged(code, job, timeout, memory_mb, isolation, judge_python=(sys.executable, "-I"))

    with ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(judge, samples))
    base: dict[str, list[bool]] = defaultdict(list)
    plus: dict[str, list[bool]] = defaultdict(list)
    for sample, outcome in zip(samples, outcomes):
        parts = outcome.parts or {"base": outcome.status, "plus": outcome.status}
        base[sample["task_id"]].append(parts["base"] == "pass")
        plus[sample["task_id"]].append(parts["base"] == "pass" and parts["plus"] == "pass")
    metrics = {"problems": len(plus), "samples": len(samples), "isolation": isolation}
    for k in sorted({1, benchmark.pass_k or 1}):
        short = [task for task, v in plus.items() if len(v) < k]
        if short or not plus:
            metrics[f"pass@{k}"] = metrics[f"base_pass@{k}"] = None
            warn(
                metrics,
                f"pass@{k} needs at least {k} samples per problem; {len(short)} of {len(plus)} problems have fewer",
            )
            continue
        metrics[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in plus.values()) / len(plus)
        metrics[f"base_pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in base.values()) / len(base)
    verdicts = []
    for sample, outcome in zip(samples, outcomes):
        parts = outcome.parts or {"base": outcome.status, "plus": outcome.status}
        verdicts.append(
            {
                "task_id": sample["task_id"],
                "passed": parts == {"base": "pass", "plus": "pass"},
                "outcome": f"base {parts['base']}, plus {parts['plus']}",
                "why": outcome.detail,
            }
        )
    return metrics, verdicts
