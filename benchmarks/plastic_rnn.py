"""Benchmark cases of ``hebbkern.plastic_rnn`` (SPEC.md section 1).

A case is ``(rule, T, B, N, dtype, device)``. Providers:

- ``eager``: ``hebbkern.reference.plastic_rnn`` (the oracle; speed-ups are relative to it);
- ``compile``: a Python loop over time calling
  ``torch.compile(hebbkern.reference.plastic_rnn_step)``, compiled afresh for each case and mode
  (``torch._dynamo.reset()``, static shapes);
- CUDA only, the strongest stock-PyTorch peers (what a user gets with no kernel work):
  ``compile-ro``, the same loop with the step under ``torch.compile(mode="reduce-overhead")``
  (inductor's kernels replayed as CUDA graphs), and ``graph``, the eager reference's whole call
  (forward, or forward and backward) captured once in a CUDA graph after a warm-up and replayed
  (all launch overhead removed, the kernels unchanged);
- every name of ``hebbkern.BACKENDS`` except ``reference`` (``cpu``, ``triton``, later ``cuda``):
  ``hebbkern.plastic_rnn(..., backend=name)``. A backend is used when a tiny call on the case's
  device and dtype succeeds, so new backends are picked up without editing this file;
- CUDA only, ``cuda-graph`` and ``triton-graph``: those backends' whole call captured in a CUDA
  graph and replayed, as ``graph`` captures the eager loop (the fused ops are capturable; what a
  user who graphs the eager loop would do with hebbkern too): the call's host work (argument
  checks, allocation, launches) is gone and only its GPU work is timed.

Modes: ``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (inputs require grad; the forward, then
``torch.autograd.grad`` of the output sequence ``h`` and of the final trace, with fixed random
cotangents).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

import hebbkern
from hebbkern._validation import ETA_RULES, MODULATED_RULES, check_plastic_rnn_args
from hebbkern.reference import plastic_rnn_step

NAME = "plastic_rnn"
MODES = ("fwd", "fwd+bwd")
FIXED_PROVIDERS = ("eager", "compile", "compile-ro", "graph")
CUDA_ONLY_PROVIDERS = ("compile-ro", "graph")  # CUDA graphs

# Grids (lists per dimension). The issue case: B=32, N=128, T=50, neuromod, float32.
DEFAULT_GRID = {"rules": ["neuromod"], "N": [64, 128, 256], "T": [20, 100], "B": [1, 32]}
QUICK_GRID = {"rules": ["neuromod"], "N": [32], "T": [8], "B": [4]}
ISSUE_GRID = {"rules": ["neuromod"], "N": [128], "T": [50], "B": [32]}


@dataclass(frozen=True)
class Case:
    rule: str
    T: int
    B: int
    N: int
    dtype: torch.dtype
    device: torch.device

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def label(self) -> str:
        return f"{self.rule} T={self.T} B={self.B} N={self.N} {self.dtype_name}"


def make_cases(rules, Ns, Ts, Bs, dtypes, device) -> list[Case]:
    """The grid, ordered so that the first cases are the small, cheap ones of the first dtype."""
    return [
        Case(rule, T, B, N, dtype, torch.device(device))
        for dtype in dtypes
        for rule in rules
        for T in Ts
        for B in Bs
        for N in Ns
    ]


def backend_providers() -> list[str]:
    """hebbkern backends benchmarked by name (``reference`` is the ``eager`` provider)."""
    return [b for b in hebbkern.BACKENDS if b != "reference"]


GRAPHED = "-graph"  # a backend's call captured in a CUDA graph


def graphed_providers() -> list[str]:
    """The GPU backends captured in a CUDA graph (``cuda-graph``, ``triton-graph``)."""
    return [b + GRAPHED for b in backend_providers() if b in ("cuda", "triton")]


def graphed_backend(provider: str) -> str | None:
    """The backend a ``<backend>-graph`` provider captures, else None."""
    base = provider.removesuffix(GRAPHED)
    return base if provider in graphed_providers() else None


def all_providers() -> list[str]:
    return list(FIXED_PROVIDERS) + backend_providers() + graphed_providers()


# ----------------------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    u: Tensor
    w: Tensor
    alpha: Tensor
    kwargs: dict  # rule, eta, mod_w, mod_b, fanout_w, fanout_b, clip
    leaves: list[Tensor] = field(default_factory=list)  # what the backward differentiates
    grad_outputs: tuple[Tensor, Tensor] | None = None  # cotangents of h and the final trace


def make_inputs(case: Case, requires_grad: bool, seed: int = 0, population: bool = False) -> Inputs:
    """Inputs initialised like ``hebbkern.nn.PlasticRNN`` for the rule, drawn in float32 on the CPU
    from ``seed`` (the same values for every provider, device and dtype), then cast.

    ``population`` (SPEC.md section 1.2, ``benchmarks/population.py``): every sample its own
    network, ``w`` and ``alpha`` ``[B, N, N]`` and ``eta`` ``[B]``; for ``neuromod`` eta is the rate
    of the unmodulated half (``n_modulated = N // 2``, Backpropamine's ``fm = 0``), so that all
    three per-sample parameters enter the math."""
    T, B, N, rule = case.T, case.B, case.N, case.rule
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    u = torch.randn(T, B, N, generator=g)
    shape = (B, N, N) if population else (N, N)
    if rule in MODULATED_RULES:  # Backpropamine
        w, alpha = uniform(shape, 0, 0.001), uniform(shape, 0, 0.001)
    else:  # differentiable plasticity
        w, alpha = 0.01 * torch.randn(shape, generator=g), 0.01 * torch.randn(shape, generator=g)
    named = {"u": u, "w": w, "alpha": alpha}
    if rule in ETA_RULES:
        named["eta"] = torch.tensor(0.01)
    if rule in MODULATED_RULES:  # as nn.Linear(N, 1) and, for the fan-out, nn.Linear(1, N)
        b = 1.0 / math.sqrt(N)
        named["mod_w"], named["mod_b"] = uniform((N,), -b, b), uniform((), -b, b)
        named["fanout_w"], named["fanout_b"] = uniform((N,), -1, 1), uniform((N,), -1, 1)
    gh, ghebb = torch.randn(T, B, N, generator=g), torch.randn(B, N, N, generator=g)
    if population:  # drawn last: the shared case's values do not change
        named["eta"] = uniform((B,), 0.005, 0.05)

    def cast(x: Tensor, grad: bool) -> Tensor:
        return x.to(device=case.device, dtype=case.dtype).detach().requires_grad_(grad)

    named = {k: cast(v, requires_grad) for k, v in named.items()}
    kwargs = {k: named.get(k) for k in ("eta", "mod_w", "mod_b", "fanout_w", "fanout_b")}
    kwargs.update(rule=rule, clip=1.0)
    if population and rule == "neuromod":
        kwargs["n_modulated"] = N // 2
    return Inputs(
        named["u"], named["w"], named["alpha"], kwargs,
        leaves=list(named.values()) if requires_grad else [],
        grad_outputs=(cast(gh, False), cast(ghebb, False)) if requires_grad else None,
    )  # fmt: skip


# -------------------------------------------------------------------------------------- providers


def _compiled_loop(mode: str | None = None):
    """``plastic_rnn`` as the reference writes it, with the step compiled by torch.compile
    (``mode="reduce-overhead"``: replayed as CUDA graphs).

    ``torch._dynamo.reset()`` first: each case compiles its own graphs (static shapes), no cache
    limit is hit across the grid, and the first call's time is this case's compile time.
    """
    torch._dynamo.reset()
    step = torch.compile(plastic_rnn_step, dynamic=False, fullgraph=True, mode=mode)
    new_iteration = mode == "reduce-overhead"

    def plastic_rnn(u, w, alpha, *, rule, eta=None, mod_w=None, mod_b=None, fanout_w=None,
                    fanout_b=None, clip=1.0):  # fmt: skip
        a = check_plastic_rnn_args(
            u, w, alpha, rule=rule, eta=eta, mod_w=mod_w, mod_b=mod_b, fanout_w=fanout_w,
            fanout_b=fanout_b, clip=clip, h0=None, hebb0=None, elig0=None, clamp_mask=None,
        )  # fmt: skip
        T, B, N = a.shape
        if new_iteration:  # one call = one iteration: CUDA-graph memory of the last one is free
            torch.compiler.cudagraph_mark_step_begin()
        h, hebb = u.new_zeros(B, N), u.new_zeros(B, N, N)
        elig = u.new_zeros(B, N, N) if rule == "retro" else None
        outputs = []
        for t in range(T):
            h, hebb, elig = step(
                u[t], h, hebb, elig, w, alpha, rule=rule, eta=a.eta, mod_w=mod_w, mod_b=a.mod_b,
                fanout_w=fanout_w, fanout_b=fanout_b, clip=a.clip, clamp_t=None,
            )  # fmt: skip
            outputs.append(h)
        return torch.stack(outputs), hebbkern.PlasticState(h, hebb, elig)

    return plastic_rnn


def provider_fn(provider: str):
    """The function ``(u, w, alpha, **kwargs) -> (h, state)`` of a provider."""
    if provider == "eager":
        return hebbkern.reference.plastic_rnn
    if provider == "compile":
        return _compiled_loop()
    if provider == "compile-ro":
        return _compiled_loop("reduce-overhead")
    if provider == "graph":  # the reference, captured by Bench
        return hebbkern.reference.plastic_rnn
    if provider in backend_providers():
        return functools.partial(hebbkern.plastic_rnn, backend=provider)
    if graphed_backend(provider):  # captured by Bench
        return functools.partial(hebbkern.plastic_rnn, backend=graphed_backend(provider))
    raise ValueError(f"unknown provider {provider!r}; known: {', '.join(all_providers())}")


@functools.cache
def provider_unavailable(
    provider: str, device: torch.device, dtype: torch.dtype, population: bool = False
) -> str | None:
    """None when ``provider`` runs on ``device`` in ``dtype``, else the reason it does not
    (``population``: with per-sample parameters, see :func:`make_inputs`)."""
    if (provider in CUDA_ONLY_PROVIDERS or graphed_backend(provider)) and device.type != "cuda":
        return "CUDA only (CUDA graphs)"
    if graphed_backend(provider):
        return provider_unavailable(graphed_backend(provider), device, dtype, population)
    if provider.startswith("compile") and device.type == "cuda":
        try:
            import triton  # noqa: F401  (inductor's GPU code generator)
        except ImportError as e:
            return f"torch.compile on cuda needs triton: {e}"
    if provider in FIXED_PROVIDERS:
        return None
    if provider not in backend_providers():
        return f"not a hebbkern backend ({', '.join(hebbkern.BACKENDS)})"
    try:  # a tiny forward and backward on the device
        case = Case("neuromod", 2, 2, 8, dtype, device)
        x = make_inputs(case, requires_grad=True, population=population)
        h, state = hebbkern.plastic_rnn(x.u, x.w, x.alpha, backend=provider, **x.kwargs)
        torch.autograd.grad((h, state.hebb), x.leaves, x.grad_outputs, allow_unused=True)
    except Exception as e:  # noqa: BLE001  (any failure means: skip this provider here)
        msg = str(e).strip()
        return f"{type(e).__name__}: {msg.splitlines()[0]}" if msg else type(e).__name__
    return None


class Bench:
    """One (case, provider, mode): ``run()`` is what is timed; ``forward()`` is the forward alone
    (with the inputs of ``run``), for measuring what autograd saves. ``population`` and ``fn``:
    per-sample inputs (:func:`make_inputs`) and the provider's function, for other families that
    call the op the same way (``benchmarks/population.py``)."""

    def __init__(
        self, case: Case, provider: str, mode: str, seed: int = 0, population: bool = False, fn=None
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.case, self.provider, self.mode = case, provider, mode
        self.grad = mode == "fwd+bwd"
        self.x = make_inputs(case, requires_grad=self.grad, seed=seed, population=population)
        self.fn = fn if fn is not None else provider_fn(provider)
        graphed = provider == "graph" or graphed_backend(provider) is not None
        self._graphed = CudaGraphed(self._call) if graphed else None

    def forward(self):
        x = self.x
        return self.fn(x.u, x.w, x.alpha, **x.kwargs)

    def run(self):
        if self._graphed is not None:
            return self._graphed()
        return self._call()

    def _call(self):
        if not self.grad:
            with torch.no_grad():
                return self.forward()
        h, state = self.forward()
        return torch.autograd.grad(
            (h, state.hebb), self.x.leaves, self.x.grad_outputs, allow_unused=True
        )


class CudaGraphed:
    """``fn`` captured once in a CUDA graph (after three warm-up calls on a side stream, as
    PyTorch's documentation does it) and replayed by each call, on the same input tensors."""

    def __init__(self, fn, warmup: int = 3) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn()

    def __call__(self):
        self.graph.replay()
        return self.out


def nominal_bytes(case: Case, mode: str) -> int:
    """Bytes of a model that streams the plastic state through memory once per step.

    Forward: each step reads and writes the ``[B, N, N]`` trace (and the eligibility trace for
    ``retro``), plus ``u`` in, ``h`` out and ``w``, ``alpha`` once. Forward + backward: three times
    the forward (the forward, its recomputation and the pass over the gradient of the trace).
    A fused kernel that keeps the trace on chip moves less, so "GB/s" is an effective rate.
    """
    e = torch.empty((), dtype=case.dtype).element_size()
    T, B, N = case.T, case.B, case.N
    states = 2 if case.rule == "retro" else 1
    fwd = e * (T * 2 * states * B * N * N + 2 * T * B * N + 2 * N * N)
    return fwd if mode == "fwd" else 3 * fwd
