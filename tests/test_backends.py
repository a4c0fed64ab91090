"""Backend selection (hebbkern.backends) on paths a CPU machine can still check.

The first H200 run found the choice of a backend broken only on CUDA tensors: under
``torch.compile(fullgraph=True)`` dynamo stopped at the pybind call ``hebbkern._C.with_cuda`` (and
at ``importlib.util.find_spec`` for triton), and capturing plastic_rnn in a CUDA graph failed. Here:
the installation facts are read once at import; choosing a backend for CUDA tensors traces with
fullgraph on this machine; and, with fake CUDA tensors, the Python side of the launch path makes no
synchronising call (no ``.item()``, no host-to-device copy).
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch
from helpers import MODULATED_RULES, make_inputs
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import hebbkern
from hebbkern import _extension, backends

CUDA = torch.device("cuda")
FAMILIES = ("plastic_rnn", "trace_update", "plastic_step", "plastic_linear", "plastic_lstm", None)


def _refuse(*args, **kwargs):
    raise AssertionError("called while choosing a backend")


def test_choosing_reads_no_installation_fact(monkeypatch):
    """No pybind call and no import machinery on the way: the facts were read at import."""
    if _extension.available():
        monkeypatch.setattr(_extension._C, "with_cuda", _refuse)
    monkeypatch.setattr(importlib.util, "find_spec", _refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for family in FAMILIES:
            for device in (torch.device("cpu"), CUDA):
                backends.resolve(None, device, family=family)
        backends.resolve("triton", CUDA, family="plastic_rnn")
    assert backends.cuda_kernels_available() == _extension.with_cuda()


def _code(names: list[str]) -> int:
    return sum((backends.BACKENDS.index(n) + 1) * 10**i for i, n in enumerate(names))


@pytest.mark.parametrize("gpu_build", [False, True], ids=["this_build", "cuda_build"])
def test_choice_for_cuda_tensors_traces_fullgraph(monkeypatch, gpu_build):
    """What the ops do on CUDA tensors before a kernel runs, traced by dynamo with fullgraph on a
    CPU machine, as the extension built here and as a CUDA build with triton."""
    if gpu_build:
        monkeypatch.setattr(backends, "_CUDA_KERNELS", True)
        monkeypatch.setattr(backends, "_TRITON_INSTALLED", True)
    monkeypatch.setattr(backends, "_warned_no_gpu_backend", True)

    def choose(x):
        names = [
            backends.resolve(
                None,
                CUDA,
                family="plastic_rnn",
                gpu_choice=lambda a: backends.plastic_rnn_gpu_backend(128, torch.float32, a),
            ),
            backends.resolve(None, CUDA, family="trace_update"),
            backends.resolve(None, CUDA, family="plastic_lstm"),
        ]
        if backends.triton_available():
            names.append(backends.resolve("triton", CUDA, family="plastic_rnn"))
        if gpu_build:
            names.append(backends.resolve("cuda", CUDA, family="trace_update"))
        return x + _code(names)

    x = torch.zeros(2)
    torch._dynamo.reset()
    compiled = torch.compile(choose, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), choose(x))


class _Recorder(TorchDispatchMode):
    """Records every aten call (below it, FakeTensorMode computes nothing on a device)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out


# aten calls that make the host wait for the device.
_SYNCING = {"_local_scalar_dense", "item", "is_nonzero", "nonzero", "equal", "allclose"}


def _devices(obj) -> set[str]:
    found = set()
    for t in torch.utils._pytree.tree_leaves(obj):
        if isinstance(t, torch.Tensor):
            found.add(t.device.type)
    return found


def synchronising_calls(calls: list[tuple]) -> list[str]:
    bad = []
    for func, args, kwargs, out in calls:
        name = func.overloadpacket.__name__
        if name in _SYNCING:
            bad.append(name)
        elif _devices((args, kwargs)) | _devices(out) >= {"cpu", "cuda"}:
            bad.append(f"{name} (copy between host and device)")
    return bad


def fake_cuda_inputs(kw: dict) -> dict:
    return {
        k: (
            torch.empty(v.shape, dtype=torch.float32 if v.is_floating_point() else v.dtype,
                        device="cuda").requires_grad_(v.requires_grad)
            if isinstance(v, torch.Tensor) else v
        )
        for k, v in kw.items()
    }  # fmt: skip


@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_plastic_rnn_launch_path_makes_no_synchronising_call(monkeypatch, backend, rule):
    """The forward of plastic_rnn on (fake) CUDA tensors, eta as a Python float: argument checks,
    backend choice, casts, the custom op with its autograd context. (The backward cannot run on
    fake CUDA tensors: the autograd engine asks the device for a context.)"""
    if backend == "triton" and not backends.triton_available():
        pytest.skip("needs triton")
    if backend == "cuda" and not _extension.available():
        pytest.skip("needs the compiled extension (the op's fake kernel)")
    if backend == "cuda":
        monkeypatch.setattr(backends, "_CUDA_KERNELS", True)
    kw = make_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, T=5, B=2, N=8)
    if "eta" in kw:
        kw["eta"] = 0.25  # a float: becomes a device tensor on the way
    with FakeTensorMode():
        fk = fake_cuda_inputs(kw)
        with _Recorder() as rec:
            h, state = hebbkern.plastic_rnn(**fk, backend=backend)
    assert h.device.type == "cuda" and state.hebb.device.type == "cuda"
    assert rec.calls, "nothing recorded: the test would be vacuous"
    assert synchronising_calls(rec.calls) == []


def test_trace_update_launch_path_makes_no_synchronising_call(monkeypatch):
    if not _extension.available():
        pytest.skip("needs the compiled extension (the op's fake kernel)")
    monkeypatch.setattr(backends, "_CUDA_KERNELS", True)
    with FakeTensorMode():
        trace = torch.empty(3, 5, 4, device="cuda", requires_grad=True)
        pre, post = torch.empty(3, 5, device="cuda"), torch.empty(3, 4, device="cuda")
        with _Recorder() as rec:
            out = hebbkern.trace_update(trace, pre, post, eta=0.1, rule="clip", clip=0.5,
                                        backend="cuda")  # fmt: skip
    assert out.device.type == "cuda"
    assert rec.calls
    assert synchronising_calls(rec.calls) == []


def test_recorder_sees_a_host_to_device_copy():
    """The check above can fail: torch.tensor(x, device=...) (what the argument check used to do
    with a float eta) is a copy from host memory."""
    with FakeTensorMode():
        with _Recorder() as rec:
            torch.tensor(0.25, device="cuda")
    assert synchronising_calls(rec.calls)
