"""`yulan`: launch, inspect, validate, compare and monitor experiments; curate, score and report.

Experiments
    yulan launch [-m] [experiment=NAME overrides...]        compose, validate, plan, then run or submit (as launch.py;
                                                         --cfg job|all, --info, dry_run=true plan without running)
    yulan show [experiment=NAME overrides...] [--all] [--json] [--sources]
                                                         the settings of the stages it runs (--all: every section)
    yulan validate [experiment=NAME overrides... | --all | FILE...]
    yulan diff [overrides A...] -- [overrides B...]        typed differences of effective values
    yulan diff --paper [experiment=NAME overrides...]      what differs from the report's recipe
    yulan schema [--output FILE]                           JSON Schema of experiment YAML files
    (show, validate, diff, launch and reward take --experiments DIR: your experiment tree, searched before the
    shipped one; or set $YULAN_EXPERIMENTS)

Runs (these act on the scheduler)
    yulan status DIR                                       stages and health alerts of a run, sweep or submission
    yulan cancel DIR                                       cancel what a launch still runs or queues
    yulan resubmit --failed DIR                            resubmit its failed points into their run directories
    yulan report DIR                                       DIR/report.html: one page with curves, funnels, tables

Data and scoring (these write their outputs)
    yulan curate STEP --input IN --output OUT [key=value]   one curation step (dedup, decontaminate, heuristics,
                                                         judge, complexity, mix, ppo_prompts) on a JSONL or Parquet file
    yulan eval score --benchmark NAME --samples FILE       a benchmark's metrics from a file of completions
    yulan eval compare A B                                 two runs' evaluation tables side by side
    yulan reward score --samples FILE [overrides...]       the PPO reward of each sample, rule by rule
"""

from __future__ import annotations

import argparse
import signal
import sys
from importlib import import_module
from types import ModuleType

from yulan.runtime.records import RecordError
from yulan.schema.errors import ConfigError

# subcommand -> its module in yulan.cli (add_parser(sub) and run(args)), imported when the `yulan` command runs, so
# that `python launch.py` loads only yulan.cli.launch, which parses its own arguments
COMMANDS = {
    "show": "show",
    "validate": "validate",
    "diff": "diff",
    "schema": "schema",
    "curate": "curate",
    "eval": "evaluate",
    "reward": "reward",
    "report": "report",
    "status": "runs",
    "cancel": "runs",
    "resubmit": "runs",
}


def command(name: str) -> ModuleType:
    return import_module(f"yulan.cli.{COMMANDS[name]}")


LOGGED = ("curate", "eval", "reward")  # long work logs its progress


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="yulan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", required=True)
    for name in dict.fromkeys(COMMANDS.values()):
        import_module(f"yulan.cli.{name}").add_parser(sub)
    sub.add_parser("launch", help="compose, validate, plan, then run or submit (yulan launch --help)", add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a command, not a call from Python (whose process must keep its own SIGPIPE handling)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `yulan show | head` ends quietly
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["launch"]:  # overrides and Hydra's flags, parsed as launch.py parses them
        from yulan.cli.launch import main as launch

        return launch(argv[1:])
    top = parser()
    args, rest = top.parse_known_args(argv)
    if args.command == "curate":  # key=value settings may follow the options
        args.settings += rest
    elif rest:
        top.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "diff":
        args.overrides = command("diff").overrides_of(argv)
    if args.command in LOGGED:
        from yulan.runtime.joblog import configure_logging

        configure_logging()
    try:
        from yulan.compose import add_experiment_dirs

        add_experiment_dirs(getattr(args, "experiments", []))
        return int(command(args.command).run(args))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    except RecordError as error:  # a file that cannot be read or written: named, with the fix
        print(f"error: {error}", file=sys.stderr)
        return 1
