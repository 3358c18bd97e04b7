"""The evaluation stage: each checkpoint of eval.checkpoints runs every selected benchmark, is scored, and the
table (Markdown, JSON, PNG) is written to eval/results/ and logged to the tracker.

Who runs a row: harness=native — this project's tasks (generation with vLLM or transformers, multiple choice by
log-likelihood with transformers); harness=lm_eval — lm-evaluation-harness; harness=evalplus — this project's
generation, EvalPlus's tests."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from yulan.rewards import sandbox
from yulan.runtime.packages import install_hint, installed
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment, stage_output
from yulan.stages import tasks
from yulan.stages.evaluation import scoring as scores
from yulan.stages.evaluation import table
from yulan.stages.tasks.humaneval import code_question

log = logging.getLogger(__name__)

PACKAGES = {"lm_eval": "lm_eval", "evalplus": "evalplus", "vllm": "vllm"}  # a row's harness or backend: its module


def prerun_problems(experiment: Experiment, stage: str = "eval", here: bool = True) -> list[Problem]:
    """What cannot run (checked before anything is written); `here`: also what this machine lacks."""
    problems = []
    for name in experiment.eval.selected:
        benchmark = experiment.eval.benchmarks[name]
        field = f"eval.benchmarks.{name}"
        if benchmark.harness == "native":
            if benchmark.task not in tasks.TASKS:
                problems.append(
                    Problem(
                        f"{field}.task",
                        f"native tasks are {', '.join(tasks.TASKS)}",
                        benchmark.task,
                        "pick a native task, or harness=lm_eval for the harness's tasks",
                    )
                )
                continue
            reported = tasks.TASKS[benchmark.task].metrics
            wanted = "pass@k" if benchmark.pass_k else benchmark.metric
            if wanted not in reported:
                problems.append(
                    Problem(
                        f"{field}.metric",
                        f"native task '{benchmark.task}' reports {', '.join(reported)}",
                        wanted,
                        f"set {field}.metric={reported[0]}" + (" and pass_k" if reported == ("pass@k",) else ""),
                    )
                )
        if benchmark.harness == "native" and benchmark.task == "math" and benchmark.num_fewshot:
            problems.append(
                Problem(
                    f"{field}.num_fewshot",
                    "the native MATH task is minerva_math's zero-shot setting",
                    benchmark.num_fewshot,
                    f"set {field}.num_fewshot=0",
                )
            )
        if benchmark.harness == "evalplus" and benchmark.task not in ("humaneval", "mbpp"):
            problems.append(
                Problem(
                    f"{field}.task",
                    "EvalPlus has humaneval and mbpp",
                    benchmark.task,
                    "set task=humaneval or task=mbpp",
                )
            )
    return problems + (unavailable(experiment) + unisolated(experiment) if here else [])


def unisolated(experiment: Experiment) -> list[Problem]:
    """Code rows on a machine where generated code cannot run isolated, without the explicit opt-in."""
    config = experiment.eval
    rows = [name for name in config.selected if config.benchmarks[name].pass_k is not None]
    if not rows or config.allow_unisolated_code or sandbox.isolation_problem() is None:
        return []
    return [
        Problem(
            f"eval.benchmarks.{rows[0]}",
            f"generated code runs only isolated, and {sandbox.isolation_problem()}",
            rows[0],
            "install bubblewrap (apt-get install bubblewrap), deselect the code rows, or set "
            "eval.allow_unisolated_code=true on a machine you can lose",
        )
    ]


def unavailable(experiment: Experiment) -> list[Problem]:
    """Packages the selected rows need that this environment lacks."""
    config = experiment.eval
    needs = [
        (f"eval.benchmarks.{name}.harness", config.benchmarks[name].harness, PACKAGES[config.benchmarks[name].harness])
        for name in config.selected
        if config.benchmarks[name].harness != "native"
    ]
    backend = config.backend or experiment.generation.backend  # auto takes vLLM only where it is installed
    if backend != "vllm":  # lm_eval's transformers backend imports accelerate
        needs += [(field, need, "accelerate") for field, need, _ in needs if need == "lm_eval"]
    elif any(
        generates(config.benchmarks[name]) or config.benchmarks[name].harness == "lm_eval" for name in config.selected
    ):
        needs.append(("eval.backend" if config.backend else "generation.backend", "vllm", "vllm"))
    problems = []
    for field, need, module in needs:
        if not installed(module):
            problems.append(
                Problem(
                    field,
                    f"needs the {module} package, which is not installed here",
                    need,
                    f"{install_hint(module)}, or run the row with harness=native and eval.backend=transformers",
                )
            )
    return problems


def generates(benchmark) -> bool:
    """Rows whose completions this project generates."""
    return benchmark.harness == "evalplus" or (benchmark.harness == "native" and tasks.kind(benchmark) == "generate")


def score(benchmark, items: list[dict], samples: list[dict], config, directory: Path) -> tuple[dict, list[dict]]:
    """(metrics, one verdict per sample) of a generation row, as its task scores it; code runs isolated
    (sandbox.isolation). lm-eval's tasks scored from a file (`yulan eval score`) score as the native task of their
    dataset: a letter for MMLU, an answer for the rest."""
    task = tasks.TASKS.get(benchmark.task)
    scoring = task.scoring if task else "letter" if benchmark.task.startswith("mmlu") else "answer"
    if benchmark.harness == "evalplus" or scoring == "code":
        isolation = sandbox.isolation(config.allow_unisolated_code)
        problems = {item["id"]: item["problem"] for item in items}
        if benchmark.harness == "evalplus":
            from yulan.stages.evaluation import harness

            return harness.score_evalplus(
                benchmark, list(problems.values()), samples, directory, isolation, config.sandbox_memory_mb
            )
        ks = tuple(sorted({1, benchmark.pass_k or 1}))
        return scores.score_code(problems, samples, ks, config.sandbox_timeout_s, config.sandbox_memory_mb, isolation)
    if scoring == "letter":
        return scores.score_letters(samples)
    return scores.score_answers(samples, benchmark.metric, until=task.until if task else None)


def items_of(benchmark) -> list[dict]:
    if benchmark.harness == "evalplus":
        from yulan.stages.evaluation import harness

        problems = harness.evalplus_problems(benchmark)
        return [{"id": p["task_id"], "problem": p, "question": code_question(p)} for p in problems]
    return tasks.load(benchmark)


class Checkpoint:
    """One checkpoint, loaded lazily for what its rows need: a generator (vLLM or transformers) and/or a
    transformers model for log-likelihoods. close() frees both (an engine's memory goes back before the next
    checkpoint's, or lm-eval's own engine, starts)."""

    def __init__(self, experiment: Experiment, path: str):
        from yulan.runtime.generation import backend_of

        self.experiment, self.path = experiment, path
        self.backend = backend_of(experiment, experiment.eval.backend)
        self._tokenizer = self._model = self._generator = None

    @property
    def tokenizer(self):
        from yulan.runtime.models import load_tokenizer

        self._tokenizer = self._tokenizer or load_tokenizer(self.path, self.experiment.model.chat_template)
        return self._tokenizer

    @property
    def model(self):
        from yulan.runtime.models import inference_dtype, load_causal_lm

        self._model = self._model or load_causal_lm(self.path, inference_dtype())
        return self._model

    def complete(self, questions: list[str], benchmark) -> list[str]:
        """Completions of each question as a chat turn, question-major (num_samples per question)."""
        from yulan.runtime.batches import prompt_ids
        from yulan.runtime.generation import TransformersGenerator, open_generator, sampling_for
        from yulan.runtime.models import generation_config_of

        budget = self.experiment.model.context_length - benchmark.max_new_tokens
        prompts = [prompt_ids(self.tokenizer, [{"role": "user", "content": q}], budget) for q in questions]
        if self._generator is None:
            if self.backend == "vllm":
                self._generator = open_generator(self.experiment, self.path, "vllm", self.tokenizer)
            else:  # the log-likelihood rows' model serves generation too
                batch = self.experiment.generation.transformers_batch_size
                self._generator = TransformersGenerator(self.model, self.tokenizer, batch)
        sampling = sampling_for(
            self.tokenizer,
            generation_config_of(self.path),
            benchmark.max_new_tokens,
            benchmark.temperature,
            n=benchmark.num_samples,
            seed=self.experiment.seed,
        )
        return [c.text for c in self._generator.generate(prompts, sampling, progress=f"eval {benchmark.task}")]

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
        self._generator = self._model = None

    def loglikelihoods(self, items: list[dict]) -> list[float]:
        from yulan.stages.evaluation import choice

        return choice.loglikelihoods(
            self.model, self.tokenizer, choice.requests_of(items), self.experiment.model.context_length
        )


def evaluate(experiment: Experiment, path: str, out_dir: Path) -> dict[str, dict]:
    checkpoint = Checkpoint(experiment, path)
    try:
        return evaluate_rows(experiment, checkpoint, out_dir)
    finally:
        checkpoint.close()


def evaluate_rows(experiment: Experiment, checkpoint: Checkpoint, out_dir: Path) -> dict[str, dict]:
    from yulan.runtime.records import write_jsonl

    config, path = experiment.eval, checkpoint.path
    results = {}
    for name in config.selected:
        benchmark = config.benchmarks[name]
        if benchmark.harness == "lm_eval":
            import torch

            from yulan.stages.evaluation import harness

            checkpoint.close()  # lm-eval starts its own model: one engine alive at a time
            results[name] = harness.run_lm_eval(
                benchmark,
                path,
                checkpoint.backend,
                experiment,
                out_dir,
                gpus=max(1, torch.cuda.device_count()),
            )
        elif not generates(benchmark):
            from yulan.stages.evaluation import choice

            items = tasks.load(benchmark)
            results[name] = choice.score(items, checkpoint.loglikelihoods(items))
        else:
            items = items_of(benchmark)
            texts = iter(checkpoint.complete([item["question"] for item in items], benchmark))
            samples = [
                {
                    "task_id": item["id"],
                    "completion": next(texts),
                    **{key: item[key] for key in ("reference", "subject") if key in item},
                }
                for item in items
                for _ in range(benchmark.num_samples)
            ]
            write_jsonl(out_dir / f"{name}.samples.jsonl", samples)  # rescore with `yulan eval score`
            results[name], verdicts = score(benchmark, items, samples, config, out_dir)
            write_jsonl(out_dir / f"{name}.verdicts.jsonl", verdicts)  # each sample's answer or outcome, and why
        log.info(f"[eval] {out_dir.name} {name}: {json.dumps(results[name])}")
    return results


def run(experiment: Experiment, job_dir: str) -> int:
    problems = prerun_problems(experiment)
    if problems:
        log.error("%s", ConfigError("the eval stage cannot run", problems))
        return 2
    from yulan.runtime.models import model_path

    output = Path(stage_output(experiment.output_dir, "eval"))
    results = {}
    for ref in experiment.eval.checkpoints:
        label = ref if ref in experiment.stages else Path(ref).name
        results[label] = evaluate(experiment, model_path(experiment, experiment.resolve(ref)), output / label)
    paths = table.write(experiment.eval, results, output, decontamination(experiment))
    log.info("%s", (paths["markdown"]).read_text())
    log_table(experiment, job_dir, paths)
    return 0


# Where each training-data stage of a run leaves its decontamination rows (per benchmark: checked, matched_samples).
DECONTAMINATION_REPORTS = {
    "sft data": ("curation/report.json", ("steps", "decontaminate", "benchmarks")),
    "preference pairs": ("preference/report.json", ("decontamination",)),
    "ppo prompts": ("ppo/data/prompts.report.json", ("decontamination",)),
}


def decontamination(experiment: Experiment) -> dict[str, str]:
    """Per benchmark row: which of this run's training data was decontaminated against it, with how many
    samples were removed ("no" when none was)."""
    found: dict[str, list[str]] = {}
    for what, (relative, keys) in DECONTAMINATION_REPORTS.items():
        path = Path(experiment.output_dir) / relative
        if not path.is_file():
            continue
        rows = json.loads(path.read_text())
        for key in keys:
            rows = rows.get(key, {}) if isinstance(rows, dict) else {}
        for name, row in rows.items():
            if row.get("checked"):
                found.setdefault(name, []).append(f"{what} ({row.get('matched_samples', 0)} matched)")
    return {name: "; ".join(parts) for name, parts in found.items()}


def log_table(experiment: Experiment, job_dir: str, paths: dict[str, Path]) -> None:
    from yulan.runtime.tracking import Tracker

    tracker = Tracker(experiment, "eval", job_dir)
    if tracker.run is not None:
        import wandb

        rows = json.loads(paths["json"].read_text())["rows"]
        logged = {"eval/table": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])}
        if "png" in paths:
            logged["eval/chart"] = wandb.Image(str(paths["png"]))
        tracker.run.log(logged)
    tracker.finish()
