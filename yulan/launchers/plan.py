"""A validated Experiment -> the jobs that carry it out, with resources, inputs, outputs and dependencies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from yulan.engines.openrlhf import command as openrlhf
from yulan.runtime.lifecycle import done_marker
from yulan.schema.common import STAGES
from yulan.schema.curation import curation_parts
from yulan.schema.experiment import Experiment, stage_output

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
    part: str | None = None  # one job of a stage planned as several (curation.shards > 1)
    array_size: int | None = None  # a part run as one array task per shard (`--shard` 0 .. array_size-1)

    def with_sbatch(self, script: str) -> Job:
        return replace(self, sbatch=script)

    @property
    def key(self) -> str:
        """How the ledger names this job in its run."""
        return f"{self.stage}:{self.part}" if self.part else self.stage

    @property
    def shards(self) -> list[int | None]:
        """The array's task indices, or [None] for a single job."""
        return list(range(self.array_size)) if self.array_size else [None]

    def done(self) -> bool:
        return all(done_marker(self.run_dir, self.part, shard).exists() for shard in self.shards)


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
        inputs, depends_on = stage_inputs(experiment, stage)
        if stage == "curation" and experiment.curation.shards > 1:
            run.jobs.extend(curation_jobs(experiment, inputs, depends_on))
            continue
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
                if stage == "ppo" and engine == "openrlhf"
                else None,
            )
        )
    return run


def stage_inputs(experiment: Experiment, stage: str) -> tuple[dict[str, str], list[str]]:
    """(what the stage reads: setting -> path, the stages it waits for)."""
    refs = experiment.stage_inputs(stage)
    inputs = {path: experiment.resolve(ref) for path, ref in refs.items()}
    if stage == "curation":
        inputs |= {f"curation.inputs.{i}": path for i, path in enumerate(experiment.curation.inputs)}
    return inputs, sorted({ref for ref in refs.values() if ref in STAGES}, key=STAGES.index)


def curation_jobs(experiment: Experiment, inputs: dict[str, str], depends_on: list[str]) -> list[Job]:
    """The curation stage as a chain of jobs: CPU work on curation.resources, model work on model_resources,
    the per-sample work of each step as an array over curation.shards."""
    config, job_dir = experiment.curation, f"{experiment.output_dir}/curation"
    jobs, previous = [], depends_on
    chain = curation_parts(config)
    for index, (part, sharded, runs_model) in enumerate(chain):
        resources = config.model_resources if runs_model else config.resources
        jobs.append(
            Job(
                name=f"{experiment.name}-curation-{part}",
                stage="curation",
                engine=None,
                partition=experiment.cluster.partitions.get(resources.partition, resources.partition),
                resources=resources.model_dump(),
                run_dir=job_dir,
                depends_on=previous,
                inputs=inputs if index == 0 else {},
                outputs={"curation": stage_output(experiment.output_dir, "curation")}
                if index == len(chain) - 1
                else {},
                command=[
                    "python",
                    "-m",
                    "yulan.run",
                    "--run-dir",
                    experiment.output_dir,
                    "--stage",
                    "curation",
                    "--part",
                    part,
                ],
                part=part,
                array_size=config.shards if sharded else None,
            )
        )
        previous = [f"curation:{part}"]
    return jobs
