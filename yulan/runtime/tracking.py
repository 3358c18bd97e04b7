"""Tracking (wandb and metrics.jsonl) and progress bars."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from yulan.runtime import progress
from yulan.schema.experiment import Experiment


class Tracker:
    """wandb (offline unless configured) with a run id kept in the job directory, so a resumed job continues the
    same tracking run; metrics also go to job_dir/metrics.jsonl, which tests and scripts can read."""

    def __init__(self, experiment: Experiment, stage: str, job_dir: str, label: str | None = None):
        """`label`: a second tracking run of the stage (`{name}-{stage}-{label}`) beside the engine's own."""
        Path(job_dir).mkdir(parents=True, exist_ok=True)
        self.metrics = Path(job_dir) / "metrics.jsonl"
        self.run = None
        tracking = experiment.tracking
        if tracking.backend != "wandb" or tracking.mode == "disabled":
            return
        os.environ.setdefault("WANDB_SILENT", "true")  # the progress bar and metrics.jsonl say enough
        import wandb

        id_file = Path(job_dir) / ("wandb_run_id" + (f".{label}" if label else ""))
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=tracking.project,
            entity=tracking.entity,
            group=tracking.group or experiment.name,
            name=f"{experiment.name}-{stage}" + (f"-{label}" if label else ""),
            tags=list(tracking.tags),
            mode=tracking.mode,
            id=run_id,
            resume="allow",
            dir=job_dir,
            config=json.loads(getattr(experiment, stage).model_dump_json()),
        )

    def log(self, step: int, values: dict[str, float], to_file: bool = True) -> None:
        if to_file:
            with self.metrics.open("a") as sink:
                sink.write(json.dumps({"step": step, **values}) + "\n")
        if self.run is not None:
            self.run.log(values, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


class Progress(progress.Progress):
    """A trainer's steps, with throughput (tokens/s) and the latest metrics."""

    def __init__(self, total: int, start: int, description: str):
        super().__init__(description, total=total, unit="steps", initial=start)
        self.tokens = 0

    def step(self, tokens: int, **metrics: float) -> None:
        self.tokens += tokens
        rate = self.tokens / max(time.monotonic() - self.started, 1e-9)
        self.advance(1, **{"tok/s": f"{rate:,.0f}", **metrics})
