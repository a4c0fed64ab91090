"""The population benchmark (benchmarks/population.py): its eager peer computes the op's math
(against ``hebbkern.reference.plastic_rnn`` run once per sample, the oracle of POPULATION.md), the
hebbkern providers compute the same as the eager peer once the op takes per-sample parameters,
and the runner goes end to end on tiny sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_low_precision_rule

import hebbkern

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import plastic_rnn  # noqa: E402
from benchmarks import population as family  # noqa: E402

CPU = torch.device("cpu")


def inputs(B, N, T, dtype, fanout=True, all_modulated=False, seed=0):
    """The benchmark's per-sample inputs, every one a leaf requiring grad; variants without the
    fan-out and with every neuron modulated (no eta)."""
    case = family.Case("neuromod", T, B, N, dtype, CPU)
    x = plastic_rnn.make_inputs(case, requires_grad=True, seed=seed, population=True)
    kw = dict(x.kwargs)
    if not fanout:
        kw["fanout_w"] = kw["fanout_b"] = None
    if all_modulated:
        kw["eta"], kw["n_modulated"] = None, None
    leaves = {"u": x.u, "w": x.w, "alpha": x.alpha}
    leaves |= {k: v for k, v in kw.items() if isinstance(v, torch.Tensor)}
    return x, kw, leaves


def per_sample_reference(u, w, alpha, *, eta, n_modulated, **kw):
    """The oracle: the shared-parameter reference once per sample, stacked along the batch."""
    hs, hebbs = [], []
    for b in range(u.shape[1]):
        h, state = hebbkern.reference.plastic_rnn(
            u[:, b : b + 1], w[b], alpha[b], eta=None if eta is None else eta[b],
            n_modulated=n_modulated, **kw,
        )  # fmt: skip
        hs.append(h)
        hebbs.append(state.hebb)
    return torch.cat(hs, 1), torch.cat(hebbs, 0)


def outputs_and_grads(fn, x, kw, leaves):
    h, hebb = fn(x.u, x.w, x.alpha, **kw)
    hebb = hebb.hebb if isinstance(hebb, hebbkern.PlasticState) else hebb
    gh, ghebb = x.grad_outputs
    names = list(leaves)
    grads = torch.autograd.grad((h, hebb), [leaves[k] for k in names], (gh, ghebb))
    return h.detach(), hebb.detach(), dict(zip(names, grads, strict=True))


@pytest.mark.parametrize(
    "fanout, all_modulated", [(True, False), (False, False), (True, True), (False, True)]
)
@pytest.mark.parametrize("B, N, T", [(3, 6, 5), (1, 7, 4)])
def test_eager_provider_is_the_op_math_per_sample(B, N, T, fanout, all_modulated):
    x, kw, leaves = inputs(B, N, T, torch.float64, fanout, all_modulated)
    eager = family.provider_fn("eager")
    h, hebb, grads = outputs_and_grads(eager, x, kw, leaves)
    h_ref, hebb_ref, grads_ref = outputs_and_grads(per_sample_reference, x, kw, leaves)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(hebb, hebb_ref)
    assert hebb.abs().max() > 0  # the trace moved: the rule is exercised, not only w
    for k in grads_ref:
        torch.testing.assert_close(grads[k], grads_ref[k], msg=f"d{k}")
    if not all_modulated:  # each individual's eta reaches its own gradient only
        assert grads["eta"].shape == (B,) and grads["eta"].abs().min() > 0


def test_eager_provider_refuses_other_rules():
    x, kw, _ = inputs(2, 4, 3, torch.float64)
    with pytest.raises(ValueError, match="neuromod"):
        family.population_rnn(x.u, x.w, x.alpha, **(kw | {"rule": "hebb"}))


def refused_reason(backend: str) -> str | None:
    """The op's ValueError about ``w`` when it refuses a per-sample ``[B, N, N]`` w (before the
    per-sample op is merged), else None."""
    x, kw, _ = inputs(2, 8, 2, torch.float32)
    try:
        hebbkern.plastic_rnn(x.u, x.w, x.alpha, backend=backend, **kw)
    except ValueError as e:
        if str(e).startswith("w "):
            return f"hebbkern.plastic_rnn refuses a [B, N, N] w (per-sample op not merged): {e}"
        raise
    return None


def backend_dtypes() -> list:
    """(backend, dtype) pairs this machine runs: the CPU kernel in float64 and float32, the GPU
    backends in float32."""
    pairs = []
    if hebbkern.extension_available():
        pairs += [("cpu", torch.float64), ("cpu", torch.float32)]
    if torch.cuda.is_available():
        pairs += [(b, torch.float32) for b in ("cuda", "triton") if b in hebbkern.BACKENDS]
    return [pytest.param(b, d, id=f"{b}-{str(d)[6:]}") for b, d in pairs]


def provider_results(provider, dtype, device):
    """Outputs ``{h, hebb}`` and gradients of every leaf of the benchmark's fwd+bwd call."""
    case = family.Case("neuromod", 7, 5, 33, dtype, device)
    bench = family.Bench(case, provider, "fwd+bwd")
    h, state = bench.forward()
    grads = torch.autograd.grad((h, state.hebb), bench.x.leaves, bench.x.grad_outputs)
    outs = {"h": h.detach(), "hebb": state.hebb.detach()}
    return outs, {f"leaf{i}": g for i, g in enumerate(grads)}


@pytest.mark.parametrize("backend, dtype", backend_dtypes())
def test_hebbkern_provider_matches_the_eager_peer(backend, dtype):
    reason = refused_reason(backend)
    if reason:
        pytest.skip(reason)
    device = torch.device("cpu" if backend == "cpu" else "cuda")
    got = provider_results(backend, dtype, device)
    if dtype == torch.float64:
        for kind, want in zip(got, provider_results("eager", dtype, device), strict=True):
            for k in want:
                torch.testing.assert_close(kind[k], want[k], msg=k)
    else:  # flash-attention's rule against the eager peer in float64
        exact = provider_results("eager", torch.float64, CPU)
        assert_low_precision_rule(got, provider_results("eager", dtype, device), exact, dtype)
    assert family.provider_unavailable(backend, device, dtype) is None


def test_runner_end_to_end_on_tiny_sizes(tmp_path):
    code = family.main(["--quick", "--device", "cpu", "--providers", "eager", "graph", "cpu",
                        "--min-time", "0.01", "--no-plot", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    data = json.loads((tmp_path / "population_cpu_quick.json").read_text())
    assert data["metadata"]["complete"]
    rows = data["rows"]
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    for r in rows:
        assert r["op"] == "population" and (r["B"], r["N"], r["T"]) == (5, 16, 6)
        if r["provider"] == "eager":
            assert r["status"] == "ok" and r["median_ms"] > 0 and r["speedup_vs_eager"] == 1.0
        elif r["provider"] == "graph":
            assert r["status"].startswith("skipped: CUDA only")
        else:  # measured once the op takes a population, else skipped with the op's reason
            assert r["status"] == "ok" or r["status"].startswith("skipped: "), r["status"]
    fwd_bwd = next(r for r in rows if r["provider"] == "eager" and r["mode"] == "fwd+bwd")
    assert fwd_bwd["saved_bytes"] > 0
    assert (tmp_path / "population_cpu_quick.csv").exists()
