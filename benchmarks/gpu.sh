#!/usr/bin/env bash
# The benchmarks on one lent GPU (an H100/H200), in under 9 minutes, installing nothing.
#
#   bash benchmarks/gpu.sh            # from the repository root; results in $OUT/benchmarks (or benchmarks/results/gpu)
#   bash benchmarks/gpu.sh --dry      # (or GPU_DRY=1) every step on the CPU at toy sizes, in under 2 minutes:
#                                     # tests the script itself (tests/test_benchmarks_gpu_dry.py); results in
#                                     # $OUT/benchmarks (or benchmarks/results/gpu-dry); no number of it is a GPU's
#
# 1. checks the interpreter: torch with CUDA is required; the other imports decide which parts run;
# 2. speed benchmark at the paper geometry, bf16, eager (the headline numbers), with the sampling
#    batch sweep (1, 4, 16 on both sides: where the latent denoiser stops being launch-bound);
# 3. scaling benchmark, one process only (one GPU: no multi-process scaling): trainer throughput and
#    data wait, DDP engine vs DeepSpeed; skipped when h5py/deepspeed/tensorboard are missing;
# 4. compiled against eager sampling calls only (torch.compile reduce-overhead = CUDA graphs) for both
#    denoisers and the VAE decoder, with output agreement, in the time left (compilation takes minutes);
#    it does not repeat step 2's measurements: each eager call is timed beside its compiled one.
# Every step has a timeout inside one overall budget, and a failing step does not stop the next.
# Dry mode (--dry or GPU_DRY=1): the same steps on the CPU (bf16 autocast there too) with the toy
# geometry (tiny presets at 32 x 32), batch 1, one repeat, the smallest scaling run, and the compiled calls captured with
# torch.compile's aot_eager backend (Inductor's C++ generation of these networks takes minutes on a
# CPU; tests/test_gpu_paths_on_cpu.py compiles a small decoder with Inductor instead).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

DRY=${GPU_DRY:-0}
for arg in "$@"; do
    case $arg in
        --dry) DRY=1 ;;
        *) echo "gpu.sh: unknown argument $arg (only --dry)" >&2; exit 2 ;;
    esac
done
if [ "$DRY" = 1 ]; then
    BUDGET_S=${BENCH_BUDGET_S:-150}
    MIN_STEP_S=5
    DEVICE=cpu
    DEFAULT_RESULTS=benchmarks/results/gpu-dry
else
    BUDGET_S=${BENCH_BUDGET_S:-540}  # 9 minutes for everything
    MIN_STEP_S=30
    DEVICE=cuda
    DEFAULT_RESULTS=benchmarks/results/gpu
fi
START=$(date +%s)
RESULTS=${OUT:+$OUT/benchmarks}
RESULTS=${RESULTS:-$DEFAULT_RESULTS}
mkdir -p "$RESULTS"
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for candidate in .venv/bin/python python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" 2>/dev/null; then
            PY=$candidate
            break
        fi
    done
fi
if [ -z "$PY" ]; then
    echo "gpu.sh: no python with torch found (set PYTHON=...)" | tee "$RESULTS/gpu.log"
    exit 2
fi
export PYTHONUNBUFFERED=1 HDF5_USE_FILE_LOCKING=FALSE HPC_SEAICE_DS_SKIP_SHM=1
unset DS_ACCELERATOR

remaining() { echo $((BUDGET_S - ($(date +%s) - START))); }

# step NAME MAX_SECONDS COMMAND...: run with a timeout of min(MAX_SECONDS, time left - 10 s).
step() {
    local name=$1 max=$2
    shift 2
    local left
    left=$(($(remaining) - 10))
    local limit=$((max < left ? max : left))
    if [ "$limit" -lt "$MIN_STEP_S" ]; then
        echo "== $name: skipped, only $(remaining) s of the budget left" | tee -a "$RESULTS/gpu.log"
        return 0
    fi
    echo "== $name (timeout ${limit} s): $*" | tee -a "$RESULTS/gpu.log"
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    local code=$?
    tail -n 40 "$RESULTS/$name.log"
    echo "== $name: exit $code after $(($(date +%s) - START)) s in all" | tee -a "$RESULTS/gpu.log"
    FAILED=$((FAILED + (code != 0)))
    return 0
}
FAILED=0

{
    echo "== environment"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib
import torch
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), "| bf16", torch.cuda.is_bf16_supported())
for name in ("numpy", "yaml", "tqdm", "matplotlib", "h5py", "deepspeed", "tensorboard", "scipy"):
    try:
        importlib.import_module(name)
        print(f"  {name}: ok")
    except Exception as exc:  # report, do not fail: the parts that need it are skipped
        print(f"  {name}: MISSING ({type(exc).__name__})")
EOF
} 2>&1 | tee -a "$RESULTS/gpu.log"

if [ "$DRY" = 1 ]; then
    echo "gpu.sh: dry mode: every step on the CPU at toy sizes (tests the script; no GPU numbers)" | tee -a "$RESULTS/gpu.log"
    export DS_ACCELERATOR=cpu
elif ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: torch sees no GPU; nothing to do" | tee -a "$RESULTS/gpu.log"
    exit 2
fi
if ! "$PY" -c "import numpy, yaml, tqdm" 2>/dev/null; then
    echo "gpu.sh: numpy, pyyaml and tqdm are needed by the package; not installing anything" | tee -a "$RESULTS/gpu.log"
    exit 2
fi
PLOT=()
"$PY" -c "import matplotlib" 2>/dev/null || PLOT=(--no-plot)

# The headline: paper geometry, bf16 autocast, batch 8 for both spaces (halved on out-of-memory),
# plus the sampling batch sweep 1, 4, 16 (same batch on both sides).
if [ "$DRY" = 1 ]; then
    SPEED=(--toy --batch-size 1 --repeats 1 --retries 0 --threads 1)
    SWEEP=1,2
    SCALING=(--quick --runs 1r-b1x-t1)
    COMPILE=(--compile-backend aot_eager)
else
    SPEED=(--batch-size 8)
    SWEEP=1,4,16
    SCALING=()
    COMPILE=()
fi
step speed_gpu_eager 200 "$PY" -m benchmarks.speed --device "$DEVICE" --precision bf16 "${SPEED[@]}" \
    --sweep "$SWEEP" --no-compile-compare --name speed_gpu_eager --out "$RESULTS" ${PLOT[@]+"${PLOT[@]}"}

# One GPU: one process per run (DDP engine without peers, DeepSpeed ZeRO-1), trainer throughput and data wait.
if "$PY" -c "import h5py, deepspeed, tensorboard" 2>/dev/null; then
    step scaling_gpu 120 "$PY" -m benchmarks.scaling --device "$DEVICE" ${SCALING[@]+"${SCALING[@]}"} \
        --name scaling_gpu --out "$RESULTS"
else
    echo "== scaling_gpu: skipped (h5py, deepspeed or tensorboard missing)" | tee -a "$RESULTS/gpu.log"
fi

# Compiled vs eager sampling calls (compile_for_sampling: CUDA graphs), each pair timed in this one run,
# with the largest output difference; --compile-only: no training, sampler, encode or sweep timings
# again (step 2 has them). Compilation is most of its time; a timeout here still leaves the eager
# results above, and its log the per-phase timings printed so far.
step speed_gpu_compile 330 "$PY" -m benchmarks.speed --device "$DEVICE" --precision bf16 "${SPEED[@]}" \
    ${COMPILE[@]+"${COMPILE[@]}"} --compile-only --name speed_gpu_compile --out "$RESULTS"

echo "== done in $(($(date +%s) - START)) s, $FAILED step(s) failed; results in $RESULTS" | tee -a "$RESULTS/gpu.log"
find "$RESULTS" -maxdepth 1 -type f -printf "%s\t%f\n" | sort -k2 | tee -a "$RESULTS/gpu.log"
[ "$DRY" != 1 ] || [ "$FAILED" = 0 ]  # dry mode tests the script: a failed step fails it
