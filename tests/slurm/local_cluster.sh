#!/usr/bin/env bash
# A real single-node SLURM on this machine, for the tests marked `slurm` and for trying
# `hpc-seaice submit` locally: Debian's slurmctld + slurmd + munge, and slurmdbd with MariaDB so that
# `sacct` works (submitit polls it). All on 127.0.0.1, no systemd, no cgroups; up in a few seconds.
#
# Usage (as root):
#   tests/slurm/local_cluster.sh install   # apt packages, once (skipped when already installed)
#   tests/slurm/local_cluster.sh start     # no-op when already running; stops the two-node cluster
#   tests/slurm/local_cluster.sh status    # exit 0 when every daemon runs and the node is usable
#   tests/slurm/local_cluster.sh stop
# Then e.g. `sinfo`, `srun -n 2 hostname`, `hpc-seaice submit ... --gpus-per-node 0 --tasks-per-node 2`.
# Logs: /var/log/slurm/. The pytest fixtures (tests/conftest_slurm.py) call this script themselves.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER=local
RUN=/run/slurm-local
LOG_DIR=/var/log/slurm
STATE=/var/spool/slurmctld-local
SPOOL=/var/spool/slurmd-local
PIDFILES=("$RUN/slurmd.pid" "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid" /run/mysqld/mysqld.pid /run/munge/munged.pid)

is_up() {
  local f
  grep -qx "ClusterName=$CLUSTER" /etc/slurm/slurm.conf 2>/dev/null || return 1
  for f in "${PIDFILES[@]}"; do pid_alive "$f" || return 1; done
  scontrol ping 2>/dev/null | grep -q UP
}

write_slurm_conf() {
  local host cpus mem_mb
  host=$(hostname -s)
  cpus=$(node_cpus)
  mem_mb=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024))
  write_slurm_conf_file "$CLUSTER" "$STATE" "$RUN" "$host" 127.0.0.1 "$SPOOL" slurmd <<CONF
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  local t0
  need_root
  require_installed
  if is_up; then
    echo "single-node SLURM already running"
    return 0
  fi
  t0=$(date +%s%N)
  # Same daemons, same /etc/slurm/slurm.conf: the two-node cluster must not be up at the same time.
  if ip netns list 2>/dev/null | grep -q '^hs-n1' || pid_alive /run/slurm-two/slurmctld.pid; then
    bash "$SLURM_DIR/two_nodes.sh" down
  fi
  mkdir -p /etc/slurm "$STATE" "$SPOOL" "$LOG_DIR" "$RUN"
  write_slurm_conf
  write_slurmdbd_conf "$RUN"
  start_munge
  # shellcheck disable=SC2119  # no namespace prefix: MariaDB runs in this host's namespace
  start_mariadb
  pid_alive "$RUN/slurmdbd.pid" || slurmdbd
  register_cluster "$CLUSTER"
  pid_alive "$RUN/slurmctld.pid" || slurmctld
  pid_alive "$RUN/slurmd.pid" || slurmd
  for _ in $(seq 1 160); do
    sinfo -h -o '%T' 2>/dev/null | grep -q -E '^(idle|mixed|allocated|completing)' && break
    sleep 0.25
  done
  if ! is_up; then
    echo "single-node SLURM did not come up; see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log" >&2
    return 1
  fi
  sinfo
  echo "single-node SLURM up in $((($(date +%s%N) - t0) / 1000000)) ms"
}

stop() {
  need_root
  stop_pidfiles "${PIDFILES[@]}"
  echo "single-node SLURM stopped"
}

status() {
  local f
  for f in "${PIDFILES[@]}"; do
    if pid_alive "$f"; then
      printf '%-32s running (pid %s)\n' "$f" "$(cat "$f")"
    else
      printf '%-32s not running\n' "$f"
    fi
  done
  if is_up; then
    sinfo
    return 0
  fi
  return 3
}

case "${1:-}" in
install) install_packages ;;
start) start ;;
stop) stop ;;
status) status ;;
*)
  echo "usage: $0 install|start|stop|status" >&2
  exit 2
  ;;
esac
