"""Loading examples/NAME.py in a test: by path (examples/ is not a package), with examples/ on
``sys.path`` for the examples' shared examples/_common.py, the way ``python examples/NAME.py``
finds it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str, module_name: str | None = None):
    """examples/``name``.py as a module called ``module_name`` (default ``name``), registered in
    ``sys.modules`` (dataclasses look their module up)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))  # appended: nothing of the tests' own is shadowed
    spec = importlib.util.spec_from_file_location(module_name or name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def example_fixture(name: str, *needs: str):
    """A module-scoped fixture of examples/``name``.py (loaded as ``<name>_example``); the calling
    test module is skipped where one of the packages ``needs`` is not installed."""
    for package in needs:
        pytest.importorskip(package)

    @pytest.fixture(scope="module")
    def ex():
        return load_example(name, f"{name}_example")

    return ex
