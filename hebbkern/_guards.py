"""Guards against inputs the kernels would have to materialise at an unbounded cost.

The kernels read their tensors contiguously, so they copy any non-contiguous input. For an
ordinary view that copy is no larger than what the caller already holds, but an expanded view
(stride 0) can stand for far more elements than its storage: ``torch.zeros(1, 1).expand(2**16,
2**16)`` is one float that the copy would turn into 16 GiB, even with an empty batch. Such inputs
are refused, with a message naming the argument, before anything is allocated.
"""

from __future__ import annotations

from torch import Tensor

# Bytes an expanded view may grow to when copied: far above any shape the kernels are meant for,
# far below what would exhaust a machine's memory.
MAX_EXPANDED_BYTES = 1 << 30


def _is_expanded(x: Tensor) -> bool:
    return any(st == 0 and sz > 1 for sz, st in zip(x.shape, x.stride(), strict=True))


def check_materialisable(**tensors: Tensor | None) -> None:
    """Raise ``ValueError`` for an expanded (stride-0) tensor whose copy would exceed
    :data:`MAX_EXPANDED_BYTES`."""
    for name, x in tensors.items():
        # is_contiguous() first: one C call, where _is_expanded loops in Python (this runs on
        # every call of the single-step ops, once per agent step).
        if not isinstance(x, Tensor) or x.is_contiguous() or not _is_expanded(x):
            continue
        nbytes = x.numel() * x.element_size()
        if nbytes > MAX_EXPANDED_BYTES:
            raise ValueError(
                f"{name} is an expanded view of shape {list(x.shape)} (strides "
                f"{list(x.stride())}); the kernels would copy it to {nbytes / 2**30:.1f} GiB. "
                f"Pass a smaller tensor, or materialise it yourself ({name}.contiguous()) if that "
                "is intended"
            )
