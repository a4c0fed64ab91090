"""Benchmark of ``hebbkern.nn.PlasticLSTM`` (SPEC.md section 2) and ``hebbkern.nn.DHPSoftmax``
(section 3), runnable as ``python -m benchmarks.plastic_lstm``.

PlasticLSTM providers, all on the same module and inputs:

- ``eager``: the module with ``hebbkern.use_backend("reference")`` (the eager oracle; speed-ups
  are relative to it, measured in the same run);
- ``compile``: the reference's loop over time with its step compiled by ``torch.compile``
  (``fullgraph=True``, static shapes, compiled afresh per case and mode);
- ``cpu``: the module with the fused C++ kernels (the default on CPU tensors).

DHPSoftmax providers, training step with a target (trace update + logits), forward+backward:
``eager-loop`` (the reference's per-class loop, hebbkern/reference/dhp_softmax.py) and ``module``
(the vectorised update of ``DHPSoftmax``).

Modes: ``fwd`` (no grad) and ``fwd+bwd`` (forward, then ``torch.autograd.grad`` of the outputs and
the final trace with fixed random cotangents, into every parameter and the input).

``--device cuda`` (any argument list containing ``--device``) runs the GPU rows instead:
benchmarks/plastic_lstm_cuda.py.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

import hebbkern
from benchmarks import common
from hebbkern.nn import DHPSoftmax, PlasticLSTM
from hebbkern.reference import plastic_lstm_step
from hebbkern.reference.dhp_softmax import dhp_softmax_logits, dhp_trace_update

NAME = "plastic_lstm"
MODES = ("fwd", "fwd+bwd")
LSTM_PROVIDERS = ("eager", "compile", "cpu")
DHP_PROVIDERS = ("eager-loop", "module")
# (T, B, N): the first is the issue case (PTB-like: 35 steps, batch 20, hidden 256).
LSTM_CASES = [(35, 20, 256), (35, 20, 128), (35, 6, 512)]
QUICK_LSTM_CASES = [(8, 4, 32)]
# (B, M, K): a classifier head (batch, feature width, classes).
DHP_CASES = [(64, 256, 10), (256, 1024, 100)]
QUICK_DHP_CASES = [(8, 16, 4)]
RESULTS = Path(__file__).resolve().parent / "results"


class LstmBench:
    """One (case, provider, mode) of PlasticLSTM: ``run()`` is what is timed."""

    def __init__(self, T: int, B: int, N: int, provider: str, mode: str, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.provider, self.grad = provider, mode == "fwd+bwd"
        self.m = PlasticLSTM(N, N, rule="neuromod", alpha="per_neuron", fanout=True, clip=2.0)
        with torch.no_grad():  # plasticity large enough that the clip bites now and then
            self.m.alpha_l0.uniform_(0, 0.5)
        self.x = torch.randn(T, B, N, generator=g).requires_grad_(self.grad)
        self.gh = torch.randn(T, B, N, generator=g)
        self.ghebb = torch.randn(1, B, N, N, generator=g)
        self.leaves = [self.x, *self.m.parameters()]
        if provider == "compile":
            torch._dynamo.reset()
            self.step = torch.compile(plastic_lstm_step, dynamic=False, fullgraph=True)

    def _compiled_forward(self):
        m, x = self.m, self.x
        T, B, N = x.shape
        u = torch.nn.functional.linear(x, m.weight_ih_l0, m.bias_ih_l0) + m.bias_hh_l0
        wh = m.weight_hh_l0.t()
        h, c, hebb = x.new_zeros(B, N), x.new_zeros(B, N), x.new_zeros(B, N, N)
        outs = []
        for t in range(T):
            h, c, hebb, _ = self.step(
                u[t], h, c, hebb, None, wh, m.alpha_l0, rule="neuromod", eta=None,
                mod_w=m.mod_w_l0, mod_b=m.mod_b_l0, fanout_w=m.fanout_w_l0,
                fanout_b=m.fanout_b_l0, clip=2.0,
            )  # fmt: skip
            outs.append(h)
        return torch.stack(outs), hebb.unsqueeze(0)

    def forward(self):
        if self.provider == "compile":
            return self._compiled_forward()
        with hebbkern.use_backend("reference" if self.provider == "eager" else "cpu"):
            out, (_, _, hebb) = self.m(self.x)
        return out, hebb

    def run(self):
        if not self.grad:
            with torch.no_grad():
                return self.forward()
        out, hebb = self.forward()
        return torch.autograd.grad((out, hebb), self.leaves, (self.gh, self.ghebb))


class DhpBench:
    """One (case, provider) of the DHPSoftmax training step, forward+backward."""

    def __init__(self, B: int, M: int, K: int, provider: str, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.provider = provider
        self.layer = DHPSoftmax(M, K)
        with torch.no_grad():
            self.layer.eta.fill_(0.1)
        self.h = torch.randn(B, M, generator=g, requires_grad=True)
        self.y = torch.randint(0, K, (B,), generator=g)
        self.gz = torch.randn(B, K, generator=g)
        self.leaves = [self.h, self.layer.theta, self.layer.alpha, self.layer.eta]

    def forward(self):
        L = self.layer
        if self.provider == "module":
            return L(self.h, self.y)
        hebb = dhp_trace_update(L.hebb, self.h, self.y, L.eta)
        L.hebb = hebb.detach()
        return dhp_softmax_logits(self.h, L.theta, L.alpha, hebb)

    def run(self):
        return torch.autograd.grad(self.forward(), self.leaves, self.gz)


def _time(bench, min_time: float, max_case_time: float) -> dict:
    first = common.time_call(bench.run, torch.device("cpu"))
    r = common.measure(bench.run, torch.device("cpu"), min_time=min_time,
                       max_case_time=max_case_time)  # fmt: skip
    r["first_call_s"] = first
    return r


def run_lstm(cases, min_time, max_case_time, providers=LSTM_PROVIDERS) -> list[dict]:
    rows = []
    for T, B, N in cases:
        for mode in MODES:
            ref_ms = None
            for provider in providers:
                bench = LstmBench(T, B, N, provider, mode)
                r = _time(bench, min_time, max_case_time)
                row = {"op": "PlasticLSTM", "case": f"neuromod T={T} B={B} N={N} float32",
                       "mode": mode, "provider": provider, **r}  # fmt: skip
                if mode == "fwd+bwd":
                    row["saved_mb"] = common.saved_bytes(bench.forward) / 2**20
                if provider == "eager":
                    ref_ms = r["median_ms"]
                row["speedup"] = ref_ms / r["median_ms"] if ref_ms else math.nan
                rows.append(row)
                print(common.format_table([row], COLUMNS).splitlines()[-1], flush=True)
    return rows


def run_dhp(cases, min_time, max_case_time) -> list[dict]:
    rows = []
    for B, M, K in cases:
        ref_ms = None
        for provider in DHP_PROVIDERS:
            r = _time(DhpBench(B, M, K, provider), min_time, max_case_time)
            if provider == "eager-loop":
                ref_ms = r["median_ms"]
            row = {"op": "DHPSoftmax", "case": f"B={B} M={M} K={K} float32", "mode": "fwd+bwd",
                   "provider": provider, **r, "speedup": ref_ms / r["median_ms"]}  # fmt: skip
            rows.append(row)
            print(common.format_table([row], COLUMNS).splitlines()[-1], flush=True)
    return rows


COLUMNS = [
    *common.text_columns("op", "case", "mode", "provider"),
    ("median ms", "median_ms", ".2f"),
    ("iqr ms", "iqr_ms", ".2f"),
    ("speed-up", "speedup", common.ratio),
    ("saved MiB", "saved_mb", ".1f"),
]


def main(argv=None) -> None:
    argv = __import__("sys").argv[1:] if argv is None else list(argv)
    if any(a == "--device" or a.startswith("--device=") for a in argv):
        # The GPU rows (issue 14's language-model case, peers eager / compile / CUDA graph):
        # their own runner, benchmarks/plastic_lstm_cuda.py.
        from benchmarks import plastic_lstm_cuda

        return plastic_lstm_cuda.main(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny cases (a smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--max-case-time", type=float, default=20.0)
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. run1)")
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--only", choices=["lstm", "dhp"], default=None)
    ap.add_argument("--issue", action="store_true", help="only the issue case of each op")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = common.machine_info(torch.device("cpu"))
    print(common.machine_line(info))
    print(common.format_table([], COLUMNS))
    rows = []
    if args.only in (None, "lstm"):
        cases = QUICK_LSTM_CASES if args.quick else LSTM_CASES[:1] if args.issue else LSTM_CASES
        rows += run_lstm(cases, args.min_time, args.max_case_time)
    if args.only in (None, "dhp"):
        cases = QUICK_DHP_CASES if args.quick else DHP_CASES[:1] if args.issue else DHP_CASES
        rows += run_dhp(cases, args.min_time, args.max_case_time)
    info["loadavg_end"] = round(__import__("os").getloadavg()[0], 2)
    table = common.format_table(rows, COLUMNS)
    print()
    print(table)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stem = f"{NAME}_cpu_amd-epyc-2c" + (f"_{args.tag}" if args.tag else "")
        common.write_json(RESULTS / f"{stem}.json", info, rows)
        (RESULTS / f"{stem}.txt").write_text(common.machine_line(info) + "\n\n" + table + "\n")
        print(f"wrote {RESULTS / stem}.{{json,txt}}")


if __name__ == "__main__":
    main()
