"""Compose, validate, plan and dispatch a YuLan post-training experiment (`yulan launch`, or `python launch.py`
in a checkout).

    yulan launch experiment=NAME [key=value ...]            run it (launcher=local|slurm)
    yulan launch experiment=NAME dry_run=true              print the plan as JSON; nothing runs or is written
    yulan launch -m experiment=NAME key=a,b other=1,2      sweep: every point is validated before any runs
    yulan launch experiment=NAME --cfg job                 print the settings of the stages it runs (`--cfg all`:
                                                           every section), as `yulan show`; nothing runs
    yulan launch experiment=NAME --info                    the experiment search path and the chosen group files
    yulan launch --experiments DIR experiment=MINE ...     search DIR/experiment/, DIR/model/, ... too (repeatable;
                                                           also $YULAN_EXPERIMENTS, and Hydra's --config-dir/-cd)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from dataclasses import dataclass, field

from yulan.compose import (
    GROUPS,
    ConfigError,
    add_experiment_dirs,
    compose_sweep,
    config_file,
    experiment_names,
    search_path,
    shown,
    sweep_points,
    sweeping,
    validate,
)
from yulan.schema.errors import Problem

CFG_CHOICES = ("job", "all")
DIRECTORY_OPTIONS = ("--experiments", "--config-dir", "-cd")


@dataclass
class Options:
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    cfg: str | None = None  # print the config instead of running: job (the stages it runs) or all
    info: bool = False
    help: bool = False


def parse(args: list[str]) -> Options:
    """Hydra's own command-line habits: -m, --cfg/-c job|all, --info, --config-dir/-cd DIR (here also
    --experiments DIR); everything else is a key=value override."""
    options, position = Options(), 0
    while position < len(args):
        arg = args[position]
        name, has_value, value = arg.partition("=") if arg.startswith("--") else (arg, False, "")
        takes_value = name in (*DIRECTORY_OPTIONS, "--cfg", "-c")
        if takes_value and not has_value:
            if position + 1 >= len(args):
                raise ConfigError(
                    "an option lacks its value",
                    [Problem("argv", f"{name} takes a value", arg, f"write {name} VALUE (see --help)")],
                )
            position += 1
            value = args[position]
        if name in DIRECTORY_OPTIONS:
            add_experiment_dirs([value])
        elif name in ("--cfg", "-c"):
            if value not in CFG_CHOICES:
                raise ConfigError(
                    "unknown --cfg",
                    [
                        Problem(
                            "--cfg",
                            "job prints the settings of the stages the experiment runs, all every section; this "
                            "launcher has no hydra node (runs are placed by run_root and name)",
                            value,
                            f"use --cfg {' or --cfg '.join(CFG_CHOICES)}",
                        )
                    ],
                )
            options.cfg = value
        elif name in ("-m", "--multirun"):
            options.multirun = True
        elif name == "--info":
            options.info = True
        elif name in ("-h", "--help"):
            options.help = True
        elif arg.startswith("-"):
            raise ConfigError(
                "unknown option",
                [
                    Problem(
                        "argv",
                        "takes -m/--multirun, --cfg job|all, --info, --experiments DIR and key=value overrides",
                        arg,
                        "see yulan launch --help",
                    )
                ],
            )
        else:
            options.overrides.append(arg)
        position += 1
    return options


def usage() -> str:
    return __doc__ + "\nexperiments: " + ", ".join(experiment_names()) + "\n"


def info(overrides: list[str]) -> str:
    """What Hydra's --info tells: where configs are searched and which file each group's choice is."""
    from yulan.compose import compose

    composed = compose(overrides)
    lines = ["experiment search path (your trees first; an option name may exist in one tree only):"]
    lines += [f"  {shown(tree)}" for tree in search_path()]
    lines.append("group choices:")
    for group in GROUPS:
        choice = composed.choices[group]
        path = config_file(group, choice)
        lines.append(f"  {group:13} {choice:28} {shown(path) if path else '(none)'}")
    lines.append("overrides:" + ("".join(f"\n  {o}" for o in overrides) if overrides else " (none)"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    # pydantic scans every installed distribution's entry points for plugins when it first validates (a tenth of a
    # cold launch in an environment with the job packages); none is used on settings
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # Composing and validating allocate many short-lived objects and free them without cycles; the cyclic collector
    # would only walk them again (a fifth of a cold launch). It runs again before anything is dispatched.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `launch.py dry_run=true | head` ends quietly
    try:
        options = parse(args)
        if options.help:
            print(usage())
            return 0
        multirun, overrides = options.multirun, options.overrides
        if options.info:
            print(info(overrides), end="")
            return 0
        if not multirun and sweeping(overrides):
            raise ConfigError(
                "a sweep needs -m",
                [
                    Problem(
                        "overrides",
                        "these overrides sweep over several values",
                        sweeping(overrides),
                        "add -m to run every combination",
                    )
                ],
            )
        points = sweep_points(overrides) if multirun else [overrides]
        experiments, composeds, failures = [], [], []
        for index, (point, composed) in enumerate(zip(points, compose_sweep(points))):
            try:
                if isinstance(composed, ConfigError):
                    raise composed
                experiments.append(validate(composed))
                composeds.append(composed)
            except ConfigError as error:
                failures.append(f"sweep point {index} {point}:\n{error}" if multirun else str(error))
        if failures:
            print("\n\n".join(failures), file=sys.stderr)
            if multirun:
                print(
                    f"\n{len(failures)} of {len(points)} sweep points are invalid; nothing was run or submitted.",
                    file=sys.stderr,
                )
            return 1
        if options.cfg:
            from yulan.compose.show import render

            for point, composed, experiment in zip(points, composeds, experiments):
                if multirun:
                    print(f"# sweep point {' '.join(point)}")
                print(render(composed, experiment, everything=options.cfg == "all"), end="")
            return 0
        gc.enable()
        if multirun:  # point i of a sweep lives in <run dir>/<i>
            experiments = [e.model_copy(update={"run_dir": f"{e.output_dir}/{i}"}) for i, e in enumerate(experiments)]
        return dispatch(experiments, points, multirun)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1


def dispatch(experiments: list, points: list[list[str]], multirun: bool) -> int:
    from importlib import import_module

    from yulan.launchers.plan import plan
    from yulan.launchers.preflight import run_dir_problems

    runs = [plan(experiment, point) for experiment, point in zip(experiments, points)]
    kinds = {experiment.launcher.kind for experiment in experiments}
    if len(kinds) > 1:
        raise ConfigError(
            "one launcher per sweep",
            [
                Problem(
                    "launcher.kind",
                    "every sweep point must use the same launcher",
                    sorted(kinds),
                    "do not sweep over launcher",
                )
            ],
        )
    launcher = import_module(f"yulan.launchers.{kinds.pop()}")  # yulan.launchers.local or .slurm: dry_run and launch
    problems = [problem for e, run in zip(experiments, runs) for problem in run_dir_problems(e, run)]
    if problems:  # the dry run refuses what the launch would
        raise ConfigError("unusable run directory; nothing was written or submitted", problems)
    if any(experiment.dry_run for experiment in experiments):
        print(json.dumps({"runs": launcher.dry_run(experiments, runs)}, indent=2))
        return 0
    return launcher.launch(experiments, runs, multirun)
