"""Generated code runs isolated by the operating system, not by Python: each program runs under bubblewrap with
every namespace unshared (no network, its own PIDs, no view of other processes or their environment), as user
nobody, a cleared environment, only the interpreter's directories bound read-only, and a size-limited tmpfs as the
only writable place. Its process group is killed as a whole at the timeout; rlimits bound CPU time, address space
and file size, a pids cgroup (where the machine offers one) the number of processes, and the captured output is
bounded. A program passes only when the test harness itself reaches its end: after `check(...)` returns it writes a
nonce the program received on its standard input, so `os._exit(0)` or `SystemExit(0)` in a completion fails.

Where bubblewrap cannot start, generated code is refused unless `eval.allow_unisolated_code=true` (then it runs in
a plain subprocess with the same limits); every result records the isolation it ran under."""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 1 << 20  # bytes of stdout + stderr kept; more ends the program
DISK_LIMIT = 64 << 20  # bytes of the scratch tmpfs
MAX_PROCESSES = 32
BUBBLEWRAP = "bubblewrap"
UNISOLATED = "none (eval.allow_unisolated_code=true)"

# The nonce is read before the completion runs and written only after the tests returned.
HEAD = "import sys as _yulan_sys\n_yulan_nonce = _yulan_sys.stdin.readline().strip()\ndel _yulan_sys\n"
TAIL = (
    "\nimport os as _yulan_os, sys as _yulan_sys\n_yulan_sys.stdout.flush()\n"
    "_yulan_os.write(1, ('\\n' + _yulan_nonce + '\\n').encode())\n"
)


class SandboxUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | output_limit
    detail: str = ""


def code_of(completion: str) -> str:
    """The code in a completion: its first fenced block when it has one, else the text itself."""
    match = re.search(r"```(?:python|py)?\s*\n(.*?)(?:```|$)", completion, re.DOTALL)
    return match.group(1) if match else completion


def interpreter() -> Path:
    """The base interpreter (a virtual environment's python is a link to it); run with -I -S it needs only its
    own installation."""
    return Path(os.path.realpath(sys.base_prefix)) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def bubblewrap(
    argv: list[str],
    read_only: tuple[str, ...] = (),
    writable: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    disk: int = DISK_LIMIT,
) -> list[str]:
    """`argv` under bubblewrap: the system's and the interpreter's directories and `read_only` bound read-only,
    `writable` bound read-write, a `disk`-sized tmpfs at /tmp, nothing else of this machine."""
    system = [arg for path in ("/usr", "/lib", "/lib64", "/bin") for arg in ("--ro-bind-try", path, path)]
    ours = [arg for path in (os.path.realpath(sys.base_prefix), *read_only) for arg in ("--ro-bind", path, path)]
    rw = [arg for path in writable for arg in ("--bind", path, path)]
    variables = [
        arg
        for key, value in {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env or {})}.items()
        for arg in ("--setenv", key, value)
    ]
    return [
        "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *variables,
        "--uid",
        "65534",
        "--gid",
        "65534",
        *system,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(disk),
        "--tmpfs",
        "/tmp",
        *ours,
        *rw,
        "--chdir",
        "/tmp",
        *argv,
    ]


def program_in_bubblewrap(program: Path) -> list[str]:
    """The program is bound at /tmp/program.py, inside the scratch tmpfs (the root is read-only)."""
    command = bubblewrap([str(interpreter()), "-I", "-S", "/tmp/program.py"])
    at = command.index("--chdir")
    return command[:at] + ["--ro-bind", str(program), "/tmp/program.py"] + command[at:]


@functools.lru_cache(maxsize=1)
def isolation_problem() -> str | None:
    """Why bubblewrap cannot isolate programs on this machine (None: it can)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / "probe.py"
        probe.write_text("print('ok')\n")
        try:
            done = subprocess.run(program_in_bubblewrap(probe), capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bubblewrap could not start: {error}"
    if done.stdout.strip() != "ok":
        return f"bubblewrap could not start: {done.stderr.strip()[:300] or f'exit {done.returncode}'}"
    return None


def isolation(allow_unisolated: bool) -> str:
    """The isolation programs will run under; raises SandboxUnavailable when none is allowed."""
    problem = isolation_problem()
    if problem is None:
        return BUBBLEWRAP
    if allow_unisolated:
        log.warning(f"running generated code WITHOUT isolation: {problem}")
        return UNISOLATED
    raise SandboxUnavailable(
        f"{problem}; generated code is not run without isolation (set "
        "eval.allow_unisolated_code=true to run it in a plain subprocess on a machine you can lose)"
    )


class ProcessLimit:
    """A pids cgroup for one program (cgroup v1 or v2, where this machine lets us make one)."""

    ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))

    def __init__(self):
        self.path = None
        for root in self.ROOTS:
            controllers = root / "cgroup.controllers"  # v2: the pids controller must be enabled there
            if not (root / "cgroup.procs").exists() or not (
                root.name == "pids" or controllers.exists() and "pids" in controllers.read_text().split()
            ):
                continue
            path = root / f"yulan-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                path.mkdir()
                (path / "pids.max").write_text(str(MAX_PROCESSES))
            except OSError:
                if path.exists():
                    path.rmdir()
                continue
            self.path = path
            return

    def wrap(self, command: list[str]) -> list[str]:
        """The command, started from a shell that first moves itself into the cgroup (no preexec hook: the
        scorer runs programs from several threads)."""
        if self.path is None:
            return command
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.path), *command]

    def close(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            pids = (self.path / "cgroup.procs").read_text().split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


def limited(command: list[str], timeout_s: float, memory_mb: int) -> list[str]:
    """rlimits by prlimit: CPU time, address space, file size, processes (counted where we are not root), no core."""
    memory = memory_mb << 20
    return [
        "prlimit",
        f"--cpu={int(timeout_s) + 1}",
        f"--as={memory}",
        f"--fsize={DISK_LIMIT}",
        f"--nproc={MAX_PROCESSES}",
        "--core=0",
        "--",
        *command,
    ]


def run_program(program: str, timeout_s: float, memory_mb: int, isolation_level: str = BUBBLEWRAP) -> Outcome:
    nonce = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="yulan-sandbox-") as scratch:
        path = Path(scratch) / "program.py"
        path.write_text(HEAD + program + TAIL)
        if isolation_level == BUBBLEWRAP:
            command, env = program_in_bubblewrap(path), {"PATH": "/usr/bin:/bin"}
        else:
            command, env = [str(interpreter()), "-I", "-S", str(path)], {"PATH": "/usr/bin:/bin", "HOME": scratch}
        processes = ProcessLimit()
        try:
            process = subprocess.Popen(
                processes.wrap(limited(command, timeout_s, memory_mb)),
                cwd=scratch,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            status, output = _collect(process, nonce, timeout_s)
        finally:
            processes.close()
    text = output.decode(errors="replace")
    if status != "finished":
        return Outcome(
            False,
            status,
            f"exceeded {timeout_s} s" if status == "timeout" else f"more than {OUTPUT_LIMIT} bytes of output",
        )
    if nonce in text:
        return Outcome(True, "passed")
    lines = [line for line in text.replace(nonce, "").strip().splitlines() if line.strip()]
    return Outcome(
        False, "failed", lines[-1][:300] if lines else f"exit {process.returncode} before the tests finished"
    )


def _collect(process: subprocess.Popen, nonce: str, timeout_s: float) -> tuple[str, bytes]:
    """Feeds the nonce, reads at most OUTPUT_LIMIT bytes until the program ends or the time is up; on any limit
    the whole process group is killed."""
    try:
        process.stdin.write((nonce + "\n").encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    deadline = time.monotonic() + timeout_s
    chunks, size, status = [], 0, "finished"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > OUTPUT_LIMIT:
            status = "output_limit"
            break
    if status != "finished" or process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.stdout.close()
    process.wait()
    return status, b"".join(chunks)
