"""Benchmark of ``hebbkern.optim.FOP`` on a ResNet-18-sized model (SPEC.md section 5).

    python -m benchmarks.fop                     # CPU, 2 threads: step rows and iteration rows
    python -m benchmarks.fop --quick             # a small model, short timings (smoke test)
    python -m benchmarks.fop --device cuda       # the same rows on a GPU, plus the fused step

Two kinds of rows, all measured in one run:

- ``step``: one optimiser step of all 62 parameters of ResNet-18 (11.7M), gradients fixed; the
  providers are timed in alternating rounds (``--step-rounds``, 5) like the iteration rows.
  Providers: ``torch`` (``torch.optim.SGD`` / ``Adam`` with ``foreach=True``: the base optimiser),
  ``torch-fused`` (the same with ``fused=True``; CUDA only), ``reference`` (the eager FOP oracle,
  one parameter at a time), ``compile`` (``torch.compile`` of the reference step of each parameter,
  compiled once per parameter shape before timing), ``foreach`` (the device-generic multi-tensor
  path), ``cpu`` (the fused C++ kernel, one call; CPU only) and ``triton`` (the fused multi-tensor
  GPU step; CUDA only), ``triton-graph`` (the same step captured once in a CUDA graph and
  replayed: its time without Python and launch overhead, as in a ``torch.compile``'d training step
  with CUDA graphs).
- ``iter``: one training iteration (zero_grad, forward, cross-entropy, backward, step) with
  ``torch.optim.SGD`` (foreach, and fused on CUDA), FOP-SGD fused (``cpu`` on the CPU, ``triton``
  on CUDA), and FOP-SGD reference; they are timed in alternating rounds (A B C A B C ...) so that
  load from other work hits all of them alike, and the ratio is of the medians of all rounds.

The model is ResNet-18's ImageNet layout (torchvision is not a dependency; the layer shapes are
the same: 7x7 stem, four stages of two basic blocks, 1x1 downsampling, 512 -> 1000 linear).
Ratios are to ``torch`` (overhead) and to ``reference`` (speed-up) in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from benchmarks import common
from hebbkern.optim import FOP
from hebbkern.reference import fop as ref

NAME = "fop"
DEFAULT_OUT = Path(__file__).resolve().parent / "out"


# ------------------------------------------------------------------------------------------- model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


def resnet18(num_classes: int = 1000, width: int = 64) -> nn.Module:
    """ResNet-18 (He et al.), ImageNet layout; ``width`` 64: torchvision's 11,689,512 parameters."""
    w = width
    layers: list[nn.Module] = [
        nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
    ]  # fmt: skip
    cin = w
    for i, cout in enumerate((w, 2 * w, 4 * w, 8 * w)):
        stride = 1 if i == 0 else 2
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------- providers


def make_optimizer(provider: str, params, base: str):
    """The optimiser of a step/iteration row. lr and hyper_lr are small so that thousands of
    timed steps on fixed gradients keep every value finite and normal."""
    params = list(params)
    if provider in ("torch", "torch-fused"):
        how = {"fused": True} if provider == "torch-fused" else {"foreach": True}
        if base == "adam":
            return torch.optim.Adam(params, lr=1e-4, **how)
        return torch.optim.SGD(params, lr=1e-4, momentum=0.9, **how)
    backend = {"compile": "reference", "triton-graph": "triton"}.get(provider, provider)
    momentum = 0.9 if base == "sgd" else 0.0
    opt = FOP(params, lr=1e-4, hyper_lr=1e-6, base=base, momentum=momentum, backend=backend)
    if provider == "compile":
        _use_compiled_reference(opt)
    if provider == "triton-graph":
        return GraphStep(opt)
    return opt


class GraphStep:
    """An optimiser's step captured once in a CUDA graph (after a warm-up step on a side
    stream); ``step()`` replays it. The gradients stay where they are (fixed in these rows)."""

    def __init__(self, opt) -> None:
        self.opt = opt
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            opt.step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            opt.step()

    def step(self) -> None:
        self.graph.replay()


def _use_compiled_reference(opt: FOP) -> None:
    """Routes the optimiser's reference step through ``torch.compile(fop_param_step)``."""
    # One compiled graph per parameter shape (and first/later step): ResNet-18 needs ~40.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, 4096
    )
    compiled = torch.compile(ref.fop_param_step, dynamic=False)

    @torch.no_grad()
    def step(params, grads, states, **kw):
        for p, g, s in zip(params, grads, states, strict=True):
            compiled(p, g, s, ref.FOPHyper(**kw))

    opt._reference_step = step


def provider_available(provider: str, device: torch.device) -> str | None:
    import hebbkern

    if provider == "cpu" and (device.type != "cpu" or not hebbkern.extension_available()):
        return "needs CPU tensors and the compiled extension"
    if provider == "torch-fused" and device.type != "cuda":
        return "CUDA only here (the CPU rows compare with foreach)"
    fused = provider in ("triton", "triton-graph")
    if fused and (device.type != "cuda" or not hebbkern.backends.triton_available()):
        return "needs CUDA tensors and triton"
    return None


def set_grads(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = (1e-2 * torch.randn(p.shape, generator=g)).to(p.device)


# ----------------------------------------------------------------------------------------- running


def step_rows(model, device, base, providers, min_time, max_case_time, bar, rounds=1) -> list[dict]:
    if rounds > 1:
        return alternating_step_rows(model, device, base, providers, min_time, rounds, bar)
    rows = []
    for provider in providers:
        bar.set_description(f"step {base} {provider}")
        why = provider_available(provider, device)
        if why:
            bar.write(f"skip {provider}: {why}")
            bar.update()
            continue
        opt = make_optimizer(provider, model.parameters(), base)
        first = common.time_call(opt.step, device)  # state allocation (and compilation)
        m = common.measure(opt.step, device, min_time=min_time, max_case_time=max_case_time)
        rows.append(dict(kind="step", base=base, provider=provider, first_call_s=first, **m))
        del opt
        bar.update()
    _ratios(rows)
    return rows


def alternating_step_rows(model, device, base, providers, min_time, rounds, bar) -> list[dict]:
    """Step rows timed in alternating rounds (A B C A B C ...): in each round every provider runs
    for about ``min_time / rounds`` seconds, call by call, so that load from other work on a
    shared machine hits all of them alike; each row is the median of all its calls."""
    opts, first = {}, {}
    for provider in providers:
        why = provider_available(provider, device)
        if why:
            bar.write(f"skip {provider}: {why}")
            continue
        bar.set_description(f"step {base} {provider} (first call)")
        opts[provider] = make_optimizer(provider, model.parameters(), base)
        first[provider] = common.time_call(opts[provider].step, device)
    calls = {}
    for provider, opt in opts.items():  # warm-up, and calls per round from the warm-up time
        warm = [common.time_call(opt.step, device) for _ in range(3)]
        calls[provider] = max(1, round(min_time / rounds / statistics.median(warm)))
    times: dict[str, list[float]] = {p: [] for p in opts}
    for r in range(rounds):
        for provider, opt in opts.items():
            bar.set_description(f"step {base} round {r + 1}/{rounds} {provider}")
            times[provider] += [common.time_call(opt.step, device) for _ in range(calls[provider])]
    for _ in providers:
        bar.update()
    rows = []
    for provider, ts in times.items():
        rows.append(
            dict(kind="step", base=base, provider=provider, first_call_s=first[provider],
                 median_ms=statistics.median(ts) * 1e3, iqr_ms=common._iqr(ts) * 1e3,
                 runs=len(ts), method=f"alternating rounds ({rounds})")
        )  # fmt: skip
    _ratios(rows)
    return rows


def iteration_rows(model, x, y, device, rounds, calls, bar) -> list[dict]:
    providers = ["torch", "torch-fused", "cpu", "triton", "reference"]
    providers = [p for p in providers if provider_available(p, device) is None]
    opts = {p: make_optimizer(p, model.parameters(), "sgd") for p in providers}
    loss_fn = nn.CrossEntropyLoss()

    def iteration(opt):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for p in providers:  # warm-up: allocations, optimiser state
        iteration(opts[p])
        iteration(opts[p])
    times: dict[str, list[float]] = {p: [] for p in providers}
    for r in range(rounds):
        for p in providers:
            bar.set_description(f"iter sgd round {r + 1}/{rounds} {p}")
            opt = opts[p]
            times[p] += [common.time_call(lambda: iteration(opt), device) for _ in range(calls)]  # noqa: B023
        bar.update()
    rows = []
    for p in providers:
        ts = times[p]
        rows.append(
            dict(kind="iter", base="sgd", provider=p, median_ms=statistics.median(ts) * 1e3,
                 iqr_ms=common._iqr(ts) * 1e3, runs=len(ts), method="alternating rounds")
        )  # fmt: skip
    _ratios(rows)
    return rows


def _ratios(rows: list[dict]) -> None:
    by = {r["provider"]: r["median_ms"] for r in rows}
    for r in rows:
        if "torch" in by:
            r["vs_torch"] = r["median_ms"] / by["torch"]
        if "torch-fused" in by:
            r["vs_torch_fused"] = r["median_ms"] / by["torch-fused"]
        if "reference" in by:
            r["speedup_vs_reference"] = by["reference"] / r["median_ms"]


COLUMNS = [
    ("kind", "kind", ""), ("base", "base", ""), ("provider", "provider", ""),
    ("median ms", "median_ms", ".2f"), ("iqr ms", "iqr_ms", ".2f"), ("runs", "runs", "d"),
    ("time / torch", "vs_torch", common.ratio), ("time / torch fused", "vs_torch_fused",
                                                 common.ratio),
    ("speed-up vs reference", "speedup_vs_reference", common.ratio),
]  # fmt: skip


PROVIDERS = ["torch", "torch-fused", "reference", "compile", "foreach", "cpu", "triton",
             "triton-graph"]  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fop", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (2)")
    p.add_argument("--batch", type=int, default=8, help="images per iteration (8)")
    p.add_argument("--image", type=int, default=224, help="image side (224)")
    p.add_argument("--bases", nargs="+", default=["sgd", "adam"], choices=["sgd", "adam"])
    p.add_argument("--providers", nargs="+", default=PROVIDERS)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of iteration timing")
    p.add_argument("--step-rounds", type=int, default=5,
                   help="alternating rounds of step timing (1: one block each)")  # fmt: skip
    p.add_argument("--calls", type=int, default=3, help="iterations per provider and round")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per step row")
    p.add_argument("--max-case-time", type=float, default=10.0)
    p.add_argument("--no-iter", action="store_true", help="step rows only")
    p.add_argument("--quick", action="store_true", help="width 16, 32x32 images, short timings")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tag", default=None, help="suffix of the output files")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    width, image = (16, 32) if args.quick else (64, args.image)
    if args.quick:
        args.min_time, args.rounds, args.calls = 0.2, 2, 1
    torch.manual_seed(0)
    model = resnet18(width=width).to(device)
    nparams = sum(p.numel() for p in model.parameters())
    info = common.machine_info(device)
    info.update(model=f"resnet18 width {width}", params=nparams, batch=args.batch, image=image)
    providers = args.providers
    total = len(args.bases) * len(providers) + (0 if args.no_iter else args.rounds)
    bar = common.progress(total)
    rows = []
    set_grads(model)
    for base in args.bases:
        rows += step_rows(model, device, base, providers, args.min_time, args.max_case_time, bar,
                          rounds=args.step_rounds)  # fmt: skip
    if not args.no_iter:
        x = torch.randn(args.batch, 3, image, image, device=device)
        y = torch.randint(0, 1000, (args.batch,), device=device)
        rows += iteration_rows(model, x, y, device, args.rounds, args.calls, bar)
    bar.close()
    info["loadavg_end"] = round(__import__("os").getloadavg()[0], 2)
    header = (
        f"{common.machine_line(info)}\nmodel: ResNet-18 layout, width {width}, {nparams:,} "
        f"parameters; iteration: batch {args.batch}, {image}x{image} images, 1000 classes"
    )
    table = common.format_table(rows, COLUMNS)
    print(header)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{NAME}_{device.type}" + (f"_{args.tag}" if args.tag else "")
    common.write_json(args.out / f"{stem}.json", info, rows)
    (args.out / f"{stem}.txt").write_text(header + "\n" + table + "\n")
    print(f"wrote {args.out / stem}.json/.txt", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
