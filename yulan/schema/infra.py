"""Where and how jobs run: the cluster profile, the launcher and experiment tracking."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import model_validator

from yulan.schema.fields import Section, chosen, paper, rule_error

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SLURM_NAME = re.compile(r"[^\s\x00-\x1f\x7f]+")


class ClusterProfile(Section):
    """A site: its partitions, limits and the lines every job runs first. Default: the report's cluster."""

    name: str = chosen("yulan_h800", description="Profile name, recorded in run manifests.")
    partitions: dict[Literal["gpu", "cpu"], str] = chosen(
        default_factory=lambda: {"gpu": "gpu", "cpu": "cpu"}, description="SLURM partition for GPU and for CPU jobs."
    )
    account: str | None = chosen(None, description="SLURM account (--account).")
    qos: str | None = chosen(None, description="SLURM quality of service (--qos).")
    nodes: int = paper(4, ge=1, where="§3 training settings: '4 nodes'", description="Nodes one job may use.")
    gpus_per_node: int = paper(8, ge=0, where="§3 training settings: '8xH800 GPUs'", description="GPUs per node.")
    gpu_type: str = paper("H800", where="§3 training settings", description="GPU model.")
    cpus_per_node: int = chosen(128, ge=1, description="CPU cores per node.")
    max_time_minutes: int = chosen(7 * 24 * 60, ge=1, description="Partition time limit.", unit="minutes")
    setup: tuple[str, ...] = chosen(
        (), description="Shell lines run before every job (modules, environment activation)."
    )
    env: dict[str, str] = chosen(
        default_factory=dict, description="Environment variables for every job (never secrets)."
    )

    @model_validator(mode="after")
    def _slurm_names(self) -> ClusterProfile:
        named: dict[str, str | None] = {f"partitions.{kind}": name for kind, name in self.partitions.items()}
        named |= {"account": self.account, "qos": self.qos}
        for field, value in named.items():
            if value is not None and not SLURM_NAME.fullmatch(value):
                raise rule_error(
                    field,
                    value,
                    "a SLURM name: one word of printable characters (it becomes an #SBATCH line)",
                    "write the name as `sinfo` or `sacctmgr` shows it",
                )
        return self

    @model_validator(mode="after")
    def _no_secrets(self) -> ClusterProfile:
        for name in self.env:
            if not ENV_NAME.fullmatch(name):
                raise rule_error(
                    f"env.{name}",
                    name,
                    "an environment variable's name is letters, digits and _, not starting with a digit",
                    "rename it, e.g. MY_SETTING",
                )
            if SECRET_NAME.search(name):
                raise rule_error(
                    f"env.{name}",
                    "<redacted>",
                    "secrets are never written into configs, manifests or scripts",
                    f"export {name} in the shell you launch from; jobs inherit it",
                )
        return self


class LauncherConfig(Section):
    kind: Literal["local", "slurm"] = chosen(
        "local", description="local: run on this machine; slurm: submit with submitit."
    )
    array_parallelism: int = chosen(
        16, ge=1, description="Sweep points of one stage running at once (%N of the job array)."
    )
    refuse_dirty_tree: bool = chosen(False, description="Refuse to launch from a git tree with uncommitted changes.")
    on_existing_run: Literal["refuse", "resume"] = chosen(
        "refuse", description="What re-launching into an existing run directory does; never overwrite."
    )
    snapshot_include: tuple[str, ...] = chosen(
        (),
        description="Untracked files (paths relative to the checkout) that SLURM jobs need: the code snapshot "
        "holds what git tracks and these, never other untracked files such as .env.",
    )


class TrackingConfig(Section):
    backend: Literal["wandb", "none"] = chosen("wandb", description="Metric tracker.")
    project: str = chosen("yulan-mini-post-training", description="wandb project.")
    entity: str | None = chosen(None, description="wandb entity (team).")
    mode: Literal["offline", "online", "disabled"] = chosen(
        "offline", description="Compute nodes often have no internet: log offline and `wandb sync` later."
    )
    group: str | None = chosen(None, description="wandb group; None = the experiment name.")
    tags: tuple[str, ...] = chosen((), description="wandb tags.")
