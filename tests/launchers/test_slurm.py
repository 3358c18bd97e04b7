"""The SLURM launcher against a real SLURM: `python -m yulan.launchers.slurm.local_cluster start` (CI starts it)."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        not shutil.which("sbatch") or subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0,
        reason="needs a running SLURM: python -m yulan.launchers.slurm.local_cluster start",
    ),
]

FAST = ["experiment=smoke", "launcher=slurm", "cluster=local", "tracking.mode=disabled"]


def ledger(directory: Path) -> dict:
    return json.loads((directory / "ledger.json").read_text())


def wait(directory: Path, timeout_s: float = 240) -> list[dict]:
    from yulan.launchers import ledger

    return ledger.wait(directory, timeout_s)


def test_a_single_job_is_submitted_without_waiting_and_runs(tmp_path):
    started = time.monotonic()
    result = run("launch.py", *FAST, "stages=[curation]", f"run_root={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # returns once queued
    run_dir = tmp_path / "smoke"
    job_id = ledger(run_dir)["points"][0]["jobs"]["curation"]
    assert f"curation={job_id}" in result.stdout
    assert [p["state"] for p in wait(run_dir)] == ["done"]
    assert (run_dir / "curation" / "data" / "sft.jsonl").exists()
    assert (run_dir / "code" / "yulan" / "run.py").exists()  # the job ran the snapshot
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["jobs"]["curation"]["command"][:3] == ["python", "-m", "yulan.run"]
    assert manifest["slurm"]["jobs"] == {"curation": job_id}
    status = run("-m", "yulan.cli", "status", str(run_dir))
    assert status.returncode == 0 and "done: 1" in status.stdout and f"{job_id} COMPLETED" in status.stdout


def test_a_2x2_sweep_is_one_array_per_stage_with_a_right_ledger(tmp_path):
    result = run(
        "launch.py",
        "-m",
        *FAST,
        "stages=[curation]",
        f"run_root={tmp_path}",
        "curation.dedup.threshold=0.7,0.9",
        "seed=1,2",
    )
    assert result.returncode == 0, result.stderr
    book = ledger(tmp_path / "smoke")
    ids = [p["jobs"]["curation"] for p in book["points"]]
    assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == ["0", "1", "2", "3"]
    points = {tuple(sorted(p["overrides"][-2:])): p for p in book["points"]}
    assert set(points) == {(f"curation.dedup.threshold={t}", f"seed={s}") for t in ("0.7", "0.9") for s in (1, 2)}
    states = wait(tmp_path / "smoke")
    assert [p["state"] for p in states] == ["done"] * 4
    for point in book["points"]:
        config = json.loads((Path(point["run_dir"]) / "config.json").read_text())
        threshold = [o for o in point["overrides"] if o.startswith("curation.dedup")][0].split("=")[1]
        assert config["curation"]["dedup"]["threshold"] == float(threshold)
        assert point["run_dir"].endswith(f"/smoke/{point['index']}")


def test_each_point_of_a_sweep_waits_only_for_its_own_previous_stage(tmp_path):
    result = run("launch.py", "-m", *FAST, "stages=[curation,sft]", f"run_root={tmp_path}", "seed=1,2")
    assert result.returncode == 0, result.stderr
    book = ledger(tmp_path / "smoke")
    [curation], [sft] = ({p["jobs"][stage].split("_")[0] for p in book["points"]} for stage in ("curation", "sft"))
    scripts = {path.read_text() for path in (tmp_path / "smoke" / "slurm").glob("*/*_submission.sh")}
    sft_scripts = [text for text in scripts if "--job-name=smoke-sft" in text]
    assert sft_scripts and all(f"--dependency=aftercorr:{curation}" in text for text in sft_scripts)
    assert [p["state"] for p in wait(tmp_path / "smoke")] == ["done", "done"]


def test_a_failed_stage_cancels_its_dependents(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"id": "a", "messages": [\n')  # found by the job, not at submission
    result = run(
        "launch.py",
        *FAST,
        "stages=[curation,sft]",
        f"run_root={tmp_path}",
        f"curation.inputs=[{tmp_path}/broken.jsonl]",
    )
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "smoke"
    [point] = wait(run_dir)
    assert point["state"] == "failed"
    assert "FAILED" in point["stages"]["curation"]
    deadline = time.monotonic() + 60  # SLURM cancels the dependent once it sees the failed dependency
    while "CANCELLED" not in point["stages"]["sft"] and time.monotonic() < deadline:
        time.sleep(1)
        [point] = wait(run_dir)
    assert "CANCELLED" in point["stages"]["sft"]
    assert not (run_dir / "sft").exists()  # never ran on broken inputs
    logs = "".join(p.read_text(errors="replace") for p in (run_dir / "slurm").rglob("*.err"))
    assert (
        f"{tmp_path}/broken.jsonl:1: not valid JSON" in logs and "RecordError" not in logs
    )  # the message, not a traceback

    (tmp_path / "broken.jsonl").write_text(Path("yulan/data/sft_samples.jsonl").read_text())
    again = run("-m", "yulan.cli", "resubmit", "--failed", str(run_dir))
    assert again.returncode == 0 and "resubmitted points [0]" in again.stdout
    assert [p["state"] for p in wait(run_dir)] == ["done"]
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()


def test_sharded_curation_runs_as_arrays_and_curates_what_one_job_does(tmp_path):
    result = run("launch.py", *FAST, "stages=[curation,sft]", "curation.shards=3", f"run_root={tmp_path}/sharded")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "sharded" / "smoke"
    jobs = ledger(run_dir)["points"][0]["jobs"]
    assert list(jobs) == [
        "curation:prepare",
        "curation:dedup-map",
        "curation:dedup",
        "curation:decontaminate",
        "curation:heuristics-map",
        "curation:heuristics",
        "curation:complexity-map",
        "curation:complexity",
        "curation:mix",
        "sft",
    ]
    scripts = {path.read_text() for path in (run_dir / "slurm").glob("*/*_submission.sh")}
    maps = [text for text in scripts if "--job-name=smoke-curation-dedup-map" in text]
    assert maps and all(
        "--array=0-2%" in text and f"--dependency=afterok:{jobs['curation:prepare']}" in text for text in maps
    )
    [point] = wait(run_dir, timeout_s=400)
    assert point["state"] == "done", point
    assert point["stages"]["curation:heuristics-map"].endswith("COMPLETED")
    assert sorted(p.name for p in (run_dir / "curation" / "parts").glob("heuristics-map.*.DONE")) == [
        f"heuristics-map.{k}.DONE" for k in range(3)
    ]
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()

    local = run(
        "launch.py", "experiment=smoke", "stages=[curation]", "tracking.mode=disabled", f"run_root={tmp_path}/one"
    )
    assert local.returncode == 0, local.stderr
    one_job = (tmp_path / "one" / "smoke" / "curation" / "data" / "sft.jsonl").read_text()
    assert (run_dir / "curation" / "data" / "sft.jsonl").read_text() == one_job


def test_gpu_jobs_get_their_fake_gpus_and_tasks_see_their_ranks(tmp_path):
    from yulan.compose import load
    from yulan.launchers import slurm
    from yulan.launchers.plan import plan
    from yulan.runtime.distributed import task_environment

    experiment = load(
        [
            "experiment=smoke",
            "cluster=local",
            "stages=[sft]",
            f"run_dir={tmp_path}",
            "sft.engine=openrlhf",
            "sft.param_dtype=bf16",  # OpenRLHF computes in bf16 or fp16 (smoke's native stages use fp32)
            "sft.resources.partition=gpu",
            "sft.resources.gpus_per_node=4",
            "sft.global_batch_size=8",
            "sft.attention=flash_attention_2",
            "sft.data=data.jsonl",
        ]
    )
    [job] = plan(experiment, []).jobs
    executor = slurm.executor_for(tmp_path / "slurm")
    executor.update_parameters(**slurm.parameters(job, experiment, None))
    assert slurm.tasks_per_node(job) == 4
    submitted = executor.submit(task_environment)
    results = submitted.results()  # one per task
    assert sorted(r["RANK"] for r in results) == ["0", "1", "2", "3"]
    assert {r["WORLD_SIZE"] for r in results} == {"4"} and {r["MASTER_ADDR"] for r in results} == {
        results[0]["MASTER_ADDR"]
    }
    assert sorted(r["LOCAL_RANK"] for r in results) == ["0", "1", "2", "3"]
    assert all(len(r["CUDA_VISIBLE_DEVICES"].split(",")) == 4 for r in results)


def test_an_interrupted_job_requeues_into_its_run_directory_and_matches_an_uninterrupted_run(tmp_path):
    pytest.importorskip("torch")
    import submitit
    import torch

    from yulan.compose import load
    from yulan.engines.native import sft
    from yulan.runtime import models

    data = tmp_path / "data.jsonl"
    data.write_text("".join(Path("yulan/data/sft_samples.jsonl").read_text().splitlines(keepends=True)[:32]))
    settings = [
        "stages=[sft]",
        "sft.init_from=tiny:policy",
        f"sft.data={data}",
        "sft.epochs=60",
        "sft.global_batch_size=4",
        "sft.save_every_steps=1000",
    ]
    result = run("launch.py", *FAST, *settings, f"run_root={tmp_path}/slurm")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "slurm" / "smoke"
    job_id = ledger(run_dir)["points"][0]["jobs"]["sft"]
    metrics = run_dir / "sft" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 30) and time.monotonic() < deadline:
        time.sleep(0.2)
    submitit.SlurmJob(run_dir / "slurm" / job_id, job_id)._interrupt()  # preemption: SIGTERM, then USR2
    assert [p["state"] for p in wait(run_dir)] == ["done"]
    assert list((run_dir / "sft" / "checkpoints").glob("step-*"))  # it saved at the signal
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == 480 and len(set(steps)) == 480  # every step once: the continuation picked up where it stopped

    whole = load(["experiment=smoke", "tracking.mode=disabled", *settings, f"run_dir={tmp_path}/whole"])
    assert sft.train(whole, str(tmp_path / "whole" / "sft")) == 0
    a = models.load_causal_lm(str(tmp_path / "whole" / "sft" / "model"), torch.float32).state_dict()
    b = models.load_causal_lm(str(run_dir / "sft" / "model"), torch.float32).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def jobs_named(name: str) -> list[str]:
    """Jobs of this test alone, queued or finished (other jobs may share the scheduler): named NAME-STAGE."""
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout.split()
    accounted = subprocess.run(["sacct", "-n", "-X", "-o", "JobName%200"], capture_output=True, text=True).stdout
    return [job for job in queued + accounted.split() if job.startswith(f"{name}-")]


def test_a_sweep_with_one_invalid_point_submits_nothing(tmp_path):
    name = f"refused-{tmp_path.name}"
    result = run("launch.py", "-m", *FAST, f"run_root={tmp_path}", f"name={name}", "ppo.gamma=0.5,2")
    assert result.returncode == 1
    assert "1 of 2 sweep points are invalid; nothing was run or submitted" in result.stderr
    assert jobs_named(name) == []
    assert list(tmp_path.iterdir()) == []


def test_the_ppo_ray_bootstrap_waits_for_every_gpu_then_runs_the_driver_and_stops_ray(tmp_path):
    pytest.importorskip("ray")  # Ray is in the `cluster` extra; this runs where it is installed
    import sys

    script = (
        "import os, sys; sys.path.insert(0, os.getcwd())\n"
        "from yulan.runtime.distributed import run_ray_job, ray_gpus\n"
        f"status = run_ray_job(os.environ, 4, 1, {str(tmp_path)!r}, lambda: print('GPUS', ray_gpus()) or 0)\n"
        "print('STATUS', status)\n"
    )
    done = subprocess.run(
        ["srun", "-p", "gpu", "--gpus-per-node=4", "-c", "4", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "GPUS 3.0" in done.stdout and "STATUS 0" in done.stdout, done.stderr[
        -2000:
    ]  # 4 GPUs, 1 kept for the reward server
    assert list(tmp_path.glob("ray.done.*"))  # workers would leave on this
    assert subprocess.run(["pgrep", "-f", "raylet"], capture_output=True).returncode == 1  # Ray is down


@pytest.mark.parametrize(
    ("refused", "queued_before"), [("curation.model_resources", 0), ("dpo.resources", 3), ("eval.resources", 5)]
)
def test_a_refused_job_cancels_what_the_launch_had_queued(tmp_path, refused, queued_before):
    """The k-th job of the chain (first, middle, last) asks for more memory than any node has: only sbatch knows."""
    result = run("launch.py", *FAST, f"run_root={tmp_path}", f"{refused}.mem_gb_per_node=99999")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "the scheduler refused a job" in result.stderr and "node configuration is not available" in result.stderr
    record = ledger(tmp_path / "smoke")["failed_submission"]
    assert len(record["cancelled"]) == queued_before and record["scancel_ok"]
    assert f"cancelled what this launch had queued ({queued_before} job(s)" in result.stderr
    if queued_before:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i", "-j", ",".join(record["cancelled"])], capture_output=True, text=True
        ).stdout.split()
        assert queue == []  # nothing of this launch is left waiting
        cancel = run("-m", "yulan.cli", "cancel", str(tmp_path / "smoke"))
        assert cancel.returncode == 0 and "nothing left to cancel" in cancel.stdout, cancel.stdout + cancel.stderr


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        (
            ["cluster.partitions.gpu=nosuch", "eval.resources.partition=gpu"],
            "cluster.partitions.gpu",
            "SLURM has no partition 'nosuch' (sinfo lists: cpu, gpu)",
        ),
        (
            ["stages=[curation]", "curation.steps=[dedup]", "cluster.nodes=4", "curation.resources.nodes=2"],
            "curation.resources.nodes",
            "partition 'cpu' offers its nodes = 1",
        ),
        (["cluster.account=nosuch"], "cluster.account", "has no SLURM association with this account"),
        (["cluster.qos=gold"], "cluster.qos", "may not use this QOS (sacctmgr lists: normal)"),
    ],
)
def test_the_live_cluster_is_checked_before_anything_is_queued(tmp_path, overrides, field, rule):
    name = f"refused-{tmp_path.name}"
    for extra in ([], ["dry_run=true"]):
        result = run("launch.py", *FAST, f"run_root={tmp_path}", f"name={name}", *overrides, *extra)
        assert result.returncode == 1 and f"  {field} = " in result.stderr and rule in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert jobs_named(name) == []
    assert list(tmp_path.iterdir()) == []


def test_a_job_the_scheduler_does_not_know_is_shown_as_unknown_not_queued(tmp_path):
    (tmp_path / "ledger.json").write_text(
        json.dumps({"points": [{"index": 0, "overrides": [], "run_dir": str(tmp_path), "jobs": {"sft": "987654321"}}]})
    )
    status = run("-m", "yulan.cli", "status", str(tmp_path))
    assert status.returncode == 0 and "unknown" in status.stdout.split("\n")[0] and "queued: 0" in status.stdout, (
        status.stdout
    )


def test_a_fresh_submission_shows_queued_or_running_not_unknown(tmp_path):
    result = run("launch.py", "-m", *FAST, "stages=[curation,sft]", "seed=1,2", f"run_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    status = run("-m", "yulan.cli", "status", str(tmp_path / "smoke"))  # before accounting has heard of the jobs
    assert status.returncode == 0 and "UNKNOWN" not in status.stdout and "unknown: 0" in status.stdout, status.stdout
    assert [p["state"] for p in wait(tmp_path / "smoke")] == ["done", "done"]


# The last commit before the layout of yulan/cli, yulan/stages, yulan/engines: its code snapshot has yulan/run.py only
BEFORE_THE_LAYOUT = "979140db69e782ef14cf18a087c6b091a340a256"


def test_a_sweep_submitted_before_the_layout_resubmits_into_its_own_code_snapshot(tmp_path):
    """A sweep submitted by the code before the layout (its ledger, config.json files and code snapshot as that code
    wrote them) is resubmitted by this code: planned from its config.json files, its jobs run in its own snapshot."""
    old_code = tmp_path / "old-code"
    archive = subprocess.run(["git", "archive", BEFORE_THE_LAYOUT], cwd=REPO, capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"this clone lacks commit {BEFORE_THE_LAYOUT[:8]} (a shallow clone)")
    old_code.mkdir()
    subprocess.run(["tar", "-x", "-C", str(old_code)], input=archive.stdout, check=True)
    assert not (old_code / "yulan" / "cli").exists() and (old_code / "yulan" / "run.py").exists()
    git = ["git", "-c", "user.name=old", "-c", "user.email=old@localhost"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "before the layout"]):
        subprocess.run([*git, *command], cwd=old_code, check=True)  # it snapshots what git tracks
    (tmp_path / "broken.jsonl").write_text('{"id": "a", "messages": [\n')
    overrides = ["stages=[curation]", f"run_root={tmp_path}", f"curation.inputs=[{tmp_path}/broken.jsonl]", "seed=1,2"]
    before = run("launch.py", "-m", *FAST, *overrides, cwd=old_code)  # that code's own launch
    assert before.returncode == 0, before.stderr
    sweep = tmp_path / "smoke"
    assert [p["state"] for p in wait(sweep)] == ["failed", "failed"]
    assert Path(ledger(sweep)["code"], "yulan", "run.py").exists()

    (tmp_path / "broken.jsonl").write_text(Path("yulan/data/sft_samples.jsonl").read_text())
    again = run("-m", "yulan.cli", "resubmit", "--failed", str(sweep))
    assert again.returncode == 0 and "resubmitted points [0, 1]" in again.stdout, again.stderr
    assert [p["state"] for p in wait(sweep)] == ["done", "done"]
    for point in ("0", "1"):
        log = (sweep / point / "curation" / "log.txt").read_text()
        assert " INFO yulan.run: curation starts on " in log  # the job entry point as that code named its logger
        assert " INFO yulan.curation.stage: [curation] mix: " in log  # that code's module, not yulan.stages.curation
        assert (sweep / point / "curation" / "data" / "sft.jsonl").exists()
