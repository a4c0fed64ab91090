"""Checks shared by the Triton tests: the CUDA ones (test_plastic_rnn_triton.py) and the interpreter
ones (interpret_plastic_rnn_triton.py, run in their own process with TRITON_INTERPRET=1)."""

from __future__ import annotations

import torch
from helpers import (
    OUTPUTS,
    assert_grads_close,
    assert_outputs_close,
    clone_inputs,
    grad_names,
    rel_err,
    run,
)

TOL = {torch.float64: 1e-8, torch.float32: 1e-4}


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


def assert_compiled_grads_match(op, kw: dict, outputs, backend: str = "triton") -> None:
    """Through ``torch.compile(fullgraph=True)``, ``op(**kw, backend=backend)`` gives the eager
    gradients of every input that requires one (loss: the sum of the squares of
    ``outputs(h, state)``)."""
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    fixed = {k: v for k, v in kw.items() if k not in names}

    def f(*tensors):
        h, state = op(**dict(zip(names, tensors, strict=True)), **fixed, backend=backend)
        return sum(v.square().sum() for v in outputs(h, state).values())

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True)
    leaves = [kw[k] for k in names]
    g_c = torch.autograd.grad(compiled(*leaves), leaves)
    g_e = torch.autograd.grad(f(*leaves), leaves)
    for name, a, b in zip(names, g_c, g_e, strict=True):
        assert rel_err(a.cpu(), b.cpu()) < 1e-5, name


def record_plastic_rnn_launches(monkeypatch, resident_max_bn: int | None = None) -> list:
    """Records ``(kernel, BLOCK_I, RESIDENT)`` of every plastic_rnn kernel launch the ops make
    (the interpreter path) into the returned list; with ``resident_max_bn`` the interpreter runs
    the resident kernels up to that padded width (64: wherever the GPU runs them)."""
    from hebbkern.triton import plastic_rnn_ops as ops

    seen = []

    class Spy:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            launch = self.kernel[grid]

            def run_and_record(*args, **kwargs):
                seen.append((self.name, kwargs["BLOCK_I"], kwargs["RESIDENT"]))
                return launch(*args, **kwargs)

            return run_and_record

    monkeypatch.setattr(ops, "_KERNELS", {n: Spy(n, k) for n, k in ops._KERNELS.items()})
    if resident_max_bn is not None:
        monkeypatch.setattr(ops, "INTERPRETER_RESIDENT_MAX_BN", resident_max_bn)
    return seen
