"""``trace_update`` on CUDA tensors: the CUDA C++ kernels (per-sample trace) and the ATen path
(shared trace). Needs a GPU (benchmarks/gpu_check.sh runs it); without one, the same kernel code is
checked by test_trace_update_cuda_emulated.py."""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err
from test_trace_update import ETA_KINDS, RULES, copy, inputs, run

import hebbkern
from hebbkern import backends

needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and backends.cuda_kernels_available()),
    reason="needs a GPU and a CUDA build of hebbkern",
)


def to_cuda(kw, dtype=None):
    return {k: (v.detach().to("cuda", dtype or v.dtype).requires_grad_()
                if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}  # fmt: skip


@needs_cuda
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("eta_kind", ETA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_cuda_matches_reference(rule, eta_kind, shared):
    if shared and rule == "hebb" and eta_kind != "scalar":
        pytest.skip("a shared trace with rule 'hebb' takes a scalar eta")
    kw = inputs(rule, shared, eta_kind, B=5, M=70, K=33)
    o_r, g_r = run(copy(kw), "reference")
    o_c, g_c = run(to_cuda(kw, torch.float32), "cuda")
    assert rel_err(o_c.cpu(), o_r) < 1e-5
    for k in g_r:
        assert rel_err(g_c[k].cpu(), g_r[k]) < 1e-5, k


@needs_cuda
def test_cuda_default_and_bit_reproducible():
    kw = inputs("clip", False, "per_post", B=16, M=256, K=256, dtype=torch.float32)
    assert backends.resolve(None, torch.device("cuda"), family="trace_update") == "cuda"
    _, g1 = run(to_cuda(kw), None)
    _, g2 = run(to_cuda(kw), None)
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


@needs_cuda
def test_cuda_under_torch_compile_fullgraph():
    kw = to_cuda(inputs("oja", False, "per_sample", B=3, M=20, K=9, dtype=torch.float32))

    def f(trace, pre, post, eta):
        return hebbkern.trace_update(trace, pre, post, eta=eta, rule="oja", backend="cuda").sum()

    args = (kw["trace"], kw["pre"], kw["post"], kw["eta"])
    assert torch.allclose(f(*args), torch.compile(f, fullgraph=True)(*args), rtol=1e-5)
