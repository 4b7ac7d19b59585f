"""A throw-away one-node Slurm cluster on localhost, for the tests that run the workflow through the SLURM profile.

Everything lives in one temporary folder: ``slurm.conf`` (found by every Slurm command through ``SLURM_CONF``),
the controller's state, the node's spool, the logs, the munge key and the munge socket. ``munged``, ``slurmctld``
and ``slurmd`` run in the foreground as child processes of the caller and are stopped by their PIDs
(:func:`stop`). Accounting is off (``accounting_storage/none``): ``sacct`` cannot report job states, so the
workflow must query them with ``squeue`` (the ``slurm-noacct`` profile), which lists finished jobs for
``MinJobAge`` seconds.

The node has the machine's CPUs (``os.cpu_count()``, i.e. ``nproc``) and its memory (``MemTotal``, i.e. ``free``);
``select/cons_tres`` with ``CR_Core_Memory`` shares them among jobs by their ``--cpus-per-task`` and ``--mem``.
"""

from __future__ import annotations

import ctypes
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
# Debian's packages; what .ci/run installs
APT_PACKAGES = ("slurm-wlm", "munge")
MIN_JOB_AGE_S = 3600  # finished jobs stay visible to squeue this long (the plugin wants >= 3 x its first poll)


def _which(name: str) -> str | None:
    """A program on PATH or in the sbin folders (daemons live in /usr/sbin, not always on a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def missing_programs() -> list[str]:
    """The Slurm / munge programs that are not installed (empty when a cluster can be started)."""
    return [p for p in (*DAEMONS, *CLIENTS) if _which(p) is None]


def install(timeout: float = 600) -> str | None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get when they are missing; the reason it could not, or None."""
    if not missing_programs():
        return None
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends",
           *APT_PACKAGES]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"`{' '.join(cmd)}` took more than {timeout:.0f} s"
    if res.returncode != 0:
        return f"`{' '.join(cmd)}` failed ({res.returncode}): {res.stderr.strip()[-300:]}"
    missing = missing_programs()
    return f"installed {' '.join(APT_PACKAGES)} but {missing} are still missing" if missing else None


def _die_with_parent() -> None:
    """In the child, before exec: a new session, and SIGTERM when the process that started it dies (Linux
    PR_SET_PDEATHSIG), so that a test run killed outright does not leave the daemons behind."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb() -> int:
    """The machine's memory in MB (``MemTotal`` of /proc/meminfo, what ``free -m`` reports as total)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


@dataclass
class Cluster:
    """A running one-node cluster: its folder, the environment its commands need, and its daemons."""

    root: Path
    node: str
    cpus: int
    mem_mb: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env)

    def jobs(self) -> list[dict[str, str]]:
        """Every job squeue knows (pending, running and those finished less than MinJobAge ago); an array's tasks
        one by one, as ``<array id>_<task id>``."""
        res = self.run("squeue", "--states=all", "--array", "--noheader", "--format=%i|%T|%j|%k")
        if res.returncode != 0:
            raise RuntimeError(f"squeue failed: {res.stderr.strip()}")
        keys = ("id", "state", "name", "comment")
        return [dict(zip(keys, line.split("|", 3), strict=True)) for line in res.stdout.splitlines() if line]

    def logs(self, tail: int = 3000) -> str:
        """The end of each daemon's log (for failure messages)."""
        out = []
        for name in DAEMONS:
            p = self.root / "log" / f"{name}.log"
            out.append(f"--- {name}.log\n{p.read_text(errors='replace')[-tail:] if p.exists() else '(none)'}")
        return "\n".join(out)


def _conf(root: Path, node: str, cpus: int, mem_mb: int, user: str) -> str:
    ctld_port, slurmd_port = _free_port(), _free_port()
    return f"""\
# A one-node test cluster on localhost (tests/slurm_cluster.py); every path is in this folder.
ClusterName=influencetest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge={MIN_JOB_AGE_S}
InactiveLimit=0
KillWait=5
SlurmdTimeout=60
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _wait(pred, timeout: float, what: str, cluster: Cluster) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for name, p in cluster.procs.items():
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}) while waiting for {what}\n{cluster.logs()}")
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n{cluster.logs()}")


def start(cpus: int | None = None, mem_mb: int | None = None, timeout: float = 60) -> Cluster:
    """Write the configuration into a new temporary folder, start munged, slurmctld and slurmd, and wait until
    the node is idle. On any failure the daemons already started are stopped and the folder removed."""
    missing = missing_programs()
    if missing:
        raise RuntimeError(f"Slurm programs missing: {missing} (apt-get install {' '.join(APT_PACKAGES)})")
    cpus = cpus or os.cpu_count() or 1
    mem_mb = mem_mb or memory_mb()
    # a short path: the munge socket's must fit a Unix socket name (108 bytes)
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
    for sub in ("munge", "state", "spool", "run", "log"):
        (root / sub).mkdir(mode=0o700)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, node, cpus, mem_mb, getpass.getuser()))
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    # The SLURM executor's job step (snakemake-executor-plugin-slurm-jobstep) drops every SLURM_* variable,
    # SLURM_CONF included, before its `srun`: inside a job, srun would look for /etc/slurm/slurm.conf. A wrapper
    # first on PATH hands it this cluster's configuration (a cluster with the default path needs none).
    (root / "bin").mkdir()
    srun = root / "bin" / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {_which("srun")} "$@"\n')
    srun.chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_")) and v != "SLURM_CONF"]:
        del env[var]  # a caller inside a Slurm job must not leak its job's settings into ours
    cluster = Cluster(root, node, cpus, mem_mb, env)
    cmds = {
        "munged": [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                   f"--socket={root}/munge/munge.socket", f"--pid-file={root}/run/munged.pid",
                   f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/munged.seed"],
        "slurmctld": [_which("slurmctld"), "-D", "-i", "-f", str(conf)],
        "slurmd": [_which("slurmd"), "-D", "-N", node, "-f", str(conf)],
    }
    try:
        for name, cmd in cmds.items():
            out = open(root / "log" / f"{name}.stdout", "wb")  # noqa: SIM115 (closed with the process)
            cluster.procs[name] = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            out.close()
            if name == "munged":
                _wait(lambda: (root / "munge" / "munge.socket").exists(), timeout, "the munge socket", cluster)
            elif name == "slurmctld":
                _wait(lambda: cluster.run("scontrol", "ping").returncode == 0, timeout, "slurmctld", cluster)
        _wait(lambda: cluster.run("sinfo", "--noheader", "--format=%t").stdout.strip() == "idle", timeout,
              "the node to be idle", cluster)
    except BaseException:
        stop(cluster)
        raise
    log.info("Slurm cluster up in %s: node %s, %d CPUs, %d MB", root, node, cpus, mem_mb)
    return cluster


def stop(cluster: Cluster, timeout: float = 20) -> None:
    """Cancel every job, stop the daemons by PID (slurmd, slurmctld, munged: TERM, then KILL), remove the folder."""
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        try:
            cluster.run("scancel", "--full", f"--user={getpass.getuser()}", timeout=10)
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout and any(
                    j["state"] in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING") for j in cluster.jobs()):
                time.sleep(0.5)
        except (subprocess.TimeoutExpired, RuntimeError) as e:
            log.warning("could not cancel the jobs of the test cluster: %s", e)
    for name in reversed(list(cluster.procs)):
        p = cluster.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", name, p.pid)
                p.kill()
                p.wait(timeout)
    shutil.rmtree(cluster.root, ignore_errors=True)


ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


class Watcher(threading.Thread):
    """Polls squeue while a workflow runs: the states each job went through (``seen``: id → [state, ...], in
    order, with its comment ``rule_<name>[_wildcards_<values>]``), and optionally ``scancel``s the first running
    job that ``kill`` selects (``killed``: that job). Use as a context manager around the run."""

    def __init__(self, cluster: Cluster, kill: Callable[[dict[str, str]], bool] | None = None,
                 interval: float = 0.25):
        super().__init__(daemon=True)
        self.cluster, self.kill, self.interval = cluster, kill, interval
        self.before = {j["id"] for j in cluster.jobs()}  # jobs of earlier runs are not this run's
        self.seen: dict[str, list[str]] = {}
        self.comments: dict[str, str] = {}
        self.killed: dict[str, str] | None = None
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def poll(self) -> None:
        for j in self.cluster.jobs():
            if j["id"] in self.before:
                continue
            states = self.seen.setdefault(j["id"], [])
            self.comments[j["id"]] = j["comment"]
            if not states or states[-1] != j["state"]:
                states.append(j["state"])
            if self.kill is not None and self.killed is None and j["state"] == "RUNNING" and self.kill(j):
                res = self.cluster.run("scancel", j["id"])
                if res.returncode != 0:
                    self.errors.append(f"scancel {j['id']} failed: {res.stderr.strip()}")
                self.killed = j
                log.info("scancel %s (%s)", j["id"], j["comment"])

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.poll()
            except (RuntimeError, subprocess.TimeoutExpired) as e:  # a busy controller: try again
                self.errors.append(str(e))
            self._stop_event.wait(self.interval)

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop_event.set()
        self.join(30)
        self.poll()  # the final states (finished jobs stay listed for MinJobAge)

    def jobs_of(self, rule: str) -> dict[str, list[str]]:
        """The jobs of one rule: id → states."""
        return {i: s for i, s in self.seen.items()
                if self.comments[i] == f"rule_{rule}" or self.comments[i].startswith(f"rule_{rule}_wildcards_")}
