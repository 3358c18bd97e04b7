"""Job entry point (`python -m yulan.run --run-dir DIR --stage STAGE`): one stage of a planned run, as its stage
record says."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from yulan.runtime import joblog
from yulan.runtime.distributed import is_head
from yulan.runtime.generation import GenerationError
from yulan.runtime.lifecycle import HEALTH_STOP_STATUS, done_marker, install_stop_handler, started_marker
from yulan.runtime.records import RecordError
from yulan.schema.errors import ConfigError
from yulan.schema.experiment import Experiment, stage_output
from yulan.stages import TABLE, function, missing_packages, prerun_problems

log = logging.getLogger("yulan.cli.job")  # also when run as __main__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m yulan.run", description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--part", help="one job of a stage planned as several (curation with curation.shards > 1)")
    parser.add_argument("--shard", type=int, help="the shard an array part works on")
    args = parser.parse_args(argv)
    experiment = Experiment.model_validate_json((args.run_dir / "config.json").read_text())
    job_dir = f"{experiment.output_dir}/{args.stage}"
    part = "".join(f".{name}" for name in (args.part, args.shard) if name is not None)  # array tasks: a file each
    joblog.start(Path(job_dir) / f"log{part}.txt")
    log.info(
        "%s%s starts on %s (pid %d)", args.stage, f" {part[1:]}" if part else "", socket.gethostname(), os.getpid()
    )
    problems = missing_packages(experiment, args.stage)  # before any step: not a ModuleNotFoundError hours in
    if problems:
        log.error("%s", ConfigError(f"the {args.stage} stage cannot run in this environment", problems))
        return 2
    install_stop_handler()
    done = done_marker(job_dir, args.part, args.shard)
    output = Path(stage_output(experiment.output_dir, args.stage))
    if done_marker(job_dir).exists() and not output.exists():  # a stale marker: what it vouches for is gone
        log.info(f"[{args.stage}] marked done, but its output {output} is missing: running the stage again")
        done_marker(job_dir).unlink()
        shutil.rmtree(Path(job_dir) / "parts", ignore_errors=True)
    elif (
        done.exists() or done_marker(job_dir).exists()
    ):  # a resumed run skips what finished; an interrupted stage resumes from its checkpoint
        log.info(f"[{args.stage}{':' + args.part if args.part else ''}] already done ({done})")
        return 0
    started = started_marker(job_dir)
    if args.part is None or not started.exists():
        started.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    try:
        status = run_stage(experiment, args.stage, job_dir, args.part, args.shard)
    except (ConfigError, RecordError, GenerationError) as error:  # bad input found while running: no traceback
        log.error("%s", error)
        return 2
    finally:
        if "yulan.runtime.vllm_engine" in sys.modules:  # no engine outlives its stage, even one that failed
            sys.modules["yulan.runtime.vllm_engine"].close_all()
    if status == HEALTH_STOP_STATUS:
        log.warning(
            f"[{args.stage}] stopped by a health rule (ppo.health): see {job_dir}/alerts.jsonl; the last checkpoint "
            "is kept, and nothing later in the pipeline ran"
        )
    if status == 0:
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return status


def run_stage(
    experiment: Experiment, name: str, job_dir: str, part: str | None = None, shard: int | None = None
) -> int:
    """The stage's record decides what runs: one part of a stage planned as several jobs, or its preparation and
    then the runner of its engine."""
    stage = TABLE[name]
    if part:
        if stage.run_part is None:
            log.error(f"stage '{name}' is not split into parts")
            return 2
        return function(stage.run_part)(experiment, job_dir, part, shard)  # the last part marks the whole stage done
    engine = stage.engine(experiment)
    runner = stage.runner(engine)
    if runner is None:
        log.error(f"stage '{name}' (engine {engine}) has no implementation in this version")
        return 2
    problems = prerun_problems(experiment, name, here=True)  # a SLURM job checks what the login node could not
    if problems:
        log.error("%s", ConfigError(f"the {name} stage cannot run on this machine", problems))
        return 2
    if stage.prepare and is_head(os.environ):  # once per job: the other nodes of a Ray job only join it
        function(stage.prepare)(experiment, job_dir)
    return int(runner(experiment, job_dir) or 0)


if __name__ == "__main__":
    sys.exit(main())
