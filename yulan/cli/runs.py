"""`yulan status DIR`, `yulan cancel DIR`, `yulan resubmit --failed DIR`: what a launch left behind, through the
launcher that made it (a SLURM submission's ledger, or a run or sweep directory run on this machine)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from yulan.launchers import launcher_of
from yulan.runtime.records import skipped_lines


def add_parser(sub) -> None:
    state = sub.add_parser(
        "status",
        help="each stage's state and health alerts: a SLURM submission (its ledger "
        "directory), or a run or sweep directory run on this machine",
    )
    state.add_argument("directory", type=Path)
    state.add_argument("--json", action="store_true")
    stop = sub.add_parser("cancel", help="cancel what a launch still runs or queues (SLURM jobs, a local launch)")
    stop.add_argument("directory", type=Path)
    again = sub.add_parser("resubmit", help="run a launch's failed points again, into their run directories")
    again.add_argument("--failed", action="store_true", required=True, help="the failed points (the only mode)")
    again.add_argument("directory", type=Path)


def with_alerts(points: list[dict], skipped: Counter[str]) -> list[dict]:
    from yulan.rewards.health import read_alerts

    for point in points:
        stages = {stage.split(":")[0] for stage in point["stages"]}
        alerts = {stage: read_alerts(Path(point["run_dir"]) / stage, skipped) for stage in stages}
        point["alerts"] = {stage: found for stage, found in alerts.items() if found}
    return points


def print_status(points: list[dict], states: tuple[str, ...]) -> None:
    for point in points:
        print(f"{point['index']:>4}  {point['state']:8}  {point['run_dir']}  {' '.join(point['overrides'])}")
        for stage, state in point["stages"].items():
            print(f"        {stage:10} {state}")
        for stage, alerts in point["alerts"].items():
            for alert in alerts:
                print(f"        {stage:10} {alert['action'].upper():4}  {alert['message']}")
    counts = {s: sum(p["state"] == s for p in points) for s in states}
    alerts = [a for p in points for stage_alerts in p["alerts"].values() for a in stage_alerts]
    stops = sum(a["action"] == "stop" for a in alerts)
    print(
        "  ".join(f"{k}: {v}" for k, v in counts.items())
        + (f"  health alerts: {len(alerts)} ({stops} stop)" if alerts else "")
    )


def run(args: argparse.Namespace) -> int:
    launcher = launcher_of(args.directory)
    try:
        if args.command == "status":
            skipped: Counter[str] = Counter()
            points = with_alerts(launcher.status(args.directory), skipped)
            if args.json:
                print(json.dumps(points, indent=2))
            else:
                print_status(points, launcher.POINT_STATES)
            if skipped:
                print(f"warning: {skipped_lines(skipped)}", file=sys.stderr)
        elif args.command == "cancel":
            cancelled = launcher.cancel(args.directory)
            print(f"cancelled {len(cancelled)} jobs: {' '.join(cancelled)}" if cancelled else "nothing left to cancel")
        else:
            indices = launcher.resubmit(args.directory)
            print(f"resubmitted points {indices}" if indices else "no failed point")
    except (FileNotFoundError, ChildProcessError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
