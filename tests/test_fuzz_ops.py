"""Differential fuzzing (hypothesis) of every op family against its eager reference.

Random shapes (zero-size ones included where the op allows them), options, initial states and
layouts (contiguous, transposed, sliced views), float64 with a tight tolerance; forward outputs,
final states and every gradient (a fixed random projection of the outputs, back-propagated to
every input). Gains are kept small so that the recurrences stay contracting (non-chaotic) and a
mismatch is a bug, not amplified round-off. Profiles: see fuzz_helpers.py (``HEBBKERN_FUZZ=long``).
"""

from __future__ import annotations

import pytest
import torch
from fuzz_helpers import Maker, assert_same, fuzz_settings, layouts, run_with_grads
from hypothesis import given
from hypothesis import strategies as st

import hebbkern
from hebbkern.nn import DHPSoftmax
from hebbkern.optim import FOP
from hebbkern.reference.dhp_softmax import dhp_softmax_logits, dhp_trace_update

pytestmark = pytest.mark.skipif(
    not hebbkern.extension_available(), reason="the compiled extension is not built"
)

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
seeds = st.integers(0, 2**31 - 1)


def _rule_kwargs(m: Maker, rule, N, fanout, lay):
    kw = {}
    if rule in ("hebb", "oja", "clip", "retro"):
        kw["eta"] = m.randn((), 0.1, offset=0.2)
    if rule in ("neuromod", "retro"):
        kw["mod_w"] = m.randn((N,), 0.5, lay)
        kw["mod_b"] = m.randn((), 0.1)
        if fanout:
            kw["fanout_w"] = m.randn((N,), 0.5)
            kw["fanout_b"] = m.randn((N,), 0.1)
    return kw


def _alpha(m, kind, N, B, lay):
    shape = {"nn": (N, N), "n": (N,), "s": (), "bnn": (B, N, N)}[kind]
    return m.randn(shape, 0.3 / max(N, 1) ** 0.5, lay)


@fuzz_settings
@given(seed=seeds, T=st.integers(1, 4), B=st.integers(0, 3), N=st.integers(1, 5),
       rule=st.sampled_from(RULES), alpha=st.sampled_from(["nn", "n", "s"]),
       fanout=st.booleans(), init=st.booleans(), clamp=st.booleans(), lay=layouts,
       clip=st.sampled_from([0.05, 1.0, float("inf")]))  # fmt: skip
def test_fuzz_plastic_rnn(seed, T, B, N, rule, alpha, fanout, init, clamp, lay, clip):
    def fn(backend):
        def run(m):
            u = m.randn((T, B, N), 1.0, lay)
            w = m.randn((N, N), 0.4 / N**0.5, lay)
            a = _alpha(m, alpha, N, B, lay)
            kw = _rule_kwargs(m, rule, N, fanout, lay)
            if init:
                kw["h0"] = m.randn((B, N), 0.5, lay)
                kw["hebb0"] = m.randn((B, N, N), 0.2, lay)
                if rule == "retro":
                    kw["elig0"] = m.randn((B, N, N), 0.2, lay)
            if clamp:
                kw["clamp_mask"] = m.rand((T, B, N)) < 0.3
            return hebbkern.plastic_rnn(u, w, a, rule=rule, clip=clip, backend=backend, **kw)

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="rnn")


@fuzz_settings
@given(seed=seeds, B=st.integers(0, 3), N=st.integers(1, 5), rule=st.sampled_from(RULES),
       alpha=st.sampled_from(["nn", "n", "s", "bnn"]), per_sample_w=st.booleans(),
       fanout=st.booleans(), elig=st.booleans(), clamp=st.booleans(), lay=layouts,
       clip=st.sampled_from([0.05, 1.0]))  # fmt: skip
def test_fuzz_plastic_step(seed, B, N, rule, alpha, per_sample_w, fanout, elig, clamp, lay, clip):
    def fn(backend):
        def run(m):
            u = m.randn((B, N), 1.0, lay)
            h = m.randn((B, N), 0.5, lay)
            H = m.randn((B, N, N), 0.2, lay)
            w = m.randn((B, N, N) if per_sample_w else (N, N), 0.4 / N**0.5, lay)
            a = _alpha(m, alpha, N, B, lay)
            kw = _rule_kwargs(m, rule, N, fanout, lay)
            if rule == "retro" and elig:
                kw["elig"] = m.randn((B, N, N), 0.2, lay)
            if clamp:
                kw["clamp_mask"] = m.rand((B, N)) < 0.3
            return hebbkern.plastic_step(u, h, H, w, a, rule=rule, clip=clip, backend=backend, **kw)

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="step")


@fuzz_settings
@given(seed=seeds, B=st.integers(0, 3), M=st.integers(0, 4), K=st.integers(0, 4),
       rule=st.sampled_from(["hebb", "oja", "add", "clip"]), shared=st.booleans(),
       eta=st.sampled_from(["float", "0d", "b", "bk"]), lay=layouts)  # fmt: skip
def test_fuzz_trace_update(seed, B, M, K, rule, shared, eta, lay):
    if shared and rule == "hebb":
        eta = eta if eta in ("float", "0d") else "0d"

    def fn(backend):
        def run(m):
            t = m.randn((M, K) if shared else (B, M, K), 0.5, lay)
            pre = m.randn((B, M), 1.0, lay)
            post = m.randn((B, K), 1.0, lay)
            e = {"float": 0.3, "0d": None, "b": (B,), "bk": (B, K)}[eta]
            if e is None:
                e = m.randn((), 0.1, offset=0.2)
            elif isinstance(e, tuple):
                e = m.randn(e, 0.1, lay, offset=0.2)
            clip = 0.4 if rule == "clip" else None
            return hebbkern.trace_update(t, pre, post, rule=rule, eta=e, clip=clip,
                                         backend=backend)  # fmt: skip

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="trace")


@fuzz_settings
@given(seed=seeds, B=st.integers(0, 4), M=st.integers(0, 5), K=st.integers(0, 5),
       alpha=st.sampled_from(["mk", "k", "s"]), shared=st.booleans(), lay=layouts)  # fmt: skip
def test_fuzz_plastic_linear(seed, B, M, K, alpha, shared, lay):
    def fn(backend):
        def run(m):
            x = m.randn((B, M), 1.0, lay)
            w = m.randn((M, K), 0.5, lay)
            a = m.randn({"mk": (M, K), "k": (K,), "s": ()}[alpha], 0.3, lay)
            H = m.randn((M, K) if shared else (B, M, K), 0.5, lay)
            return hebbkern.plastic_linear(x, w, a, H, backend=backend)

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="linear")


@fuzz_settings
@given(seed=seeds, T=st.integers(1, 3), B=st.integers(0, 3), N=st.integers(1, 4),
       rule=st.sampled_from(RULES), alpha=st.sampled_from(["nn", "n", "s"]),
       fanout=st.booleans(), init=st.booleans(), lay=layouts,
       clip=st.sampled_from([0.05, 2.0]))  # fmt: skip
def test_fuzz_plastic_lstm(seed, T, B, N, rule, alpha, fanout, init, lay, clip):
    def fn(backend):
        def run(m):
            u = m.randn((T, B, 4 * N), 1.0, lay)
            wh = m.randn((N, 4 * N), 0.4 / N**0.5, lay)
            a = _alpha(m, alpha, N, B, lay)
            kw = _rule_kwargs(m, rule, N, fanout, lay)
            if init:
                kw["h0"] = m.randn((B, N), 0.5, lay)
                kw["c0"] = m.randn((B, N), 0.5, lay)
                kw["hebb0"] = m.randn((B, N, N), 0.2, lay)
                if rule == "retro":
                    kw["elig0"] = m.randn((B, N, N), 0.2, lay)
            return hebbkern.plastic_lstm(u, wh, a, rule=rule, clip=clip, backend=backend, **kw)

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="lstm")


@fuzz_settings
@given(seed=seeds, conv=st.booleans(), B=st.integers(1, 3), Cin=st.integers(1, 3),
       Cout=st.integers(1, 4), k=st.integers(1, 3), HW=st.integers(3, 5),
       stride=st.integers(1, 2), padding=st.integers(0, 1),
       rule=st.sampled_from(["hebb", "instar", "oja"]), sparse=st.booleans(),
       lay=layouts)  # fmt: skip
def test_fuzz_hebbian(seed, conv, B, Cin, Cout, k, HW, stride, padding, rule, sparse, lay):
    def fn(backend):
        def run(m):
            if conv:
                w = m.randn((Cout, Cin, k, k), 0.5, lay)
                x = m.randn((B, Cin, HW, HW), 1.0, lay)
                Ho = (HW + 2 * padding - k) // stride + 1
                y = m.randn((B, Cout, Ho, Ho), 1.0, lay)
                conv_kw = dict(stride=stride, padding=padding)
            else:
                w = m.randn((Cout, Cin), 0.5, lay)
                x = m.randn((B, Cin), 1.0, lay)
                y = m.randn((B, Cout), 1.0, lay)
                conv_kw = {}
            if sparse:  # k-WTA-like outputs: the kernel's sparse path
                y = y * (m.rand(y.shape) < 0.3)
            return hebbkern.hebbian_update(w, x, y, rule=rule, backend=backend, **conv_kw)

        return run

    m = Maker(seed)
    assert_same(run_with_grads(fn("cpu"), m), run_with_grads(fn("reference"), m), what="hebbian")


@fuzz_settings
@given(seed=seeds,
       shapes=st.lists(st.sampled_from([(3, 2, 3, 3), (2, 1, 1, 1), (4, 3), (1, 5), (0, 3), (3,),
                                        (0,), (), (2, 2, 2, 2)]), min_size=1, max_size=3),
       base=st.sampled_from([("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)]),
       wd=st.sampled_from([0.0, 0.01]), steps=st.integers(1, 3),
       precondition=st.sampled_from(["auto", "scalar", "none"]),
       transposed=st.booleans())  # fmt: skip
def test_fuzz_fop(seed, shapes, base, wd, steps, precondition, transposed):
    def run(backend):
        g = torch.Generator().manual_seed(seed)
        params = []
        for s in shapes:
            t = torch.randn(s, generator=g, dtype=torch.float64)
            if transposed and t.dim() == 2:
                t = t.t().contiguous().t()  # a non-contiguous parameter
            params.append(torch.nn.Parameter(t))
        opt = FOP(params, lr=0.05, hyper_lr=0.1, base=base[0], momentum=base[1],
                  weight_decay=wd, precondition=precondition, backend=backend)  # fmt: skip
        for _ in range(steps):
            for p in params:
                p.grad = 0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64)
            opt.step()
        states = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
        return [p.detach() for p in params] + states

    fused, ref = run("cpu"), run("reference")
    assert len(fused) == len(ref)
    for a, b in zip(fused, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@fuzz_settings
@given(seed=seeds, B=st.integers(0, 6), M=st.integers(1, 4), K=st.integers(1, 4),
       batches=st.integers(1, 3), lay=layouts)  # fmt: skip
def test_fuzz_dhp_softmax(seed, B, M, K, batches, lay):
    """The module (per-class sums by index_add) against the loop form of the paper, over a few
    batches: logits, the stored trace and the gradients of every parameter and input."""
    torch.manual_seed(seed)
    head = DHPSoftmax(M, K, eta_init=0.3, dtype=torch.float64)
    theta, alpha, eta = (p.detach().clone().requires_grad_() for p in
                         (head.theta, head.alpha, head.eta))  # fmt: skip
    hebb = head.hebb.clone()
    m = Maker(seed)
    m.start()
    for _ in range(batches):
        h = m.randn((B, M), 1.0, lay)
        target = torch.randint(0, K, (B,), generator=m.g)
        z = head(h, target)
        new = dhp_trace_update(hebb, h, target, eta)
        z_ref = dhp_softmax_logits(h, theta, alpha, new)
        hebb = new.detach()
        torch.testing.assert_close(z, z_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(head.hebb, hebb, rtol=1e-12, atol=1e-12)
        c = torch.randn(z.shape, generator=m.g, dtype=torch.float64)
        mods = (head.theta, head.alpha, head.eta, m.leaves[-1])
        refs = (theta, alpha, eta, m.leaves[-1])
        g1 = torch.autograd.grad((z * c).sum(), mods, allow_unused=True)
        g2 = torch.autograd.grad((z_ref * c).sum(), refs, allow_unused=True)
        for a, b, p in zip(g1, g2, mods, strict=True):
            a = torch.zeros_like(p) if a is None else a
            b = torch.zeros_like(p) if b is None else b
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
