"""The launch contract: dry-run JSON on stdout only, nothing written; run_root; light login-node path."""

import ast
import json
import os
import re

from tests.conftest import REPO, run
from yulan.compose import SHIPPED_EXPERIMENTS, load
from yulan.launchers.plan import plan


def test_dry_run_prints_only_the_plan_and_writes_nothing(tmp_path):
    result = run(
        str(REPO / "launch.py"), "experiment=yulan_full", "dry_run=true", f"run_root={tmp_path}/runs", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert list(tmp_path.iterdir()) == []
    (only,) = runs
    assert only["run_dir"] == f"{tmp_path}/runs/yulan_full"
    stages = [job["stage"] for job in only["jobs"]]
    assert stages == ["curation", "sft", "preference", "dpo", "ppo", "eval"]
    jobs = {job["stage"]: job for job in only["jobs"]}
    assert jobs["sft"]["depends_on"] == ["curation"]
    assert jobs["dpo"]["depends_on"] == ["sft", "preference"]
    assert jobs["ppo"]["depends_on"] == ["preference", "dpo"]
    assert jobs["eval"]["depends_on"] == ["ppo"]
    assert jobs["sft"]["inputs"]["sft.data"] == f"{tmp_path}/runs/yulan_full/curation/data/sft.jsonl"
    assert jobs["sft"]["resources"]["nodes"] == 4 and jobs["sft"]["partition"] == "gpu"
    assert jobs["curation"]["engine"] is None and jobs["curation"]["engine_command"] is None
    assert jobs["ppo"]["engine_command"][:3] == ["python", "-m", "openrlhf.cli.train_ppo_ray"]
    assert jobs["ppo"]["command"] == ["python", "-m", "yulan.run", "--run-dir", only["run_dir"], "--stage", "ppo"]


def test_single_stage_experiments_chain_through_run_root(tmp_path):
    result = run("launch.py", "experiment=ppo_yulan", "dry_run=true", f"run_root={tmp_path}")
    job = json.loads(result.stdout)["runs"][0]["jobs"][0]
    assert job["inputs"]["ppo.actor.init_from"] == f"{tmp_path}/dpo_yulan/dpo/model"
    assert job["depends_on"] == []


def test_multirun_dry_run_gives_each_point_its_directory(tmp_path):
    result = run(
        "launch.py",
        "-m",
        "experiment=ppo_yulan",
        "ppo.num_episodes=1,2",
        "ppo.kl.target=0.03,0.06",
        "dry_run=true",
        f"run_root={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [r["run_dir"] for r in runs] == [f"{tmp_path}/ppo_yulan/{i}" for i in range(4)]
    assert runs[3]["overrides"][1:3] == ["ppo.num_episodes=2", "ppo.kl.target=0.06"]
    assert list(tmp_path.iterdir()) == []


def test_plan_marks_report_layouts():
    sft = plan(load(["experiment=sft_yulan"]), []).jobs[0]
    ppo = plan(load(["experiment=ppo_yulan"]), []).jobs[0]
    assert (sft.resources["nodes"], sft.resources["gpus_per_node"]) == (4, 8)
    assert (ppo.resources["nodes"], ppo.resources["gpus_per_node"]) == (1, 8)


def test_login_node_path_imports_no_heavy_package(tmp_path):
    code = (
        "import sys, io, contextlib, launch\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert launch.main(['experiment=yulan_full', 'dry_run=true', 'run_root={tmp_path}']) == 0\n"
        "from yulan import cli\n"
        "assert cli.main(['validate', '--all']) == 0\n"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'deepspeed', 'ray', 'openrlhf', 'wandb') if m "
        "in sys.modules]\n"
        "print(heavy)\n"
        "print(sorted(m for m in sys.modules if m.startswith('yulan.')))\n"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    heavy, ours = result.stdout.strip().splitlines()[-2:]
    assert heavy == "[]"
    # planning reads the stage table and writes the engine's command lines; no code that runs inside a job
    planning = ("yulan.schema", "yulan.compose", "yulan.launchers", "yulan.cli", "yulan.engines.openrlhf.command")
    job_side = [m for m in ast.literal_eval(ours) if not m.startswith(planning) and m not in LOGIN_NODE_MODULES]
    assert job_side == []


# What else the login-node path may import: the stage table, and the records of a run directory
LOGIN_NODE_MODULES = {
    "yulan.stages",
    "yulan.engines",
    "yulan.engines.openrlhf",
    "yulan.runtime",
    "yulan.runtime.lifecycle",
    "yulan.runtime.records",
}


def test_show_includes_derived_values_and_sources():
    shown = run("-m", "yulan.cli", "show", "experiment=ppo_yulan", "ppo.rollout_batch_size=64", "--json")
    data = json.loads(shown.stdout)
    assert data["ppo"]["samples_per_rollout"] == 256 and "reward_model" in data and "model" in data
    assert not {"curation", "sft", "preference", "dpo", "eval"} & set(data)  # stages ppo_yulan does not run
    everything = json.loads(run("-m", "yulan.cli", "show", "experiment=ppo_yulan", "--json", "--all").stdout)
    assert everything["sft"]["gradient_accumulation_steps"] == 16
    text = run("-m", "yulan.cli", "show", "experiment=ppo_yulan").stdout
    assert "\nsft:" not in text and text.endswith("(not read by the stages this experiment runs; --all shows them)\n")
    assert (
        len(text.splitlines())
        < len(run("-m", "yulan.cli", "show", "experiment=ppo_yulan", "--all").stdout.splitlines()) / 2
    )
    sources = run("-m", "yulan.cli", "show", "experiment=ppo_yulan", "ppo.rollout_batch_size=64", "--sources").stdout
    assert "ppo.rollout_batch_size = 64    # override 'ppo.rollout_batch_size=64'" in sources
    assert 'ppo.critic.init_from = "policy"    # yulan/experiments/experiment/ppo_yulan.yaml' in sources
    assert "ppo.samples_per_rollout = 256    # derived" in sources


def test_diff_shows_typed_differences():
    result = run("-m", "yulan.cli", "diff", "experiment=ppo_yulan", "--", "experiment=ppo_yulan", "ppo.num_episodes=2")
    assert result.returncode == 0
    assert "ppo.num_episodes: 4 -> 2" in result.stdout
    assert "ppo.total_rollouts: 312 -> 156" in result.stdout
    paper = run("-m", "yulan.cli", "diff", "--paper", "experiment=ppo_yulan", "ppo.kl.target=0.1").stdout
    assert "ppo.kl.target: report 0.06 -> 0.1" in paper
    assert 'ppo.critic.init_from: report "reward_model" -> "policy"' in paper
    assert "rollout_batch_size" not in paper  # not a report value


def test_compose_cache_gives_the_same_experiment(tmp_path):
    import os

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    first = run("-m", "yulan.cli", "show", "experiment=smoke", "--json", env=env)
    second = run("-m", "yulan.cli", "show", "experiment=smoke", "--json", env=env)
    assert first.returncode == 0 and first.stdout == second.stdout
    assert len(list((tmp_path / "yulan" / "compose").glob("*.json"))) == 1
    off = run("-m", "yulan.cli", "show", "experiment=smoke", "--json", env=dict(env, YULAN_COMPOSE_CACHE="0"))
    assert off.stdout == first.stdout


def test_json_schema_matches_committed_copy():
    from yulan.cli.schema import SCHEMA_FILE, json_schema

    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == json_schema(), (
        "yulan/schema/experiment.schema.json is stale: run `yulan schema --output yulan/schema/experiment.schema.json`"
    )


def test_json_schema_describes_fields_with_their_source():
    from yulan.cli.schema import json_schema

    schema = json_schema()
    ppo = schema["$defs"]["PPOConfig"]["properties"]
    assert ppo["train_batch_size"]["source"] == "report" and ppo["train_batch_size"]["unit"] == "samples"
    assert ppo["rollout_batch_size"]["source"] == "not in the report"
    assert schema["$defs"]["PPOConfig"]["additionalProperties"] is False


def test_precommit_hook_validates_changed_experiment_files():
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["entry"] == "yulan validate"
    assert re.search(hook["files"], "yulan/experiments/experiment/ppo_yulan.yaml")
    assert re.search(hook["files"], "experiments/model/mine.yaml") and not re.search(hook["files"], "docs/x.yaml")
    result = run("-m", "yulan.cli", "validate", "yulan/experiments/experiment/ppo_yulan.yaml")
    assert result.returncode == 0 and result.stdout.strip() == "ok      experiment=ppo_yulan"
    # the primary config: all of them
    everything = run("-m", "yulan.cli", "validate", "yulan/experiments/config.yaml")
    assert everything.stdout.count("ok ") == len(list((SHIPPED_EXPERIMENTS / "experiment").glob("*.yaml")))


def test_sweep_composition_equals_composing_each_point():
    from yulan.compose import compose, compose_sweep, sweep_points

    points = sweep_points(
        [
            "experiment=ppo_yulan,smoke",
            "model=tiny",
            "ppo.kl.target=0.03,0.1",
            "seed=1,2",
            "run_root=/tmp/r",
            "ppo.reward.clip_range=[-5,5]",
            "stages=[ppo]",
            "ppo.actor.init_from=/ckpt",
            "ppo.prompts.source=/p.jsonl",
            "+cluster.env.NCCL_DEBUG=INFO",
        ]
    )
    points += sweep_points(["experiment=smoke", "curation.mix.categories.math.count=22", "name=renamed", "seed=3"])
    fast = compose_sweep(points)
    for point, composed in zip(points, fast):
        assert not isinstance(composed, Exception), (point, composed)
        slow = compose(point)
        assert (
            composed.config == slow.config and composed.choices == slow.choices and composed.sources == slow.sources
        ), point


def test_sweep_composition_reports_each_bad_point():
    from yulan.compose import ConfigError, compose_sweep

    results = compose_sweep([["experiment=smoke", "ppo.gama=1"], ["experiment=smoke", "seed=1"], ["experiment=nope"]])
    assert isinstance(results[0], ConfigError) and "did you mean" in str(results[0])
    assert not isinstance(results[1], ConfigError)
    assert isinstance(results[2], ConfigError)


def test_a_slurm_dry_run_where_the_scheduler_cannot_be_asked_says_so():
    result = run(
        "launch.py",
        "experiment=smoke",
        "launcher=slurm",
        "cluster=local",
        "dry_run=true",
        env=dict(os.environ, PATH="/nonexistent"),
    )
    assert result.returncode == 0 and "note: the cluster was not checked" in result.stderr, result.stderr
    assert json.loads(result.stdout)["runs"][0]["jobs"][0]["sbatch"].startswith("#!/bin/bash")
