"""The ``torch.ops.hebbkern.fop_step_`` custom op (C++ schema in csrc/ops.cpp): its fake kernel.

The op mutates its lists in place and returns nothing, so the fake kernel only has to exist (for
``torch.compile`` and ``opcheck``); it has no autograd (an optimiser step runs under no_grad).
The public API is :class:`hebbkern.optim.FOP`.
"""

from __future__ import annotations

import torch

from .. import _extension

if _extension.available():

    @torch.library.register_fake("hebbkern::fop_step_")
    def _fop_step_fake(
        params, grads, precond, prev_dir, buf1, buf2, steps, base, lr, hyper_lr, momentum, beta1,
        beta2, eps, weight_decay,
    ):  # fmt: skip
        return None
