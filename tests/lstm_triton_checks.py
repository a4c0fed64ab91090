"""Checks shared by the Triton plastic_lstm tests: the CUDA ones (test_plastic_lstm_triton.py) and
the interpreter ones (interpret_plastic_lstm_triton.py, run in their own process with
TRITON_INTERPRET=1)."""

from __future__ import annotations

import torch
from lstm_helpers import LSTM_OUTPUTS, clone_kw, run_lstm
from step_triton_checks import TOL, compare  # the single-step families' comparison, shared
from triton_checks import to_device

__all__ = ["TOL", "check_lstm_triton_against_reference"]


def check_lstm_triton_against_reference(
    kw: dict, device, tol: float, loss_on=LSTM_OUTPUTS, require_nonzero: bool = True
) -> tuple[dict, dict]:
    """The triton backend on ``kw`` (moved to ``device``) against the reference on a float64 CPU
    copy: every output, the final state and the gradient of every input."""
    kt, kr = to_device(clone_kw(kw), device), clone_kw(kw, torch.float64)
    ot, gt = run_lstm(kt, "triton", loss_on)
    orf, gr = run_lstm(kr, "reference", loss_on)
    compare(ot, gt, orf, gr, kw, kr, device, tol, require_nonzero=require_nonzero)
    return ot, gt
