#!/usr/bin/env bash
# Train on one machine with torchrun: one process per GPU (or NPROC processes on CPU, gloo).
#
# Usage:
#   launch/torchrun.sh CONFIG.yaml [key=value ...]
#   NPROC=2 launch/torchrun.sh configs/demo/diffusion-data.yaml train.max_steps=100   # CPU, 2 ranks
#   MAX_RESTARTS=2 launch/torchrun.sh CONFIG.yaml   # restart all workers from the last checkpoint
#                                                    # when one of them dies
# NPROC defaults to the number of GPUs (nvidia-smi), else 1. PYTHON picks the interpreter (default:
# python on PATH, e.g. the activated .venv). The c10d rendezvous (--standalone) is used because
# restarted workers reconnect with it; the static rendezvous (--master-port alone) fails in gloo
# after a restart, and so can a restarted worker that reads the previous round's addresses from a
# rendezvous store shared across restarts (torch's default; pytorch/pytorch#135712), hence
# TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: a fresh store per restart. Ctrl-C / SIGTERM: torchrun
# forwards the signal, the trainer checkpoints at the next step and exits 75 (torchrun kills the
# workers after 30 s); running the same command again resumes from <run.dir>/checkpoints/latest.
set -euo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON=${PYTHON:-python}
NPROC=${NPROC:-$(ranks_default)}
need_config "[NPROC=N] $0 CONFIG.yaml [key=value ...]" $#
# torchrun would set 1 thread per worker; share the cores instead (matters for CPU runs).
share_threads "$NPROC"
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}

exec "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$NPROC" \
  --max-restarts="${MAX_RESTARTS:-0}" -m hpc_seaice train "$@"
