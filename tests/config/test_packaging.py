"""`pip install .` (not editable) into a fresh virtual environment, used from another directory as a user would:
the shipped experiments come with it, a user's experiment directory is found, and the login-node path (compose,
validate, plan) works with the core dependencies alone."""

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from yulan.compose import SHIPPED_EXPERIMENTS

pytestmark = pytest.mark.network  # pip fetches the core dependencies from the package index

LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv", "runs", "*.egg-info", "__pycache__", "build", "dist", ".pytest_cache"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packaging")
    checkout = root / "checkout"
    shutil.copytree(REPO, checkout, ignore=LEFT_OUT)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    pip = subprocess.run(
        [str(root / "venv" / "bin" / "pip"), "install", "-q", str(checkout)], capture_output=True, text=True
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(checkout)  # the install must stand on its own
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return root / "venv" / "bin", elsewhere


def test_validate_all_checks_every_shipped_experiment(installed):
    bin_dir, elsewhere = installed
    shipped = sorted(path.stem for path in (SHIPPED_EXPERIMENTS / "experiment").glob("*.yaml"))
    result = subprocess.run(
        [str(bin_dir / "yulan"), "validate", "--all"], cwd=elsewhere, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[1::2] == [f"experiment={name}" for name in shipped] and len(shipped) >= 10


def test_yulan_launch_plans_ppo_yulan_without_the_job_packages(installed):
    bin_dir, elsewhere = installed
    result = subprocess.run(
        [str(bin_dir / "yulan"), "launch", "experiment=ppo_yulan", "dry_run=true", f"run_root={elsewhere}/runs"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (planned,) = json.loads(result.stdout)["runs"]
    assert planned["run_dir"] == f"{elsewhere}/runs/ppo_yulan" and [job["stage"] for job in planned["jobs"]] == ["ppo"]
    missing = subprocess.run([str(bin_dir / "python"), "-c", "import torch"], capture_output=True)
    assert missing.returncode != 0  # the plan above needed no torch


def test_a_users_experiment_directory_is_found(installed):
    bin_dir, elsewhere = installed
    tree = elsewhere / "my_experiments" / "experiment"
    tree.mkdir(parents=True)
    (tree / "ppo_short.yaml").write_text(
        "# @package _global_\ndefaults:\n  - ppo_yulan\n  - _self_\nppo:\n  num_episodes: 1\n"
    )
    shown = subprocess.run(
        [str(bin_dir / "yulan"), "show", "--experiments", "my_experiments", "experiment=ppo_short", "--sources"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "ppo.num_episodes = 1    # my_experiments/experiment/ppo_short.yaml" in shown.stdout
    assert 'ppo.critic.init_from = "policy"    # ' in shown.stdout  # from ppo_yulan, in the installed package
    assert "# yulan/experiments/experiment/ppo_yulan.yaml" in shown.stdout


def test_only_the_projects_packages_are_installed(installed):
    """One top-level package: a `schema` or `launchers` of ours would collide with the PyPI packages of that name."""
    bin_dir, _ = installed
    probe = (
        "import importlib.util as u, importlib.metadata as m\n"
        "print([n for n in ('launch', 'tests', 'experiments', 'schema', 'launchers') if u.find_spec(n)])\n"
        "print(sorted({f.parts[0] for f in m.distribution('yulan-posttrain').files if f.suffix == '.py'}))"
    )
    result = subprocess.run([str(bin_dir / "python"), "-c", probe], capture_output=True, text=True, cwd="/")
    assert result.stdout.split("\n")[:2] == ["[]", "['yulan']"], result.stdout + result.stderr
