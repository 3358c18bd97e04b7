"""The two halves of a code verdict, each in its own process, talking in plain data over two pipes.

`candidate` runs inside the sandbox: it loads the generated code (never the tests), then answers calls to the
functions it defines. `judge` runs outside it with the trusted parts only (the prompt's helpers, the tests, the
reference outputs): every function the code defines is a `Remote` there, whose calls cross the pipe as JSON and
whose results come back as builtins (None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset,
dict) built by the judge's own decoder. The tests compare those, so a result cannot carry a method the candidate
wrote (`__eq__`, `__bool__`), and nothing the candidate does to its own interpreter (trace hooks, patched
builtins, an early exit, printing) reaches the verdict. A result that is not plain data stays in the candidate and
comes back as an opaque handle, equal only to itself, that later calls can pass back.

This file runs under `python -I -S` on both sides, so it imports nothing but the standard library; the
candidate's side imports only builtin modules (its start is paid per program): it reads the judge's requests as
marshal frames (trusted data) and writes its answers as JSON lines, which the judge parses with `json`.
"""

from __future__ import annotations

import marshal
import os
import sys
import time
from _json import encode_basestring_ascii

LINE_LIMIT = 64 << 20  # bytes of one message; more is a broken channel


class NotPlain(TypeError):
    pass


class CandidateGone(RuntimeError):
    """The candidate's process ended or broke the protocol: the test fails."""


class CallTimeout(RuntimeError):
    pass


class CandidateError(Exception):
    """The candidate's function raised; the judge sees its type's name and message ("KeyError: 'x'"), never the
    object."""


# -- the codec: exact builtin types only, subclasses refused ----------------------------------------------------
def encode(value, handle_of=None):
    kind = type(value)
    if value is None or kind in (bool, str):
        return value
    if kind is int:
        if value.bit_length() > 4096:
            raise NotPlain("an integer over 4096 bits")
        return value if -(2**53) < value < 2**53 else {"int": str(value)}
    if kind is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else {"float": repr(value)}
    if kind is list:
        return [encode(item, handle_of) for item in value]
    if kind in (tuple, set, frozenset):
        items = [encode(item, handle_of) for item in value]
        return {kind.__name__: items}
    if kind is dict:
        return {"dict": [[encode(k, handle_of), encode(v, handle_of)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [encode(value.real), encode(value.imag)]}
    if handle_of is not None:
        reference = handle_of(value)
        if reference is not None:
            return {"ref": reference}
    raise NotPlain(f"a {kind.__name__}")


def decode(data, resolve=None):
    if data is None or type(data) in (bool, str, int, float):
        return data
    if type(data) is list:
        return [decode(item, resolve) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise NotPlain("an unknown message shape")
    ((tag, body),) = data.items()
    if tag == "int" and type(body) is str:
        return int(body)
    if tag == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag in ("tuple", "set", "frozenset") and type(body) is list:
        items = [decode(item, resolve) for item in body]
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict" and type(body) is list and all(type(pair) is list and len(pair) == 2 for pair in body):
        return {decode(k, resolve): decode(v, resolve) for k, v in body}
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2:
        return complex(decode(body[0]), decode(body[1]))
    if tag == "ref" and resolve is not None:
        return resolve(body)
    raise NotPlain(f"an unknown tag {tag!r}")


def to_json(value) -> str:
    """JSON text of encode()'s output (finite floats, str keys) without the json module."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is list:
        return "[" + ",".join(map(to_json, value)) + "]"
    if kind is dict:
        return "{" + ",".join(f"{encode_basestring_ascii(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    raise NotPlain(f"a {kind.__name__}")


class Channel:
    """Two file descriptors: the judge sends marshal frames, the candidate answers in JSON lines."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd, self.buffer = read_fd, write_fd, b""

    def write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self.write_fd, data) :]

    def send_line(self, message: dict) -> None:
        self.write((to_json(message) + "\n").encode())

    def send_frame(self, message: dict) -> None:
        data = marshal.dumps(message)
        self.write(len(data).to_bytes(8, "little") + data)

    def fill(self, size: int, deadline: float | None = None) -> None:
        """Reads until the buffer holds `size` bytes (size 0: a whole line)."""
        import select

        while (len(self.buffer) < size) if size else (b"\n" not in self.buffer):
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.read_fd], [], [], remaining)[0]:
                    raise CallTimeout("the call took too long")
            chunk = os.read(self.read_fd, 1 << 16)
            if not chunk:
                raise CandidateGone("the program ended before answering")
            self.buffer += chunk
            if len(self.buffer) > LINE_LIMIT:
                raise CandidateGone(f"an answer over {LINE_LIMIT} bytes")

    def receive_frame(self) -> dict:
        self.fill(8)
        size = int.from_bytes(self.buffer[:8], "little")
        self.fill(8 + size)
        data, self.buffer = self.buffer[8 : 8 + size], self.buffer[8 + size :]
        return marshal.loads(data)

    def receive_line(self, deadline: float | None = None) -> dict:
        import json

        self.fill(0, deadline)
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as error:
            raise CandidateGone(f"an answer that is not JSON ({error})") from None
        if type(message) is not dict:
            raise CandidateGone("an answer that is not an object")
        return message


# -- inside the sandbox -----------------------------------------------------------------------------------------
def fresh_session_keyring() -> None:
    """The scorer's kernel session keyring is inherited across fork and exec; join a new, empty one."""
    import ctypes

    keyctl = {"x86_64": 250, "aarch64": 219, "ppc64le": 280, "s390x": 280}.get(os.uname().machine)
    if keyctl is None or ctypes.CDLL(None, use_errno=True).syscall(keyctl, 1, None) < 0:  # KEYCTL_JOIN_SESSION
        raise SystemExit("could not join a fresh session keyring")


def serve_candidate(program_path: str) -> None:
    """Loads the program, reports the callables it defines, then answers calls until its input ends. Its own
    output goes to stderr: stdout is the channel."""
    channel = Channel(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    fresh_session_keyring()
    namespace: dict = {"__name__": "__candidate__"}
    try:
        with open(program_path, encoding="utf-8") as file:
            code = compile(file.read(), "program.py", "exec")
        exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 - whatever the program raised is its failure
        sys.stdout.flush()
        channel.send_line({"error": f"{type(error).__name__}: {error}"[:2000]})
        return
    sys.stdout.flush()
    handles: list = []

    def handle_of(value):
        handles.append(value)
        return len(handles) - 1

    def resolve(reference):
        if type(reference) is int and 0 <= reference < len(handles):
            return handles[reference]
        raise NotPlain("an unknown handle")

    names = sorted(name for name, value in namespace.items() if callable(value) and not name.startswith("__"))
    channel.send_line({"ready": names})
    while True:
        try:
            request = channel.receive_frame()
        except (CandidateGone, EOFError, ValueError):
            return
        try:
            target = request["call"]
            function = namespace[target] if type(target) is str else resolve(target)
            args = decode(request.get("args", []), resolve)
            kwargs = decode(request.get("kwargs", {"dict": []}), resolve)
            result = function(*args, **kwargs)
            sys.stdout.flush()
            try:
                reply = {"value": encode(result)}
            except (NotPlain, RecursionError, ValueError):
                reply = {"value": {"ref": handle_of(result)}}
        except BaseException as error:  # noqa: BLE001 - the function's exception is the caller's answer
            sys.stdout.flush()
            reply = {"raised": type(error).__name__, "message": str(error)[:2000]}
        try:
            line = to_json(reply)
        except (NotPlain, RecursionError, ValueError):
            line = to_json({"raised": "NotPlain", "message": "an answer that cannot be written"})
        channel.write((line + "\n").encode())


# -- outside it: the trusted judge ------------------------------------------------------------------------------
class Remote:
    """A function or object that lives in the candidate's process. Equal only to itself."""

    def __init__(self, connection: Connection, target, label: str):
        self._connection, self._target, self._label = connection, target, label

    def __call__(self, *args, **kwargs):
        return self._connection.call(self._target, args, kwargs)

    def __repr__(self) -> str:
        return f"<the program's {self._label}>"


class Connection:
    def __init__(self, channel: Channel):
        self.channel = channel

    def handle_of(self, value):
        if type(value) is Remote and value._connection is self:
            return value._target
        return None

    def resolve(self, reference):
        return Remote(self, reference, f"object #{reference}")

    def call(self, target, args, kwargs, timeout_s: float | None = None):
        try:
            message = {
                "call": target,
                "args": encode(list(args), self.handle_of),
                "kwargs": encode(dict(kwargs), self.handle_of),
            }
        except NotPlain as error:
            raise TypeError(f"an argument the program cannot receive: {error}") from None
        self.channel.send_frame(message)
        reply = self.channel.receive_line(time.monotonic() + timeout_s if timeout_s else None)
        if "raised" in reply:
            raise CandidateError(f"{str(reply['raised'])[:200]}: {str(reply.get('message', ''))[:2000]}")
        if "value" not in reply:
            raise CandidateGone("an answer without a value")
        try:
            return decode(reply["value"], self.resolve)
        except (NotPlain, TypeError, ValueError, RecursionError) as error:
            raise CandidateGone(f"an answer that is not plain data ({error})") from None


def connect(read_fd: int, write_fd: int) -> tuple[Connection, list[str]]:
    """Waits for the candidate to load; returns the names of its callables (or raises with its error)."""
    channel = Channel(read_fd, write_fd)
    hello = channel.receive_line()
    if "error" in hello:
        raise CandidateGone(f"the program failed to load: {str(hello['error'])[:2000]}")
    names = hello.get("ready")
    if type(names) is not list or not all(type(name) is str and name.isidentifier() for name in names):
        raise CandidateGone("a malformed greeting")
    return Connection(channel), names


def run_tests(job: dict, connection: Connection, names: list[str]) -> None:
    """The trusted setup (a prompt's helpers) runs here; the program's own definitions become Remotes, except
    where the setup defines the name (its helpers stay trusted) — the entry point always comes from the program."""
    namespace: dict = {"__name__": "__judge__"}
    exec(compile(job.get("setup", ""), "setup.py", "exec"), namespace)
    trusted = set(namespace)
    entry_point = job.get("entry_point")
    for name in names:
        if name == entry_point or name not in trusted:
            namespace[name] = Remote(connection, name, f"function {name}")
    if entry_point and entry_point not in names:
        raise AssertionError(f"the program does not define {entry_point}")
    exec(compile(job.get("tests", ""), "tests.py", "exec"), namespace)
    if entry_point:
        namespace["check"](namespace[entry_point])


def judge(job_path: str, read_fd: int, write_fd: int, verdict_fd: int) -> None:
    """Writes one verdict line to `verdict_fd`: {"passed": bool, "detail": str, ...}."""
    import json

    with open(job_path, encoding="utf-8") as file:
        job = json.load(file)
    try:
        connection, names = connect(read_fd, write_fd)
        if job.get("mode") == "evalplus":
            parts = run_evalplus(job, connection)
            verdict = {"passed": set(parts.values()) == {"pass"}, "detail": "", "parts": parts}
        else:
            run_tests(job, connection, names)
            verdict = {"passed": True, "detail": ""}
    except BaseException as error:  # noqa: BLE001 - any failure of the tests is the verdict
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        verdict = {"passed": False, "detail": detail[:500], "timeout": type(error) is CallTimeout}
    sys.stdout.flush()
    os.write(verdict_fd, (json.dumps(verdict) + "\n").encode())


# -- EvalPlus rows: its inputs, its reference outputs and its comparison rules, judged here ----------------------
def run_evalplus(job: dict, connection: Connection) -> dict:
    """EvalPlus's verdict with the candidate behind the channel: its base inputs, then its plus inputs, each input
    under EvalPlus's time limit for it (the reference's time x factor, at least the minimum). Returns each part's
    status: pass, fail or timeout (a call that timed out leaves the candidate busy: what follows is not run)."""
    import pickle

    with open(job["groundtruth"], "rb") as file:  # written by the trusted ground-truth run
        truth = pickle.load(file)
    entry_point, dataset = job["entry_point"], job["dataset"]
    parts = {}
    for part in ("base", "plus"):
        if "timeout" in parts.values():
            parts[part] = "timeout"
            continue
        parts[part] = "pass"
        limits = [max(job["min_time_limit"], job["time_factor"] * t) for t in truth[f"{part}_time"]]
        for inputs, expected, limit in zip(truth[f"{part}_input"], truth[part], limits):
            try:
                output = connection.call(entry_point, inputs, {}, timeout_s=limit)
            except CallTimeout:
                parts[part] = "timeout"
                break
            except CandidateError:
                parts[part] = "fail"
                break
            if not evalplus_match(dataset, entry_point, inputs, output, expected, truth["atol"]):
                parts[part] = "fail"
                break
    return parts


def evalplus_match(dataset: str, entry_point: str, inputs, out, exp, atol) -> bool:
    """evalplus.eval.unsafe_execute's comparison, special oracles included, on plain data."""
    import numpy as np
    from evalplus.eval import _poly, is_floats
    from evalplus.eval._special_oracle import (
        MBPP_OUTPUT_NOT_NONE_TASKS,
        MBPP_OUTPUT_SET_EQ_TASKS,
        _digit_distance_nums,
        _surface_Area,
    )

    try:
        exact_match = out == exp
        if dataset == "mbpp":
            if entry_point == "are_equivalent":
                exact_match = True
            elif entry_point == "sum_div":
                exact_match = exact_match or out == 0
            elif entry_point == "surface_Area":
                exact_match = exact_match or abs(out - _surface_Area(*inputs)) <= atol
            elif entry_point == "digit_distance_nums":
                exact_match = exact_match or out == _digit_distance_nums(*inputs)
            elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
                exact_match = set(out) == set(exp)
            elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
                exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
        if dataset == "humaneval" and entry_point == "find_zero":
            return bool(abs(_poly(*inputs, out)) <= atol)
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if not exact_match and atol != 0:
            if type(out) is not type(exp) or isinstance(exp, (list, tuple)) and len(out) != len(exp):
                return False
            return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))
        return bool(exact_match)
    except Exception:  # noqa: BLE001 - an output the rules cannot compare is a wrong output
        return False


def groundtruth(problems_path: str, output_dir: str, dataset: str) -> None:
    """EvalPlus's reference outputs and times (its own `trusted_exec`), one pickle per problem, trusted code only."""
    import json
    import pickle

    from evalplus.eval import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.gen.util import trusted_exec

    with open(problems_path, encoding="utf-8") as file:
        problems = [json.loads(line) for line in file if line.strip()]
    for index, problem in enumerate(problems):
        truth = {"atol": problem.get("atol", 0), "base_input": problem["base_input"]}
        truth["plus_input"] = problem.get("plus_input", [])
        for part in ("base", "plus"):
            truth[part], truth[f"{part}_time"] = trusted_exec(
                problem["prompt"] + problem["canonical_solution"],
                truth[f"{part}_input"],
                problem["entry_point"],
                record_time=True,
                output_not_none=dataset == "mbpp" and problem["entry_point"] in MBPP_OUTPUT_NOT_NONE_TASKS,
            )
        with open(os.path.join(output_dir, f"{index}.pkl"), "wb") as file:
            pickle.dump(truth, file)


# -- the judge server: one process with the tests' usual imports done, forking a fresh judge per verdict -----------
def judge_server(preload: list[str]) -> None:
    """Serves requests on the unix socket at descriptor 0: a job's path with three descriptors (the candidate's
    output, its input, where the verdict goes). Each is judged in a child forked from this process, in a session
    of its own, whose pid is the answer; the child starts from this process's state, never from an earlier job's."""
    import signal
    import socket

    for name in preload:
        try:
            __import__(name)
        except ImportError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    server = socket.socket(fileno=0)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(server, 4096, 3)
        except OSError:
            return
        if not message or len(fds) != 3:
            return
        pid = os.fork()
        if pid == 0:
            try:
                server.close()
                os.setsid()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                judge(message.decode(), *fds)
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        server.sendall(f"{pid}\n".encode())


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "candidate":
        serve_candidate(sys.argv[2])
    elif role == "judge-server":
        judge_server(sys.argv[2:])
    elif role == "groundtruth":
        groundtruth(sys.argv[2], sys.argv[3], sys.argv[4])
