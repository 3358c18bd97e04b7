"""Generated code runs isolated by the operating system, and never where its verdict is decided.

Each verdict takes two processes (yulan.rewards.calls): the *candidate* loads the generated code and answers calls
to its functions; the *judge* holds the trusted parts (the prompt's helpers, the tests, EvalPlus's reference
outputs), calls the candidate's functions across a pipe and compares the plain data that comes back. The tests are
never inside the candidate's process or filesystem, and a result cannot carry methods the candidate wrote.

The candidate runs under bubblewrap with every namespace unshared: no network, its own PIDs, no view of other
processes or their environment, uid 65534 inside its user namespace (mapped to the scorer's uid outside, with no
capabilities), a cleared environment, a fresh kernel session keyring, the system's and the interpreter's
directories bound read-only, the root remounted read-only, and size-bounded tmpfs at /tmp and /dev/shm as the only
writable places. Bounds on the whole program, not each process: a memory cgroup (v1 or v2, where this machine lets
us make one; tmpfs pages count in it) caps the memory of its process tree, else a watchdog sums the tree's resident
memory every 50 ms and kills it over the bound; a pids cgroup (else RLIMIT_NPROC) the number of processes; rlimits
the CPU time, each process's address space and file size; the wall-clock timeout the whole process group; and the
captured output is bounded.

Where bubblewrap cannot start, generated code is refused unless `eval.allow_unisolated_code=true` (then the
candidate runs in a plain subprocess with the same limits); every result records the isolation it ran under."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 1 << 20  # bytes of the candidate's stdout + stderr kept; more ends the program
DISK_LIMIT = 64 << 20  # bytes of the scratch tmpfs
SHM_LIMIT = 8 << 20  # bytes of /dev/shm
MAX_PROCESSES = 32
BUBBLEWRAP = "bubblewrap"
UNISOLATED = "none (eval.allow_unisolated_code=true)"
CALLS = Path(__file__).with_name("calls.py")  # the candidate's server and the judge, a standalone script
WATCH_INTERVAL_S = 0.05


class SandboxUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout | output_limit | memory_limit
    detail: str = ""
    parts: dict | None = None  # EvalPlus rows: {"base": status, "plus": status}


FENCE_OPEN = re.compile(r"^([ \t]*+)(`{3,}+|~{3,}+)[ \t]*+([\w+#.-]*+)")
PYTHON_TAGS = {"python", "python3", "py", "py3", ""}


def code_of(completion: str) -> str:
    """The code in a completion: its first fenced Python block (```python, ```Python, ```python3, ~~~py, an
    untagged fence, a fence indented in a list), past blocks in other languages (a ```bash install line first);
    else the text itself. Line by line: no regular expression runs over more than one line's start."""
    lines = completion.split("\n")
    index = 0
    while index < len(lines):
        opening = FENCE_OPEN.match(lines[index])
        index += 1
        if opening is None:
            continue
        indent, fence, tag = opening.group(1), opening.group(2), opening.group(3).lower()
        body = []
        while index < len(lines):
            line = lines[index]
            index += 1
            stripped = line.rstrip()
            if stripped.lstrip().startswith(fence) and not stripped.strip(fence[0] + " \t"):
                break
            if stripped.endswith(fence):  # `return x```: the fence closes at the end of a code line
                body.append(stripped[: -len(fence)])
                break
            body.append(line[len(indent) :] if line.startswith(indent) else line)
        if tag in PYTHON_TAGS:
            return "\n".join(body) + "\n"
    return completion


def interpreter() -> Path:
    """The base interpreter (a virtual environment's python is a link to it); run with -I -S it needs only its
    own installation."""
    return Path(os.path.realpath(sys.base_prefix)) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def drops_to_nobody() -> bool:
    """Whether the program runs as host uid 65534: where the scorer is root (bubblewrap then needs no user
    namespace, and `setpriv` drops the uid and every capability inside the sandbox); else a user namespace maps
    uid 65534 inside to the scorer's own uid."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def bubblewrap(argv: list[str], files: dict[str, int]) -> list[str]:
    """`argv` under bubblewrap: the system's and the interpreter's directories bound read-only, `files`
    (destination: an open file descriptor to copy) placed read-only, a DISK_LIMIT tmpfs at /tmp and a SHM_LIMIT
    one at /dev/shm, the root read-only, nothing else of this machine."""
    system = [arg for path in ("/usr", "/lib", "/lib64", "/bin") for arg in ("--ro-bind-try", path, path)]
    interpreter_dir = os.path.realpath(sys.base_prefix)
    data = [arg for target, fd in files.items() for arg in ("--perms", "0444", "--ro-bind-data", str(fd), target)]
    if drops_to_nobody():
        namespaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        identity = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
        argv = [*identity, "--bounding-set=-all", "--", *argv]
    else:
        namespaces = ["--unshare-all", "--uid", "65534", "--gid", "65534"]
    return [
        "bwrap",
        *namespaces,
        "--die-with-parent",
        "--new-session",
        *("--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"),
        *system,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        *("--perms", "1777", "--size", str(SHM_LIMIT), "--tmpfs", "/dev/shm"),
        *("--perms", "1777", "--size", str(DISK_LIMIT), "--tmpfs", "/tmp"),
        *("--ro-bind", interpreter_dir, interpreter_dir),
        *data,
        *("--remount-ro", "/"),
        *("--chdir", "/tmp"),
        *argv,
    ]


@functools.lru_cache(maxsize=1)
def compiled_calls() -> Path:
    """calls.py compiled once per scorer process: Python compiles a script on every start, not a .pyc (same
    interpreter version: the base interpreter of this one)."""
    import atexit
    import py_compile

    directory = Path(tempfile.mkdtemp(prefix="yulan-calls-"))
    atexit.register(shutil.rmtree, directory, True)
    return Path(py_compile.compile(str(CALLS), cfile=str(directory / "calls.pyc"), doraise=True))


def candidate_command(isolation_level: str, program: Path) -> tuple[list[str], tuple[int, ...]]:
    """The candidate's command and the descriptors it inherits: under bubblewrap the program and the compiled
    runner are copied into its tmpfs from open descriptors (its root is read-only, and nothing of the scorer's
    files is bound)."""
    runner = compiled_calls()
    if isolation_level != BUBBLEWRAP:
        return [str(interpreter()), "-I", "-S", str(runner), "candidate", str(program)], ()
    program_fd, runner_fd = os.open(program, os.O_RDONLY), os.open(runner, os.O_RDONLY)
    command = bubblewrap(
        [str(interpreter()), "-I", "-S", "/tmp/calls.pyc", "candidate", "/tmp/program.py"],
        files={"/tmp/program.py": program_fd, "/tmp/calls.pyc": runner_fd},
    )
    return command, (program_fd, runner_fd)


@functools.lru_cache(maxsize=1)
def isolation_problem() -> str | None:
    """Why bubblewrap cannot isolate programs on this machine (None: it can)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        outcome = run_tests("def probe():\n    return 'ok'\n", "assert probe() == 'ok'\n", 30, 256, BUBBLEWRAP)
    except OSError as error:
        return f"bubblewrap could not start: {error}"
    if not outcome.passed:
        return f"bubblewrap could not start: {outcome.detail[:300]}"
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


def own_cgroup(controller: str) -> Path | None:
    """Where this process's cgroup for `controller` is mounted (cgroup v1: its own hierarchy; v2: the unified
    one, when the controller is enabled for children there)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            root = Path("/sys/fs/cgroup") / controller
            if (root / path.lstrip("/") / "cgroup.procs").exists():
                return root / path.lstrip("/")
        if controllers == "":  # v2
            for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                here = root / path.lstrip("/")
                enabled = here / "cgroup.subtree_control"
                if enabled.exists() and controller in enabled.read_text().split():
                    return here
    return None


class Limits:
    """Per-program cgroups bounding the whole process tree: pids (the number of processes) and memory (every
    byte its processes and its tmpfs hold), each where this machine lets us make one."""

    def __init__(self, memory_bytes: int):
        self.paths: dict[str, Path] = {}
        settings = {
            "pids": {"pids.max": str(MAX_PROCESSES)},
            "memory": {
                # v1 names, then v2 names; swap is bounded too where the kernel accounts it
                "memory.limit_in_bytes": str(memory_bytes),
                "memory.memsw.limit_in_bytes": str(memory_bytes),
                "memory.max": str(memory_bytes),
                "memory.swap.max": "0",
            },
        }
        for controller, values in settings.items():
            parent = own_cgroup(controller)
            if parent is None:
                continue
            path = parent / f"yulan-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                path.mkdir()
                written = 0
                for name, value in values.items():
                    if (path / name).exists():
                        try:
                            (path / name).write_text(value)
                            written += 1
                        except OSError:
                            if name in ("memory.memsw.limit_in_bytes", "memory.swap.max"):
                                continue
                            raise
                if not written:
                    raise OSError("no limit file")
            except OSError:
                if path.exists():
                    path.rmdir()
                continue
            self.paths[controller] = path

    @property
    def bounds_memory(self) -> bool:
        return "memory" in self.paths

    @property
    def bounds_processes(self) -> bool:
        return "pids" in self.paths

    def wrap(self, command: list[str]) -> list[str]:
        """The command, started from a shell that first moves itself into the cgroups (no preexec hook: the
        scorer runs programs from several threads)."""
        if not self.paths:
            return command
        joins = " && ".join(f'echo $$ > "${i + 1}/cgroup.procs"' for i in range(len(self.paths)))
        return [
            "sh",
            "-c",
            f'{joins} && shift {len(self.paths)} && exec "$@"',
            "sh",
            *map(str, self.paths.values()),
            *command,
        ]

    def oom_killed(self) -> bool:
        path = self.paths.get("memory")
        if path is None:
            return False
        for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
            try:
                fields = dict(line.split() for line in (path / name).read_text().splitlines() if line.strip())
            except (OSError, ValueError):
                continue
            if int(fields.get(key, 0)) > 0:
                return True
        try:
            return int((path / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Kills what is left in the cgroups and removes them (a cgroup is removable once its last process has
        been reaped, a few milliseconds after the kill)."""
        for path in self.paths.values():
            for attempt in range(1000):
                try:
                    pids = (path / "cgroup.procs").read_text().split()
                except OSError:
                    pids = []
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.001 if attempt < 100 else 0.02)


def limited(command: list[str], timeout_s: float, memory_mb: int, count_processes: bool) -> list[str]:
    """rlimits by prlimit: CPU time, each process's address space, file size, no core; the number of processes
    where no pids cgroup counts them (RLIMIT_NPROC counts every process of the user, not only this program's)."""
    return [
        "prlimit",
        f"--cpu={int(timeout_s) + 1}",
        f"--as={memory_mb << 20}",
        f"--fsize={DISK_LIMIT}",
        *([f"--nproc={MAX_PROCESSES}"] if count_processes else []),
        "--core=0",
        "--",
        *command,
    ]


def tree_memory(root: int) -> int:
    """Resident bytes of `root` and every process descended from it (bubblewrap starts the program in a session
    of its own, so the tree is followed by parent ids): the bound where no memory cgroup can be made."""
    page = os.sysconf("SC_PAGE_SIZE")
    parent_of, resident = {}, {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parent_of[int(entry.name)], resident[int(entry.name)] = int(fields[1]), int(fields[21]) * page
        except (OSError, ValueError, IndexError):
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += resident.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def run_tests(
    code: str,
    tests: str,
    timeout_s: float,
    memory_mb: int,
    isolation_level: str = BUBBLEWRAP,
    setup: str = "",
    entry_point: str | None = None,
) -> Outcome:
    """`code` (untrusted: the prompt and the completion) in the sandbox; `setup` (a prompt's trusted helpers) and
    `tests` in the judge, with `check(entry_point)` called after the tests where an entry point is named. Passes
    when the judge reaches the end."""
    return judged(
        code, {"setup": setup, "tests": tests, "entry_point": entry_point}, timeout_s, memory_mb, isolation_level
    )


class JudgeServer:
    """A judge server (yulan.rewards.calls.judge_server) for one interpreter, started on first use and again if it
    died; requests from the scorer's threads take turns (a fork is about a millisecond)."""

    def __init__(self, python: tuple[str, ...], preload: tuple[str, ...]):
        self.python, self.preload = python, preload
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.socket: socket.socket | None = None
        self.owner = os.getpid()

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [*self.python, str(CALLS), "judge-server", *self.preload],
            stdin=theirs,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            cwd="/",
            start_new_session=True,
        )
        theirs.close()
        self.socket = ours

    def stop(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def fork(self, job: Path, descriptors: tuple[int, int, int]) -> int:
        """A judge for `job` on these descriptors; returns its pid (the leader of its own process group)."""
        with self.lock:
            if self.owner != os.getpid():  # a forked scorer must not talk on its parent's socket
                self.process, self.socket, self.owner = None, None, os.getpid()
            for _ in range(2):
                if self.process is None or self.process.poll() is not None or self.socket is None:
                    self.stop()
                    self.start()
                try:
                    socket.send_fds(self.socket, [str(job).encode()], list(descriptors))
                    reply = b""
                    while not reply.endswith(b"\n"):
                        chunk = self.socket.recv(64)
                        if not chunk:
                            raise OSError("the judge server ended")
                        reply += chunk
                    return int(reply)
                except (OSError, ValueError):
                    self.stop()
            raise OSError("the judge server could not be started")


JUDGE_PRELOAD = ("json", "typing", "re", "collections", "math", "random", "itertools", "functools", "string", "copy")
JUDGE_SERVERS: dict[tuple[str, ...], JudgeServer] = {}
JUDGE_SERVERS_LOCK = threading.Lock()


def judge_server(python: tuple[str, ...] | None) -> JudgeServer:
    python = python or (str(interpreter()), "-I", "-S")
    preload = JUDGE_PRELOAD if "-S" in python else (*JUDGE_PRELOAD, "pickle", "numpy", "evalplus.eval")
    with JUDGE_SERVERS_LOCK:
        if python not in JUDGE_SERVERS:
            JUDGE_SERVERS[python] = JudgeServer(python, preload)
        return JUDGE_SERVERS[python]


def judged(
    code: str,
    job: dict,
    timeout_s: float,
    memory_mb: int,
    isolation_level: str,
    judge_python: tuple[str, ...] | None = None,
) -> Outcome:
    """Starts the candidate and a judge connected by two pipes, waits for the judge's verdict within the time,
    and kills both whatever happens."""
    with tempfile.TemporaryDirectory(prefix="yulan-sandbox-") as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "program.py").write_text(code)
        (scratch / "job.json").write_text(json.dumps(job))
        work = scratch / "work"  # the unisolated candidate's working directory
        work.mkdir()
        to_candidate_read, to_candidate_write = os.pipe()
        from_candidate_read, from_candidate_write = os.pipe()
        verdict_read, verdict_write = os.pipe()
        command, inherited = candidate_command(isolation_level, scratch / "program.py")
        # each closed exactly once: the scorer's threads reuse descriptor numbers at once
        unclosed = [to_candidate_read, to_candidate_write, from_candidate_read, from_candidate_write, verdict_write]
        unclosed += inherited
        limits = Limits(memory_mb << 20)
        candidate: subprocess.Popen | None = None
        judge_pid, status = None, "not started"
        verdict_stream = os.fdopen(verdict_read, "rb", buffering=0)
        try:
            candidate = subprocess.Popen(
                limits.wrap(limited(command, timeout_s, memory_mb, not limits.bounds_processes)),
                cwd=work,
                env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
                stdin=to_candidate_read,
                stdout=from_candidate_write,
                stderr=subprocess.PIPE,
                pass_fds=inherited,
                start_new_session=True,
            )
            judge_pid = judge_server(judge_python).fork(
                scratch / "job.json", (from_candidate_read, to_candidate_write, verdict_write)
            )
            while unclosed:  # the children hold them now; the judge sees the candidate's end when it exits
                os.close(unclosed.pop())
            status, verdict, output = collect(candidate, verdict_stream, timeout_s, memory_mb << 20, limits)
            if status == "finished" and limits.oom_killed():
                status = "memory_limit"
        finally:
            if candidate is not None:
                kill_group(candidate)
            if judge_pid is not None and status != "finished":  # its verdict pipe never ended: still running
                try:
                    os.killpg(judge_pid, signal.SIGKILL)  # so its pid cannot have been reused
                except (ProcessLookupError, PermissionError):
                    pass
            verdict_stream.close()
            limits.close()
            while unclosed:
                os.close(unclosed.pop())
    if status != "finished":
        detail = {
            "timeout": f"exceeded {timeout_s} s",
            "output_limit": f"more than {OUTPUT_LIMIT} bytes of output",
            "memory_limit": f"the program's processes held more than {memory_mb} MiB together",
        }[status]
        return Outcome(False, status, detail)
    if verdict is None:
        return Outcome(False, "failed", "the judge gave no verdict")
    if verdict.get("timeout"):
        return Outcome(False, "timeout", verdict.get("detail", ""), verdict.get("parts"))
    if verdict.get("passed") is True:
        return Outcome(True, "passed", "", verdict.get("parts"))
    detail = str(verdict.get("detail", ""))
    last = [line for line in output.decode(errors="replace").strip().splitlines() if line.strip()]
    if "the program failed to load" in detail or "ended before answering" in detail:
        detail = f"{detail} {last[-1][:300]}" if last else detail
    return Outcome(False, "failed", detail[:500], verdict.get("parts"))


def collect(
    candidate: subprocess.Popen, verdict_stream, timeout_s: float, memory_bytes: int, limits: Limits
) -> tuple[str, dict | None, bytes]:
    """Reads the candidate's output (at most OUTPUT_LIMIT bytes) and the judge's verdict until the judge ends
    (status "finished": its verdict pipe reached its end) or a bound is hit: the time, the output, or (without a
    memory cgroup) the tree's resident memory."""
    deadline = time.monotonic() + timeout_s
    streams = {candidate.stderr: bytearray(), verdict_stream: bytearray()}
    open_streams = list(streams)
    status = "finished"
    while verdict_stream in open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select(open_streams, [], [], min(remaining, WATCH_INTERVAL_S))
        for stream in ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                open_streams.remove(stream)
                continue
            streams[stream] += chunk
        if len(streams[candidate.stderr]) > OUTPUT_LIMIT or len(streams[verdict_stream]) > OUTPUT_LIMIT:
            status = "output_limit"
            break
        if not limits.bounds_memory and candidate.poll() is None and tree_memory(candidate.pid) > memory_bytes:
            status = "memory_limit"
            break
    verdict = None
    lines = bytes(streams[verdict_stream]).strip().splitlines()
    if status == "finished" and lines:
        try:
            verdict = json.loads(lines[-1])
        except ValueError:
            verdict = None
    return status, verdict if isinstance(verdict, dict) else None, bytes(streams[candidate.stderr])


def kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    process.wait()
