"""Machinery shared by the single-step benchmarks (``plastic_step``, ``trace_update``,
``plastic_linear``): each family lists cases; a case builds, per provider, a forward closure and
the leaves its backward differentiates. Providers, all in the same process and run:

- ``eager``: the family's eager reference (``hebbkern.reference``), the speed-up baseline;
- ``compile``: ``torch.compile(reference, fullgraph=True, dynamic=False)``, compiled afresh per case
  (``torch._dynamo.reset()``; the first call, timed apart, includes the compilation);
- ``cpu``: the fused hebbkern op.

Modes ``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (``torch.autograd.grad`` of the outputs with
fixed random cotangents). Times are medians (common.measure); autograd's saved bytes per case.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import hebbkern
from benchmarks import common

PROVIDERS = ("eager", "compile", "cpu")
MODES = ("fwd", "fwd+bwd")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Case:
    label: str
    # build(provider, requires_grad) -> (forward closure returning a tuple of tensors, leaves)
    build: Callable[[str, bool], tuple[Callable[[], tuple], list[torch.Tensor]]]


def compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, dynamic=False)


def provider_fn(name: str, provider: str):
    """``hebbkern.<name>`` as a provider runs it: the eager reference (``eager``), the reference
    compiled afresh (``compile``) or the fused op with ``backend=provider``."""
    reference = getattr(hebbkern.reference, name)
    if provider == "eager":
        return reference
    if provider == "compile":
        return compiled(reference)
    return functools.partial(getattr(hebbkern, name), backend=provider)


def leaves(base: dict, grad: bool) -> dict:
    """Fresh copies of a case's inputs, requiring a gradient for the ``fwd+bwd`` mode."""
    return {k: v.clone().requires_grad_(grad) for k, v in base.items()}


def trace_shape(B: int, M: int, K: int, shared: bool) -> tuple[int, ...]:
    """A layer's trace: one [M, K] shared by the batch, or one [B, M, K] per sample."""
    return (M, K) if shared else (B, M, K)


def op_case(name: str, label: str, base: dict, call) -> Case:
    """A case of ``hebbkern.<name>`` whose forward is ``call(fn, x)``: ``fn`` the provider's
    function, ``x`` fresh leaves of ``base``; ``label`` gets the trace's kind and shape."""
    trace = base["trace"] if "trace" in base else base["hebb"]
    kind = "per-sample" if trace.dim() == 3 else "shared"

    def build(provider, grad):
        x = leaves(base, grad)
        fn = provider_fn(name, provider)
        return (lambda: (call(fn, x),)), list(x.values())

    return Case(label.format(kind=kind, shape=list(trace.shape)), build)


def runner(forward, leaves, grad: bool, seed: int = 0):
    """The timed call: the forward (no_grad for ``fwd``), or forward + autograd.grad."""
    if not grad:

        def run():
            with torch.no_grad():
                return forward()

        return run
    outs = forward()
    g = torch.Generator().manual_seed(seed)
    cot = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]

    def run():
        return torch.autograd.grad(forward(), leaves, cot, allow_unused=True)

    return run


def bench_cases(
    name: str, cases: list[Case], *, min_time: float, providers=PROVIDERS
) -> list[dict]:
    rows = []
    device = torch.device("cpu")
    for case in cases:
        for mode in MODES:
            grad = mode == "fwd+bwd"
            base = None
            for provider in providers:
                forward, leaves = case.build(provider, grad)
                first = common.time_call(lambda f=forward: f(), device)  # noqa: B023
                run = runner(forward, leaves, grad)
                m = common.measure(run, device, min_time=min_time, max_case_time=10 * min_time)
                row = {
                    "family": name, "case": case.label, "mode": mode, "provider": provider,
                    "median_ms": m["median_ms"], "iqr_ms": m["iqr_ms"], "runs": m["runs"],
                    "first_call_s": first,
                }  # fmt: skip
                if grad:
                    row["saved_MB"] = common.saved_bytes(forward) / 1e6
                if provider == "eager":
                    base = m["median_ms"]
                row["speedup_vs_eager"] = base / m["median_ms"] if base else None
                rows.append(row)
                print(f"  {case.label} {mode} {provider}: {m['median_ms']:.3f} ms", flush=True)
    return rows


COLUMNS = [
    ("case", "case", ""), ("mode", "mode", ""), ("provider", "provider", ""),
    ("median ms", "median_ms", ".3f"), ("x eager", "speedup_vs_eager", common.ratio),
    ("saved MB", "saved_MB", ".2f"),
]  # fmt: skip


def main(name: str, cases_fn: Callable[[bool], list[Case]], argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=f"Benchmark of hebbkern.{name} (CPU)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    p.add_argument("--tag", default=None, help=f"write results/{name}_cpu_amd-epyc-2c_TAG.*")
    p.add_argument("--providers", default=",".join(PROVIDERS))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    info = common.machine_info(torch.device("cpu"))
    rows = bench_cases(name, cases_fn(a.quick), min_time=a.min_time,
                       providers=tuple(a.providers.split(",")))  # fmt: skip
    text = common.machine_line(info) + "\n\n" + common.format_table(rows, COLUMNS)
    print(text)
    if a.tag:
        common.save_results(RESULTS / f"{name}_cpu_amd-epyc-2c_{a.tag}", info, rows, text)
    return rows
