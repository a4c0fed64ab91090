"""Populations (per-sample ``w``, ``alpha``, ``eta``; POPULATION.md) through the CUDA kernel bodies
of csrc/include/hebbkern/plastic_rnn_block.h, run on the CPU by the emulation: the raw ops against
the CPU kernels' (every forward output, checkpoints included, and every gradient, in each
placement of the working set and several block sizes), the same bits in reverse execution order,
and end to end against the per-sample oracle."""

from __future__ import annotations

import pytest
import torch
from helpers import RULES, rel_err
from population_helpers import POP_ALPHA_KINDS, make_population, oracle, run_pop
from test_plastic_rnn_cuda_emulated import (
    BIG,
    BWD_NAMES,
    FWD_NAMES,
    PLACEMENTS,
    _Emulated,
    assert_close_outputs,
    emulated_bwd,
    emulated_fwd,
)

import hebbkern
from hebbkern._validation import check_plastic_rnn_args
from hebbkern._variants import check_with_variants
from hebbkern.ops.plastic_rnn import checkpoint_interval

ops = torch.ops.hebbkern
MODULATED = ("neuromod", "retro")
NAMES = ("u", "w", "alpha", "h0", "hebb0", "elig0", "eta", "mod_w", "mod_b", "fanout_w", "fanout_b")


def canonical(kw: dict):
    """The public op's checked arguments: per-sample alpha and eta in the raw ops' forms (views of
    the caller's tensors, so autograd carries gradients back to their shapes)."""
    opts = {k: v for k, v in kw.items() if k not in ("u", "w", "alpha")}
    opts = {"eta": None, "mod_w": None, "mod_b": None, "fanout_w": None, "fanout_b": None,
            "h0": None, "hebb0": None, "elig0": None, "clamp_mask": None, **opts}  # fmt: skip
    a, _ = check_with_variants(
        check_plastic_rnn_args, kw["u"], kw["w"], kw["alpha"], activation="tanh",
        mod_squash="tanh", soft_clip=False, n_modulated=None, **opts,
    )  # fmt: skip
    return a


def raw_fwd_args(a, rule, ckpt):
    return (a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.clamp_mask, a.eta, a.mod_w, a.mod_b,
            a.fanout_w, a.fanout_b, rule, a.clip, ckpt)  # fmt: skip


def raw_bwd_args(a, rule, ckpt, out, seed=3):
    h, hebb, elig, ck_h, ck_e, mod = out
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    retro = rule == "retro"
    return (rnd(h), rnd(hebb), rnd(elig) if retro else None, a.u, a.w, a.alpha, a.h0, h, ck_h,
            ck_e, mod, a.clamp_mask, a.eta, a.mod_w, a.mod_b, a.fanout_w, a.fanout_b, rule, a.clip,
            ckpt)  # fmt: skip


def detached(kw):
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


CASES = [
    # rule, alpha kind, per-sample w, T, B, N, ckpt
    (rule, kind, w_ps, T, B, N, ckpt)
    for rule in RULES
    for (kind, w_ps, T, B, N, ckpt) in [
        ("per_sample_connection", True, 9, 3, 33, 3),
        ("per_sample_neuron", True, 5, 2, 7, 2),
        ("per_sample_scalar", True, 4, 1, 1, 1),
        ("shared", True, 6, 2, 100, 4),
        ("per_connection", False, 5, 3, 9, 2),  # shared w, alpha [B, N, N] drawn below
    ]
]


def case_id(c):
    rule, kind, w_ps, T, B, N, ckpt = c
    return f"{rule}-{kind}-w{'B' if w_ps else 'shared'}-T{T}B{B}N{N}K{ckpt}"


def case_inputs(case, dtype=torch.float64):
    rule, kind, w_ps, T, B, N, ckpt = case
    kw = make_population(rule, kind, rule in MODULATED, True, T=T, B=B, N=N, dtype=dtype,
                         seed=N + T, per_sample_w=w_ps)  # fmt: skip
    if not w_ps:
        kw["alpha"] = torch.randn(B, N, N, dtype=dtype).mul(0.2).requires_grad_()
    return kw


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emulated_population_matches_cpu_kernels(case, placement):
    """float64: every forward output and gradient equal the CPU kernels' to rounding (those are
    checked against the oracle in test_plastic_rnn_population.py)."""
    rule, ckpt, N = case[0], case[-1], case[-2]
    a = canonical(detached(case_inputs(case)))
    args = raw_fwd_args(a, rule, ckpt)
    threads = 64 if N < 50 else 512
    want = ops.plastic_rnn_fwd(*args)
    got = emulated_fwd(args, threads, PLACEMENTS[placement])
    assert_close_outputs(got, want, FWD_NAMES, 1e-12)
    bargs = raw_bwd_args(a, rule, ckpt, want)
    want_b = ops.plastic_rnn_bwd(*bargs)
    got_b = emulated_bwd(bargs, threads, PLACEMENTS[placement])
    assert_close_outputs(got_b, want_b, BWD_NAMES, 1e-11)


@pytest.mark.parametrize("threads", [32, 96, 1024])
def test_emulated_population_block_sizes(threads):
    case = ("retro", "per_sample_neuron", True, 6, 2, 45, 2)
    a = canonical(detached(case_inputs(case)))
    args = raw_fwd_args(a, "retro", 2)
    want = ops.plastic_rnn_fwd(*args)
    assert_close_outputs(emulated_fwd(args, threads, BIG), want, FWD_NAMES, 1e-12)
    bargs = raw_bwd_args(a, "retro", 2, want)
    got_b = emulated_bwd(bargs, threads, 0)
    assert_close_outputs(got_b, ops.plastic_rnn_bwd(*bargs), BWD_NAMES, 1e-11)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("rule", ["oja", "neuromod"])
def test_population_no_races_reverse_order_same_bits(rule, placement):
    case = (rule, "per_sample_connection", True, 8, 3, 37, 3)
    a = canonical(detached(case_inputs(case, torch.float32)))
    args = raw_fwd_args(a, rule, 3)
    fwd = emulated_fwd(args, 128, PLACEMENTS[placement])
    fwd_r = emulated_fwd(args, 128, PLACEMENTS[placement], reverse=True)
    for name, x, y in zip(FWD_NAMES, fwd, fwd_r, strict=True):
        assert torch.equal(x, y), f"forward {name} depends on the execution order"
    bargs = raw_bwd_args(a, rule, 3, fwd)
    bwd = emulated_bwd(bargs, 128, PLACEMENTS[placement])
    bwd_r = emulated_bwd(bargs, 128, PLACEMENTS[placement], reverse=True)
    for name, x, y in zip(BWD_NAMES, bwd, bwd_r, strict=True):
        assert torch.equal(x, y), f"backward {name} depends on the execution order"


def run_emulated(kw, threads, smem):
    a = canonical(kw)
    T = a.u.shape[0]
    tensors = [a.u, a.w, a.alpha, a.h0, a.hebb0, a.elig0, a.eta, a.mod_w, a.mod_b, a.fanout_w,
               a.fanout_b]  # fmt: skip
    ckpt = checkpoint_interval(T)
    h, hebb, elig = _Emulated.apply(threads, smem, a.rule, a.clip, ckpt, a.clamp_mask, *tensors)
    return h, hebbkern.PlasticState(h[-1], hebb, elig if a.rule == "retro" else None)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("rule, kind", [(r, k) for r in RULES for k in POP_ALPHA_KINDS[:3]])
def test_emulated_population_against_oracle(rule, kind, dtype, tol):
    """End to end (odd N, N > 256 in one case): outputs and the gradient of every input, in the
    shapes the caller gave, against the shared-parameter reference run once per sample."""
    N = 259 if (rule, kind) == ("hebb", "per_sample_connection") else 29
    T = 3 if N > 256 else 11
    kw = make_population(rule, kind, rule in MODULATED, True, T=T, B=2, N=N, seed=5)
    o, g = run_pop(
        {k: (v.detach().to(dtype).requires_grad_() if isinstance(v, torch.Tensor)
             and v.is_floating_point() else v) for k, v in kw.items()},
        lambda **k: run_emulated(k, 64, 64 << 10),
    )  # fmt: skip
    oe, ge = run_pop({k: (v.detach().requires_grad_() if isinstance(v, torch.Tensor)
                          and v.is_floating_point() else v) for k, v in kw.items()},
                     lambda **k: oracle(k))  # fmt: skip
    for k in oe:
        assert rel_err(o[k], oe[k]) <= tol, k
    for k in ge:
        assert g[k] is not None and g[k].shape == ge[k].shape, k
        assert rel_err(g[k], ge[k]) <= tol, f"d{k}: {rel_err(g[k], ge[k]):.3g}"
