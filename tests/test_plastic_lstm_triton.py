"""The ``triton`` backend of ``hebbkern.plastic_lstm`` (the GPU path: cuBLAS GEMMs and fused Triton
kernels, hebbkern/triton/plastic_lstm*.py).

- Here, on any machine: backend selection (CUDA tensors pick it), argument errors, the ops traced
  on fake CUDA tensors (the wrap_triton path torch.compile takes), and the interpreter suite
  (interpret_plastic_lstm_triton.py) in its own pytest process with ``TRITON_INTERPRET=1``.
- On a machine with a CUDA GPU (skipped elsewhere): the kernels against the reference, low
  precision (flash-attention's rule), ``torch.compile(fullgraph=True)``, ``opcheck``, CUDA-graph
  capture, determinism and the memory saved for the backward.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import rel_err
from lstm_helpers import LSTM_VARIANTS, clone_kw, lstm_outputs, make_lstm_inputs, run_lstm
from lstm_triton_checks import TOL, check_lstm_triton_against_reference
from triton_checks import assert_compiled_grads_match, to_device
from triton_env import INTERPRETING, TESTS_DIR, needs_cuda, needs_triton, run_interpreter_suite

import hebbkern
from hebbkern import backends

CUDA = torch.device("cuda")
F32 = torch.float32


# ---------------------------------------------------------------------------------------------
# Any machine.


@needs_triton
def test_cuda_tensors_pick_triton_not_the_reference():
    """Done-when of issue 14: plastic_lstm on CUDA tensors no longer falls back to the reference."""
    assert "plastic_lstm" in backends.TRITON_FAMILIES
    assert backends.resolve(None, torch.device("cuda"), family="plastic_lstm") == "triton"
    assert backends.resolve("triton", torch.device("cuda"), family="plastic_lstm") == "triton"


@needs_triton
def test_cpu_tensors_need_the_interpreter():
    if INTERPRETING:
        pytest.skip("CPU tensors are allowed under the interpreter")
    kw = make_lstm_inputs("neuromod", T=2, B=1, N=3, requires_grad=False)
    with pytest.raises(ValueError, match="backend 'triton' needs CUDA tensors"):
        hebbkern.plastic_lstm(**kw, backend="triton")


@pytest.mark.parametrize(
    "change, exc, match",
    [({"wh": torch.zeros(4, 4)}, ValueError, "wh must have shape"),
     ({"alpha": torch.zeros(9, 3)}, ValueError, "alpha must have shape"),
     ({"clip": -1.0}, ValueError, "clip must be > 0")],
)  # fmt: skip
def test_bad_arguments_raise_before_any_kernel(change, exc, match):
    """The checks run before the backend is even resolved, so they hold for 'triton' too."""
    kw = make_lstm_inputs("neuromod", T=3, B=2, N=9, dtype=F32, requires_grad=False)
    kw.update(change)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_lstm(**kw, backend="triton")


@needs_triton
def test_interpreter_suite():
    """interpret_plastic_lstm_triton.py in its own pytest process, TRITON_INTERPRET=1 set before
    triton is imported (small sizes; several minutes on 2 cores)."""
    run_interpreter_suite("interpret_plastic_lstm_triton.py", timeout=1800)


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("rule, fanout", [("retro", True), ("neuromod", False), ("oja", False)])
def test_ops_trace_with_fake_cuda_tensors(rule, fanout):
    """Without a GPU: both ops run on fake CUDA tensors (the path torch.compile traces), the
    kernels going through wrap_triton, and give the C++ ops' output shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton.plastic_lstm_ops import plastic_lstm_triton_bwd, plastic_lstm_triton_fwd

    T, B, N, K = 5, 2, 70, 2
    retro = rule == "retro"

    def f(u, wh, alpha, h0, c0, hebb0, eta, mod_w, mod_b, fanout_w, fanout_b):
        elig0 = hebb0 if retro else None
        if rule == "neuromod":
            eta = None
        if rule == "oja":
            mod_w = mod_b = None
        fwd = plastic_lstm_triton_fwd(u, wh, alpha, h0, c0, hebb0, elig0, eta, mod_w, mod_b,
                                      fanout_w, fanout_b, rule, 1.0, K)  # fmt: skip
        h, c, gates, hebb, elig, ck, eck, mod = fwd
        bwd = plastic_lstm_triton_bwd(h, c, hebb, elig if retro else None, wh, alpha, h0, c0, h,
                                      c, gates, ck, eck, mod, eta, mod_w, mod_b, fanout_w,
                                      fanout_b, rule, 1.0, K)  # fmt: skip
        return fwd + bwd

    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        fo = (torch.empty(N, **d), torch.empty(N, **d)) if fanout else (None, None)
        args = (torch.empty(T, B, 4 * N, **d), torch.empty(N, 4 * N, **d), torch.empty(N, **d),
                torch.empty(B, N, **d), torch.empty(B, N, **d), torch.empty(B, N, N, **d),
                torch.empty((), **d), torch.empty(N, **d), torch.empty((), **d), *fo)  # fmt: skip
        gm = make_fx(f)(*args)
        outs = f(*args)
    C = -(-T // K)
    modulated = rule in ("neuromod", "retro")
    shapes = [tuple(o.shape) for o in outs]
    e = (0,)
    assert shapes == [
        (T, B, N), (T, B, N), (T, B, 4 * N), (B, N, N), (B, N, N) if retro else e,
        (C, B, N, N), (C, B, N, N) if retro else e, (T, B) if modulated else e,
        (T, B, 4 * N), (N, 4 * N), (N,), (B, N), (B, N), (B, N, N), (B, N, N) if retro else e,
        () if rule != "neuromod" else e, (N,) if modulated else e, () if modulated else e,
        (N,) if fanout else e, (N,) if fanout else e,
    ]  # fmt: skip
    ops = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert {f"hebbkern.plastic_lstm_triton_{d}.default" for d in ("fwd", "bwd")} <= ops


# ---------------------------------------------------------------------------------------------
# CUDA GPU.

CUDA_CASES = [
    ("hebb", "per_connection", False),
    ("oja", "per_neuron", False),
    ("clip", "scalar", False),
    ("neuromod", "per_neuron", True),
    ("neuromod", "per_connection", False),
    ("retro", "per_neuron", True),
    ("retro", "per_connection", False),
]


@needs_cuda
@pytest.mark.parametrize("N", [1, 65, 130])  # the interpreter suite covers more sizes
@pytest.mark.parametrize("rule, alpha_kind, fanout", CUDA_CASES)
def test_cuda_matches_reference(rule, alpha_kind, fanout, N, nan_poison):
    kw = make_lstm_inputs(rule, alpha_kind, fanout, T=9, B=3, N=N, dtype=F32, seed=N)
    check_lstm_triton_against_reference(kw, CUDA, TOL[F32], require_nonzero=N > 1)


@needs_cuda
@pytest.mark.parametrize("rule, clip_mode, post", LSTM_VARIANTS)
def test_cuda_variants_match_reference(rule, clip_mode, post, nan_poison):
    """Rule gated and the options of docs/SPEC.md section 2.1 (constexpr specialisations)."""
    kw = make_lstm_inputs(
        rule, "per_connection", True, T=9, B=3, N=65, dtype=F32, seed=7, clip_mode=clip_mode,
        post=post,
    )  # fmt: skip
    check_lstm_triton_against_reference(kw, CUDA, TOL[F32])


@needs_cuda
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_cuda_float64(rule, nan_poison):
    kw = make_lstm_inputs(rule, "per_connection", rule == "retro", T=12, B=2, N=20, seed=4)
    check_lstm_triton_against_reference(kw, CUDA, TOL[torch.float64])


@needs_cuda
def test_cuda_batch_one_and_empty_batch():
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=7, B=1, N=33, dtype=F32, seed=2)
    check_lstm_triton_against_reference(kw, CUDA, TOL[F32])
    kw = to_device(make_lstm_inputs("retro", T=3, B=0, N=4, dtype=F32), CUDA)
    h, st = hebbkern.plastic_lstm(**kw, backend="triton")
    assert h.shape == (3, 0, 4) and st.hebb.shape == (0, 4, 4)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cuda_low_precision(rule, dtype):
    """flash-attention's rule: against a float64 reference, the kernel's error is at most twice the
    error of the reference run in the same low precision (on the same GPU)."""
    kw = make_lstm_inputs(rule, "per_neuron", True, T=20, B=4, N=64, seed=17, dtype=dtype)
    o_k, g_k = run_lstm(to_device(kw, CUDA), "triton")
    o_lp, g_lp = run_lstm(to_device(kw, CUDA), "reference")
    o_64, g_64 = run_lstm(clone_kw(kw, torch.float64), "reference")
    for k in o_64:
        assert o_k[k].dtype == dtype, k
        e_k, e_lp = rel_err(o_k[k].cpu(), o_64[k]), rel_err(o_lp[k].cpu(), o_64[k])
        assert e_k <= 2 * e_lp + 1e-6, f"output {k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"
    for k in g_64:
        e_k, e_lp = rel_err(g_k[k].cpu(), g_64[k]), rel_err(g_lp[k].cpu(), g_64[k])
        assert e_k <= 2 * e_lp + 1e-6, f"grad {k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"


@needs_cuda
@pytest.mark.parametrize("rule", ["neuromod", "retro"])
def test_cuda_torch_compile_fullgraph(rule):
    kw = to_device(make_lstm_inputs(rule, "per_neuron", True, T=6, B=2, N=16, dtype=F32, seed=3),
                   CUDA)  # fmt: skip
    assert_compiled_grads_match(hebbkern.plastic_lstm, kw, lstm_outputs)


@needs_cuda
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cuda_opcheck(rule):
    from hebbkern.triton.plastic_lstm_ops import plastic_lstm_triton_fwd  # noqa: F401

    kw = to_device(make_lstm_inputs(rule, "per_connection", True, T=5, B=2, N=4, seed=8), CUDA)
    args = (
        kw["u"], kw["wh"], kw["alpha"], kw["h0"], kw["c0"], kw["hebb0"], kw.get("elig0"),
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, float(kw["clip"]), 2,
    )  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_lstm_triton_fwd.default, args)


@needs_cuda
def test_cuda_graph_capture_forward_and_backward():
    """The host loops read no tensor value: a whole training step (forward and backward) captures
    in a CUDA graph, and replaying it gives the eager result."""
    kw = to_device(make_lstm_inputs("neuromod", "per_neuron", True, T=6, B=4, N=40, dtype=F32,
                                    seed=6), CUDA)  # fmt: skip
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    fixed = {k: v for k, v in kw.items() if k not in names}
    leaves = [kw[k] for k in names]

    def step():
        h, st = hebbkern.plastic_lstm(**dict(zip(names, leaves, strict=True)), **fixed,
                                      backend="triton")  # fmt: skip
        loss = h.square().sum() + st.hebb.sum()
        return (loss, *torch.autograd.grad(loss, leaves))

    want = step()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()  # warm-up: compiles the kernels outside the capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = step()
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


@needs_cuda
def test_cuda_deterministic():
    kw = make_lstm_inputs("retro", "per_connection", True, T=8, B=8, N=200, dtype=F32, seed=1)
    o1, g1 = run_lstm(to_device(kw, CUDA), "triton")
    o2, g2 = run_lstm(to_device(kw, CUDA), "triton")
    assert all(torch.equal(o1[k], o2[k]) for k in o1)
    assert all(torch.equal(g1[k], g2[k]) for k in g1)


@needs_cuda
def test_cuda_saved_memory_is_a_quarter_of_the_reference():
    kw = to_device(make_lstm_inputs("neuromod", "per_neuron", True, T=36, B=16, N=128, dtype=F32,
                                    seed=0), CUDA)  # fmt: skip

    def saved(backend):
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        k = clone_kw(kw)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            h, state = hebbkern.plastic_lstm(**k, backend=backend)
        (h.sum() + state.hebb.sum()).backward()
        return sum(storages.values())

    tri, ref = saved("triton"), saved("reference")
    assert tri >= 16 * 128 * 128 * 4  # the checkpoints are saved, and counted
    assert tri <= ref / 4, f"triton saves {tri / 2**20:.1f} MiB, reference {ref / 2**20:.1f} MiB"


def test_gpu_check_lstm_stage_on_cpu(tmp_path):
    """benchmarks/gpu_check.sh's ``lstm`` stage (the issue-14 rows) runs on the CPU with tiny sizes
    and archives its json: the GPU machine will run the same script."""
    import tarfile

    root = TESTS_DIR.parent
    env = {k: v for k, v in os.environ.items() if k != "HEBBKERN_TEST_INSTALLED"}
    env.update(PYTHON=sys.executable, GPU_CHECK_DEVICE="cpu", GPU_CHECK_QUICK="1",
               GPU_CHECK_BUDGET_S="300", GPU_CHECK_STAGES="lstm")  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), str(out)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=400)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    lines = {line.split()[0]: line for line in summary.splitlines() if line.strip()}
    assert "exit 0" in lines["lstm"], summary
    assert "hebbkern" in summary and "needs CUDA" in summary  # the table, graph row included
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"plastic_lstm_cpu.json", "plastic_lstm.txt"} <= names


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_launch_paths_make_no_synchronising_call(rule):
    """CUDA-graph capturability without a GPU. The public function on (fake) CUDA tensors (argument
    checks, backend choice, casts, the custom op with its autograd context) makes no call that
    waits for the device or copies host memory; nor do the host loops of the two ops (GEMMs,
    buffers, kernel launches), traced with make_fx from the ops' Python bodies."""
    from test_backends import _SYNCING, _Recorder, fake_cuda_inputs, synchronising_calls
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton.plastic_lstm_ops import plastic_lstm_bwd_body, plastic_lstm_fwd_body

    T, B, N, K = 5, 2, 70, 2
    retro, modulated = rule == "retro", rule != "hebb"
    kw = make_lstm_inputs(rule, "per_neuron", True, T=T, B=B, N=N, dtype=F32)
    if "eta" in kw:
        kw["eta"] = 0.25  # a float: becomes a device tensor on the way
    with FakeTensorMode():
        fk = fake_cuda_inputs(kw)
        with _Recorder() as rec:
            h, state = hebbkern.plastic_lstm(**fk, backend="triton")
        assert h.device.type == "cuda" and state.hebb.device.type == "cuda"
    assert rec.calls, "nothing recorded: the test would be vacuous"
    assert synchronising_calls(rec.calls) == []

    def both(u, wh, alpha, h0, c0, hebb0, mod_w, mod_b, fanout_w, fanout_b):
        eta = u.new_full((), 0.25) if rule != "neuromod" else None
        if not modulated:
            mod_w = mod_b = fanout_w = fanout_b = None
        fwd = plastic_lstm_fwd_body(
            u, wh, alpha, h0, c0, hebb0, hebb0 if retro else None, eta, mod_w, mod_b, fanout_w,
            fanout_b, rule, 0.4, K,
        )  # fmt: skip
        h, c, gates, hebb, elig, ck, eck, mod = fwd
        bwd = plastic_lstm_bwd_body(
            h, None, hebb, elig if retro else None, wh, alpha, h0, c0, h, c, gates, ck, eck, mod,
            eta, mod_w, mod_b, fanout_w, fanout_b, rule, 0.4, K,
        )  # fmt: skip
        return fwd + bwd

    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        args = (torch.empty(T, B, 4 * N, **d), torch.empty(N, 4 * N, **d), torch.empty(N, **d),
                torch.empty(B, N, **d), torch.empty(B, N, **d), torch.empty(B, N, N, **d),
                torch.empty(N, **d), torch.empty((), **d), torch.empty(N, **d),
                torch.empty(N, **d))  # fmt: skip
        gm = make_fx(both)(*args)
    targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]
    kernels = [t for t in targets if "triton_kernel_wrapper" in t]
    # forward: T + 1 launches; backward: a recomputation per chunk of more than one step (2 of
    # the chunks 2, 2, 1), a lone trace phase per chunk (3), one launch per step
    assert len(kernels) == (T + 1) + T // K + -(-T // K) + T, targets
    assert sum("addmm" in t for t in targets) == 2 * T
    names = [t.split(".")[1] if t.startswith("aten.") else t for t in targets]
    bad = [t for t in names if t in _SYNCING or "_to_copy" in t or "cpu" in t]
    assert bad == [], bad
