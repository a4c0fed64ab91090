"""Per-sample w, alpha and eta (a population, issue 13 item 3) in the ``triton`` backend's raw ops.

- Here, on any machine: the alpha kind read from the canonical shapes, both ops traced on fake CUDA
  tensors with per-sample parameters (the gradients' shapes), and the interpreter suite
  (interpret_plastic_rnn_population_triton.py: every rule and alpha kind against the per-sample
  oracle) in its own pytest process with ``TRITON_INTERPRET=1``.
- On a machine with a CUDA GPU (skipped elsewhere): the same oracle check on the GPU.

The ahead-of-time compilation check is test_plastic_rnn_population_triton_aot.py.
"""

from __future__ import annotations

import pytest
import torch
from triton_checks import TOL
from triton_env import INTERPRETING, needs_cuda, needs_triton, run_interpreter_suite


@needs_triton
@pytest.mark.parametrize(
    "shape, kind",
    [((), 0), ((5,), 1), ((5, 5), 2), ((3, 1, 1), 0), ((3, 1, 5), 1), ((3, 5, 5), 2),
     ((1, 1, 1), 0)],
)  # fmt: skip
def test_alpha_kind_of_the_canonical_forms(shape, kind):
    from hebbkern.triton.plastic_rnn_ops import _alpha_kind

    assert _alpha_kind(torch.empty(shape)) == kind


@needs_triton
def test_interpreter_suite():
    """interpret_plastic_rnn_population_triton.py in its own pytest process, TRITON_INTERPRET=1
    set before triton is imported."""
    run_interpreter_suite("interpret_plastic_rnn_population_triton.py")


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("autotune", ["1", "0"])
@pytest.mark.parametrize(
    "alpha_shape, dalpha_shape",
    [((2, 16, 16), (2, 16, 16)), ((2, 1, 16), (2, 1, 16)), ((2, 1, 1), (2, 1, 1)), ((), ())],
)  # fmt: skip
def test_ops_trace_with_per_sample_parameters(alpha_shape, dalpha_shape, autotune, monkeypatch):
    """Without a GPU: both ops on fake CUDA tensors with w [B, N, N], the given alpha and eta [B]
    (the path torch.compile traces, through wrap_triton); the gradients keep the canonical
    per-sample shapes: dw [B, N, N], dalpha as alpha, deta [B]."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_bwd, plastic_rnn_triton_fwd

    monkeypatch.setenv("HEBBKERN_TRITON_AUTOTUNE", autotune)
    T, B, N, K = 5, 2, 16, 3
    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        u, w = torch.empty(T, B, N, **d), torch.empty(B, N, N, **d)
        alpha, eta = torch.empty(alpha_shape, **d), torch.empty(B, **d)
        mod_w, mod_b, fw, fb = (torch.empty(N, **d), torch.empty((), **d), torch.empty(N, **d),
                                torch.empty(N, **d))  # fmt: skip
        h, hebb, elig, ckh, cke, mod = plastic_rnn_triton_fwd(
            u, w, alpha, None, None, None, None, eta, mod_w, mod_b, fw, fb, "retro", 1.0, K
        )
        grads = plastic_rnn_triton_bwd(h, hebb, elig, w, alpha, None, h, ckh, cke, mod, None, eta,
                                       mod_w, fw, fb, "retro", 1.0, K)  # fmt: skip
    assert tuple(h.shape) == (T, B, N) and tuple(hebb.shape) == (B, N, N)
    du, dw, dalpha, _, _, _, deta, dmw, dmb, dfw, dfb = grads
    assert tuple(du.shape) == (T, B, N)
    assert tuple(dw.shape) == (B, N, N)
    assert tuple(dalpha.shape) == dalpha_shape
    assert tuple(deta.shape) == (B,)
    # mod_w, mod_b and the fan-out stay shared: summed over the batch.
    assert [tuple(x.shape) for x in (dmw, dmb, dfw, dfb)] == [(N,), (), (N,), (N,)]


# ---------------------------------------------------------------------------------------------
# CUDA GPU.


@needs_cuda
@pytest.mark.parametrize(
    "rule, alpha_kind, fanout",
    [("hebb", "per_connection", False), ("oja", "per_neuron", False), ("clip", "scalar", False),
     ("neuromod", "per_connection", True), ("retro", "per_neuron", True),
     ("gated", "scalar", True)],
)  # fmt: skip
@pytest.mark.parametrize("N", [7, 129])
def test_cuda_population_matches_oracle(rule, alpha_kind, fanout, N, monkeypatch, nan_poison):
    from interpret_plastic_rnn_population_triton import check_population, population_inputs

    monkeypatch.setenv("HEBBKERN_TRITON_AUTOTUNE", "0")
    kw = population_inputs(rule, alpha_kind, fanout, True, T=6, B=3, N=N, seed=N)
    check_population(kw, TOL[torch.float32], device="cuda")
