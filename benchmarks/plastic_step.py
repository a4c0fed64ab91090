"""Benchmark of ``hebbkern.plastic_step`` chained over T steps (an agent stepped once per
environment step), against the eager reference step and torch.compile of it.

    python -m benchmarks.plastic_step [--quick] [--tag run1] [--busy-core] [--issue20]

The issue-5 case: rule neuromod with fan-out, T = 50, B = 32, N = 128, float32, 2 threads; the
backward runs through the whole chain (full BPTT over the 50 steps).

With ``--device cuda``: the GPU agent loop of issue 14 (benchmarks/agent_loop.py), against the
eager reference, torch.compile and the eager loop captured in a CUDA graph.

The issue-20 rows, against the papers' own step written as eager torch (provider ``eager`` of
these cases is that code, not hebbkern.reference): the Backpropamine maze agent loop (B = 30,
N = 100, T = 200, rule neuromod, clip 2, weights and trace stored [post, pre] as the batched maze
code does; hebbkern with ``layout="post_pre"`` and, for comparison, with the same math in
``"pre_post"``) and the differentiable-plasticity pattern-completion loop (B = 1, N = 1001,
T = 106, decaying Hebb with a learned eta). ``--busy-core`` adds the maze loop's fused
forward+backward with 1 thread, 2 threads, and 2 threads while another process spins on one core
(see busy_core_rows).
"""

from __future__ import annotations

import math
import sys

import torch

import hebbkern
from benchmarks.step_common import Case, compiled, leaves, main, provider_fn

NAME = "plastic_step"


def chain_case(T: int, B: int, N: int, per_sample: bool = False) -> Case:
    g = torch.Generator().manual_seed(0)
    b = 1.0 / math.sqrt(N)
    wshape = (B, N, N) if per_sample else (N, N)
    base = {
        "u": torch.randn(T, B, N, generator=g),
        "w": torch.rand(wshape, generator=g) * 1e-3,
        "alpha": torch.rand(wshape, generator=g) * 1e-3,
        "mod_w": (torch.rand(N, generator=g) * 2 - 1) * b,
        "mod_b": (torch.rand((), generator=g) * 2 - 1) * b,
        "fanout_w": torch.rand(N, generator=g) * 2 - 1,
        "fanout_b": torch.rand(N, generator=g) * 2 - 1,
    }

    def build(provider, grad):
        x = leaves(base, grad)
        step = provider_fn("plastic_step", provider)

        def forward():
            h, hebb = x["u"].new_zeros(B, N), x["u"].new_zeros(B, N, N)
            hs = []
            for t in range(T):
                h, hebb, _ = step(
                    x["u"][t], h, hebb, x["w"], x["alpha"], rule="neuromod", mod_w=x["mod_w"],
                    mod_b=x["mod_b"], fanout_w=x["fanout_w"], fanout_b=x["fanout_b"], clip=1.0,
                )  # fmt: skip
                hs.append(h)
            return torch.stack(hs), hebb

        return forward, list(x.values())

    kind = "per-sample w,alpha " if per_sample else ""
    return Case(f"neuromod {kind}T={T} B={B} N={N} f32", build)


def maze_step_paper(u, h, hebb, w, alpha, mod_w, mod_b, clip):
    """Backpropamine's batched maze step as its code writes it: w, alpha and the trace stored
    [post, pre], the product as a batched mat-vec, one neuromodulator per sample."""
    B, N = h.shape
    h_new = torch.tanh(u + torch.matmul(w + alpha * hebb, h.view(B, N, 1)).view(B, N))
    eta = torch.tanh(h_new @ mod_w + mod_b).view(B, 1, 1)
    delta = torch.bmm(h_new.view(B, N, 1), h.view(B, 1, N))  # [post, pre]
    return h_new, torch.clamp(hebb + eta * delta, min=-clip, max=clip)


def pattern_step_paper(u, h, hebb, w, alpha, eta):
    """The pattern-completion step of differentiable plasticity as its code writes it: one
    network (batch 1), the trace unbatched [N, N] [pre, post], decaying Hebb."""
    h_new = torch.tanh(h.mm(w + alpha * hebb) + u)
    hebb = (1 - eta) * hebb + eta * torch.bmm(h.unsqueeze(2), h_new.unsqueeze(1))[0]
    return h_new, hebb


def maze_case(T: int = 200, B: int = 30, N: int = 100, layout: str = "post_pre") -> Case:
    g = torch.Generator().manual_seed(0)
    b = 1.0 / math.sqrt(N)
    base = {
        "u": torch.randn(T, B, N, generator=g),
        "w": torch.rand(N, N, generator=g) * 1e-3,  # as the maze code initialises them
        "alpha": torch.rand(N, N, generator=g) * 1e-3,
        "mod_w": (torch.rand(N, generator=g) * 2 - 1) * b,  # nn.Linear(N, 1)
        "mod_b": (torch.rand((), generator=g) * 2 - 1) * b,
    }
    clip = 2.0  # Backpropamine's clamp

    def build(provider, grad):
        x = {k: v.clone().requires_grad_(grad) for k, v in base.items()}
        if provider in ("eager", "compile"):
            paper = maze_step_paper if provider == "eager" else compiled(maze_step_paper)
            # The paper's [post, pre] tensors; for the pre_post comparison case the same values
            # transposed, so that every provider computes the same numbers.
            wp = x["w"] if layout == "post_pre" else x["w"].t()
            ap = x["alpha"] if layout == "post_pre" else x["alpha"].t()

            def step(u, h, hebb):
                return paper(u, h, hebb, wp, ap, x["mod_w"], x["mod_b"], clip)

        else:

            def step(u, h, hebb):
                st = hebbkern.plastic_step(
                    u, h, hebb, x["w"], x["alpha"], rule="neuromod", mod_w=x["mod_w"],
                    mod_b=x["mod_b"], clip=clip, backend=provider, layout=layout,
                )  # fmt: skip
                return st.h, st.hebb

        def forward():
            h, hebb = x["u"].new_zeros(B, N), x["u"].new_zeros(B, N, N)
            hs = []
            # unbind, not x["u"][t]: indexing a leaf once per step makes autograd add T [T, B, N]
            # tensors (SelectBackward), ATen work that swamped the step at 2 threads (NOTES P3).
            for u_t in x["u"].unbind(0):
                h, hebb = step(u_t, h, hebb)
                hs.append(h)
            return torch.stack(hs), hebb

        return forward, list(x.values())

    return Case(f"maze agent loop {layout} T={T} B={B} N={N} f32", build)


def pattern_case(T: int = 106, N: int = 1001) -> Case:
    g = torch.Generator().manual_seed(0)
    base = {
        "u": torch.randn(T, 1, N, generator=g).sign(),  # +-1 patterns, as the task presents them
        "w": torch.randn(N, N, generator=g) * 0.01,
        "alpha": torch.randn(N, N, generator=g) * 0.01,
        "eta": torch.tensor(0.01),
    }

    def build(provider, grad):
        x = {k: v.clone().requires_grad_(grad) for k, v in base.items()}
        if provider in ("eager", "compile"):
            paper = pattern_step_paper if provider == "eager" else compiled(pattern_step_paper)

            def forward():
                h, hebb = x["u"].new_zeros(1, N), x["u"].new_zeros(N, N)
                hs = []
                for u_t in x["u"].unbind(0):
                    h, hebb = paper(u_t, h, hebb, x["w"], x["alpha"], x["eta"])
                    hs.append(h)
                return torch.stack(hs), hebb

        else:

            def forward():
                h, hebb = x["u"].new_zeros(1, N), x["u"].new_zeros(1, N, N)
                hs = []
                for u_t in x["u"].unbind(0):
                    h, hebb, _ = hebbkern.plastic_step(
                        u_t, h, hebb, x["w"], x["alpha"], rule="hebb", eta=x["eta"],
                        backend=provider,
                    )  # fmt: skip
                    hs.append(h)
                return torch.stack(hs), hebb[0]

        return forward, list(x.values())

    return Case(f"pattern task loop T={T} B=1 N={N} f32", build)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [chain_case(4, 4, 16), maze_case(4, 3, 16), pattern_case(4, 300)]
    return [
        chain_case(50, 32, 128), chain_case(50, 32, 128, per_sample=True), maze_case(),
        maze_case(layout="pre_post"), pattern_case(),
    ]  # fmt: skip


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def busy_core_rows(quick: bool, min_time: float) -> list[dict]:
    """The maze loop's fused forward+backward (hebbkern ``cpu``, ``post_pre``) with 1 thread, with 2
    threads, and with 2 threads while another process spins on the last core (the issue's "other
    core busy"; on a shared machine the cores are busier than that anyway: see the load). Target:
    2 threads with the busy core no slower than 1 thread."""
    import multiprocessing as mp
    import os

    from benchmarks import common
    from benchmarks.step_common import runner

    case = maze_case(4, 3, 16) if quick else maze_case()
    forward, leaves = case.build("cpu", True)
    run = runner(forward, leaves, True)
    rows, device = [], torch.device("cpu")
    previous = torch.get_num_threads()
    for threads, busy in ((1, False), (2, False), (2, True), (1, True)):
        torch.set_num_threads(threads)
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        spinner = ctx.Process(target=_spin, args=(stop,), daemon=True) if busy else None
        if spinner:
            spinner.start()
            if hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(spinner.pid, {max(os.sched_getaffinity(0))})
        try:
            run()
            m = common.measure(run, device, min_time=min_time, max_case_time=10 * min_time)
        finally:
            if spinner:
                stop.set()
                spinner.join()
        label = f"{threads} thread{'s' if threads > 1 else ''}" + (", a core busy" if busy else "")
        rows.append({"family": NAME, "case": case.label, "mode": "fwd+bwd", "provider": "cpu",
                     "setting": label, "median_ms": m["median_ms"], "iqr_ms": m["iqr_ms"],
                     "load": round(os.getloadavg()[0], 2)})  # fmt: skip
        print(f"  busy-core {case.label} {label}: {m['median_ms']:.3f} ms", flush=True)
    torch.set_num_threads(previous)
    one = rows[0]["median_ms"]
    for r in rows:
        r["vs_1_thread"] = one / r["median_ms"]
    return rows


if __name__ == "__main__":
    if "--device" in sys.argv:  # the agent loop on a GPU (or, as a smoke test, the CPU)
        from benchmarks.agent_loop import main as agent_main

        raise SystemExit(agent_main())
    busy = "--busy-core" in sys.argv
    only20 = "--issue20" in sys.argv  # the issue-20 rows only
    argv = [a for a in sys.argv[1:] if a not in ("--busy-core", "--issue20")]

    def issue20_cases(quick: bool) -> list[Case]:
        return cases(quick)[-3:] if not quick else cases(quick)[1:]

    main(NAME, issue20_cases if only20 else cases, argv)
    if busy:
        from benchmarks import common

        rows = busy_core_rows("--quick" in argv, min_time=1.0)
        cols = [("setting", "setting", ""), ("median ms", "median_ms", ".3f"),
                ("x 1 thread", "vs_1_thread", common.ratio), ("load", "load", ".2f")]  # fmt: skip
        text = common.format_table(rows, cols)
        print(text)
        if "--tag" in argv:
            from benchmarks.step_common import RESULTS

            tag = argv[argv.index("--tag") + 1]
            stem = RESULTS / f"{NAME}_busy_core_cpu_amd-epyc-2c_{tag}"
            common.write_json(stem.with_suffix(".json"), common.machine_info(torch.device("cpu")),
                              rows)  # fmt: skip
            stem.with_suffix(".txt").write_text(text + "\n")
