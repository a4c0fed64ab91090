"""Helpers shared by the benchmarks: timing, memory, machine description, table and output files."""

from __future__ import annotations

import csv
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# ---------------------------------------------------------------------------------------- progress


class _PlainProgress:
    """Stand-in for tqdm where it is not installed: one line per step on stderr."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.desc = total, 0, ""

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self) -> None:
        self.n += 1
        print(f"[{self.n}/{self.total}] {self.desc}", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _TqdmProgress:
    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, file=sys.stderr, unit="run", dynamic_ncols=True)

    def set_description(self, desc: str) -> None:
        self.bar.set_description(desc)

    def update(self) -> None:
        self.bar.update()

    def write(self, msg: str) -> None:
        self._tqdm.write(msg, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def progress(total: int):
    """A progress bar on stderr (tqdm when installed, else plain lines) with ``set_description``,
    ``update``, ``write`` and ``close``."""
    try:
        return _TqdmProgress(total)
    except ImportError:
        return _PlainProgress(total)


# ------------------------------------------------------------------------------------------ timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device) -> float:
    """Seconds of one call of ``fn``, synchronised on GPU."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure(fn, device: torch.device, *, min_time: float, max_case_time: float) -> dict:
    """Median time of ``fn`` (called once already by the caller) in milliseconds.

    Warm-up: more calls until ``min_time / 2`` has passed (at most 10, at least 1; allocators and
    caches settle over the first few calls). CPU: ``torch.utils.benchmark.Timer.blocked_autorange
    (min_run_time=min_time)`` at the current ``torch.get_num_threads()``. Calls longer than
    ``min_time / 10`` are timed one by one instead: at least 3 calls, more while they fit in
    ``min_time``, never more than fit in ``max_case_time`` (so a call of several seconds is timed
    3 times, or fewer when ``max_case_time`` is short). GPU: ``triton.testing.do_bench`` median
    when triton imports (it warms up itself), else CUDA events.
    """
    if device.type == "cuda":
        return _measure_cuda(fn, min_time)
    spent, calls = 0.0, 0
    while calls < 1 or (calls < 10 and spent < min_time / 2):
        last = time_call(fn, device)
        spent, calls = spent + last, calls + 1
    if last * 10 <= min_time:
        from torch.utils.benchmark import Timer

        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        m = timer.blocked_autorange(min_run_time=min_time)
        return {
            "median_ms": m.median * 1e3,
            "iqr_ms": m.iqr * 1e3,
            "runs": m.number_per_run * len(m.raw_times),
            "method": "blocked_autorange",
        }
    reps = min(max(3, math.ceil(min_time / last)), max(1, int(max_case_time // last)))
    times = [time_call(fn, device) for _ in range(reps)]
    return {
        "median_ms": statistics.median(times) * 1e3,
        "iqr_ms": _iqr(times) * 1e3,
        "runs": len(times),
        "method": "single calls",
    }


def _iqr(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[2] - q[0]


def _measure_cuda(fn, min_time: float) -> dict:
    try:
        from triton.testing import do_bench
    except ImportError:
        do_bench = None
    if do_bench is not None:
        ms = do_bench(fn, warmup=25, rep=max(1, int(min_time * 1e3)), return_mode="median")
        return {"median_ms": float(ms), "iqr_ms": None, "runs": None, "method": "do_bench"}
    for _ in range(3):
        fn()
    estimate = time_call(fn, torch.device("cuda"))
    n = int(min(1000, max(5, min_time / max(estimate, 1e-6))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for s, e in zip(starts, ends, strict=True):
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]
    return {
        "median_ms": statistics.median(times),
        "iqr_ms": _iqr(times),
        "runs": n,
        "method": "cuda events",
    }


# ------------------------------------------------------------------------------------------ memory


def saved_bytes(forward) -> int:
    """Bytes of the tensors autograd saves during ``forward()``: the storages packed by
    ``saved_tensors_hooks``, each storage counted once (views of one storage count once)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        key = (str(t.device), s.data_ptr())
        seen[key] = max(seen.get(key, 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    total = sum(seen.values())  # counted while `out` keeps the graph (and its storages) alive
    del out
    return total


def cuda_peak_bytes(fn, device: torch.device) -> int:
    """Peak of ``torch.cuda.max_memory_allocated`` during ``fn()`` above the memory allocated
    before it."""
    gc.collect()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak


def copy_bandwidth_gbps(device: torch.device, nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Copy bandwidth of the card in GB/s: ``y.copy_(x)`` of ``nbytes``, timed with CUDA events,
    counting the bytes read and written (2 * nbytes), median of ``reps`` copies."""
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y.copy_(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    del x, y
    return 2 * nbytes / (statistics.median(times) * 1e-3) / 1e9


# ----------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision(root: Path) -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if dirty else "")) or None


def machine_info(device: torch.device) -> dict:
    import hebbkern

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "loadavg_start": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "hebbkern": hebbkern.__version__,
        "hebbkern_extension": hebbkern.extension_available(),
        "git": git_revision(Path(__file__).resolve().parent.parent),
        "device": str(device),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(
            gpu=p.name,
            gpu_capability=f"sm_{p.major}{p.minor}",
            gpu_memory_gb=round(p.total_memory / 1e9, 1),
            cuda=torch.version.cuda,
        )
    return info


BUSY_LOAD = 0.5  # a load average above this before the run means other work shares the CPU


def machine_line(info: dict) -> str:
    s = (
        f"machine: {info['cpu']} ({info['cores']} cores), {info['threads']} threads, "
        f"torch {info['torch']}, python {info['python']}, hebbkern {info['hebbkern']}"
        f"{' (git ' + info['git'] + ')' if info.get('git') else ''}, load {info['loadavg_start']}"
    )
    if "gpu" in info:
        s += (
            f"\ngpu: {info['gpu']} ({info['gpu_capability']}, {info['gpu_memory_gb']} GB), "
            f"CUDA {info['cuda']}"
        )
        if info.get("triton"):
            s += f", triton {info['triton']}"
        if info.get("copy_bandwidth_gbps"):
            s += f", copy bandwidth {info['copy_bandwidth_gbps']:.0f} GB/s"
    elif info["loadavg_start"] > BUSY_LOAD:
        s += "\nwarning: the CPU was busy with other work when the run started; timings are noisy"
    return s


# ---------------------------------------------------------------------------------- table, files


def ratio(v: float) -> str:
    """A ratio with about three significant digits, without exponents: 1234, 12.3, 1.23, 0.0123."""
    if v == 0 or not math.isfinite(v):
        return str(v)
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{digits}f}"


def text_columns(*keys: str) -> list[tuple[str, str, str]]:
    """``format_table`` columns of text, each headed by its key."""
    return [(k, k, "") for k in keys]


def format_table(rows: list[dict], columns: list[tuple[str, str, object]]) -> str:
    """Fixed-width text table; ``columns`` are ``(header, key, format)`` with ``format`` a format
    spec or a function for numbers (``""``: text, left-aligned). Missing values print as ``-``."""

    def cell(row, key, fmt):
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if callable(fmt):
            return fmt(v)
        return format(v, fmt) if fmt else str(v)

    body = [[cell(r, k, f) for _, k, f in columns] for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, (h, _, _) in enumerate(columns)]
    numeric = [bool(f) for _, _, f in columns]

    def line(cells):
        padded = zip(cells, widths, numeric, strict=True)
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in padded).rstrip()

    header = line([h for h, _, _ in columns])
    return "\n".join([header, "-" * len(header)] + [line(b) for b in body])


def write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_json(path: Path, metadata: dict, rows: list[dict]) -> None:
    path.write_text(json.dumps({"metadata": metadata, "rows": rows}, indent=1, default=str) + "\n")


def save_results(stem: Path, metadata: dict, rows: list[dict], text: str) -> None:
    """``stem``.json (metadata and rows) and ``stem``.txt (the printed table), in a new folder
    if needed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), metadata, rows)
    stem.with_suffix(".txt").write_text(text + "\n")


def plot_speedup(rows: list[dict], path: Path, title: str) -> Path | None:
    """Speed-up against eager versus N: one subplot per (mode, T, B), one line per provider."""
    rows = [r for r in rows if r.get("speedup_vs_eager") is not None and r["provider"] != "eager"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    modes = list(dict.fromkeys(r["mode"] for r in rows))
    sizes = list(dict.fromkeys((r["T"], r["B"]) for r in rows))
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    Ns = sorted({r["N"] for r in rows})
    fig, axes = plt.subplots(
        len(modes), len(sizes), figsize=(max(5.0, 3.2 * len(sizes)), 2.8 * len(modes) + 1.2),
        squeeze=False, sharex=True,
    )  # fmt: skip
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for i, mode in enumerate(modes):
        for j, (T, B) in enumerate(sizes):
            ax = axes[i][j]
            for k, provider in enumerate(providers):
                pts = sorted(
                    (r["N"], r["speedup_vs_eager"])
                    for r in rows
                    if (r["mode"], r["T"], r["B"], r["provider"]) == (mode, T, B, provider)
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", color=f"C{k}", label=provider)
            ax.axhline(1.0, color="gray", lw=0.8, ls="--")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(Ns)
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{mode}  T={T}  B={B}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel("speed-up vs eager")
            if i == len(modes) - 1:
                ax.set_xlabel("N")
    legend = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(
        list(legend.values()), list(legend), loc="lower center", ncol=len(legend), fontsize=8
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
