"""Checks shared by the Triton tests: the CUDA ones (test_plastic_rnn_triton.py) and the interpreter
ones (interpret_plastic_rnn_triton.py, run in their own process with TRITON_INTERPRET=1)."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    ALPHA_KINDS,
    MODULATED_RULES,
    OUTPUTS,
    RULES,
    clone_inputs,
    grad_names,
    rel_err,
    run,
    zero_if_none,
)

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def all_cases():
    """Every rule x alpha kind x fan-out x clamp mask."""
    for rule in RULES:
        for ak in ALPHA_KINDS:
            for fanout in (False, True) if rule in MODULATED_RULES else (False,):
                for clamp in (False, True):
                    cid = f"{rule}-{ak}-{'fanout' if fanout else 'nofan'}-"
                    cid += "clamp" if clamp else "noclamp"
                    yield pytest.param(rule, ak, fanout, clamp, id=cid)


def to_device(kw: dict, device: torch.device) -> dict:
    """The same leaves on ``device`` (fresh leaves with the same ``requires_grad``)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, torch.Tensor):
            c = v.detach().to(device)
            out[k] = c.requires_grad_(v.requires_grad) if v.is_floating_point() else c
        else:
            out[k] = v
    return out


def on_device(t: torch.Tensor, device) -> bool:
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


def check_triton_against_reference(
    kw, device, tol, loss_on=OUTPUTS, require_nonzero=True, seed=1
) -> tuple[dict, dict]:
    """Runs the triton backend on ``kw`` (moved to ``device``) and the reference on a float64 CPU
    copy; compares every output and the gradient of every input."""
    dtype = kw["u"].dtype
    kt, kr = to_device(clone_inputs(kw), device), clone_inputs(kw, torch.float64)
    ot, gt = run(kt, "triton", loss_on, seed=seed)
    orf, gr = run(kr, "reference", loss_on, seed=seed)

    assert ot.keys() == orf.keys()
    for name, ref in orf.items():
        got = ot[name]
        assert got.dtype == dtype and got.shape == ref.shape and on_device(got, device), name
        assert torch.isfinite(got).all(), f"non-finite values in output {name}"
        err = rel_err(got.cpu(), ref)
        assert err < tol, f"output {name}: relative error {err:.3g} >= {tol:g}"

    for name in grad_names(kw):
        ref = zero_if_none(gr[name], kr[name])
        got = gt[name]
        if require_nonzero:
            assert ref.norm() > 0, f"reference gradient of {name} is zero: the test is vacuous"
        if got is None:
            assert ref.norm() == 0, f"triton backend gave no gradient for {name}"
            continue
        assert got.dtype == dtype and got.shape == kw[name].shape and on_device(got, device), name
        assert torch.isfinite(got).all(), f"non-finite values in the gradient of {name}"
        err = rel_err(got.cpu(), ref)
        assert err < tol, f"gradient of {name}: relative error {err:.3g} >= {tol:g}"
    return ot, gt
