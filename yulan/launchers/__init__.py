"""Launchers carry a plan out: `local` (this machine, in order, in the foreground) and `slurm` (submitit, one job or
job array per stage, chained with afterok). Each is a module that offers the Launcher protocol; `launcher.kind`
names the module, and a directory a launch left behind names its own (a SLURM submission leaves a ledger)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from yulan.launchers.ledger import LEDGER

if TYPE_CHECKING:
    from yulan.launchers.plan import Run
    from yulan.schema.experiment import Experiment

# launcher.kind -> the module that carries it out
LAUNCHERS = {"local": "yulan.launchers.local", "slurm": "yulan.launchers.slurm"}


class Launcher(Protocol):
    POINT_STATES: tuple[str, ...]  # what `status` says of a point, in the order a summary counts them

    def dry_run(self, experiments: list[Experiment], runs: list[Run]) -> list[dict[str, Any]]:
        """The plans as JSON data, as this launcher would carry them out (sbatch scripts for SLURM); nothing runs."""
        ...

    def launch(self, experiments: list[Experiment], runs: list[Run], multirun: bool) -> int:
        """Every check first, then the run directories, then the jobs; an exit status."""
        ...

    def status(self, directory: Path) -> list[dict[str, Any]]:
        """One entry per point: index, state, {stage: state}, overrides, run_dir."""
        ...

    def cancel(self, directory: Path) -> list[str]:
        """Stop what still runs or waits; what was stopped (job ids, processes)."""
        ...

    def resubmit(self, directory: Path) -> list[int]:
        """The points that failed or stopped, again into their run directories (finished stages are skipped, a
        stopped one resumes from its checkpoint); their indices."""
        ...


def launcher(kind: str) -> Launcher:
    return cast(Launcher, import_module(LAUNCHERS[kind]))


def launcher_of(directory: Path) -> Launcher:
    """The launcher that made a directory: a ledger (or the ledger file itself) is a SLURM submission; anything else
    is a run, or a sweep of runs, on this machine."""
    submitted = (directory / LEDGER).is_file() or directory.name == LEDGER
    return launcher("slurm" if submitted else "local")
