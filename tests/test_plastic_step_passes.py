"""The CPU plastic_step backward at the batch sizes of issue 20's maze loop (item 7; NOTES P9):
shared ``w`` and ``alpha`` gradients summed in group slices when B > 8 (groups of ceil(B / 8)
samples, the last one shorter) against the eager reference, and fixed-order sums (the same bits
on every call) for the maze's and the row split's shapes. The other plastic_step tests use B <= 4,
one sample per group.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_low_precision_rule, clone_inputs, rel_err
from helpers_step import run_step, step_inputs
from test_plastic_step_layout import transposed


def with_layout(kw: dict, layout: str) -> dict:
    if layout == "pre_post":
        return kw
    kw = transposed(kw)
    kw["layout"] = "post_pre"
    return kw


def assert_matches_reference(kw: dict, tol: float) -> None:
    out_ref, g_ref = run_step(clone_inputs(kw), "reference")
    out, g = run_step(clone_inputs(kw), "cpu")
    for k, v in out_ref.items():
        assert rel_err(out[k], v) < tol, k
    for k, v in g_ref.items():
        assert v is not None and v.norm() > 0, f"vacuous: no reference gradient of {k}"
        assert rel_err(g[k], v) < tol, k


# B > 8 with a shared w: groups of ceil(B / 8) samples, the last one shorter (B = 9: groups of 2,
# the last of 1; B = 30: of 4, the last of 2), with shared and per-sample alpha.
@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("B", [9, 17, 30])
@pytest.mark.parametrize("rule, alpha_kind", [("hebb", "per_connection"), ("neuromod", "per_sample"),
                                              ("retro", "per_connection"), ("clip", "scalar")])  # fmt: skip
def test_grouped_weight_gradient(rule, alpha_kind, B, layout, nan_poison):
    fan = rule in ("neuromod", "retro")
    kw = step_inputs(rule, alpha_kind, fanout=fan, clamp=True, B=B, N=6, seed=B)
    assert_matches_reference(with_layout(kw, layout), 1e-12)


@pytest.mark.parametrize("B, N", [(1, 300), (30, 100)])
def test_same_bits_every_call(B, N):
    """The kernels' sums have a fixed order: two calls give the same bits."""
    kw = step_inputs("neuromod", "per_connection", fanout=True, B=B, N=N, dtype=torch.float32)
    (o1, g1), (o2, g2) = run_step(clone_inputs(kw), "cpu"), run_step(clone_inputs(kw), "cpu")
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


# float32 at the row split's sizes (the other float32 tests stop at N = 129), where d eta sums
# N * N terms of mixed sign in float32 SIMD rows and row-chunk partials. NOTES P9 reported a miss of
# flash-attention's rule here; these cases (and seeds 0-3 drawn in float32) meet it.
@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("N", [256, 300])
@pytest.mark.parametrize("rule", ["hebb", "oja", "clip"])
def test_float32_eta_gradient_at_large_n(rule, N, layout):
    kw = with_layout(step_inputs(rule, "per_connection", B=1, N=N, seed=0), layout)
    exact = run_step(clone_inputs(kw), "reference")
    low = run_step(clone_inputs(kw, torch.float32), "reference")
    kernel = run_step(clone_inputs(kw, torch.float32), "cpu")
    assert_low_precision_rule(kernel, low, exact, torch.float32)
