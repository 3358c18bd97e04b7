"""What users bring from Hydra and the Hugging Face stack: --cfg job/all, --info, --config-dir, their own
experiment directories, `yulan launch`, a `--help` that lists every command; and every stage's own log.txt."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, run
from yulan.compose import SHIPPED_EXPERIMENTS

# the smoke pipeline under another name, with one change
MY_SFT = (
    (SHIPPED_EXPERIMENTS / "experiment" / "smoke.yaml")
    .read_text()
    .replace("sft:\n  engine: native\n", "sft:\n  engine: native\n  max_steps: 1\n")
)


@pytest.fixture()
def my_tree(tmp_path):
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "my_sft.yaml").write_text(MY_SFT)
    return tmp_path / "mine"


def yulan(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "yulan.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_cfg_job_prints_what_show_prints_and_runs_nothing(tmp_path):
    shown = yulan("show", "experiment=ppo_yulan", f"run_root={tmp_path}")
    for command in (["launch.py"], ["-m", "yulan.cli", "launch"]):
        printed = run(*command, "experiment=ppo_yulan", f"run_root={tmp_path}", "--cfg", "job")
        assert printed.returncode == 0 and printed.stdout == shown.stdout, printed.stderr
    everything = run("launch.py", "experiment=ppo_yulan", f"run_root={tmp_path}", "--cfg=all")
    assert everything.stdout == yulan("show", "--all", "experiment=ppo_yulan", f"run_root={tmp_path}").stdout
    assert "\nsft:" in everything.stdout and "\nsft:" not in shown.stdout
    assert not any(tmp_path.iterdir())  # nothing was written
    refused = run("launch.py", "experiment=ppo_yulan", "--cfg", "hydra")
    assert (
        refused.returncode == 1 and "use --cfg job or --cfg all" in refused.stderr and "Traceback" not in refused.stderr
    )


def test_cfg_job_in_a_sweep_prints_every_point(tmp_path):
    printed = run("launch.py", "-m", "experiment=smoke", "seed=1,2", f"run_root={tmp_path}", "-c", "job")
    assert printed.returncode == 0 and printed.stdout.count("# sweep point") == 2
    assert "\nseed: 1\n" in printed.stdout and "\nseed: 2\n" in printed.stdout


def test_info_names_the_search_path_and_each_groups_file(my_tree):
    printed = run("launch.py", "--config-dir", str(my_tree), "experiment=my_sft", "--info")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[1].strip() == str(my_tree) and lines[2].strip() == "yulan/experiments"
    assert any(
        line.split()[:2] == ["experiment", "my_sft"] and line.endswith("mine/experiment/my_sft.yaml") for line in lines
    )
    assert any(line.split() == ["model", "tiny", "yulan/experiments/model/tiny.yaml"] for line in lines)


def test_a_users_experiment_directory_by_option_or_environment(my_tree, tmp_path):
    for args, env in ((["--experiments", str(my_tree)], None), ([], dict(os.environ, YULAN_EXPERIMENTS=str(my_tree)))):
        planned = subprocess.run(
            [
                sys.executable,
                str(REPO / "launch.py"),
                *args,
                "experiment=my_sft",
                f"run_root={tmp_path}/runs",
                "dry_run=true",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert planned.returncode == 0, planned.stderr
        assert json.loads(planned.stdout)["runs"][0]["run_dir"] == f"{tmp_path}/runs/my_sft"
    shown = yulan("show", "--experiments", str(my_tree), "experiment=my_sft", "--sources")
    assert f"sft.max_steps = 1    # {my_tree}/experiment/my_sft.yaml" in shown.stdout, shown.stderr
    everything = yulan("validate", "--all", "--experiments", str(my_tree))
    assert everything.returncode == 0 and "ok      experiment=my_sft" in everything.stdout
    assert "ok      experiment=ppo_yulan" in everything.stdout  # the shipped ones too


def test_a_changed_file_in_a_users_repository_is_validated_in_its_tree(my_tree):
    """The pre-commit hook in a repository of experiments passes the changed files alone."""
    checked = yulan("validate", "mine/experiment/my_sft.yaml", cwd=my_tree.parent)
    assert checked.returncode == 0 and checked.stdout.split() == ["ok", "experiment=my_sft"], checked.stderr
    (my_tree / "experiment" / "my_sft.yaml").write_text(MY_SFT.replace("max_steps: 1", "max_steps: 0"))
    refused = yulan("validate", "mine/experiment/my_sft.yaml", cwd=my_tree.parent)
    assert refused.returncode == 1 and "sft.max_steps" in refused.stderr


def test_bad_search_paths_are_named(my_tree, tmp_path):
    missing = yulan("show", "--experiments", str(tmp_path / "nothere"), "experiment=smoke")
    assert missing.returncode == 1 and "an experiment directory does not exist" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_groups = yulan("show", "--experiments", str(empty), "experiment=smoke")
    assert no_groups.returncode == 1 and "holds no group folder" in no_groups.stderr
    (my_tree / "experiment" / "smoke.yaml").write_text(MY_SFT)
    twice = yulan("show", "--experiments", str(my_tree), "experiment=my_sft")
    assert twice.returncode == 1 and "experiment 'smoke' is defined twice" in twice.stderr
    assert "Traceback" not in missing.stderr + no_groups.stderr + twice.stderr


def test_validate_all_fails_when_it_finds_nothing(tmp_path, monkeypatch, capsys):
    from yulan.cli import main
    from yulan.compose import search

    monkeypatch.setattr(search, "SHIPPED_EXPERIMENTS", tmp_path)  # as an install that lacks its experiment tree
    monkeypatch.delenv("YULAN_EXPERIMENTS", raising=False)
    assert main(["validate", "--all"]) == 1
    assert "no experiment to validate" in capsys.readouterr().err


def test_help_lists_every_command():
    text = yulan("--help").stdout
    for command in (
        "launch",
        "show",
        "validate",
        "diff",
        "schema",
        "status",
        "cancel",
        "resubmit",
        "report",
        "curate",
        "eval score",
        "eval compare",
        "reward score",
    ):
        assert f"yulan {command}" in text
    assert "without running anything" not in text
    assert "--cfg job" in run("launch.py", "--help").stdout


@pytest.mark.slow
def test_a_stage_logs_with_timestamps_into_its_log_txt(tmp_path):
    """A local run: the stage's log lines (timestamped, with levels) and its children's output in {stage}/log.txt."""
    done = run("launch.py", "experiment=smoke", "stages=[curation]", "tracking.mode=disabled", f"run_root={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (tmp_path / "smoke" / "curation" / "log.txt").read_text()
    assert " INFO yulan.cli.job: curation starts on " in log
    assert " INFO yulan.stages.curation.stage: [curation] dedup: " in log
    first = log.splitlines()[0]
    assert first[:4].isdigit() and first[4] == "-" and first[13] == ":"  # 2026-12-03 16:56:15 INFO ...
    assert "[curation] dedup:" in done.stderr  # and the terminal still sees it


def test_a_stage_whose_packages_are_missing_fails_at_its_start(tmp_path):
    """The job checks what its stage imports before any step (not a ModuleNotFoundError after hours)."""
    planned = run(
        "launch.py",
        "experiment=smoke",
        "stages=[curation]",
        "curation.steps=[dedup,complexity,mix]",
        f"run_root={tmp_path}",
        "dry_run=true",
    )
    assert planned.returncode == 0, planned.stderr
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'transformers':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    from yulan.compose import load
    from yulan.schema.fields import plain

    experiment = load(
        ["experiment=smoke", "stages=[curation]", "curation.steps=[dedup,complexity,mix]", f"run_dir={tmp_path}/run"]
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(plain(experiment)))  # as the launcher writes it
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden), str(REPO)]))
    job = subprocess.run(
        [sys.executable, "-m", "yulan.run", "--run-dir", str(run_dir), "--stage", "curation"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert job.returncode == 2 and "Traceback" not in job.stderr, job.stderr[-2000:]
    assert "curation.steps" in job.stderr and "transformers is not installed" in job.stderr
    assert "pip install" in job.stderr and "[native]" in job.stderr
    assert not (run_dir / "curation" / "steps").exists()  # no step ran


def test_transformers_warnings_reach_the_job_log():
    """A critic built from the policy gets a new score head: transformers says so, and that line must not be
    silenced (only its progress bars are)."""
    code = (
        "import torch\n"
        "from yulan.runtime import joblog, models, tiny\n"
        "joblog.configure_logging()\n"
        "path = tiny.resolve('tiny:policy', 4096, 1024)\n"
        "models.load_scorer(path, torch.float32, pad_token_id=0)\n"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "newly initialized" in result.stderr and "score.weight" in result.stderr
