"""Every `yulan` subcommand driven with generated arguments: paths of every kind (missing, a directory, look-alike
device nodes, a FIFO, symlinks good, dangling and looping, a path under a file, unreadable, non-UTF-8 and corrupt
files), and settings and names that are malformed. Whatever the arguments: no traceback, a non-zero exit names what
is wrong, no file outside the named outputs changes, and nothing that is not a regular file is ever replaced."""

import hashlib
import json
import os
import signal
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yulan.cli import main

SAMPLE = {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]}
NAMES = [
    "missing.jsonl",
    "dir",
    "null",  # a character device (1, 3), as /dev/null
    "full",  # a character device (1, 7), as /dev/full: every write fails with ENOSPC
    "fifo",
    "link",  # -> samples.jsonl
    "dangling",  # -> nowhere/x.jsonl
    "loop",  # -> loop (itself)
    "file/child",  # under a regular file
    "nonutf8.jsonl",
    "unreadable.jsonl",  # mode 000 (root reads it anyway)
    "corrupt.jsonl",
    "samples.jsonl",
    "code.jsonl",
    "math.jsonl",
    "reward.jsonl",
    "empty.jsonl",
    "run",  # a run directory whose files are corrupt
    "-",
]
paths = st.sampled_from(NAMES)
outputs = paths | st.sampled_from(["out.jsonl", "new/out.jsonl"])  # half of the time, a file that may be made
values = st.sampled_from(["[", "!!python/object:os.system", "1", "-1", "0.5", "x", "{a: 1}", "[1, 2]", "1e999", "~"])
keys = st.sampled_from(["threshold", "min_response_chars", "on_bad_record", "a.b", "files", "ngram", "total", ""])
setting = st.builds(lambda k, v: f"{k}={v}", keys, values | paths.map(lambda p: f"[{p}]"))
settings_args = st.just([]) | st.lists(setting, max_size=3)
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


def sandbox(root: Path) -> Path:
    root.mkdir()
    (root / "dir").mkdir()
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
    os.mkfifo(root / "fifo")
    (root / "samples.jsonl").write_text(json.dumps(SAMPLE) + "\n" + json.dumps({**SAMPLE, "id": 2}) + "\n")
    (root / "link").symlink_to("samples.jsonl")
    (root / "dangling").symlink_to("nowhere/x.jsonl")
    (root / "loop").symlink_to("loop")
    (root / "loop.yaml").symlink_to("loop.yaml")
    (root / "file").write_text("a file\n")
    (root / "nonutf8.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n\x80\x81\n')
    (root / "unreadable.jsonl").write_text(json.dumps(SAMPLE) + "\n")
    (root / "unreadable.jsonl").chmod(0)
    (root / "corrupt.jsonl").write_bytes(b'{"messages": [1]}\n[1, 2]\n{"task_id": ["x"], "completion": 5}\n{"a": ')
    (root / "code.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    (root / "math.jsonl").write_text(json.dumps({"reference": "4", "completion": "The answer is 4."}) + "\n")
    (root / "reward.jsonl").write_text(json.dumps({"prompt": "2+2?", "response": "4", "answer": "4"}) + "\n")
    (root / "empty.jsonl").write_text("")
    run = root / "run"
    (run / "ppo").mkdir(parents=True)
    (run / "config.json").write_text('{"name": "<b>x</b>", "stages": ["ppo"], "launcher": {}, "model": {}}')
    (run / "plan.json").write_text('{"jobs": ["junk", {"stage": "ppo"}]}')
    (run / "manifest.json").write_bytes(b"\xff not json")
    (run / "ppo" / "alerts.jsonl").write_text('"junk"\n{"rollout": 1, "rule": "r", "action": "stop", "message": 5}\n')
    (run / "ppo" / "metrics.jsonl").write_text('{"step": null}\n{"step": 1, "ppo/reward": "x"}\n')
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: its type, and for a regular file its bytes' hash (a symlink: its target)."""
    found = {}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                found[str(path.relative_to(root))] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(mode):
                found[str(path.relative_to(root))] = ("link", os.readlink(path))
            else:
                found[str(path.relative_to(root))] = (stat.S_IFMT(mode),)
    return found


def may_change(path: str, outputs: list[str], root: Path) -> bool:
    """Whether a change at `path` is one of the named outputs: the file, its side files (same stem), or where a
    symlink among them leads."""
    for output in outputs:
        if output == "-":
            continue
        for named in {output, os.path.relpath(os.path.realpath(root / output), root)}:
            stem = Path(named).with_suffix("")
            if path == named or Path(path).parent == stem.parent and Path(path).name.startswith(stem.name + "."):
                return True
            if Path(named).parts[: len(Path(path).parts)] == Path(path).parts:  # a directory made for it
                return True
    return False


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("look-alike device nodes are made with mknod, which needs root (CI runs as root)")
    return sandbox(tmp_path_factory.mktemp("cli") / "sandbox")


class Stalled(Exception):
    pass


def stalled(signum, frame):
    raise Stalled("no answer in 120 s: a read or write that waits forever (a FIFO, a device)?")


def check(argv: list[str], outputs: list[str], root: Path, capfd) -> None:
    before = snapshot(root)
    cwd = os.getcwd()
    os.chdir(root)
    previous = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(120)
    try:
        try:
            status = main(argv)
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code if isinstance(exit.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(cwd)
    out, err = capfd.readouterr()
    assert "Traceback" not in err, (argv, err[-3000:])
    if status:
        assert err.strip(), (argv, out[-1000:])  # a failure says why
    after = snapshot(root)
    for path, kind in before.items():
        if path in after:
            assert after[path][0] == kind[0], (argv, path, "replaced by something of another kind")
        changed = after.get(path) != kind
        assert not changed or may_change(path, outputs, root), (argv, path, "changed but not named as an output")
    for path in set(after) - set(before):
        assert may_change(path, outputs, root) or "/.launch" in path, (argv, path, "created but not named")


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is repeatable
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(output=st.none() | paths)
def test_schema(root, capfd, output):
    check(["schema"] + (["--output", output] if output else []), [output] if output else [], root, capfd)


@SETTINGS
@given(
    step=st.sampled_from(["heuristics", "dedup", "decontaminate", "mix", "ppo_prompts", "complexity"]),
    source=st.just("samples.jsonl") | paths,
    output=outputs,
    extra=settings_args,
)
def test_curate(root, capfd, step, source, output, extra):
    check(["curate", step, "--input", source, "--output", output, *extra], [output], root, capfd)


@SETTINGS
@given(
    benchmark=st.sampled_from(["humaneval_pass10", "mbpp_pass10", "gsm8k_0shot_cot", "mmlu_5shot", "nope"]),
    samples=st.sampled_from(["math.jsonl", "code.jsonl"]) | paths,
    data=st.none() | paths,
    log=st.none() | outputs,
)
def test_eval_score(root, capfd, benchmark, samples, data, log):
    argv = ["eval", "score", "--benchmark", benchmark, "--samples", samples]
    argv += (["--data", data] if data else []) + (["--log-samples", log] if log else [])
    check(argv, [log] if log else [], root, capfd)


@SETTINGS
@given(a=paths, b=paths)
def test_eval_compare(root, capfd, a, b):
    check(["eval", "compare", a, b], [], root, capfd)


@SETTINGS
@given(samples=st.just("reward.jsonl") | paths, summary=st.booleans())
def test_reward_score(root, capfd, samples, summary):
    check(
        ["reward", "score", "--samples", samples, "experiment=smoke"] + (["--summary"] if summary else []),
        [],
        root,
        capfd,
    )


@SETTINGS
@given(directory=st.just("run") | paths, output=st.none() | outputs)
def test_report(root, capfd, directory, output):
    named = [output] if output else [f"{directory}/report.html"]
    check(["report", directory] + (["--output", output] if output else []), named, root, capfd)


@SETTINGS
@given(command=st.sampled_from(["status", "cancel"]), directory=paths, as_json=st.booleans())
def test_runs(root, capfd, command, directory, as_json):
    check([command, directory] + (["--json"] if as_json and command == "status" else []), [], root, capfd)


@SETTINGS
@given(
    command=st.sampled_from(["show", "validate", "diff"]),
    overrides=st.lists(
        st.sampled_from(
            ["experiment=smoke", "experiment=nope", "seed=-1", "seed=[", "sft.nope=1", "--", "x.yaml", "loop.yaml"]
        )
        | paths,
        max_size=3,
    ),
)
def test_config_commands(root, capfd, command, overrides):
    check([command, *overrides], [], root, capfd)


@SETTINGS
@given(run_root=st.just("runs") | paths, name=st.just("a_name") | names, slurm=st.booleans())
def test_launch_dry_run(root, capfd, run_root, name, slurm):
    argv = ["launch", "experiment=smoke", "dry_run=true", f"run_root={run_root}", f"name='{name}'"]
    check(argv + (["launcher=slurm"] if slurm else []), [], root, capfd)
