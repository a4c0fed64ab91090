"""GPU rows of the plastic LSTM benchmark: ``python -m benchmarks plastic_lstm --device cuda``.

The issue-14 workload: Backpropamine's language model, ``hebbkern.nn.PlasticLSTM`` with 3 layers,
hidden size 1149, BPTT 70, neuromodulation with fan-out, alpha per neuron, clip 2, float32,
forward + backward (``torch.autograd.grad`` of the outputs and final traces, with fixed random
cotangents, into every parameter and the input). Batch 64 (the target) and 16.

Providers, on the same module and inputs, each timed and its peak memory (CUDA) measured:

- ``eager``: the module under ``hebbkern.use_backend("reference")`` (speed-ups relative to it,
  measured in the same run);
- ``compile``: the reference's time loop with its step compiled by ``torch.compile``
  (``fullgraph=True``, static shapes), layer by layer;
- ``graph``: the eager forward + backward captured once in a CUDA graph and replayed (no launch
  overhead left; the same kernels and memory as eager);
- ``hebbkern``: the module with its default backend on the device (on CUDA tensors ``triton``:
  cuBLAS GEMMs plus the fused Triton step kernels; on CPU the C++ kernels).

A provider that runs out of memory gets a row saying so (``oom``) instead of a time: that is a
measurement too (the eager reference saves several ``[B, N, N]`` tensors per step and layer).
Results: ``OUTDIR/plastic_lstm_<device>.json`` and a table on stdout. ``--quick``: tiny sizes,
any device (the CPU check of benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import gc
import math
from pathlib import Path

import torch

import hebbkern
from benchmarks import common
from hebbkern.nn import PlasticLSTM
from hebbkern.reference import plastic_lstm_step

# hebbkern first: a run cut by its time limit keeps the rows that matter most.
PROVIDERS = ("hebbkern", "eager", "graph", "compile")
# (layers, T, B, N): the target (batch 64), then a batch at which eager fits on one GPU.
CASES = [(3, 70, 64, 1149), (3, 70, 16, 1149)]
QUICK_CASES = [(2, 6, 3, 16)]
CLIP = 2.0


class Bench:
    """One (case, provider): ``run()`` is one training step's forward + backward."""

    def __init__(self, L, T, B, N, provider, device, seed=0):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.provider, self.device = provider, device
        self.m = PlasticLSTM(N, N, num_layers=L, rule="neuromod", alpha="per_neuron",
                             fanout=True, clip=CLIP).to(device)  # fmt: skip
        with torch.no_grad():  # plasticity large enough that the clip bites now and then
            for k in range(L):
                getattr(self.m, f"alpha_l{k}").uniform_(0, 0.5)
        self.x = torch.randn(T, B, N, generator=g).to(device).requires_grad_()
        self.gh = torch.randn(T, B, N, generator=g).to(device)
        self.ghebb = torch.randn(L, B, N, N, generator=g).to(device)
        self.leaves = [self.x, *self.m.parameters()]
        self.step = None
        if provider == "compile":
            torch._dynamo.reset()
            self.step = torch.compile(plastic_lstm_step, dynamic=False, fullgraph=True)
        self._graphed = None

    def _compiled_forward(self):
        m, out = self.m, self.x
        T, B, N = out.shape
        hebbs = []
        for k in range(m.num_layers):
            p = {n: getattr(m, f"{n}_l{k}") for n in ("alpha", "mod_w", "mod_b", "fanout_w",
                                                      "fanout_b")}  # fmt: skip
            u = torch.nn.functional.linear(out, m._p("weight_ih", k), m._p("bias_ih", k))
            u = u + m._p("bias_hh", k)
            wh = m._p("weight_hh", k).t()
            h, c, hebb = out.new_zeros(B, N), out.new_zeros(B, N), out.new_zeros(B, N, N)
            outs = []
            for t in range(T):
                h, c, hebb, _ = self.step(
                    u[t], h, c, hebb, None, wh, p["alpha"], rule="neuromod", eta=None,
                    mod_w=p["mod_w"], mod_b=p["mod_b"], fanout_w=p["fanout_w"],
                    fanout_b=p["fanout_b"], clip=CLIP,
                )  # fmt: skip
                outs.append(h)
            out = torch.stack(outs)
            hebbs.append(hebb)
        return out, torch.stack(hebbs)

    def forward(self):
        if self.provider == "compile":
            return self._compiled_forward()
        backend = None if self.provider == "hebbkern" else "reference"
        with hebbkern.use_backend(backend):
            out, (_, _, hebb) = self.m(self.x)
        return out, hebb

    def _call(self):
        out, hebb = self.forward()
        return torch.autograd.grad((out, hebb), self.leaves, (self.gh, self.ghebb))

    def run(self):
        if self.provider == "graph":
            if self._graphed is None:
                from benchmarks.plastic_rnn import CudaGraphed

                self._graphed = CudaGraphed(self._call)
            return self._graphed()
        return self._call()


def backend_of(provider: str, device: torch.device) -> str:
    if provider in ("eager", "graph"):
        return "reference"
    if provider == "compile":
        return "reference (compiled step)"
    return hebbkern.backends.resolve(None, device, family="plastic_lstm")


def measure(case, provider, device, min_time, max_case_time) -> dict:
    L, T, B, N = case
    row = {"op": "PlasticLSTM", "case": f"neuromod L={L} T={T} B={B} N={N} float32",
           "mode": "fwd+bwd", "provider": provider,
           "backend": backend_of(provider, device)}  # fmt: skip
    if provider == "graph" and device.type != "cuda":
        return {**row, "status": "needs CUDA"}
    bench = None
    try:
        bench = Bench(L, T, B, N, provider, device)
        if device.type == "cuda":
            row["peak_gib"] = common.cuda_peak_bytes(bench.run, device) / 2**30
        row["first_call_s"] = common.time_call(bench.run, device)
        row.update(common.measure(bench.run, device, min_time=min_time,
                                  max_case_time=max_case_time))  # fmt: skip
        row["status"] = "ok"
    except torch.cuda.OutOfMemoryError as e:
        row["status"] = "oom"
        row["error"] = str(e).splitlines()[0][:200]
    finally:
        del bench
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


COLUMNS = [
    *common.text_columns("case", "provider", "backend", "status"),
    ("median ms", "median_ms", ".1f"),
    ("speed-up", "speedup", common.ratio),
    ("peak GiB", "peak_gib", ".2f"),
    ("mem / eager", "mem_ratio", common.ratio),
]


def run(cases, providers, device, min_time, max_case_time, save=None) -> list[dict]:
    """Every case with every provider; ``save(rows)`` after each row (a run cut by a time limit
    keeps what it measured)."""
    rows = []
    for case in cases:
        group = []
        for provider in providers:
            row = measure(case, provider, device, min_time, max_case_time)
            group.append(row)
            print(common.format_table([row], COLUMNS).splitlines()[-1], flush=True)
            if save is not None:
                save(rows + group)
        eager = next((r for r in group if r["provider"] == "eager"), {})
        for r in group:
            ok = eager.get("status") == "ok" and r.get("status") == "ok"
            r["speedup"] = eager["median_ms"] / r["median_ms"] if ok else math.nan
            if ok and "peak_gib" in r:
                r["mem_ratio"] = r["peak_gib"] / eager["peak_gib"]
        rows += group
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, any device)")
    ap.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batches of the case")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    ap.add_argument("--max-case-time", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=None, help="directory of the json results")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    cases = QUICK_CASES if args.quick else CASES
    if args.batch:
        cases = [(L, T, B, N) for (L, T, _, N) in cases[:1] for B in args.batch]
    info = common.machine_info(device)
    print(common.machine_line(info))
    print(common.format_table([], COLUMNS))
    path = None if args.out is None else args.out / f"plastic_lstm_{device.type}.json"

    def save(rows):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            common.write_json(path, info, rows)

    rows = run(cases, args.providers, device, args.min_time, args.max_case_time, save)
    save(rows)
    print()
    print(common.format_table(rows, COLUMNS))
    if path is not None:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
