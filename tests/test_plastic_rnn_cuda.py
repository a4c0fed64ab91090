"""``backend="cuda"``: the CUDA C++ kernels of plastic_rnn (csrc/cuda/plastic_rnn.cu).

The selection logic runs everywhere. The kernels themselves need a GPU: those tests skip here and
run in benchmarks/gpu_check.sh. On machines without a GPU the same kernel code is checked by
test_plastic_rnn_cuda_emulated.py (CPU emulation) and test_cuda_build.py (nvcc).
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    ALPHA_KINDS,
    MODULATED_RULES,
    RULES,
    clone_inputs,
    make_inputs,
    rel_err,
    run,
)

import hebbkern
from hebbkern import backends, dispatch

HAS_CUDA = torch.cuda.is_available() and backends.cuda_kernels_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build of hebbkern")
CUDA = torch.device("cuda")


def to_device(kw: dict, device, dtype=None) -> dict:
    out = {}
    for k, v in clone_inputs(kw, dtype).items():
        if isinstance(v, torch.Tensor):
            leaf = v.detach().to(device)
            out[k] = leaf.requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


# ---- selection (runs everywhere)


def test_cuda_is_a_backend_name():
    assert "cuda" in hebbkern.BACKENDS


def test_cuda_backend_rejects_cpu_tensors():
    kw = make_inputs("hebb", T=2, B=1, N=3)
    with pytest.raises(ValueError, match="backend 'cuda' needs CUDA tensors"):
        hebbkern.plastic_rnn(**kw, backend="cuda")


def test_cuda_backend_needs_a_cuda_build(monkeypatch):
    monkeypatch.setattr(backends, "cuda_kernels_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs the extension's CUDA kernels"):
        backends.resolve("cuda", torch.device("cuda"), family="plastic_rnn")


def test_cuda_backend_only_for_families_with_cuda_kernels():
    with pytest.raises(ValueError, match="only for plastic_rnn and trace_update"):
        backends.resolve("cuda", torch.device("cuda"), family="plastic_step")


def test_family_without_gpu_kernels_falls_back_to_reference_on_cuda(monkeypatch):
    monkeypatch.setattr(backends, "cuda_kernels_available", lambda: True)
    monkeypatch.setattr(backends, "triton_available", lambda: True)
    monkeypatch.setattr(backends, "_warned_no_gpu_backend", False)
    dev = torch.device("cuda")
    with pytest.warns(RuntimeWarning, match="no fused plastic_lstm kernel for cuda"):
        assert backends.resolve(None, dev, family="plastic_lstm") == "reference"
    assert backends.resolve(None, dev, family="trace_update") == "cuda"
    assert backends.resolve(None, dev, family="plastic_rnn") == "cuda"  # no table: first found


def test_measured_choice_nearest_size_same_dtype():
    table = {
        ("float32", 64): {"fastest": "cuda"},
        ("float32", 256): {"fastest": "triton"},
        ("bfloat16", 128): {"fastest": "triton"},
    }
    assert dispatch.measured_choice(50, torch.float32, table) == "cuda"
    assert dispatch.measured_choice(100, torch.float32, table) == "cuda"  # log-nearest: 64
    assert dispatch.measured_choice(200, torch.float32, table) == "triton"
    assert dispatch.measured_choice(64, torch.bfloat16, table) == "triton"
    assert dispatch.measured_choice(64, torch.float16, table) == "cuda"  # falls back to float32
    assert dispatch.measured_choice(64, torch.float32, {}) is None


def test_gpu_choice_without_measurements_keeps_triton(monkeypatch):
    monkeypatch.setattr(dispatch, "measured_choice", lambda N, dtype: None)
    assert dispatch.plastic_rnn_gpu_backend(128, torch.float32, ("cuda", "triton")) == "triton"
    assert dispatch.plastic_rnn_gpu_backend(128, torch.float32, ("cuda",)) == "cuda"
    monkeypatch.setattr(dispatch, "measured_choice", lambda N, dtype: "cuda")
    assert dispatch.plastic_rnn_gpu_backend(128, torch.float32, ("cuda", "triton")) == "cuda"
    assert dispatch.plastic_rnn_gpu_backend(128, torch.float32, ("triton",)) == "triton"


def test_default_on_cuda_goes_through_the_table(monkeypatch):
    monkeypatch.setattr(backends, "cuda_kernels_available", lambda: True)
    monkeypatch.setattr(backends, "triton_available", lambda: True)
    seen = []

    def choose(available):
        seen.append(available)
        return "cuda"

    dev = torch.device("cuda")
    assert backends.resolve(None, dev, family="plastic_rnn", gpu_choice=choose) == "cuda"
    assert seen == [("cuda", "triton")]


def test_dispatch_table_entries_are_well_formed():
    from hebbkern import _dispatch_table as t

    for (dtype, n), entry in t.PLASTIC_RNN.items():
        assert dtype in ("float32", "bfloat16", "float16") and n >= 1
        assert entry["fastest"] in dispatch.GPU_BACKENDS
        assert set(entry["median_ms"]) >= set(dispatch.GPU_BACKENDS)
    assert (t.SOURCE is None) == (not t.PLASTIC_RNN)


# ---- the kernels on a GPU


@needs_cuda
@pytest.mark.parametrize("N", [1, 33, 100, 129])
@pytest.mark.parametrize("alpha_kind", ALPHA_KINDS)
@pytest.mark.parametrize("rule", RULES)
def test_cuda_matches_reference_float32(rule, alpha_kind, N):
    """Forward, final state and every gradient against the float64 reference on the CPU."""
    kw = make_inputs(rule, alpha_kind, rule in MODULATED_RULES, True, T=13, B=3, N=N, seed=N)
    o_ref, g_ref = run(clone_inputs(kw), "reference")
    o_cu, g_cu = run(to_device(kw, CUDA, torch.float32), "cuda")
    for k, v in o_ref.items():
        assert rel_err(o_cu[k].cpu(), v) < 1e-4, k
    for k, v in g_ref.items():
        assert g_cu[k] is not None, f"no gradient for {k}"
        assert rel_err(g_cu[k].cpu(), v) < 1e-4, f"d{k}"


@needs_cuda
@pytest.mark.parametrize("rule", RULES)
def test_cuda_bfloat16_within_twice_reference_error(rule):
    """flash-attention's rule: the kernel's error against float64 is at most twice the error of the
    reference run in bfloat16 (plus a small floor)."""
    kw = make_inputs(rule, "per_connection", rule in MODULATED_RULES, False, T=20, B=4, N=64)
    o64, g64 = run(clone_inputs(kw), "reference")
    o_bf, g_bf = run(to_device(kw, CUDA, torch.bfloat16), "reference")
    o_cu, g_cu = run(to_device(kw, CUDA, torch.bfloat16), "cuda")
    for k in o64:
        err_cu, err_bf = rel_err(o_cu[k].cpu(), o64[k]), rel_err(o_bf[k].cpu(), o64[k])
        assert err_cu <= 2 * err_bf + 1e-3, (k, err_cu, err_bf)
    for k in g64:
        err_cu, err_bf = rel_err(g_cu[k].cpu(), g64[k]), rel_err(g_bf[k].cpu(), g64[k])
        assert err_cu <= 2 * err_bf + 1e-3, (k, err_cu, err_bf)


@needs_cuda
@pytest.mark.parametrize("rule", ["neuromod", "retro"])
def test_cuda_gradients_are_bit_reproducible(rule):
    """No atomics: the same inputs give bit-identical gradients on every run."""
    kw = make_inputs(rule, "per_neuron", True, True, T=30, B=8, N=128, seed=2)
    _, g1 = run(to_device(kw, CUDA, torch.float32), "cuda")
    _, g2 = run(to_device(kw, CUDA, torch.float32), "cuda")
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


@needs_cuda
def test_cuda_large_n_uses_global_memory_path():
    """N = 300 does not fit one block's shared memory: the trace lives in global memory."""
    kw = make_inputs("retro", "per_connection", True, False, T=5, B=2, N=300, seed=4)
    o_ref, g_ref = run(clone_inputs(kw), "reference")
    o_cu, g_cu = run(to_device(kw, CUDA, torch.float32), "cuda")
    for k, v in o_ref.items():
        assert rel_err(o_cu[k].cpu(), v) < 1e-4, k
    for k, v in g_ref.items():
        assert rel_err(g_cu[k].cpu(), v) < 1e-4, f"d{k}"


@needs_cuda
def test_cuda_under_torch_compile_fullgraph():
    kw = make_inputs("neuromod", "per_connection", True, False, T=6, B=2, N=40)
    ckw = to_device(kw, CUDA, torch.float32)

    def f(u, w, alpha):
        rest = {k: v for k, v in ckw.items() if k not in ("u", "w", "alpha")}
        h, s = hebbkern.plastic_rnn(u, w, alpha, backend="cuda", **rest)
        return h.sum() + s.hebb.sum()

    eager = f(ckw["u"], ckw["w"], ckw["alpha"])
    compiled = torch.compile(f, fullgraph=True)(ckw["u"], ckw["w"], ckw["alpha"])
    assert torch.allclose(eager, compiled, rtol=1e-5, atol=1e-5)


def test_dispatch_table_generator(tmp_path):
    """benchmarks/dispatch_table.py keeps only sizes where both backends ran, picks the faster."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "dispatch_table.py"
    spec = importlib.util.spec_from_file_location("dispatch_table", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)

    def row(provider, N, ms, mode="fwd+bwd", dtype="float32"):
        return {"device": "cuda", "mode": mode, "status": "ok", "provider": provider, "N": N,
                "dtype": dtype, "median_ms": ms}  # fmt: skip

    rows = [row("cuda", 64, 1.0), row("triton", 64, 2.0), row("cuda", 128, 3.0),
            row("triton", 128, 2.5), row("triton", 128, 2.7), row("cuda", 256, 1.0),
            row("cuda", 64, 0.1, mode="fwd"), row("eager", 64, 9.0)]  # fmt: skip
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"metadata": {"machine": {"gpu": "H200"}}, "rows": rows}))
    table, source, device = gen.build([res])
    assert device == "H200" and source.endswith("r.json")
    assert table == {
        ("float32", 64): {"fastest": "cuda", "median_ms": {"cuda": 1.0, "triton": 2.0}},
        ("float32", 128): {"fastest": "triton", "median_ms": {"cuda": 3.0, "triton": 2.6}},
    }
    ns: dict = {}
    exec(gen.render(table, source, device), ns)
    assert ns["PLASTIC_RNN"] == table
    assert dispatch.measured_choice(100, torch.float32, ns["PLASTIC_RNN"]) == "triton"


@needs_cuda
@pytest.mark.parametrize("rule", RULES)
def test_cuda_opcheck(rule):
    """The CUDA implementation honours the op's schema, fake kernel and autograd registration."""
    from helpers import fused_args

    kw = make_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, T=4, B=2, N=9)
    kw = {k: (v.detach().to(CUDA, torch.float32) if isinstance(v, torch.Tensor) and
              v.is_floating_point() else (v.to(CUDA) if isinstance(v, torch.Tensor) else v))
          for k, v in kw.items()}  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_rnn_fwd, fused_args(kw, 2))
