"""One small benchmark of each op family besides plastic_rnn, on any device (the GPU check's
``families`` stage; the families' own runners are CPU-only).

    python -m benchmarks.gpu_families --device cuda --out OUTDIR [--quick] [--min-time 0.2]

Per case, in one process: ``eager`` (the op under ``hebbkern.use_backend("reference")``) and
``hebbkern`` (the op with its default backend on that device: on CUDA tensors ``trace_update``
runs the CUDA kernels, ``hebbian_update`` its fused ATen path, and families without GPU kernels
fall back to the reference, which the row's ``backend`` column says). Forward+backward where the
op is differentiable, the update alone for ``hebbian_update``. Median times (CUDA events on a GPU),
peak memory on CUDA; written to ``OUTDIR/families_<device>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

import hebbkern
from benchmarks import common

PROVIDERS = ("eager", "hebbkern")


def _leaves(*shapes, device, g, scale=1.0):
    return [(scale * torch.randn(s, generator=g)).to(device).requires_grad_() for s in shapes]


def trace_update_case(device, quick):
    B, M, K = (4, 16, 16) if quick else (32, 128, 128)
    g = torch.Generator().manual_seed(0)
    trace, pre, post, eta = _leaves((B, M, K), (B, M), (B, K), (B, K), device=device, g=g)

    def run():
        out = hebbkern.trace_update(trace, pre, post, eta=eta, rule="clip", clip=1.0)
        return torch.autograd.grad(out.square().sum(), [trace, pre, post, eta])

    return f"trace_update clip per-sample [{B}, {M}, {K}]", "trace_update", run


def plastic_step_case(device, quick):
    B, N = (4, 16) if quick else (64, 128)
    torch.manual_seed(0)
    cell = hebbkern.nn.PlasticRNNCell(N, N, rule="neuromod", device=device)
    x = torch.randn(B, N, device=device)

    def run():
        state = cell(x)
        state = cell(x, state)
        loss = state[0].square().sum() + state[1].square().sum()
        return torch.autograd.grad(loss, list(cell.parameters()), allow_unused=True)

    return f"plastic_step neuromod two steps B={B} N={N}", "plastic_step", run


def plastic_lstm_case(device, quick):
    T, B, H = (4, 2, 16) if quick else (50, 32, 128)
    torch.manual_seed(0)
    lstm = hebbkern.nn.PlasticLSTM(H, H, device=device)
    x = torch.randn(T, B, H, device=device)

    def run():
        out, _ = lstm(x)
        return torch.autograd.grad(out.square().sum(), list(lstm.parameters()), allow_unused=True)

    return f"plastic_lstm neuromod T={T} B={B} H={H}", "plastic_lstm", run


def hebbian_case(device, quick):
    B, C, O, S = (2, 8, 8, 8) if quick else (64, 96, 128, 32)
    g = torch.Generator().manual_seed(0)
    w = (0.05 * torch.randn(O, C, 3, 3, generator=g)).to(device)
    x = torch.randn(B, C, S, S, generator=g).to(device)
    y = torch.randn(B, O, S - 2, S - 2, generator=g).to(device)

    def run():
        return hebbkern.hebbian_update(w, x, y, rule="oja")

    return f"hebbian_update oja conv {C}->{O} 3x3 on {S}x{S}, B={B}", "hebbian", run


def dhp_softmax_case(device, quick):
    """The DHP Softmax training step of issue 14's table: trace update and read-out (the read-out
    is ``plastic_linear``), forward+backward."""
    B, M, K = (8, 16, 4) if quick else (256, 512, 100)
    torch.manual_seed(0)
    head = hebbkern.nn.DHPSoftmax(M, K, device=device)
    h = torch.randn(B, M, device=device, requires_grad=True)
    y = torch.randint(0, K, (B,), device=device)

    def run():
        z = head(h, y)
        return torch.autograd.grad(z.square().sum(), [h, *head.parameters()])

    return f"DHPSoftmax step B={B} {M}->{K}", "plastic_linear", run


CASES: tuple[Callable, ...] = (trace_update_case, plastic_step_case, plastic_lstm_case,
                               hebbian_case, dhp_softmax_case)  # fmt: skip


def measure_case(make, device, provider, args) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fallback warning of families without GPU kernels
        with hebbkern.use_backend("reference" if provider == "eager" else None):
            label, family, run = make(device, args.quick)
            row = {"case": label, "family": family, "provider": provider, "device": str(device)}
            row["first_call_s"] = common.time_call(run, device)
            row.update(common.measure(run, device, min_time=args.min_time,
                                      max_case_time=10 * args.min_time))  # fmt: skip
            if device.type == "cuda":
                row["peak_mb"] = common.cuda_peak_bytes(run, device) / 2**20
    row["backend"] = "reference" if provider == "eager" else _default_backend(family, device)
    return row


def _default_backend(family: str, device) -> str:
    from hebbkern import backends

    if family == "hebbian":
        return "fused" if device.type == "cuda" or hebbkern.extension_available() else "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backends.resolve(None, device, family=family)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_families", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per row")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for make in CASES:
        for provider in PROVIDERS:
            try:
                rows.append(measure_case(make, device, provider, args))
            except Exception as e:  # noqa: BLE001  (record it; go on with the next one)
                rows.append({"case": make.__name__, "provider": provider,
                             "status": f"error: {type(e).__name__}: {e}"})  # fmt: skip
    for r in rows:
        eager = next((e for e in rows if e.get("case") == r.get("case")
                      and e["provider"] == "eager" and "median_ms" in e), None)  # fmt: skip
        if eager and "median_ms" in r:
            r["speedup_vs_eager"] = eager["median_ms"] / r["median_ms"]
    args.out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info(device)
    path = args.out / f"families_{device.type}.json"
    path.write_text(json.dumps({"metadata": {"machine": info}, "rows": rows}, indent=1) + "\n")
    print(common.machine_line(info))
    for r in rows:
        if "median_ms" in r:
            print(f"{r['case']:48} {r['provider']:9} {r['backend']:10} {r['median_ms']:9.3f} ms"
                  f"  x{r.get('speedup_vs_eager', 1.0):.2f} vs eager")  # fmt: skip
        else:
            print(f"{r['case']:48} {r['provider']:9} {r['status']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
