"""Fixtures that run real SLURM clusters on this machine, for tests marked `slurm` and `multinode`.

- ``slurm_cluster``: the single-node cluster of ``tests/slurm/local_cluster.sh`` (slurmctld,
  slurmd, munge, slurmdbd + MariaDB on 127.0.0.1);
- ``two_node_cluster``: the two-host cluster of ``tests/slurm/two_nodes.sh`` (network namespaces
  n1 = 10.77.0.1 and n2 = 10.77.0.2, one slurmd in each); clients run inside n1 and gloo is pinned
  to the cluster interface (``GLOO_SOCKET_IFNAME=hsnet0``), as users do on real clusters.

Both yield a :class:`Cluster`: ``cluster.hpc_seaice("submit", ...)``, ``cluster.run("sbatch", ...)``
(clients with the right namespace and environment), ``cluster.sbatch_launch("srun.sbatch", ...)``
(a recipe of launch/slurm/ on CPUs), ``cluster.wait_job(job_id)``,
``cluster.state(job_id)``, and for fault tests ``cluster.set_link("n2", up=False)`` and
``cluster.resume_nodes()`` (links are restored and nodes resumed after every test anyway).

Both use the same daemons and /etc/slurm/slurm.conf, so one session-wide manager switches between
them on demand and, at the end of the session, stops what it started and brings back what was
running before (a developer's own cluster stays up). A file lock keeps two pytest sessions on one
machine from fighting over the daemons. Jobs a test leaves behind are cancelled after it.

Without root, SLURM packages or ``ip netns``, the tests are skipped with the reason; with
``HPC_SEAICE_REQUIRE_SLURM=1`` / ``HPC_SEAICE_REQUIRE_MULTINODE=1`` (set by ``.ci/run``) they fail
instead, and they fail loudly when the cluster cannot start.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ROOT, child_env

from hpc_seaice.cluster.pending import cannot_start

SCRIPTS = ROOT / "tests" / "slurm"
LAUNCH_SLURM = ROOT / "launch" / "slurm"
REQUIRE = {"local": "HPC_SEAICE_REQUIRE_SLURM", "two": "HPC_SEAICE_REQUIRE_MULTINODE"}
SCRIPT = {"local": ("local_cluster.sh", "start", "stop"), "two": ("two_nodes.sh", "up", "down")}
N1 = ("nsenter", "--net=/var/run/netns/hs-n1")
LOCK_PATH = Path("/run/hpc-seaice-test-slurm.lock")
LOCK_TIMEOUT_S = 1800.0
CANNOT_START_GRACE_S = 10.0
TERMINAL_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
}


def _script(kind: str, action: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
    name = SCRIPT[kind][0]
    return subprocess.run(["bash", str(SCRIPTS / name), action], capture_output=True, text=True, timeout=timeout)


def _slurm_installed() -> bool:
    names = ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "munged", "mariadbd")
    return all(shutil.which(n) or Path("/usr/sbin", n).exists() for n in names)


def _netns_available() -> bool:
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return False
    return subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


def unavailable_reason(kind: str) -> str:
    """Why this machine cannot run the cluster, or "" when it can."""
    if os.geteuid() != 0:
        return "needs root (it starts slurmctld, slurmd, slurmdbd, MariaDB and writes /etc/slurm)"
    if not _slurm_installed():
        return "SLURM is not installed: run `sudo tests/slurm/local_cluster.sh install`"
    if kind == "two" and not _netns_available():
        return "network namespaces are unavailable (`ip netns`, `nsenter`): no two-host cluster"
    return ""


def _skip_or_fail(kind: str, reason: str) -> None:
    variable = REQUIRE[kind]
    if os.environ.get(variable):
        pytest.fail(
            f"{variable} is set but the {'two-node' if kind == 'two' else 'single-node'} SLURM "
            f"cluster is unavailable: {reason}",
            pytrace=False,
        )
    pytest.skip(
        f"{'two-node' if kind == 'two' else 'single-node'} SLURM cluster unavailable: {reason} "
        f"(set {variable}=1 to make this an error)"
    )


@dataclass
class Cluster:
    """A running cluster: how to run clients against it (from inside n1 for the two-node one)."""

    kind: str  # local | two
    prefix: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for clients and jobs (sbatch exports it into the job)."""
        return child_env(**{**self.extra_env, **extra})

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, *args]

    def run(
        self, *args: str, env: dict | None = None, timeout: float = 120.0, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            self.command(*args), cwd=cwd or ROOT, env=env or self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)}: exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                f"stderr:\n{proc.stderr[-3000:]}"
            )
        return proc

    def hpc_seaice(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """``python -m hpc_seaice ARGS`` as a client of this cluster."""
        return self.run(sys.executable, "-m", "hpc_seaice", *args, **kwargs)

    def sbatch(self, *args: str, env: dict | None = None) -> str:
        """``sbatch --parsable ARGS``; the job id."""
        return self.run("sbatch", "--parsable", *args, env=env, timeout=60).stdout.strip().split(";")[0]

    def sbatch_launch(
        self, script: str, options: tuple[str, ...], *args: str, log: Path, env: dict | None = None
    ) -> str:
        """Submit the recipe ``launch/slurm/SCRIPT ARGS`` on CPUs only (no GPU, 10 minutes), its
        output in ``log``, with the sbatch ``options`` of the test; the job id."""
        command = (*options, "--gpus-per-node=0", "--time=10", f"--output={log}", str(LAUNCH_SLURM / script))
        return self.sbatch(*command, *args, env=env)

    def popen(self, *args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*args),
            cwd=cwd or ROOT,
            env=env or self.env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def state(self, job_id: str) -> str:
        """The job's state from sacct ("" until accounting knows it)."""
        proc = self.run("sacct", "-X", "-n", "-P", "-o", "State", "-j", str(job_id), check=False, timeout=30)
        lines = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]  # "CANCELLED by 0"
        return lines[-1].upper() if lines else ""

    def reason(self, job_id: str) -> str:
        """squeue's reason for a queued job ("" once it has left the queue)."""
        proc = self.run("squeue", "-h", "-o", "%r", "-j", str(job_id), check=False, timeout=30)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def wait_job(self, job_id: str, timeout: float = 120.0, grace_s: float = CANNOT_START_GRACE_S) -> str:
        """Poll until the job is in a final state; return it. A job that cannot start (a reason such
        as PartitionConfig for ``grace_s``) fails the test at once with the reason, not after ``timeout``."""
        deadline = time.time() + timeout
        state, blocked_since = "", None
        while time.time() < deadline:
            state = self.state(job_id)
            if state in TERMINAL_STATES:
                return state
            reason = self.reason(job_id) if state == "PENDING" else ""
            if cannot_start(reason):
                blocked_since = blocked_since or time.time()
                if time.time() - blocked_since >= grace_s:
                    raise AssertionError(
                        f"job {job_id} cannot start: PENDING ({reason}): {cannot_start(reason)}\n"
                        + self.run("sinfo", "-N", "-o", "%N %c %T", check=False, timeout=30).stdout
                    )
            else:
                blocked_since = None
            time.sleep(1.0)
        raise AssertionError(f"job {job_id} still {state or 'unknown'} after {timeout:.0f} s")

    def set_link(self, host: str, up: bool) -> None:
        """Cut or restore a host's cluster link (two-node cluster): ``ip -n hs-HOST link set hsnet0``."""
        subprocess.run(["ip", "-n", f"hs-{host}", "link", "set", "hsnet0", "up" if up else "down"], check=True)

    def resume_nodes(self) -> None:
        """Return nodes that SLURM marked down or drained (e.g. after a long link cut) to service."""
        proc = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=30)
        for line in proc.stdout.splitlines():
            name, _, state = line.partition(" ")
            if any(word in state for word in ("down", "drain", "fail")):
                self.run("scontrol", "update", f"nodename={name}", "state=resume", check=False, timeout=30)

    def active_jobs(self) -> set[str]:
        proc = self.run("squeue", "-h", "-o", "%A", check=False, timeout=30)
        return set(proc.stdout.split()) if proc.returncode == 0 else set()


def _nodes_below(cluster: Cluster, cpus: int) -> dict[str, int]:
    """Nodes that SLURM knows with fewer than ``cpus`` CPUs (the tests need 2 per node)."""
    proc = cluster.run("sinfo", "-h", "-N", "-o", "%N %c", check=False, timeout=30)
    nodes = dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)
    return {name: int(n) for name, n in nodes.items() if n.isdigit() and int(n) < cpus}


class ClusterManager:
    """Session-wide owner of the SLURM daemons: switches cluster kinds, restores at the end."""

    def __init__(self) -> None:
        self._lock = None
        self.initial: str | None = None
        self.current: str | None = None
        self.failures: dict[str, str] = {}

    def _acquire(self) -> None:
        if self._lock is not None:
            return
        self._lock = open(LOCK_PATH, "w")
        deadline = time.time() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.time() > deadline:
                    raise RuntimeError(
                        f"another test session holds {LOCK_PATH} for over {LOCK_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(2.0)
        self.initial = self.current = self._running()

    @staticmethod
    def _running() -> str | None:
        for kind in ("local", "two"):
            if _script(kind, "status", timeout=60).returncode == 0:
                return kind
        return None

    def ensure(self, kind: str) -> Cluster:
        reason = unavailable_reason(kind)
        if reason:
            _skip_or_fail(kind, reason)
        if kind in self.failures:  # a start that failed once is not retried for every test
            if os.environ.get(REQUIRE[kind]):
                pytest.fail(self.failures[kind], pytrace=False)
            pytest.skip(self.failures[kind])
        self._acquire()
        if self.current != kind or _script(kind, "status", timeout=60).returncode != 0:
            t0 = time.time()
            proc = _script(kind, SCRIPT[kind][1])
            if proc.returncode != 0:
                self.failures[kind] = (
                    f"tests/slurm/{SCRIPT[kind][0]} {SCRIPT[kind][1]} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
                )
                self.current = None
                if os.environ.get(REQUIRE[kind]):
                    pytest.fail(self.failures[kind], pytrace=False)
                pytest.skip(self.failures[kind])
            self.current = kind
            print(f"[{SCRIPT[kind][0]} {SCRIPT[kind][1]}: {time.time() - t0:.1f} s]", file=sys.stderr)
            cluster = self._cluster(kind)
            small = _nodes_below(cluster, 2)
            if small:  # every 2-task job would pend forever with reason PartitionConfig
                self.failures[kind] = f"SLURM node(s) declared with fewer than 2 CPUs: {small}"
                pytest.fail(self.failures[kind], pytrace=False)
        return self._cluster(kind)

    @staticmethod
    def _cluster(kind: str) -> Cluster:
        if kind == "local":
            return Cluster("local", hosts=(os.uname().nodename.split(".")[0],))
        return Cluster("two", prefix=N1, extra_env={"GLOO_SOCKET_IFNAME": "hsnet0"}, hosts=("n1", "n2"))

    def close(self) -> None:
        if self._lock is None:
            return
        try:
            if self.current != self.initial:
                if self.current is not None:
                    _script(self.current, SCRIPT[self.current][2])
                if self.initial is not None:
                    _script(self.initial, SCRIPT[self.initial][1])
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


@pytest.fixture(scope="session")
def slurm_clusters():
    manager = ClusterManager()
    yield manager
    manager.close()


def _with_cleanup(cluster: Cluster):
    before = cluster.active_jobs()
    yield cluster
    if cluster.kind == "two":  # a fault test that failed half-way must not leave a host cut off
        for host in cluster.hosts:
            cluster.set_link(host, up=True)
        cluster.resume_nodes()
    leftovers = sorted(cluster.active_jobs() - before)
    if leftovers:  # a failed test must not leave jobs that hold the CPUs for the next one
        cluster.run("scancel", *leftovers, check=False, timeout=30)


@pytest.fixture
def slurm_cluster(slurm_clusters):
    """The single-node SLURM cluster, started if needed (skip/fail as described above)."""
    yield from _with_cleanup(slurm_clusters.ensure("local"))


@pytest.fixture
def two_node_cluster(slurm_clusters):
    """The two-host SLURM cluster (n1, n2), started if needed; run clients with ``cluster.run``."""
    yield from _with_cleanup(slurm_clusters.ensure("two"))
