#!/usr/bin/env bash
# Train with MPI as the launcher: one rank per GPU (or NP ranks on CPU). MPI only starts the ranks
# and carries the rendezvous (rank 0 broadcasts its address and a free port with mpi4py); the
# collectives run on NCCL (GPU) or gloo (CPU). The trainer reads OpenMPI's OMPI_COMM_WORLD_* or
# MPICH/Intel MPI's PMI_* variables itself.
#
# Usage:
#   NP=8 launch/mpirun.sh CONFIG.yaml [key=value ...]
#   NP=16 MPI_ARGS="--hostfile hosts" launch/mpirun.sh CONFIG.yaml        # OpenMPI, 2 nodes x 8 GPUs
#   NP=16 MPI_ARGS="-f hosts -ppn 8" launch/mpirun.sh CONFIG.yaml          # MPICH (hydra)
# MPIRUN picks the launcher (default: mpirun, else mpiexec, on PATH); PYTHON the interpreter. On
# several nodes pin the interface with GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME (exported to
# every rank). NP defaults to the number of GPUs (nvidia-smi), else 1.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PYTHON:-python}
MPIRUN=${MPIRUN:-$(command -v mpirun || command -v mpiexec || true)}
if [ -z "$MPIRUN" ]; then
  echo "$0: no mpirun/mpiexec on PATH (pip install mpich, or load your MPI module)" >&2
  exit 2
fi
NP=${NP:-$(ranks_default)}
need_config "[NP=N] $0 CONFIG.yaml [key=value ...]" $#
share_threads "$NP"

args=(-n "$NP")
if "$MPIRUN" --version 2>&1 | grep -q 'Open MPI'; then
  # OpenMPI: do not pin each rank to one core; export what the ranks need to remote nodes too
  # (MPICH's hydra forwards the whole environment by default).
  args+=(--bind-to none)
  [ "$(id -u)" -ne 0 ] || args+=(--allow-run-as-root)
  for var in PATH LD_LIBRARY_PATH PYTHONPATH VIRTUAL_ENV OMP_NUM_THREADS GLOO_SOCKET_IFNAME \
    NCCL_SOCKET_IFNAME NCCL_DEBUG HDF5_USE_FILE_LOCKING DS_ACCELERATOR; do
    [ -z "${!var:-}" ] || args+=(-x "$var")
  done
fi
# shellcheck disable=SC2206  # MPI_ARGS is a list of launcher options, split on purpose
extra=(${MPI_ARGS:-})
exec "$MPIRUN" "${args[@]}" "${extra[@]}" "$PYTHON" -m hpc_seaice train "$@"
