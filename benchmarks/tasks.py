"""Benchmark of the meta-RL task environments and agents (issue 17).

    python -m benchmarks tasks                  # both measures below
    python -m benchmarks tasks --only env       # environment steps per second
    python -m benchmarks tasks --only train     # plastic agent training throughput

- ``env``: :class:`hebbkern.tasks.MetaTaskEnv` with 4096 parallel episodes (100 generated
  templates, one per episode, random actions), eager and, unless ``--no-compile``, with the
  step's arithmetic compiled (``compile=True``; compile time reported, not counted). Time is
  measured in windows of 20 steps; the table gives the median window and the best one (on a
  shared machine the best window is the machine's speed, the median what one run got).
- ``train``: A2C training steps (rollout of a whole episode with the graph, backward through it,
  Adam) of the Backpropamine-style agent with 1024 episodes in parallel: the agent on
  ``hebbkern.nn.PlasticRNNCell`` against the same agent written in eager PyTorch
  (``EagerPlasticAgent``), interleaved in one run. The profiler then splits one training step of
  each into the plastic step's own ops (hebbkern's ``plastic_step`` forward and backward, or the
  eager agent's step ops) and the rest (environment, heads, sampling, loss, optimiser).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from hebbkern.agents import A2CConfig, EagerPlasticAgent, PlasticAgent, train_step
from hebbkern.tasks import MetaTaskEnv, generate_templates

from . import common

RESULTS = Path(__file__).resolve().parent / "results"


def windows(fn, n_windows: int, per_window: int) -> list[float]:
    out = []
    for _ in range(n_windows):
        t0 = time.perf_counter()
        for _ in range(per_window):
            fn()
        out.append((time.perf_counter() - t0) / per_window)
    return out


def bench_env(batch: int, n_windows: int, compile_: bool, device) -> list[dict]:
    ts = generate_templates(100, seed=0)
    rows = []
    for mode in ("eager", "compiled") if compile_ else ("eager",):
        t0 = time.perf_counter()
        env = MetaTaskEnv(ts, batch, 10**9, seed=0, device=device, compile=mode == "compiled")
        a = torch.randint(2, (batch,), device=device)
        env.step(a)  # compiles
        setup = time.perf_counter() - t0
        ws = windows(lambda env=env, a=a: env.step(a), n_windows, 20)
        reset = min(windows(env.reset, 3, 1))
        rows.append({
            "case": f"env {mode}", "batch": batch,
            "median_Msteps_s": batch / statistics.median(ws) / 1e6,
            "best_Msteps_s": batch / min(ws) / 1e6,
            "reset_ms": reset * 1e3, "setup_s": setup,
        })  # fmt: skip
    return rows


def _profile_split(agent, env, opt, cfg) -> tuple[float, float]:
    """Seconds of one training step, and of it the plastic step's own ops."""
    from torch.profiler import profile

    with profile() as prof:
        t0 = time.perf_counter()
        train_step(agent, env, opt, cfg)
        total = time.perf_counter() - t0
    step_ops = 0.0
    eager_ops = ("aten::bmm", "aten::clamp", "aten::tanh", "BmmBackward", "ClampBackward",
                 "TanhBackward")  # fmt: skip
    for e in prof.key_averages():
        name = e.key
        mine = "hebbkern" in name or "plastic_step" in name
        if isinstance(agent, EagerPlasticAgent):
            mine = any(k in name for k in eager_ops)
        if mine:
            step_ops += e.self_cpu_time_total / 1e6
    return total, step_ops


def bench_train(batch: int, hidden: int, steps: int, iters: int, device) -> list[dict]:
    ts = generate_templates(100, seed=0)
    cfg = A2CConfig()
    torch.manual_seed(0)
    fused = PlasticAgent(11, hidden, rule="neuromod").to(device)
    eager = EagerPlasticAgent(11, hidden, rule="neuromod").to(device)
    eager.load_state_dict(fused.state_dict())
    setups = {}
    for name, agent in (("hebbkern", fused), ("eager", eager)):
        env = MetaTaskEnv(ts, batch, steps, seed=0, device=device)
        opt = torch.optim.Adam(agent.parameters(), lr=1e-3)
        train_step(agent, env, opt, cfg)  # warm-up
        setups[name] = (agent, env, opt)
    times = {"hebbkern": [], "eager": []}
    for _ in range(iters):  # interleaved, so that both see the same machine load
        for name, (agent, env, opt) in setups.items():
            t0 = time.perf_counter()
            train_step(agent, env, opt, cfg)
            times[name].append(time.perf_counter() - t0)
    rows = []
    for name, (agent, env, opt) in setups.items():
        total, step_ops = _profile_split(agent, env, opt, cfg)
        med = statistics.median(times[name])
        rows.append({
            "case": f"train {name}", "batch": batch, "hidden": hidden, "steps": steps,
            "median_s": med, "best_s": min(times[name]),
            "env_steps_per_s": batch * steps / med,
            "plastic_step_share": step_ops / total,
        })  # fmt: skip
    e, f = rows[1]["median_s"], rows[0]["median_s"]
    rows[0]["speedup_vs_eager"] = e / f
    rows[0]["speedup_best"] = rows[1]["best_s"] / rows[0]["best_s"]
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks tasks", description=__doc__.split("\n")[0]
    )
    p.add_argument("--only", choices=("env", "train"), default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--env-batch", type=int, default=4096)
    p.add_argument("--windows", type=int, default=40)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--train-batch", type=int, default=1024)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="episode length of the training bench")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--out", default=None, help="file stem under benchmarks/results/")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = common.machine_info(device)
    print(common.machine_line(info))
    rows = []
    if args.only in (None, "env"):
        rows += bench_env(args.env_batch, args.windows, not args.no_compile, device)
    if args.only in (None, "train"):
        rows += bench_train(args.train_batch, args.hidden, args.steps, args.iters, device)
    info["loadavg_end"] = round(__import__("os").getloadavg()[0], 2)
    cols = [
        ("case", "case", ""), ("batch", "batch", "d"),
        ("env Msteps/s median", "median_Msteps_s", ".2f"),
        ("best", "best_Msteps_s", ".2f"), ("setup s", "setup_s", ".1f"),
        ("train s/iter median", "median_s", ".3f"), ("best", "best_s", ".3f"),
        ("env steps/s", "env_steps_per_s", ".0f"),
        ("plastic-step share", "plastic_step_share", ".2f"),
        ("speedup", "speedup_vs_eager", common.ratio),
        ("speedup best", "speedup_best", common.ratio),
    ]  # fmt: skip
    print(common.format_table(rows, cols))
    print(f"load average at the end: {info['loadavg_end']}")
    if args.out:
        RESULTS.mkdir(exist_ok=True)
        common.write_json(RESULTS / f"{args.out}.json", info, rows)
        (RESULTS / f"{args.out}.txt").write_text(
            common.machine_line(info) + "\n" + common.format_table(rows, cols) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
