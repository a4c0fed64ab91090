"""Benchmark of ``hebbkern.hebbian_update`` (SPEC.md section 4): time and peak memory of one
Hebbian update of a shared weight.

    python -m benchmarks.hebbian                 # the issue case and two more layers
    python -m benchmarks.hebbian --issue-case    # conv 96 -> 128, 3x3, 32x32, batch 64, oja

Providers (one run, ratios to ``unfold`` measured in it):

- ``unfold``: ``hebbkern.reference.hebbian_update``, the eager reference (the patch matrix);
- ``compile``: ``torch.compile`` of that reference (compiled once per case before timing);
- ``loss``: the loss form through autograd, ``-grad(hebbian_loss(conv2d(x, w), y, w), w)``; it
  includes the forward convolution that builds the graph (a training loop computes that
  convolution anyway for y, but the loss form needs it with the graph kept);
- ``cpu``: ``hebbkern.hebbian_update(..., backend="cpu")``, the fused op.

The plastic output ``y`` is a binary 1-winner-take-all across channels (the paper's K = 1), except
in the row marked "dense y" (Gaussian y): the fused op's sparse path serves the first, oneDNN's
weight gradient the second.

Peak memory: each provider runs in a fresh subprocess that builds the inputs, calls the provider
once (warm-up), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), calls it again and
reports ``VmHWM - VmRSS before the call``: every byte the call touched, including oneDNN's
scratch space, not only tensors (with glibc's mmap threshold fixed at 64 KB, so that blocks the
warm-up call freed are not already resident).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import hebbkern

from . import common

NAME = "hebbian"
PROVIDERS = ("unfold", "compile", "loss", "cpu")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Case:
    """A linear layer when ``k == 0`` (``c_in`` = D, ``c_out`` = N, ``size`` unused)."""

    name: str
    batch: int
    c_in: int
    c_out: int
    k: int
    size: int
    padding: int
    rule: str = "oja"
    y: str = "wta"  # "wta": one winner per position (the paper's k=1); "dense": Gaussian y

    @property
    def conv(self) -> bool:
        return self.k > 0


ISSUE_CASE = Case("conv 96->128 3x3 32x32 B=64 (issue)", 64, 96, 128, 3, 32, 1)
CASES = [
    ISSUE_CASE,
    Case("conv 96->128 3x3 32x32 B=64, dense y", 64, 96, 128, 3, 32, 1, y="dense"),
    Case("conv 3->100 5x5 32x32 B=64 (paper layer 1)", 64, 3, 100, 5, 32, 2),
    Case("linear 784->512 B=256", 256, 784, 512, 0, 0, 0),
]


def make_inputs(case: Case, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if case.conv:
        w = torch.randn(case.c_out, case.c_in, case.k, case.k, generator=g)
        x = torch.randn(case.batch, case.c_in, case.size, case.size, generator=g)
        u = F.conv2d(x, w, padding=case.padding)
    else:
        w = torch.randn(case.c_out, case.c_in, generator=g)
        x = torch.randn(case.batch, case.c_in, generator=g)
        u = x @ w.t()
    if case.y == "dense":
        return w, x, torch.randn(u.shape, generator=g)
    # A k-WTA plastic output: one binary winner per position, as in the paper's layers (the
    # fused op takes its sparse path: density 1 / C_out).
    y = torch.zeros_like(u).scatter_(1, u.argmax(1, keepdim=True), 1.0)
    return w, x, y


def provider_fn(case: Case, provider: str):
    w, x, y = make_inputs(case)
    conv = {"padding": case.padding} if case.conv else {}
    if provider == "unfold":
        return lambda: hebbkern.reference.hebbian_update(w, x, y, rule=case.rule, **conv)
    if provider == "compile":
        torch._dynamo.reset()
        f = torch.compile(hebbkern.reference.hebbian_update, dynamic=False)
        return lambda: f(w, x, y, rule=case.rule, **conv)
    if provider == "loss":
        wp = w.clone().requires_grad_()

        def loss_form():
            u = F.conv2d(x, wp, **conv) if case.conv else x @ wp.t()
            (g,) = torch.autograd.grad(hebbkern.hebbian_loss(u, y, wp, case.rule), wp)
            return -g

        return loss_form
    if provider == "cpu":
        return lambda: hebbkern.hebbian_update(w, x, y, rule=case.rule, backend="cpu", **conv)
    raise ValueError(f"unknown provider {provider!r}")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_worker(case: Case, provider: str, threads: int) -> dict:
    """Runs in the subprocess: peak resident bytes of one call above the resident bytes before."""
    torch.set_num_threads(threads)
    fn = provider_fn(case, provider)
    fn()
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    out = fn()
    peak = _status_kib("VmHWM")
    del out
    return {"peak_bytes": (peak - before) * 1024}


def peak_bytes(case: Case, provider: str, threads: int) -> int | None:
    cmd = [sys.executable, "-m", "benchmarks.hebbian", "--peak-worker", json.dumps(asdict(case)),
           provider, "--threads", str(threads)]  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    # A fixed mmap threshold: glibc then maps every allocation of 64 KB or more afresh and unmaps
    # it on free, so memory the warm-up call freed is not still resident (and uncounted) when the
    # measured call reuses it (glibc's default raises the threshold up to 32 MB after such frees).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        print(f"peak-memory worker failed for {provider}: {r.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_bytes"]


def check_agreement(case: Case) -> float:
    """Largest relative error of the providers against the reference, on this case."""
    ref = provider_fn(case, "unfold")().double()
    errs = []
    for p in ("loss", "cpu"):
        got = provider_fn(case, p)().double()
        errs.append(((got - ref).norm() / ref.norm()).item())
    return max(errs)


def run(cases, providers, min_time: float, memory: bool, threads: int) -> list[dict]:
    device = torch.device("cpu")
    rows = []
    bar = common.progress(len(cases) * len(providers))
    for case in cases:
        err = check_agreement(case)
        base = None
        for provider in providers:
            bar.set_description(f"{case.name} {provider}")
            fn = provider_fn(case, provider)
            first = common.time_call(fn, device)  # compiles for "compile"
            m = common.measure(fn, device, min_time=min_time, max_case_time=30 * min_time)
            row = {"case": case.name, "rule": case.rule, "provider": provider,
                   "first_call_s": first, **m, "max_rel_err_vs_unfold": err}  # fmt: skip
            if memory:
                row["peak_bytes"] = peak_bytes(case, provider, threads)
            if provider == "unfold":
                base = row
            if base is not None:
                row["speedup_vs_unfold"] = base["median_ms"] / row["median_ms"]
                if memory and row["peak_bytes"] and base["peak_bytes"]:
                    row["peak_vs_unfold"] = row["peak_bytes"] / base["peak_bytes"]
            rows.append(row)
            bar.update()
            del fn
            gc.collect()
    bar.close()
    return rows


COLUMNS = [
    *common.text_columns("case", "provider"),
    ("median ms", "median_ms", ".2f"),
    ("IQR ms", "iqr_ms", ".2f"),
    ("vs unfold", "speedup_vs_unfold", common.ratio),
    ("peak MB", "peak_bytes", lambda v: f"{v / 1e6:.1f}"),
    ("peak / unfold", "peak_vs_unfold", common.ratio),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--issue-case", action="store_true", help="only the issue case")
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=list(PROVIDERS))
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per row")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--tag", help="write benchmarks/results/hebbian_cpu_amd-epyc-2c_<tag>.*")
    p.add_argument(
        "--peak-worker", nargs=2, metavar=("CASE_JSON", "PROVIDER"), help=argparse.SUPPRESS
    )
    a = p.parse_args(argv)
    if a.peak_worker:
        case = Case(**json.loads(a.peak_worker[0]))
        print(json.dumps(peak_worker(case, a.peak_worker[1], a.threads)))
        return 0
    torch.set_num_threads(a.threads)
    providers = ["unfold"] + [q for q in a.providers if q != "unfold"]
    cases = [ISSUE_CASE] if a.issue_case else CASES
    info = common.machine_info(torch.device("cpu"))
    rows = run(cases, providers, a.min_time, not a.no_memory, a.threads)
    table = common.machine_line(info) + "\n\n" + common.format_table(rows, COLUMNS)
    print(table)
    if a.tag:
        common.save_results(RESULTS / f"{NAME}_cpu_amd-epyc-2c_{a.tag}", info, rows, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
