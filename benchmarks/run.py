"""Benchmark runner: eager reference, torch.compile and the hebbkern backends in one process.

    python -m benchmarks                               # default grid on cuda if available, else cpu
    python -m benchmarks --quick                       # one small case per provider (smoke test)
    python -m benchmarks --N 128 --T 50 --B 32         # the issue case (or --issue-case)
    python benchmarks/run.py --device cpu --modes fwd --providers eager cpu

Prints a progress bar (stderr), then a machine line and a table (stdout); writes
``<out>/plastic_rnn_<device>[_<tag>].csv/.json`` (rows and metadata, rewritten after every case, so
an interrupted run keeps what it measured) and a PNG of speed-up against N per rule and dtype.

``main(argv, family)`` runs another family with plastic_rnn.py's interface the same way
(``python -m benchmarks population``: benchmarks/population.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`: import as the `benchmarks` package
    _ROOT = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "benchmarks"]
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

from benchmarks import common, plastic_rnn  # noqa: E402
from hebbkern._validation import RULES  # noqa: E402

DTYPES = ("float32", "float64", "bfloat16", "float16")
SPEEDUP_BASES = ("eager", "compile", "compile-ro", "graph")
DEFAULT_OUT = Path(__file__).resolve().parent / "out"


PLASTIC_RNN_DESCRIPTION = (
    "Compare hebbkern.plastic_rnn providers in one run: eager (the reference), compile "
    "(its step under torch.compile), on CUDA compile-ro (mode='reduce-overhead') and "
    "graph (the reference's whole call captured once in a CUDA graph and replayed), and "
    "the hebbkern backends. Speed-ups are reported against eager, compile, compile-ro "
    "and graph."
)


def parse_args(argv=None, family=plastic_rnn) -> argparse.Namespace:
    """The runner's arguments for ``family``, a module with plastic_rnn.py's interface (``NAME``,
    ``MODES``, the three grids, ``all_providers``, ``make_cases``, ``provider_unavailable``,
    ``Bench``, ``nominal_bytes``; optionally ``PROG``, ``DESCRIPTION`` and ``RULES``)."""
    p = argparse.ArgumentParser(
        prog=getattr(family, "PROG", "python -m benchmarks"),
        description=getattr(family, "DESCRIPTION", PLASTIC_RNN_DESCRIPTION),
    )
    default, issue = family.DEFAULT_GRID, family.ISSUE_GRID

    def listed(key):
        return " ".join(map(str, default[key]))

    g = p.add_argument_group("cases (lists; defaults: the default grid, see --quick, --issue-case)")
    rules = getattr(family, "RULES", RULES)
    g.add_argument("--rules", nargs="+", choices=rules, help=f"default: {listed('rules')}")
    g.add_argument("--N", nargs="+", type=int, help=f"neurons (default: {listed('N')})")
    g.add_argument("--T", nargs="+", type=int, help=f"time steps (default: {listed('T')})")
    g.add_argument("--B", nargs="+", type=int, help=f"batch sizes (default: {listed('B')})")
    g.add_argument("--dtype", nargs="+", choices=DTYPES, default=["float32"])
    g.add_argument("--device", help="cpu or cuda[:i] (default: cuda if available, else cpu)")
    g.add_argument("--quick", action="store_true", help="one small case per provider (smoke test)")
    g.add_argument(
        "--issue-case", action="store_true",
        help=", ".join(f"{k}={' '.join(map(str, v))}" for k, v in issue.items()),
    )  # fmt: skip
    p.add_argument(
        "--providers", "--backends", nargs="+", metavar="NAME",
        help=f"subset of: {', '.join(family.all_providers())} (default: all available)",
    )  # fmt: skip
    p.add_argument("--modes", nargs="+", choices=family.MODES, default=list(family.MODES))
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: 2 on CPU)")
    p.add_argument("--min-time", type=float, help="seconds of timing per measurement (default 1)")
    p.add_argument(
        "--max-case-time", type=float, default=10.0,
        help="cap in seconds on the timed calls of one slow measurement (default 10)",
    )  # fmt: skip
    p.add_argument(
        "--time-budget", type=float,
        help="start no new measurement after this many seconds; what was measured is still written",
    )  # fmt: skip
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurements")
    p.add_argument(
        "--cold-compile", action="store_true",
        help="disable the inductor caches, so 'compile s' is a cold compile (default: caches on)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (benchmarks/out)")
    p.add_argument(
        "--tag", help="suffix of the output file names (default: none; 'quick' with --quick)"
    )
    p.add_argument("--format", choices=("csv", "json", "both"), default="both")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)

    grid = family.DEFAULT_GRID
    if args.quick or args.issue_case:
        grid = family.QUICK_GRID if args.quick else family.ISSUE_GRID
    for key, default in grid.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.min_time is None:
        args.min_time = 0.05 if args.quick else 1.0
    if args.tag is None:
        args.tag = "quick" if args.quick else ""
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    known = family.all_providers()
    args.providers = args.providers or known
    unknown = [x for x in args.providers if x not in known]
    if unknown:
        p.error(f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return args


def first_line(e: BaseException) -> str:
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg.splitlines()[0]}" if msg else type(e).__name__


def measure_one(
    case, provider: str, mode: str, args, copy_bw: float | None, family=plastic_rnn
) -> dict:
    """Times one (case, provider, mode) and measures its memory; returns the measured fields."""
    bench = family.Bench(case, provider, mode, seed=args.seed)
    row: dict = {}
    # First call: compiles for `compile` (its compile time = first call - steady call), warms
    # caches and allocators for the others.
    row["first_call_s"] = common.time_call(bench.run, case.device)
    row.update(common.measure(bench.run, case.device, min_time=args.min_time,
                              max_case_time=args.max_case_time))  # fmt: skip
    if provider.startswith("compile"):
        row["compile_s"] = max(0.0, row["first_call_s"] - row["median_ms"] / 1e3)
    if not args.no_memory:
        if mode == "fwd+bwd":
            row["saved_bytes"] = common.saved_bytes(bench.forward)
        if case.device.type == "cuda":
            row["peak_bytes"] = common.cuda_peak_bytes(bench.run, case.device)
    row["load"] = round(os.getloadavg()[0], 2)  # other work on the machine makes timings noisy
    nbytes = family.nominal_bytes(case, mode)
    row["nominal_bytes"] = nbytes
    row["gbps"] = nbytes / (row["median_ms"] * 1e-3) / 1e9
    if copy_bw:
        row["frac_copy_bw"] = row["gbps"] / copy_bw
    del bench
    gc.collect()
    return row


def add_ratios(group: list[dict]) -> None:
    """Speed-ups against the stock-PyTorch peers (eager, compile, and on CUDA compile-ro and
    graph), and saved bytes against eager, within one case+mode."""
    ok = {r["provider"]: r for r in group if r["status"] == "ok"}
    for r in ok.values():
        for base in SPEEDUP_BASES:
            if base in ok:
                r[f"speedup_vs_{base}"] = ok[base]["median_ms"] / r["median_ms"]
        if r.get("saved_bytes") is not None and ok.get("eager", {}).get("saved_bytes"):
            r["saved_vs_eager"] = r["saved_bytes"] / ok["eager"]["saved_bytes"]
        for key, mb in (("saved_bytes", "saved_mb"), ("peak_bytes", "peak_mb")):
            if r.get(key) is not None:
                r[mb] = r[key] / 2**20


def table_columns(rows: list[dict], gpu: bool) -> list[tuple]:
    cols = [("rule", "rule", "")]
    if len({r["dtype"] for r in rows}) > 1:
        cols.append(("dtype", "dtype", ""))
    cols += [
        ("N", "N", "d"), ("T", "T", "d"), ("B", "B", "d"), ("mode", "mode", ""),
        ("provider", "provider", ""), ("median ms", "median_ms", common.ratio),
        ("iqr ms", "iqr_ms", common.ratio),
        ("vs eager", "speedup_vs_eager", common.ratio),
        ("vs compile", "speedup_vs_compile", common.ratio),
        ("saved MB", "saved_mb", ".1f"), ("saved/eager", "saved_vs_eager", common.ratio),
        ("compile s", "compile_s", ".1f"),
    ]  # fmt: skip
    if gpu:
        cols += [
            ("vs compile-ro", "speedup_vs_compile-ro", common.ratio),
            ("vs graph", "speedup_vs_graph", common.ratio),
            ("peak MB", "peak_mb", ".1f"), ("GB/s", "gbps", ".0f"),
            ("of copy BW", "frac_copy_bw", ".2f"),
        ]  # fmt: skip
    return cols


def main(argv=None, family=plastic_rnn) -> int:
    """Runs ``family``'s grid (plastic_rnn's by default; see :func:`parse_args`)."""
    args = parse_args(argv, family)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 2)
    if args.cold_compile:
        from torch._inductor import config as inductor_config

        inductor_config.force_disable_caches = True
    dtypes = [getattr(torch, d) for d in args.dtype]
    cases = family.make_cases(args.rules, args.N, args.T, args.B, dtypes, device)

    info = common.machine_info(device)
    copy_bw = None
    if device.type == "cuda":
        copy_bw = info["copy_bandwidth_gbps"] = common.copy_bandwidth_gbps(device)
    metadata = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                "complete": False}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"{family.NAME}_{device.type}{'_' + args.tag if args.tag else ''}"

    def write_files() -> list[Path]:
        written = []
        if args.format in ("csv", "both"):
            common.write_csv(base.with_suffix(".csv"), rows)
            written.append(base.with_suffix(".csv"))
        if args.format in ("json", "both"):
            common.write_json(base.with_suffix(".json"), metadata, rows)
            written.append(base.with_suffix(".json"))
        return written

    rows: list[dict] = []
    start = time.perf_counter()
    total = len(cases) * len(args.modes) * len(args.providers)
    bar = common.progress(total)
    for case in cases:
        for mode in args.modes:
            group = []
            for provider in args.providers:
                bar.set_description(f"{case.label()} {mode} {provider}")
                row = {"op": family.NAME, "rule": case.rule, "dtype": case.dtype_name,
                       "device": str(device), "N": case.N, "T": case.T, "B": case.B,
                       "mode": mode, "provider": provider}  # fmt: skip
                reason = family.provider_unavailable(provider, device, case.dtype)
                if reason:
                    row["status"] = f"skipped: {reason}"
                elif args.time_budget and time.perf_counter() - start > args.time_budget:
                    row["status"] = "skipped: time budget"
                else:
                    try:
                        row.update(measure_one(case, provider, mode, args, copy_bw, family))
                        row["status"] = "ok"
                    except Exception as e:  # noqa: BLE001  (record it; go on with the next one)
                        row["status"] = f"error: {first_line(e)}"
                        where = f"{case.label()} {mode} {provider}"
                        bar.write(f"{where}: {traceback.format_exc()}")
                group.append(row)
                bar.update()
            add_ratios(group)
            rows.extend(group)
            metadata["elapsed_s"] = round(time.perf_counter() - start, 1)
            write_files()
    bar.close()

    elapsed = time.perf_counter() - start
    info["loadavg_end"] = round(os.getloadavg()[0], 2)
    metadata.update(complete=True, elapsed_s=round(elapsed, 1))
    written = write_files()
    if not args.no_plot:
        for rule in args.rules:
            for dtype in dtypes:
                name = str(dtype).removeprefix("torch.")
                sel = [r for r in rows if r["rule"] == rule and r["dtype"] == name]
                title = (f"hebbkern.{family.NAME}, {rule}, {name}\n{info.get('gpu', info['cpu'])}, "
                         f"{info['threads']} threads, torch {info['torch']}")  # fmt: skip
                try:
                    png = common.plot_speedup(sel, Path(f"{base}_{rule}_{name}.png"), title)
                except ImportError as e:  # matplotlib is optional (the GPU machines may lack it)
                    print(f"note: no plot: {e}", file=sys.stderr)
                    png = None
                if png:
                    written.append(png)

    rank = {p: i for i, p in enumerate(args.providers)} | {d: i for i, d in enumerate(args.dtype)}
    shown = sorted(
        (r for r in rows if r["status"] == "ok"),
        key=lambda r: (
            rank[r["dtype"]],
            r["rule"],
            r["N"],
            r["T"],
            r["B"],
            r["mode"],
            rank[r["provider"]],
        ),  # fmt: skip
    )
    print(common.machine_line(info))
    print(common.format_table(shown, table_columns(rows, device.type == "cuda")))
    notes = dict.fromkeys(
        f"{r['provider']} ({r['dtype']}): {r['status']}" for r in rows if r["status"] != "ok"
    )
    for note in notes:
        print(f"note: {note}")
    print(
        f"total {elapsed:.1f} s; load average {info['loadavg_start']} at start, "
        f"{info['loadavg_end']} at end"
    )
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
