"""Every experiment composes and validates; the *_yulan experiments carry the report's numbers."""

import pytest

from tests.conftest import run
from yulan.compose import experiment_names, load

EXPERIMENTS = [
    "curation_yulan",
    "sft_yulan",
    "preference_yulan",
    "dpo_yulan",
    "ppo_yulan",
    "eval_yulan",
    "yulan_full",
    "smoke",
]


def test_all_named_experiments_exist():
    assert set(EXPERIMENTS) <= set(experiment_names())


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_validates(name):
    experiment = load([f"experiment={name}"])
    assert experiment.name == name
    assert experiment.output_dir == f"runs/{name}"


def test_yulan_validate_all_exits_zero():
    result = run("-m", "yulan.cli", "validate", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(experiment_names())


def test_sft_recipe_matches_report():
    sft = load(["experiment=sft_yulan"]).sft
    assert (sft.resources.nodes, sft.resources.gpus_per_node) == (4, 8)
    assert sft.global_batch_size == 512
    assert sft.max_length == 28 * 1024
    assert sft.epochs == 2
    assert sft.learning_rate == 1e-5
    assert sft.gradient_accumulation_steps == 512 // (1 * 32)


def test_curation_matches_report():
    curation = load(["experiment=curation_yulan"]).curation
    counts = {name: share.count for name, share in curation.mix.categories.items()}
    ratios = {name: share.ratio for name, share in curation.mix.categories.items()}
    assert counts == {"general_en": 3_200_000, "general_zh": 3_000_000, "math": 1_800_000, "code": 200_000}
    assert ratios == {"general_en": 0.39, "general_zh": 0.36, "math": 0.22, "code": 0.03}
    assert curation.mix.total == 8_200_000
    assert curation.dedup.method == "minhash_lsh"
    assert curation.judge.model == "Qwen/Qwen2.5-32B-Instruct"
    assert curation.judge.dimensions == ("instruction_following", "informativeness", "truthfulness")
    assert (curation.judge.score_min, curation.judge.score_max) == (1, 5)
    assert curation.sources.math.teacher == "Qwen/Qwen2.5-Math-7B-Instruct"
    assert curation.sources.math.seed_dataset == "nvidia/OpenMathInstruct-2"
    assert curation.sources.science.generator == "Qwen/Qwen2.5-32B-Instruct"
    assert curation.steps == ("dedup", "decontaminate", "heuristics", "judge", "complexity", "mix")


def test_preference_and_dpo_match_report():
    experiment = load(["experiment=dpo_yulan"])
    parts = experiment.preference.parts
    assert (parts["off_policy"].count, parts["off_policy"].ratio) == (258_000, 0.69)
    assert (parts["on_policy"].count, parts["on_policy"].ratio) == (115_000, 0.31)
    assert experiment.preference.total == 373_000
    assert experiment.reward_model.name_or_path == "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2"
    dpo = experiment.dpo
    assert (dpo.epochs, dpo.global_batch_size, dpo.learning_rate, dpo.beta) == (2, 128, 5e-7, 0.1)


def test_ppo_table_matches_report():
    ppo = load(["experiment=ppo_yulan"]).ppo
    assert ppo.actor.learning_rate == 1e-6
    assert ppo.critic.learning_rate == 1e-5
    assert ppo.train_batch_size == 128
    assert ppo.actor.frozen_steps == 15
    assert ppo.num_episodes == 4
    assert ppo.samples_per_prompt == 4
    assert (ppo.prompt_max_length, ppo.generate_max_length) == (2048, 2048)
    assert (ppo.kl.adaptive, ppo.kl.init_coef, ppo.kl.target) == (True, 0.01, 0.06)
    assert (ppo.gae_lambda, ppo.gamma, ppo.temperature) == (0.95, 1.0, 1.0)
    assert ppo.reward.clip_range == (-20, 10)
    assert (ppo.lr_warmup_ratio, ppo.lr_scheduler) == (0, "constant")
    assert ppo.prompts.count == 10_000
    assert (ppo.resources.nodes, ppo.resources.gpus_per_node) == (1, 8)
    penalties = ppo.reward.penalties
    assert penalties.incomplete < 0 and penalties.mixed_language < 0 and penalties.generic < 0
    assert any(phrase.lower() in "i hope this helps" for phrase in penalties.generic_phrases)  # the report's example


def test_eval_table_matches_report():
    benchmarks = load(["experiment=eval_yulan"]).eval.benchmarks
    settings = {name: (b.num_fewshot, b.chain_of_thought, b.pass_k) for name, b in benchmarks.items()}
    assert settings["mmlu_0shot_cot"] == (0, True, None)
    assert settings["mmlu_5shot"][0] == 5
    assert settings["truthfulqa_0shot"][0] == 0 and settings["arc_0shot"][0] == 0
    assert settings["math_0shot_cot"] == (0, True, None)
    assert settings["gsm8k_8shot"][0] == 8 and settings["gsm8k_0shot_cot"] == (0, True, None)
    for code in ("humaneval_pass10", "humaneval_plus_pass10", "mbpp_pass10", "mbpp_plus_pass10"):
        assert benchmarks[code].pass_k == 10 and benchmarks[code].num_samples >= 10 and benchmarks[code].temperature > 0
    assert benchmarks["gsm8k_8shot"].published["YuLan-Mini-Instruct"] == 81.8
    assert benchmarks["mbpp_pass10"].published["Qwen-2.5-1.5B-Instruct"] == 88.1
    assert len(benchmarks) == 11


def test_ppo_yulan_makes_the_critic_decision_explicit():
    """The report's critic-from-reward-model is invalid with a different tokenizer; ppo_yulan decides."""
    experiment = load(["experiment=ppo_yulan"])
    assert experiment.ppo.critic.init_from == "policy"
    assert experiment.ppo.reward.mode == "remote_function"


def test_smoke_is_tiny_and_cpu_only():
    experiment = load(["experiment=smoke"])
    assert experiment.stages == ("curation", "sft", "preference", "dpo", "ppo", "eval")
    for stage in experiment.stages:
        assert all(res.gpus_per_node == 0 for _, res in experiment.stage_resources(stage))
    assert experiment.model.tokenizer == experiment.reward_model.tokenizer
    assert experiment.ppo.critic.init_from == "reward_model"  # allowed: the tiny models share a tokenizer


def test_derived_values_follow_overrides():
    base = load(["experiment=ppo_yulan"])
    changed = load(["experiment=ppo_yulan", "ppo.rollout_batch_size=64", "ppo.prompt_max_length=1024"])
    assert base.ppo.samples_per_rollout == 512 and changed.ppo.samples_per_rollout == 256
    assert changed.ppo.optimizer_steps_per_rollout == 2
    assert changed.ppo.max_sequence_length == 1024 + 2048
    assert changed.derived["ppo"]["first_actor_update_at_rollout"] == 16
    full = load(
        [
            "experiment=yulan_full",
            "curation.mix.categories.code.count=0",
            "curation.mix.categories.code.ratio=0",
            "curation.mix.categories.general_en.ratio=0.4",
            "curation.mix.categories.general_zh.ratio=0.375",
            "curation.mix.categories.math.ratio=0.225",
        ]
    )
    assert full.derived["sft"]["train_samples"] == 8_000_000
    assert full.derived["sft"]["optimizer_steps_per_epoch"] == 15_625


def test_any_field_overridable_without_plus():
    experiment = load(
        ["experiment=ppo_yulan", "ppo.placement.vllm_gpu_memory_utilization=0.8", "curation.dedup.bands=16"]
    )
    assert experiment.ppo.placement.vllm_gpu_memory_utilization == 0.8
    assert experiment.curation.dedup.bands == 16


def test_experiment_files_hold_deltas_only():
    """A value in an experiment/group YAML that equals the schema default is a repeated default."""
    import yaml

    from yulan.compose import SHIPPED_EXPERIMENTS as EXPERIMENTS_DIR
    from yulan.compose import default_at, flatten

    repeated = []
    for path in EXPERIMENTS_DIR.rglob("*.yaml"):
        if path.name == "config.yaml":
            continue
        data = yaml.safe_load(path.read_text()) or {}
        data.pop("defaults", None)
        prefix = "" if path.parent.name == "experiment" else path.parent.name + "."
        for key, value in flatten(data).items():
            default = default_at(prefix + key)
            if default is not None and default == value and not isinstance(value, dict):
                repeated.append(f"{path.name}: {prefix}{key}")
    assert not repeated, repeated
