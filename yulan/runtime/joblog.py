"""A job's output: Python logging with timestamps and levels on stderr, and everything the job and its child
processes write to stdout and stderr appended to the stage's `log.txt` in the run directory, locally as on SLURM."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def configure_logging(level: int = logging.INFO) -> None:
    """Timestamps and levels for this project's loggers; other libraries keep their own settings (transformers'
    warnings, e.g. a critic's newly initialised score head, stay visible)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    project = logging.getLogger("yulan")
    project.handlers[:] = [handler]
    project.setLevel(level)
    project.propagate = False


def _ignore_stop_signals() -> None:
    # The copy must outlive a SIGTERM or Ctrl-C sent to the job: a stage that checkpoints on SIGTERM still writes.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def tee_output(path: Path) -> None:
    """From here on, file descriptors 1 and 2 (this process's and every child's) also go to `path` (appended).
    Each goes through its own `tee`, so stdout and stderr stay separate streams where they went before."""
    tee = shutil.which("tee")
    if tee is None:
        logging.getLogger(__name__).warning("no `tee` on this machine: the output is not copied to %s", path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        try:
            descriptor = stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a real file (an embedding host's stream): left alone
            continue
        original = os.dup(descriptor)
        copier = subprocess.Popen(
            [tee, "-a", str(path)],
            stdin=subprocess.PIPE,
            stdout=original,
            preexec_fn=_ignore_stop_signals,
            start_new_session=True,
        )
        os.dup2(copier.stdin.fileno(), descriptor)
        copier.stdin.close()
        os.close(original)


def start(log_path: Path) -> None:
    tee_output(log_path)
    configure_logging()
