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


def as_float32(kw: dict) -> dict:
    """The float32 leaves of a float64 case (other arguments as they are)."""
    return {k: (v.detach().float().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
                and v.is_floating_point() else v) for k, v in kw.items()}  # fmt: skip


def outputs_and_grads(h, st, kw, seed):
    """The outputs (``h``, the final trace and eligibility) and the gradient of every leaf of
    ``kw`` for a loss weighting each output by fixed random numbers."""
    outs = {"h": h, "hebb": st.hebb}
    if st.elig is not None:
        outs["elig"] = st.elig
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs.values())
    names = list(leaves(kw))
    grads = torch.autograd.grad(loss, [kw[n] for n in names], allow_unused=True)
    return outs, dict(zip(names, grads, strict=True))


def rnn_outputs_and_grads(kw, opts, backend):
    h, st = hebbkern.plastic_rnn(**kw, **opts, backend=backend)
    return outputs_and_grads(h, st, kw, 5)


def step_outputs_and_grads(kw, opts, backend):
    st = hebbkern.plastic_step(**kw, **opts, backend=backend)
    return outputs_and_grads(st.h, st, kw, 7)


def assert_matches_reference(outputs_and_grads_of, kw, opts, backend, tol):
    """``backend``'s outputs and gradients within ``tol`` of the reference's."""
    got = outputs_and_grads_of(kw, opts, backend)
    assert_match(got, outputs_and_grads_of(kw, opts, "reference"), tol)


def assert_float32_rule(kw64, opts, backend, factor, floor):
    """The float32 kernel's error against the float64 reference within ``factor`` times the float32
    reference's own (at least ``floor``), for every output and gradient."""
    kw32 = as_float32(kw64)
    got = rnn_outputs_and_grads(kw32, opts, backend)
    want = rnn_outputs_and_grads(kw64, opts, "reference")
    ref32 = rnn_outputs_and_grads(kw32, opts, "reference")
    for i, kind in ((0, ""), (1, "d")):
        for k, b in want[i].items():
            if b is not None:
                base = max(rel_err(ref32[i][k].double(), b), floor)
                assert rel_err(got[i][k].double(), b) <= factor * base, f"{kind}{k}"


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
