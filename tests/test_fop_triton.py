"""FOP's fused GPU step (``backend="triton"``, ``torch.ops.hebbkern.fop_step_triton_``).

- Here, on any machine: backend choice, the op on fake CUDA tensors (the path ``torch.compile``
  traces), and the interpreter suite (interpret_fop_triton.py: trajectories against the reference,
  resuming across backends, torch.compile) in its own pytest process with ``TRITON_INTERPRET=1``.
- On a machine with a CUDA GPU (skipped elsewhere): float32 and bfloat16 trajectories against the
  reference with the kernels' real tile sizes, checkpoints moving between CUDA and CPU, capture in
  a CUDA graph, ``torch.compile(fullgraph=True)``.

The ahead-of-time compilation check is test_fop_triton_aot.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from fop_helpers import grad_sequence, make_params, run, small_cnn, train_steps
from helpers import rel_err
from triton_env import HAS_CUDA, INTERPRETING, needs_cuda, needs_triton, run_interpreter_suite

import hebbkern
from hebbkern.optim import FOP

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")
CUDA = torch.device("cuda")
F32 = torch.float32
ULP = 2.0**-24


# ---------------------------------------------------------------------------------------------
# Any machine.


@needs_triton
def test_default_backend_on_cuda_is_the_fused_step():
    opt = FOP([torch.nn.Parameter(torch.randn(3))], lr=0.1, hyper_lr=0.1)
    cuda = torch.device("cuda")
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert opt._resolve(cuda, dtype) == "triton"
    assert opt._resolve(cuda, torch.float64) == "foreach"
    assert opt._resolve(torch.device("cpu"), torch.float32) in ("cpu", "reference")
    opt.backend = "foreach"
    assert opt._resolve(cuda, torch.float32) == "foreach"
    opt.backend = "triton"
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        opt._resolve(cuda, torch.float64)


@pytest.mark.skipif(INTERPRETING, reason="TRITON_INTERPRET is set: CPU tensors are allowed")
@needs_triton
def test_cpu_tensors_need_the_interpreter():
    params = make_params([(4, 3, 3, 3)], F32)
    opt = FOP(params, lr=0.1, hyper_lr=0.1, backend="triton")
    params[0].grad = torch.randn_like(params[0])
    with pytest.raises(ValueError, match="backend 'triton' needs CUDA tensors"):
        opt.step()


@pytest.mark.skipif(INTERPRETING, reason="runs the interpreter itself")
@pytest.mark.skipif(HAS_CUDA, reason="with a GPU the real kernels run (the tests below)")
@needs_triton
def test_interpreter_suite():
    """interpret_fop_triton.py in its own pytest process, TRITON_INTERPRET=1 set before triton is
    imported (float32, small tiles; a few minutes on 2 cores). Without the extension its
    comparisons with the CPU kernel skip."""
    run_interpreter_suite("interpret_fop_triton.py", 1800, not hebbkern.extension_available())


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels run on CPU tensors only")
@needs_triton
@pytest.mark.parametrize("base, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_step_on_fake_cuda_tensors(base, momentum, monkeypatch):
    """Without a GPU: FOP.step on fake CUDA parameters (what torch.compile traces) takes the fused
    path, makes one op call for the group with CUDA state (step counters included), and the
    traced graph holds that op."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton import fop_ops

    calls = []
    op = fop_ops.fop_step_triton_
    monkeypatch.setattr(fop_ops, "fop_step_triton_", lambda *a: calls.append(a) or op(*a))
    shapes = [(8, 4, 3, 3), (16, 8, 5, 5), (10, 130), (10,)]
    with FakeTensorMode(allow_non_fake_inputs=True):
        params = [torch.nn.Parameter(torch.empty(s, device="cuda")) for s in shapes]
        for p in params:
            p.grad = torch.empty_like(p)
        opt = FOP(params, lr=0.1, hyper_lr=0.1, base=base, momentum=momentum)
        opt.step()
        assert len(calls) == 1 and len(calls[0][0]) == len(params)
        for p in params:
            assert all(v.device.type == "cuda" for v in opt.state[p].values())
            assert opt.state[p]["step"].dtype == F32

        def f(*ps):
            op(list(ps), [p.grad for p in params], *calls[0][2:])
            return ps

        gm = make_fx(f)(*params)
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert "hebbkern.fop_step_triton_.default" in targets


# ---------------------------------------------------------------------------------------------
# CUDA GPU.

# The real tile sizes: ResNet-like conv weights (d = 9 over several programs, 1x1, the 7x7 stem),
# a 64-lane-class linear layer, the 512 -> 1000 head (cuBLAS) and flat tensors.
GPU_SHAPES = [(64, 64, 3, 3), (128, 64, 1, 1), (64, 3, 7, 7), (10, 40), (1000, 512), (1000,),
              (64,), ()]  # fmt: skip


def _to(params, device, dtype):
    return [torch.nn.Parameter(p.detach().to(device, dtype)) for p in params]


def _cuda_run(base, momentum, wd, steps, dtype=F32, shapes=GPU_SHAPES, **kw):
    params = _to(make_params(shapes), CUDA, dtype)
    opt = FOP(params, lr=0.1, hyper_lr=0.02, base=base, momentum=momentum, weight_decay=wd, **kw)
    for grads in grad_sequence(shapes, steps):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.to(CUDA, dtype)
        opt.step()
    return params, opt


@needs_cuda
@pytest.mark.parametrize(("base", "momentum", "wd"), [("sgd", 0.0, 0.0), ("sgd", 0.9, 0.01),
                                                      ("adam", 0.0, 0.01)])  # fmt: skip
def test_cuda_matches_reference(base, momentum, wd):
    p64, o64 = run("reference", base, momentum, wd, steps=10, shapes=GPU_SHAPES)
    p32, o32 = run("reference", base, momentum, wd, steps=10, shapes=GPU_SHAPES, dtype=F32)
    pc, oc = _cuda_run(base, momentum, wd, 10)
    assert oc.state[pc[0]]["step"].device.type == "cuda"
    for i, (a, r, b) in enumerate(zip(pc, p64, p32, strict=True)):
        err, ref_err = rel_err(a.cpu(), r), rel_err(b, r)
        assert err <= 2 * ref_err + ULP, f"param {i}: {err:.3g} vs {ref_err:.3g}"
        for key in o64.state[r]:
            err = rel_err(oc.state[a][key].cpu(), o64.state[r][key])
            ref_err = rel_err(o32.state[b][key], o64.state[r][key])
            assert err <= 2 * ref_err + ULP, f"{key} of param {i}: {err:.3g} vs {ref_err:.3g}"


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half_parameters(dtype):
    """Half parameters with float32 state: within twice the error of the reference run with the
    same half parameters (float32 state too) against float64."""
    p64, _ = run("reference", "adam", 0.0, 0.0, steps=6, shapes=GPU_SHAPES)
    ph, _ = run("reference", "adam", 0.0, 0.0, steps=6, shapes=GPU_SHAPES, dtype=dtype)
    pc, oc = _cuda_run("adam", 0.0, 0.0, 6, dtype=dtype)
    for a, r, b in zip(pc, p64, ph, strict=True):
        assert a.dtype == dtype
        assert rel_err(a.cpu(), r) <= 2 * rel_err(b, r) + 2e-3
        assert all(v.dtype == F32 for v in oc.state[a].values())


@needs_cuda
@pytest.mark.parametrize("first, second", [("cuda", "cpu"), ("cpu", "cuda")])
@pytest.mark.parametrize("base, momentum", [("sgd", 0.9), ("adam", 0.0)])
def test_checkpoint_moves_between_cuda_and_cpu(first, second, base, momentum):
    """Train on one device, resume on the other (fused step on CUDA, the C++ kernel or the
    reference on the CPU): the float64 reference's trajectory throughout, within twice the error
    of the float32 reference."""
    refs = {}
    for dtype in (torch.float64, F32):
        ref_model = small_cnn(dtype)
        ref_opt = FOP(ref_model.parameters(), lr=0.05, hyper_lr=0.5, base=base,
                      momentum=momentum, backend="reference")  # fmt: skip
        train_steps(ref_model, ref_opt, 6, dtype)
        refs[dtype] = list(ref_model.parameters())

    def make(device):
        model = small_cnn(F32).to(device)
        return model, FOP(model.parameters(), lr=0.05, hyper_lr=0.5, base=base, momentum=momentum)

    def steps(model, opt, device, n):
        x, y = (t.to(device) for t in __import__("fop_helpers").cnn_batch(F32))
        for _ in range(n):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    m1, o1 = make(first)
    steps(m1, o1, first, 3)
    ckpt = {"model": copy.deepcopy(m1.state_dict()), "opt": copy.deepcopy(o1.state_dict())}
    m2, o2 = make(second)
    m2.load_state_dict(ckpt["model"])
    o2.load_state_dict(ckpt["opt"])
    for st in o2.state.values():
        assert all(v.device.type == second for v in st.values())
    steps(m2, o2, second, 3)
    for a, b, r in zip(m2.parameters(), refs[F32], refs[torch.float64], strict=True):
        assert rel_err(a.cpu(), r) <= 2 * rel_err(b, r) + ULP


@needs_cuda
def test_cuda_graph_capture():
    """The step captures in a CUDA graph (after one eager warm-up step) and its replays follow
    the eager run: nothing syncs with or reads from the host."""
    shapes = GPU_SHAPES
    seq = [[g.to(CUDA, F32) for g in step] for step in grad_sequence(shapes, 6)]
    eager, opt_e = _to(make_params(shapes), CUDA, F32), None
    opt_e = FOP(eager, lr=0.1, hyper_lr=0.02, base="adam", weight_decay=0.01)
    for grads in seq:
        for p, g in zip(eager, grads, strict=True):
            p.grad = g.clone()
        opt_e.step()

    params = _to(make_params(shapes), CUDA, F32)
    opt = FOP(params, lr=0.1, hyper_lr=0.02, base="adam", weight_decay=0.01)
    for p, g in zip(params, seq[0], strict=True):
        p.grad = g.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        opt.step()  # warm-up: state, compiled kernels, cached tables
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for grads in seq[1:]:
        for p, g in zip(params, grads, strict=True):
            p.grad.copy_(g)
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(params, eager, strict=True):
        assert rel_err(a, b) < 1e-6


@needs_cuda
def test_cuda_compiled_training_step():
    """torch.compile(opt.step, fullgraph=True) and a compiled model train as the eager run (to
    1e-4: the compiled model's fused forward rounds differently, and the preconditioners carry
    that along)."""
    results = []
    for compiled in (False, True):
        model = small_cnn(F32).cuda()
        opt = FOP(model.parameters(), lr=0.05, hyper_lr=0.5, base="sgd", momentum=0.9)
        step = torch.compile(opt.step, fullgraph=True) if compiled else opt.step
        fwd = torch.compile(model) if compiled else model
        x, y = (t.cuda() for t in __import__("fop_helpers").cnn_batch(F32))
        for _ in range(4):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(fwd(x), y).backward()
            step()
        results.append([p.detach().cpu() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert rel_err(a, b) < 1e-4
