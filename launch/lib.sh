# shellcheck shell=bash
# Shared by launch/torchrun.sh and launch/mpirun.sh (sourced): how many ranks, how many threads.

# usable_cpus: the processors this shell may run on. Bare `nproc` obeys OMP_NUM_THREADS (often 1
# in users' shells and in our tools), which would give every rank one thread on a 64-core node.
usable_cpus() {
  env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN
}

# ranks_default: the number of GPUs nvidia-smi lists, or 1 without GPUs.
ranks_default() {
  local n
  n=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
  [ "$n" -ge 1 ] || n=1
  echo "$n"
}

# share_threads RANKS: OMP_NUM_THREADS = usable CPUs / RANKS (at least 1), unless the user set it.
share_threads() {
  if ! [ "$1" -ge 1 ] 2>/dev/null; then
    echo "$0: the number of ranks must be a whole number >= 1, got '$1'" >&2
    exit 2
  fi
  local threads=$(($(usable_cpus) / $1))
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((threads > 0 ? threads : 1))}
}

# need_config USAGE ARGC: print the usage line and exit 2 without a config argument.
need_config() {
  if [ "$2" -lt 1 ]; then
    echo "usage: $1" >&2
    exit 2
  fi
}
