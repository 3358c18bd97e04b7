"""Where experiment files are found: the user's trees ($YULAN_EXPERIMENTS, `--experiments DIR`) searched before the
shipped one (`yulan/experiments/`, installed with the package), each holding group folders (`experiment/`, `model/`,
`cluster/`, ...) whose files are the options of those groups. One option name lives in one tree only."""

from __future__ import annotations

import os
from pathlib import Path

from yulan.schema.errors import ConfigError, Problem

SHIPPED_EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SHIPPED_DATA = Path(__file__).resolve().parent.parent / "data"
SEARCH_PATH_VARIABLE = "YULAN_EXPERIMENTS"
GROUPS = ("model", "reward_model", "cluster", "launcher", "experiment")


def add_experiment_dirs(directories: list[str]) -> None:
    """`--experiments DIR`: searched before the trees already in the path (this process and the jobs it starts)."""
    known = os.environ.get(SEARCH_PATH_VARIABLE, "")
    os.environ[SEARCH_PATH_VARIABLE] = os.pathsep.join(
        [*(str(Path(d).resolve()) for d in directories), *filter(None, [known])]
    )


def user_trees() -> list[Path]:
    """The user's experiment trees, in search order; each must exist and hold at least one group folder."""
    trees = []
    for entry in filter(None, os.environ.get(SEARCH_PATH_VARIABLE, "").split(os.pathsep)):
        tree = Path(entry).expanduser().resolve()
        if not tree.is_dir():
            raise ConfigError(
                "an experiment directory does not exist",
                [
                    Problem(
                        SEARCH_PATH_VARIABLE,
                        "every entry must be a directory of experiment trees",
                        entry,
                        "fix the path given to --experiments or in $YULAN_EXPERIMENTS",
                    )
                ],
            )
        if not any((tree / group).is_dir() for group in GROUPS):
            raise ConfigError(
                "an experiment directory holds no group folder",
                [
                    Problem(
                        SEARCH_PATH_VARIABLE,
                        f"a tree holds group folders: {', '.join(f'{g}/' for g in GROUPS)}",
                        entry,
                        f"put experiment files in {entry}/experiment/NAME.yaml (or name the directory above it)",
                    )
                ],
            )
        if tree != SHIPPED_EXPERIMENTS and tree not in trees:
            trees.append(tree)
    return trees


def search_path() -> list[Path]:
    return [*user_trees(), SHIPPED_EXPERIMENTS]


def shown(path: Path) -> str:
    """A config file as messages name it: inside the package for shipped files, else relative to here if below."""
    package_root = SHIPPED_EXPERIMENTS.parent.parent  # yulan/experiments/... shown from the folder above yulan/
    if path.is_relative_to(package_root):
        return str(path.relative_to(package_root))
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def option_files(group: str) -> dict[str, Path]:
    """{option: its file} of a group over the whole search path. An option defined in two trees is refused: which
    one Hydra took would depend on the search order."""
    found: dict[str, Path] = {}
    for tree in search_path():
        for path in sorted((tree / group).glob("*.yaml")):
            if path.stem in found:
                raise ConfigError(
                    f"{group} '{path.stem}' is defined twice",
                    [
                        Problem(
                            f"{group}={path.stem}",
                            "an option name must be unique over the experiment search path",
                            [shown(found[path.stem]), shown(path)],
                            "rename one of the two files",
                        )
                    ],
                )
            found[path.stem] = path
    return found


def options(group: str) -> list[str]:
    return sorted(option_files(group))


def config_file(group: str, option: str) -> Path | None:
    return option_files(group).get(option)


def experiment_names() -> list[str]:
    return options("experiment")


def check_package_header(choice: str) -> None:
    """An experiment file sets top-level keys: without `# @package _global_` Hydra nests it under `experiment`."""
    path = config_file("experiment", choice)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()] if path else []
    if lines and lines[0] != "# @package _global_":
        raise ConfigError(
            "an experiment file lacks its package line",
            [
                Problem(
                    f"{path}:1",
                    "an experiment file must start with '# @package _global_'",
                    lines[0],
                    "add '# @package _global_' as its first line",
                )
            ],
        )
