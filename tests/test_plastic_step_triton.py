"""The ``triton`` backend of ``hebbkern.plastic_step`` and ``hebbkern.plastic_linear`` (the
single-step families on the GPU), and ``nn.PlasticRNNCell`` / ``nn.DHPSoftmax`` on it.

- Here, on any machine: CUDA tensors choose the Triton kernels (no fallback warning), ``import
  hebbkern`` does not import triton, both ops trace on fake CUDA tensors through ``wrap_triton``
  (what torch.compile sees), and the interpreter suite (interpret_plastic_step_triton.py) in its
  own pytest process with ``TRITON_INTERPRET=1``.
- On a machine with a CUDA GPU (skipped elsewhere): every op against the reference, float64, bf16
  within twice the bf16 reference's error, ``torch.compile(fullgraph=True)``, ``opcheck``, a
  CUDA-graph capture of an agent's forward+backward step, and the two modules.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from helpers import MODULATED_RULES, clone_inputs, grad_names, rel_err
from helpers_step import step_inputs
from step_triton_checks import (
    TOL,
    check_linear_against_reference,
    check_step_against_reference,
    linear_inputs,
    run_linear,
    run_step,
)
from triton_checks import assert_compiled_grads_match, to_device
from triton_env import (
    CUDA_CASES,
    INTERPRETING,
    TESTS_DIR,
    needs_cuda,
    needs_triton,
    run_interpreter_suite,
)

import hebbkern
from hebbkern import backends

CUDA = torch.device("cuda")
F32 = torch.float32


# ---------------------------------------------------------------------------------------------
# Any machine.


@needs_triton
@pytest.mark.parametrize("family", ["plastic_step", "plastic_linear"])
def test_cuda_tensors_choose_triton_without_warning(family, monkeypatch):
    monkeypatch.setattr(backends, "_warned_no_gpu_backend", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.resolve(None, CUDA, family=family) == "triton"
    assert backends.gpu_backends_for(family, CUDA) == ("triton",)


def test_import_hebbkern_does_not_import_triton():
    code = (
        "import sys, torch, hebbkern; "
        "hebbkern.plastic_step(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3, 3), "
        "torch.randn(3, 3), torch.randn(3), eta=0.1); "
        "hebbkern.plastic_linear(torch.randn(2, 3), torch.randn(3, 4), torch.randn(4), "
        "torch.randn(3, 4)); "
        "assert 'triton' not in sys.modules, 'import hebbkern imported triton'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=TESTS_DIR, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@needs_triton
def test_interpreter_suite():
    """interpret_plastic_step_triton.py in its own pytest process, TRITON_INTERPRET=1 set before
    triton is imported (a few minutes on 2 cores)."""
    run_interpreter_suite("interpret_plastic_step_triton.py", timeout=1200)


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("alpha_shape", [(), (16,), (16, 16), (3, 16, 16)], ids=str)
@pytest.mark.parametrize("per_sample_w", [False, True], ids=["shared_w", "per_sample_w"])
def test_step_ops_trace_with_fake_cuda_tensors(alpha_shape, per_sample_w):
    """Without a GPU: the step's two kernels go through wrap_triton on fake CUDA tensors (the
    path torch.compile traces; the kernels are compiled to Triton IR to find what they write) and
    give the documented shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton.plastic_step_ops import plastic_step_triton_bwd, plastic_step_triton_fwd

    B, N = 3, 16

    def f(u, h, hebb, elig, w, alpha, eta, mod_w, mod_b, fw, fb, clamp):
        fwd = plastic_step_triton_fwd(
            u, h, hebb, elig, w, alpha, clamp, eta, mod_w, mod_b, fw, fb, "retro", 1.0
        )
        h_new, hebb_new, elig_new, mod = fwd
        bwd = plastic_step_triton_bwd(
            h_new, hebb_new, elig_new, u, h, hebb, elig, w, alpha, h_new, mod, clamp, eta,
            mod_w, mod_b, fw, fb, "retro", 1.0,
        )  # fmt: skip
        return (*fwd, *bwd)

    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        wshape = (B, N, N) if per_sample_w else (N, N)
        args = (torch.empty(B, N, **d), torch.empty(B, N, **d), torch.empty(B, N, N, **d),
                torch.empty(B, N, N, **d), torch.empty(wshape, **d), torch.empty(alpha_shape, **d),
                torch.empty((), **d), torch.empty(N, **d), torch.empty((), **d),
                torch.empty(N, **d), torch.empty(N, **d),
                torch.empty(B, N, dtype=torch.bool, **d))  # fmt: skip
        gm = make_fx(f)(*args)
        outs = f(*args)
    shapes = [tuple(o.shape) for o in outs]
    assert shapes == [
        (B, N), (B, N, N), (B, N, N), (B,),  # forward
        (B, N), (B, N), (B, N, N), (B, N, N), wshape, alpha_shape, (), (N,), (), (N,), (N,),
    ]  # fmt: skip
    ops = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert {"hebbkern.plastic_step_triton_fwd.default",
            "hebbkern.plastic_step_triton_bwd.default"} <= ops  # fmt: skip


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("alpha_shape", [(), (10,), (20, 10)], ids=str)
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_linear_ops_trace_with_fake_cuda_tensors(alpha_shape, per_sample):
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton.plastic_linear_ops import (
        plastic_linear_triton_bwd,
        plastic_linear_triton_fwd,
    )

    B, M, K = 5, 20, 10
    hshape = (B, M, K) if per_sample else (M, K)

    def f(x, w, alpha, hebb):
        z = plastic_linear_triton_fwd(x, w, alpha, hebb)
        return (z, *plastic_linear_triton_bwd(z, x, w, alpha, hebb))

    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        args = (torch.empty(B, M, **d), torch.empty(M, K, **d), torch.empty(alpha_shape, **d),
                torch.empty(hshape, **d))  # fmt: skip
        gm = make_fx(f)(*args)
        outs = f(*args)
    assert [tuple(o.shape) for o in outs] == [(B, K), (B, M), (M, K), alpha_shape, hshape]
    ops = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert {"hebbkern.plastic_linear_triton_fwd.default",
            "hebbkern.plastic_linear_triton_bwd.default"} <= ops  # fmt: skip


# ---------------------------------------------------------------------------------------------
# CUDA GPU.

# plastic_rnn's CUDA_CASES with alpha per sample (the step's own kind) in two of them.
STEP_CUDA_CASES = [
    (rule, "per_sample" if i in (4, 6) else kind, fanout, clamp)
    for i, (rule, kind, fanout, clamp) in enumerate(CUDA_CASES)
]


@needs_cuda
@pytest.mark.parametrize("B, N", [(1, 1), (3, 129), (64, 128), (0, 8)])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", STEP_CUDA_CASES)
def test_cuda_step_matches_reference(rule, alpha_kind, fanout, clamp, B, N, nan_poison):
    kw = step_inputs(rule, alpha_kind, fanout, clamp, B=B, N=N, dtype=F32, seed=N)
    if B == 0:
        ot, gt = run_step(to_device(clone_inputs(kw), CUDA), "triton")
        assert ot["h"].shape == (0, N)
        return
    check_step_against_reference(kw, CUDA, TOL[F32], require_nonzero=N > 1)


@needs_cuda
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_cuda_step_float64_per_sample_w(rule, nan_poison):
    kw = step_inputs(rule, "per_sample", rule == "retro", True, B=4, N=20, per_sample_w=True,
                     seed=4)  # fmt: skip
    check_step_against_reference(kw, CUDA, TOL[torch.float64])


@needs_cuda
@pytest.mark.parametrize("size", [(1, 5, 3), (256, 512, 100), (33, 70, 130)], ids=str)
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar"])
@pytest.mark.parametrize("dtype", [F32, torch.float64], ids=["f32", "f64"])
def test_cuda_linear_matches_reference(size, per_sample, alpha_kind, dtype, nan_poison):
    kw = linear_inputs(*size, alpha_kind, per_sample, dtype=dtype, seed=sum(size))
    check_linear_against_reference(kw, CUDA, TOL[dtype])


def _low_precision_errors(run_fn, kw_lp, kw64):
    """(kernel error, low-precision reference error) of every output and gradient vs float64."""
    o_k, g_k = run_fn(to_device(clone_inputs(kw_lp), CUDA), "triton")
    o_lp, g_lp = run_fn(to_device(clone_inputs(kw_lp), CUDA), "reference")
    o_64, g_64 = run_fn(clone_inputs(kw64), "reference")
    for d_k, d_lp, d_64 in ((o_k, o_lp, o_64), (g_k, g_lp, g_64)):
        for k in d_64:
            if d_64[k] is not None:  # an input the loss does not reach
                yield k, rel_err(d_k[k].cpu(), d_64[k]), rel_err(d_lp[k].cpu(), d_64[k])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cuda_step_low_precision(rule, dtype):
    """flash-attention's rule: against float64, the kernel's error is at most twice the error of
    the reference run in the same low precision (on the same GPU)."""
    kw = step_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, B=16, N=64, seed=17)
    kw_lp = clone_inputs(kw, dtype)
    for k, e_k, e_lp in _low_precision_errors(run_step, kw_lp, kw):
        assert e_k <= 2 * e_lp + 1e-6, f"{k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_cuda_linear_low_precision(per_sample, dtype):
    kw = linear_inputs(64, 96, 40, "per_connection", per_sample, seed=2)
    kw_lp = clone_inputs(kw, dtype)
    for k, e_k, e_lp in _low_precision_errors(run_linear, kw_lp, kw):
        assert e_k <= 2 * e_lp + 1e-6, f"{k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"


@needs_cuda
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_cuda_step_torch_compile_fullgraph(rule):
    kw = to_device(step_inputs(rule, "per_neuron", rule == "retro", True, B=4, N=16, dtype=F32,
                               seed=3), CUDA)  # fmt: skip
    # plastic_step returns the state alone: None stands for the sequence ops' output.
    assert_compiled_grads_match(
        lambda **k: (None, hebbkern.plastic_step(**k)), kw,
        lambda _, st: {"h": st.h, "hebb": st.hebb},
    )  # fmt: skip


@needs_cuda
def test_cuda_linear_torch_compile_fullgraph():
    kw = to_device(linear_inputs(32, 48, 10, "per_connection", False, dtype=F32), CUDA)
    leaves = list(kw.values())

    def f(x, w, alpha, hebb):
        return hebbkern.plastic_linear(x, w, alpha, hebb, backend="triton").square().sum()

    torch._dynamo.reset()
    g_c = torch.autograd.grad(torch.compile(f, fullgraph=True)(*leaves), leaves)
    g_e = torch.autograd.grad(f(*leaves), leaves)
    for a, b in zip(g_c, g_e, strict=True):
        assert rel_err(a.cpu(), b.cpu()) < 1e-5


@needs_cuda
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_sample"])
def test_cuda_step_opcheck(rule, alpha_kind):
    from hebbkern.triton.plastic_step_ops import plastic_step_triton_fwd  # noqa: F401

    kw = to_device(step_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, B=2, N=4,
                               seed=8), CUDA)  # fmt: skip
    args = (
        kw["u"], kw["h"], kw["hebb"], kw.get("elig"), kw["w"], kw["alpha"], kw["clamp_mask"],
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, float(kw["clip"]),
    )  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_step_triton_fwd.default, args)


@needs_cuda
@pytest.mark.parametrize("alpha_shape", [(), (6,), (5, 6)], ids=str)
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_cuda_linear_opcheck(alpha_shape, per_sample):
    from hebbkern.triton.plastic_linear_ops import plastic_linear_triton_fwd  # noqa: F401

    kw = linear_inputs(3, 5, 6, {(): "scalar", (6,): "per_neuron", (5, 6): "per_connection"}[
        alpha_shape], per_sample)  # fmt: skip
    args = tuple(v.detach().cuda().requires_grad_() for v in kw.values())
    torch.library.opcheck(torch.ops.hebbkern.plastic_linear_triton_fwd.default, args)


@needs_cuda
def test_cuda_agent_step_in_a_cuda_graph():
    """An agent's step (plastic_step forward+backward, neuromod, B=64, N=128) captured in a CUDA
    graph and replayed on new values matches the eager step on those values."""
    kw = to_device(step_inputs("neuromod", "per_connection", False, False, B=64, N=128,
                               dtype=F32, seed=1), CUDA)  # fmt: skip
    fresh = to_device(step_inputs("neuromod", "per_connection", False, False, B=64, N=128,
                                  dtype=F32, seed=2), CUDA)  # fmt: skip
    names = grad_names(kw)
    leaves = [kw[k] for k in names]
    fixed = {k: v for k, v in kw.items() if k not in names}
    wts = torch.randn(64, 128, device="cuda")

    def step():
        st = hebbkern.plastic_step(**{k: kw[k] for k in names}, **fixed, backend="triton")
        return (st.h * wts).sum() + st.hebb.square().sum()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            torch.autograd.grad(step(), leaves)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()
        grads = torch.autograd.grad(loss, leaves)
    with torch.no_grad():
        for k in names:
            kw[k].copy_(fresh[k])
    graph.replay()
    torch.cuda.synchronize()
    loss_e = step()
    grads_e = torch.autograd.grad(loss_e, leaves)
    assert rel_err(loss, loss_e.detach()) < 1e-6
    for name, a, b in zip(names, grads, grads_e, strict=True):
        assert rel_err(a, b) < 1e-6, name


@needs_cuda
def test_cuda_modules_run_fused():
    """nn.PlasticRNNCell and nn.DHPSoftmax on CUDA take the Triton kernels and match their CPU
    runs."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    cell = hebbkern.nn.PlasticRNNCell(8, 32, rule="retro", alpha="per_neuron", fanout=True)
    head = hebbkern.nn.DHPSoftmax(32, 10)
    x, y = torch.randn(16, 8), torch.randint(0, 10, (16,))
    cpu = head(cell(x).h, y)
    cell.cuda(), head.cuda()
    head.hebb.zero_()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        gpu = head(cell(x.cuda()).h, y.cuda())
    names = {e.key for e in prof.key_averages()}
    assert "hebbkern::plastic_step_triton_fwd" in names
    assert "hebbkern::plastic_linear_triton_fwd" in names
    assert rel_err(gpu.cpu(), cpu.detach()) < 1e-4
