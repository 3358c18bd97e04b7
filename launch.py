#!/usr/bin/env python
"""Compose, validate, plan and dispatch a YuLan post-training experiment.

    python launch.py experiment=NAME [key=value ...]            run it (launcher=local|slurm)
    python launch.py experiment=NAME dry_run=true              print the plan as JSON; nothing runs or is written
    python launch.py -m experiment=NAME key=a,b other=1,2      sweep: every point is validated before any runs
"""

from __future__ import annotations

import json
import signal
import sys

from schema.compose import ConfigError, compose_sweep, experiment_names, sweep_points, sweeping, validate
from schema.errors import Problem


def usage() -> str:
    return __doc__ + "\nexperiments: " + ", ".join(experiment_names()) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `launch.py dry_run=true | head` ends quietly
    if {"-h", "--help"} & set(args):
        print(usage())
        return 0
    multirun = bool({"-m", "--multirun"} & set(args))
    overrides = [arg for arg in args if arg not in ("-m", "--multirun")]
    try:
        flags = [arg for arg in overrides if arg.startswith("-")]
        if flags:
            raise ConfigError("unknown option", [Problem("argv", "launch.py takes -m/--multirun and key=value overrides",
                                                         flags, "see python launch.py --help")])
        if not multirun and sweeping(overrides):
            raise ConfigError("a sweep needs -m", [Problem("overrides", "these overrides sweep over several values",
                                                           sweeping(overrides), "add -m to run every combination")])
        points = sweep_points(overrides) if multirun else [overrides]
        experiments, failures = [], []
        for index, (point, composed) in enumerate(zip(points, compose_sweep(points))):
            try:
                if isinstance(composed, ConfigError):
                    raise composed
                experiments.append(validate(composed))
            except ConfigError as error:
                failures.append(f"sweep point {index} {point}:\n{error}" if multirun else str(error))
        if failures:
            print("\n\n".join(failures), file=sys.stderr)
            if multirun:
                print(f"\n{len(failures)} of {len(points)} sweep points are invalid; nothing was run or submitted.",
                      file=sys.stderr)
            return 1
        if multirun:  # point i of a sweep lives in <run dir>/<i>
            experiments = [e.model_copy(update={"run_dir": f"{e.output_dir}/{i}"}) for i, e in enumerate(experiments)]
        return dispatch(experiments, points, multirun)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1


def dispatch(experiments: list, points: list[list[str]], multirun: bool) -> int:
    from importlib import import_module

    from launchers.plan import plan

    runs = [plan(experiment, point) for experiment, point in zip(experiments, points)]
    kinds = {experiment.launcher.kind for experiment in experiments}
    if len(kinds) > 1:
        raise ConfigError("one launcher per sweep", [Problem("launcher.kind", "every sweep point must use the same launcher",
                                                            sorted(kinds), "do not sweep over launcher")])
    launcher = import_module(f"launchers.{kinds.pop()}")  # launchers.local or launchers.slurm: dry_run and launch
    if any(experiment.dry_run for experiment in experiments):
        print(json.dumps({"runs": launcher.dry_run(experiments, runs)}, indent=2))
        return 0
    return launcher.launch(experiments, runs, multirun)


if __name__ == "__main__":
    sys.exit(main())
