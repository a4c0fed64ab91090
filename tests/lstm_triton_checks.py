"""Checks shared by the Triton plastic_lstm tests: the CUDA ones (test_plastic_lstm_triton.py) and
the interpreter ones (interpret_plastic_lstm_triton.py, run in their own process with
TRITON_INTERPRET=1)."""

from __future__ import annotations

import torch
from helpers import on_device, rel_err
from lstm_helpers import LSTM_OUTPUTS, clone_kw, run_lstm
from triton_checks import to_device

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def check_lstm_triton_against_reference(
    kw: dict, device, tol: float, loss_on=LSTM_OUTPUTS, require_nonzero: bool = True
) -> tuple[dict, dict]:
    """The triton backend on ``kw`` (moved to ``device``) against the reference on a float64 CPU
    copy: every output, the final state and the gradient of every input."""
    dtype = kw["u"].dtype
    ot, gt = run_lstm(to_device(clone_kw(kw), device), "triton", loss_on)
    orf, gr = run_lstm(clone_kw(kw, torch.float64), "reference", loss_on)
    assert ot.keys() == orf.keys()
    for name, ref in orf.items():
        got = ot[name]
        assert got.dtype == dtype and got.shape == ref.shape and on_device(got, device), name
        assert torch.isfinite(got).all(), f"non-finite values in output {name}"
        err = rel_err(got.cpu(), ref)
        assert err < tol, f"output {name}: relative error {err:.3g} >= {tol:g}"
    for name, ref in gr.items():
        ref = torch.zeros_like(kw[name], dtype=torch.float64) if ref is None else ref
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
