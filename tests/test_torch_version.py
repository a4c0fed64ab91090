"""The supported torch range: declared in pyproject.toml, checked at import with a clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from hebbkern import _torch_version

ROOT = Path(__file__).resolve().parents[1]


def test_older_torch_fails_with_a_clear_message():
    with pytest.raises(ImportError, match=r"needs torch >= 2\.11.*found torch 2\.10\.1"):
        _torch_version.check("2.10.1")
    with pytest.raises(ImportError, match="needs torch >= 2.11"):
        _torch_version.check("1.13.0")


def test_supported_versions_pass():
    for v in ("2.11.0+cu130", "2.11.0", "2.14.1", "3.0.0a0", torch.__version__):
        _torch_version.check(v)
    assert _torch_version.parse("2.11.0+cu130") == (2, 11)


def test_pyproject_declares_the_checked_range():
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*)\]", pyproject, re.M).group(1)
    low = ".".join(map(str, _torch_version.OLDEST))
    assert f'"torch>={low}"' in deps
