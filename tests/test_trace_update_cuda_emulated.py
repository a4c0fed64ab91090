"""The CUDA kernels of trace_update (per-sample trace), run on the CPU.

``torch.ops.hebbkern._trace_update_emulated_fwd/bwd`` execute the kernel bodies of
csrc/include/hebbkern/trace_update_block.h (the code csrc/cuda/trace_update.cu launches) block by
block on the host. Checked against the CPU kernels (themselves checked against the reference in
test_trace_update.py) and against the reference, for every rule and form of eta, odd sizes, several
block sizes and blocks per sample, and in reverse thread order (same bits: no races).
"""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err
from test_trace_update import ETA_KINDS, RULES, inputs

from hebbkern import reference

ops = torch.ops.hebbkern


def raw(kw):
    eta = kw["eta"].detach()
    clip = 0.0 if kw["clip"] is None else float(kw["clip"])
    return kw["trace"].detach(), kw["pre"].detach(), kw["post"].detach(), eta, kw["rule"], clip


def grad_like(t, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)


@pytest.mark.parametrize("threads, R", [(32, 1), (96, 3), (256, 2), (256, 50)])
@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 1), (2, 45, 33), (4, 100, 129)])
@pytest.mark.parametrize("eta_kind", ETA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_emulated_matches_cpu_kernels(rule, eta_kind, shape, threads, R):
    B, M, K = shape
    kw = inputs(rule, False, eta_kind, B=B, M=M, K=K, seed=M + K, grad=False)
    H, x, y, eta, r, clip = raw(kw)
    want = ops.trace_update_fwd(H, x, y, eta, r, clip)
    got = ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, threads, R)
    assert rel_err(got, want) <= 1e-13
    G = grad_like(H)
    want_b = ops.trace_update_bwd(G, H, x, y, eta, r, clip)
    got_b = ops._trace_update_emulated_bwd(G, H, x, y, eta, r, clip, threads, R, False)
    for name, a, b in zip(("dtrace", "dpre", "dpost", "deta"), got_b, want_b, strict=True):
        assert a.shape == b.shape, name
        assert not torch.isnan(a).any(), f"{name}: NaN (never written)"
        assert rel_err(a, b) <= 1e-12, f"{name}: {rel_err(a, b)}"


@pytest.mark.parametrize("rule", RULES)
def test_emulated_reverse_order_same_bits(rule):
    kw = inputs(rule, False, "per_post", B=3, M=70, K=45, dtype=torch.float32, seed=3, grad=False)
    H, x, y, eta, r, clip = raw(kw)
    G = grad_like(H)
    a = ops._trace_update_emulated_bwd(G, H, x, y, eta, r, clip, 128, 2, False)
    b = ops._trace_update_emulated_bwd(G, H, x, y, eta, r, clip, 128, 2, True)
    for name, u, v in zip(("dtrace", "dpre", "dpost", "deta"), a, b, strict=True):
        assert torch.equal(u, v), f"{name} depends on the execution order"


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("eta_kind", ETA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_emulated_against_reference(rule, eta_kind, dtype, tol):
    kw = inputs(rule, False, eta_kind, B=2, M=37, K=29, seed=9)
    ref = {k: (v.detach().clone().requires_grad_() if isinstance(v, torch.Tensor) else v)
           for k, v in kw.items()}  # fmt: skip
    out_r = reference.trace_update(**ref)
    G = grad_like(out_r)
    out_r.backward(G)
    H, x, y, eta, r, clip = raw(kw)
    H, x, y, eta = (t.to(dtype) for t in (H, x, y, eta))
    out = ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 64, 2)
    assert rel_err(out, out_r) <= tol
    grads = ops._trace_update_emulated_bwd(G.to(dtype), H, x, y, eta, r, clip, 64, 2, False)
    for name, g in zip(("trace", "pre", "post", "eta"), grads, strict=True):
        assert rel_err(g, ref[name].grad) <= tol, name


@pytest.mark.parametrize("rule", RULES)
def test_emulated_shared_trace_takes_the_aten_path(rule):
    """A shared [M, K] trace runs the same GEMM code as the CPU op."""
    kw = inputs(rule, True, "scalar", grad=False)
    H, x, y, eta, r, clip = raw(kw)
    got = ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 64, 1)
    assert torch.equal(got, ops.trace_update_fwd(H, x, y, eta, r, clip))


def test_emulated_rejects_bad_block_shapes():
    kw = inputs("hebb", False, "scalar", grad=False)
    H, x, y, eta, r, clip = raw(kw)
    with pytest.raises(ValueError, match="threads must be a multiple of 32"):
        ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 40, 1)
    with pytest.raises(ValueError, match="blocks_per_sample"):
        ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 64, 0)


# ---- the launch geometry: the emulation runs the blocks of the CUDA launch's own grid
# (simt::trace_update_grid), with the indices the kernels read. The first H200 run found a launch
# that made a 2-D grid (x = row splits, y = samples) for a kernel that decodes a 1-D index: every
# sample but the first stayed unwritten. These tests fail on the CPU for such a geometry.


@pytest.mark.parametrize("B, R", [(5, 1), (5, 3), (3, 50)])
def test_emulation_writes_every_sample_of_the_grid(B, R):
    """Each sample's rows come from the blocks the grid assigns to it (the output is NaN-poisoned
    in the emulation, so a sample no block reaches fails as NaN)."""
    kw = inputs("oja", False, "per_post", B=B, M=70, K=33, seed=B + R, grad=False)
    H, x, y, eta, r, clip = raw(kw)
    want = ops.trace_update_fwd(H, x, y, eta, r, clip)
    got = ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 64, R)
    for b in range(B):
        assert not torch.isnan(got[b]).any(), f"sample {b} was never written"
        assert rel_err(got[b], want[b]) <= 1e-13, f"sample {b}"
    G = grad_like(H)
    want_b = ops.trace_update_bwd(G, H, x, y, eta, r, clip)
    got_b = ops._trace_update_emulated_bwd(G, H, x, y, eta, r, clip, 64, R, False)
    for name, a, w in zip(("dtrace", "dpre", "dpost", "deta"), got_b, want_b, strict=True):
        assert rel_err(a, w) <= 1e-12, name


def test_emulation_grid_past_cuda_y_limit():
    """70000 samples: more than CUDA allows on a grid's y or z (65535). The emulation rejects a grid
    the launch could not make, so this runs only with the samples on x."""
    kw = inputs("add", False, "scalar", B=70_000, M=1, K=2, seed=1, grad=False)
    H, x, y, eta, r, clip = raw(kw)
    got = ops._trace_update_emulated_fwd(H, x, y, eta, r, clip, 32, 1)
    assert rel_err(got, ops.trace_update_fwd(H, x, y, eta, r, clip)) <= 1e-13
