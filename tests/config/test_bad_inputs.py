"""Bad input is the common case in code review: each gives a clear error naming the field, value, rule and fix."""

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run
from yulan.compose import ConfigError, load

BAD = [
    # (overrides, field path in the message, words the message must contain)
    (["name=../../../tmp/x"], "name", ["one directory under run_root", "no '/'"]),
    (["name="], "name", ["not empty"]),
    (["ppo.actor.learning_rate=1e400"], "ppo.actor.learning_rate", ["finite number"]),
    (["ppo.kl.target=nan"], "ppo.kl.target", ["finite number"]),
    (["ppo.actr.learning_rate=1"], "ppo.actr", ["unknown key", "did you mean 'ppo.actor'"]),
    (["ppo.actor.learnig_rate=1"], "ppo.actor.learnig_rate", ["did you mean 'ppo.actor.learning_rate'"]),
    (["+ppo.foo=1"], "ppo.foo", ["unknown key"]),
    (["++sft.epoch=3"], "sft.epoch", ["did you mean 'sft.epochs'"]),
    (["experiment=ppo_yulna"], "experiment", ["did you mean 'experiment=ppo_yulan'"]),
    (["model=tinny"], "model", ["did you mean 'model=tiny'"]),
    (["cluster=nowhere"], "cluster", ["choose one of", "local"]),
    (["ppo.samples_per_rollout=3"], "ppo.samples_per_rollout", ["derived value"]),
    (["sft.gradient_accumulation_steps=4"], "sft.gradient_accumulation_steps", ["derived value"]),
    (["ppo.num_episodes.x=1"], "ppo.num_episodes.x", ["single value"]),
    (["ppo.reward.clip_range=[10,-20]"], "ppo.reward.clip_range", ["low must be below high", "report: [-20.0, 10.0]"]),
    (["ppo.reward.fallback_reward=50"], "ppo.reward.fallback_reward", ["inside clip_range"]),
    (["ppo.critic.init_from=reward_model"], "ppo.critic.init_from", ["tokenizer", "ppo.critic.init_from=policy"]),
    (["ppo.reward.mode=local_model"], "ppo.reward.mode", ["tokenizer", "remote_function"]),
    (["ppo.critic.init_from=critic"], "ppo.critic.init_from", ["must be one of: reward_model, policy"]),
    (["ppo.train_batch_size=100"], "ppo.train_batch_size", ["128 x 4 = 512", "report: 128"]),
    (["ppo.rollout_batch_size=20000"], "ppo.rollout_batch_size", ["prompt set"]),
    (["ppo.micro_train_batch_size=3"], "ppo.train_batch_size", ["micro_train_batch_size x actor GPUs"]),
    (["ppo.kl.target=-1"], "ppo.kl.target", ["greater than 0", "report: 0.06"]),
    (["ppo.actor.learning_rate=abc"], "ppo.actor.learning_rate", ["valid number", "report: 1e-06"]),
    (["ppo.actor.frozen_steps=-1"], "ppo.actor.frozen_steps", ["greater than or equal to 0"]),
    (["ppo.prompt_max_length=30000"], "ppo.max_sequence_length", ["model.context_length = 28672"]),
    (
        ["ppo.placement.colocate_all=true", "ppo.placement.actor_gpus=4"],
        "ppo.placement.actor_gpus",
        ["colocate_all needs actor GPUs = vLLM engines x tensor parallel = 2"],
    ),
    (
        ["ppo.placement.colocate_all=true", "ppo.placement.actor_gpus=2"],
        "ppo.placement.vllm_gpu_memory_utilization",
        ["<= 0.6"],
    ),
    (["ppo.placement.actor_gpus=8"], "ppo.placement", ["the roles need 14 GPUs", "= 8"]),
    (["ppo.reward.server_url=http://rm:5000"], "ppo.placement.reward_gpus", ["reward_gpus=0"]),
    (["ppo.engine=native"], "ppo.resources", ["one process on one machine"]),
    (["ppo.reward.server_max_length=2048"], "ppo.reward.server_max_length", ["would truncate samples of up to 4096"]),
    (["ppo.placement.reward_gpus=0"], "ppo.placement.reward_gpus", ["needs at least one GPU for it"]),
    (["stages=[ppo,dpo]"], "stages", ["pipeline order"]),
    (["stages=[]"], "stages", ["at least one stage"]),
    (["stages=[ppo,eval]", "ppo.actor.init_from=dpo"], "ppo.actor.init_from", ["does not run before 'ppo'"]),
    (["ppo.lr_scheduler=cosine"], "ppo.lr_scheduler", ["must be one of: constant, cosine_with_min_lr"]),
    (["cluster=local", "ppo.resources.gpus_per_node=16"], "ppo.resources.gpus_per_node", ["cluster 'local' offers"]),
    (["cluster.env.WANDB_API_KEY=abc"], "cluster.env.WANDB_API_KEY", ["secrets are never written", "<redacted>"]),
]


def assert_rejected(overrides: list[str], path: str, words: list[str]) -> str:
    """The experiment is refused with a message naming the field path and containing every given word."""
    with pytest.raises(ConfigError) as caught:
        load(overrides)
    message = str(caught.value)
    assert f"  {path}" in message, message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(("overrides", "path", "words"), BAD, ids=[" ".join(case[0]) for case in BAD])
def test_bad_ppo_override(overrides, path, words):
    assert_rejected(["experiment=ppo_yulan", *overrides], path, words)


def test_secret_value_is_never_echoed():
    message = assert_rejected(
        ["experiment=ppo_yulan", "cluster.env.WANDB_API_KEY=s3cr3t-value"], "cluster.env.WANDB_API_KEY", ["<redacted>"]
    )
    assert "s3cr3t-value" not in message


BAD_OTHER = [
    (["experiment=sft_yulan", "sft.global_batch_size=500"], "sft.global_batch_size", ["1 x 32 = 32", "report: 512"]),
    (["experiment=sft_yulan", "cluster=local"], "sft.resources.nodes", ["cluster 'local' offers cluster.nodes = 1"]),
    (["experiment=sft_yulan", "sft.max_length=40000"], "sft.max_length", ["model.context_length"]),
    (["experiment=sft_yulan", "sft.attention=sdpa"], "sft.attention", ["flash_attention_2"]),
    (["experiment=smoke", "sft.engine=openrlhf"], "sft.engine", ["needs GPUs", "engine=native"]),
    (["experiment=sft_yulan", "sft.zero_stage=4"], "sft.zero_stage", ["0, 1, 2 or 3"]),
    (
        ["experiment=curation_yulan", "curation.mix.categories.code.count=900000"],
        "curation.mix.categories.general_en.ratio",
        ["count/total"],
    ),
    (["experiment=curation_yulan", "curation.mix.categories.code.ratio=0.5"], "curation.mix.categories", ["sum to 1"]),
    (["experiment=curation_yulan", "curation.dedup.bands=30"], "curation.dedup.bands", ["exceeds num_permutations"]),
    (["experiment=curation_yulan", "curation.judge.score_min=5"], "curation.judge.score_min", ["below score_max"]),
    (["experiment=curation_yulan", "curation.judge.backend=openai"], "curation.judge.endpoint", ["server's URL"]),
    (["experiment=curation_yulan", "curation.steps=[mix,dedup]"], "curation.steps", ["in the order"]),
    (
        ["experiment=curation_yulan", "curation.heuristics.rules_off.code=[bogus]"],
        "curation.heuristics.rules_off.code.0",
        ["punctuation_run"],
    ),
    (
        ["experiment=dpo_yulan", "preference.parts.on_policy.count=0"],
        "preference.parts.off_policy.ratio",
        ["count/total"],
    ),
    (
        ["experiment=dpo_yulan", "+preference.parts.synthetic={count: 1, ratio: 0}"],
        "preference.parts",
        ["'off_policy' and 'on_policy'"],
    ),
    (["experiment=eval_yulan", "eval.selected=[gsm8k_8shott]"], "eval.selected", ["did you mean 'gsm8k_8shot'"]),
    (
        ["experiment=eval_yulan", "eval.benchmarks.humaneval_pass10.num_samples=5"],
        "eval.benchmarks.humaneval_pass10.num_samples",
        ["pass@10 needs at least 10"],
    ),
    (
        ["experiment=eval_yulan", "eval.benchmarks.mbpp_pass10.temperature=0"],
        "eval.benchmarks.mbpp_pass10.temperature",
        ["temperature > 0"],
    ),
    (["experiment=smoke", "openrlhf_version=0.9.0"], "openrlhf_version", ["0.11.2"]),
    (["experiment=sft_yulan", "sft.param_dtype=fp32"], "sft.param_dtype", ["takes bf16 or fp16 only", "engine=native"]),
    (["experiment=dpo_yulan", "dpo.param_dtype=fp32"], "dpo.param_dtype", ["takes bf16 or fp16 only"]),
    (["experiment=ppo_yulan", "ppo.param_dtype=fp32"], "ppo.param_dtype", ["takes bf16 or fp16 only"]),
    (["experiment=ppo_yulan", "ppo.kl.use_loss=true"], "ppo.kl.adaptive", ["marks it incompatible", "adaptive=false"]),
    (
        ["experiment=smoke", "sft.engine_options.liger_kernel=true"],
        "sft.engine_options.liger_kernel",
        ["Liger's fused kernels are OpenRLHF's", "engine=openrlhf"],
    ),
    (
        ["experiment=smoke", "dpo.engine_options.ring_attention_size=2"],
        "dpo.engine_options.ring_attention_size",
        ["the native engine is one process"],
    ),
    (["experiment=smoke", "sft.lora.rank=8"], "sft.lora.rank", ["adapters are OpenRLHF's here", "lora.rank=0"]),
    (
        ["experiment=sft_yulan", "sft.engine_options.ring_attention_size=3"],
        "sft.engine_options.ring_attention_size",
        ["must divide the job's 32 GPUs"],
    ),
    (
        ["experiment=sft_yulan", "sft.engine_options.ring_attention_size=2", "sft.packing=false"],
        "sft.packing",
        ["ring attention runs on packed samples"],
    ),
    (
        ["experiment=ppo_yulan", "ppo.engine_options.ring_attention_size=2", "ppo.attention=sdpa"],
        "ppo.attention",
        ["need flash_attention_2"],
    ),
    (["experiment=smoke", "ppo.async_rollouts.enabled=true"], "ppo.async_rollouts.enabled", ["one after the other"]),
    (["experiment=ppo_yulan", "ppo.async_rollouts.partial=true"], "ppo.async_rollouts.partial", ["a mode of async"]),
    (["experiment=ppo_yulan", "ppo.lora.target_modules=[]"], "ppo.lora.target_modules", ["at least 1"]),
]


@pytest.mark.parametrize(("overrides", "path", "words"), BAD_OTHER, ids=[" ".join(case[0]) for case in BAD_OTHER])
def test_bad_override(overrides, path, words):
    assert_rejected(overrides, path, words)


def test_error_names_the_override_that_set_the_value():
    with pytest.raises(ConfigError) as caught:
        load(["experiment=ppo_yulan", "ppo.kl.target=0"])
    assert "(set by override 'ppo.kl.target=0')" in str(caught.value)


def test_unknown_key_in_yaml_names_the_file(tmp_path, monkeypatch):
    tree = tmp_path / "mine"
    (tree / "experiment").mkdir(parents=True)
    (tree / "experiment" / "typo.yaml").write_text("# @package _global_\nstages: [ppo]\nppo:\n  num_episdes: 2\n")
    monkeypatch.setenv("YULAN_EXPERIMENTS", str(tree))
    with pytest.raises(ConfigError) as caught:
        load(["experiment=typo"])
    message = str(caught.value)
    assert "ppo.num_episdes" in message and "did you mean 'ppo.num_episodes'" in message
    assert f"{tree}/experiment/typo.yaml" in message


def test_bad_value_in_group_file_names_the_file(tmp_path, monkeypatch):
    tree = tmp_path / "mine"
    (tree / "cluster").mkdir(parents=True)
    (tree / "cluster" / "small.yaml").write_text("name: small\nnodes: 1\ngpus_per_node: 4\n")
    monkeypatch.setenv("YULAN_EXPERIMENTS", str(tree))
    with pytest.raises(ConfigError) as caught:
        load(["experiment=ppo_yulan", "cluster=small"])
    assert "ppo.resources.gpus_per_node = 8" in str(caught.value)


def test_cli_errors_exit_1_without_traceback(tmp_path):
    result = run("launch.py", "experiment=ppo_yulan", "ppo.actor.learnig_rate=1", f"run_root={tmp_path}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "did you mean" in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_sweep_with_one_bad_point_runs_nothing(tmp_path):
    result = run("launch.py", "-m", "experiment=smoke", "sft.learning_rate=1e-3,-1", f"run_root={tmp_path}")
    assert result.returncode == 1
    assert "1 of 2 sweep points are invalid; nothing was run or submitted" in result.stderr
    assert "sweep point 1" in result.stderr and "sweep point 0" not in result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_sweep_without_multirun_flag_is_refused():
    result = run("launch.py", "experiment=smoke", "seed=1,2", "dry_run=true")
    assert result.returncode == 1 and "add -m" in result.stderr


def test_existing_run_directory_is_never_overwritten(tmp_path):
    existing = tmp_path / "smoke"
    existing.mkdir()
    (existing / "keep.txt").write_text("precious")
    result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}")
    assert result.returncode == 1
    assert "the run directory exists; nothing is overwritten" in result.stderr
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]


def test_settings_this_machine_cannot_run_refuse_before_writing(tmp_path):
    pytest.importorskip("torch")
    if importlib.util.find_spec("vllm"):
        pytest.skip("vLLM is installed here")
    result = run(
        "launch.py", "experiment=smoke", f"run_root={tmp_path}", "curation.steps=[dedup,judge,mix]", "eval.backend=vllm"
    )
    assert result.returncode == 1
    assert "curation.judge.endpoint" in result.stderr and "starts vLLM, which is not installed" in result.stderr
    assert 'eval.backend = "vllm"' in result.stderr and "harness=native and backend=transformers" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_validate_reports_each_invalid_experiment():
    result = run("-m", "yulan.cli", "validate", "experiment=ppo_yulan", "ppo.gamma=2")
    assert result.returncode == 1
    assert "ppo.gamma = 2" in result.stderr and "report: 1.0" in result.stderr
    json.dumps(result.stderr)


def test_resume_refuses_a_changed_config(tmp_path):
    from yulan.launchers import manifest
    from yulan.launchers.plan import plan
    from yulan.launchers.preflight import preflight

    experiment = load(["experiment=smoke", f"run_root={tmp_path}", "launcher.on_existing_run=resume"])
    run_plan = plan(experiment, [])
    manifest.write(experiment, run_plan, {"commit": None, "dirty": False, "status": [], "diff": ""})
    same = [p.path for p in preflight(experiment, run_plan, {"dirty": False})]
    assert "launcher.on_existing_run" not in same
    changed = experiment.model_copy(update={"seed": 7})
    problems = preflight(changed, plan(changed, []), {"dirty": False})
    assert any("resumes only with the config it started with" in p.rule for p in problems)


@pytest.mark.parametrize(
    ("sweep", "words"),
    [
        ("seed=range(5,0)", ["the sweep has no points", "range(0,5)"]),
        ("ppo.kl.target=interval(0.01,0.1)", ["cannot sweep an interval", "key=a,b,c"]),
        ("seed=glob(4*)", ["glob() picks among a group's options"]),
        ("experiment=glob(nothing*)", ["the glob matches nothing", "smoke_grpo"]),
    ],
)
def test_sweeps_that_cannot_run_are_refused(tmp_path, sweep, words):
    result = run("launch.py", "-m", "experiment=smoke", sweep, f"run_root={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert all(word in result.stderr for word in words), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_glob_sweeps_over_a_groups_options(tmp_path):
    result = run("launch.py", "-m", "experiment=glob(smoke*)", "dry_run=true")
    assert result.returncode == 0, result.stderr
    assert [r["experiment"] for r in json.loads(result.stdout)["runs"]] == ["smoke", "smoke_grpo", "smoke_vllm"]


def test_a_corrupt_ledger_is_named_without_a_traceback(tmp_path):
    (tmp_path / "ledger.json").write_text('{"points": [')
    result = run("-m", "yulan.cli", "status", str(tmp_path))
    assert result.returncode == 1 and "is not a readable ledger" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def private_copy(tmp_path):
    """A copy of the package to add files to: the shipped tree is read by tests running beside this one."""
    shutil.copytree(REPO / "yulan", tmp_path / "yulan", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.fixture
def broken_experiments(private_copy):
    """Experiment files broken in the ways a hand-edited YAML breaks, in a private copy of the package."""
    files = {
        "zz_duplicate": "# @package _global_\nseed: 1\nseed: 2\n",
        "zz_syntax": "# @package _global_\nseed: [1\n",
        "zz_no_package": "seed: 3\n",
    }
    paths = [private_copy / "yulan" / "experiments" / "experiment" / f"{name}.yaml" for name in files]
    for path, text in zip(paths, files.values()):
        path.write_text(text)
    return paths


def test_broken_experiment_files_are_named_with_their_line_and_all_others_still_validate(broken_experiments):
    result = run("-m", "yulan.cli", "validate", "--all", cwd=broken_experiments[0].parents[3])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "3 of 15 invalid" in result.stderr and result.stdout.count("ok      experiment=") == 12
    duplicate, syntax, no_package = broken_experiments
    assert f"{duplicate}:3" in result.stderr and "found duplicate key seed" in result.stderr
    assert f"{syntax}:3" in result.stderr and "while parsing a flow sequence" in result.stderr
    assert f"{no_package}:1" in result.stderr and "must start with '# @package _global_'" in result.stderr


def test_a_changed_group_file_is_validated_as_its_choice_and_in_the_experiments_that_choose_it(private_copy):
    result = run(
        "-m",
        "yulan.cli",
        "validate",
        "yulan/experiments/model/tiny.yaml",
        "yulan/experiments/cluster/local.yaml",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "model=tiny", "ok", "experiment=smoke", "ok", "cluster=local"]
    bad = private_copy / "yulan" / "experiments" / "cluster" / "zz_bad.yaml"
    bad.write_text("name: zz_bad\nnodes: 0\n")
    refused = run("-m", "yulan.cli", "validate", str(bad), cwd=private_copy)
    assert refused.returncode == 1 and "invalid cluster=zz_bad" in refused.stderr and "cluster.nodes" in refused.stderr


@pytest.mark.parametrize(
    "override",
    [
        "tracking.group=${oc.env: HF_TOKEN}",
        "tracking.group=${ oc.env : HF_TOKEN }",
        "tracking.group=${oc.env:'HF_TOKEN'}",
        "tracking.group='${oc.env:\"HF_TOKEN\",none}'",
        "tracking.group='${oc.env:HOME,${oc.env:HF_TOKEN}}'",
        "tracking.group='${oc.select:missing,${oc.env:HF_TOKEN}}'",
        "tracking.group=${oc.env:${oc.decode:HF_TOKEN}}",
    ],
)
def test_a_secret_is_refused_in_every_spelling(tmp_path, override):
    secret = run(
        "launch.py",
        "experiment=smoke",
        override,
        f"run_root={tmp_path}",
        "dry_run=true",
        env=dict(os.environ, HF_TOKEN="hf_do_not_print", YULAN_COMPOSE_CACHE="1"),
    )
    assert secret.returncode == 1 and "a secret read into the config" in secret.stderr, secret.stderr[-1000:]
    assert "hf_do_not_print" not in secret.stderr + secret.stdout and "Traceback" not in secret.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_secret_in_a_config_file_is_refused_and_a_spaced_lookup_never_cached(private_copy, tmp_path):
    experiment = private_copy / "yulan" / "experiments" / "experiment" / "zz_env.yaml"
    experiment.write_text("# @package _global_\nseed: 7\ntracking:\n  group: ${oc.env: HF_TOKEN}\n")
    refused = run(
        "-m",
        "yulan.cli",
        "validate",
        "experiment=zz_env",
        cwd=private_copy,
        env=dict(os.environ, HF_TOKEN="hf_do_not_print"),
    )
    assert refused.returncode == 1 and "a secret read into the config" in refused.stderr, refused.stderr[-1000:]
    assert "hf_do_not_print" not in refused.stderr + refused.stdout
    cache = tmp_path / "cache"
    roots = []
    for root in ("a", "b"):
        launched = run(
            "launch.py",
            "experiment=smoke",
            "run_root=${oc.env: YULAN_TEST_ROOT}",
            "dry_run=true",
            env=dict(os.environ, YULAN_TEST_ROOT=str(tmp_path / root), XDG_CACHE_HOME=str(cache)),
        )
        assert launched.returncode == 0, launched.stderr[-1000:]
        roots.append(json.loads(launched.stdout)["runs"][0]["run_dir"])
    assert roots == [f"{tmp_path}/a/smoke", f"{tmp_path}/b/smoke"]
    assert not (cache / "yulan" / "compose").exists() or not any((cache / "yulan" / "compose").iterdir())


def test_environment_lookups_are_never_cached_and_secrets_never_read(tmp_path):
    first = run(
        "launch.py",
        "experiment=smoke",
        "run_root=${oc.env:YULAN_TEST_ROOT}",
        "dry_run=true",
        env=dict(os.environ, YULAN_TEST_ROOT=str(tmp_path / "a")),
    )
    second = run(
        "launch.py",
        "experiment=smoke",
        "run_root=${oc.env:YULAN_TEST_ROOT}",
        "dry_run=true",
        env=dict(os.environ, YULAN_TEST_ROOT=str(tmp_path / "b")),
    )
    assert [json.loads(r.stdout)["runs"][0]["run_dir"] for r in (first, second)] == [
        f"{tmp_path}/a/smoke",
        f"{tmp_path}/b/smoke",
    ]
    secret = run(
        "launch.py",
        "experiment=smoke",
        "tracking.group=${oc.env:HF_TOKEN}",
        "dry_run=true",
        env=dict(os.environ, HF_TOKEN="hf_do_not_print"),
    )
    assert secret.returncode == 1 and "a secret read into the config" in secret.stderr
    assert "hf_do_not_print" not in secret.stderr + secret.stdout
    sweep = run(
        "launch.py",
        "-m",
        "experiment=smoke",
        "seed=1,2",
        "tracking.group=${oc.env:HF_TOKEN}",
        f"run_root={tmp_path}/sweep",
        env=dict(os.environ, HF_TOKEN="hf_do_not_print"),
    )
    assert sweep.returncode == 1 and "a secret read into the config" in sweep.stderr  # a sweep as a single run
    assert not (tmp_path / "sweep").exists()


def alias_bomb(levels: int) -> str:
    """Nested anchors: each level a list of nine aliases of the one before (9**levels scalars once expanded)."""
    lines = ["# @package _global_", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    lines.append(f"seed: {len(lines)}")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_quickly_with_its_file_named(private_copy):
    bomb = private_copy / "yulan" / "experiments" / "experiment" / "zz_bomb.yaml"
    bomb.write_text(alias_bomb(9))  # 9**9 = 387 million nodes from 551 bytes
    assert len(bomb.read_bytes()) < 600
    result = subprocess.run(
        [sys.executable, "-m", "yulan.cli", "validate", "experiment=zz_bomb"],
        cwd=private_copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-1000:]
    assert "a config file expands beyond reason" in result.stderr and "zz_bomb.yaml" in result.stderr
    assert "more than 200,000 nodes" in result.stderr and len(result.stderr) < 2000
    fine = private_copy / "yulan" / "experiments" / "experiment" / "zz_aliases.yaml"
    smoke = (private_copy / "yulan" / "experiments" / "experiment" / "smoke.yaml").read_text()
    fine.write_text(smoke + "tracking:\n  project: &p demo\n  group: *p\n")  # aliases of reasonable size
    bomb.unlink()
    assert run("-m", "yulan.cli", "validate", "experiment=zz_aliases", cwd=private_copy).returncode == 0


def test_environment_lookups_are_found_by_omegaconfs_grammar():
    from yulan.compose.cache import UNPARSED, cacheable, environment_lookups

    overrides = [
        "a=${oc.env: HOME}",
        "b=${ oc.env : USER }",
        "c='${oc.env:\"LANG\",en}'",
        "d=$\\{oc.env\\:TERM\\}",  # as Hydra's sweep expansion hands it over
        "e='${oc.select:x,${oc.env:SHELL}}'",
        "f=${oc.env:${oc.decode:PATH}}",  # computed: refused, whatever it names
        "g=${environment_of_my_own:x}",
        "h=${oc.env:PWD",  # unclosed
    ]
    with pytest.raises(ConfigError, match="a secret read into the config") as refused:
        environment_lookups(overrides)
    assert "${oc.env:${oc.decode:PATH}}" in str(refused.value)
    assert environment_lookups(overrides[:5] + overrides[6:]) == sorted(
        ["HOME", "USER", "LANG", "TERM", "SHELL", UNPARSED]
    )
    files = ['tracking:\n  group: "${oc.env: MY_GROUP}"\n', "curation:\n  inputs: ['${shipped_data:x.jsonl}']\n"]
    assert environment_lookups([], files) == ["MY_GROUP"]
    assert not cacheable(["seed=1"], files) and cacheable(["seed=1"], files[1:])
    assert not cacheable(["run_root=/r/${ now :%H}"], [])


# -- launch: what reaches a shell or a file name ------------------------------------------------------------------
def experiment_file(tmp_path, name: str, body: str) -> Path:
    """An experiment tree of one file (passed with --experiments) that adds `body` to the smoke experiment."""
    folder = tmp_path / "experiments" / "experiment"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(f"# @package _global_\ndefaults:\n  - /experiment/smoke\n{body}")
    return tmp_path / "experiments"


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_a_newline_in_a_path_never_reaches_an_sbatch_script(tmp_path, launcher):
    tree = experiment_file(tmp_path, "newline", f'run_root: "{tmp_path}/r\\ntouch {tmp_path}/pwned"\n')
    for extra in (["dry_run=true"], []):
        result = run("launch.py", "-cd", str(tree), "experiment=newline", f"launcher={launcher}", *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f'run_root = "{tmp_path}/r\\ntouch {tmp_path}/pwned"' in result.stderr
        assert "holds the control character '\\n'; a path is one line of printable characters" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments"]


def test_slurm_names_are_one_word(tmp_path):
    result = run("launch.py", "experiment=smoke", "launcher=slurm", "dry_run=true", "cluster.partitions.gpu='gpu x'")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "a SLURM name: one word of printable characters (it becomes an #SBATCH line)" in result.stderr


def test_a_name_too_long_for_a_directory_is_refused_by_the_dry_run_too(tmp_path):
    for extra in (["dry_run=true"], []):
        result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}", "name=" + "n" * 201, *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "at most 200 bytes: it names a directory and the jobs" in result.stderr
    result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}/{'r' * 256}", "dry_run=true")
    assert result.returncode == 1 and "has a 256-byte file name ('rrrrrrrrrrrrrrrrrrrr...'); file systems take 255" in (
        result.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_a_run_root_that_is_a_file_is_refused_by_the_dry_run_and_the_launch(tmp_path):
    not_a_directory = tmp_path / "runs"
    not_a_directory.write_text("a file\n")
    for extra in (["dry_run=true"], []):
        result = run("launch.py", "experiment=smoke", f"run_root={not_a_directory}", *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert (
            f"{not_a_directory} is not a directory, and the run directory {not_a_directory}/smoke would be made in it"
        ) in result.stderr
    assert not_a_directory.read_text() == "a file\n"


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({"config.json": '{"x": 1}'}, "its config.json is not a run's (no name, stages, launcher, model)"),
        ({"config.json": "not json"}, "its config.json is not a run's (no name, stages, launcher, model)"),
        (
            {"config.json": '{"name": 1, "stages": [], "launcher": 5, "model": {}}'},
            "its config.json is not a run's (no launcher settings)",
        ),
        ({"notes.txt": "mine"}, "holds files but none of a run's (config.json, manifest.json, plan.json"),
    ],
)
def test_resume_continues_only_a_run_of_this_product(tmp_path, files, why):
    target = tmp_path / "smoke"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    for extra in (["dry_run=true"], []):
        result = run("launch.py", "experiment=smoke", f"run_root={tmp_path}", "launcher.on_existing_run=resume", *extra)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"resume continues a run this product started; {target} {why}" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == sorted(files)


# -- other commands: bad input is named, never a traceback --------------------------------------------------------
def write_lines(path: Path, *records) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_commands_name_what_is_wrong_with_their_input(tmp_path):
    sample = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    samples = write_lines(tmp_path / "samples.jsonl", sample)
    code = write_lines(tmp_path / "code.jsonl", {"task_id": ["HumanEval/0"], "completion": "x"})
    math = write_lines(tmp_path / "math.jsonl", {"reference": "4", "completion": "4", "subject": ["algebra"]})
    mbpp = write_lines(tmp_path / "mbpp.jsonl", {"text": "no code field"})
    number_prompt = write_lines(tmp_path / "r1.jsonl", {"prompt": 5, "response": "x"})
    no_content = write_lines(tmp_path / "r2.jsonl", {"prompt": [{"role": "user"}], "response": "x"})
    cases = [
        (
            ["curate", "heuristics", "--input", str(samples), "--output", str(tmp_path / "o.jsonl"), "min_words=["],
            "error: setting min_words=[: not a YAML value (while parsing a flow node)",
        ),
        (
            [
                "curate",
                "heuristics",
                "--input",
                str(samples),
                "--output",
                str(tmp_path / "o.jsonl"),
                "x=!!python/name:os",
            ],
            "could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os'",
        ),
        (["eval", "compare", "nope1", "nope2"], "error: nope1: no such file; name a run's eval/results directory"),
        (["eval", "compare", str(samples), str(samples)], "its `rows` are not a list of objects"),
        (
            ["eval", "score", "--benchmark", "humaneval_pass10", "--samples", str(code)],
            'code.jsonl:1 = ["HumanEval/0"]\n    rule: task_id must be a string naming a problem',
        ),
        (
            ["eval", "score", "--benchmark", "math_0shot_cot", "--samples", str(math)],
            'math.jsonl:1 = ["algebra"]\n    rule: subject must be a string',
        ),
        (
            ["eval", "score", "--benchmark", "mbpp_pass10", "--samples", str(code), "--data", "missing.jsonl"],
            "error: missing.jsonl: no such file; expected the benchmark's data as a JSONL file",
        ),
        (
            ["eval", "score", "--benchmark", "mbpp_pass10", "--samples", str(code)],
            "error: benchmark task 'mbpp' has no data here: pass --data FILE to `yulan eval score`",
        ),
        (
            ["eval", "score", "--benchmark", "mbpp_pass10", "--samples", str(code), "--data", str(mbpp)],
            f"error: {mbpp}: record 1 is not a mbpp record (KeyError: 'code')",
        ),
        (
            ["reward", "score", "--samples", str(number_prompt), "experiment=smoke"],
            "r1.jsonl:1 = 5\n    rule: prompt must be a string, or chat messages",
        ),
        (
            ["reward", "score", "--samples", str(no_content), "experiment=smoke"],
            'r2.jsonl:1 = [{"role": "user"}]\n    rule: prompt must be chat messages: each a {role: string',
        ),
        (["schema", "--output", str(tmp_path)], f"error: {tmp_path}: is a directory; name a file to write"),
        (["cancel", str(tmp_path)], "holds no run (no config.json): pass the directory launch.py printed"),
    ]
    for argv, words in cases:
        result = run("-m", "yulan.cli", *argv, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (argv, result.stderr[-2000:])
        assert words in result.stderr, (argv, result.stderr)
    made = run("-m", "yulan.cli", "schema", "--output", str(tmp_path / "new" / "dir" / "schema.json"))
    assert made.returncode == 0 and json.loads((tmp_path / "new" / "dir" / "schema.json").read_text())["$schema"]


def test_a_compose_cache_entry_that_is_not_a_file_is_neither_read_nor_replaced(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    first = run("launch.py", "experiment=smoke", "dry_run=true", env=env)
    assert first.returncode == 0, first.stderr
    (entry,) = (tmp_path / "cache" / "yulan" / "compose").glob("*.json")
    entry.unlink()
    os.mkfifo(entry)  # read, it would wait forever; replaced, a file the cache does not own would be lost
    again = subprocess.run(
        [sys.executable, "launch.py", "experiment=smoke", "dry_run=true"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
    assert stat.S_ISFIFO(entry.lstat().st_mode)
