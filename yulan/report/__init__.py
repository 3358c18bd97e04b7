"""`yulan report DIR`: one self-contained page, `DIR/report.html`, for a run directory (what exists so far, while it
runs too) or a sweep directory (its points side by side, the best marked): the experiment and how it differs from
the report's recipe, every stage's state, time, job ids and throughput, training curves with the health alerts
marked, the curation funnel and category mix, and the evaluation table beside the report's numbers. Plots are
inline PNGs (matplotlib): the page needs no network and no other file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from yulan.compose import paper_differences
from yulan.launchers.ledger import ledger_jobs
from yulan.launchers.manifest import is_run, planned_stages, run_dirs, text_list
from yulan.rewards.health import read_alerts
from yulan.runtime.lifecycle import done_marker, stage_state, started_marker
from yulan.runtime.records import (
    Target,
    number,
    output_target,
    read_json_object,
    read_log,
    skipped_lines,
    write_text,
)
from yulan.schema.experiment import Experiment
from yulan.schema.health import PENALTY_RULES, key

PAGE = "report.html"
# Per stage: (chart title, metrics drawn on it); a chart is drawn when one of its metrics was logged.
CURVES: dict[str, list[tuple[str, list[str]]]] = {
    "sft": [
        ("loss", ["sft/loss"]),
        ("learning rate", ["sft/lr"]),
        ("gradient norm", ["sft/grad_norm"]),
        ("tokens/s", ["sft/tokens_per_s"]),
    ],
    "dpo": [
        ("loss", ["dpo/loss"]),
        ("reward margin", ["dpo/reward_margin"]),
        ("accuracy", ["dpo/accuracy"]),
        ("learning rate", ["dpo/lr"]),
    ],
    "ppo": [
        ("reward", ["ppo/reward", key("reward_mean"), key("rm_score_mean")]),
        (
            "response length (tokens)",
            [key("response_length_mean"), key("response_length_p10"), key("response_length_p90")],
        ),
        ("length against its early level", [key("response_length_vs_early")]),
        (
            "penalty and hacking rates",
            [key(f"penalty_rate/{rule}") for rule in PENALTY_RULES]
            + [key("generic_phrase_rate"), key("duplicate_share")],
        ),
        ("KL", ["ppo/kl"]),
        ("KL coefficient β", ["ppo/kl_coef"]),
        ("losses", ["ppo/policy_loss", "ppo/value_loss", "ppo/kl_loss"]),
        ("entropy", [key("entropy")]),
        ("learning rate", ["ppo/actor_lr", "ppo/critic_lr"]),
    ],
}
THROUGHPUT = {"sft": "sft/tokens_per_s", "dpo": "dpo/tokens_per_s", "ppo": "ppo/tokens_per_s"}
# What "best" means in a sweep without an evaluation table: the last stage's headline metric.
# (metric, higher is better)
HEADLINE = {"ppo": ("ppo/reward", True), "dpo": ("dpo/loss", False), "sft": ("sft/loss", False)}
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .6em 0; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.done { color: #1a7f37; } .started { color: #9a6700; } .stop { color: #cf222e; font-weight: 600; }
.warn { color: #9a6700; }
.best { background: #fff8c5; } img { max-width: 100%; display: block; margin: .5em 0; } .muted { color: #777; }
code { background: #f4f4f4; padding: 0 .25em; }
"""


def has_step(row: dict) -> bool:
    return number(row.get("step")) is not None


def dicts(value: Any) -> dict[str, dict]:
    """The entries of a mapping read from a file whose values are objects (curation steps, categories)."""
    return {str(k): v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class RunView:
    """What a run directory holds, read once, tolerating what is missing (a run in progress) and what cannot be used
    (a corrupt or foreign line is skipped and counted in `skipped`, per file)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.skipped: Counter[str] = Counter()
        self.config = read_json_object(directory / "config.json")
        self.invalid = ""
        try:
            self.experiment: Experiment | None = Experiment.model_validate(self.config)
        except ValueError as error:  # written by another version of the schema
            self.experiment, self.invalid = None, str(error).splitlines()[0]
        self.manifest = read_json_object(directory / "manifest.json")
        plan = read_json_object(directory / "plan.json")
        self.stages = planned_stages(plan, self.config)
        jobs = plan.get("jobs") if isinstance(plan.get("jobs"), list) else []
        self.engines = {job.get("stage"): text(job.get("engine")) for job in jobs if isinstance(job, dict)}
        self.metrics = {
            stage: read_log(directory / stage / "metrics.jsonl", has_step, self.skipped) for stage in self.stages
        }
        self.alerts = {stage: read_alerts(directory / stage, self.skipped) for stage in self.stages}
        self.job_ids = ledger_jobs(directory)
        self.curation_steps = dicts(read_json_object(directory / "curation" / "report.json").get("steps"))

    @property
    def name(self) -> str:
        return text(self.manifest.get("experiment")) or text(self.config.get("name")) or self.directory.name

    def state(self, stage: str) -> str:
        return stage_state(self.directory / stage)

    def seconds(self, stage: str) -> float | None:
        """Wall time of the stage's last attempt: from its STARTED marker to its DONE marker (to now while it runs)."""
        started, done = started_marker(self.directory / stage), done_marker(self.directory / stage)
        if not started.exists():
            return None
        end = done.stat().st_mtime if done.exists() else time.time()
        return max(end - started.stat().st_mtime, 0.0)

    def throughput(self, stage: str) -> str:
        rows = self.metrics.get(stage, [])
        values = [v for row in rows if (v := number(row.get(THROUGHPUT.get(stage, "")))) is not None]
        if values:
            return f"{sum(values) / len(values):,.0f} tokens/s"
        if stage == "curation":
            seconds = self.seconds(stage)
            first = number(next(iter(self.curation_steps.values()), {}).get("input"))
            if first and seconds:
                return f"{first / seconds:,.0f} samples/s"
        return ""

    def eval_rows(self) -> list[dict]:
        rows = read_json_object(self.directory / "eval" / "results" / "table.json").get("rows")
        return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []

    def checkpoint_columns(self) -> list[str]:
        rows = self.eval_rows()
        published = {
            "benchmark",
            "title",
            "skill",
            "YuLan-Mini-Instruct",
            "Llama3.2-3B-Instruct",
            "Qwen-2.5-1.5B-Instruct",
        }
        return [column for column in rows[0] if column not in published] if rows else []

    def headline(self) -> tuple[str, float, bool] | None:
        """(name, value, higher is better): the evaluation average of the last checkpoint, else the last trained
        stage's headline metric at its last step."""
        columns = self.checkpoint_columns()
        if columns:
            scores = [s for row in self.eval_rows() if (s := number(row.get(columns[-1]))) is not None]
            if scores:
                return f"eval mean ({columns[-1]})", sum(scores) / len(scores), True
        for stage in ("ppo", "dpo", "sft"):
            name, higher = HEADLINE[stage]
            values = [v for row in self.metrics.get(stage, []) if (v := number(row.get(name))) is not None]
            if values:
                return name, values[-1], higher
        return None


# -- plots --------------------------------------------------------------------------------------------------
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def image(source: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{source}">'


def literal(label: str) -> str:
    """A name read from a run, drawn as written: matplotlib reads $...$ as mathematics, and fails on bad TeX."""
    return label.replace("$", r"\$")


def mark_alerts(axes, alerts: list[dict], labelled: bool = False) -> None:
    """A dashed line at each alert's rollout: red for stop, amber for warn; named in the legend unless `labelled`."""
    named = set()
    for alert in sorted(alerts, key=lambda a: a.get("action") == "stop"):  # stops drawn last, on top
        colour = "#cf222e" if alert["action"] == "stop" else "#d4a72c"
        label = literal(f"alert: {alert['rule']}")
        axes.axvline(
            alert["rollout"],
            color=colour,
            linestyle="--",
            linewidth=1,
            label=None if labelled or label in named else label,
        )
        named.add(label)


def stage_curves(stage: str, rows: list[dict], alerts: list[dict]) -> str | None:
    """The stage's charts in one grid; None when nothing was logged."""
    charts = [
        (title, [m for m in names if any(number(row.get(m)) is not None for row in rows)])
        for title, names in CURVES.get(stage, [])
    ]
    charts = [(title, names) for title, names in charts if names]
    if not charts:
        return None
    plt = pyplot()
    columns = min(len(charts), 3)
    figure, axes_grid = plt.subplots(
        math.ceil(len(charts) / columns),
        columns,
        squeeze=False,
        figsize=(4.2 * columns, 2.9 * math.ceil(len(charts) / columns)),
    )
    for axes, (title, names) in zip(axes_grid.flat, charts):
        for name in names:
            points = [(row["step"], row[name]) for row in rows if number(row.get(name)) is not None]
            axes.plot(
                *zip(*points), marker="." if len(points) < 30 else None, linewidth=1.3, label=name.split("/", 1)[1]
            )
        if stage == "ppo":
            mark_alerts(axes, alerts, labelled=axes is not axes_grid.flat[0])
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("rollout" if stage == "ppo" else "step", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        if len(names) > 1 or (stage == "ppo" and alerts and axes is axes_grid.flat[0]):
            axes.legend(fontsize=6)
    for axes in list(axes_grid.flat)[len(charts) :]:
        axes.set_visible(False)
    figure.tight_layout()
    return png(figure)


def funnel_chart(steps: dict[str, dict]) -> str | None:
    rows = [
        (name, number(step.get("input")), number(step.get("kept")))
        for name, step in steps.items()
        if number(step.get("input")) is not None and number(step.get("kept")) is not None
    ]
    if not rows:
        return None
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    positions = range(len(rows))[::-1]
    axes.barh(positions, [r[1] for r in rows], color="#d0d7de", label="in")
    axes.barh(positions, [r[2] for r in rows], color="#2f81f7", label="kept")
    axes.set_yticks(list(positions), [literal(r[0]) for r in rows], fontsize=8)
    axes.set_xlabel("samples", fontsize=8)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return png(figure)


def sweep_curves(views: list[RunView], best: int | None) -> str | None:
    """One chart per headline metric, a line per point."""
    names = [
        name
        for name in ("sft/loss", "dpo/loss", "ppo/reward", key("response_length_mean"))
        if any(number(row.get(name)) is not None for view in views for rows in view.metrics.values() for row in rows)
    ]
    if not names:
        return None
    plt = pyplot()
    figure, axes_row = plt.subplots(1, len(names), squeeze=False, figsize=(4.2 * len(names), 3))
    for axes, name in zip(axes_row[0], names):
        stage = name.split("/")[0] if not name.startswith("health/") else "ppo"
        for index, view in enumerate(views):
            points = [
                (row["step"], row[name]) for row in view.metrics.get(stage, []) if number(row.get(name)) is not None
            ]
            if points:
                axes.plot(
                    *zip(*points),
                    linewidth=2.6 if index == best else 1.1,
                    label=literal(f"point {view.directory.name}") + (" (best)" if index == best else ""),
                )
        axes.set_title(name, fontsize=10)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6)
    figure.tight_layout()
    return png(figure)


# -- page sections -------------------------------------------------------------------------------------------
def table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f'<td class="num">{value:.4g}</td>'
        if isinstance(value, int) and not isinstance(value, bool):
            return f'<td class="num">{value}</td>'
        return f"<td>{value if isinstance(value, Markup) else html.escape('' if value is None else str(value))}</td>"

    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        f'<tr class="{(row_class or [""] * len(rows))[i]}">' + "".join(map(cell, row)) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table>{head}{body}</table>"


class Markup(str):
    """Text already escaped."""


def classed(css_class: str, content: str) -> Markup:
    """Text in a span whose class is a value read from a run (escaped in the attribute as in the text)."""
    return Markup(f'<span class="{html.escape(css_class)}">{html.escape(content)}</span>')


def skipped_note(skipped: Counter[str]) -> str:
    return f"<p class='warn'>{html.escape(skipped_lines(skipped).capitalize())}.</p>" if skipped else ""


def run_sections(view: RunView, level: int = 2) -> list[str]:
    h = f"h{level}"
    parts = [skipped_note(view.skipped)]
    git = view.manifest.get("git") if isinstance(view.manifest.get("git"), dict) else {}
    facts = [
        ["run directory", str(view.directory)],
        ["created", text(view.manifest.get("created"))],
        ["overrides", " ".join(text_list(view.manifest.get("overrides")))],
        ["code", f"{text(git.get('commit')) or 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}"],
        ["host", text(view.manifest.get("host"))],
    ]
    parts.append(table([], [row for row in facts if row[1]]))
    parts.append(f"<{h}>Stages</{h}>")
    rows = []
    for stage in view.stages:
        seconds = view.seconds(stage)
        jobs = ", ".join(job for name, job in view.job_ids.items() if name.split(":")[0] == stage)
        alerts = view.alerts.get(stage, [])
        stops = sum(a.get("action") == "stop" for a in alerts)
        rows.append(
            [
                stage,
                view.engines.get(stage) or "",
                classed(view.state(stage).split()[0], view.state(stage)),
                "" if seconds is None else f"{seconds:,.0f} s",
                jobs,
                view.throughput(stage),
                classed(
                    "stop" if stops else "warn" if alerts else "",
                    f"{len(alerts)}" + (f" ({stops} stop)" if stops else ""),
                ),
            ]
        )
    parts.append(table(["stage", "engine", "state", "time", "job ids", "throughput", "health alerts"], rows))
    for stage in view.stages:
        alerts = view.alerts.get(stage, [])
        if alerts:
            parts.append(f"<{h}>Health alerts: {html.escape(stage)}</{h}>")
            parts.append(
                table(
                    ["rollout", "rule", "action", "message"],
                    [
                        [
                            a.get("rollout"),
                            a.get("rule"),
                            classed(a["action"], a["action"]),
                            a.get("message"),
                        ]
                        for a in alerts
                    ],
                )
            )
    for stage in view.stages:
        curves = stage_curves(stage, view.metrics.get(stage, []), view.alerts.get(stage, []))
        if curves:
            parts.append(
                f"<{h}>Training curves: {html.escape(stage)}</{h}>" + image(curves, f"{stage} training curves")
            )
    parts += curation_section(view, h)
    parts += eval_section(view, h)
    parts += paper_section(view, h)
    return parts


def paper_section(view: RunView, h: str) -> list[str]:
    if view.experiment is None:
        return [
            f"<p class='muted'>config.json does not validate with this version ({html.escape(view.invalid)}): "
            "its differences from the report are not shown.</p>"
        ]
    differences = paper_differences(view.experiment)
    rows = table(
        ["setting", "report", "this run", "where the report states it"],
        [[d["path"], json.dumps(d["report"]), json.dumps(d["value"]), d["where"]] for d in differences],
    )
    opened = " open" if len(differences) <= 12 else ""
    return [
        f"<details{opened}><summary><{h} style='display:inline'>Differences from the report's recipe "
        f"({len(differences)})</{h}></summary>{rows if differences else ''}</details>"
    ]


def curation_section(view: RunView, h: str) -> list[str]:
    steps = view.curation_steps
    if not steps:
        return []
    parts = [f"<{h}>Curation</{h}>"]
    funnel = funnel_chart(steps)
    if funnel:
        parts.append(image(funnel, "curation funnel: samples in and kept per step"))
    parts.append(
        table(
            ["step", "in", "kept", "dropped (reason: count)"],
            [
                [
                    name,
                    step.get("input"),
                    step.get("kept"),
                    ", ".join(f"{reason}: {count}" for reason, count in items_of(step.get("dropped"))),
                ]
                for name, step in steps.items()
            ],
        )
    )
    mix = dicts(steps.get("mix", {}).get("by_category"))
    if mix:
        parts.append("<p>Category mix against its targets</p>")
        parts.append(
            table(
                ["category", "target", "selected", "available", "target share", "share", "short by"],
                [
                    [
                        name,
                        c.get("target"),
                        c.get("selected"),
                        c.get("available"),
                        c.get("target_ratio"),
                        c.get("ratio"),
                        c.get("short_by"),
                    ]
                    for name, c in mix.items()
                ],
            )
        )
    return parts


def items_of(value: Any) -> list[tuple[str, Any]]:
    return list(value.items()) if isinstance(value, dict) else []


def eval_section(view: RunView, h: str) -> list[str]:
    rows = view.eval_rows()
    if not rows:
        return []
    columns = [c for c in rows[0] if c not in ("benchmark", "skill")]
    parts = [
        f"<{h}>Evaluation (beside the report's numbers)</{h}>",
        table(columns, [[row.get(c) for c in columns] for row in rows]),
    ]
    chart = view.directory / "eval" / "results" / "table.png"
    if chart.is_file():
        parts.append(
            image("data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode(), "evaluation table")
        )
    return parts


def sweep_sections(directory: Path, views: list[RunView]) -> list[str]:
    headlines = [view.headline() for view in views]
    scored = [(i, h) for i, h in enumerate(headlines) if h is not None]
    best = None
    if scored:  # the points measured by the first point's headline compete
        name, _, higher = scored[0][1]
        best = max(
            (item for item in scored if item[1][0] == name), key=lambda item: item[1][1] if higher else -item[1][1]
        )[0]
    overrides = [text_list(view.manifest.get("overrides")) for view in views]
    shared = set.intersection(*(set(o) for o in overrides)) if overrides else set()
    rows, classes = [], []
    for index, view in enumerate(views):
        headline = headlines[index]
        states = ", ".join(f"{stage}: {view.state(stage)}" for stage in view.stages)
        alerts = sum(len(a) for a in view.alerts.values())
        rows.append(
            [
                Markup(
                    f'<a href="#point-{html.escape(view.directory.name)}">{html.escape(view.directory.name)}</a>'
                    + (" ★" if index == best else "")
                ),
                " ".join(o for o in overrides[index] if o not in shared),
                states,
                alerts,
                "" if headline is None else f"{headline[0]} = {headline[1]:.4g}",
            ]
        )
        classes.append("best" if index == best else "")
    parts = [
        table(["point", "overrides", "stages", "health alerts", "headline"], rows, classes),
        f"<p class='muted'>Shared by every point: <code>{html.escape(' '.join(sorted(shared)))}</code>"
        + (" · ★ best by the headline" if best is not None else "")
        + "</p>",
    ]
    curves = sweep_curves(views, best)
    if curves:
        parts.append("<h2>Curves side by side</h2>" + image(curves, "sweep curves, a line per point"))
    for view in views:
        parts.append(f'<h2 id="point-{html.escape(view.directory.name)}">Point {html.escape(view.directory.name)}</h2>')
        parts += run_sections(view, level=3)
    return parts


def runs_in(directory: Path) -> Path:
    """`directory`, resolved, when it is a run or a sweep directory; FileNotFoundError saying what it is not."""
    directory = Path(os.path.realpath(directory))  # (a symlink loop resolves to itself, and is no run)
    if not run_dirs(directory):
        raise FileNotFoundError(
            f"{directory} is neither a run directory (config.json) nor a sweep directory "
            "(point directories with config.json)"
        )
    return directory


def render(directory: Path) -> tuple[str, Counter[str]]:
    """The page of a run or sweep directory (as `runs_in` gives it), and the lines of its files it skipped."""
    if is_run(directory):
        view = RunView(directory)
        title = f"{view.name}: run report"
        body, views = run_sections(view), [view]
    else:
        views = [RunView(point) for point in run_dirs(directory)]
        title = f"{views[0].name}: sweep report ({len(views)} points)"
        body = sweep_sections(directory, views)
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n"
    )
    return page, sum((view.skipped for view in views), Counter())


def write(directory: Path, output: Path | None = None) -> tuple[Target, Counter[str]]:
    """The page, under the output rule (`--output /dev/stdout` or `-` streams it): where it went, and the lines it
    skipped."""
    directory = runs_in(directory)
    target = output_target(output or directory / PAGE, stream=True)  # refused before the page is built
    page, skipped = render(directory)
    write_text(target.named, page, stream=True)
    return target, skipped
