"""The papers' variants (SPEC.md sections 1.1 and 2.1) on every path that has them.

``plastic_rnn`` and ``plastic_step`` on the CPU kernels against the eager reference (forward,
final states, every gradient, float64 and float32, odd sizes, gradcheck); the CUDA block kernels
(run on the CPU by the emulation) against the CPU kernels, output by output; the Triton backend and
the LSTM kernels refuse the variants they lack; unknown option values are errors.
"""

from __future__ import annotations

import pytest
import torch
from helpers import make_inputs, rel_err
from triton_env import needs_triton, run_interpreter_suite
from variant_helpers import (
    CASES,
    IDS,
    assert_float32_rule,
    assert_matches_reference,
    case_inputs,
    leaves,
    rnn_outputs_and_grads,
    step_kw,
    step_outputs_and_grads,
)

import hebbkern
from hebbkern import reference
from hebbkern._variants import check_variants
from hebbkern.reference._plastic_rule import bounded

ops = torch.ops.hebbkern


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rnn_cpu_matches_reference_float64(case, nan_poison):
    kw, opts = case_inputs(case)
    assert_matches_reference(rnn_outputs_and_grads, kw, opts, "cpu", 1e-11)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rnn_cpu_float32_rule(case):
    """float32 kernel against the float64 reference, within a few float32 roundings (the rule of
    the repository's other float32 tests: at most 100x the float32 error of the reference
    itself)."""
    kw64, opts = case_inputs(case, T=6, B=2, N=11)
    assert_float32_rule(kw64, opts, "cpu", 100, 1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rnn_cpu_gradcheck(case):
    kw, opts = case_inputs(case, T=3, B=2, N=5, seed=1)
    names = list(leaves(kw))

    def f(*xs):
        k = dict(kw, **dict(zip(names, xs, strict=True)))
        h, st = hebbkern.plastic_rnn(**k, **opts, backend="cpu")
        return (h, st.hebb) + ((st.elig,) if st.elig is not None else ())

    assert torch.autograd.gradcheck(f, [kw[n] for n in names], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_cpu_matches_reference_float64(case, nan_poison):
    kw, opts = case_inputs(case, B=3, N=9, seed=2)
    assert_matches_reference(step_outputs_and_grads, step_kw(kw), opts, "cpu", 1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_cpu_gradcheck(case):
    kw, opts = case_inputs(case, B=2, N=5, seed=3)
    skw = step_kw(kw)
    names = list(leaves(skw))

    def f(*xs):
        k = dict(skw, **dict(zip(names, xs, strict=True)))
        st = hebbkern.plastic_step(**k, **opts, backend="cpu")
        return (st.h, st.hebb) + ((st.elig,) if st.elig is not None else ())

    assert torch.autograd.gradcheck(f, [skw[n] for n in names], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_chain_equals_rnn(case):
    """T chained fused steps give plastic_rnn's outputs (the cell path of an RL agent)."""
    kw, opts = case_inputs(case, T=4, B=2, N=6, seed=4)
    h_all, st = hebbkern.plastic_rnn(**kw, **opts, backend="cpu")
    skw = step_kw(kw)
    h, hebb, elig = skw["h"], skw["hebb"], skw.get("elig")
    for t in range(kw["u"].shape[0]):
        s = dict(skw, u=kw["u"][t], h=h, hebb=hebb)
        if elig is not None:
            s["elig"] = elig
        if "clamp_mask" in kw:
            s["clamp_mask"] = kw["clamp_mask"][t]
        h, hebb, elig = hebbkern.plastic_step(**s, **opts, backend="cpu")
    assert rel_err(h, h_all[-1]) <= 1e-12
    assert rel_err(hebb, st.hebb) <= 1e-12


# ---- plastic_step's layouts (issue 20 item 2) and the row split -----------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_step_cpu_post_pre_matches_reference(case, nan_poison):
    """The CPU kernels' native post_pre layout against the reference (which transposes at the op
    boundary), every variant."""
    kw, opts = case_inputs(case, B=3, N=9, seed=5)
    opts = dict(opts, layout="post_pre")
    assert_matches_reference(step_outputs_and_grads, step_kw(kw), opts, "cpu", 1e-12)


@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("name", ["half_modulated", "combined", "soft_retro", "gated_fanout"])
def test_step_cpu_row_split(name, layout):
    """B = 1 at N >= 256: the CPU step splits one sample's rows over chunks (the row split); the
    unmodulated neurons' d eta joins the chunks' sum once."""
    case = CASES[IDS.index(name)]
    kw, opts = case_inputs(case, T=1, B=1, N=260, seed=8)
    opts = dict(opts, layout=layout)
    assert_matches_reference(step_outputs_and_grads, step_kw(kw), opts, "cpu", 1e-10)


# ---- the CUDA block kernels, run on the CPU ------------------------------------------------


def raw_args(kw, opts, ckpt):
    v = check_variants(kw["rule"], kw["u"].shape[2], **opts)
    mod_b = kw.get("mod_b")
    d = {k: (x.detach() if isinstance(x, torch.Tensor) else x) for k, x in kw.items()}
    return (
        d["u"], d["w"], d["alpha"], d.get("h0"), d.get("hebb0"), d.get("elig0"),
        d.get("clamp_mask"), d.get("eta"), d.get("mod_w"),
        None if mod_b is None else mod_b.detach(), d.get("fanout_w"), d.get("fanout_b"),
        kw["rule"], float(kw["clip"]), ckpt,
    ), v.code  # fmt: skip


@pytest.mark.parametrize("smem", [1 << 30, 0], ids=["smem", "global"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_emulated_cuda_matches_cpu_kernel(case, smem, nan_poison):
    kw, opts = case_inputs(case, T=7, B=2, N=37, seed=5)
    args, code = raw_args(kw, opts, 3)
    want = ops.plastic_rnn_fwd(*args, code)
    got = ops._plastic_rnn_emulated_fwd(*args, 64, smem, False, code)
    for name, a, b in zip(("h", "hebb", "elig", "hebb_ckpt", "elig_ckpt", "mod"), got, want,
                          strict=True):  # fmt: skip
        assert a.shape == b.shape, name
        if b.numel():
            assert rel_err(a, b) <= 1e-12, f"{name}: {rel_err(a, b):.3g}"
    g = torch.Generator().manual_seed(9)
    h, hebb, elig, hck, eck, mod = want
    retro = kw["rule"] == "retro"
    grads = (torch.randn(h.shape, generator=g, dtype=h.dtype),
             torch.randn(hebb.shape, generator=g, dtype=h.dtype),
             torch.randn(elig.shape, generator=g, dtype=h.dtype) if retro else None)  # fmt: skip
    (u, w, alpha, h0, _, _, clamp, eta, mod_w, mod_b, fw, fb, rule, clip, k) = args
    bargs = (*grads, u, w, alpha, h0, h, hck, eck, mod, clamp, eta, mod_w, mod_b, fw, fb, rule,
             clip, k)  # fmt: skip
    want_b = ops.plastic_rnn_bwd(*bargs, code)
    got_b = ops._plastic_rnn_emulated_bwd(*bargs, 64, smem, False, code)
    for i, (a, b) in enumerate(zip(got_b, want_b, strict=True)):
        assert a.shape == b.shape, i
        if b.numel():
            assert rel_err(a, b) <= 1e-11, f"output {i}: {rel_err(a, b):.3g}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_emulated_cuda_clusters_match_cpu_kernel(case, nan_poison):
    """The cluster forward and the cluster backward (4 blocks per sample, the working set in
    shared memory) run the variants as the CPU kernels do."""
    kw, opts = case_inputs(case, T=7, B=2, N=37, seed=5)
    args, code = raw_args(kw, opts, 3)
    want = ops.plastic_rnn_fwd(*args, code)
    got = ops._plastic_rnn_emulated_fwd_cluster(*args, 64, 1 << 30, False, 4, 132, 16, variant=code)
    # The same blocks synchronised through global memory (sm_80): the same bits.
    got_g = ops._plastic_rnn_emulated_fwd_cluster(*args, 64, 1 << 30, False, 4, 132, 16, True,
                                                   variant=code)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(got, got_g, strict=True))
    for name, a, b in zip(("h", "hebb", "elig", "hebb_ckpt", "elig_ckpt", "mod"), got, want,
                          strict=True):  # fmt: skip
        if b.numel():
            assert rel_err(a, b) <= 1e-12, f"{name}: {rel_err(a, b):.3g}"
    g = torch.Generator().manual_seed(9)
    h, hebb, elig, hck, eck, mod = want
    grads = (torch.randn(h.shape, generator=g, dtype=h.dtype),
             torch.randn(hebb.shape, generator=g, dtype=h.dtype),
             torch.randn(elig.shape, generator=g, dtype=h.dtype) if kw["rule"] == "retro"
             else None)  # fmt: skip
    (u, w, alpha, h0, _, _, clamp, eta, mod_w, mod_b, fw, fb, rule, clip, k) = args
    bargs = (*grads, u, w, alpha, h0, h, hck, eck, mod, clamp, eta, mod_w, mod_b, fw, fb, rule,
             clip, k)  # fmt: skip
    want_b = ops.plastic_rnn_bwd(*bargs, code)
    got_b = ops._plastic_rnn_emulated_bwd_cluster(
        *bargs, 64, 1 << 30, False, 4, 132, 16, variant=code
    )
    got_bg = ops._plastic_rnn_emulated_bwd_cluster(*bargs, 64, 1 << 30, False, 4, 132, 16, True,
                                                    variant=code)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(got_b, got_bg, strict=True))
    for i, (a, b) in enumerate(zip(got_b, want_b, strict=True)):
        assert a.shape == b.shape, i
        if b.numel():
            assert rel_err(a, b) <= 1e-11, f"output {i}: {rel_err(a, b):.3g}"


# ---- spec details and errors -----------------------------------------------------------------


def test_soft_clip_is_the_maze_code_at_clip_one():
    """At c = 1 the soft clip is the maze code's expression (SPEC.md section 1.1)."""
    g = torch.Generator().manual_seed(0)
    hebb = torch.rand(50, generator=g, dtype=torch.float64) * 2 - 1
    d = torch.randn(50, generator=g, dtype=torch.float64)
    maze = torch.clamp(
        hebb + torch.clamp(d, min=0.0) * (1 - hebb) + torch.clamp(d, max=0.0) * (hebb + 1), -1, 1
    )
    assert torch.equal(bounded(hebb, d, 1.0, True), maze)


def test_half_modulated_columns():
    """Neurons from n_modulated on follow clamp(H + eta P): the clip rule's update."""
    kw, opts = case_inputs(CASES[IDS.index("half_modulated")], T=1, N=8)
    h, st = reference.plastic_rnn(**kw, **opts)
    clip_kw = {k: v for k, v in kw.items() if k not in ("mod_w", "mod_b", "fanout_w", "fanout_b")}
    _, st_clip = reference.plastic_rnn(**dict(clip_kw, rule="clip"))
    assert torch.equal(st.hebb[..., 4:], st_clip.hebb[..., 4:])
    assert not torch.equal(st.hebb[..., :4], st_clip.hebb[..., :4])


def test_defaults_are_section_one():
    kw = make_inputs("neuromod", fanout=True)
    h, st = hebbkern.plastic_rnn(**kw, backend="cpu")
    h2, st2 = hebbkern.plastic_rnn(
        **kw, activation="tanh", mod_squash="tanh", soft_clip=False, n_modulated=None,
        backend="cpu",
    )  # fmt: skip
    assert torch.equal(h, h2) and torch.equal(st.hebb, st2.hebb)


BAD = [
    ({"activation": "gelu"}, ValueError, "activation"),
    ({"activation": None}, ValueError, "activation"),
    ({"mod_squash": "relu"}, ValueError, "mod_squash"),
    ({"soft_clip": 1}, TypeError, "soft_clip"),
    ({"n_modulated": 99}, ValueError, "n_modulated"),
    ({"n_modulated": 2.0}, TypeError, "n_modulated"),
]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize(("opts", "exc", "match"), BAD)
def test_unknown_option_values(opts, exc, match, backend):
    kw = make_inputs("neuromod")
    with pytest.raises(exc, match=match):
        hebbkern.plastic_rnn(**kw, **opts, backend=backend)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_step(**step_kw(kw), **opts, backend=backend)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_option_rule_mismatch(backend):
    with pytest.raises(ValueError, match="soft_clip"):
        hebbkern.plastic_rnn(**make_inputs("hebb"), soft_clip=True, backend=backend)
    with pytest.raises(ValueError, match="n_modulated"):
        hebbkern.plastic_rnn(**make_inputs("retro"), n_modulated=2, backend=backend)
    with pytest.raises(ValueError, match="needs eta"):
        hebbkern.plastic_rnn(**make_inputs("neuromod"), n_modulated=2, backend=backend)
    kw = make_inputs("neuromod")
    kw["rule"] = "gated"
    kw["eta"] = 0.1
    with pytest.raises(ValueError, match="eta"):
        hebbkern.plastic_rnn(**kw, backend=backend)


def test_raw_op_rejects_bad_variant_codes():
    kw, opts = case_inputs(CASES[0])
    args, _ = raw_args(kw, opts, 2)
    for code in (7, 3 * 8, 32, 64, 256):  # bad activation, bad squash, soft hebb, bits, unmod hebb
        with pytest.raises(ValueError):
            ops.plastic_rnn_fwd(*args, code)


@needs_triton
def test_triton_interpreter_suite():
    """interpret_plastic_variants_triton.py in its own pytest process with TRITON_INTERPRET=1
    (the Triton kernels on CPU tensors, against the reference)."""
    run_interpreter_suite("interpret_plastic_variants_triton.py")


# ---- the plastic LSTM's options (reference only) -------------------------------------------


def lstm_inputs(rule="neuromod", T=4, B=2, N=5, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0):
        return (scale * torch.randn(s, generator=g, dtype=torch.float64)).requires_grad_()

    return {
        "u": rnd(T, B, 4 * N, scale=0.5), "wh": rnd(N, 4 * N, scale=0.4),
        "alpha": rnd(N, scale=0.5), "mod_w": rnd(N), "mod_b": rnd(scale=0.2),
        "hebb0": rnd(B, N, N, scale=0.8), "rule": rule, "clip": 0.6,
    }  # fmt: skip


def test_lstm_read_clip_and_post_terms():
    kw = lstm_inputs()
    h_upd, st_upd = reference.plastic_lstm(**kw)
    h_read, st_read = reference.plastic_lstm(**kw, clip_mode="read")
    # The trace grows past the bound only with the read-out clip; the first step reads the same
    # clamped trace in both modes only where hebb0 is inside the bound.
    assert st_upd.hebb.abs().max() <= 0.6 + 1e-15
    assert st_read.hebb.abs().max() > 0.6
    outs = {p: reference.plastic_lstm(**kw, post=p)[1].hebb for p in
            ("candidate", "drive", "cell", "hidden")}  # fmt: skip
    assert torch.equal(outs["candidate"], st_upd.hebb)
    for p in ("drive", "cell", "hidden"):
        assert not torch.allclose(outs[p], outs["candidate"])


def test_lstm_variants_gradcheck():
    kw = lstm_inputs(T=3, N=4)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor)]
    for opts in ({"clip_mode": "read"}, {"post": "cell"}, {"post": "drive"}):

        def f(*xs, opts=opts):
            h, st = reference.plastic_lstm(**dict(kw, **dict(zip(names, xs, strict=True))), **opts)
            return h, st.hebb

        assert torch.autograd.gradcheck(f, [kw[n] for n in names])


# The fused LSTM kernels run every variant: tests/test_plastic_lstm.py (CPU) and
# tests/interpret_plastic_lstm_triton.py (Triton) check them against the reference.
def test_lstm_variant_errors():
    kw = lstm_inputs()
    with pytest.raises(ValueError, match="post"):
        hebbkern.plastic_lstm(**kw, post="output")
    with pytest.raises(ValueError, match="clip_mode"):
        hebbkern.plastic_lstm(**kw, clip_mode="aditya")
    with pytest.raises(ValueError, match="clip_mode"):
        hebbkern.plastic_lstm(**dict(kw, rule="hebb", eta=0.1, mod_w=None, mod_b=None),
                              clip_mode="read")  # fmt: skip


# ---- the modules' constructor arguments ----------------------------------------------------


def test_modules_pass_variants():
    torch.manual_seed(0)
    opts = {"activation": "selu", "mod_squash": "sigmoid", "soft_clip": True, "n_modulated": 3}
    layer = hebbkern.nn.PlasticRNN(4, 6, rule="neuromod", fanout=True, dtype=torch.float64, **opts)
    assert isinstance(layer.eta, torch.nn.Parameter)  # the unmodulated neurons' rate is learned
    assert "soft_clip=True" in repr(layer) and "n_modulated=3" in repr(layer)
    cell = hebbkern.nn.PlasticRNNCell(4, 6, rule="neuromod", fanout=True, dtype=torch.float64,
                                      **opts)  # fmt: skip
    cell.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    out, st = layer(x)
    u = torch.nn.functional.linear(x, layer.weight_ih, layer.bias_ih)
    want, _ = reference.plastic_rnn(
        u, layer.w, layer.alpha, rule="neuromod", eta=layer.eta, mod_w=layer.mod_w,
        mod_b=layer.mod_b, fanout_w=layer.fanout_w, fanout_b=layer.fanout_b, clip=layer.clip,
        **opts,
    )  # fmt: skip
    assert rel_err(out, want) <= 1e-12
    s = None
    for t in range(5):
        s = cell(x[t], s)
    assert rel_err(s.h, out[-1]) <= 1e-12 and rel_err(s.hebb, st.hebb) <= 1e-12
    with pytest.raises(ValueError, match="activation"):
        hebbkern.nn.PlasticRNN(4, 6, activation="gelu")
    with pytest.raises(ValueError, match="soft_clip"):
        hebbkern.nn.PlasticRNNCell(4, 6, rule="hebb", soft_clip=True)


def test_lstm_module_options():
    torch.manual_seed(0)
    m = hebbkern.nn.PlasticLSTM(3, 4, clip_mode="read", post="cell", dtype=torch.float64)
    assert "clip_mode='read'" in repr(m) and "post='cell'" in repr(m)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out_cpu, _ = m(x)
    with hebbkern.use_backend("reference"):
        out, _ = m(x)
    assert torch.allclose(out_cpu, out, rtol=1e-10, atol=1e-12)
    u = torch.nn.functional.linear(x, m.weight_ih_l0, m.bias_ih_l0) + m.bias_hh_l0
    want, _ = reference.plastic_lstm(
        u, m.weight_hh_l0.t(), m.alpha_l0, rule="neuromod", mod_w=m.mod_w_l0, mod_b=m.mod_b_l0,
        fanout_w=m.fanout_w_l0, fanout_b=m.fanout_b_l0, clip=2.0, clip_mode="read", post="cell",
    )  # fmt: skip
    assert torch.equal(out, want)
    with pytest.raises(ValueError, match="post"):
        hebbkern.nn.PlasticLSTM(3, 4, post="output")
