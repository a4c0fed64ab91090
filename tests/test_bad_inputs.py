"""The bad-input suite: malformed or unusual calls, each classified by what it did.

Every call runs in a child process (many per process; a call that kills its process is recorded
as a crash and the batch goes on in a new one), and is classified as

- ``clean``: a ``ValueError`` or ``TypeError`` whose message names the argument (what the README
  promises);
- ``unclear``: any other exception, or a message that names none of the expected arguments;
- ``silent``: no exception at all, for a call that is invalid;
- ``crash``: the process died (a signal, an abort);

and for the valid edge cases (empty dimensions, meta tensors, defaults) ``ok`` or ``rejected``.
The suite fails on anything but ``clean`` and ``ok``. It holds every case of issue 21 (the 26
unclear errors it summarises, the silent acceptances and the crashes) and more of each class.
"""

from __future__ import annotations

import pytest
from reliability_helpers import BadCase, bad_cases, classify, report

import hebbkern

S = """
f32, f64 = torch.float32, torch.float64
x3 = torch.randn(4, 2, 3)
p = [("p", torch.nn.Parameter(torch.randn(3)))]
"""

# Module inputs and states -------------------------------------------------------------------
MODULES = bad_cases(S, [
    ("rnn_dtype", "hnn.PlasticRNN(3, 5)(x3.double())", ("x",)),
    ("rnn_list", "hnn.PlasticRNN(3, 5)(x3.tolist())", ("x",)),
    ("rnn_state_tensor", "hnn.PlasticRNN(3, 5)(x3, torch.zeros(2, 5))", ("state",)),
    ("rnn_state_1", "hnn.PlasticRNN(3, 5)(x3, (torch.zeros(2, 5),))", ("state",)),
    ("rnn_state_4", "hnn.PlasticRNN(3, 5)(x3, (torch.zeros(2, 5),) * 4)", ("state",)),
    ("rnn_state_list_item", "hnn.PlasticRNN(3, 5)(x3, ([0.0], torch.zeros(2, 5, 5)))", ("state",)),
    ("rnn_clamp_list", "hnn.PlasticRNN(3, 5)(x3[:, 0], clamp_mask=[[True] * 5] * 4)", ("clamp_mask",)),
    ("rnn_complex", "hnn.PlasticRNN(3, 5, dtype=torch.complex64)", ("dtype",)),
    ("rnn_int_dtype", "hnn.PlasticRNN(3, 5, dtype=torch.int64)", ("dtype",)),
    ("rnn_device_cpu_meta", "hnn.PlasticRNN(3, 5, device='meta')(x3)", ("x",)),
    ("cell_dtype", "hnn.PlasticRNNCell(3, 5)(torch.randn(2, 3, dtype=torch.float64))", ("x",)),
    ("cell_list", "hnn.PlasticRNNCell(3, 5)([[1.0, 2.0, 3.0]])", ("x",)),
    ("cell_state_tensor", "hnn.PlasticRNNCell(3, 5)(torch.randn(2, 3), torch.zeros(2, 5))", ("state",)),
    ("cell_state_1", "hnn.PlasticRNNCell(3, 5)(torch.randn(2, 3), (torch.zeros(2, 5),))", ("state",)),
    ("cell_complex", "hnn.PlasticRNNCell(3, 5, dtype=torch.complex128)", ("dtype",)),
    ("lstm_dtype", "hnn.PlasticLSTM(3, 5)(x3.double())", ("x",)),
    ("lstm_list", "hnn.PlasticLSTM(3, 5)(x3.tolist())", ("x",)),
    ("lstm_state_tensor", "hnn.PlasticLSTM(3, 5)(x3, torch.zeros(1, 2, 5))", ("state",)),
    ("lstm_state_1", "hnn.PlasticLSTM(3, 5)(x3, (torch.zeros(1, 2, 5),))", ("state",)),
    ("lstm_complex", "hnn.PlasticLSTM(3, 5, dtype=torch.complex64)", ("dtype",)),
    ("hebb_linear_list", "hnn.HebbianLinear(3, 4)([[1.0, 2.0, 3.0]])", ("input",)),
    ("hebb_linear_dtype", "hnn.HebbianLinear(3, 4)(torch.randn(2, 3).double())", ("input",)),
    ("hebb_linear_complex", "hnn.HebbianLinear(3, 4, dtype=torch.complex64)", ("dtype",)),
    ("hebb_conv_list", "hnn.HebbianConv2d(1, 2, 3)([[[0.0] * 5] * 5])", ("input",)),
    ("hebb_conv_dtype", "hnn.HebbianConv2d(1, 2, 3)(torch.randn(1, 1, 5, 5).double())", ("input",)),
    ("dhp_list", "hnn.DHPSoftmax(3, 4)([[1.0, 2.0, 3.0]])", ("h",)),
    ("dhp_dtype", "hnn.DHPSoftmax(3, 4)(torch.randn(2, 3).double())", ("h",)),
    ("dhp_complex", "hnn.DHPSoftmax(3, 4, dtype=torch.complex64)", ("dtype",)),
    ("dhp_target_range", "hnn.DHPSoftmax(3, 4)(torch.randn(2, 3), torch.tensor([0, 4]))", ("target",)),
    ("dhp_target_neg", "hnn.DHPSoftmax(3, 4)(torch.randn(2, 3), torch.tensor([0, -1]))", ("target",)),
    ("dhp_target_float", "hnn.DHPSoftmax(3, 4)(torch.randn(2, 3), torch.zeros(2))", ("target",)),
])  # fmt: skip

# Consolidation ------------------------------------------------------------------------------
CONSOLIDATION = bad_cases(S, [
    ("ewc_module", "consolidation.EWC(torch.nn.Linear(2, 2))", ("params", "named_parameters")),
    ("ewc_tensor", "consolidation.EWC(torch.randn(3, requires_grad=True))", ("params",)),
    ("ewc_int", "consolidation.EWC(3)", ("params",)),
    ("ewc_triple", "consolidation.EWC([('a', p[0][1], 1)])", ("params",)),
    ("ewc_closure_int", "consolidation.EWC(p).consolidate([1])", ("closure",)),
    ("ewc_closures_int", "consolidation.EWC(p).consolidate(5)", ("closures",)),
    ("mas_closure_int", "consolidation.MAS(p).consolidate([1])", ("closure",)),
    ("online_gamma_str", "consolidation.OnlineEWC(p, gamma='x')", ("gamma",)),
    ("online_gamma_nan", "consolidation.OnlineEWC(p, gamma=float('nan'))", ("gamma",)),
    ("si_xi_inf", "consolidation.SI(p, xi=float('inf'))", ("xi",)),
    ("si_xi_str", "consolidation.SI(p, xi='x')", ("xi",)),
    ("ewc_strength_inf", "consolidation.EWC(p, strength=float('inf'))", ("strength",)),
    ("ewc_strength_nan", "consolidation.EWC(p, strength=float('nan'))", ("strength",)),
    ("ewc_strength_str", "consolidation.EWC(p, strength='1')", ("strength",)),
]) + [
    BadCase("mas_default_strength", "assert consolidation.MAS(p).strength == 1.0", (), S, expect_ok=True),
]  # fmt: skip

# Functional ops -----------------------------------------------------------------------------
R = """
u = torch.randn(3, 2, 4); w = torch.zeros(4, 4); a = torch.zeros(())
h = torch.zeros(2, 4); H = torch.zeros(2, 4, 4)
x = torch.randn(2, 3); W = torch.randn(3, 5)
"""
OPS = bad_cases(R, [
    ("rnn_u_list", "hebbkern.plastic_rnn(u.tolist(), w, a, eta=0.1)", ("u",)),
    ("rnn_u_complex", "hebbkern.plastic_rnn(u.cfloat(), w, a, eta=0.1)", ("u",)),
    ("rnn_u_int", "hebbkern.plastic_rnn(u.long(), w, a, eta=0.1)", ("u",)),
    ("rnn_w_dtype", "hebbkern.plastic_rnn(u, w.double(), a, eta=0.1)", ("w",)),
    ("rnn_w_shape", "hebbkern.plastic_rnn(u, w[:3], a, eta=0.1)", ("w",)),
    ("rnn_eta_list", "hebbkern.plastic_rnn(u, w, a, eta=[0.1])", ("eta",)),
    ("rnn_clip_nan", "hebbkern.plastic_rnn(u, w, a, rule='clip', eta=0.1, clip=float('nan'))", ("clip",)),
    ("rnn_mask_nan", "m = torch.zeros(3, 2, 4); m[0, 0, 0] = float('nan')\nhebbkern.plastic_rnn(u, w, a, eta=0.1, clamp_mask=m)", ("clamp_mask",)),
    ("rnn_mask_half", "hebbkern.plastic_rnn(u, w, a, eta=0.1, clamp_mask=torch.full((3, 2, 4), 0.5))", ("clamp_mask",)),
    ("rnn_mask_grad", "hebbkern.plastic_rnn(u, w, a, eta=0.1, clamp_mask=torch.ones(3, 2, 4, requires_grad=True))", ("clamp_mask",)),
    ("rnn_mask_int", "hebbkern.plastic_rnn(u, w, a, eta=0.1, clamp_mask=torch.ones(3, 2, 4, dtype=torch.int32))", ("clamp_mask",)),
    ("rnn_expanded_huge", "N = 2 ** 16\nhebbkern.plastic_rnn(torch.zeros(1, 0, N), torch.zeros(1, 1).expand(N, N), torch.zeros(()), eta=0.1)", ("w",)),
    ("step_mask_half", "hebbkern.plastic_step(h, h, H, w, a, eta=0.1, clamp_mask=torch.full((2, 4), 0.5))", ("clamp_mask",)),
    ("step_h_list", "hebbkern.plastic_step(h, h.tolist(), H, w, a, eta=0.1)", ("h",)),
    ("step_hebb_shape", "hebbkern.plastic_step(h, h, H[:, :3], w, a, eta=0.1)", ("hebb",)),
    ("trace_list", "hebbkern.trace_update([[0.0]], x, x, rule='add', eta=0.1)", ("trace",)),
    ("trace_complex", "hebbkern.trace_update(torch.zeros(3, 3).cfloat(), x.cfloat(), x.cfloat(), rule='add', eta=0.1)", ("trace",)),
    ("trace_eta_shape", "hebbkern.trace_update(torch.zeros(3, 3), x, x, rule='add', eta=torch.zeros(5))", ("eta",)),
    ("linear_list", "hebbkern.plastic_linear(x.tolist(), W, torch.zeros(()), W)", ("x",)),
    ("linear_complex", "hebbkern.plastic_linear(x.cfloat(), W.cfloat(), torch.zeros(()).cfloat(), W.cfloat())", ("x",)),
    ("linear_hebb_shape", "hebbkern.plastic_linear(x, W, torch.zeros(()), W[:2])", ("hebb",)),
    ("lstm_wh_shape", "hebbkern.plastic_lstm(torch.randn(2, 1, 8), torch.zeros(3, 8), torch.zeros(()), mod_w=torch.zeros(2))", ("wh",)),
    ("hebbian_list", "hebbkern.hebbian_update([[0.0]], x, x)", ("w",)),
    ("hebbian_B0", "hebbkern.hebbian_update(torch.randn(4, 3), torch.randn(0, 3), torch.randn(0, 4))", ("x",)),  # hebbian_update refuses an empty batch (a documented choice)
    ("hebbian_conv_B0", "hebbkern.hebbian_update(torch.randn(4, 3, 3, 3), torch.randn(0, 3, 5, 5), torch.randn(0, 4, 3, 3))", ("x",)),
])  # fmt: skip

# Raw custom ops, past the Python validation ------------------------------------------------------
RAW = [
    # The issue: the expected wh shape came from wh itself ("wh must have shape [3, 12]").
    BadCase(
        "raw_lstm_wh",
        "torch.ops.hebbkern.plastic_lstm_fwd(torch.randn(2, 1, 8), "
        "torch.zeros(3, 8), torch.zeros(()), None, None, None, None, None, torch.zeros(2), "
        "None, None, None, 'neuromod', 2.0, 1)",
        ("[2, 8]",),
        needs_ext=True,
    ),
    BadCase(
        "raw_lstm_u_not_4n",
        "torch.ops.hebbkern.plastic_lstm_fwd(torch.randn(2, 1, 7), "
        "torch.zeros(3, 8), torch.zeros(()), None, None, None, None, None, torch.zeros(2), "
        "None, None, None, 'neuromod', 2.0, 1)",
        ("u",),
        needs_ext=True,
    ),
    BadCase(
        "raw_trace_shape",
        "torch.ops.hebbkern.trace_update_fwd(torch.zeros(2, 3, 4), "
        "torch.zeros(2, 3), torch.zeros(2, 5), torch.tensor(0.1), 'add', 1.0)",
        ("trace",),
        needs_ext=True,
    ),
    BadCase(
        "raw_linear_shape",
        "torch.ops.hebbkern.plastic_linear_fwd(torch.zeros(2, 3), "
        "torch.zeros(4, 5), torch.zeros(()), torch.zeros(4, 5))",
        ("w",),
        needs_ext=True,
    ),
    BadCase(
        "raw_linear_bwd_grad",
        "torch.ops.hebbkern.plastic_linear_bwd(torch.zeros(3, 5), "
        "torch.zeros(2, 3), torch.zeros(3, 5), torch.zeros(()), torch.zeros(3, 5))",
        ("grad_z",),
        needs_ext=True,
    ),
]

# Valid edge cases: empty dimensions (SIGFPE before), meta tensors ----------------------------------
OK = [
    BadCase(
        "linear_K0",
        "hebbkern.plastic_linear(torch.randn(2, 3), torch.randn(3, 0), "
        "torch.randn(()), torch.randn(2, 3, 0))",
        expect_ok=True,
    ),
    BadCase(
        "linear_M0",
        "hebbkern.plastic_linear(torch.randn(2, 0), torch.randn(0, 3), "
        "torch.randn(()), torch.randn(2, 0, 3))",
        expect_ok=True,
    ),
    BadCase(
        "linear_B0_bwd",
        "x = torch.randn(0, 3, requires_grad=True)\n"
        "hebbkern.plastic_linear(x, torch.randn(3, 4), torch.randn(()), "
        "torch.randn(0, 3, 4, requires_grad=True)).sum().backward()",
        expect_ok=True,
    ),
    BadCase(
        "trace_K0",
        "hebbkern.trace_update(torch.randn(3, 4, 0), torch.randn(3, 4), "
        "torch.randn(3, 0), rule='add', eta=0.1)",
        expect_ok=True,
    ),
    BadCase(
        "trace_M0",
        "hebbkern.trace_update(torch.randn(3, 0, 4), torch.randn(3, 0), "
        "torch.randn(3, 4), rule='add', eta=0.1)",
        expect_ok=True,
    ),
    BadCase(
        "trace_shared_M0_bwd",
        "t = torch.randn(0, 4, requires_grad=True)\n"
        "hebbkern.trace_update(t, torch.randn(3, 0), torch.randn(3, 4, requires_grad=True), "
        "rule='oja', eta=0.1).sum().backward()",
        expect_ok=True,
    ),
    BadCase(
        "step_B0_bwd",
        "u = torch.randn(0, 5, requires_grad=True)\n"
        "w = torch.randn(5, 5, requires_grad=True)\n"
        "s = hebbkern.plastic_step(u, torch.zeros(0, 5), torch.zeros(0, 5, 5), w, "
        "torch.randn(5, 5, requires_grad=True), eta=0.1)\n"
        "s.h.sum().backward()",
        expect_ok=True,
    ),
    BadCase(
        "cell_B0_bwd",
        "hnn.PlasticRNNCell(3, 5)(torch.randn(0, 3)).h.sum().backward()",
        expect_ok=True,
    ),  # fmt: skip
    BadCase(
        "rnn_B0_bwd",
        "m = hnn.PlasticRNN(3, 5, rule='retro')\n"
        "out, s = m(torch.randn(4, 0, 3))\n(out.sum() + s.hebb.sum()).backward()",
        expect_ok=True,
    ),  # fmt: skip
    BadCase(
        "lstm_B0_bwd",
        "out, s = hnn.PlasticLSTM(3, 5)(torch.randn(4, 0, 3))\nout.sum().backward()",
        expect_ok=True,
    ),
    BadCase(
        "dhp_meta",
        "m = hnn.DHPSoftmax(3, 4, device='meta')\n"
        "z = m(torch.randn(2, 3, device='meta'), torch.zeros(2, dtype=torch.long, "
        "device='meta'))\nassert z.shape == (2, 4)",
        expect_ok=True,
    ),
    BadCase(
        "dhp_B0",
        "hnn.DHPSoftmax(3, 4)(torch.randn(0, 3), torch.zeros(0, dtype=torch.long))",
        expect_ok=True,
    ),  # fmt: skip
]

ALL = MODULES + CONSOLIDATION + OPS + OK + (RAW if hebbkern.extension_available() else [])


@pytest.fixture(scope="module")
def outcomes():
    return classify(ALL)


@pytest.mark.parametrize("group", ["MODULES", "CONSOLIDATION", "OPS", "RAW", "OK"])
def test_every_bad_input_is_a_clean_error(outcomes, group):
    ids = {c.id for c in globals()[group]}
    mine = [o for o in outcomes if o.case.id in ids]
    if group == "RAW" and not hebbkern.extension_available():
        pytest.skip("the compiled extension is not built")
    assert len(mine) == len(ids)
    bad = report(mine)
    assert not bad, "bad-input outcomes other than a clean error:\n" + bad


def test_classifier_detects_crash_and_silent():
    """The classifier itself: a process that dies is a crash, the rest of the batch still runs."""
    cases = [
        BadCase("ok", "int('x')", ("invalid literal",)),
        BadCase("boom", "import os, signal; os.kill(os.getpid(), signal.SIGFPE)", ("x",)),
        BadCase("quiet", "None", ("x",)),
        BadCase("unclear", "[].pop()", ("x",)),
    ]
    got = {o.case.id: o.kind for o in classify(cases)}
    assert got == {"ok": "clean", "boom": "crash", "quiet": "silent", "unclear": "unclear"}
