"""The custom op ``hebbkern::fop_step_triton_``: the fused multi-tensor FOP step on the GPU.

Same argument list as the C++ op ``hebbkern::fop_step_`` (csrc/ops.cpp), so
:class:`hebbkern.optim.FOP` hands either the same lists. Per call (one parameter group, one device
and dtype), with the kernels of :mod:`hebbkern.triton.fop`:

1. ``steps += 1`` (one foreach launch; the counters live on the parameters' device);
2. d > 64 (linear layers): ``S = D_prev^T G`` as a cuBLAS GEMM through torch;
3. pass 1 of each class (flat, d <= 16, d <= 64): base optimiser, D_t, partial S;
4. the preconditioners: ``precond_kernel`` per matrix class; for d > 64 three [d, d] GEMMs;
5. pass 2 of each matrix class; for d > 64 one GEMM ``W -= lr D P``.

Why one opaque ``custom_op`` rather than ``triton_op``: a launch covers many tensors through a
table of their addresses (``data_ptr``), which fake tensors do not have, so the body cannot be
traced. To ``torch.compile`` the op is one node with a fake kernel (it mutates its lists and
returns nothing): a compiled training step keeps it in its graph, and the body is free of host
synchronisation and of allocations outside the caching allocator, so it is capturable in a CUDA
graph (the tables are cached by address, so a replay needs no host-to-device copy).

Imported lazily (first FOP step on the ``triton`` backend), never by ``import hebbkern``.
"""

# No ``from __future__ import annotations``: custom_op reads the annotations to build the schema.
import math
from collections import OrderedDict

import torch
import triton.language as tl
from torch import Tensor

from . import fop as k

# Shape classes by the preconditioned length d: padded lanes of the matrix classes.
SMALL_D, MID_D = 16, 64
# Launch configurations (tile rows, tiles per program, warps) per class; the interpreter uses
# small tiles so that tests with small tensors cross tile and program boundaries.
MATRIX_CONFIGS = {16: (32, 64, 4), 64: (16, 32, 8)}
FLAT_CONFIG = (1024, 8, 4)
# Warps of the preconditioner kernel (one program per tensor; [DPAD, DPAD] tiles in registers).
PRECOND_WARPS = {16: 4, 64: 8}
INTERPRETER_MATRIX = {16: (16, 2, 1), 64: (16, 2, 1)}
INTERPRETER_FLAT = (16, 2, 1)

_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
PARAM_DTYPES = tuple(_TL_DTYPES)

_PLANS: "OrderedDict[tuple, dict]" = OrderedDict()
_PLAN_CACHE_SIZE = 16
_DUMMY: dict[torch.device, Tensor] = {}


def matrix_config(dpad: int) -> tuple[int, int, int]:
    return INTERPRETER_MATRIX[dpad] if k.interpreting() else MATRIX_CONFIGS[dpad]


def flat_config() -> tuple[int, int, int]:
    return INTERPRETER_FLAT if k.interpreting() else FLAT_CONFIG


def shape_class(d: int) -> int | str:
    """0: no preconditioner; 16 / 64: a matrix class (DPAD); "large": cuBLAS products."""
    if d == 0:
        return 0
    if d <= SMALL_D:
        return SMALL_D
    if d <= MID_D:
        return MID_D
    return "large"


def _dummy(device: torch.device) -> Tensor:
    # The address given for a buffer a tensor does not have (never read or written).
    if device not in _DUMMY:
        _DUMMY[device] = torch.zeros(16, dtype=torch.float32, device=device)
    return _DUMMY[device]


def _plan(ws, gs, b1s, b2s, dirs, Ms, steps, ds) -> dict:
    """The tensor table and program tables of a call, cached by every address and size."""
    device = ws[0].device
    ptrs = [
        (w.data_ptr(), g.data_ptr(), b1.data_ptr(), b2.data_ptr(), dr.data_ptr(), M.data_ptr(),
         s.data_ptr(), w.numel(), d)
        for w, g, b1, b2, dr, M, s, d in zip(ws, gs, b1s, b2s, dirs, Ms, steps, ds, strict=True)
    ]  # fmt: skip
    key = (device, tuple(ptrs))
    plan = _PLANS.get(key)
    if plan is not None:
        _PLANS.move_to_end(key)
        return plan
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "hebbkern.fop_step_triton_: the tensors changed address during CUDA graph capture; "
            "run one step eagerly (warm-up) before capturing"
        )
    meta, progs = [], {0: [], SMALL_D: [], MID_D: []}
    tensors = {SMALL_D: [], MID_D: []}
    nprog = {0: 0, SMALL_D: 0, MID_D: 0}
    flat_rows = flat_config()[0] * flat_config()[1]
    for i, (w, g, b1, b2, dr, M, s, n, d) in enumerate(ptrs):
        cls = shape_class(d)
        row = [w, g, b1, b2, dr, M, s, n, d, 0, 0, 0]
        if cls in (0, "large"):
            # Flat: field ROWS is the element count, D > 0 asks for D_t only (no W update).
            for e in range(0, n, flat_rows):
                progs[0].append((i, e))
        else:
            tile, tiles, _ = matrix_config(cls)
            rows = n // d
            row[k.F_ROWS] = rows
            row[k.F_P0] = nprog[cls] + len(progs[cls])
            for r in range(0, rows, tile * tiles):
                progs[cls].append((i, r))
            row[k.F_P1] = nprog[cls] + len(progs[cls])
            row[k.F_SLOT] = len(tensors[cls])
            tensors[cls].append(i)
        meta.append(row)

    def dev(x, dtype):
        t = torch.tensor(x, dtype=dtype)
        if device.type != "cuda":
            return t
        return t.pin_memory().to(device, non_blocking=True)

    plan = {
        "meta": dev(meta, torch.int64),
        "progs": {c: dev(p, torch.int32) if p else None for c, p in progs.items()},
        "nprog": {c: len(p) for c, p in progs.items()},
        "tensors": {c: dev(t, torch.int32) if t else None for c, t in tensors.items()},
        "large": [i for i, (*_, d) in enumerate(ptrs) if shape_class(d) == "large"],
    }
    _PLANS[key] = plan
    if len(_PLANS) > _PLAN_CACHE_SIZE:
        _PLANS.popitem(last=False)
    return plan


def _launch(kernel, grid, args, constexprs, warps):
    if k.interpreting():
        kernel[grid](*args, **constexprs)
    else:
        kernel[grid](*args, **constexprs, num_warps=warps)


@torch.library.custom_op(
    "hebbkern::fop_step_triton_",
    mutates_args=("params", "precond", "prev_dir", "buf1", "buf2", "steps"),
)
def fop_step_triton_(
    params: list[Tensor],
    grads: list[Tensor],
    precond: list[Tensor],
    prev_dir: list[Tensor],
    buf1: list[Tensor],
    buf2: list[Tensor],
    steps: list[Tensor],
    base: str,
    lr: float,
    hyper_lr: float,
    momentum: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """One FOP step of every tensor of ``params`` (float32, bfloat16 or float16 on one CUDA
    device, or CPU under the Triton interpreter) with float32 state; lists as ``fop_step_``."""
    n = len(params)
    if n == 0:
        return
    _check(params, grads, precond, prev_dir, buf1, buf2, steps, base, momentum)
    kind = "adam" if base == "adam" else ("momentum" if momentum != 0 else "sgd")
    B = k.BASE_IDS[kind]
    device = params[0].device
    dummy = _dummy(device)
    torch._foreach_add_(steps, 1.0)
    ws = [p if p.is_contiguous() else p.contiguous() for p in params]
    gs = [g.contiguous() for g in grads]
    ds = [M.shape[0] if M.numel() > 0 else 0 for M in precond]
    b1s = buf1 if kind != "sgd" else [dummy] * n
    b2s = buf2 if kind == "adam" else [dummy] * n
    if kind == "momentum":
        dirs = list(buf1)
    else:
        dirs = [prev_dir[i] if ds[i] else dummy for i in range(n)]
    Ms = [M if M.numel() > 0 else dummy for M in precond]
    plan = _plan(ws, gs, b1s, b2s, dirs, Ms, steps, ds)
    meta = plan["meta"]
    W_DT = _TL_DTYPES[params[0].dtype]
    c = hyper_lr * lr
    lnb1 = math.log(beta1) if beta1 > 0 else -math.inf
    lnb2 = math.log(beta2) if beta2 > 0 else -math.inf
    scal = (momentum, beta1, 1.0 - beta1, beta2, 1.0 - beta2, lnb1, lnb2, eps, weight_decay)
    has_wd = weight_decay != 0

    # d > 64: S = D_prev^T G before pass 1 overwrites D_prev.
    large = {}
    for i in plan["large"]:
        d = ds[i]
        D2 = dirs[i].view(-1, d)
        G2 = gs[i].view(-1, d).float()
        S = D2.t() @ G2
        if has_wd:
            S.addmm_(D2.t(), ws[i].view(-1, d).float(), alpha=weight_decay)
        large[i] = S

    if plan["nprog"][0]:
        block, tiles, warps = flat_config()
        consts = dict(BASE=B, HAS_WD=has_wd, W_DT=W_DT, BLOCK=block, TILES=tiles)
        _launch(k.pass1_flat_kernel, (plan["nprog"][0],), (meta, plan["progs"][0], lr, *scal),
                consts, warps)  # fmt: skip
    pbufs = {}
    for dpad in (SMALL_D, MID_D):
        np_ = plan["nprog"][dpad]
        if not np_:
            continue
        tile, tiles, warps = matrix_config(dpad)
        partial = torch.empty(np_ * dpad * dpad, dtype=torch.float32, device=device)
        _launch(k.pass1_matrix_kernel, (np_,), (meta, plan["progs"][dpad], partial, *scal),
                dict(BASE=B, HAS_WD=has_wd, W_DT=W_DT, DPAD=dpad, TILE_ROWS=tile, TILES=tiles),
                warps)  # fmt: skip
        nt = plan["tensors"][dpad].numel()
        pbuf = torch.empty(nt * dpad * dpad, dtype=torch.float32, device=device)
        _launch(k.precond_kernel, (nt,), (meta, plan["tensors"][dpad], partial, pbuf, c),
                dict(DPAD=dpad), PRECOND_WARPS[dpad])  # fmt: skip
        pbufs[dpad] = pbuf
    for dpad, pbuf in pbufs.items():
        tile, tiles, warps = matrix_config(dpad)
        _launch(k.pass2_matrix_kernel, (plan["nprog"][dpad],), (meta, plan["progs"][dpad], pbuf,
                lr), dict(W_DT=W_DT, DPAD=dpad, TILE_ROWS=tile, TILES=tiles), warps)  # fmt: skip

    # d > 64: the preconditioner (unchanged at step 1, without a host branch) and W -= lr D P.
    for i, S in large.items():
        M = precond[i]
        d = ds[i]
        updated = M + c * ((S + S.t()) @ M)
        M.copy_(torch.where(steps[i] > 1, updated, M))
        P = M @ M.t()
        # Not addmm_(alpha=-lr): on the CPU (interpreter runs) it rounds the skinny products
        # several times worse than the reference's product then subtraction.
        ws[i].view(-1, d).add_(dirs[i].view(-1, d) @ P, alpha=-lr)
    for p, w in zip(params, ws, strict=True):
        if w is not p:
            p.copy_(w)


@fop_step_triton_.register_fake
def _(params, grads, precond, prev_dir, buf1, buf2, steps, base, lr, hyper_lr, momentum, beta1,
      beta2, eps, weight_decay):  # fmt: skip
    return None


def _check(params, grads, precond, prev_dir, buf1, buf2, steps, base, momentum) -> None:
    """Argument errors (ValueError/TypeError naming the list) before anything moves."""
    n = len(params)
    if base not in ("sgd", "adam"):
        raise ValueError(f"base must be 'sgd' or 'adam', got {base!r}")
    kind = "adam" if base == "adam" else ("momentum" if momentum != 0 else "sgd")
    for name, lst, want in (("grads", grads, n), ("precond", precond, n),
                            ("prev_dir", prev_dir, n), ("steps", steps, n),
                            ("buf1", buf1, 0 if kind == "sgd" else n),
                            ("buf2", buf2, n if kind == "adam" else 0)):  # fmt: skip
        if len(lst) != want:
            raise ValueError(f"{name} must have {want} entries, got {len(lst)}")
    dtype, device = params[0].dtype, params[0].device
    if dtype not in PARAM_DTYPES:
        raise TypeError(f"params must be float32, bfloat16 or float16, got {dtype}")
    f32 = torch.float32
    for i, p in enumerate(params):
        if p.dtype != dtype or p.device != device:
            raise TypeError(f"params[{i}] must be {dtype} on {device}, got {p.dtype} on {p.device}")
        g = grads[i]
        if (
            g.dtype != dtype
            or g.device != device
            or g.shape != p.shape
            or g.layout != torch.strided
        ):
            raise ValueError(f"grads[{i}] must be a dense {dtype} tensor of shape {tuple(p.shape)}")
        M = precond[i]
        if M.numel() > 0:
            d = M.shape[0]
            if M.dim() != 2 or M.shape[1] != d or p.numel() % d or not M.is_contiguous():
                raise ValueError(
                    f"precond[{i}] must be a contiguous [d, d] matrix, d dividing "
                    f"params[{i}].numel() ({p.numel()}), got {tuple(M.shape)}"
                )
            if M.dtype != f32 or M.device != device:
                raise TypeError(f"precond[{i}] must be float32 on {device}")
            if kind != "momentum":
                _check_state("prev_dir", prev_dir[i], p, i)
        if kind != "sgd":
            _check_state("buf1", buf1[i], p, i)
        if kind == "adam":
            _check_state("buf2", buf2[i], p, i)
        s = steps[i]
        if s.numel() != 1 or s.dtype != f32 or s.device != device:
            raise ValueError(f"steps[{i}] must be a one-element float32 tensor on {device}")


def _check_state(name: str, x: Tensor, p: Tensor, i: int) -> None:
    if (x.dtype != torch.float32 or x.device != p.device or x.shape != p.shape
            or not x.is_contiguous()):  # fmt: skip
        raise ValueError(
            f"{name}[{i}] must be a contiguous float32 tensor of shape {tuple(p.shape)} on "
            f"{p.device}, got {x.dtype} {tuple(x.shape)} on {x.device}"
        )
