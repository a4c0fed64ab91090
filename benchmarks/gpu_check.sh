#!/usr/bin/env bash
# The GPU check of DESIGN.md ("Checking GPU code ...", item 8), for a lent machine with an NVIDIA
# GPU: one call, inside 9 minutes, with whatever torch the machine has (2.11 on the GPU image).
#
#   benchmarks/gpu_check.sh OUTDIR        (from anywhere; it runs in the repository root)
#
# A lent machine hands back at most 8 files, so OUTDIR gets exactly two:
#   OUTDIR/summary.txt        one line per stage (exit status, 124 = timed out; seconds; log),
#                             then the closing lines of the tests and the benchmark tables
#   OUTDIR/gpu_check.tar.gz   everything: every log, junit XML, json/csv/png of the benchmarks,
#                             the measured _dispatch_table.py, and summary.txt
#
# Stages, in this order, each under `timeout`; a failed stage does not stop the next one:
#   nvidia-smi  the card
#   build       in place for sm_90 (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16), or, with
#               GPU_CHECK_PREBUILT=DIR (made here by `make gpu-prebuilt` and carried to the
#               machine), DIR/_C*.so copied in when DIR/torch-version.txt matches this torch
#   env         versions, backends, extension
#   tests       the GPU tests with `pytest -n 8` and a per-test timeout (serial and without the
#               timeout where pytest-xdist / pytest-timeout are missing)
#   cluster     the cluster forward and backward (off by default until a GPU has run them; NOTES.md
#               M9, M11, M12): the CUDA plastic_rnn tests with HEBBKERN_CUDA_CLUSTERS=1 and =global
#               (blocks synchronised through global memory), then
#               neuromod/hebb at N = 128, T = 100, B = 1 8 32 256 (cuda, fwd and fwd+bwd) with the
#               switch off, on and global
#   memcheck, racecheck   compute-sanitizer on a small case of every GPU backend of plastic_rnn
#               and on trace_update's CUDA kernels (and plastic_lstm's Triton path), then the
#               plastic_rnn cases again with the cluster kernels switched on
#   bench       python -m benchmarks: the issue case with every peer (eager, compile, compile-ro,
#               graph) and backend, each GPU backend also captured in a CUDA graph (cuda-graph,
#               triton-graph), then N = 64 128 256 (B = 64, T = 100) for cuda and triton
#   population  python -m benchmarks population: issue 13's population row (1024 individuals with
#               per-sample w/alpha/eta, neuromod, N = 32, T = 100) against the batched eager loop,
#               it in a CUDA graph, and torch.compile of its step; fwd+bwd first, the peers that
#               compile last (a cut run keeps the others)
#   families    python -m benchmarks.gpu_families: trace_update, plastic_step, plastic_lstm, hebbian
#   lstm        python -m benchmarks plastic_lstm --device cuda: the issue-14 language model (3 layers,
#               hidden 1149, BPTT 70, batch 64 and 16) against eager, CUDA-graphed eager, compile
#   agent       python -m benchmarks plastic_step --device cuda: the agent loop (200 steps, B=64,
#               N=128, fwd+bwd) against eager, compile and the eager loop in a CUDA graph
#   fop         python -m benchmarks.fop --device cuda (ResNet-18 step rows and iterations)
#   lifetime    python -m benchmarks lifetime --device cuda: one generation of the evolved plastic
#               network (population 500, 400 trials), CUDA kernel against the eager reference
#   dispatch    the measured cuda-vs-triton table from the bench rows (_dispatch_table.py)
# Every stage's timeout is cut to what is left of GPU_CHECK_BUDGET_S (default 480 s); the archive
# is written after the last stage, so the whole script ends inside 9 minutes.
#
# Environment: PYTHON (default python3); GPU_CHECK_STAGES, a space-separated subset of the stage
# names (default: all); GPU_CHECK_DEVICE=cpu runs the Python parts on the CPU, to check this script
# on a machine without a GPU (CI does, in tests/test_gpu_check.py); GPU_CHECK_QUICK=1 uses tiny
# benchmark sizes; GPU_CHECK_TESTS overrides the pytest arguments of the tests stage and
# GPU_CHECK_PROVIDERS the providers of the issue-case benchmark (default: all); GPU_CHECK_CLUSTER_TESTS
# the pytest arguments of the cluster stage.

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
BUDGET=${GPU_CHECK_BUDGET_S:-480}
KILL_AFTER=5 # SIGKILL this long after a stage's SIGTERM
DEVICE=${GPU_CHECK_DEVICE:-cuda}
QUICK=${GPU_CHECK_QUICK:-0}
ALL_STAGES="nvidia-smi build env tests cluster memcheck racecheck bench population families agent lstm fop lifetime dispatch"
STAGES=" ${GPU_CHECK_STAGES:-$ALL_STAGES} "
export HEBBKERN_CHECK_DEVICE=$DEVICE PYTHONUNBUFFERED=1
START=$SECONDS
WORK=$OUTDIR/gpu_check # everything but the summary; archived at the end
rm -rf "$WORK" "$OUTDIR/gpu_check.tar.gz"
mkdir -p "$WORK"
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $ROOT, python $PY, device $DEVICE," \
    "budget ${BUDGET}s, stages:$STAGES" >>"$SUMMARY"

left() { echo $((BUDGET - (SECONDS - START))); }
wanted() { [[ $STAGES == *" $1 "* ]]; }

# stage NAME LIMIT LOG CMD...: runs CMD (stdout and stderr appended to LOG) for at most LIMIT
# seconds, or what is left of the budget; records its exit status in the summary.
stage() {
    local name=$1 limit=$2 log=$3
    shift 3
    wanted "${name%-sweep}" || return 0 # bench-sweep is part of bench
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

# ---- the card
if [[ $DEVICE == cuda ]]; then
    stage nvidia-smi 10 "$WORK/nvidia-smi.txt" nvidia-smi
elif wanted nvidia-smi; then
    skip nvidia-smi "device $DEVICE"
fi

# ---- the extension: prebuilt for this torch, or built in place (C++ always, CUDA when nvcc is
# found; setup.py)
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
PREBUILT=${GPU_CHECK_PREBUILT:-}
if wanted build && [[ -n $PREBUILT ]]; then
    have=$(cat "$PREBUILT/torch-version.txt" 2>/dev/null)
    want=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
    if [[ -n $have && $have == "$want" ]] && cp "$PREBUILT"/_C*.so hebbkern/ 2>>"$WORK/build.log"; then
        skip build "prebuilt extension from $PREBUILT (torch $have, commit $(cat "$PREBUILT/commit.txt" 2>/dev/null))"
        STAGES=${STAGES/ build / }
    else
        echo "prebuilt extension in $PREBUILT is for torch '$have', this is '$want': building" >>"$WORK/build.log"
    fi
fi
stage build 240 "$WORK/build.log" "$PY" setup.py build_ext --inplace

# ---- what was built and what runs
stage env 30 "$WORK/env.txt" "$PY" - <<'EOF'
import importlib, os, platform, subprocess
import torch
import hebbkern
from benchmarks import plastic_rnn as family
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
for mod in ("triton", "pytest", "xdist", "pytest_timeout", "matplotlib", "tqdm", "numpy"):
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
    print(f"provider {p}:", family.provider_unavailable(p, dev, torch.float32) or "available")
for args in (["rev-parse", "HEAD"], ["status", "--short"]):
    try:
        print("git", *args, "\n" + subprocess.run(["git", *args], capture_output=True, text=True).stdout)
    except OSError as e:
        print("git:", e)
EOF

# ---- the GPU tests: every file with CUDA tests (the Triton file without its CPU interpreter
# suite, which CI runs), in 8 workers, each test under a timeout
if [[ -n ${GPU_CHECK_TESTS:-} ]]; then
    read -r -a TEST_ARGS <<<"$GPU_CHECK_TESTS"
else
    TEST_ARGS=(tests/test_plastic_rnn_cuda.py tests/test_trace_update_cuda.py
        tests/test_plastic_rnn_triton.py tests/test_plastic_lstm_triton.py tests/test_cuda_graphs.py
        tests/test_backends.py tests/test_plastic_step_triton.py
        tests/test_fop.py::test_cuda_parameters -k "not interpreter_suite")
fi
PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL+=(-n 8)
"$PY" -c "import pytest_timeout" 2>/dev/null && PARALLEL+=(--timeout 120)
stage tests 200 "$WORK/tests.log" "$PY" -m pytest -q -rfEs -p no:cacheprovider "${PARALLEL[@]}" \
    --junitxml="$WORK/tests.xml" "${TEST_ARGS[@]}"

# ---- the cluster kernels, switched on (HEBBKERN_CUDA_CLUSTERS=1): their correctness on the card
# first, then the rows they are for against one block per sample in the same run; exit status: the
# tests' (0 when they pass), else the benchmarks'.
if [[ $QUICK == 1 ]]; then
    CLUSTER_ROWS=(--quick) CLUSTER_MIN=0.02
else
    CLUSTER_ROWS=(--rules neuromod hebb --B 1 8 32 256 --N 128 --T 100) CLUSTER_MIN=0.2
fi
# GPU_CHECK_CLUSTER_TESTS overrides the pytest arguments (the CPU run of this script in CI, whose
# source tree has no built extension, gives a file that needs none).
# The CUDA-graph test too: the cluster launches (and the cooperative one, M12) inside a capture.
export CLUSTER_TESTS=${GPU_CHECK_CLUSTER_TESTS:-tests/test_plastic_rnn_cuda.py tests/test_cuda_graphs.py::test_plastic_rnn_forward_backward_in_a_cuda_graph}
CLUSTER_PROVIDER=cuda
[[ $DEVICE != cuda ]] && CLUSTER_PROVIDER=eager # the CPU run of this script checks the stage
# HEBBKERN_CUDA_CLUSTERS=global runs the sm_80 exchange (blocks synchronised through global memory,
# M12) on this card too: its tests, and its rows beside the thread-block clusters'.
stage cluster 150 "$WORK/cluster.log" bash -c '
    PY=$1 DEV=$2 MIN=$3 OUT=$4 PROV=$5; shift 5
    read -r -a TESTS <<<"$CLUSTER_TESTS"
    rc=0
    for mode in 1 global; do
        HEBBKERN_CUDA_CLUSTERS=$mode "$PY" -m pytest -q -rfEs -p no:cacheprovider \
            --junitxml="$OUT/cluster_tests_$mode.xml" "${TESTS[@]}"
        t=$?
        ((rc == 0)) && rc=$t
    done
    for on in 0 1 global; do
        HEBBKERN_CUDA_CLUSTERS=$on "$PY" -m benchmarks --device "$DEV" --providers "$PROV" \
            --modes fwd fwd+bwd --min-time "$MIN" --time-budget 20 --out "$OUT" \
            --tag "clusters$on" "$@" >"$OUT/plastic_rnn_clusters$on.txt"
        b=$?
        ((rc == 0)) && rc=$b
    done
    exit "$rc"' _ "$PY" "$DEVICE" "$CLUSTER_MIN" "$WORK" "$CLUSTER_PROVIDER" "${CLUSTER_ROWS[@]}"

# ---- compute-sanitizer on small cases of every GPU kernel hebbkern has
SMALL_CASE='
import os, sys, torch, hebbkern
from benchmarks import plastic_rnn as family
from hebbkern import backends
dev = torch.device(os.environ.get("HEBBKERN_CHECK_DEVICE", "cuda"))
names = [b for b in family.backend_providers() if b != "cpu"
         and family.provider_unavailable(b, dev, torch.float32) is None]
if len(sys.argv) > 1:  # --list: print the GPU backends and stop
    print(" ".join(names)); raise SystemExit(0)
for name in names:
    for rule in ("neuromod", "retro", "hebb"):
        for N in (33, 130):
            x = family.make_inputs(family.Case(rule, 5, 3, N, torch.float32, dev), requires_grad=True)
            h, s = hebbkern.plastic_rnn(x.u, x.w, x.alpha, backend=name, **x.kwargs)
            torch.autograd.grad((h, s.hebb), x.leaves, x.grad_outputs, allow_unused=True)
if "cuda" in names:  # trace_update: several blocks per sample, partial rows in global memory too
    for K in (33, 1000):
        t = torch.randn(5, 70, K, device=dev, requires_grad=True)
        pre, post = torch.randn(5, 70, device=dev), torch.randn(5, K, device=dev)
        out = hebbkern.trace_update(t, pre, post, eta=0.1, rule="oja", backend="cuda")
        out.sum().backward()
if "triton" in names:  # the Triton path of plastic_lstm: two column blocks, the second partial
    for rule in ("neuromod", "retro"):
        lstm = hebbkern.nn.PlasticLSTM(70, 70, rule=rule, device=dev)
        out, st = lstm(torch.randn(5, 3, 70, device=dev))
        torch.autograd.grad(out.square().sum() + st[2].sum(), list(lstm.parameters()))
if dev.type == "cuda":
    torch.cuda.synchronize()
print("ran", names)
'
SANITIZER=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
GPU_BACKENDS=
if wanted memcheck || wanted racecheck; then
    GPU_BACKENDS=$(timeout 60 "$PY" -c "$SMALL_CASE" --list 2>/dev/null | tail -n 1)
fi
if ! wanted memcheck && ! wanted racecheck; then
    : # not asked for
elif [[ -z $GPU_BACKENDS ]]; then
    skip memcheck "no GPU backend available"
    skip racecheck "no GPU backend available"
elif [[ -z $SANITIZER ]]; then
    skip memcheck "compute-sanitizer not found"
    skip racecheck "compute-sanitizer not found"
else
    for tool in memcheck racecheck; do
        # One Triton configuration: autotuning would compile and run three under the sanitizer.
        # Then the same cases with the cluster kernels switched on (forward and backward, M9, M11:
        # on sm_90 the launch rule gives these batches of 3 several blocks per sample), and with
        # their blocks synchronised through global memory (M12).
        stage "$tool" 60 "$WORK/sanitizer-$tool.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
            HEBBKERN_TRITON_AUTOTUNE=0 bash -c '
            "$1" --tool "$2" --error-exitcode 1 "$3" -c "$4" &&
                HEBBKERN_CUDA_CLUSTERS=1 "$1" --tool "$2" --error-exitcode 1 "$3" -c "$4" &&
                HEBBKERN_CUDA_CLUSTERS=global "$1" --tool "$2" --error-exitcode 1 "$3" -c "$4"' \
            _ "$SANITIZER" "$tool" "$PY" "$SMALL_CASE"
    done
fi

# ---- benchmarks. The plastic_rnn runner stops starting measurements at its --time-budget and
# rewrites its files after every case, so a cut run keeps what it measured.
if [[ $QUICK == 1 ]]; then
    ISSUE=(--quick) SWEEP=(--quick --tag sweep) BENCH_MIN=0.02
else
    ISSUE=(--issue-case --tag issue) SWEEP=(--rules neuromod --B 64 --N 64 128 256 --T 100 --tag sweep)
    BENCH_MIN=0.2
fi
if [[ -n ${GPU_CHECK_PROVIDERS:-} ]]; then
    read -r -a PROVIDER_LIST <<<"$GPU_CHECK_PROVIDERS"
    ISSUE+=(--providers "${PROVIDER_LIST[@]}")
fi
bench_budget() { local l=$(($(left) - KILL_AFTER)); echo $((l > 60 ? $1 : l / 3)); }
stage bench 100 "$WORK/bench.log" \
    bash -c '"$1" -m benchmarks --device "$2" "${@:6}" --modes fwd+bwd --min-time "$3" \
        --time-budget "$4" --out "$5" >"$5/plastic_rnn_issue.txt"' \
    _ "$PY" "$DEVICE" "$BENCH_MIN" "$(bench_budget 60)" "$WORK" "${ISSUE[@]}"
stage bench-sweep 100 "$WORK/bench.log" \
    bash -c '"$1" -m benchmarks --device "$2" "${@:6}" --providers cuda triton --min-time "$3" \
        --time-budget "$4" --out "$5" >"$5/plastic_rnn_sweep.txt"' \
    _ "$PY" "$DEVICE" "$BENCH_MIN" "$(bench_budget 60)" "$WORK" "${SWEEP[@]}"

if [[ $QUICK == 1 ]]; then
    POPULATION=(--quick --providers eager graph cuda triton)
else
    POPULATION=(--issue-case --tag issue --providers eager graph cuda cuda-graph triton compile compile-ro)
fi
stage population 90 "$WORK/population.log" \
    bash -c '"$1" -m benchmarks population --device "$2" "${@:6}" --modes fwd+bwd fwd \
        --min-time "$3" --time-budget "$4" --no-plot --out "$5" >"$5/population.txt"' \
    _ "$PY" "$DEVICE" "$BENCH_MIN" "$(bench_budget 60)" "$WORK" "${POPULATION[@]}"

FAMILY_ARGS=(--min-time "$BENCH_MIN")
[[ $QUICK == 1 ]] && FAMILY_ARGS+=(--quick)
stage families 60 "$WORK/families.log" \
    bash -c '"$1" -m benchmarks.gpu_families --device "$2" --out "$3" "${@:4}" >"$3/families.txt"' \
    _ "$PY" "$DEVICE" "$WORK" "${FAMILY_ARGS[@]}"

AGENT_ARGS=(--min-time "$BENCH_MIN")
[[ $QUICK == 1 ]] && AGENT_ARGS+=(--quick)
stage agent 90 "$WORK/agent.log" \
    bash -c '"$1" -m benchmarks plastic_step --device "$2" --out "$3" "${@:4}" >"$3/agent.txt"' \
    _ "$PY" "$DEVICE" "$WORK" "${AGENT_ARGS[@]}"

LSTM_ARGS=(--min-time "$BENCH_MIN")
[[ $QUICK == 1 ]] && LSTM_ARGS+=(--quick)
stage lstm 120 "$WORK/lstm.log" \
    bash -c '"$1" -m benchmarks plastic_lstm --device "$2" --out "$3" "${@:4}" >"$3/plastic_lstm.txt"' \
    _ "$PY" "$DEVICE" "$WORK" "${LSTM_ARGS[@]}"

FOP_ARGS=(--rounds 2 --step-rounds 2 --min-time "$BENCH_MIN" --providers torch reference foreach)
[[ $QUICK == 1 ]] && FOP_ARGS+=(--quick)
stage fop 60 "$WORK/fop.log" \
    bash -c '"$1" -m benchmarks.fop --device "$2" --out "$3" "${@:4}" >"$3/fop.txt"' \
    _ "$PY" "$DEVICE" "$WORK" "${FOP_ARGS[@]}"

LIFETIME_ARGS=(--repeats 3)
[[ $QUICK == 1 ]] && LIFETIME_ARGS=(--population 8 --neurons 16 --trials 4 --ref-trials 2)
stage lifetime 60 "$WORK/lifetime.log" \
    bash -c '"$1" -m benchmarks lifetime --device "$2" --out "$3" "${@:4}" >"$3/lifetime.txt"' \
    _ "$PY" "$DEVICE" "$WORK" "${LIFETIME_ARGS[@]}"

# ---- the measured choice between the GPU backends (cuda vs triton) for hebbkern.backends: the
# table to commit as hebbkern/_dispatch_table.py after review.
SWEEP_JSON=$(ls "$WORK"/plastic_rnn_*sweep.json 2>/dev/null | head -n 1)
if wanted dispatch && [[ -z $SWEEP_JSON ]]; then
    skip dispatch "no sweep results"
else
    stage dispatch 15 "$WORK/dispatch.log" \
        "$PY" -m benchmarks.dispatch_table "$SWEEP_JSON" --out "$WORK/_dispatch_table.py"
fi

# ---- summary: the closing lines of the tests and the tables; then one archive of everything
{
    echo "total $((SECONDS - START)) s"
    [[ -f $WORK/tests.log ]] && echo "-- tests:" && grep -E "^(FAILED|ERROR)|passed|failed" "$WORK/tests.log" | tail -n 60
    for f in plastic_rnn_issue.txt plastic_rnn_clusters0.txt plastic_rnn_clusters1.txt plastic_rnn_clustersglobal.txt plastic_rnn_sweep.txt population.txt families.txt agent.txt plastic_lstm.txt fop.txt lifetime.txt; do
        [[ -f $WORK/$f ]] && echo "-- $f:" && grep -v '^\s*$' "$WORK/$f" | tail -n 40
    done
} >>"$SUMMARY"
cp "$SUMMARY" "$WORK/"
tar -czf "$OUTDIR/gpu_check.tar.gz" -C "$OUTDIR" gpu_check && rm -rf "$WORK"
cat "$SUMMARY"
