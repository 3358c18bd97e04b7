"""The whole experiment: every stage's settings, the models, and the rules that relate stages."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import computed_field, model_validator

from yulan.schema.common import STAGES, Resources, StageName, StageRef
from yulan.schema.curation import STEPS, CurationConfig
from yulan.schema.evaluation import EvalConfig
from yulan.schema.fields import Section, chosen, paper, path_problem, rule_error
from yulan.schema.generation import GenerationConfig
from yulan.schema.infra import ClusterProfile, LauncherConfig, TrackingConfig
from yulan.schema.models import POLICY_FIELD, REWARD_FIELD, ModelSpec
from yulan.schema.ppo import PPOConfig
from yulan.schema.preference import PreferenceConfig
from yulan.schema.training import DPOConfig, SFTConfig, steps_per_epoch, total_steps

# Where each stage writes the artifact later stages read, relative to the stage's directory.
MAX_NAME_BYTES = 200  # a directory name (255 at most) with room for the suffixes of job and file names
STAGE_OUTPUT = {
    "curation": "data/sft.jsonl",
    "sft": "model",
    "preference": "data/pairs.jsonl",
    "dpo": "model",
    "ppo": "model",
    "eval": "results",
}


def stage_output(run_dir: str, stage: str) -> str:
    return f"{run_dir}/{stage}/{STAGE_OUTPUT[stage]}"


def ppo_prompt_file(job_dir: str) -> str:
    """Where the PPO job's prompt selection leaves the prompts that either engine trains on."""
    return f"{job_dir}/data/prompts.jsonl"


class Experiment(Section):
    name: str = chosen("experiment", description="Experiment name; launch.py sets it to the chosen experiment file.")
    stages: tuple[StageName, ...] = paper(
        STAGES,
        where="§3-§6: curation, SFT, preference data, DPO, PPO, evaluation",
        description="Stages to run, in pipeline order.",
    )
    seed: int = chosen(42, ge=0, description="Seed for data order, sampling and initialisation.")
    run_root: str = chosen("runs", description="Directory that holds run directories.")
    run_dir: str | None = chosen(
        None, description="This run's directory; None = {run_root}/{name} ({run_root}/{name}/{i} for sweep point i)."
    )
    dry_run: bool = chosen(False, description="Print the plan as JSON instead of running or submitting anything.")
    openrlhf_version: Literal["0.11.2"] = chosen(
        "0.11.2", description="OpenRLHF release the command lines are written for."
    )
    model: ModelSpec = POLICY_FIELD
    reward_model: ModelSpec = REWARD_FIELD
    curation: CurationConfig = paper(default_factory=CurationConfig, where="§3 data", description="SFT data curation.")
    sft: SFTConfig = paper(default_factory=SFTConfig, where="§3 recipe", description="Supervised fine-tuning.")
    preference: PreferenceConfig = paper(
        default_factory=PreferenceConfig, where="§4 preference data", description="Preference pairs."
    )
    dpo: DPOConfig = paper(default_factory=DPOConfig, where="§4 recipe", description="Direct preference optimisation.")
    ppo: PPOConfig = paper(default_factory=PPOConfig, where="§5", description="Proximal policy optimisation.")
    eval: EvalConfig = paper(default_factory=EvalConfig, where="§6", description="Benchmarks.")
    generation: GenerationConfig = chosen(
        default_factory=GenerationConfig, description="How every generating stage samples (vLLM or transformers)."
    )
    cluster: ClusterProfile = chosen(default_factory=ClusterProfile, description="Where jobs run (group `cluster/`).")
    launcher: LauncherConfig = chosen(
        default_factory=LauncherConfig, description="How jobs are started (group `launcher/`)."
    )
    tracking: TrackingConfig = chosen(default_factory=TrackingConfig, description="Experiment tracking.")

    # -- stage wiring ---------------------------------------------------------------------------------
    def stage_inputs(self, stage: str) -> dict[str, StageRef]:
        """What each stage reads, as stage references (field path -> reference)."""
        return {
            "curation": {},
            "sft": {"sft.init_from": self.sft.init_from, "sft.data": self.sft.data},
            "preference": {"preference.policy": self.preference.policy},
            "dpo": {"dpo.init_from": self.dpo.init_from, "dpo.data": self.dpo.data},
            "ppo": {"ppo.actor.init_from": self.ppo.actor.init_from, "ppo.prompts.source": self.ppo.prompts.source},
            "eval": {f"eval.checkpoints.{i}": ref for i, ref in enumerate(self.eval.checkpoints)},
        }[stage]

    def resolve(self, ref: StageRef) -> str:
        """A stage reference as a path or hub id."""
        if ref == "base":
            return self.model.name_or_path
        if ref in STAGES:
            return stage_output(self.output_dir, ref)
        return ref

    def stage_resources(self, stage: str) -> list[tuple[str, Resources]]:
        if stage == "curation":
            runs_models = bool(self.curation.sources.synthesis) or any(STEPS[s].model for s in self.curation.steps)
            jobs = [("curation.resources", self.curation.resources)]
            return jobs + ([("curation.model_resources", self.curation.model_resources)] if runs_models else [])
        return [(f"{stage}.resources", getattr(self, stage).resources)]

    @computed_field(description="This run's directory.")  # type: ignore[prop-decorator]
    @property
    def output_dir(self) -> str:
        return self.run_dir or f"{self.run_root}/{self.name}"

    @computed_field(description="Quantities that follow from several stages' settings.")  # type: ignore[prop-decorator]
    @property
    def derived(self) -> dict[str, dict[str, Any]]:
        sft_samples = self.curation.mix.total if self.sft.data == "curation" else None
        dpo_pairs = self.preference.total if self.dpo.data == "preference" else None
        out: dict[str, dict[str, Any]] = {}
        for stage, samples, config in (("sft", sft_samples, self.sft), ("dpo", dpo_pairs, self.dpo)):
            out[stage] = {
                "train_samples": samples,
                "optimizer_steps_per_epoch": steps_per_epoch(samples, config.global_batch_size) if samples else None,
                "total_optimizer_steps": total_steps(samples, config) if samples or config.max_steps else None,
            }
        out["ppo"] = {
            "first_actor_update_at_rollout": self.ppo.frozen_rollouts + 1,
            "total_actor_optimizer_steps": max(self.ppo.total_rollouts - self.ppo.frozen_rollouts, 0)
            * self.ppo.optimizer_steps_per_rollout,
        }
        return out

    # -- rules that relate stages ---------------------------------------------------------------------
    @model_validator(mode="after")
    def _name_is_one_directory(self) -> Experiment:
        if not self.name or self.name in (".", "..") or "/" in self.name or "\\" in self.name:
            raise rule_error(
                "name",
                self.name,
                "names one directory under run_root: not empty, no '/', not '.' or '..'",
                "choose a plain name such as name=ppo_kl_sweep (or set run_dir to a path you choose)",
            )
        if len(self.name.encode()) > MAX_NAME_BYTES:
            raise rule_error(
                "name",
                self.name[:40] + "...",
                f"at most {MAX_NAME_BYTES} bytes: it names a directory and the jobs, whose names get suffixes",
                "choose a shorter name",
            )
        for field in ("name", "run_root", "run_dir"):
            value = getattr(self, field)
            problem = path_problem(value) if value is not None else None
            if problem:
                raise rule_error(field, value, problem, f"set {field} to a path without it")
        return self

    @model_validator(mode="after")
    def _pipeline(self) -> Experiment:
        order = [STAGES.index(stage) for stage in self.stages]
        if not self.stages or order != sorted(set(order)):
            raise rule_error(
                "stages",
                list(self.stages),
                f"at least one stage, each once, in pipeline order {list(STAGES)}",
                "list the stages you want in that order",
            )
        for stage in self.stages:
            for field, ref in self.stage_inputs(stage).items():
                if ref in STAGES and (ref not in self.stages or STAGES.index(ref) >= STAGES.index(stage)):
                    raise rule_error(
                        field,
                        ref,
                        f"reads the output of stage '{ref}', which this experiment does not run before '{stage}'",
                        f"add '{ref}' to stages, or point {field} at an existing checkpoint or file "
                        f"(e.g. ${{stage_output:{ref}_yulan,{ref}}})",
                    )
        return self

    @model_validator(mode="after")
    def _lengths_fit_models(self) -> Experiment:
        context = self.model.context_length
        ppo_length = "ppo.prompt_max_length + ppo.generate_max_length"
        checks = [
            ("sft", "sft.max_length", self.sft.max_length, "sft.max_length", context, "model.context_length"),
            ("dpo", "dpo.max_length", self.dpo.max_length, "dpo.max_length", context, "model.context_length"),
            (
                "ppo",
                "ppo.max_sequence_length",
                self.ppo.max_sequence_length,
                ppo_length,
                context,
                "model.context_length",
            ),
            (
                "ppo",
                "ppo.max_sequence_length",
                self.ppo.max_sequence_length,
                ppo_length,
                self.reward_model.context_length,
                "reward_model.context_length",
            ),
        ]
        for stage, field, value, settable, limit, limit_name in checks:
            if stage in self.stages and value > limit:
                raise rule_error(
                    field, value, f"exceeds {limit_name} = {limit}", f"lower {settable} to at most {limit}"
                )
        reward = self.ppo.reward
        if "ppo" in self.stages and reward.server_max_length < self.ppo.max_sequence_length:
            raise rule_error(
                "ppo.reward.server_max_length",
                reward.server_max_length,
                f"the reward server would truncate samples of up to {self.ppo.max_sequence_length} tokens",
                f"set ppo.reward.server_max_length >= {self.ppo.max_sequence_length}",
            )
        return self

    @model_validator(mode="after")
    def _tokenizers(self) -> Experiment:
        if "ppo" not in self.stages or self.reward_model.tokenizer == self.model.tokenizer:
            return self
        mismatch = (
            f"the reward model's tokenizer ({self.reward_model.tokenizer}) differs from the policy's "
            f"({self.model.tokenizer})"
        )
        if self.ppo.uses_critic and self.ppo.critic.init_from == "reward_model":
            raise rule_error(
                "ppo.critic.init_from",
                "reward_model",
                f"{mismatch}; OpenRLHF feeds the actor's token ids to the critic, so a critic built from the reward "
                "model would read them with the wrong embeddings",
                "decide explicitly: ppo.critic.init_from=policy (value head on the policy), or use a reward model that "
                "shares the policy's tokenizer",
            )
        if self.ppo.reward.mode == "local_model":
            raise rule_error(
                "ppo.reward.mode",
                "local_model",
                f"{mismatch}; a local reward model would score the actor's token ids as its own",
                "set ppo.reward.mode=remote_function (re-renders each sample in the reward model's chat template)",
            )
        return self

    @model_validator(mode="after")
    def _health_rules_are_watched(self) -> Experiment:
        if "ppo" in self.stages:
            self.ppo.health.check_engine(self.ppo.engine, self.ppo.health_statistics)
        return self

    @model_validator(mode="after")
    def _resources_fit_cluster(self) -> Experiment:
        cluster = self.cluster
        for stage in self.stages:
            for field, res in self.stage_resources(stage):
                limits = (
                    ("nodes", res.nodes, cluster.nodes, "cluster.nodes"),
                    ("gpus_per_node", res.gpus_per_node, cluster.gpus_per_node, "cluster.gpus_per_node"),
                    ("cpus_per_node", res.cpus_per_node, cluster.cpus_per_node, "cluster.cpus_per_node"),
                    (
                        "time_limit_minutes",
                        res.time_limit_minutes,
                        cluster.max_time_minutes,
                        "cluster.max_time_minutes",
                    ),
                )
                for name, asked, limit, limit_name in limits:
                    if asked > limit:
                        raise rule_error(
                            f"{field}.{name}",
                            asked,
                            f"cluster '{cluster.name}' offers {limit_name} = {limit}",
                            f"lower {field}.{name}, or choose a cluster profile that fits (cluster=...)",
                        )
                if res.partition not in cluster.partitions:
                    raise rule_error(
                        f"{field}.partition",
                        res.partition,
                        f"cluster '{cluster.name}' has no {res.partition} partition",
                        f"add cluster.partitions.{res.partition}",
                    )
        return self

    @model_validator(mode="after")
    def _native_engine_is_one_process(self) -> Experiment:
        for stage in ("sft", "dpo", "ppo"):
            config = getattr(self, stage)
            if stage in self.stages and config.engine == "native":
                if config.resources.nodes != 1 or config.resources.gpus_per_node > 1:
                    raise rule_error(
                        f"{stage}.resources",
                        f"{config.resources.nodes}x{config.resources.gpus_per_node}",
                        "the native engine runs one process on one machine (at most one GPU)",
                        f"set {stage}.resources.nodes=1 and gpus_per_node to 0 or 1, or engine=openrlhf",
                    )
        return self
