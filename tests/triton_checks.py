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
    assert_grads_close,
    assert_outputs_close,
    clone_inputs,
    grad_names,
    run,
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


def check_triton_against_reference(
    kw, device, tol, loss_on=OUTPUTS, require_nonzero=True, seed=1
) -> tuple[dict, dict]:
    """Runs the triton backend on ``kw`` (moved to ``device``) and the reference on a float64 CPU
    copy; compares every output and the gradient of every input."""
    dtype = kw["u"].dtype
    kt, kr = to_device(clone_inputs(kw), device), clone_inputs(kw, torch.float64)
    ot, gt = run(kt, "triton", loss_on, seed=seed)
    orf, gr = run(kr, "reference", loss_on, seed=seed)

    assert_outputs_close(ot, orf, dtype, tol, device)
    assert_grads_close(gt, gr, kt, kr, grad_names(kw), tol, "triton", require_nonzero, device)
    return ot, gt
