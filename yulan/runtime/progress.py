"""Progress of long work (training steps, judging, hashing, generation): a live tqdm bar on a terminal; in a job log
(stderr not a terminal) one log line per interval, with the count, the rate and the estimated time left."""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger("yulan.progress")

LOG_INTERVAL_S = 30.0


def _enabled() -> bool:
    return os.environ.get("YULAN_PROGRESS", "1") != "0"


class Progress:
    def __init__(
        self,
        description: str,
        total: int | None = None,
        unit: str = "it",
        initial: int = 0,
        interval_s: float = LOG_INTERVAL_S,
    ):
        self.description, self.total, self.unit, self.interval_s = description, total, unit, interval_s
        self.count = self.initial = initial
        self.started = self.logged = time.monotonic()
        self.postfix: dict[str, str] = {}
        self.bar, self.closed = None, False
        if _enabled() and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=description,
                unit=unit,
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.1,
            )

    def advance(self, count: int = 1, **postfix: object) -> None:
        self.count += count
        self.postfix = {key: value if isinstance(value, str) else f"{value:.4g}" for key, value in postfix.items()}
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(count)
        elif _enabled() and time.monotonic() - self.logged >= self.interval_s:
            self.logged = time.monotonic()
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (self.count - self.initial) / elapsed
        done = f"{self.count:,}" + (f"/{self.total:,} ({self.count / self.total:.0%})" if self.total else "")
        left = ""
        if self.total and rate > 0:
            left = f", {(self.total - self.count) / rate / 60:.1f} min left"
        extra = "".join(f", {key} {value}" for key, value in self.postfix.items())
        return f"{self.description}: {done} {self.unit}, {rate:,.1f} {self.unit}/s{left}{extra}"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        elif _enabled() and self.count > self.initial:
            log.info("%s (done in %.0f s)", self.line(), time.monotonic() - self.started)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
