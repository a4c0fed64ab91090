"""The CUDA kernels of plastic_rnn, run on the CPU.

``torch.ops.hebbkern._plastic_rnn_emulated_fwd/bwd`` execute the kernel bodies of
csrc/include/hebbkern/plastic_rnn_block.h (the code csrc/cuda/plastic_rnn.cu launches) one thread
block at a time on the host. These tests check that code against the CPU kernels (themselves
checked against the eager reference in test_plastic_rnn.py) and against the reference directly:
every output of the forward (including the checkpoints), every gradient of the backward, every
rule, odd sizes, both placements of the working set (shared or global memory), several block
sizes, and a race check: running items, warps and lanes in reverse order must give the same bits.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    ALPHA_KINDS,
    MODULATED_RULES,
    RULES,
    clone_inputs,
    fused_args,
    loss_weights,
    make_inputs,
    outputs_dict,
    rel_err,
)

import hebbkern
from hebbkern import reference
from hebbkern.ops.plastic_rnn import checkpoint_interval

ops = torch.ops.hebbkern

# Shared-memory budgets: everything in shared memory, only the small vectors there (the [N, N]
# state in global memory), and nothing there.
BIG, SMALL, NONE = 1 << 30, 64 << 10, 0
PLACEMENTS = {"smem": BIG, "vectors_only": SMALL, "global": NONE}

FWD_NAMES = ("h", "hebb", "elig", "hebb_ckpt", "elig_ckpt", "mod")
BWD_NAMES = ("du", "dw", "dalpha", "dh0", "dhebb0", "delig0", "deta", "dmod_w", "dmod_b",
             "dfanout_w", "dfanout_b")  # fmt: skip


def emulated_fwd(args, threads, smem, reverse=False):
    return ops._plastic_rnn_emulated_fwd(*args, threads, smem, reverse)


def emulated_bwd(args, threads, smem, reverse=False):
    return ops._plastic_rnn_emulated_bwd(*args, threads, smem, reverse)


def backward_args(kw, fwd_out, ckpt, seed=3):
    """Arguments of plastic_rnn_bwd for random incoming gradients of h, hebb and elig."""
    h, hebb, elig, hebb_ckpt, elig_ckpt, mod = fwd_out
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    retro = kw["rule"] == "retro"
    f = fused_args(kw, ckpt)
    (u, w, alpha, h0, _, _, clamp, eta, mod_w, mod_b, fan_w, fan_b, rule, clip, k) = f
    return (rnd(h), rnd(hebb), rnd(elig) if retro else None, u, w, alpha, h0, h, hebb_ckpt,
            elig_ckpt, mod, clamp, eta, mod_w, mod_b, fan_w, fan_b, rule, clip, k)  # fmt: skip


def detached(kw):
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}


def assert_close_outputs(got, want, names, tol):
    for name, a, b in zip(names, got, want, strict=True):
        assert a.shape == b.shape, f"{name}: shape {list(a.shape)} vs {list(b.shape)}"
        if b.numel() == 0:
            continue
        assert not torch.isnan(a).any(), f"{name}: NaN (an element was never written)"
        assert rel_err(a, b) <= tol, f"{name}: relative error {rel_err(a, b):.3g} > {tol}"


def rule_cases(shapes: list[tuple]) -> list[tuple]:
    """Every rule with each of ``shapes`` = (alpha kind, fan-out, clamp, T, B, N, ckpt)."""
    return [(rule, *shape) for rule in RULES for shape in shapes]


# (alpha kind, fan-out, clamp, T, B, N, ckpt); the first two shared with the on-chip tests.
SHAPES = [
    ("per_connection", True, True, 9, 2, 33, 3),
    ("per_neuron", False, False, 5, 3, 7, 2),
    ("scalar", True, False, 1, 1, 1, 1),
    ("per_connection", False, True, 12, 2, 100, 4),
]
CASES = rule_cases(SHAPES)


def case_id(c):
    rule, ak, fan, clamp, T, B, N, ckpt = c
    return f"{rule}-{ak}-fan{int(fan)}-clamp{int(clamp)}-T{T}B{B}N{N}K{ckpt}"


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_emulated_kernels_match_cpu_kernels(case, placement):
    """float64: every forward output and every gradient equal the CPU kernels' to rounding."""
    rule, ak, fan, clamp, T, B, N, ckpt = case
    fan = fan and rule in MODULATED_RULES
    kw = detached(make_inputs(rule, ak, fan, clamp, T=T, B=B, N=N, seed=N + T))
    args = fused_args(kw, ckpt)
    threads = 64 if N < 50 else 512
    want = ops.plastic_rnn_fwd(*args)
    got = emulated_fwd(args, threads, PLACEMENTS[placement])
    assert_close_outputs(got, want, FWD_NAMES, 1e-12)
    bargs = backward_args(kw, want, ckpt)
    want_b = ops.plastic_rnn_bwd(*bargs)
    got_b = emulated_bwd(bargs, threads, PLACEMENTS[placement])
    assert_close_outputs(got_b, want_b, BWD_NAMES, 1e-11)


@pytest.mark.parametrize("threads", [32, 96, 1024])
@pytest.mark.parametrize("rule", RULES)
def test_emulated_block_sizes(rule, threads):
    """Block sizes with one warp, an odd number of warps, and the largest block."""
    kw = detached(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=6, B=2,
                              N=45, seed=7))  # fmt: skip
    args = fused_args(kw, 2)
    want = ops.plastic_rnn_fwd(*args)
    assert_close_outputs(emulated_fwd(args, threads, BIG), want, FWD_NAMES, 1e-12)
    bargs = backward_args(kw, want, 2)
    got_b = emulated_bwd(bargs, threads, NONE)
    assert_close_outputs(got_b, ops.plastic_rnn_bwd(*bargs), BWD_NAMES, 1e-11)


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("rule", RULES)
def test_no_races_reverse_order_same_bits(rule, placement):
    """Items, warps and lanes run in reverse order give bit-identical results: no item of a phase
    reads what another item of the same phase writes (what racecheck would find on a GPU)."""
    kw = detached(make_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, T=8, B=2, N=37,
                              dtype=torch.float32, seed=11))  # fmt: skip
    args = fused_args(kw, 3)
    fwd = emulated_fwd(args, 128, PLACEMENTS[placement])
    fwd_r = emulated_fwd(args, 128, PLACEMENTS[placement], reverse=True)
    for name, a, b in zip(FWD_NAMES, fwd, fwd_r, strict=True):
        assert torch.equal(a, b), f"forward {name} depends on the execution order"
    bargs = backward_args(kw, fwd, 3)
    bwd = emulated_bwd(bargs, 128, PLACEMENTS[placement])
    bwd_r = emulated_bwd(bargs, 128, PLACEMENTS[placement], reverse=True)
    for name, a, b in zip(BWD_NAMES, bwd, bwd_r, strict=True):
        assert torch.equal(a, b), f"backward {name} depends on the execution order"


class _Emulated(torch.autograd.Function):
    """plastic_rnn through the emulated kernels, with the autograd of hebbkern.ops.plastic_rnn."""

    @staticmethod
    def forward(ctx, threads, smem, rule, clip, ckpt, clamp, *tensors):
        u, w, alpha, h0, hebb0, elig0, eta, mod_w, mod_b, fan_w, fan_b = tensors
        out = ops._plastic_rnn_emulated_fwd(
            u, w, alpha, h0, hebb0, elig0, clamp, eta, mod_w, mod_b, fan_w, fan_b, rule, clip,
            ckpt, threads, smem, False,
        )  # fmt: skip
        ctx.save_for_backward(u, w, alpha, h0, out[0], out[3], out[4], out[5], eta, mod_w, mod_b,
                              fan_w, fan_b)  # fmt: skip
        ctx.cfg = (threads, smem, rule, clip, ckpt, clamp)
        return out[0], out[1], out[2]

    @staticmethod
    def backward(ctx, gh, gH, gE):
        u, w, alpha, h0, h, ck_h, ck_e, mod, eta, mod_w, mod_b, fan_w, fan_b = ctx.saved_tensors
        threads, smem, rule, clip, ckpt, clamp = ctx.cfg
        g = ops._plastic_rnn_emulated_bwd(
            gh, gH, gE if rule == "retro" else None, u, w, alpha, h0, h, ck_h, ck_e, mod, clamp,
            eta, mod_w, mod_b, fan_w, fan_b, rule, clip, ckpt, threads, smem, False,
        )  # fmt: skip
        return _Emulated.input_grads(ctx, g)

    @staticmethod
    def input_grads(ctx, g):
        """The backward op's outputs as the gradients of forward's inputs (None for the
        configuration arguments and for optional inputs that were not given)."""
        _, _, _, h0, _, _, _, _, eta, mod_w, mod_b, fan_w, fan_b = ctx.saved_tensors
        du, dw, dalpha, dh0, dH0, dE0, deta, dmw, dmb, dfw, dfb = g

        def keep(grad, x):
            return grad if x is not None else None

        return (None, None, None, None, None, None, du, dw, dalpha, keep(dh0, h0), dH0,
                keep(dE0, ctx.needs_input_grad[11] or None), keep(deta, eta), keep(dmw, mod_w),
                keep(dmb, mod_b), keep(dfw, fan_w), keep(dfb, fan_b))  # fmt: skip


def run_emulated(kw, threads, smem):
    T = kw["u"].shape[0]
    rule = kw["rule"]
    names = ("u", "w", "alpha", "h0", "hebb0", "elig0", "eta", "mod_w", "mod_b", "fanout_w",
             "fanout_b")  # fmt: skip
    tensors = [kw.get(n) for n in names]
    h, hebb, elig = _Emulated.apply(
        threads,
        smem,
        rule,
        float(kw["clip"]),
        checkpoint_interval(T),
        kw.get("clamp_mask"),
        *tensors,
    )
    return h, hebbkern.PlasticState(h[-1], hebb, elig if rule == "retro" else None)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_emulated_kernels_against_reference(rule, alpha_kind, dtype, tol):
    """End to end against the eager reference: outputs and the gradient of every input."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=11, B=2, N=29, seed=5)
    assert_emulation_matches_reference(kw, dtype, tol, 64, SMALL)


def assert_emulation_matches_reference(kw, dtype, tol, threads, smem) -> None:
    """The emulated kernels (``threads`` per block, ``smem`` bytes of shared memory) in ``dtype``
    against the float64 eager reference: outputs and the gradient of every input."""
    assert_run_matches_reference(kw, dtype, tol, lambda k: run_emulated(k, threads, smem))


def assert_run_matches_reference(kw, dtype, tol, run) -> None:
    """``run(inputs)`` (an emulated forward and backward with autograd, returning ``(h, state)``)
    in ``dtype`` against the float64 eager reference: outputs and the gradient of every input."""
    ref_kw = clone_inputs(kw)
    emu_kw = clone_inputs(kw, dtype)
    h_r, s_r = reference.plastic_rnn(**ref_kw)
    h_e, s_e = run(emu_kw)
    outs_r, outs_e = outputs_dict(h_r, s_r), outputs_dict(h_e, s_e)
    wts = loss_weights(outs_r)
    for k in outs_r:
        assert rel_err(outs_e[k], outs_r[k]) <= tol, k
    sum((outs_r[k] * wts[k]).sum() for k in outs_r).backward()
    sum((outs_e[k] * wts[k].to(dtype)).sum() for k in outs_e).backward()
    for k, v in ref_kw.items():
        if isinstance(v, torch.Tensor) and v.requires_grad:
            assert emu_kw[k].grad is not None, f"no gradient for {k}"
            assert rel_err(emu_kw[k].grad, v.grad) <= tol, (
                f"d{k}: {rel_err(emu_kw[k].grad, v.grad)}"
            )


def test_emulated_rejects_bad_block_size():
    kw = detached(make_inputs("hebb", T=2, B=1, N=4))
    with pytest.raises(ValueError, match="threads must be a multiple of 32"):
        emulated_fwd(fused_args(kw, 1), 48, BIG)


def test_emulated_empty_batch():
    """B = 0 launches nothing (a CUDA launch of zero blocks would be an error)."""
    kw = detached(make_inputs("retro", T=3, B=1, N=5))
    for k in ("u", "h0", "hebb0", "elig0"):
        kw[k] = kw[k][:, :0] if k == "u" else kw[k][:0]
    args = fused_args(kw, 2)
    out = emulated_fwd(args, 64, BIG)
    assert out[0].shape == (3, 0, 5) and out[1].shape == (0, 5, 5)
    grads = emulated_bwd(backward_args(kw, out, 2), 64, BIG)
    assert grads[0].shape == (3, 0, 5) and torch.equal(
        grads[1], torch.zeros(5, 5, dtype=grads[1].dtype)
    )


@pytest.mark.parametrize("N, fits", [(46340, True), (46341, False)])
def test_emulated_refuses_n_past_32bit_offsets(N, fits):
    """The block kernels' offsets within a sample are 32-bit ints: N * N >= 2^31 is refused by
    the launch code the emulation shares, before anything is allocated. The tensors are views of
    one element and clip = 0 is invalid, so a call that passes the N check stops at the clip
    check instead (a real N = 46340 run needs 8.6 GB per [N, N] array)."""
    one = torch.zeros((), dtype=torch.float32)
    u, w = one.expand(1, 1, N), one.expand(N, N)
    msg = f"N = {N} is too large for the block kernels"
    fwd = (u, w, w, None, None, None, None, None, None, None, None, None, "hebb", 0.0, 1)
    ck = one.expand(1, 1, N, N)
    bwd = (None, None, None, u, w, w, None, u, ck, ck, one.expand(1, 1), None, None, None, None,
           None, None, "hebb", 0.0, 1)  # fmt: skip
    for call, args in ((ops._plastic_rnn_emulated_fwd, fwd), (ops._plastic_rnn_emulated_bwd, bwd)):
        with pytest.raises(ValueError, match="clip must be > 0" if fits else msg):
            call(*args, 64, BIG, False)
