"""Launching as transactions: one launch per run directory, a record per launch, a SIGTERM that reaches the stage
(which checkpoints) instead of orphaning it, and a code snapshot that carries no untracked secret."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run
from yulan.launchers import manifest

SFT_STEPS = [
    "launch.py",
    "experiment=smoke",
    "stages=[sft]",
    "sft.data=yulan/data/sft_samples.jsonl",
    "tracking.mode=disabled",
]
QUICK = ["launch.py", "experiment=smoke", "stages=[curation]", "curation.steps=[dedup]", "tracking.mode=disabled"]


def launch(*overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *QUICK, *overrides], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_of_two_launches_at_once_into_one_run_directory_exactly_one_runs(tmp_path):
    outcomes = []
    for attempt in range(5):
        both = [launch(f"run_root={tmp_path / str(attempt)}") for _ in range(2)]
        outcomes.append([(p.wait(timeout=120), p.stderr.read()) for p in both])
    assert [sorted(status for status, _ in results) for results in outcomes] == [[0, 1]] * 5, outcomes
    for attempt, results in enumerate(outcomes):
        refused = next(err for status, err in results if status)
        assert "one launch at a time per run directory" in refused or "the run directory exists" in refused, refused
        assert "Traceback" not in refused
        launches = tmp_path / str(attempt) / "smoke" / "launches.jsonl"
        assert len(launches.read_text().splitlines()) == 1  # the loser wrote nothing


def test_a_launch_into_a_run_directory_in_use_is_refused_naming_its_owner(tmp_path):
    lock = manifest.claim(tmp_path / "smoke", refuse_existing=True)  # as a running launch holds it
    try:
        result = run(*QUICK, f"run_root={tmp_path}", "launcher.on_existing_run=resume")
    finally:
        lock.close()
    assert result.returncode == 1 and f"pid {os.getpid()}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "smoke" / "config.json").exists()


def test_a_resume_keeps_the_record_of_every_launch(tmp_path):
    assert run(*QUICK, f"run_root={tmp_path}").returncode == 0
    first = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    again = run(*QUICK, f"run_root={tmp_path}", "launcher.on_existing_run=resume")
    assert again.returncode == 0, again.stderr
    launches = [json.loads(line) for line in (tmp_path / "smoke" / "launches.jsonl").read_text().splitlines()]
    assert [entry["argv"][-1] for entry in launches] == [f"run_root={tmp_path}", "launcher.on_existing_run=resume"]
    assert launches[0]["created"] == first["created"]


def test_sigterm_to_a_local_launch_reaches_the_stage_which_checkpoints(tmp_path):
    pytest.importorskip("torch")
    command = [sys.executable, *SFT_STEPS, "sft.max_steps=400", "sft.save_every_steps=1000", f"run_root={tmp_path}"]
    launcher = subprocess.Popen(
        command, cwd=REPO, stderr=subprocess.PIPE, text=True, env=dict(os.environ, YULAN_PROGRESS="0")
    )
    metrics = tmp_path / "smoke" / "sft" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)
    status = launcher.wait(timeout=120)
    stderr = launcher.stderr.read()
    assert status == 75 and "stopped at a checkpoint as asked" in stderr, stderr[-2000:]
    steps = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "smoke" / "sft" / "checkpoints").glob("step-*"))
    assert steps and steps[-1] < 400 and not (tmp_path / "smoke" / "sft" / "DONE").exists()
    stage = subprocess.run(["pgrep", "-f", "--", f"--run-dir {tmp_path}/smoke"], capture_output=True)
    assert stage.returncode == 1  # the stage ended with its launcher: nothing writes DONE later


@pytest.mark.slow
def test_yulan_cancel_stops_a_local_launch_and_resubmit_finishes_it_from_its_checkpoint(tmp_path):
    """The local launcher's side of the Launcher protocol, through the commands a user types."""
    pytest.importorskip("torch")
    command = [*SFT_STEPS, "sft.max_steps=200", "sft.save_every_steps=1000", f"run_root={tmp_path}"]
    launcher = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, YULAN_PROGRESS="0"),
    )
    run_dir = tmp_path / "smoke"
    metrics = run_dir / "sft" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stderr.read()
        time.sleep(0.2)
    cancel = run("-m", "yulan.cli", "cancel", str(run_dir))
    assert cancel.returncode == 0 and f"cancelled 1 jobs: pid {launcher.pid} ({run_dir})" in cancel.stdout, cancel
    assert launcher.wait(timeout=120) == 75
    status = run("-m", "yulan.cli", "status", str(run_dir), "--json")
    [point] = json.loads(status.stdout)
    assert point["state"] == "started" and point["stages"] == {"sft": "started"}
    assert run("-m", "yulan.cli", "cancel", str(run_dir)).stdout.strip() == "nothing left to cancel"

    again = run("-m", "yulan.cli", "resubmit", "--failed", str(run_dir))
    assert again.returncode == 0 and "resubmitted points [0]" in again.stdout, again.stderr[-2000:]
    [point] = json.loads(run("-m", "yulan.cli", "status", str(run_dir), "--json").stdout)
    assert point["state"] == "done" and (run_dir / "sft" / "model" / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps[-1] == 200 and steps == sorted(set(steps))  # resumed from the checkpoint, not restarted
    assert len(launches(run_dir)) == 2  # a record per launch


def launches(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "launches.jsonl").read_text().splitlines()]


def test_the_code_snapshot_holds_what_git_tracks_and_what_is_named_never_an_untracked_secret(tmp_path):
    from yulan.launchers import slurm

    secret, named = REPO / ".env.snapshot-test", REPO / "extra-snapshot-test.txt"
    secret.write_text("HF_TOKEN=hf_not_for_the_cluster\n")
    named.write_text("a file the jobs need\n")
    try:
        code = slurm.snapshot(tmp_path / "code", (named.name,))
    finally:
        secret.unlink()
        named.unlink()
    assert (code / "yulan" / "run.py").exists() and (code / named.name).exists()
    assert not (code / secret.name).exists()


def test_a_stage_marked_done_whose_output_is_gone_runs_again(tmp_path):
    assert run(*QUICK, f"run_root={tmp_path}").returncode == 0
    output = tmp_path / "smoke" / "curation" / "data" / "sft.jsonl"
    expected = output.read_text()
    output.unlink()
    (tmp_path / "smoke" / "config.json").unlink()  # as a half-deleted run directory leaves it
    again = run(*QUICK, f"run_root={tmp_path}", "launcher.on_existing_run=resume")
    assert again.returncode == 0 and "marked done, but its output" in again.stderr, again.stderr[-2000:]
    assert output.read_text() == expected
