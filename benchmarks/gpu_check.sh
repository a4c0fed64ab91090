#!/usr/bin/env bash
# The GPU check of DESIGN.md ("Checking GPU code ...", item 6), for a machine with an NVIDIA GPU
# (no network needed; torch, triton and pytest already installed there).
#
#   benchmarks/gpu_check.sh OUTDIR        (from anywhere; it runs in the repository root)
#
# Stages, in order, each under `timeout`; a failed stage does not stop the next one:
#   nvidia-smi   OUTDIR/nvidia-smi.txt
#   build        in place, for sm_90 (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16): OUTDIR/build.log
#   env          versions, backends, extension: OUTDIR/env.txt
#   bandwidth    copy bandwidth of the card (CUDA events): OUTDIR/bandwidth.json
#   tests        pytest tests/ (less the Triton files): OUTDIR/tests.log, OUTDIR/tests.xml
#   triton       the Triton backend's CUDA tests: OUTDIR/triton-tests.{log,xml}
#   memcheck, racecheck   compute-sanitizer on a small case of each GPU backend (cuda, triton):
#                OUTDIR/sanitizer-*.log
#   bench        python -m benchmarks on cuda, B=64, N=64 128 256, T=100, float32 then bfloat16:
#                OUTDIR/plastic_rnn_cuda.{csv,json}, *.png, table in OUTDIR/bench.txt
#   dispatch     the measured cuda-vs-triton table from the bench rows: OUTDIR/_dispatch_table.py
# OUTDIR/summary.txt gets one line per stage: exit status (124 = timed out), seconds, log.
# The whole script stays within GPU_CHECK_BUDGET_S seconds (default 450, under 8 minutes):
# a stage's timeout is cut to what is left of it, and a stage with nothing left is skipped.
# Environment: PYTHON (default python3); GPU_CHECK_STAGES, a space-separated subset of the stage
# names to run (default: all); GPU_CHECK_DEVICE=cpu runs the Python parts on the CPU, for checking
# this script on a machine without a GPU (with GPU_CHECK_STAGES="env tests bench", say, to skip
# the build).

set -u -o pipefail # no -e: every stage runs even when an earlier one failed

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUTDIR=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-450}
KILL_AFTER=10 # SIGKILL this long after a stage's SIGTERM
DEVICE=${GPU_CHECK_DEVICE:-cuda}
STAGES=" ${GPU_CHECK_STAGES:-nvidia-smi build env bandwidth tests triton memcheck racecheck bench dispatch} "
export HEBBKERN_CHECK_DEVICE=$DEVICE # read by the Python snippets below
START=$SECONDS
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT, python $PY, device $DEVICE," \
    "budget ${BUDGET}s, stages:$STAGES" >>"$SUMMARY"

left() { echo $((BUDGET - (SECONDS - START))); }

# stage NAME LIMIT LOG CMD...: runs CMD (stdout and stderr appended to LOG) for at most LIMIT
# seconds, or what is left of the budget; records its exit status in the summary.
stage() {
    local name=$1 limit=$2 log=$3
    shift 3
    if [[ $STAGES != *" ${name%-pip} "* ]]; then
        return 0
    fi
    local remaining
    remaining=$(left)
    if ((remaining - KILL_AFTER < 5)); then
        printf '%-10s skipped: budget spent\n' "$name" >>"$SUMMARY"
        return 0
    fi
    ((limit > remaining - KILL_AFTER)) && limit=$((remaining - KILL_AFTER))
    local t0=$SECONDS rc
    echo "== $name (timeout ${limit}s): $*" >>"$log"
    timeout --kill-after="$KILL_AFTER" "$limit" "$@" >>"$log" 2>&1
    rc=$?
    printf '%-10s exit %-3d %4ds  %s\n' "$name" "$rc" $((SECONDS - t0)) "${log#"$OUTDIR"/}" >>"$SUMMARY"
    echo "gpu_check: $name exit $rc ($((SECONDS - t0)) s)" >&2
    return "$rc"
}

skip() { printf '%-10s skipped: %s\n' "$1" "$2" >>"$SUMMARY"; }

# ---- machine
stage nvidia-smi 15 "$OUTDIR/nvidia-smi.txt" nvidia-smi

# ---- build in place against this machine's torch (setup.py: C++ always, CUDA when nvcc is found)
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
if ! stage build 200 "$OUTDIR/build.log" "$PY" setup.py build_ext --inplace; then
    stage build-pip 150 "$OUTDIR/build.log" \
        "$PY" -m pip install --no-build-isolation --no-deps --no-index -e .
fi

# ---- what was built and what runs
stage env 60 "$OUTDIR/env.txt" "$PY" - <<'EOF'
import importlib, os, platform, subprocess
import torch
import hebbkern
from benchmarks import plastic_rnn as family
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for mod in ("triton", "pytest", "pytest_benchmark", "matplotlib", "tqdm", "numpy"):
    try:
        print(mod, getattr(importlib.import_module(mod), "__version__", "?"))
    except ImportError as e:
        print(mod, "missing:", e)
dev = torch.device(os.environ.get("HEBBKERN_CHECK_DEVICE", "cuda"))
if dev.type == "cuda":
    print("gpu", torch.cuda.get_device_name(), torch.cuda.get_device_capability())
print("hebbkern extension:", hebbkern.extension_available(), hebbkern._extension.load_error())
print("hebbkern.BACKENDS:", hebbkern.BACKENDS)
for p in family.all_providers():
    for dt in (torch.float32, torch.bfloat16):
        print(f"provider {p} {dt}:", family.provider_unavailable(p, dev, dt) or "available")
for args in (["rev-parse", "HEAD"], ["status", "--short"]):
    try:
        print("git", *args, "\n" + subprocess.run(["git", *args], capture_output=True, text=True).stdout)
    except OSError as e:
        print("git:", e)
EOF

# ---- copy bandwidth of the card
if [[ $DEVICE != cuda && $STAGES == *" bandwidth "* ]]; then
    STAGES=${STAGES/ bandwidth / }
    skip bandwidth "device $DEVICE"
fi
stage bandwidth 60 "$OUTDIR/bandwidth.log" "$PY" - "$OUTDIR/bandwidth.json" <<'EOF'
import json, sys
import torch
from benchmarks.common import copy_bandwidth_gbps
dev = torch.device("cuda")
res = {"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
       "copy_bandwidth_gbps": {str(n): copy_bandwidth_gbps(dev, nbytes=n) for n in (1 << 28, 1 << 30)}}
print(json.dumps(res, indent=1))
open(sys.argv[1], "w").write(json.dumps(res, indent=1) + "\n")
EOF

# ---- tests: tests/ without the Triton file and without the CPU-only Triton checks (the
# interpreter suite and the ahead-of-time compilation run in CI, on CPUs); CUDA tests skip
# themselves without a GPU.
stage tests 150 "$OUTDIR/tests.log" \
    "$PY" -m pytest tests -q -rs -p no:cacheprovider --junitxml="$OUTDIR/tests.xml" \
    --ignore=tests/test_plastic_rnn_triton.py --ignore=tests/test_plastic_rnn_triton_aot.py \
    --ignore=tests/test_cuda_build.py

# ---- the Triton backend's CUDA tests (one kernel configuration per case but one autotuned case:
# about 50 kernel compilations; the interpreter suite in CI covers more sizes)
stage triton 150 "$OUTDIR/triton-tests.log" \
    "$PY" -m pytest tests/test_plastic_rnn_triton.py -q -rs -p no:cacheprovider \
    -k "not interpreter_suite" --junitxml="$OUTDIR/triton-tests.xml"

# ---- compute-sanitizer on a small case of every GPU backend that hebbkern has
SMALL_CASE='
import os, sys, torch, hebbkern
from benchmarks import plastic_rnn as family
dev = torch.device(os.environ.get("HEBBKERN_CHECK_DEVICE", "cuda"))
names = [b for b in family.backend_providers() if b != "cpu"
         and family.provider_unavailable(b, dev, torch.float32) is None]
if len(sys.argv) > 1:  # --list: print the GPU backends and stop
    print(" ".join(names)); raise SystemExit(0)
for name in names:
    for rule in ("neuromod", "retro", "hebb"):
        x = family.make_inputs(family.Case(rule, 5, 3, 33, torch.float32, dev), requires_grad=True)
        h, s = hebbkern.plastic_rnn(x.u, x.w, x.alpha, backend=name, **x.kwargs)
        torch.autograd.grad((h, s.hebb), x.leaves, x.grad_outputs, allow_unused=True)
if dev.type == "cuda":
    torch.cuda.synchronize()
print("ran", names)
'
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
GPU_BACKENDS=
if [[ $STAGES == *" memcheck "* || $STAGES == *" racecheck "* ]]; then
    GPU_BACKENDS=$(timeout 60 "$PY" -c "$SMALL_CASE" --list 2>/dev/null | tail -n 1)
fi
if [[ $STAGES != *" memcheck "* && $STAGES != *" racecheck "* ]]; then
    : # not asked for
elif [[ -z $GPU_BACKENDS ]]; then
    skip memcheck "no GPU backend in hebbkern.BACKENDS yet"
    skip racecheck "no GPU backend in hebbkern.BACKENDS yet"
elif [[ -z $SANITIZER ]]; then
    skip memcheck "compute-sanitizer not found"
    skip racecheck "compute-sanitizer not found"
else
    for tool in memcheck racecheck; do
        # One Triton configuration: autotuning would compile and run three under the sanitizer.
        stage "$tool" 60 "$OUTDIR/sanitizer-$tool.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
            HEBBKERN_TRITON_AUTOTUNE=0 \
            "$SANITIZER" --tool "$tool" --error-exitcode 1 "$PY" -c "$SMALL_CASE"
    done
fi

# ---- benchmarks: the runner stops starting cases 40 s before its own timeout, so it writes its
# files itself; it also rewrites them after every case.
BENCH_LIMIT=$(($(left) - KILL_AFTER))
stage bench "$BENCH_LIMIT" "$OUTDIR/bench.log" \
    bash -c '"$1" -m benchmarks --device "$4" --rules neuromod --B 64 --N 64 128 256 --T 100 \
        --dtype float32 bfloat16 --min-time 0.2 --time-budget "$2" --out "$3" >"$3/bench.txt"' \
    _ "$PY" $((BENCH_LIMIT > 80 ? BENCH_LIMIT - 40 : BENCH_LIMIT / 2)) "$OUTDIR" "$DEVICE"

# ---- the measured choice between the GPU backends (cuda vs triton) for hebbkern.dispatch: the
# table to commit as hebbkern/_dispatch_table.py after review.
stage dispatch 30 "$OUTDIR/dispatch.log" \
    "$PY" -m benchmarks.dispatch_table "$OUTDIR/plastic_rnn_cuda.json" --out "$OUTDIR/_dispatch_table.py"

echo "total $((SECONDS - START)) s" >>"$SUMMARY"
cat "$SUMMARY"
