"""The variant cases of SPEC.md section 1.1 shared by test_plastic_variants.py and the Triton
interpreter suite interpret_plastic_variants_triton.py."""

from __future__ import annotations

import torch
from helpers import make_inputs, rel_err

import hebbkern

# (name, rule the inputs are made for, rule run, options, fan-out, clamp mask)
CASES = [
    ("relu", "hebb", "hebb", {"activation": "relu"}, False, False),
    ("selu", "clip", "clip", {"activation": "selu"}, False, True),
    ("sigmoid", "oja", "oja", {"activation": "sigmoid"}, False, False),
    ("identity", "hebb", "hebb", {"activation": "identity"}, False, False),
    ("squash_sigmoid", "neuromod", "neuromod", {"mod_squash": "sigmoid"}, True, False),
    ("squash_identity", "retro", "retro", {"mod_squash": "identity"}, False, False),
    ("soft_clip", "clip", "clip", {"soft_clip": True}, False, False),
    ("soft_neuromod", "neuromod", "neuromod", {"soft_clip": True}, True, False),
    ("soft_retro", "retro", "retro", {"soft_clip": True}, False, False),
    ("gated", "neuromod", "gated", {"mod_squash": "sigmoid"}, False, False),
    ("gated_fanout", "neuromod", "gated", {"mod_squash": "sigmoid"}, True, False),
    ("half_modulated", "neuromod", "neuromod", {"n_modulated": "half"}, True, False),
    ("none_modulated", "neuromod", "neuromod", {"n_modulated": 0}, False, False),
    ("half_soft", "neuromod", "neuromod", {"n_modulated": "half", "soft_clip": True}, False, False),
    (
        "combined",
        "neuromod",
        "neuromod",
        {"activation": "selu", "mod_squash": "identity", "soft_clip": True},
        True,
        True,
    ),
]
IDS = [c[0] for c in CASES]


def case_inputs(case, *, T=5, B=3, N=7, dtype=torch.float64, seed=0):
    """(kw, options) for ``plastic_rnn(**kw, **options)``."""
    _, made_for, rule, opts, fanout, clamp = case
    kw = make_inputs(made_for, fanout=fanout, clamp=clamp, T=T, B=B, N=N, dtype=dtype, seed=seed)
    kw["rule"] = rule
    opts = dict(opts)
    if opts.get("n_modulated") == "half":
        opts["n_modulated"] = N // 2
    if "n_modulated" in opts:  # the unmodulated neurons' rate
        kw["eta"] = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    return kw, opts


def step_kw(kw):
    """plastic_step arguments for the first step of a plastic_rnn case."""
    s = {k: v for k, v in kw.items() if k not in ("u", "h0", "hebb0", "elig0", "clamp_mask")}
    s["u"], s["h"], s["hebb"] = kw["u"][0], kw["h0"], kw["hebb0"]
    if "elig0" in kw:
        s["elig"] = kw["elig0"]
    if "clamp_mask" in kw:
        s["clamp_mask"] = kw["clamp_mask"][0]
    return s


def leaves(kw):
    return {k: v for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad}


def rnn_outputs_and_grads(kw, opts, backend):
    h, st = hebbkern.plastic_rnn(**kw, **opts, backend=backend)
    outs = {"h": h, "hebb": st.hebb}
    if st.elig is not None:
        outs["elig"] = st.elig
    g = torch.Generator().manual_seed(5)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs.values())
    names = list(leaves(kw))
    grads = torch.autograd.grad(loss, [kw[n] for n in names], allow_unused=True)
    return outs, dict(zip(names, grads, strict=True))


def assert_match(got, want, tol):
    outs, grads = got
    outs_ref, grads_ref = want
    for k in outs_ref:
        assert rel_err(outs[k], outs_ref[k]) <= tol, f"{k}: {rel_err(outs[k], outs_ref[k]):.3g}"
    for k in grads_ref:
        a, b = grads[k], grads_ref[k]
        if b is None:
            assert a is None or not a.any(), k
            continue
        assert a is not None, f"d{k} missing"
        assert rel_err(a, b) <= tol, f"d{k}: {rel_err(a, b):.3g}"
