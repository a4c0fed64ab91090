"""Triton kernels (GPU; CPU tensors under ``TRITON_INTERPRET=1``).

Nothing here is imported by ``import hebbkern``: triton is imported only when the ``triton`` backend
first runs, so that a test process can set ``TRITON_INTERPRET=1`` before triton's first import.
"""
