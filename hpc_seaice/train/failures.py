"""What a run leaves about who worked on it, and how a failed collective is explained.

``jobs.jsonl`` in the run folder lists every job that worked on a run (across requeues and
restarts). A failed collective is described in terms of hosts: which peer was lost, if we can tell.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hpc_seaice.runtime.distributed import DistEnv


def record_job(run_dir: Path, env: DistEnv, start_step: int) -> None:
    """Append who worked on this run folder (job ids across requeues, hosts, start step)."""
    record = {
        "time": time.time(),
        "start_step": start_step,
        "launcher": env.launcher,
        "world_size": env.world_size,
        "hosts": sorted(set(env.hosts)),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }
    with open(run_dir / "jobs.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


PROBE_PORTS = (6818, 22)  # slurmd and sshd: a reachable cluster host answers on one of them, if only to refuse
PROBE_TIMEOUT_S = 2.0


def _host_answers(address: str, ports: tuple[int, ...]) -> bool:
    """Whether a host answers a TCP connection attempt on one of ``ports`` (a refusal is an answer)."""
    for port in ports:
        try:
            with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_S):
                return True
        except ConnectionRefusedError:
            return True
        except OSError:  # timed out, host or network unreachable
            continue
    return False


def describe_collective_failure(exc: BaseException, env: DistEnv, timeout_s: float) -> str:
    """Explain a failed collective in terms of hosts: which peer was lost, if we can tell.

    A peer named in the backend's message (an address or host name of another rank) is the lost
    one. gloo's time-outs name none (``Timed out waiting 15000ms for recv operation``): then every
    other host of the run is probed with a short TCP connection attempt (master port, slurmd,
    sshd; a refusal counts as an answer), and the hosts that do not answer are named.
    """
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    ranks: dict[str, list[int]] = {}
    for rank, host in enumerate(getattr(env, "hosts", ()) or ()):
        ranks.setdefault(host, []).append(rank)
    addresses = {}
    for host in sorted(ranks):
        if host == env.hostname:
            continue
        try:
            addresses[host] = socket.gethostbyname(host)
        except OSError:
            continue

    def named(token: str) -> bool:  # a whole host name or address, not a part of a longer one
        return re.search(rf"(?<![\w.-]){re.escape(token)}(?![\w-]|\.\d)", text) is not None

    lost = [host for host, address in addresses.items() if named(address) or named(host)]
    peer = ""
    if not lost and addresses:
        ports = tuple(dict.fromkeys((int(getattr(env, "master_port", 0)) or PROBE_PORTS[0], *PROBE_PORTS)))
        with ThreadPoolExecutor(max_workers=min(32, len(addresses))) as pool:
            answers = dict(zip(addresses, pool.map(lambda a: _host_answers(a, ports), addresses.values())))
        lost = [host for host, answered in answers.items() if not answered]
        peer = f" (no answer from {env.hostname})" if lost else f"every peer host answers {env.hostname}; "
    if lost:
        hosts = ", ".join(
            f"{host} ({addresses[host]}) with rank{'s' if len(ranks[host]) > 1 else ''} "
            f"{', '.join(map(str, ranks[host]))}"
            for host in lost
        )
        peer = f"lost peer: {hosts}{peer}; "
    return (
        f"rank {env.rank} on {env.hostname}: a collective failed or timed out "
        f"(engine.timeout_s={timeout_s:g}); {peer}{text}"
    )
