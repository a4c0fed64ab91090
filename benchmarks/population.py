"""Benchmark of a population in one call: ``hebbkern.plastic_rnn`` with per-sample ``w``,
``alpha`` and ``eta`` (SPEC.md section 1.2; issue 13's row "population: neuromod, 1024 individuals
with per-sample w/alpha/eta, N=32, T=100", target >= 20x a batched eager loop).

    python -m benchmarks population --issue-case                 # B=1024, N=32, T=100
    python -m benchmarks population --device cpu --B 64 --providers eager cpu
    python -m benchmarks population --quick                      # smoke test

Each sample b runs its own network: ``w[b]``, ``alpha[b]`` ``[B, N, N]`` and ``eta[b]`` ``[B]``,
rule ``neuromod`` with the fan-out, clip 1, and ``n_modulated = N // 2`` (Backpropamine's
``fm = 0``: the post-synaptic neurons ``j >= N // 2`` learn at the individual's ``eta`` instead of
the neuromodulator; without it ``neuromod`` takes no eta). mod_w, mod_b and the fan-out are shared.
Inputs: ``plastic_rnn.make_inputs(..., population=True)``.

Providers, all in one process:

- ``eager``: the loop a PyTorch user writes for a population (:func:`population_rnn`): T steps,
  each a batched ``baddbmm`` over the ``[B, N, N]`` weights ``addcmul(w, alpha, H)`` and the
  neuromodulated update as one ``baddbmm`` and a clamp; forward and backward by autograd. It
  computes exactly the op's math (tests/test_bench_population.py checks it against
  ``hebbkern.reference.plastic_rnn`` run once per sample). The speed-up baseline.
- ``compile``: that loop with its step under ``torch.compile(fullgraph=True, dynamic=False)``;
  ``compile-ro`` the same with ``mode="reduce-overhead"`` (inductor's kernels replayed as CUDA
  graphs; CUDA only);
- ``graph`` (CUDA only): the eager loop's whole call, forward or forward and backward, captured once
  in a CUDA graph and replayed;
- ``cpu``, ``cuda``, ``triton`` (every hebbkern backend but ``reference``):
  ``hebbkern.plastic_rnn(u, w, alpha, eta=eta, rule="neuromod", ..., backend=name)``. A backend is
  reported as skipped, with the op's error, when a tiny per-sample call fails (before the
  per-sample op exists, hebbkern refuses a ``[B, N, N]`` w); ``cuda-graph``, ``triton-graph``
  (CUDA only): those calls captured in a CUDA graph, as ``graph`` captures the eager loop.

The runner, timing, memory, ratios and files are ``benchmarks/run.py``'s (``population_<device>
[_tag].csv/.json`` under ``--out``); modes ``fwd`` and ``fwd+bwd`` as for plastic_rnn.
"""

from __future__ import annotations

import functools
import sys

import torch
from torch import Tensor

import hebbkern
from benchmarks import plastic_rnn
from benchmarks.plastic_rnn import Case, make_cases  # noqa: F401  (the runner's interface)

NAME = "population"
PROG = "python -m benchmarks population"
DESCRIPTION = __doc__.split("\n\n")[0]
RULES = ("neuromod",)  # the rule the eager peer writes out
MODES = plastic_rnn.MODES
FIXED_PROVIDERS = plastic_rnn.FIXED_PROVIDERS

# The issue case (1024 individuals); the default grid adds a 64-individual case (CPU-sized).
ISSUE_GRID = {"rules": ["neuromod"], "N": [32], "T": [100], "B": [1024]}
DEFAULT_GRID = {"rules": ["neuromod"], "N": [32], "T": [100], "B": [64, 1024]}
QUICK_GRID = {"rules": ["neuromod"], "N": [16], "T": [6], "B": [5]}


def all_providers() -> list[str]:
    return plastic_rnn.all_providers()


def provider_unavailable(provider: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """plastic_rnn's test of a provider, with per-sample parameters for the hebbkern backends."""
    return plastic_rnn.provider_unavailable(provider, device, dtype, population=True)


# ------------------------------------------------------------------------------ the eager peer


def population_step(u_t, h, hebb, w, alpha, eta, mod_w, mod_b, fanout_w, fanout_b, clip, n_mod):
    """One step of B networks at once: ``(h_{t-1}, H_{t-1}) -> (h_t, H_t)``, every tensor batched
    over the population (``w``, ``alpha`` ``[B, N, N]``, ``eta`` ``[B]``)."""
    B, N = h.shape
    weights = torch.addcmul(w, alpha, hebb)  # w[b] + alpha[b] * H[b]
    h_new = torch.tanh(torch.baddbmm(u_t.unsqueeze(1), h.unsqueeze(1), weights).squeeze(1))
    m = torch.tanh(h_new @ mod_w + mod_b).unsqueeze(1)  # [B, 1]: one neuromodulator per sample
    m = m * fanout_w + fanout_b if fanout_w is not None else m.expand(B, N)
    if n_mod < N:  # the unmodulated post neurons learn at the individual's eta
        m = torch.cat([m[:, :n_mod], eta.unsqueeze(1).expand(B, N - n_mod)], 1)
    # H + h_{t-1}^T (m * h_t): the outer product and the add in one batched matmul
    hebb = torch.baddbmm(hebb, h.unsqueeze(2), (m * h_new).unsqueeze(1))
    return h_new, torch.clamp(hebb, -clip, clip)


def population_rnn(u: Tensor, w: Tensor, alpha: Tensor, *, rule: str, eta=None, mod_w, mod_b,
                   fanout_w=None, fanout_b=None, clip: float = 1.0, n_modulated=None,
                   step=population_step):  # fmt: skip
    """``hebbkern.plastic_rnn``'s call for a population, as an eager loop over time; returns
    ``(h [T, B, N], PlasticState(h_T, H_T, None))``."""
    if rule != "neuromod":
        raise ValueError(f"the population's eager loop writes rule 'neuromod' only, got {rule!r}")
    T, B, N = u.shape
    n_mod = N if n_modulated is None else n_modulated
    h, hebb = u.new_zeros(B, N), u.new_zeros(B, N, N)
    outputs = []
    # unbind, not u[t]: one SelectBackward per step would add T [T, B, N] tensors in the backward
    for u_t in u.unbind(0):
        h, hebb = step(u_t, h, hebb, w, alpha, eta, mod_w, mod_b, fanout_w, fanout_b, clip, n_mod)
        outputs.append(h)
    return torch.stack(outputs), hebbkern.PlasticState(h, hebb, None)


def _compiled(mode: str | None):
    """The eager loop with its step compiled afresh (static shapes; the first call of the case
    compiles); ``reduce-overhead`` marks each call as a new CUDA-graph iteration."""
    torch._dynamo.reset()
    step = torch.compile(population_step, dynamic=False, fullgraph=True, mode=mode)

    def run(*args, **kwargs):
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        return population_rnn(*args, step=step, **kwargs)

    return run


def provider_fn(provider: str):
    """The function ``(u, w, alpha, **kwargs) -> (h, state)`` of a provider."""
    if provider in ("eager", "graph"):  # graph: the eager loop, captured by Bench
        return population_rnn
    if provider == "compile":
        return _compiled(None)
    if provider == "compile-ro":
        return _compiled("reduce-overhead")
    if provider in plastic_rnn.backend_providers():
        return functools.partial(hebbkern.plastic_rnn, backend=provider)
    if plastic_rnn.graphed_backend(provider):  # captured by Bench
        return functools.partial(
            hebbkern.plastic_rnn, backend=plastic_rnn.graphed_backend(provider)
        )
    raise ValueError(f"unknown provider {provider!r}; known: {', '.join(all_providers())}")


class Bench(plastic_rnn.Bench):
    """plastic_rnn's Bench on the population's inputs and providers."""

    def __init__(self, case: Case, provider: str, mode: str, seed: int = 0) -> None:
        super().__init__(case, provider, mode, seed, population=True, fn=provider_fn(provider))


def nominal_bytes(case: Case, mode: str) -> int:
    """plastic_rnn's streaming model, with ``w`` and ``alpha`` read once per sample."""
    e = torch.empty((), dtype=case.dtype).element_size()
    weights = 2 * e * (case.B - 1) * case.N * case.N  # beyond the shared model's one copy
    return plastic_rnn.nominal_bytes(case, mode) + (weights if mode == "fwd" else 3 * weights)


def main(argv=None) -> int:
    from benchmarks.run import main as run_main

    return run_main(argv, family=sys.modules[__name__])


if __name__ == "__main__":
    raise SystemExit(main())
