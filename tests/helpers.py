"""Shared helpers of the test suite: random inputs, error measures, running a backend with a loss.

Imported by the test modules as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import hebbkern

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
MODULATED_RULES = ("neuromod", "retro")
ETA_RULES = ("hebb", "oja", "clip", "retro")
ALPHA_KINDS = ("per_connection", "per_neuron", "scalar")

# Tensor arguments of plastic_rnn, in the order of the public signature.
TENSOR_ARGS = (
    "u", "w", "alpha", "eta", "mod_w", "mod_b", "fanout_w", "fanout_b", "h0", "hebb0", "elig0",
)  # fmt: skip
# The outputs a loss can use: h [T, B, N], state.h, state.hebb, state.elig.
OUTPUTS = ("h", "state_h", "hebb", "elig")


def all_cases(alpha_kinds=ALPHA_KINDS, fan_ids=("fanout", "nofan"), clamp_ids=("clamp", "noclamp")):
    """Every rule x alpha kind x fan-out (modulated rules) x clamp mask, as pytest parameters
    ``rule, alpha_kind, fanout, clamp`` with ids like ``retro-per_neuron-fanout-clamp``."""
    for rule in RULES:
        for ak in alpha_kinds:
            for fanout in (False, True) if rule in MODULATED_RULES else (False,):
                for clamp in (False, True):
                    cid = f"{rule}-{ak}-{fan_ids[not fanout]}-{clamp_ids[not clamp]}"
                    yield pytest.param(rule, ak, fanout, clamp, id=cid)


def odd_size_rules(retro_alpha: str) -> list:
    """The rule cases of the odd-size tests (parameters ``rule, alpha_kind, fanout, clamp``): a
    plain rule, a clipped one with a scalar alpha and a clamp mask, retro with fan-out."""
    return [
        pytest.param("oja", "per_connection", False, False, id="oja"),
        pytest.param("clip", "scalar", False, True, id="clip-scalar-clamp"),
        pytest.param("retro", retro_alpha, True, True,
                     id=f"retro-{retro_alpha.replace('_', '')}-fanout-clamp"),
    ]  # fmt: skip


def isa_rules(neuromod_alpha: str) -> list[tuple]:
    """The rule cases (``rule, alpha_kind, fanout, clamp``) run on every instruction set's build:
    each rule once, with every alpha kind among them."""
    return [("hebb", "per_connection", False, True), ("oja", "per_neuron", False, False),
            ("clip", "scalar", False, False), ("neuromod", neuromod_alpha, True, True),
            ("retro", "per_neuron", True, False)]  # fmt: skip


# (T, B, N) at the edges of plastic_rnn's loops: one step, one sample, one neuron, and a ragged last
# checkpoint chunk; the CPU and interpreter tests add sizes of their own.
EDGE_SHAPES = [
    (1, 3, 7),  # T = 1: a single step, a single chunk
    (7, 1, 9),  # B = 1
    (5, 2, 1),  # N = 1
    (10, 2, 7),  # K = 4: chunks 4, 4, 2
]


def rel_err(a: Tensor, b: Tensor) -> float:
    """``norm(a - b) / norm(b)`` in float64; the plain ``norm(a - b)`` when ``b`` is zero."""
    a = a.detach().to(torch.float64)
    b = b.detach().to(torch.float64)
    assert a.shape == b.shape, f"shape mismatch: {list(a.shape)} vs {list(b.shape)}"
    diff = (a - b).norm().item()
    nb = b.norm().item()
    return diff if nb == 0 else diff / nb


def random_source(seed: int):
    """A generator seeded with ``seed`` and ``rnd(*shape, scale=1.0)``, float64 normal draws from
    it (the draws of the input makers, in their order)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return scale * torch.randn(shape, generator=g, dtype=torch.float64)

    return g, rnd


def alpha_shape(alpha_kind: str, N: int) -> tuple:
    return {"per_connection": (N, N), "per_neuron": (N,), "scalar": ()}[alpha_kind]


def make_inputs(
    rule: str,
    alpha_kind: str = "per_connection",
    fanout: bool = False,
    clamp: bool = False,
    T: int = 7,
    B: int = 3,
    N: int = 9,
    dtype: torch.dtype = torch.float64,
    *,
    seed: int = 0,
    requires_grad: bool = True,
    clip: float = 0.5,
) -> dict:
    """Keyword arguments for ``hebbkern.plastic_rnn(**kw)`` with every optional input present.

    Scales keep ``tanh`` out of saturation (pre-activations of order 1) while the clip (0.5, with
    ``hebb0 ~ 0.3 * randn`` and ``eta`` in (0.1, 0.5)) bites for a fair share of the trace entries.
    Every floating tensor argument is a leaf with ``requires_grad`` (``eta`` and ``mod_b`` are 0-dim
    tensors); the clamp mask is boolean.
    """
    g, rnd = random_source(seed)
    s = 1.0 / math.sqrt(N)
    kw: dict = {
        "u": rnd(T, B, N, scale=0.6),
        "w": rnd(N, N, scale=s),
        "alpha": rnd(*alpha_shape(alpha_kind, N), scale=s),
        "h0": rnd(B, N, scale=0.5),
        "hebb0": rnd(B, N, N, scale=0.3),
    }
    add_rule_inputs(kw, rule, fanout, rnd, g, 1.5 * s, B, N)
    for k, v in kw.items():
        kw[k] = v.to(dtype).requires_grad_(requires_grad)
    if clamp:
        kw["clamp_mask"] = torch.rand(T, B, N, generator=g) < 0.3
    kw["rule"] = rule
    kw["clip"] = clip
    return kw


def add_rule_inputs(kw: dict, rule: str, fanout: bool, rnd, g, mod_scale: float, B: int, N: int):
    """Adds the rule's own inputs to ``kw`` (float64), drawn in this order from ``g`` and ``rnd``:
    eta (the eta rules), mod_w (scale ``mod_scale``), mod_b and, with ``fanout``, fanout_w /
    fanout_b (the modulated rules and gated), elig0 (retro)."""
    if rule in ETA_RULES:
        kw["eta"] = 0.1 + 0.4 * torch.rand((), generator=g, dtype=torch.float64)
    if rule in MODULATED_RULES or rule == "gated":  # gated: SPEC.md section 1.1
        kw["mod_w"] = rnd(N, scale=mod_scale)
        kw["mod_b"] = rnd(scale=0.2)
        if fanout:
            kw["fanout_w"] = rnd(N)
            kw["fanout_b"] = rnd(N, scale=0.3)
    if rule == "retro":
        kw["elig0"] = rnd(B, N, N, scale=0.3)


def grad_names(kw: dict) -> list[str]:
    """Names of the arguments that require a gradient."""
    return [k for k, v in kw.items() if isinstance(v, Tensor) and v.requires_grad]


def clone_inputs(kw: dict, dtype: torch.dtype | None = None) -> dict:
    """Fresh leaves (copies) with the same values, optionally cast, and the same ``requires_grad``."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, Tensor) and v.is_floating_point():
            c = v.detach().to(dtype or v.dtype, copy=True)
            out[k] = c.requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


def outputs_dict(h: Tensor, state) -> dict:
    out = {"h": h, "state_h": state.h, "hebb": state.hebb}
    if state.elig is not None:
        out["elig"] = state.elig
    return out


def loss_weights(outs: dict, seed: int = 1) -> dict:
    """Random float64 weights, one per element of each output (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=g, dtype=torch.float64) for k, v in sorted(outs.items())
    }


def run(kw: dict, backend: str | None, loss_on=OUTPUTS, seed: int = 1, backward: bool = True):
    """Runs ``hebbkern.plastic_rnn`` on ``kw`` and backpropagates a random-weighted sum of the
    outputs named in ``loss_on``. Returns ``(outputs, grads)``: detached outputs by name and the
    gradient of every input that requires one (``None`` where autograd produced none)."""
    h, state = hebbkern.plastic_rnn(**kw, backend=backend)
    outs = outputs_dict(h, state)
    grads = {}
    if backward:
        wts = loss_weights(outs, seed)
        loss = sum(
            (outs[k] * wts[k].to(outs[k].device, outs[k].dtype)).sum() for k in loss_on if k in outs
        )
        loss.backward()
        grads = {k: kw[k].grad for k in grad_names(kw)}
    return {k: v.detach() for k, v in outs.items()}, grads


def saved_bytes(op, kw: dict, backend: str) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of ``op(**kw, backend=...)``
    (a call returning ``(h, state)``); then runs that backward (the graph is usable)."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h, state = op(**kw, backend=backend)
    (h.sum() + state.hebb.sum()).backward()
    return sum(storages.values())


def check_cpu_against_reference(kw, tol, runner=run, loss_on=OUTPUTS, require_nonzero=True, seed=1):
    """Runs the cpu backend on ``kw`` and the reference on a float64 copy (``runner``: ``run`` for
    plastic_rnn, helpers_step's ``run_step``); compares every output and the gradient of every
    input. Returns the cpu outputs and gradients."""
    dtype = kw["u"].dtype
    kc, kr = clone_inputs(kw), clone_inputs(kw, torch.float64)
    oc, gc = runner(kc, "cpu", loss_on, seed=seed)
    orf, gr = runner(kr, "reference", loss_on, seed=seed)
    assert ("elig" in oc) == (kw["rule"] == "retro")
    assert_outputs_close(oc, orf, dtype, tol)
    assert_grads_close(gc, gr, kc, kr, grad_names(kw), tol, "cpu", require_nonzero)
    return oc, gc


def zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def on_device(t: Tensor, device) -> bool:
    """Whether ``t`` lives on ``device``. ``torch.device("cuda")`` (no index) means the current
    CUDA device, while a tensor's device always has its index (``cuda:0``), and torch compares the
    two as different: compare the type, and the index where ``device`` names one."""
    want = torch.device(device)
    if t.device.type != want.type:
        return False
    if want.index is not None:
        return t.device.index == want.index
    if want.type == "cuda":
        return t.device.index == torch.cuda.current_device()
    return True


def assert_outputs_close(got: dict, ref: dict, dtype, tol: float, device=None) -> None:
    """Every output of a backend (``got``) against the reference's: same names, dtype ``dtype``,
    the reference's shape (on ``device`` when given), finite, relative error below ``tol``."""
    assert got.keys() == ref.keys()
    for name, r in ref.items():
        g = got[name]
        assert g.dtype == dtype and g.shape == r.shape, name
        assert device is None or on_device(g, device), name
        assert torch.isfinite(g).all(), f"non-finite values in output {name}"
        err = rel_err(g.cpu(), r)
        assert err < tol, f"output {name}: relative error {err:.3g} >= {tol:g}"


def assert_grads_close(
    got: dict, ref: dict, kw: dict, ref_kw: dict, names, tol: float, backend: str,
    require_nonzero: bool = True, device=None,
) -> None:  # fmt: skip
    """The gradient of each input in ``names`` from a backend (``got``, inputs ``kw``) against the
    reference's (``ref``, inputs ``ref_kw``): a missing reference gradient counts as zero, which
    fails when ``require_nonzero`` (the check would be vacuous); dtype and shape of the input."""
    dtype = next(v for v in kw.values() if isinstance(v, Tensor) and v.is_floating_point()).dtype
    for name in names:
        r = zero_if_none(ref[name], ref_kw[name])
        g = got[name]
        if require_nonzero:
            assert r.norm() > 0, f"reference gradient of {name} is zero: the test is vacuous"
        if g is None:
            assert r.norm() == 0, f"{backend} backend gave no gradient for {name}"
            continue
        assert g.dtype == dtype and g.shape == kw[name].shape, name
        assert device is None or on_device(g, device), name
        assert torch.isfinite(g).all(), f"non-finite values in the gradient of {name}"
        err = rel_err(g.cpu(), r)
        assert err < tol, f"gradient of {name}: relative error {err:.3g} >= {tol:g}"


def fused_args(kw: dict, ckpt_every: int) -> tuple:
    """The argument list ``hebbkern.plastic_rnn`` passes to ``torch.ops.hebbkern.plastic_rnn_fwd``
    (eta and mod_b as 0-dim tensors, the clamp mask as bool; mod_b defaults to 0 for the modulated
    rules)."""
    rule = kw["rule"]
    mod_b = kw.get("mod_b")
    if mod_b is None and (rule in MODULATED_RULES or rule == "gated"):
        mod_b = torch.zeros((), dtype=kw["u"].dtype)
    return (
        kw["u"], kw["w"], kw["alpha"], kw.get("h0"), kw.get("hebb0"), kw.get("elig0"),
        kw.get("clamp_mask"), kw.get("eta"), kw.get("mod_w"), mod_b, kw.get("fanout_w"),
        kw.get("fanout_b"), rule, float(kw["clip"]), ckpt_every,
    )  # fmt: skip


def assert_low_precision_rule(kernel, low, exact, dtype, grad_dtype: bool = True) -> None:
    """flash-attention's rule on ``(outputs, grads)`` pairs: against the float64 reference
    (``exact``), the kernel's error is at most twice that of the reference run in the same low
    precision (``low``), plus 1e-6; the kernel's outputs (and, with ``grad_dtype``, its
    gradients) keep ``dtype``."""
    (o_k, g_k), (o_lp, g_lp), (o_64, g_64) = kernel, low, exact
    for k in o_64:
        assert o_k[k].dtype == dtype, k
        e_k, e_lp = rel_err(o_k[k].cpu(), o_64[k]), rel_err(o_lp[k].cpu(), o_64[k])
        assert e_k <= 2 * e_lp + 1e-6, f"output {k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"
    for k in g_64:
        assert not grad_dtype or g_k[k].dtype == dtype, k
        e_k, e_lp = rel_err(g_k[k].cpu(), g_64[k]), rel_err(g_lp[k].cpu(), g_64[k])
        assert e_k <= 2 * e_lp + 1e-6, f"grad {k}: kernel error {e_k:.3g}, reference {e_lp:.3g}"


# The error tests' argument edits: ``setter(x=DROP)`` removes ``x``, ``setter(x=f)`` sets it to
# ``f(kw)``, ``setter(x=v)`` to ``v``.
DROP = object()


def setter(**changes):
    def mutate(kw):
        for k, v in changes.items():
            if v is DROP:
                kw.pop(k, None)
            else:
                kw[k] = v(kw) if callable(v) else v

    return mutate


def assert_raw_outputs_match(h: Tensor, hebb: Tensor, elig: Tensor, kc: dict, kr: dict) -> None:
    """A raw forward op's ``h``, ``hebb`` (and, for retro, ``elig``), run on the inputs ``kc``,
    against the reference on the copies ``kr``: values and, through the same random-weighted loss,
    the gradient of every input, to 1e-10."""
    ref_h, ref_state = hebbkern.reference.plastic_rnn(**kr)
    outs = {"h": h, "hebb": hebb}
    refs = {"h": ref_h, "hebb": ref_state.hebb}
    if kr["rule"] == "retro":
        outs["elig"], refs["elig"] = elig, ref_state.elig
    for k in outs:
        assert rel_err(outs[k], refs[k]) < 1e-10, k
    wts = loss_weights(refs, seed=2)
    sum((outs[k] * wts[k]).sum() for k in outs).backward()
    sum((refs[k] * wts[k]).sum() for k in refs).backward()
    for name in grad_names(kc):
        assert rel_err(kc[name].grad, kr[name].grad) < 1e-10, name


def assert_rejects(fn, kw: dict, change: dict, exc, match: str, **options) -> None:
    """``fn(**kw, **options)`` runs, and raises ``exc`` matching ``match`` once ``kw`` takes
    ``change``."""
    fn(**kw, **options)  # valid without the change
    kw.update(change)
    with pytest.raises(exc, match=match):
        fn(**kw, **options)
