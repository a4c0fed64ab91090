"""The CPU plastic_step backward's two schemes and its grouped d w (issue 20, item 7; NOTES P9).

A sample whose trace is at least 128 KiB (``kMergedPassBytes`` in
csrc/cpu/plastic_step_kernel.cpp: N >= 182 in float32, N >= 128 in float64) runs the backward
with merged passes (pass A only reduces; pass B recomputes the trace adjoint and writes dH once);
smaller ones keep the two passes. Shared ``w``'s gradient is summed per group of samples by the
group's last sample. Both are checked here against the eager reference: float64 on either side of
the threshold, float32 with flash-attention's rule, and batches whose groups hold 2-4 samples
(B > 8), with a last group shorter than the others.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_low_precision_rule, clone_inputs, rel_err
from helpers_step import run_step, step_inputs
from test_plastic_step_layout import transposed

RULES = ("hebb", "oja", "clip", "neuromod", "retro")


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


# N = 127 and 128 in float64: the last size with two passes and the first with merged ones.
@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("N", [127, 128])
@pytest.mark.parametrize("rule", RULES)
def test_either_side_of_the_merge_threshold(rule, N, layout, nan_poison):
    fan = rule in ("neuromod", "retro")
    kw = step_inputs(rule, "per_connection", fanout=fan, clamp=True, B=2, N=N, seed=N)
    assert_matches_reference(with_layout(kw, layout), 1e-12)


@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("rule, alpha_kind", [("hebb", "per_connection"), ("retro", "per_sample"),
                                              ("neuromod", "per_neuron")])  # fmt: skip
def test_merged_passes_float32(rule, alpha_kind, layout, nan_poison):
    """float32 at N = 200 (merged): flash-attention's rule against the float64 reference."""
    fan = rule in ("neuromod", "retro")
    kw = with_layout(step_inputs(rule, alpha_kind, fanout=fan, clamp=True, B=1, N=200), layout)
    k32 = clone_inputs(kw, torch.float32)
    got = run_step(clone_inputs(k32), "cpu")
    low = run_step(clone_inputs(k32), "reference")
    exact = run_step(clone_inputs(kw), "reference")
    assert_low_precision_rule(got, low, exact, torch.float32)


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


@pytest.mark.parametrize("B, N", [(3, 200), (30, 100)])
def test_same_bits_every_call(B, N):
    """The kernels' sums have a fixed order: two calls give the same bits."""
    kw = step_inputs("neuromod", "per_connection", fanout=True, B=B, N=N, dtype=torch.float32)
    (o1, g1), (o2, g2) = run_step(clone_inputs(kw), "cpu"), run_step(clone_inputs(kw), "cpu")
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k
