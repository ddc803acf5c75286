"""One place that turns a launcher's environment into a torch.distributed process group.

Supported launchers, in the order they are recognised:

1. torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
2. mpirun/mpiexec: OpenMPI (``OMPI_COMM_WORLD_*``) or MPICH/PMI (``PMI_RANK``, ``PMI_SIZE``);
   MPI is only the launcher and rendezvous: rank 0's address and a free port are broadcast with
   mpi4py, gloo/NCCL do the collectives (this torch has no MPI backend);
3. SLURM tasks started by srun (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``);
   the master is the first host of ``SLURM_STEP_NODELIST`` and the port is derived from the job
   id, so every task computes the same address without talking first. The batch script itself
   (or an salloc shell) has ``SLURM_NTASKS`` but no step variables: it runs as one process, with
   a warning when the allocation has more tasks;
4. otherwise a single process.

All five variables DeepSpeed reads are exported, because with any of them missing
``deepspeed.init_distributed`` runs its own discovery and picks another interface.
The backend is NCCL on GPUs and gloo on CPU. Interface pinning uses the standard variables
(``GLOO_SOCKET_IFNAME``, ``NCCL_SOCKET_IFNAME``), as on real clusters.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hpc_seaice.command import attach_process_group
from hpc_seaice.errors import PeerLost, UserError


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn the backend's failure of the collectives inside into :class:`PeerLost`.

    Wrap only code whose failure on a healthy rank means a peer failed: a collective, or the
    backward pass of a DDP/DeepSpeed step (its gradient all-reduce).
    """
    try:
        yield
    except PeerLost:
        raise
    except RuntimeError as exc:  # NCCL's DistBackendError is one too
        if not is_initialized() or dist.get_world_size() == 1:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PeerLost(f"{what} failed: {first}") from exc


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    launcher: str = "single"  # single | torchrun | mpi | slurm
    hostname: str = ""
    hosts: tuple[str, ...] = ()  # hostname of every rank, filled after init
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM node list such as ``n[1-2],gpu[01,03-04]`` into host names.

    ``scontrol show hostnames`` is used when available (it knows every syntax); this parser
    covers the common forms so that the address is also found where scontrol is absent.
    """
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        pass
    hosts: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                hosts.extend(f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(f"{prefix}{part}")
    return hosts


def slurm_master_port(job_id: str) -> int:
    """A port every task of a job derives alike: 15000 + the job id's last four digits."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return 15000 + int(digits[-4:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _mpi_rendezvous(rank: int) -> tuple[str, int]:
    """Broadcast rank 0's address and a free port over MPI."""
    from mpi4py import MPI  # only under mpirun: importing it initialises MPI

    comm = MPI.COMM_WORLD
    hostnames = comm.allgather(socket.gethostname())
    if rank == 0:
        same_host = len(set(hostnames)) == 1
        # The host name, not gethostbyname(): Debian-style /etc/hosts map it to 127.0.1.1 locally.
        addr = os.environ.get("MASTER_ADDR") or ("127.0.0.1" if same_host else socket.gethostname())
        payload = (addr, int(os.environ.get("MASTER_PORT") or _free_port()))
    else:
        payload = None
    return comm.bcast(payload, root=0)


def detect_environment(environ: dict[str, str] | None = None) -> DistEnv:
    """Read rank, world size and rendezvous address from the launcher's variables."""
    env = os.environ if environ is None else environ
    host = socket.gethostname()
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            launcher="torchrun",
            hostname=host,
        )
    mpi_rank = env.get("OMPI_COMM_WORLD_RANK", env.get("PMI_RANK"))
    mpi_size = env.get("OMPI_COMM_WORLD_SIZE", env.get("PMI_SIZE"))
    if mpi_rank is not None and mpi_size is not None:
        rank, size = int(mpi_rank), int(mpi_size)
        local = env.get("OMPI_COMM_WORLD_LOCAL_RANK", env.get("MPI_LOCALRANKID", "0"))
        if size > 1:
            addr, port = _mpi_rendezvous(rank)
        else:
            addr, port = "127.0.0.1", _free_port()
        return DistEnv(rank, size, int(local), addr, port, "mpi", host)
    if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" in env:
        size = int(env["SLURM_STEP_NUM_TASKS"])
        nodelist = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", host))
        hosts = expand_nodelist(nodelist)
        master = hosts[0] if hosts else "127.0.0.1"
        if size > 1 and master == host and len(hosts) == 1:
            master = "127.0.0.1"
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=size,
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR", master),
            master_port=int(env.get("MASTER_PORT", slurm_master_port(env.get("SLURM_JOB_ID", "0")))),
            launcher="slurm",
            hostname=host,
        )
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
        # The batch script (or salloc shell) itself: SLURM_NTASKS describes the allocation, but
        # only srun starts the tasks. Treating this as rank 0 of N would wait for N-1 peers forever.
        print(
            f"hpc-seaice: SLURM job {env['SLURM_JOB_ID']} has {env['SLURM_NTASKS']} tasks, but this process "
            "was not started by srun, so it runs alone; start it with `srun` (launch/slurm/srun.sbatch) "
            "to use every task",
            file=sys.stderr,
            flush=True,
        )
    return DistEnv(hostname=host, master_port=_free_port())


def init_distributed(timeout_s: float = 600.0, force_process_group: bool = False) -> DistEnv:
    """Initialise torch.distributed from the launcher's environment and return the rank layout.

    A single process gets no process group unless ``force_process_group`` (DeepSpeed wants one).
    ``timeout_s`` bounds every collective: when a peer or the link to it is lost, each surviving
    rank fails within it instead of hanging.
    """
    info = detect_environment()
    _warn_shared_store_restarts(info)
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        info.device = torch.device("cuda", torch.cuda.current_device())
    launched = info.world_size > 1 or force_process_group or info.launcher != "single"
    for key, value in (
        ()
        if not launched
        else (
            ("RANK", info.rank),
            ("WORLD_SIZE", info.world_size),
            ("LOCAL_RANK", info.local_rank),
            ("MASTER_ADDR", info.master_addr),
            ("MASTER_PORT", info.master_port),
        )
    ):
        os.environ[key] = str(value)
    if dist.is_initialized():
        info.hosts = _gather_hosts(info)
        return info
    if info.world_size > 1 or force_process_group:
        backend = "nccl" if info.device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        store = _round_store(info, timeout)
        if store is not None:
            dist.init_process_group(backend, store=store, rank=info.rank, world_size=info.world_size, timeout=timeout)
        else:
            dist.init_process_group(
                backend=backend,
                init_method=f"tcp://{info.master_addr}:{info.master_port}",
                rank=info.rank,
                world_size=info.world_size,
                timeout=timeout,
            )
    info.hosts = _gather_hosts(info)
    return info


def _round_store(info: DistEnv, timeout: datetime.timedelta) -> dist.Store | None:
    """Under torchrun with the agent's store shared across restarts (torch's default), the
    process group's keys of this restart round, apart from those of earlier rounds.

    torch names the keys the same in every round, and the agent keeps its store across restarts,
    so a restarted worker can read the addresses of the previous round's dead workers and fail
    with "Gloo connectFullMesh failed ... Connection refused" (pytorch/pytorch#135712). A prefix
    keyed by ``TORCHELASTIC_RESTART_COUNT`` gives each round its own keys. None elsewhere.
    """
    if info.launcher != "torchrun" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    run_round = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    client = dist.TCPStore(
        info.master_addr, info.master_port, world_size=info.world_size, is_master=False, timeout=timeout
    )
    return dist.PrefixStore(f"hpc_seaice/round{run_round}/default_pg", client)


def _warn_shared_store_restarts(info: DistEnv) -> None:
    """On several nodes, torchrun restarts the other nodes' workers without counting a restart,
    so the per-round prefix of :func:`_round_store` can differ between nodes: say how to avoid it."""
    if (
        info.is_main
        and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") or 0) > 0
        and int(os.environ.get("GROUP_WORLD_SIZE", "1") or 1) > 1
    ):
        print(
            "hpc-seaice: warning: torchrun --max-restarts on several nodes with the rendezvous store shared "
            "across restarts: set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (launch/slurm/multinode_torchrun.sbatch "
            "does) so that every node's restarted workers meet in a fresh store",
            file=sys.stderr,
            flush=True,
        )


def _gather_hosts(info: DistEnv) -> tuple[str, ...]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return (info.hostname,)
    hosts: list[str] = [""] * dist.get_world_size()
    with collective("exchanging host names"):
        dist.all_gather_object(hosts, info.hostname)
    return tuple(hosts)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def all_reduce_max(flag: int, device: torch.device) -> int:
    """The maximum of an integer over ranks (how all ranks agree on a stop flag)."""
    if not is_initialized():
        return flag
    tensor = torch.tensor([flag], dtype=torch.int64, device=device)
    with collective("all-reduce"):
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if not is_initialized():
        return value
    value = value.clone()
    with collective("all-reduce"):
        dist.all_reduce(value)
    return value / dist.get_world_size()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate equally shaped tensors of every rank along dim 0, in rank order."""
    if not is_initialized():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    with collective("all-gather"):
        dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if is_initialized():
        with collective("barrier"):
            dist.barrier()


def finalize_and_exit(code: int) -> None:
    """End a worker so a finished run always exits ``code`` (0) and a failed one never does.

    torch 2.13 + gloo aborts about 1 run in 10 while tearing down at interpreter exit
    (``terminate called without an active exception``), after all work is done. A clean barrier,
    destroying the group ourselves, flushing and ``os._exit`` skip that teardown. On failure the
    barrier is skipped: a dead peer would make it wait for the whole collective timeout.
    """
    if is_initialized():
        try:
            if code == 0:
                dist.barrier()
            dist.destroy_process_group()
        except Exception as exc:  # a lost peer at the very end still fails the run
            print(f"hpc-seaice: error while leaving the process group: {exc}", file=sys.stderr)
            code = code or 1
    if "mpi4py.MPI" in sys.modules:  # mpiexec expects MPI_Finalize from every rank
        sys.modules["mpi4py.MPI"].Finalize()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def decided_by_main(decide: Callable[[], object]) -> object:
    """Run ``decide`` on rank 0 and hand its result, or its one-line UserError, to every rank.

    For start-up checks that only rank 0 can make once (the run lock, the checkpoint to resume
    from): every rank then raises the same UserError, or none does, so no rank waits for a peer
    that has already given up.
    """
    outcome: list[object] = [None]
    failure: BaseException | None = None
    if rank() == 0:
        try:
            outcome = [("ok", decide())]
        except UserError as exc:
            outcome = [("error", str(exc))]
        except BaseException as exc:  # a bug or Ctrl-C: the others must not wait for rank 0
            failure = exc
            outcome = [("crash", f"rank 0 failed at start: {type(exc).__name__}: {exc}")]
    if is_initialized() and world_size() > 1:
        with collective("start-up checks of rank 0"):
            dist.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]  # type: ignore[misc]
    if failure is not None:
        raise failure
    if status == "error":
        raise UserError(str(value))
    if status == "crash":
        raise RuntimeError(str(value))
    return value


class _ThisProcessGroup:
    """This module's process group, as :mod:`hpc_seaice.command` sees it (see attach_process_group)."""

    is_initialized = staticmethod(is_initialized)
    rank = staticmethod(rank)
    finalize_and_exit = staticmethod(finalize_and_exit)


attach_process_group(_ThisProcessGroup())
