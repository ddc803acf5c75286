# shellcheck shell=bash
# Pieces shared by local_cluster.sh and two_nodes.sh (sourced, never run on its own).
#
# Both clusters use Debian's SLURM (slurm-wlm 22.05), munge, and slurmdbd backed by MariaDB: submitit
# learns job states from `sacct`, and without accounting a job that dies hard leaves
# `job.result()` waiting forever. Everything listens on loopback or on the namespace addresses.
# Both write /etc/slurm/slurm.conf and run the same daemons, so only one of them can be up at a time;
# each script brings the other one down before it starts.

SLURM_PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
SLURM_COMMANDS=(slurmctld slurmd slurmdbd sbatch srun sacct scontrol sacctmgr munged mariadbd)
# shellcheck disable=SC2034  # used by the scripts that source this file
SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$(basename "$0"): needs root (it starts system daemons and writes /etc/slurm)" >&2
    exit 2
  fi
}

slurm_installed() {
  local cmd
  for cmd in "${SLURM_COMMANDS[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || return 1
  done
}

install_packages() {
  need_root
  if slurm_installed; then
    echo "SLURM, munge and MariaDB are already installed"
    return 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${SLURM_PACKAGES[@]}" iproute2 util-linux >/dev/null
  # The Debian packages try to start their services; no init system here, and we start them ourselves.
  slurm_installed || { echo "install: packages installed but commands missing" >&2; return 1; }
  echo "installed: ${SLURM_PACKAGES[*]}"
}

require_installed() {
  if ! slurm_installed; then
    echo "$(basename "$0"): SLURM is not installed; run: sudo tests/slurm/local_cluster.sh install" >&2
    exit 3
  fi
}

# node_cpus: the processors this machine has online, whatever OMP_NUM_THREADS says. `nproc` obeys
# OMP_NUM_THREADS (and OMP_THREAD_LIMIT): started from a shell with OMP_NUM_THREADS=1, as torchrun
# sets for its workers and many cluster profiles do, it prints 1, the node is declared with CPUs=1
# and every 2-task job pends forever with reason PartitionConfig. Without them nproc still counts
# the CPUs this process may run on (affinity, cgroup cpusets).
node_cpus() {
  local cpus
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
  case "$cpus" in
  '' | *[!0-9]* | 0)
    echo "cannot count this machine's processors (nproc printed '$cpus')" >&2
    return 1
    ;;
  esac
  echo "$cpus"
}

pid_alive() {  # pid_alive PIDFILE: the process named in PIDFILE runs
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pidfiles() {  # stop_pidfiles PIDFILE...: TERM, wait up to 10 s, then KILL what is left
  local f p pids="" alive
  for f in "$@"; do
    if pid_alive "$f"; then
      p=$(cat "$f")
      pids="$pids $p $({ pgrep -P "$p" || true; } | tr "\n" " ")"
    fi
  done
  [ -n "${pids// /}" ] || return 0
  # shellcheck disable=SC2086  # word splitting of the pid list is intended
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 40); do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.25
  done
  if [ -n "$alive" ]; then  # a slurmd cut off from its controller can ignore TERM
    # shellcheck disable=SC2086
    kill -9 $alive 2>/dev/null || true
  fi
  for f in "$@"; do pid_alive "$f" || rm -f "$f"; done
}

start_munge() {
  mkdir -p /run/munge
  chown munge:munge /run/munge
  pid_alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
}

# start_mariadb [NETNS-PREFIX...]: MariaDB for slurmdbd, bound to the loopback of the given network
# namespace (none = this one), with the database and user that slurmdbd.conf names.
start_mariadb() {
  mkdir -p /run/mysqld "$LOG_DIR"
  chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  if ! pid_alive /run/mysqld/mysqld.pid; then
    "$@" setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --pid-file=/run/mysqld/mysqld.pid >"$LOG_DIR/mariadb.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 240); do
    "$@" mariadb-admin ping >/dev/null 2>&1 && break
    sleep 0.25
  done
  "$@" mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

write_slurmdbd_conf() {  # write_slurmdbd_conf RUN_DIR
  mkdir -p /etc/slurm
  cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$1/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
}

# register_cluster NAME [NETNS-PREFIX...]: slurmdbd must know the cluster before slurmctld starts.
register_cluster() {
  local name=$1
  shift
  for _ in $(seq 1 240); do
    "$@" sacctmgr -i add cluster "$name" >/dev/null 2>&1 || true
    "$@" sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$name" && return 0
    sleep 0.25
  done
  echo "slurmdbd did not accept cluster $name (see $LOG_DIR/slurmdbd.log)" >&2
  return 1
}

# slurm_conf_common CLUSTER STATE_DIR RUN_DIR CTLD_HOST CTLD_ADDR: the settings both clusters share.
# No systemd and no cgroups in these containers: linuxproc process tracking, no task plugin.
# ReturnToService=2 lets a node that was marked down (lost link) come back by itself.
# cred_expire=10: a requeued job waits this long before it may start again (default 120 s); short so
# the requeue/resume tests run in seconds, and sched_interval=1 starts it as soon as it may (default
# 60 s). Real clusters keep their own values.
slurm_conf_common() {
  cat <<CONF
ClusterName=$1
SlurmctldHost=$4($5)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$2
SlurmctldPidFile=$3/slurmctld.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
JobRequeue=1
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
CONF
}

# write_slurm_conf_file CLUSTER STATE_DIR RUN_DIR CTLD_HOST CTLD_ADDR SLURMD_SPOOL SLURMD_NAME <NODES:
# /etc/slurm/slurm.conf from the shared settings, slurmd's spool folder, its pid and log files named
# SLURMD_NAME (e.g. `slurmd-%n`, one per node) and the node and partition lines read from stdin;
# written beside the old one and renamed over it, so a daemon never reads half a file.
write_slurm_conf_file() {
  {
    slurm_conf_common "$1" "$2" "$3" "$4" "$5"
    cat <<CONF
SlurmdSpoolDir=$6
SlurmdPidFile=$3/$7.pid
SlurmdLogFile=$LOG_DIR/$7.log
CONF
    cat # the node and partition lines
  } >/etc/slurm/slurm.conf.tmp
  mv /etc/slurm/slurm.conf.tmp /etc/slurm/slurm.conf
}
