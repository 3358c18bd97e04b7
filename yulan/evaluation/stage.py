"""The evaluation stage: each checkpoint of eval.checkpoints generates on every selected benchmark, is scored,
and the table (Markdown, JSON, PNG) is written to eval/results/ and logged to the tracker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schema.errors import ConfigError, Problem
from schema.experiment import Experiment, stage_output
from yulan.evaluation import benchmarks, scoring, table


def missing(experiment: Experiment) -> list[Problem]:
    """What this version cannot run yet (checked before anything is written)."""
    config = experiment.eval
    problems = []
    if config.backend != "transformers":
        problems.append(Problem("eval.backend", "only the transformers backend is built in this version", config.backend,
                                "set eval.backend=transformers"))
    for name in config.selected:
        benchmark = config.benchmarks[name]
        if benchmark.harness != "native" or benchmark.task not in benchmarks.NATIVE_TASKS:
            problems.append(Problem(
                f"eval.benchmarks.{name}", f"only native tasks ({', '.join(benchmarks.NATIVE_TASKS)}) are built in this "
                "version", f"harness={benchmark.harness}, task={benchmark.task}",
                f"set eval.benchmarks.{name}.harness=native with a native task and data_path, or drop it from eval.selected"))
    return problems


def score(benchmark, items: list[dict], samples: list[dict], timeout_s: float, memory_mb: int) -> dict:
    if benchmark.task in ("humaneval", "mbpp"):
        problems = {item["id"]: item["problem"] for item in items}
        ks = tuple(sorted({1, benchmark.pass_k or 1}))
        return scoring.score_code(problems, samples, ks, timeout_s, memory_mb)
    return scoring.score_answers(samples)


def evaluate(experiment: Experiment, checkpoint: str, out_dir: Path) -> dict[str, dict]:
    from yulan.native import common

    path = common.model_path(experiment, checkpoint)
    tokenizer = common.load_tokenizer(path)
    model = common.load_causal_lm(path, "bf16")
    results = {}
    for name in experiment.eval.selected:
        benchmark = experiment.eval.benchmarks[name]
        items = benchmarks.load(benchmark)
        prompts = [common.prompt_ids(tokenizer, [{"role": "user", "content": item["question"]}],
                                     experiment.model.context_length - benchmark.max_new_tokens) for item in items]
        completions = common.generate(model, tokenizer, prompts, benchmark.num_samples, benchmark.temperature,
                                      benchmark.max_new_tokens)
        texts = iter(common.decode(tokenizer, ids) for ids in completions)
        samples = [{"task_id": item["id"], "completion": next(texts), **({"reference": item["reference"]} if "reference" in item else {})}
                   for item in items for _ in range(benchmark.num_samples)]
        common.write_jsonl(out_dir / f"{name}.samples.jsonl", samples)  # rescore with `yulan eval score`
        results[name] = score(benchmark, items, samples, experiment.eval.sandbox_timeout_s, experiment.eval.sandbox_memory_mb)
        print(f"[eval] {checkpoint} {name}: {json.dumps(results[name])}", file=sys.stderr)
    return results


def run(experiment: Experiment, job_dir: str) -> int:
    unbuilt = missing(experiment)
    if unbuilt:
        print(ConfigError("the eval stage cannot run", unbuilt), file=sys.stderr)
        return 2
    output = Path(stage_output(experiment.output_dir, "eval"))
    results = {}
    for ref in experiment.eval.checkpoints:
        label = ref if ref in experiment.stages else Path(ref).name
        results[label] = evaluate(experiment, experiment.resolve(ref), output / label)
    paths = table.write(experiment.eval, results, output)
    print((paths["markdown"]).read_text(), file=sys.stderr)
    log_table(experiment, job_dir, paths)
    return 0


def log_table(experiment: Experiment, job_dir: str, paths: dict[str, Path]) -> None:
    from yulan.native.common import Tracker

    tracker = Tracker(experiment, "eval", job_dir)
    if tracker.run is not None:
        import wandb

        rows = json.loads(paths["json"].read_text())["rows"]
        logged = {"eval/table": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])}
        if "png" in paths:
            logged["eval/chart"] = wandb.Image(str(paths["png"]))
        tracker.run.log(logged)
    tracker.finish()
