"""Custom ops ``hebbkern::plastic_linear_triton_fwd`` / ``plastic_linear_triton_bwd`` over the
Triton kernels of hebbkern/triton/plastic_linear.py (``torch.library.triton_op``), with autograd.

Same arguments and outputs as the C++ ops ``hebbkern::plastic_linear_fwd`` / ``plastic_linear_bwd``,
so ``hebbkern.ops.plastic_linear`` dispatches to either.

Imported lazily (first use of ``backend="triton"``), never by ``import hebbkern``.
"""

# No ``from __future__ import annotations``: triton_op reads the annotations to build the schema.
import torch
import triton
from torch import Tensor

from .. import _func
from .plastic_linear import plastic_linear_bwd_kernel, plastic_linear_fwd_kernel
from .plastic_rnn import interpreting
from .plastic_step_ops import _launch

# (BLOCK_B, BLOCK_M, BLOCK_K max, warps). tl.dot needs every dimension >= 16. IEEE float32 dots
# hold their tiles in registers: 32 x 32 x 64 on 4 warps reached 255 registers and spilled (32-48
# bytes in the forward, 564-5028 in the backward's loops, sm_80/sm_90); 32 x 32 x 32 on 8 warps
# compiles to 128 / 168 registers without spills (tests/test_plastic_step_triton_aot.py). The
# interpreter's blocks are the smallest tl.dot accepts, so that small odd sizes cross blocks.
GPU_BLOCKS = (32, 32, 32, 8)
INTERPRETER_BLOCKS = (16, 16, 16, 1)


def _blocks(K) -> dict:
    bb, bm, bk, warps = INTERPRETER_BLOCKS if interpreting() else GPU_BLOCKS
    bk = max(16, min(bk, triton.next_power_of_2(int(K))))
    cfg = {"BLOCK_B": bb, "BLOCK_M": bm, "BLOCK_K": bk}
    if not interpreting():
        cfg["num_warps"] = warps
    return cfg


@torch.library.triton_op("hebbkern::plastic_linear_triton_fwd", mutates_args=())
def plastic_linear_triton_fwd(x: Tensor, w: Tensor, alpha: Tensor, hebb: Tensor) -> Tensor:
    """``z = x (w + alpha * hebb)`` ``[B, K]``."""
    B, M = x.shape
    K = w.shape[1]
    per_sample = hebb.dim() == 3
    z = x.new_empty(B, K)
    cfg = _blocks(K)
    rows = B if per_sample else triton.cdiv(B, cfg["BLOCK_B"])
    _launch(
        plastic_linear_fwd_kernel, (rows, triton.cdiv(K, cfg["BLOCK_K"])),
        x.contiguous(), w.contiguous(), alpha.contiguous(), hebb.contiguous(), z, B, M, K,
        ALPHA_KIND=alpha.dim(), PER_SAMPLE=per_sample, **cfg,
    )  # fmt: skip
    return z


@torch.library.triton_op("hebbkern::plastic_linear_triton_bwd", mutates_args=())
def plastic_linear_triton_bwd(
    grad_z: Tensor, x: Tensor, w: Tensor, alpha: Tensor, hebb: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(dx, dw, dalpha, dhebb)``, contiguous, with the inputs' shapes."""
    B, M = x.shape
    K = w.shape[1]
    cfg = _blocks(K)
    P = triton.cdiv(M, cfg["BLOCK_M"])
    dx = x.new_empty(B, M)
    dw = x.new_empty(M, K)
    dhebb = x.new_empty(hebb.shape)
    # Alpha per output or scalar: per-program partial sums over the rows, summed below.
    dA = x.new_empty(M, K) if alpha.dim() == 2 else x.new_empty(P, K)
    _launch(
        plastic_linear_bwd_kernel, (P,),
        grad_z.contiguous(), x.contiguous(), w.contiguous(), alpha.contiguous(),
        hebb.contiguous(), dx, dw, dA, dhebb, B, M, K,
        ALPHA_KIND=alpha.dim(), PER_SAMPLE=hebb.dim() == 3, **cfg,
    )  # fmt: skip
    if alpha.dim() == 1:
        dA = dA.sum(0)
    elif alpha.dim() == 0:
        dA = dA.sum()
    return dx, dw, dA, dhebb


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_z):
    x, w, alpha, hebb = ctx.saved_tensors
    return tuple(plastic_linear_triton_bwd(grad_z, x, w, alpha, hebb))


_func.register_autograd(plastic_linear_triton_fwd, _backward, _setup_context)
