"""The report's evaluation table (§6): this run's checkpoints beside the published numbers, as Markdown, JSON
and a bar chart."""

from __future__ import annotations

import json
from pathlib import Path

from yulan.runtime.records import RecordError, number, regular_file, write_text
from yulan.schema.evaluation import LLAMA, QWEN, YULAN, EvalConfig


def headline(benchmark, metrics: dict) -> float | None:
    """The number the report prints for a row, in percent."""
    key = f"pass@{benchmark.pass_k}" if benchmark.pass_k else benchmark.metric
    return round(100 * metrics[key], 2) if key in metrics else None


DECONTAMINATED = "training data decontaminated"  # a text column: which training data was checked against the row
TEXT_COLUMNS = ("benchmark", "title", "skill", DECONTAMINATED)


def rows(
    config: EvalConfig, results: dict[str, dict[str, dict]], decontaminated: dict[str, str] | None = None
) -> list[dict]:
    out = []
    for name in config.selected:
        benchmark = config.benchmarks[name]
        row = {"benchmark": name, "title": benchmark.title, "skill": benchmark.skill}
        for checkpoint, by_benchmark in results.items():
            row[checkpoint] = headline(benchmark, by_benchmark[name]) if name in by_benchmark else None
        for model in (YULAN, LLAMA, QWEN):
            row[model] = benchmark.published.get(model)
        if decontaminated is not None:
            row[DECONTAMINATED] = decontaminated.get(name, "no")
        out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    columns = [c for c in dict.fromkeys(c for row in table for c in row) if c not in ("benchmark", "skill")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        lines.append("| " + " | ".join("—" if row.get(c) is None else str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def chart(table: list[dict], path: Path) -> Path | None:
    """A grouped bar chart; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = [c for c in table[0] if c not in TEXT_COLUMNS]
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(table)), 4))
    for i, name in enumerate(series):
        axes.bar([x + i * width for x in range(len(table))], [row[name] or 0 for row in table], width, label=name)
    axes.set_xticks(
        [x + 0.4 - width / 2 for x in range(len(table))], [row["title"] for row in table], rotation=20, ha="right"
    )
    axes.set_ylabel("score (%)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write(
    config: EvalConfig, results: dict, directory: Path, decontaminated: dict[str, str] | None = None
) -> dict[str, Path]:
    table = rows(config, results, decontaminated)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "table.json", "markdown": directory / "table.md"}
    write_text(paths["json"], json.dumps({"rows": table, "results": results}, indent=2))
    write_text(paths["markdown"], markdown(table))
    png = chart(table, directory / "table.png")
    if png:
        paths["png"] = png
    return paths


def table_rows(path: Path) -> list[dict]:
    """The rows of an evaluation table (a run's eval/results directory or its table.json); RecordError naming the
    file when it is not one."""
    file = path / "table.json" if path.is_dir() else path
    if not file.exists():
        raise RecordError(f"{file}: no such file; name a run's eval/results directory or its table.json")
    try:
        rows = json.loads(regular_file(file).read_bytes()).get("rows")
    except (OSError, ValueError, AttributeError) as error:
        raise RecordError(f"{file}: not an evaluation table ({error}); name a run's eval/results/table.json") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise RecordError(f"{file}: its `rows` are not a list of objects; name a run's eval/results/table.json")
    return rows


def compare(a: Path, b: Path) -> str:
    """Two runs' tables side by side: every checkpoint column of each, with the difference of the last ones."""
    left, right = table_rows(a), table_rows(b)
    published = {*TEXT_COLUMNS, YULAN, LLAMA, QWEN}
    merged = []
    for l_row, r_row in zip(left, right):
        row = {"title": l_row.get("title")}
        l_cols = [c for c in l_row if c not in published]
        r_cols = [c for c in r_row if c not in published]
        row |= {f"A:{c}": l_row[c] for c in l_cols} | {f"B:{c}": r_row[c] for c in r_cols}
        last_a = number(l_row[l_cols[-1]]) if l_cols else None
        last_b = number(r_row[r_cols[-1]]) if r_cols else None
        row["B − A"] = round(last_b - last_a, 2) if last_a is not None and last_b is not None else None
        merged.append(row)
    return markdown([{"benchmark": "", "skill": "", **row} for row in merged])
