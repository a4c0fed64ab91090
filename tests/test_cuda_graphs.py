"""CUDA graphs: hebbkern's GPU ops captured with ``torch.cuda.graph`` and replayed, and a module
under ``torch.compile(mode="reduce-overhead")`` (which captures CUDA graphs itself).

What capture needs from the launch path: no host synchronisation, no allocation outside PyTorch's
caching allocator, ``cudaFuncSetAttribute`` and Triton's autotuning done before the capture (in
the warm-up), and every launch on the current stream. The first H200 run's capture of plastic_rnn
failed with both GPU backends (cudaErrorStreamCaptureInvalidated). These tests need a GPU and run
in benchmarks/gpu_check.sh; test_backends.py checks on the CPU, with fake CUDA tensors, that the
Python side of the launch path makes no synchronising call.
"""

from __future__ import annotations

import pytest
import torch
from helpers import MODULATED_RULES, clone_inputs, grad_names, make_inputs, rel_err

import hebbkern
from hebbkern import backends

HAS_CUDA = torch.cuda.is_available()
GPU_BACKENDS = [
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not (HAS_CUDA and backends.cuda_kernels_available()),
            reason="needs a GPU and a CUDA build of hebbkern",
        ),
    ),
    pytest.param(
        "triton",
        marks=pytest.mark.skipif(
            not (HAS_CUDA and backends.triton_available()), reason="needs a GPU and triton"
        ),
    ),
]
needs_cuda_kernels = pytest.mark.skipif(
    not (HAS_CUDA and backends.cuda_kernels_available()),
    reason="needs a GPU and a CUDA build of hebbkern",
)


def static_inputs(kw: dict) -> dict:
    """CUDA float32 leaves; graph replays read these very tensors, so new values are copied in."""
    out = {}
    for k, v in clone_inputs(kw, torch.float32).items():
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().cuda().requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


def capture_and_replay(step, leaves: list[torch.Tensor], new_values: list[torch.Tensor]):
    """Warms ``step`` (a loss) up on a side stream, captures forward+backward in a CUDA graph,
    copies ``new_values`` into the leaves, replays, and returns (loss, grads) of the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            for t in leaves:
                t.grad = None
            step().backward()
    torch.cuda.current_stream().wait_stream(side)
    for t in leaves:
        t.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()
        loss.backward()
    with torch.no_grad():
        for t, v in zip(leaves, new_values, strict=True):
            t.copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    return loss.detach().clone(), [t.grad.detach().clone() for t in leaves]


def eager(step, leaves: list[torch.Tensor]):
    for t in leaves:
        t.grad = None
    loss = step()
    loss.backward()
    return loss.detach(), [t.grad.detach().clone() for t in leaves]


@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("rule", ["neuromod", "retro"])
def test_plastic_rnn_forward_backward_in_a_cuda_graph(backend, rule):
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=12, B=4, N=64)
    fresh = make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=12, B=4, N=64,
                        seed=5)  # fmt: skip
    st = static_inputs(kw)
    names = grad_names(st)
    leaves = [st[k] for k in names]
    wts = torch.randn(12, 4, 64, device="cuda")

    def step():
        h, state = hebbkern.plastic_rnn(**st, backend=backend)
        return (h * wts).sum() + state.hebb.square().sum()

    new_values = [static_inputs(fresh)[k].detach() for k in names]
    loss_g, grads_g = capture_and_replay(step, leaves, new_values)
    loss_e, grads_e = eager(step, leaves)  # the leaves now hold the new values
    assert rel_err(loss_g, loss_e) < 1e-6
    for name, a, b in zip(names, grads_g, grads_e, strict=True):
        assert rel_err(a, b) < 1e-6, name


@needs_cuda_kernels
@pytest.mark.parametrize("rule", ["oja", "clip"])
def test_trace_update_forward_backward_in_a_cuda_graph(rule):
    g = torch.Generator().manual_seed(0)
    B, M, K = 6, 70, 33

    def rnd(*shape):
        return torch.randn(*shape, generator=g).cuda().requires_grad_()

    trace, pre, post, eta = rnd(B, M, K), rnd(B, M), rnd(B, K), rnd(B, K)
    leaves = [trace, pre, post, eta]
    clip = 0.5 if rule == "clip" else None

    def step():
        out = hebbkern.trace_update(trace, pre, post, eta=eta, rule=rule, clip=clip, backend="cuda")
        return out.square().sum()

    new_values = [torch.randn(t.shape, generator=g).cuda() for t in leaves]
    loss_g, grads_g = capture_and_replay(step, leaves, new_values)
    loss_e, grads_e = eager(step, leaves)
    assert rel_err(loss_g, loss_e) < 1e-6
    for a, b in zip(grads_g, grads_e, strict=True):
        assert rel_err(a, b) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_module_under_compile_reduce_overhead(backend):
    torch.manual_seed(0)
    m = hebbkern.nn.PlasticRNN(16, 48, rule="neuromod", device="cuda")
    x = torch.randn(10, 4, 16, device="cuda")
    torch._dynamo.reset()
    with backends.use_backend(backend):
        want, _ = m(x)
        compiled = torch.compile(m, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # warm-up, record, replay
            got, _ = compiled(x)
            got = got.clone()
    assert rel_err(got, want) < 1e-5
