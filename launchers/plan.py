"""A validated Experiment -> the jobs that carry it out, with resources, inputs, outputs and dependencies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from schema.common import STAGES
from schema.experiment import Experiment, stage_output
from yulan.engines import openrlhf

ENGINE_STAGES = ("sft", "dpo", "ppo")


@dataclass(frozen=True)
class Job:
    name: str
    stage: str
    engine: str | None
    partition: str
    resources: dict[str, Any]
    run_dir: str
    depends_on: list[str]
    inputs: dict[str, str]
    outputs: dict[str, str]
    command: list[str]
    engine_command: list[str] | None = None
    reward_server_command: list[str] | None = None
    sbatch: str | None = None  # the sbatch script (launcher=slurm dry runs)

    def with_sbatch(self, script: str) -> Job:
        return replace(self, sbatch=script)


@dataclass(frozen=True)
class Run:
    experiment: str
    overrides: list[str]
    run_dir: str
    launcher: str
    cluster: str
    jobs: list[Job] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan(experiment: Experiment, overrides: list[str]) -> Run:
    run = Run(
        experiment=experiment.name,
        overrides=list(overrides),
        run_dir=experiment.output_dir,
        launcher=experiment.launcher.kind,
        cluster=experiment.cluster.name,
    )
    for stage in experiment.stages:
        refs = experiment.stage_inputs(stage)
        inputs = {path: experiment.resolve(ref) for path, ref in refs.items()}
        if stage == "curation":
            inputs |= {f"curation.inputs.{i}": path for i, path in enumerate(experiment.curation.inputs)}
        depends_on = sorted({ref for ref in refs.values() if ref in STAGES}, key=STAGES.index)
        _, resources = experiment.stage_resources(stage)[-1]  # curation: its model-running job when it has one
        config = getattr(experiment, stage)
        engine = getattr(config, "engine", None)
        job_dir = f"{experiment.output_dir}/{stage}"
        run.jobs.append(
            Job(
                name=f"{experiment.name}-{stage}",
                stage=stage,
                engine=engine,
                partition=experiment.cluster.partitions.get(resources.partition, resources.partition),
                resources=resources.model_dump(),
                run_dir=job_dir,
                depends_on=depends_on,
                inputs=inputs,
                outputs={stage: stage_output(experiment.output_dir, stage)},
                command=["python", "-m", "yulan.run", "--run-dir", experiment.output_dir, "--stage", stage],
                engine_command=openrlhf.command(experiment, stage, job_dir) if engine == "openrlhf" else None,
                reward_server_command=openrlhf.reward_server_command(experiment)
                if stage == "ppo" and engine == "openrlhf" else None,
            )
        )
    return run
