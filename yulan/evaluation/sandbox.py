"""Generated code runs in a separate process: a time limit, an address-space and file-size limit, a scratch
directory as its working directory and only writable place, no network (sockets refuse), no process spawning,
and a clean environment. This stops accidents and the usual escapes of generated code; it is not a defence
against a determined attacker (use a container for that)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

GUARD = r'''
import builtins, os, resource, shutil, socket, subprocess, sys
_memory = {memory}
resource.setrlimit(resource.RLIMIT_AS, (_memory, _memory))
resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
_scratch = os.path.realpath(os.getcwd())
def _refuse(*args, **kwargs):
    raise PermissionError("not allowed in the sandbox")
class _NoSocket(socket.socket):
    def __init__(self, *args, **kwargs):
        _refuse()
socket.socket = _NoSocket
socket.create_connection = _refuse
_open = builtins.open
def _guarded_open(file, mode="r", *args, **kwargs):
    if any(flag in mode for flag in "wax+") and not os.path.realpath(str(file)).startswith(_scratch + os.sep):
        _refuse()
    return _open(file, mode, *args, **kwargs)
builtins.open = _guarded_open
for _name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "remove", "unlink", "rmdir", "removedirs",
              "rename", "renames", "replace", "truncate", "chmod", "chown", "putenv", "execv", "execve", "execvp",
              "spawnv", "spawnl", "symlink", "link"):
    if hasattr(os, _name):
        setattr(os, _name, _refuse)
shutil.rmtree = shutil.move = _refuse
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = _refuse
del builtins, resource, _name
'''


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str  # passed | failed | timeout
    detail: str = ""


def run_program(program: str, timeout_s: float, memory_mb: int) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="yulan-sandbox-") as scratch:
        path = os.path.join(scratch, "program.py")
        with open(path, "w") as sink:
            sink.write(GUARD.format(memory=memory_mb << 20) + "\n" + program)
        try:
            done = subprocess.run([sys.executable, "-I", "-S", path], cwd=scratch, capture_output=True, text=True,
                                  timeout=timeout_s, env={"PATH": "/usr/bin:/bin", "HOME": scratch},
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            return Outcome(False, "timeout", f"exceeded {timeout_s} s")
        if done.returncode == 0:
            return Outcome(True, "passed")
        return Outcome(False, "failed", done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else f"exit {done.returncode}")
