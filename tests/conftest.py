"""Test configuration: installed-package check, NaN-poisoned allocations, shared fixtures.

With ``HEBBKERN_TEST_INSTALLED=1`` (CI, after installing the wheel into a fresh environment) the
suite refuses to run against the source tree: ``hebbkern`` must be imported from an installed
package and its compiled extension must load.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import hebbkern

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGE = REPO_ROOT / "hebbkern"

if os.environ.get("HEBBKERN_TEST_INSTALLED") == "1":
    _imported = Path(hebbkern.__file__).resolve()
    # A virtual environment may live inside the checkout (.venv-test/...site-packages/hebbkern):
    # what must not happen is importing the package from the source folder itself.
    assert not _imported.is_relative_to(SOURCE_PACKAGE.resolve()), (
        f"HEBBKERN_TEST_INSTALLED=1 but hebbkern was imported from the source tree ({_imported}); "
        "run pytest from outside the repository root or with --import-mode=importlib"
    )
    assert hebbkern.extension_available(), (
        "HEBBKERN_TEST_INSTALLED=1 but the installed hebbkern has no compiled extension: "
        f"{hebbkern._extension.load_error()}"
    )


from helpers import make_inputs, rel_err  # noqa: E402


@pytest.fixture
def nan_poison():
    """Every ``at::empty`` (Python's torch.empty and the kernels' C++ allocations alike) returns
    memory filled with NaN inside the test, so an output element a kernel never writes fails the
    comparison instead of passing by luck. Uses PyTorch's deterministic mode, restored afterwards.
    """
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        # aten::empty.memory_format is what a C++ kernel's at::empty dispatches to.
        probe = torch.ops.aten.empty.memory_format([64], dtype=torch.float64)
        assert torch.isnan(probe).all(), "NaN poisoning of at::empty is not active"
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture
def inputs():
    """``make_inputs`` as a fixture (see helpers.py)."""
    return make_inputs


@pytest.fixture
def relerr():
    """``rel_err`` as a fixture (see helpers.py)."""
    return rel_err
