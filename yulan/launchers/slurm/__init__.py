"""Submit a plan to SLURM with submitit, without waiting for it.

Every stage of a run is one job, chained to the jobs it reads from with `afterok` (a failed stage leaves its
dependents cancelled: `kill-on-invalid-dep`); a sharded curation stage is a chain of jobs whose per-sample parts
are job arrays with one task per shard. The points of a sweep become one job array per stage (throttled by
`launcher.array_parallelism`), each task waiting for the same task of the previous stage's array (`aftercorr`).
Jobs run the code as it was at submission: a snapshot of the checkout under the ledger directory comes first on
their PYTHONPATH. The ledger (`ledger.json`) maps each point to its overrides, run directory and job ids;
`yulan status|cancel|resubmit DIR` read it.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yulan.launchers import manifest
from yulan.launchers.ledger import LEDGER, PointState, read_ledger
from yulan.launchers.ledger import cancel as ledger_cancel
from yulan.launchers.ledger import status as ledger_status
from yulan.launchers.plan import Job, Run
from yulan.launchers.preflight import preflight
from yulan.runtime.lifecycle import REQUEUE_STATUS
from yulan.runtime.records import write_text
from yulan.schema.common import STAGES
from yulan.schema.errors import ConfigError, Problem
from yulan.schema.experiment import Experiment


class StageJob:
    """What a SLURM task runs: `python -m yulan.run` from the snapshot, in the launch directory.

    On preemption or near the time limit submitit calls `checkpoint`: the stage is asked to save (SIGUSR1), given
    time to finish writing, and the same job (same run directory) is requeued; it resumes from its checkpoint.
    """

    def __init__(
        self, run_dir: str, stage: str, snapshot: str, workdir: str, part: str | None = None, shard: int | None = None
    ):
        self.run_dir, self.stage, self.snapshot, self.workdir = run_dir, stage, snapshot, workdir
        self.part, self.shard = part, shard
        self.child: subprocess.Popen[bytes] | None = None

    def __call__(self) -> int:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [self.snapshot, os.environ.get("PYTHONPATH")])))
        # -P: the launch directory (the job's working directory, often a checkout) is not put before the snapshot on
        # the module path, so the job runs the code as it was at submission, whatever the checkout holds now
        command = [sys.executable, "-P", "-m", "yulan.run", "--run-dir", self.run_dir, "--stage", self.stage]
        command += (["--part", self.part] if self.part else []) + (
            ["--shard", str(self.shard)] if self.shard is not None else []
        )
        self.child = subprocess.Popen(command, cwd=self.workdir, env=env)
        status = self.child.wait()
        if status == REQUEUE_STATUS:
            # The stage saw the preemption's SIGTERM first and saved; submitit's USR2 handler, which requeues this
            # job, follows within moments and exits this process (it interrupts this sleep).
            time.sleep(60)
            raise RuntimeError(f"stage {self.stage} stopped to be requeued, but no requeue signal came")
        if status:
            raise RuntimeError(f"stage {self.stage} failed with exit status {status} (run directory {self.run_dir})")
        return status

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGUSR1)
            # This runs inside a signal handler that interrupted Popen.wait, which holds the lock Popen.wait would
            # need again: reap the child directly.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(self.child.pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.2)
            else:
                self.child.kill()
        return submitit.helpers.DelayedSubmission(
            StageJob(self.run_dir, self.stage, self.snapshot, self.workdir, self.part, self.shard)
        )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "child"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, child=None)


def tasks_per_node(job: Job) -> int:
    """OpenRLHF's DeepSpeed trainers: one task per GPU (ranks from SLURM); Ray-based PPO and the rest: one per node."""
    if job.engine == "openrlhf" and job.stage in ("sft", "dpo"):
        return max(int(job.resources["gpus_per_node"]), 1)
    return 1


def parameters(job: Job, experiment: Experiment, dependency: str | None) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters (sbatch options) of one job."""
    resources, cluster = job.resources, experiment.cluster
    tasks = tasks_per_node(job)
    params: dict[str, Any] = {
        "partition": job.partition,
        "nodes": resources["nodes"],
        "ntasks_per_node": tasks,
        "cpus_per_task": max(resources["cpus_per_node"] // tasks, 1),
        "time": resources["time_limit_minutes"],
        "job_name": job.name,
        "array_parallelism": experiment.launcher.array_parallelism,
        "setup": list(cluster.setup)
        + [f"export {k}={shlex.quote(v)}" for k, v in cluster.env.items()],  # values stay values
        "signal_delay_s": 120,  # SIGUSR2 this long before the time limit: the stage saves and is requeued
        "additional_parameters": {},
    }
    if resources["mem_gb_per_node"]:
        params["mem"] = f"{resources['mem_gb_per_node']}GB"
    if resources["gpus_per_node"]:
        params["gpus_per_node"] = resources["gpus_per_node"]
    if cluster.account:
        params["account"] = cluster.account
    if cluster.qos:
        params["qos"] = cluster.qos
    if dependency:
        params["additional_parameters"] = {"dependency": dependency, "kill_on_invalid_dep": "yes"}
    return params


def sbatch_script(job: Job, experiment: Experiment, dependency: str | None = None) -> str:
    """The sbatch script submitit writes for this job (shown by dry_run=true), made without an executor: that one
    insists on finding srun, and a dry run may be made on a laptop."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = parameters(job, experiment, dependency)
    if job.array_size:
        params["map_count"] = job.array_size  # what submitit sets for a batch: the --array line
    return _make_sbatch_string(
        command="python -u -m submitit.core._submit <folder>",
        folder=Path(experiment.output_dir) / "slurm" / "%j",
        **params,
    )


def snapshot(target: Path, include: tuple[str, ...] = ()) -> Path:
    """The files git tracks (as they are in the working tree) and `include`, copied once per submission: an
    untracked `.env` or key file never travels into the run directory."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=manifest.REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in [*filter(None, listed), *include]:
        source = manifest.REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def executor_for(folder: Path) -> Any:
    import submitit

    return submitit.SlurmExecutor(folder=str(folder / "%j"), max_num_timeout=3)


@dataclass(frozen=True)
class Array:
    """A stage submitted as one job array: task k runs sweep point points[k]."""

    job_id: str
    points: tuple[int, ...]


def submit_group(
    group: list[tuple[int, Job, Experiment]], dependency: str | None, folder: Path, code: Path, queued: list[str]
) -> dict[int, str]:
    """One job, or one array when the group has several points (they share their sbatch parameters); `queued`
    collects every job id as soon as the scheduler gives it."""
    executor = executor_for(folder)
    _, job, experiment = group[0]
    executor.update_parameters(**parameters(job, experiment, dependency))
    workdir = os.getcwd()
    with executor.batch() if len(group) > 1 else nullcontext():
        submitted = [(i, executor.submit(StageJob(e.output_dir, j.stage, str(code), workdir))) for i, j, e in group]
    ids = {i: handle.job_id for i, handle in submitted}
    queued += ids.values()
    return ids


def submit_part(
    job: Job, experiment: Experiment, dependency: str | None, folder: Path, code: Path, queued: list[str]
) -> str:
    """One part of a stage split into jobs: a single job, or a job array with one task per shard."""
    executor = executor_for(folder)
    executor.update_parameters(**parameters(job, experiment, dependency))
    workdir = os.getcwd()
    with executor.batch() if job.array_size else nullcontext():
        handles = [
            executor.submit(StageJob(experiment.output_dir, job.stage, str(code), workdir, job.part, shard))
            for shard in job.shards
        ]
    queued.append(handles[0].job_id.split("_")[0])
    return queued[-1]  # the array's id: afterok on it waits for every task


def submit_stage(
    jobs: list[tuple[int, Job, Experiment]],
    previous: dict[int, str],
    folder: Path,
    code: Path,
    previous_array: Array | None,
    queued: list[str],
) -> tuple[dict[int, str], Array | None]:
    """One stage for the given points: the job id per point, and the array when the whole stage became one.

    Points with identical sbatch parameters form an array. An array waits on the previous stage's array task by
    task (`aftercorr`) when that array ran exactly these points in this order; otherwise its points are submitted
    singly, each waiting (`afterok`) on its own previous job."""
    groups: dict[str, list[tuple[int, Job, Experiment]]] = {}
    for item in jobs:
        index, job, experiment = item
        groups.setdefault(json.dumps(parameters(job, experiment, None), sort_keys=True), []).append(item)
    ids: dict[int, str] = {}
    array = None
    for group in groups.values():
        points = tuple(i for i, _, _ in group)
        waits = any(i in previous for i in points)
        aligned = previous_array is not None and previous_array.points == points
        if len(group) > 1 and waits and not aligned:  # one array cannot wait per task on separate jobs
            for item in group:
                ids |= submit_group(
                    [item], f"afterok:{previous[item[0]]}" if item[0] in previous else None, folder, code, queued
                )
            continue
        if not waits:
            dependency = None
        elif len(group) > 1:
            assert previous_array is not None  # an array that waits is aligned with the previous one (above)
            dependency = f"aftercorr:{previous_array.job_id}"
        else:
            dependency = f"afterok:{previous[points[0]]}"
        submitted = submit_group(group, dependency, folder, code, queued)
        if len(group) > 1 and len(groups) == 1:
            array = Array(next(iter(submitted.values())).split("_")[0], points)
        ids |= submitted
    return ids, array


@dataclass(frozen=True)
class PartitionInfo:
    max_minutes: float  # math.inf when the partition has no limit
    nodes: int
    gpus_per_node: int


def slurm_minutes(text: str) -> float:
    """sinfo's time limit (`infinite`, `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) in minutes."""
    if text.strip().lower() in ("infinite", "unlimited", "n/a"):
        return math.inf
    days, _, rest = text.strip().rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        hours, minutes, seconds = (parts + [0, 0])[:3]
    else:
        hours, minutes, seconds = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return int(days or 0) * 1440 + hours * 60 + minutes + seconds / 60


def gres_gpus(text: str) -> int:
    """GPUs per node from sinfo's GRES column: `gpu:8`, `gpu:a100:4(S:0-1)`, `(null)`."""
    total = 0
    for item in text.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def partitions_now() -> dict[str, PartitionInfo] | None:
    """What the live scheduler offers, from one sinfo call; None when it cannot be asked from this machine."""
    if not shutil.which("sinfo"):
        return None
    done = subprocess.run(["sinfo", "-h", "-o", "%R|%l|%D|%G"], capture_output=True, text=True)
    if done.returncode:
        return None
    found: dict[str, PartitionInfo] = {}
    for line in done.stdout.splitlines():
        name, limit, nodes, gres = line.split("|")
        known = found.get(name)
        info = PartitionInfo(slurm_minutes(limit), int(nodes), gres_gpus(gres))
        found[name] = (
            info
            if known is None
            else PartitionInfo(  # one line per node state: add them up
                max(known.max_minutes, info.max_minutes),
                known.nodes + info.nodes,
                max(known.gpus_per_node, info.gpus_per_node),
            )
        )
    return found


def cluster_problems(experiments: list[Experiment], runs: list[Run]) -> tuple[list[Problem], str | None]:
    """Every job's partition, time, nodes and GPUs against the live scheduler (asked once for the whole sweep);
    (problems, a note when the scheduler could not be asked)."""
    offered = partitions_now()
    if offered is None:
        return [], "the cluster was not checked: SLURM's sinfo cannot be reached from this machine"
    problems: dict[str, Problem] = {}
    for experiment, run in zip(experiments, runs):
        for job in run.jobs:
            role, res = job.resources["partition"], job.resources
            where = next(
                (field for field, resources in experiment.stage_resources(job.stage) if resources.model_dump() == res),
                f"{job.stage}.resources",
            )
            info = offered.get(job.partition)
            if info is None:
                problems[f"partition:{role}"] = Problem(
                    f"cluster.partitions.{role}",
                    f"SLURM has no partition '{job.partition}' (sinfo lists: {', '.join(sorted(offered))})",
                    job.partition,
                    (
                        f"set cluster.partitions.{role} to one of those, or choose the cluster profile of this site "
                        "(cluster=...)"
                    ),
                )
                continue
            limits = [
                ("time_limit_minutes", res["time_limit_minutes"], info.max_minutes, "its time limit"),
                ("nodes", res["nodes"], info.nodes, "its nodes"),
                ("gpus_per_node", res["gpus_per_node"], info.gpus_per_node, "GPUs per node (GRES)"),
            ]
            for name, asked, limit, what in limits:
                if asked > limit:
                    problems[f"{where}.{name}"] = Problem(
                        f"{where}.{name}",
                        f"partition '{job.partition}' offers {what} = {limit:g}",
                        asked,
                        f"lower {where}.{name} to at most {limit:g}, or use another partition",
                    )
    problems |= {problem.path: problem for problem in association_problems(experiments[0])}
    return list(problems.values()), None


def association_problems(experiment: Experiment) -> list[Problem]:
    """cluster.account and cluster.qos against what SLURM's accounting lets this user use (when it can be asked)."""
    cluster = experiment.cluster
    if not (cluster.account or cluster.qos) or not shutil.which("sacctmgr"):
        return []
    user = os.environ.get("USER") or getpass.getuser()
    done = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", "format=account,qos"],
        capture_output=True,
        text=True,
    )
    rows = [line.split("|") for line in done.stdout.splitlines() if "|" in line]
    if done.returncode or not rows:
        return []
    accounts = sorted({account for account, _ in rows})
    qos = sorted({name for _, names in rows for name in names.split(",") if name})
    problems = []
    if cluster.account and cluster.account not in accounts:
        problems.append(
            Problem(
                "cluster.account",
                f"user {user} has no SLURM association with this account (sacctmgr lists: {', '.join(accounts)})",
                cluster.account,
                "set cluster.account to one of those, or leave it unset for your default account",
            )
        )
    if cluster.qos and cluster.qos not in qos:
        problems.append(
            Problem(
                "cluster.qos",
                f"user {user} may not use this QOS (sacctmgr lists: {', '.join(qos)})",
                cluster.qos,
                "set cluster.qos to one of those, or leave it unset",
            )
        )
    return problems


def dry_run(experiments: list[Experiment], runs: list[Run]) -> list[dict[str, Any]]:
    """The plan with each job's sbatch script, once the live cluster (where it can be asked) agrees to it."""
    problems, note = cluster_problems(experiments, runs)
    if problems:
        raise ConfigError("the cluster cannot run this plan", problems)
    if note:
        print(f"note: {note}", file=sys.stderr)
    for experiment, run in zip(experiments, runs):
        run.jobs[:] = [job.with_sbatch(sbatch_script(job, experiment)) for job in run.jobs]
    return [run.to_json() for run in runs]


POINT_STATES = tuple(state.value for state in PointState)


def status(directory: Path) -> list[dict[str, Any]]:
    return ledger_status(directory)


def cancel(directory: Path) -> list[str]:
    return ledger_cancel(directory)


def resubmit(directory: Path) -> list[int]:
    return resubmit_failed(directory)


def launch(experiments: list[Experiment], runs: list[Run], multirun: bool) -> int:
    """Submits every job; the ledger sits in the run directory, or for a sweep in the directory of its points."""
    return submit(experiments, runs, Path(runs[0].run_dir).parent if multirun else Path(runs[0].run_dir))


def submit(experiments: list[Experiment], runs: list[Run], ledger_dir: Path) -> int:
    git = manifest.git_state()
    problems = [p for e, r in zip(experiments, runs) for p in preflight(e, r, git, local=False)]
    if ledger_dir.joinpath(LEDGER).exists() and experiments[0].launcher.on_existing_run == "refuse":
        problems.append(
            Problem(
                "run_dir",
                "a sweep ledger exists here; nothing is overwritten",
                str(ledger_dir),
                "choose another name=/run_root=, or `yulan resubmit --failed` it",
            )
        )
    if not shutil.which("sbatch"):
        problems.append(
            Problem(
                "launcher.kind",
                "launcher=slurm needs SLURM's sbatch on this machine",
                "slurm",
                "run on the cluster's login node, or start a local one: "
                "python -m yulan.launchers.slurm.local_cluster start",
            )
        )
    else:
        found, note = cluster_problems(experiments, runs)
        problems += found
        if note:
            print(f"note: {note}", file=sys.stderr)
    if problems:
        raise ConfigError("cannot submit; nothing was written or queued", problems)
    refuse = experiments[0].launcher.on_existing_run == "refuse"
    try:  # the locks are held while this function submits: the submission is this launch's alone
        locks = [manifest.claim(ledger_dir, refuse_existing=False)] if len(runs) > 1 else []
        locks += [manifest.claim(Path(run.run_dir), refuse) for run in runs]
    except manifest.RunDirTaken as error:
        raise ConfigError(
            "cannot submit; nothing was queued",
            [
                Problem(
                    "run_dir",
                    "one launch at a time per run directory",
                    str(ledger_dir),
                    f"{error}: wait for it, or choose another name=/run_root=",
                )
            ],
        ) from None
    code = snapshot(ledger_dir / "code", experiments[0].launcher.snapshot_include)
    for experiment, run in zip(experiments, runs):
        manifest.write(experiment, run, git)
    points: list[dict[str, Any]] = [
        {"index": i, "overrides": run.overrides, "run_dir": run.run_dir, "jobs": {}} for i, run in enumerate(runs)
    ]
    queued: list[str] = []
    try:
        submit_chains(experiments, runs, points, ledger_dir, code, queued)
    except Exception as error:  # the scheduler refused a job: nothing this launch queued may stay behind
        return undo_submission(error, experiments[0], points, queued, ledger_dir, code, git)
    for point in points:  # each run's manifest records its own jobs too
        path = Path(point["run_dir"]) / "manifest.json"
        record = json.loads(path.read_text())
        record["slurm"] = {"jobs": point["jobs"], "ledger": str(ledger_dir / LEDGER), "code": str(code)}
        write_text(path, json.dumps(record, indent=2))
    ledger = {
        "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "experiment": experiments[0].name,
        "code": str(code),
        "git_commit": git["commit"],
        "points": points,
    }
    write_text(ledger_dir / LEDGER, json.dumps(ledger, indent=2))
    for point in points:
        print(f"point {point['index']}: {point['run_dir']}  " + "  ".join(f"{s}={j}" for s, j in point["jobs"].items()))
    print(f"submitted; ledger: {ledger_dir / LEDGER}  (yulan status {ledger_dir})", file=sys.stderr)
    for lock in locks:
        lock.close()
    return 0


def submit_chains(
    experiments: list[Experiment],
    runs: list[Run],
    points: list[dict[str, Any]],
    ledger_dir: Path,
    code: Path,
    queued: list[str],
) -> None:
    """Every stage of every point, in pipeline order, each job chained to the ones it reads from."""
    previous: dict[int, str] = {}
    previous_array: Array | None = None
    for stage in STAGES:
        jobs = [(i, job, experiments[i]) for i, run in enumerate(runs) for job in run.jobs if job.stage == stage]
        for i, job, experiment in [
            item for item in jobs if item[1].part
        ]:  # a stage split into parts: chained per point
            job_id = submit_part(
                job, experiment, f"afterok:{previous[i]}" if i in previous else None, ledger_dir / "slurm", code, queued
            )
            points[i]["jobs"][job.key] = previous[i] = job_id
            previous_array = None
        jobs = [item for item in jobs if not item[1].part]
        if not jobs:
            continue
        ids, previous_array = submit_stage(jobs, previous, ledger_dir / "slurm", code, previous_array, queued)
        for i, job_id in ids.items():
            points[i]["jobs"][stage] = job_id
            previous[i] = job_id


def undo_submission(
    error: Exception,
    experiment: Experiment,
    points: list[dict[str, Any]],
    queued: list[str],
    ledger_dir: Path,
    code: Path,
    git: dict[str, Any],
) -> int:
    """Cancels what a failed launch had queued and writes a ledger that says so; returns launch.py's exit status."""
    cancelled = subprocess.run(["scancel", *queued], capture_output=True, text=True) if queued else None
    message = (str(error).strip() or type(error).__name__).splitlines()[-1]
    ledger = {
        "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "experiment": experiment.name,
        "code": str(code),
        "git_commit": git["commit"],
        "points": points,
        "failed_submission": {
            "error": message,
            "cancelled": queued,
            "scancel_ok": cancelled is None or cancelled.returncode == 0,
        },
    }
    write_text(ledger_dir / LEDGER, json.dumps(ledger, indent=2))
    print(
        f"error: the scheduler refused a job: {message}\n"
        f"  cancelled what this launch had queued ({len(queued)} job(s): {' '.join(queued) or 'none'}); "
        f"the ledger {ledger_dir / LEDGER} records it\n"
        "  fix: check the partition, account and QOS of the cluster profile (cluster=...) against `sinfo`",
        file=sys.stderr,
    )
    return 1


# -- resubmitting what failed ----------------------------------------------------------------------------
def resubmit_failed(directory: Path) -> list[int]:
    """Failed points again, into the same run directories: finished stages are skipped (their DONE marker),
    an interrupted stage resumes from its checkpoint. The ledger records the new job ids."""
    ledger_dir = directory if directory.is_dir() else directory.parent
    ledger = read_ledger(directory)
    failed = [p for p in status(ledger_dir) if p["state"] == PointState.FAILED]
    code = Path(ledger["code"])
    by_index = {p["index"]: p for p in ledger["points"]}
    for point in failed:
        experiment = Experiment.model_validate_json((Path(point["run_dir"]) / "config.json").read_text())
        from yulan.launchers.plan import plan

        run = plan(experiment, point["overrides"])
        previous: dict[int, str] = {}
        jobs_record = by_index[point["index"]]["jobs"]
        for job in run.jobs:
            if job.done():
                continue
            if job.part:
                dependency = f"afterok:{previous[point['index']]}" if previous else None
                ids = {point["index"]: submit_part(job, experiment, dependency, ledger_dir / "slurm", code, [])}
            else:
                ids, _ = submit_stage(
                    [(point["index"], job, experiment)], previous, ledger_dir / "slurm", code, None, []
                )
            previous = ids
            jobs_record[job.key] = ids[point["index"]]
    ledger.setdefault("resubmitted", []).append(
        {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "points": [p["index"] for p in failed]}
    )
    write_text(ledger_dir / LEDGER, json.dumps(ledger, indent=2))
    return [p["index"] for p in failed]
