"""A real single-node SLURM on this machine, for development and CI:
`python -m yulan.launchers.slurm.local_cluster start|stop|status`.

`start` installs Debian's SLURM, munge, slurmdbd and MariaDB (root, apt) when missing, writes the configuration
(partitions `cpu` and `gpu`, 8 fake GPUs, accounting, no cgroups), starts the daemons as plain background
processes and waits until each answers. It is idempotent: daemons already running are left alone. `stop` stops
only the daemons this tool started (their PIDs are recorded), never processes found by name.
`cluster=local` is the profile that targets it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLUSTER = "yulan-local"
STATE = Path(os.environ.get("YULAN_SLURM_STATE", "/var/lib/yulan-slurm"))
STARTED = STATE / "started.json"
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server"]
FAKE_GPUS = 8
ADVERTISED_CPUS = 16  # more than the machine has, so sweep points run side by side (SlurmdParameters=config_overrides)


def host() -> str:
    return socket.gethostname().split(".")[0]


def memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 9 // 10
    raise RuntimeError("cannot read MemTotal from /proc/meminfo")


def slurm_conf() -> str:
    name = host()
    return f"""# Written by `python -m yulan.launchers.slurm.local_cluster start`: one-node SLURM for dev and CI.
ClusterName={CLUSTER}
SlurmctldHost={name}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
GresTypes=gpu
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/d
SlurmctldPidFile={STATE}/slurmctld.pid
SlurmdPidFile={STATE}/slurmd.pid
SlurmctldLogFile={STATE}/slurmctld.log
SlurmdLogFile={STATE}/slurmd.log
NodeName={name} NodeAddr=127.0.0.1 CPUs={ADVERTISED_CPUS} RealMemory={memory_mb()} Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName=cpu Nodes={name} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={name} MaxTime=INFINITE State=UP
"""


def slurmdbd_conf() -> str:
    return f"""AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile={STATE}/slurmdbd.pid
LogFile={STATE}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=root
StorageLoc=slurm_acct_db
StorageParameters=SSL_CA=,
"""


def run(*command: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, text=True, capture_output=quiet)


def wait_for(what: str, ready: Callable[[], bool], timeout_s: float = 60.0, log: Path | None = None) -> None:
    """Poll until `ready()` is true; never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            hint = f"; see {log}" if log else ""
            raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s{hint}")
        time.sleep(0.2)


def answers(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


def alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def install() -> None:
    missing = [
        p
        for p, binary in zip(PACKAGES, ["slurmctld", "slurmd", "sbatch", "munged", "slurmdbd", "mariadbd"])
        if not shutil.which(binary) and not Path(f"/usr/sbin/{binary}").exists()
    ]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"packages {missing} are missing and installing them needs root: "
            f"sudo apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if subprocess.run(command, env=env, capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True)
        subprocess.run(command, env=env, check=True, capture_output=True)


def write_config() -> bool:
    """Writes the configuration; True when it changed (running daemons then need a restart to read it)."""
    for directory in (STATE, STATE / "ctld", STATE / "d", STATE / "gpus", Path("/etc/slurm")):
        directory.mkdir(parents=True, exist_ok=True)
    for i in range(FAKE_GPUS):  # gres needs character devices, or slurmd drops the GPUs and drains the node
        device = STATE / "gpus" / f"gpu{i}"
        if not device.exists():
            os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
    changed = False
    files = {
        "slurm.conf": slurm_conf(),
        "slurmdbd.conf": slurmdbd_conf(),
        "gres.conf": f"AutoDetect=off\nName=gpu File={STATE}/gpus/gpu[0-{FAKE_GPUS - 1}]\n",
    }
    for name, text in files.items():
        path = Path("/etc/slurm") / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            changed = True
    Path("/etc/slurm/slurmdbd.conf").chmod(0o600)
    return changed


def start_munge(started: dict[str, Any]) -> None:
    if answers("munge", "-n"):
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        run("mungekey", "--create")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    for directory in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "munge", "munge")
    run("runuser", "-u", "munge", "--", "/usr/sbin/munged")
    wait_for("munged", lambda: answers("munge", "-n"))
    started["munged"] = "/run/munge/munged.pid"


def start_mariadb(started: dict[str, Any]) -> None:
    pid_file = Path("/run/mysqld/mysqld.pid")  # mariadbd runs as mysql and writes it itself
    if alive(pid_file):
        return
    datadir = STATE / "mysql"
    if not (datadir / "mysql").exists():
        run("mariadb-install-db", "--user=mysql", f"--datadir={datadir}", "--auth-root-authentication-method=normal")
    Path("/run/mysqld").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/mysqld", "mysql", "mysql")
    log = (STATE / "mysqld.log").open("ab")
    subprocess.Popen(
        [
            "mariadbd",
            "--user=mysql",
            f"--datadir={datadir}",
            f"--pid-file={pid_file}",
            "--socket=/run/mysqld/mysqld.sock",
            "--bind-address=127.0.0.1",
            "--port=3306",
            "--innodb-buffer-pool-size=64M",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    wait_for(
        "mariadb",
        lambda: answers("mariadb-admin", "--socket=/run/mysqld/mysqld.sock", "ping"),
        60,
        STATE / "mysqld.log",
    )
    started["mariadb"] = str(pid_file)


def start_daemon(name: str, started: dict[str, Any], ready: Callable[[], bool], timeout_s: float = 60.0) -> None:
    pid_file = STATE / f"{name}.pid"
    if alive(pid_file):
        return
    run(f"/usr/sbin/{name}")
    wait_for(name, ready, timeout_s, STATE / f"{name}.log")
    started[name] = str(pid_file)


def node_state() -> str:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""


def start() -> None:
    install()
    if write_config() and alive(STATE / "slurmctld.pid"):
        stop()  # settings such as cred_expire are read only at start
    started = json.loads(STARTED.read_text()) if STARTED.exists() else {}
    try:
        start_munge(started)
        start_mariadb(started)
        start_daemon("slurmdbd", started, lambda: answers("sacctmgr", "-n", "list", "cluster"))
        if CLUSTER not in run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster").stdout.split():
            run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        start_daemon("slurmctld", started, lambda: answers("scontrol", "ping"))
        start_daemon("slurmd", started, lambda: node_state() not in ("", "unknown", "down", "unknown*", "down*"))
        if node_state().startswith(("drain", "down")):  # a drain from an earlier failure survives restarts
            run("scontrol", "update", f"nodename={host()}", "state=resume")
        wait_for("node idle", lambda: node_state() in ("idle", "mixed", "allocated"), 60, STATE / "slurmd.log")
    finally:  # even a failed start records what it started, so `stop` can stop it
        STARTED.write_text(json.dumps(started, indent=2))
    print(f"local SLURM '{CLUSTER}' is up: partitions cpu, gpu; {FAKE_GPUS} fake GPUs on {host()} (state in {STATE})")


def stop() -> None:
    started = json.loads(STARTED.read_text()) if STARTED.exists() else {}
    for name in ("slurmd", "slurmctld", "slurmdbd", "mariadb", "munged"):  # dependents first
        pid_file = started.get(name)
        pid = alive(Path(pid_file)) if pid_file else None
        if pid_file is None or pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(Path(pid_file)) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"stopped {name} (pid {pid})")
    STARTED.unlink(missing_ok=True)


def status() -> int:
    started = json.loads(STARTED.read_text()) if STARTED.exists() else {}
    up = True
    for name in ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd"):
        pid_file = started.get(name) or {"munged": "/run/munge/munged.pid", "mariadb": "/run/mysqld/mysqld.pid"}.get(
            name, str(STATE / f"{name}.pid")
        )
        pid = alive(Path(pid_file))
        up &= pid is not None
        print(f"{name:10} {'running (pid %d)' % pid if pid else 'not running'}")
    print(f"node       {node_state() or 'unreachable'}")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m yulan.launchers.slurm.local_cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            start()
        elif args.action == "stop":
            stop()
        else:
            return status()
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        detail = getattr(error, "stderr", None)
        print(f"error: {error}{(': ' + detail.strip()) if detail else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
