"""Checks shared by the Triton tests of the single-step families (``plastic_step``,
``plastic_linear``): on CUDA tensors (test_plastic_step_triton.py) and on CPU tensors under the
Triton interpreter (interpret_plastic_step_triton.py, its own process with TRITON_INTERPRET=1)."""

from __future__ import annotations

import torch
from helpers import (
    assert_grads_close,
    assert_outputs_close,
    clone_inputs,
    grad_names,
    loss_weights,
)
from helpers_step import STEP_OUTPUTS, step_outputs
from triton_checks import to_device

import hebbkern

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


def run_step(kw: dict, backend: str | None, loss_on=STEP_OUTPUTS, seed: int = 1):
    """helpers_step.run_step on any device: the loss weights (made on the CPU) follow the outputs'
    device. Returns ``(outputs, grads)`` (``None`` where autograd gave none)."""
    outs = step_outputs(hebbkern.plastic_step(**kw, backend=backend))
    wts = loss_weights(outs, seed)
    terms = [
        (outs[k] * wts[k].to(outs[k].device, outs[k].dtype)).sum() for k in loss_on if k in outs
    ]
    names = grad_names(kw)
    grads = torch.autograd.grad(sum(terms), [kw[k] for k in names], allow_unused=True)
    return {k: v.detach() for k, v in outs.items()}, dict(zip(names, grads, strict=True))


def compare(outs, grads, outs_ref, grads_ref, kw, kr, device, tol, require_nonzero=True):
    """Every output and the gradient of every input of a run against the reference run's."""
    dtype = next(v for v in kw.values() if isinstance(v, torch.Tensor)).dtype
    assert_outputs_close(outs, outs_ref, dtype, tol, device)
    assert_grads_close(
        grads, grads_ref, kw, kr, grad_names(kw), tol, "triton", require_nonzero, device
    )


def check_step_against_reference(kw, device, tol, loss_on=("h", "hebb", "elig"), **kwargs):
    """``plastic_step`` on the triton backend (inputs moved to ``device``) against the reference on
    a float64 CPU copy: outputs and every gradient."""
    kt, kr = to_device(clone_inputs(kw), device), clone_inputs(kw, torch.float64)
    ot, gt = run_step(kt, "triton", loss_on)
    orf, gr = run_step(kr, "reference", loss_on)
    compare(ot, gt, orf, gr, kw, kr, device, tol, **kwargs)
    return ot, gt


def linear_inputs(B, M, K, alpha_kind="per_connection", per_sample=False, dtype=torch.float64,
                  seed=0) -> dict:  # fmt: skip
    """Random leaves ``x, w, alpha, hebb`` of ``hebbkern.plastic_linear``."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        t = scale * torch.randn(shape, generator=g, dtype=torch.float64)
        return t.to(dtype).requires_grad_(True)

    ashape = {"per_connection": (M, K), "per_neuron": (K,), "scalar": ()}[alpha_kind]
    return {
        "x": r(B, M),
        "w": r(M, K, scale=M**-0.5),
        "alpha": r(*ashape, scale=M**-0.5),
        "hebb": r(*((B, M, K) if per_sample else (M, K)), scale=0.5),
    }


def run_linear(kw, backend, seed=1):
    z = hebbkern.plastic_linear(**kw, backend=backend)
    wt = loss_weights({"z": z}, seed)["z"].to(z.dtype).to(z.device)
    names = grad_names(kw)
    grads = torch.autograd.grad((z * wt).sum(), [kw[k] for k in names], allow_unused=True)
    return {"z": z.detach()}, dict(zip(names, grads, strict=True))


def check_linear_against_reference(kw, device, tol, **kwargs):
    kt, kr = to_device(clone_inputs(kw), device), clone_inputs(kw, torch.float64)
    ot, gt = run_linear(kt, "triton")
    orf, gr = run_linear(kr, "reference")
    compare(ot, gt, orf, gr, kw, kr, device, tol, **kwargs)
    return ot, gt
