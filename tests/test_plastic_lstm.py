"""The fused C++ ``cpu`` backend of ``hebbkern.plastic_lstm`` against the eager ``reference``.

The reference (hebbkern/reference/plastic_lstm.py) is the oracle: outputs, final state and the
gradient of every input are compared on fresh random inputs, for every rule and alpha kind.
"""

from __future__ import annotations

import pytest
import torch
from helpers import RULES, rel_err
from lstm_helpers import clone_kw, compare_lstm, lstm_cases, make_lstm_inputs, run_lstm

import hebbkern
from hebbkern.ops.plastic_rnn import checkpoint_interval

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("rule, alpha_kind, fanout, clip_mode, post", list(lstm_cases()))
def test_matches_reference(rule, alpha_kind, fanout, clip_mode, post, dtype, nan_poison):
    kw = make_lstm_inputs(
        rule, alpha_kind, fanout, T=7, B=3, N=9, dtype=dtype, seed=3, clip_mode=clip_mode,
        post=post,
    )  # fmt: skip
    compare_lstm(kw, TOL[dtype])


@pytest.mark.parametrize(
    "T, B, N",
    [(1, 1, 1), (1, 2, 7), (5, 1, 33), (35, 2, 7), (4, 2, 100), (3, 1, 129)],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize(
    "rule, clip_mode, post",
    [("neuromod", "update", "candidate"), ("retro", "update", "candidate"),
     ("hebb", "update", "candidate"), ("retro", "read", "drive"), ("gated", "update", "hidden")],
    ids=lambda v: str(v),
)  # fmt: skip
def test_odd_sizes(T, B, N, rule, clip_mode, post, nan_poison):
    kw = make_lstm_inputs(
        rule, "per_neuron", True, T=T, B=B, N=N, seed=T + N, clip_mode=clip_mode, post=post
    )
    compare_lstm(kw, TOL[torch.float64])


@pytest.mark.parametrize(
    "rule, loss_on",
    [(r, (o,)) for r in ("neuromod", "retro") for o in ("h", "state_h", "state_c", "hebb")]
    + [("retro", ("elig",))],
)
def test_each_output_alone(rule, loss_on, nan_poison):
    """Autograd hands the backward None for every output the loss does not use."""
    kw = make_lstm_inputs(rule, "per_neuron", True, T=5, B=2, N=6, seed=9)
    oc, gc = run_lstm(clone_kw(kw), "cpu", loss_on)
    orf, gr = run_lstm(clone_kw(kw), "reference", loss_on)
    for name, ref in gr.items():
        got = gc[name]
        if ref is None or ref.norm() == 0:
            assert got is None or got.norm() == 0, name
            continue
        assert rel_err(got, ref) < 1e-8, name


def test_optional_inputs_absent(nan_poison):
    for rule in RULES + ("gated",):
        kw = make_lstm_inputs(rule, "per_neuron", False, T=6, B=2, N=5, seed=4)
        for k in ("h0", "c0", "hebb0", "elig0", "mod_b"):
            kw.pop(k, None)
        compare_lstm(kw, TOL[torch.float64], loss_on=("h", "state_c", "hebb", "elig"))


def test_non_contiguous(nan_poison):
    kw = make_lstm_inputs("retro", "per_connection", True, T=5, B=3, N=6, seed=2)
    nc = clone_kw(kw)
    nc["u"] = kw["u"].detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    nc["wh"] = kw["wh"].detach().t().contiguous().t().requires_grad_()
    nc["alpha"] = kw["alpha"].detach().t().contiguous().t().requires_grad_()
    nc["hebb0"] = kw["hebb0"].detach().transpose(1, 2).contiguous().transpose(1, 2)
    nc["hebb0"].requires_grad_()
    assert not nc["u"].is_contiguous() and not nc["wh"].is_contiguous()
    oc, gc = run_lstm(nc, "cpu")
    orf, gr = run_lstm(clone_kw(kw), "reference")
    for k in orf:
        assert rel_err(oc[k], orf[k]) < 1e-8, k
    for k in gr:
        assert rel_err(gc[k], gr[k]) < 1e-8, k


@pytest.mark.parametrize("variant", [0, 3, 5], ids=["default", "read-drive", "read-cell"])
def test_checkpoint_interval_does_not_change_gradients(variant, nan_poison):
    """The raw backward op at several checkpoint intervals, including none (K = T) and every step
    (variant: hebbkern/ops/plastic_lstm.py's code of SPEC.md section 2.1's options)."""
    kw = make_lstm_inputs("retro", "per_neuron", True, T=10, B=2, N=5, seed=8, requires_grad=False)
    args = (
        kw["u"], kw["wh"], kw["alpha"], kw["h0"], kw["c0"], kw["hebb0"], kw["elig0"], kw["eta"],
        kw["mod_w"], kw["mod_b"], kw["fanout_w"], kw["fanout_b"], "retro", kw["clip"],
    )  # fmt: skip
    g = torch.Generator().manual_seed(0)
    gh = torch.randn(10, 2, 5, generator=g, dtype=torch.float64)
    results = []
    for K in (1, 3, 4, 10, 50):
        h, c, gates, hebb, elig, ck, eck, mod = torch.ops.hebbkern.plastic_lstm_fwd(
            *args, K, variant
        )
        assert ck.shape[0] == -(-10 // min(K, 10))
        grads = torch.ops.hebbkern.plastic_lstm_bwd(
            gh, None, None, None, kw["wh"], kw["alpha"], kw["h0"], kw["c0"], h, c, gates, ck, eck,
            mod, kw["eta"], kw["mod_w"], kw["mod_b"], kw["fanout_w"], kw["fanout_b"], "retro",
            kw["clip"], K, variant,
        )  # fmt: skip
        results.append(grads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_no_grad_matches_grad_mode():
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=9, B=2, N=6, seed=1)
    h1, s1 = hebbkern.plastic_lstm(**kw, backend="cpu")
    with torch.no_grad():
        h2, s2 = hebbkern.plastic_lstm(**kw, backend="cpu")
    assert torch.equal(h1.detach(), h2) and torch.equal(s1.hebb.detach(), s2.hebb)


@pytest.mark.parametrize(
    "rule, clip_mode, post, clip",
    [("neuromod", "update", "candidate", 10.0), ("retro", "update", "candidate", 10.0),
     ("hebb", "update", "candidate", 10.0), ("gated", "update", "cell", 10.0),
     # The read-out clip never leaves the trace on its bound: it can bite without a kink.
     ("neuromod", "read", "drive", 0.4), ("retro", "read", "hidden", 0.4),
     ("oja", "update", "drive", 10.0)],
    ids=lambda v: str(v),
)  # fmt: skip
def test_gradcheck(rule, clip_mode, post, clip):
    kw = make_lstm_inputs(
        rule, "per_neuron", True, T=4, B=2, N=3, seed=6, clip=clip, clip_mode=clip_mode, post=post
    )
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    rest = {k: v for k, v in kw.items() if k not in names}

    def fn(*tensors):
        h, st = hebbkern.plastic_lstm(
            **dict(zip(names, tensors, strict=True)), **rest, backend="cpu"
        )
        return (h, st.c, st.hebb) + ((st.elig,) if st.elig is not None else ())

    assert torch.autograd.gradcheck(fn, [kw[k] for k in names])


@pytest.mark.parametrize(
    "rule, variant", [("neuromod", 0), ("retro", 0), ("oja", 0), ("retro", 3), ("gated", 6)]
)
def test_opcheck(rule, variant):
    kw = make_lstm_inputs(rule, "per_connection", rule != "oja", T=4, B=2, N=3, seed=7)
    args = (
        kw["u"], kw["wh"], kw["alpha"], kw["h0"], kw["c0"], kw["hebb0"], kw.get("elig0"),
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, kw["clip"], 2, variant,
    )  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_lstm_fwd.default, args)
    with torch.no_grad():
        h, c, gates, hebb, elig, ck, eck, mod = torch.ops.hebbkern.plastic_lstm_fwd(*args)
    d = {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    bargs = (
        torch.randn_like(h), torch.randn_like(c), torch.randn_like(hebb),
        torch.randn_like(elig) if rule == "retro" else None, d["wh"], d["alpha"], d["h0"],
        d["c0"], h, c, gates, ck, eck, mod, d.get("eta"), d.get("mod_w"), d.get("mod_b"),
        d.get("fanout_w"), d.get("fanout_b"), rule, kw["clip"], 2, variant,
    )  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_lstm_bwd.default, bargs)


def test_compile_fullgraph():
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=5, B=2, N=4, seed=5)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]

    def fn(*tensors):
        h, st = hebbkern.plastic_lstm(
            **dict(zip(names, tensors, strict=True)), rule="neuromod", clip=kw["clip"]
        )
        return h.sum() + st.c.sum() + st.hebb.square().sum()

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    args = [kw[k] for k in names]
    out_c = compiled(*args)
    g_c = torch.autograd.grad(out_c, args)
    out_e = fn(*args)
    g_e = torch.autograd.grad(out_e, args)
    assert torch.allclose(out_c, out_e)
    for a, b in zip(g_c, g_e, strict=True):
        assert torch.allclose(a, b)


def test_checkpoint_interval_used():
    assert checkpoint_interval(35) == 6


def test_low_precision_runs_in_float32():
    kw = make_lstm_inputs("neuromod", "per_neuron", True, T=4, B=2, N=8, seed=1)
    lo = clone_kw(kw, torch.bfloat16)
    h, st = hebbkern.plastic_lstm(**lo, backend="cpu")
    assert h.dtype == torch.bfloat16 and st.hebb.dtype == torch.bfloat16
    ref, _ = hebbkern.plastic_lstm(**clone_kw(kw), backend="reference")
    assert rel_err(h, ref) < 2e-2


@pytest.mark.parametrize("isa", ["default", "avx2", "avx512"])
@pytest.mark.parametrize("rule, alpha_kind, clip_mode, post",
                         [("neuromod", "per_neuron", "update", "candidate"),
                          ("retro", "per_connection", "update", "candidate"),
                          ("clip", "scalar", "update", "candidate"),
                          ("neuromod", "per_connection", "read", "drive"),
                          ("gated", "per_neuron", "update", "cell")])  # fmt: skip
def test_every_instruction_set(rule, alpha_kind, clip_mode, post, isa, monkeypatch, nan_poison):
    """The per-sample kernels are built once per instruction set; HEBBKERN_CPU_ISA caps the
    choice (an ISA the CPU lacks falls back to the best it has)."""
    monkeypatch.setenv("HEBBKERN_CPU_ISA", isa)
    v = {"clip_mode": clip_mode, "post": post}
    kw = make_lstm_inputs(rule, alpha_kind, True, T=8, B=2, N=21, seed=12, **v)
    compare_lstm(kw, TOL[torch.float64])
    kw = make_lstm_inputs(rule, alpha_kind, True, T=8, B=2, N=21, dtype=torch.float32, seed=12, **v)
    compare_lstm(kw, TOL[torch.float32])


def test_empty_batch():
    kw = make_lstm_inputs("retro", "per_neuron", True, T=3, B=0, N=4)
    h, st = hebbkern.plastic_lstm(**kw, backend="cpu")
    assert h.shape == (3, 0, 4) and st.hebb.shape == (0, 4, 4)
    g = torch.autograd.grad(h.sum() + st.hebb.sum(), [kw["wh"], kw["alpha"], kw["eta"]])
    assert all(x.abs().sum() == 0 for x in g)
