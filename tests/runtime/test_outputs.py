"""The one rule every writer follows: streams the user names are written in place, other non-files are refused,
symlinks are followed, an output is never a file the step reads, and a write that fails leaves nothing behind and
the earlier file intact, with one message naming the path and the cause."""

import json
import os
import resource
import socket
import stat
import threading

import pytest

from tests.conftest import run
from yulan.runtime.records import RecordError, output_target, write_jsonl, write_text

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="look-alike device nodes are made with mknod (root)")
SAMPLE = {"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]}


def device(path, minor: int):
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "partial" in p.name)


@root_only
def test_a_device_the_user_names_is_written_in_place_never_replaced(tmp_path):
    null = device(tmp_path / "null", 3)
    write_text(null, "page\n", stream=True)
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    with pytest.raises(RecordError, match=r"null: is a character device, and this output is written only to a regular"):
        write_text(null, "record\n")  # not a stream this writer may use: refused, still a device
    assert stat.S_ISCHR(null.stat().st_mode) and leftovers(tmp_path) == []


@root_only
def test_a_full_disk_is_one_message_naming_the_path_and_the_cause(tmp_path):
    full = device(tmp_path / "full", 7)  # as /dev/full: every write fails with ENOSPC
    with pytest.raises(RecordError) as caught:
        write_jsonl(full, [{"a": 1}] * 10_000, stream=True)
    assert str(caught.value) == (
        f"{full}: could not be written: the disk is full; nothing was replaced (free space or choose another path)"
    )


def test_a_fifo_is_written_for_its_reader_and_refused_without_one(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(RecordError, match="a FIFO that no process reads; start its reader first"):
        write_text(fifo, "x\n", stream=True)  # refused at once, not blocked forever
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    for _ in range(100):  # the reader has opened its end
        try:
            write_text(fifo, "streamed\n", stream=True)
            break
        except RecordError:
            threading.Event().wait(0.02)
    reader.join(10)
    assert received == ["streamed\n"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_symlinks_are_followed_never_replaced_and_loops_refused(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == "real.json" and target.read_text() == "new"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to("made/here.json")
    write_text(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "made" / "here.json").read_text() == "made"
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(RecordError, match=r"loop: cannot be written \(Too many levels of symbolic links\)"):
        write_text(loop, "x")
    assert leftovers(tmp_path) == []


def test_directories_and_sockets_are_refused(tmp_path):
    with pytest.raises(RecordError, match=r"is a directory; name a file to write \(it is never replaced\)"):
        write_text(tmp_path, "x", stream=True)
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(RecordError, match=r"sock: is a socket; name a file to write"):
            write_text(tmp_path / "sock", "x", stream=True)
    finally:
        listening.close()
    assert stat.S_ISSOCK((tmp_path / "sock").stat().st_mode)


def test_an_output_is_never_a_file_the_step_reads_under_any_name(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    os.link(source, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to("in.jsonl")
    for name in ("in.jsonl", "hard.jsonl", "soft.jsonl"):
        with pytest.raises(RecordError, match=f"{name} is .*in.jsonl, a file this step reads"):
            output_target(tmp_path / name, [source])
    assert source.read_text() == "{}\n"


def test_a_file_size_limit_keeps_the_earlier_output_and_leaves_no_partial_file(tmp_path):
    """ulimit -f: the write fails with EFBIG (Python ignores SIGXFSZ); the CLI says so, and the old schema stays."""
    old = tmp_path / "schema.json"
    old.write_text("the earlier schema\n")
    limit = (16 * 1024, 16 * 1024)
    result = run(
        "-m",
        "yulan.cli",
        "schema",
        "--output",
        str(old),
        preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == (
        f"error: {old}: could not be written: the file is too large (a file size limit: ulimit -f); nothing was "
        "replaced (free space or choose another path)\n"
    )
    assert old.read_text() == "the earlier schema\n" and leftovers(tmp_path) == []


def test_a_curation_step_under_a_file_size_limit_leaves_every_earlier_output(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({**SAMPLE, "id": i}) + "\n" for i in range(400)))
    output = tmp_path / "out.jsonl"
    output.write_text("earlier\n")
    (tmp_path / "out.report.json").write_text("{}")
    limit = (8 * 1024, 8 * 1024)
    result = run(
        "-m",
        "yulan.cli",
        "curate",
        "heuristics",
        "--input",
        str(source),
        "--output",
        str(output),
        preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limit),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {output}: could not be written: the file is too large" in result.stderr
    assert output.read_text() == "earlier\n" and (tmp_path / "out.report.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_decontamination_never_writes_over_an_evaluation_file_it_reads(tmp_path):
    source, evaluation = tmp_path / "in.jsonl", tmp_path / "eval.jsonl"
    source.write_text(json.dumps(SAMPLE) + "\n")
    evaluation.write_text(json.dumps({"question": "What is 2+2? Show the steps of the sum."}) + "\n")
    before = evaluation.read_text()
    result = run(
        "-m",
        "yulan.cli",
        "curate",
        "decontaminate",
        "--input",
        str(source),
        "--output",
        str(evaluation),
        f"files=[{evaluation}]",
        "benchmarks=none",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{evaluation} is {evaluation}, a file this step reads; an input is never overwritten" in result.stderr
    assert evaluation.read_text() == before


def test_eval_log_samples_is_refused_before_the_scoring_not_after(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"reference": "4", "completion": "The answer is 4."}) + "\n")
    for target, words in ((tmp_path, "is a directory"), (samples, "a file this step reads")):
        result = run(
            "-m",
            "yulan.cli",
            "eval",
            "score",
            "--benchmark",
            "gsm8k_0shot_cot",
            "--samples",
            str(samples),
            "--log-samples",
            str(target),
        )
        assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""  # no metrics: nothing was scored
    assert json.loads(samples.read_text())["completion"] == "The answer is 4."
