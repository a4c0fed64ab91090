"""The agent loop of ``hebbkern.plastic_step`` on a GPU: T calls of the step, one per environment
step (the state carried from call to call), then the backward through all of them; the issue-14
case is rule neuromod, T = 200, B = 64, N = 128, float32, forward+backward.

    python -m benchmarks plastic_step --device cuda [--quick] [--min-time 0.5] [--out DIR]

Providers, all in one process:

- ``eager``: the reference step (``hebbkern.reference.plastic_step``) in a Python loop, the
  baseline of the speed-ups;
- ``compile``: that step under ``torch.compile(fullgraph=True, dynamic=False)``, called per step;
- ``graph``: the eager reference loop, forward and backward, captured once in a CUDA graph and
  replayed (no CPU launch cost left: what a user gets from capturing their own loop);
- ``hebbkern``: ``hebbkern.plastic_step`` with its default backend (on CUDA the Triton kernels);
- ``hebbkern-graph``: the hebbkern loop captured in a CUDA graph.

Targets (issue 14): hebbkern >= 5x eager, hebbkern-graph >= 2x graph. On the CPU (``--device
cpu``, a smoke test) the graph providers are skipped. Median times (CUDA events on a GPU); the
rows go to ``OUT/plastic_step_agent_<device>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import torch

import hebbkern
from benchmarks import common

PROVIDERS = ("eager", "compile", "graph", "hebbkern", "hebbkern-graph")
GRAPHED = {"graph": "eager", "hebbkern-graph": "hebbkern"}


def agent_inputs(B: int, N: int, device, seed: int = 0) -> dict:
    """Leaves of the loop (w, alpha, the neuromodulator's and fan-out's parameters) and the
    per-step drive u [T, B, N] (made by the caller)."""
    g = torch.Generator().manual_seed(seed)
    b = 1.0 / math.sqrt(N)
    leaves = {
        "w": torch.rand(N, N, generator=g) * 1e-3,
        "alpha": torch.rand(N, N, generator=g) * 1e-3,
        "mod_w": (torch.rand(N, generator=g) * 2 - 1) * b,
        "mod_b": (torch.rand((), generator=g) * 2 - 1) * b,
        "fanout_w": torch.rand(N, generator=g) * 2 - 1,
        "fanout_b": torch.rand(N, generator=g) * 2 - 1,
    }
    return {k: v.to(device).requires_grad_() for k, v in leaves.items()}


def make_loop(provider: str, T: int, B: int, N: int, device):
    """The timed call of one provider: ``() -> gradients of the leaves``."""
    x = agent_inputs(B, N, device)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(T, B, N, generator=g).to(device)
    cot = torch.randn(B, N, generator=g).to(device)
    base = GRAPHED.get(provider, provider)
    if base == "eager":
        step = hebbkern.reference.plastic_step
    elif base == "compile":
        torch._dynamo.reset()
        step = torch.compile(hebbkern.reference.plastic_step, fullgraph=True, dynamic=False)
    else:
        step = functools.partial(hebbkern.plastic_step, backend=None)
    leaves = list(x.values())

    def loop():
        h, hebb = u.new_zeros(B, N), u.new_zeros(B, N, N)
        loss = 0.0
        for t in range(T):  # one call per environment step
            h, hebb, _ = step(
                u[t], h, hebb, x["w"], x["alpha"], rule="neuromod", mod_w=x["mod_w"],
                mod_b=x["mod_b"], fanout_w=x["fanout_w"], fanout_b=x["fanout_b"], clip=1.0,
            )  # fmt: skip
            loss = loss + (h * cot).sum()
        return torch.autograd.grad(loss, leaves)

    if provider not in GRAPHED:
        return loop
    # Warm up on a side stream (compilation, the caching allocator), then capture once.
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            loop()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        grads = loop()

    def replay():
        graph.replay()
        return grads

    return replay


def check_same_gradients(results: dict) -> dict:
    """Relative error of every provider's gradients against eager's (a graph replays the captured
    values: a wrong capture shows here)."""
    ref = results["eager"]

    def err(a, b):
        return (a - b).norm().item() / max(b.norm().item(), 1e-30)

    return {p: max(err(a, b) for a, b in zip(g, ref, strict=True)) for p, g in results.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks plastic_step --device cuda",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per row")
    p.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    T, B, N = (5, 4, 16) if a.quick else (200, 64, 128)
    providers = [q for q in a.providers if device.type == "cuda" or q not in GRAPHED]
    label = f"plastic_step agent loop, neuromod fan-out T={T} B={B} N={N} f32"
    rows, grads = [], {}
    for provider in providers:
        run = make_loop(provider, T, B, N, device)
        first = common.time_call(run, device)
        grads[provider] = [g.detach().clone() for g in run()]
        m = common.measure(run, device, min_time=a.min_time, max_case_time=10 * a.min_time)
        row = {"family": "plastic_step", "case": label, "mode": "fwd+bwd", "provider": provider,
               "device": str(device), "median_ms": m["median_ms"], "iqr_ms": m["iqr_ms"],
               "runs": m["runs"], "first_call_s": first}  # fmt: skip
        if provider.startswith("hebbkern"):
            row["backend"] = hebbkern.backends.resolve(None, device, family="plastic_step")
        rows.append(row)
        print(f"  {label} {provider}: {m['median_ms']:.3f} ms", flush=True)
    errs = check_same_gradients(grads) if "eager" in grads else {}
    by = {r["provider"]: r["median_ms"] for r in rows}
    for r in rows:
        r["grad_rel_err_vs_eager"] = errs.get(r["provider"])
        r["speedup_vs_eager"] = by["eager"] / r["median_ms"] if "eager" in by else None
        r["speedup_vs_graph"] = by["graph"] / r["median_ms"] if "graph" in by else None
    info = common.machine_info(device)
    columns = [("provider", "provider", ""), ("median ms", "median_ms", ".3f"),
               ("x eager", "speedup_vs_eager", common.ratio),
               ("x graph", "speedup_vs_graph", common.ratio),
               ("grad err", "grad_rel_err_vs_eager", ".1e")]  # fmt: skip
    text = f"{common.machine_line(info)}\n{label}, fwd+bwd\n\n{common.format_table(rows, columns)}"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"plastic_step_agent_{device.type}{'_quick' if a.quick else ''}"
    common.write_json(stem.with_suffix(".json"), info, rows)
    stem.with_suffix(".txt").write_text(text + "\n")
    print(f"wrote {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
