"""The evaluation table (report §6)."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, model_validator

from yulan.schema.common import Resources, StageRef, gpu_job
from yulan.schema.fields import Section, chosen, paper, rule_error
from yulan.schema.generation import GenerationBackend

Skill = Literal["Knowledge", "Reasoning", "Math", "Code"]
YULAN, LLAMA, QWEN = "YuLan-Mini-Instruct", "Llama3.2-3B-Instruct", "Qwen-2.5-1.5B-Instruct"


class Benchmark(Section):
    title: str = Field(description="Row title as in the report's table.")
    skill: Skill = Field(description="Core skill the row belongs to.")
    harness: Literal["lm_eval", "evalplus", "native"] = Field(
        description="Who runs it (native = this project's own task)."
    )
    task: str = Field(description="Task name in the harness.")
    num_fewshot: int = Field(ge=0, description="Examples shown before each question.")
    chain_of_thought: bool = Field(description="The answer is extracted from a reasoning chain.")
    metric: str = Field(description="Metric reported.")
    pass_k: int | None = Field(default=None, ge=1, description="k of pass@k (code benchmarks).")
    num_samples: int = Field(default=1, ge=1, description="Generations per problem.")
    temperature: float = Field(default=0.0, ge=0.0, description="Sampling temperature (0 = greedy).")
    max_new_tokens: int = Field(
        default=1024, ge=1, description="Generation budget.", json_schema_extra={"unit": "tokens"}
    )
    data_path: str | None = Field(
        default=None, description="Local data files (machines without internet); None = the harness default."
    )
    max_problems: int | None = Field(
        default=None, ge=1, description="Evaluate only the first N problems (smoke runs); None = all."
    )
    published: dict[str, float] = Field(default_factory=dict, description="Scores published in the report's table.")

    @model_validator(mode="after")
    def _sampling(self) -> Benchmark:
        if self.pass_k is not None and self.num_samples < self.pass_k:
            raise rule_error(
                "num_samples",
                self.num_samples,
                f"pass@{self.pass_k} needs at least {self.pass_k} samples per problem",
                f"set num_samples >= {self.pass_k} (20 gives a low-variance estimate)",
            )
        if self.num_samples > 1 and self.temperature == 0.0:
            raise rule_error(
                "temperature",
                self.temperature,
                "several samples per problem need temperature > 0 (greedy samples are identical)",
                "set temperature to e.g. 0.8",
            )
        return self


# The report's evaluation table, one row per benchmark: (name, title, skill, harness, task, shots, chain of thought,
# metric, published (YuLan-Mini-Instruct, Llama-3.2-3B-Instruct, Qwen-2.5-1.5B-Instruct)). The MATH row runs natively:
# lm-eval's minerva_math asserts antlr4 4.11, which cannot share an environment with Hydra's 4.9.
REPORT_ROWS = (
    ("mmlu_0shot_cot", "MMLU (0 shot, CoT)", "Knowledge", "lm_eval", "mmlu_flan_cot_zeroshot", 0, True, "exact_match",
     (53.56, 60, 57.4)),
    ("mmlu_5shot", "MMLU (5 shot)", "Knowledge", "lm_eval", "mmlu", 5, False, "acc", (52.71, 63.4, 66.5)),
    ("truthfulqa_0shot", "TruthfulQA (0 shot)", "Knowledge", "lm_eval", "truthfulqa_mc2", 0, False, "acc",
     (50.08, 49.7, 58.8)),
    ("arc_0shot", "ARC (0 shot)", "Reasoning", "lm_eval", "arc_challenge", 0, False, "acc_norm", (51.79, 78.6, 47.8)),
    ("math_0shot_cot", "MATH (0 shot, CoT)", "Math", "native", "math", 0, True, "math_verify", (55.18, 48, 55.2)),
    ("gsm8k_8shot", "GSM8K (8 shot)", "Math", "lm_eval", "gsm8k_cot", 8, True, "exact_match", (81.8, 43.4, 73.2)),
    ("gsm8k_0shot_cot", "GSM8K (0 shot, CoT)", "Math", "lm_eval", "gsm8k_cot_zeroshot", 0, True, "exact_match",
     (71.72, 66, 69.4)),
    ("humaneval_pass10", "HumanEval (pass@10)", "Code", "native", "humaneval", 0, False, "pass@k", (86.6, 78.7, 84.1)),
    ("humaneval_plus_pass10", "HumanEval+ (pass@10)", "Code", "evalplus", "humaneval", 0, False, "pass@k",
     (80.5, 72, 78.0)),
    ("mbpp_pass10", "MBPP (pass@10)", "Code", "native", "mbpp", 0, False, "pass@k", (85.7, 80.4, 88.1)),
    ("mbpp_plus_pass10", "MBPP+ (pass@10)", "Code", "evalplus", "mbpp", 0, False, "pass@k", (75.4, 71.2, 77.5)),
)  # fmt: skip
# Settings a row adds to its columns: sampling for pass@k, a longer budget for MATH's worked solutions
ROW_SETTINGS: dict[str, dict[str, Any]] = {
    "Code": {"pass_k": 10, "num_samples": 20, "temperature": 0.8, "max_new_tokens": 768},
    "math_0shot_cot": {"max_new_tokens": 2048},
}


def _report_benchmarks() -> dict[str, Benchmark]:
    return {
        name: Benchmark(
            title=title,
            skill=skill,
            harness=harness,
            task=task,
            num_fewshot=shots,
            chain_of_thought=cot,
            metric=metric,
            published=dict(zip((YULAN, LLAMA, QWEN), scores)),
            **ROW_SETTINGS.get(skill, {}),
            **ROW_SETTINGS.get(name, {}),
        )
        for name, title, skill, harness, task, shots, cot, metric, scores in REPORT_ROWS
    }


class EvalConfig(Section):
    benchmarks: dict[str, Benchmark] = paper(
        default_factory=_report_benchmarks,
        where="§6 evaluation tables",
        description="Every benchmark row with its setting and published scores.",
    )
    selected: tuple[str, ...] = chosen(
        default_factory=lambda: tuple(_report_benchmarks()),
        description="Names of the benchmarks to run (default: the whole table).",
    )
    checkpoints: tuple[StageRef, ...] = chosen(
        ("ppo",), description="What to evaluate: stages of this experiment or paths."
    )
    backend: GenerationBackend | None = chosen(
        None, description="The evaluation's sampling backend (and lm-eval's model); None = generation.backend."
    )
    sandbox_timeout_s: float = chosen(10.0, gt=0.0, description="Time limit per generated program.", unit="seconds")
    sandbox_memory_mb: int = chosen(
        1024, ge=64, description="Memory limit per generated program, for all its processes together.", unit="MiB"
    )
    allow_unisolated_code: bool = chosen(
        False,
        description="Run generated code without bubblewrap where bubblewrap cannot start (a plain subprocess with "
        "limits, no isolation from this machine). Off: such a machine refuses to run generated code. Results "
        "record it.",
    )
    resources: Resources = chosen(
        default_factory=lambda: gpu_job(nodes=1, gpus_per_node=8, hours=12), description="Evaluation job."
    )

    @model_validator(mode="after")
    def _selected_exist(self) -> EvalConfig:
        for name in self.selected:
            if name not in self.benchmarks:
                close = difflib.get_close_matches(name, list(self.benchmarks), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(self.benchmarks)}"
                raise rule_error("selected", name, "every selected benchmark must be defined in eval.benchmarks", hint)
        if not self.selected:
            raise rule_error("selected", [], "select at least one benchmark", "list benchmark names in eval.selected")
        return self
