#!/usr/bin/env bash
# A real two-node SLURM cluster on one machine, for the tests marked `multinode`: two network
# namespaces are two hosts, n1 = 10.77.0.1 and n2 = 10.77.0.2, joined by a veth pair whose ends are
# both named hsnet0; n1/n2 resolve through /etc/hosts. slurmctld, slurmdbd, MariaDB and `slurmd n1` run
# in n1, `slurmd n2` in n2, each node daemon with its own hostname (UTS namespace), so jobs see
# SLURM_JOB_NODELIST=n[1-2] and ranks on two hosts as on a real cluster.
#
# Usage (as root):
#   tests/slurm/two_nodes.sh up       # installs the packages if missing, stops the single-node
#                                     # cluster (same daemons, same slurm.conf); no-op when already up
#   tests/slurm/two_nodes.sh status   # exit 0 when both nodes are usable
#   tests/slurm/two_nodes.sh down     # stops the daemons and deletes the namespaces
# Clients run from inside n1 and pin gloo/NCCL to the cluster interface, as users do on real clusters:
#   nsenter --net=/var/run/netns/hs-n1 env GLOO_SOCKET_IFNAME=hsnet0 srun -N 2 -n 4 python job.py
#   nsenter --net=/var/run/netns/hs-n1 env GLOO_SOCKET_IFNAME=hsnet0 \
#       hpc-seaice submit CONFIG --nodes 2 --gpus-per-node 0 --tasks-per-node 2 --wait
# Fault injection: `ip -n hs-n2 link set hsnet0 down` cuts n2 off (`... up` restores it; a cut longer
# than SlurmdTimeout=30 s marks n2 down until `scontrol update nodename=n2 state=resume`).
# Daemons enter the namespaces with `nsenter --net`, not `ip netns exec`, which remounts /sys and hides
# the cgroup mount that slurmd probes. Logs: /var/log/slurm-two/.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER=twonode
RUN=/run/slurm-two
LOG_DIR=/var/log/slurm-two
STATE=/var/spool/slurmctld-two
N1=(nsenter --net=/var/run/netns/hs-n1)
PIDFILES=("$RUN/slurmd-n2.pid" "$RUN/slurmd-n1.pid" "$RUN/slurmctld.pid" "$RUN/slurmdbd.pid" /run/mysqld/mysqld.pid)

# in_node NODE CMD...: run CMD in NODE's network namespace with NODE as its hostname.
in_node() {
  local node=$1
  shift
  nsenter --net="/var/run/netns/hs-$node" unshare --uts sh -c "hostname $node; exec \"\$@\"" sh "$@"
}

netns_up() {
  ip netns list 2>/dev/null | grep -q '^hs-n1' && ip netns list 2>/dev/null | grep -q '^hs-n2'
}

is_up() {
  local f
  netns_up || return 1
  grep -qx "ClusterName=$CLUSTER" /etc/slurm/slurm.conf 2>/dev/null || return 1
  for f in "${PIDFILES[@]}" /run/munge/munged.pid; do pid_alive "$f" || return 1; done
  [ "$("${N1[@]}" sinfo -h -N -o '%T' 2>/dev/null | grep -c -E '^(idle|mixed|allocated|completing)')" -eq 2 ]
}

make_hosts() {
  local n
  if ! netns_up; then
    ip netns del hs-n1 2>/dev/null || true
    ip netns del hs-n2 2>/dev/null || true
    ip netns add hs-n1
    ip netns add hs-n2
    ip link add hsnet-a type veth peer name hsnet-b
    ip link set hsnet-a netns hs-n1
    ip link set hsnet-b netns hs-n2
    ip -n hs-n1 link set hsnet-a name hsnet0
    ip -n hs-n2 link set hsnet-b name hsnet0
    ip -n hs-n1 addr add 10.77.0.1/24 dev hsnet0
    ip -n hs-n2 addr add 10.77.0.2/24 dev hsnet0
    for n in hs-n1 hs-n2; do
      ip -n "$n" link set hsnet0 up
      ip -n "$n" link set lo up
    done
  fi
  grep -q ' n1$' /etc/hosts || printf '10.77.0.1 n1\n10.77.0.2 n2\n' >>/etc/hosts
}

write_slurm_conf() {
  local cpus
  cpus=$(node_cpus)
  write_slurm_conf_file "$CLUSTER" "$STATE" "$RUN" n1 10.77.0.1 /var/spool/slurmd-%n slurmd-%n <<CONF
NodeName=n1 NodeAddr=10.77.0.1 NodeHostname=n1 CPUs=$cpus RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeAddr=10.77.0.2 NodeHostname=n2 CPUs=$cpus RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
}

up() {
  local t0
  need_root
  if is_up; then
    echo "two-node SLURM already up"
    return 0
  fi
  slurm_installed || bash "$SLURM_DIR/local_cluster.sh" install
  t0=$(date +%s%N)
  # Same daemons, same /etc/slurm/slurm.conf: the single-node cluster must not run at the same time.
  if pid_alive /run/slurm-local/slurmctld.pid || pid_alive /run/slurm-local/slurmd.pid \
    || pid_alive /run/slurm-local/slurmdbd.pid; then
    bash "$SLURM_DIR/local_cluster.sh" stop
  fi
  # MariaDB must listen on n1's loopback; one left over in this namespace is restarted there.
  if pid_alive /run/mysqld/mysqld.pid && ! netns_up; then stop_pidfiles /run/mysqld/mysqld.pid; fi
  mkdir -p "$RUN" "$LOG_DIR" /etc/slurm "$STATE" /var/spool/slurmd-n1 /var/spool/slurmd-n2
  make_hosts
  write_slurm_conf
  write_slurmdbd_conf "$RUN"
  start_munge
  start_mariadb "${N1[@]}"
  pid_alive "$RUN/slurmdbd.pid" || "${N1[@]}" slurmdbd
  register_cluster "$CLUSTER" "${N1[@]}"
  pid_alive "$RUN/slurmctld.pid" || in_node n1 slurmctld
  pid_alive "$RUN/slurmd-n1.pid" || in_node n1 slurmd -N n1
  pid_alive "$RUN/slurmd-n2.pid" || in_node n2 slurmd -N n2
  for _ in $(seq 1 160); do
    is_up && break
    sleep 0.25
  done
  if ! is_up; then
    echo "two-node SLURM did not come up; see $LOG_DIR/" >&2
    return 1
  fi
  "${N1[@]}" sinfo -N
  echo "two-node SLURM up in $((($(date +%s%N) - t0) / 1000000)) ms"
}

down() {
  need_root
  stop_pidfiles "${PIDFILES[@]}" /run/munge/munged.pid
  ip netns del hs-n1 2>/dev/null || true
  ip netns del hs-n2 2>/dev/null || true
  echo "two-node SLURM down"
}

status() {
  local f
  for f in "${PIDFILES[@]}" /run/munge/munged.pid; do
    if pid_alive "$f"; then
      printf '%-32s running (pid %s)\n' "$f" "$(cat "$f")"
    else
      printf '%-32s not running\n' "$f"
    fi
  done
  ip netns list
  if is_up; then
    "${N1[@]}" sinfo -N
    return 0
  fi
  return 3
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*)
  echo "usage: $0 up|down|status" >&2
  exit 2
  ;;
esac
