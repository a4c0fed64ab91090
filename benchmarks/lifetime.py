"""Benchmark of ``hebbkern.lifetime``: one generation's lifetimes, eager reference vs fused kernel.

    python -m benchmarks lifetime                        # population 500, N 70, 400 x 50 steps
    python -m benchmarks lifetime --population 64 --trials 40 --ref-trials 4
    python -m benchmarks lifetime --device cuda          # the CUDA kernel (benchmarks/gpu_check.sh)

The reference (batched eager torch, ``hebbkern.reference.lifetime``) and the fused CPU kernel run
the same population in the same process. The speed-up is measured at equal work: both run the
first ``--ref-trials`` trials of the lifetime (plasticity and perturbations on from the first trial,
so every phase is in the timed part). The kernel is also timed over the whole lifetime
(``--trials``), which gives generations per hour; the reference's full-lifetime time is its
measured per-trial time times ``--trials`` (labelled "extrapolated"), since one eager generation at
full size takes many minutes on a shared CPU. With ``--device cuda`` the same rows compare the
reference on the GPU with the CUDA kernel (times taken after a device synchronise). Prints a table;
writes CSV and JSON under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    _ROOT = Path(__file__).resolve().parent.parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "benchmarks"]
    sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402

import hebbkern  # noqa: E402
from benchmarks import common  # noqa: E402
from hebbkern import _extension  # noqa: E402
from hebbkern.lifetime_config import TRAINING_TASKS, LifetimeConfig, make_trials  # noqa: E402
from hebbkern.reference.philox import perturbation_uniforms  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def population(B: int, N: int, n_trials: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(B, N, N, generator=g) * 1.5 / N**0.5).to(dtype)
    pi = torch.full((B, N, N), 0.5, dtype=dtype) + 0.03 * torch.randn(B, N, N, generator=g).to(
        dtype
    )
    tasks = [TRAINING_TASKS[b % len(TRAINING_TASKS)] for b in range(B)]
    stimuli, targets = make_trials(tasks, n_trials, g, dtype=dtype)
    keys = torch.arange(B) % max(1, B // 2)
    return w, pi, stimuli, targets, keys


def timed(fn, repeats: int, device: torch.device | None = None) -> float:
    """Median wall time of ``repeats`` calls (one call is seconds long: no inner loop needed);
    on a GPU the clock stops after the device has finished."""
    on_gpu = device is not None and device.type == "cuda"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks lifetime", description=__doc__.split("\n")[0]
    )
    p.add_argument("--population", type=int, default=500)
    p.add_argument("--neurons", type=int, default=70)
    p.add_argument("--trials", type=int, default=400, help="lifetime of the kernel's full run")
    p.add_argument("--ref-trials", type=int, default=4, help="trials of the equal-work comparison")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu (the C++ kernel) or cuda (the CUDA kernel)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--tag", default="")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    device = torch.device(a.device)
    kernel = "cuda" if device.type == "cuda" else "cpu"  # the fused backend on that device
    if kernel == "cpu" and not _extension.available():
        # e.g. `python -m benchmarks` from a source tree whose extension is not built in place
        print("the compiled extension is not importable here: the kernel rows run the reference")
        kernel = "reference"
    info = common.machine_info(device)
    print(common.machine_line(info), flush=True)

    short = LifetimeConfig(plastic_after_trial=0, quiet_trials=0, loss_trials=1)
    w, pi, stimuli, targets, keys = (
        t.to(device) for t in population(a.population, a.neurons, a.trials, dtype)
    )
    s_stim, s_tgt = stimuli[:, : a.ref_trials].contiguous(), targets[:, : a.ref_trials].contiguous()

    def run(backend, cfg, st, tg):
        return hebbkern.lifetime(w, pi, st, tg, seed=1, noise_key=keys, config=cfg, backend=backend)

    rows = []
    bar = common.progress(4)
    bar.set_description("reference, short")
    t_ref = timed(lambda: run("reference", short, s_stim, s_tgt), a.repeats, device)
    bar.update()
    # The reference draws its perturbations with Philox in torch integer ops (the same bits as the
    # kernels), about 150 small ops a step; timed alone so the table can show the rest of its cost.
    bar.set_description("reference's Philox draws alone")
    n_steps = a.ref_trials * short.steps

    def draws():
        for k in range(n_steps):
            if k % short.steps >= short.noise_from_step:
                perturbation_uniforms(1, keys, k, a.neurons)

    t_rng = timed(draws, a.repeats, device)
    bar.update()
    bar.set_description(f"{kernel} kernel, short")
    run(kernel, short, s_stim, s_tgt)  # first call: CUDA context and module load, not timed
    t_cpu = timed(lambda: run(kernel, short, s_stim, s_tgt), max(a.repeats, 3), device)
    bar.update()
    bar.set_description(f"{kernel} kernel, whole lifetime")
    n = a.trials  # the public schedule; its trial counts capped for short smoke-test lifetimes
    full = LifetimeConfig(
        loss_trials=min(100, n), quiet_trials=min(20, n), plastic_after_trial=min(30, n)
    )
    t_full = timed(lambda: run(kernel, full, stimuli, targets), a.repeats, device)
    bar.update()
    bar.close()
    scale = a.trials / a.ref_trials
    base = dict(population=a.population, neurons=a.neurons, dtype=a.dtype, threads=a.threads,
                device=device.type)  # fmt: skip
    rows.append(dict(base, provider="reference", trials=a.ref_trials, seconds=t_ref, speedup=1.0))
    rows.append(dict(base, provider="reference less its RNG time", trials=a.ref_trials,
                     seconds=t_ref - t_rng, speedup=t_ref / (t_ref - t_rng)))  # fmt: skip
    rows.append(dict(base, provider=f"{kernel} vs reference less RNG", trials=a.ref_trials,
                     seconds=t_cpu, speedup=(t_ref - t_rng) / t_cpu))  # fmt: skip
    rows.append(
        dict(base, provider=kernel, trials=a.ref_trials, seconds=t_cpu, speedup=t_ref / t_cpu)
    )
    t_ref_full = t_ref * scale
    rows.append(dict(base, provider="reference (extrapolated)", trials=a.trials,
                     seconds=t_ref_full, gen_per_hour=3600 / t_ref_full))  # fmt: skip
    rows.append(dict(base, provider=kernel, trials=a.trials, seconds=t_full,
                     gen_per_hour=3600 / t_full, speedup=t_ref_full / t_full))  # fmt: skip
    cols = [
        *common.text_columns("provider"),
        ("B", "population", "d"), ("N", "neurons", "d"), ("trials", "trials", "d"),
        *common.text_columns("dtype"),
        ("seconds", "seconds", ".3f"), ("gen/hour", "gen_per_hour", ".1f"),
        ("speed-up", "speedup", common.ratio),
    ]  # fmt: skip
    print(common.format_table(rows, cols))
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"lifetime_{device.type}{'_' + a.tag if a.tag else ''}"
    common.write_csv(stem.with_suffix(".csv"), rows)
    common.write_json(stem.with_suffix(".json"), info, rows)
    print(f"wrote {stem}.csv, {stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
