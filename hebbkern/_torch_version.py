"""The torch versions hebbkern supports, checked when hebbkern is imported.

pyproject.toml declares ``torch>=2.11``: CI runs the test suite on the pinned torch (2.14.1) and,
in a second stage of ``make test``, on 2.11.0, the version of the GPU machines' image. An older
torch fails here with a message that says so, not later with an AttributeError.
"""

from __future__ import annotations

import re

import torch

OLDEST = (2, 11)


def parse(version: str) -> tuple[int, int]:
    """``"2.11.0+cu130"`` -> ``(2, 11)``."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is None:
        raise ImportError(f"hebbkern cannot read the torch version {version!r}")
    return int(m.group(1)), int(m.group(2))


def check(version: str) -> None:
    if parse(version) < OLDEST:
        raise ImportError(
            f"hebbkern needs torch >= {OLDEST[0]}.{OLDEST[1]} (it uses torch.library.triton_op, "
            f"torch.compiler.cudagraph_mark_step_begin and the custom-op API of that release), "
            f"found torch {version}: pip install 'torch>={OLDEST[0]}.{OLDEST[1]}'"
        )


check(torch.__version__)
