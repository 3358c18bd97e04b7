"""Rendered sbatch scripts and the torch/Ray bootstraps for the report's layouts (no SLURM needed)."""

import pytest

from yulan.compose import load
from yulan.launchers import slurm
from yulan.launchers.plan import plan
from yulan.runtime import distributed


def job_of(stage: str, *overrides: str):
    experiment = load([f"experiment={stage}_yulan", *overrides])
    [job] = [j for j in plan(experiment, []).jobs if j.stage == stage]
    return job, experiment


def test_sft_on_4_nodes_x_8_gpus_runs_one_task_per_gpu():
    job, experiment = job_of("sft")
    script = slurm.sbatch_script(job, experiment, dependency="afterok:41")
    for line in (
        "#SBATCH --nodes=4",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=4320",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --dependency=afterok:41",
        "#SBATCH --kill-on-invalid-dep=yes",
    ):
        assert line in script, line


def test_ppo_on_1_node_x_8_gpus_runs_one_task_that_drives_ray():
    job, experiment = job_of("ppo")
    script = slurm.sbatch_script(job, experiment)
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "#SBATCH --gpus-per-node=8" in script and "--dependency" not in script


def test_torch_environment_for_rank_13_of_4x8():
    env = {
        "SLURM_NTASKS": "32",
        "SLURM_JOB_NUM_NODES": "4",
        "SLURM_PROCID": "13",
        "SLURM_LOCALID": "5",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "123456",
    }
    out = distributed.torch_env(env, ["gpu01", "gpu02", "gpu03", "gpu04"])
    assert out == {
        "MASTER_ADDR": "gpu01",
        "MASTER_PORT": str(20_000 + 123456 % 20_000),
        "WORLD_SIZE": "32",
        "RANK": "13",
        "LOCAL_RANK": "5",
        "LOCAL_WORLD_SIZE": "8",
        "NODE_RANK": "1",
    }


@pytest.mark.parametrize("node,role", [("0", "head"), ("2", "worker")])
def test_ray_head_on_the_first_node_workers_join_it(node, role):
    got_role, command = distributed.ray_start({"SLURM_NODEID": node}, ["n1", "n2", "n3"], gpus=8, reserved_on_head=1)
    assert got_role == role
    if role == "head":
        assert (
            command[0].endswith("ray")
            and command[1:3] == ["start", "--head"]
            and "--num-gpus=7" in command
            and "--port=6379" in command
        )
    else:
        assert "--address=n1:6379" in command and "--num-gpus=8" in command


def test_dry_run_under_slurm_shows_each_jobs_sbatch_script(tmp_path):
    import json

    from tests.conftest import run

    result = run(
        "launch.py", "experiment=smoke", "launcher=slurm", "cluster=local", "dry_run=true", f"run_root={tmp_path}"
    )
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["runs"][0]["jobs"]
    assert all(job["sbatch"].startswith("#!/bin/bash") for job in jobs)
    assert "#SBATCH --job-name=smoke-sft" in jobs[1]["sbatch"] and "#SBATCH --partition=cpu" in jobs[1]["sbatch"]
    assert list(tmp_path.iterdir()) == []


CALLS: list[str] = []


def note_prepare(experiment, job_dir):
    CALLS.append("prepare")


def note_run(experiment, job_dir):
    CALLS.append("run")
    return 0


@pytest.mark.parametrize(("node", "calls"), [("0", ["prepare", "run"]), ("1", ["run"]), (None, ["prepare", "run"])])
def test_a_stage_is_prepared_once_per_job_on_its_head_node(node, calls, monkeypatch, tmp_path):
    """A multi-node PPO job runs the job entry point on every node; the prompt selection is done on the head only."""
    from dataclasses import replace

    from yulan import stages
    from yulan.cli.job import run_stage

    here = "tests.launchers.test_bootstrap"
    ppo = replace(stages.TABLE["ppo"], runners={"openrlhf": f"{here}:note_run"}, prepare=f"{here}:note_prepare")
    unchecked = replace(ppo, prerun_check=None, packages=lambda experiment, stage: {}, input_files=lambda e: [])
    monkeypatch.setitem(stages.TABLE, "ppo", unchecked)
    if node is None:
        monkeypatch.delenv("SLURM_NODEID", raising=False)
    else:
        monkeypatch.setenv("SLURM_NODEID", node)
    CALLS.clear()
    assert run_stage(load(["experiment=ppo_yulan"]), "ppo", str(tmp_path)) == 0
    assert CALLS == calls
