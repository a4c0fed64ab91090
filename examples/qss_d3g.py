"""Q(s, s') and D3G (Edwards et al., "Estimating Q(s,s') with Deep Deterministic Dynamics
Gradients", ICML 2020), with ``hebbkern.rl``.

Part 1, tabular (the paper's gridworld toys): an 8x8 gridworld, reward -1 per step, goal in the
far corner, epsilon-greedy (0.1) Q-learning of Q(s, a) against Q(s, s') with a tabular inverse
model.
- redundant actions: 4, 20 and 40 actions (copies of the 4 moves); steps per episode over
  learning. Claim: Q(s, s') learns as fast whatever the number of actions; Q(s, a) slows down.
- shuffled actions: after learning with one action mapping, the actions' meanings are shuffled;
  Q(s, s') keeps its values and relearns only the inverse model, Q(s, a) keeps its (now wrong)
  table; Q(s, a) from scratch for reference. Claim: the values transfer.

Part 2, D3G (``hebbkern.rl.D3G``) on ``hebbkern.rl.PointMass`` (a 2-D point mass, pure torch,
no simulator: ``s' = clip(s + 0.1 a)``, reward ``-||s'||``, 50 steps per episode):
- online D3G from interaction (exploration noise 0.2 on ``I(s, s + delta(s))``);
- observational D3G: Q(s, s'), the proposal and the Q-conditioned forward model learned from
  the state-only transitions ``(s, r, s')`` of a uniformly random policy (no action seen); an
  inverse model is then fitted on a few labelled random transitions so that the agent can act.
Return of the greedy policy over 32 fixed start states, against the random policy and the
hand-written optimal controller (move straight to the origin).

    python examples/qss_d3g.py            # full reduced-size run (README: measured time)
    python examples/qss_d3g.py --smoke    # a few steps, for the test suite

Writes examples/results/qss_d3g.csv, qss_d3g_summary.md, qss_gridworld.png and d3g_pointmass.png.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_options

from hebbkern.rl import D3G, D3GConfig, GridWorld, PointMass, TabularQSA, TabularQSS
from hebbkern.rl.qss import run_episode

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- part 1: tabular
def redundant(args):
    """Steps per episode [method][n_actions] -> array [seeds, episodes]."""
    out = {}
    for n_actions in args.action_counts:
        for cls in (TabularQSA, TabularQSS):
            curves = []
            for seed in range(args.grid_seeds):
                env = GridWorld(args.size, n_actions, seed)
                agent = cls(env.n_states, n_actions, seed=seed)
                curves.append([run_episode(env, agent, 0.1) for _ in range(args.episodes)])
            out[(cls.__name__, n_actions)] = np.array(curves)
    return out


def shuffled(args, n_actions):
    """Steps per episode before and after a shuffle of the actions."""
    out = {}
    for name in ("Q(s,a) kept", "Q(s,s') kept", "Q(s,a) from scratch"):
        curves = []
        for seed in range(args.grid_seeds):
            env = GridWorld(args.size, n_actions, seed)
            cls = TabularQSS if "s'" in name else TabularQSA
            agent = cls(env.n_states, n_actions, seed=seed)
            curve = [run_episode(env, agent, 0.1) for _ in range(args.episodes)]
            env.shuffle()
            while (env.perm % 4 == np.arange(n_actions) % 4).all():  # a real change of meaning
                env.shuffle()
            if "scratch" in name:
                agent = TabularQSA(env.n_states, n_actions, seed=seed + 1000)
            elif "s'" in name:
                agent.forget_inverse()
            curve += [run_episode(env, agent, 0.1) for _ in range(args.episodes)]
            curves.append(curve)
        out[name] = np.array(curves)
    return out


# ----------------------------------------------------------------------------- part 2: D3G
def evaluate(policy, starts: torch.Tensor, horizon: int) -> float:
    env = PointMass(len(starts), horizon=horizon)
    env.reset()
    env.s = starts.clone()
    s, total, done = starts.clone(), torch.zeros(len(starts), 1), False
    while not done:
        s, r, done = env.step(policy(s))
        total += r
    return total.mean().item()


def optimal(s):
    return (-s / 0.1).clamp(-1, 1)


def random_transitions(n, g, horizon):
    env = PointMass(n, horizon=horizon, generator=g)
    s = env.reset()
    S, A, R, S2 = [], [], [], []
    for _ in range(horizon):
        a = env.random_action()
        s2, r, _ = env.step(a)
        S.append(s), A.append(a), R.append(r), S2.append(s2)
        s = s2
    return torch.cat(S), torch.cat(A), torch.cat(R), torch.cat(S2)


def d3g_online(seed, args, starts):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    agent = D3G(2, 2, config=D3GConfig(hidden=args.hidden))
    n_env = 8
    env = PointMass(n_env, horizon=args.horizon, generator=g)
    cap = args.updates * n_env + args.warmup
    buf = {k: torch.zeros(cap, 2) for k in ("s", "a", "s2")}
    buf["r"] = torch.zeros(cap, 1)
    n, curve = 0, []
    s = env.reset()
    for _ in range(args.updates + args.warmup // n_env):
        if n < args.warmup:
            a = env.random_action()
        else:
            a = (agent.act(s) + 0.2 * torch.randn(s.shape, generator=g)).clamp(-1, 1)
        s2, r, done = env.step(a)
        for k, v in (("s", s), ("a", a), ("s2", s2), ("r", r)):
            buf[k][n : n + n_env] = v
        n += n_env
        s = env.reset() if done else s2
        if n <= args.warmup:
            continue
        idx = torch.randint(0, n, (args.batch,), generator=g)
        # Episodes end on a time limit, not a terminal state: not_done stays 1.
        agent.update(buf["s"][idx], buf["a"][idx], buf["r"][idx], buf["s2"][idx],
                     torch.ones(args.batch, 1))  # fmt: skip
        if agent.iterations % args.eval_every == 0:
            curve.append((agent.iterations, evaluate(agent.act, starts, args.horizon)))
    return agent, curve


def d3g_observational(seed, args, starts):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 500)
    agent = D3G(2, 2, config=D3GConfig(hidden=args.hidden), observational=True)
    S, _, R, S2 = random_transitions(args.obs_episodes, g, args.horizon)  # actions discarded
    # The few labelled transitions the inverse model needs to turn proposals into actions.
    Si, Ai, _, S2i = random_transitions(args.labelled_episodes, g, args.horizon)
    for _ in range(args.inverse_updates):
        idx = torch.randint(0, len(Si), (args.batch,), generator=g)
        agent.update_inverse(Si[idx], Ai[idx], S2i[idx])
    curve = []
    for _ in range(args.updates):
        idx = torch.randint(0, len(S), (args.batch,), generator=g)
        agent.update(S[idx], None, R[idx], S2[idx], torch.ones(args.batch, 1))
        if agent.iterations % args.eval_every == 0:
            curve.append((agent.iterations, evaluate(agent.act, starts, args.horizon)))
    return agent, curve


@torch.no_grad()
def proposal_alignment(agent, starts):
    """Mean cosine between the proposed step delta(s) and the direction to the goal, -s."""
    d = agent.propose(starts) - starts
    return torch.nn.functional.cosine_similarity(d, -starts, dim=1).mean().item()


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true")
    add_options(p, size=8, episodes=150, grid_seeds=10, action_counts=[4, 20, 40],
                shuffle_actions=[4, 20], seeds=3, updates=4000, warmup=800, eval_every=500,
                batch=128, hidden=64, horizon=50, obs_episodes=400, labelled_episodes=20,
                inverse_updates=1000, out=HERE / "results")  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        args.episodes, args.grid_seeds, args.action_counts = 3, 1, [4, 8]
        args.shuffle_actions = [4, 8]
        args.seeds, args.updates, args.warmup, args.eval_every = 1, 20, 64, 10
        args.obs_episodes, args.labelled_episodes, args.inverse_updates = 4, 2, 5
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = []

    red = redundant(args)
    for (name, k), c in red.items():
        rows.append({"part": "redundant", "method": name, "setting": f"{k} actions",
                     "metric": "mean steps/episode, all episodes", "value": c.mean(), "std":
                     c.mean(1).std()})  # fmt: skip
    shf_all = {k: shuffled(args, k) for k in args.shuffle_actions}
    for k, shf in shf_all.items():
        for name, c in shf.items():
            after = c[:, args.episodes :]
            rows.append({"part": "shuffled", "method": name, "setting": f"{k} actions",
                         "metric": "mean steps/episode, episodes after shuffle", "value":
                         after.mean(), "std": after.mean(1).std()})  # fmt: skip
    t_grid = time.time() - t0
    print(f"tabular parts: {t_grid:.0f} s", flush=True)

    starts = torch.rand(32, 2, generator=torch.Generator().manual_seed(12345)) * 2 - 1
    g = torch.Generator().manual_seed(7)
    ret_random = evaluate(lambda s: torch.rand(s.shape, generator=g) * 2 - 1, starts, args.horizon)
    ret_opt = evaluate(optimal, starts, args.horizon)
    rows.append({"part": "d3g", "method": "random policy", "setting": "", "metric": "return",
                 "value": ret_random, "std": 0.0})  # fmt: skip
    rows.append({"part": "d3g", "method": "optimal controller", "setting": "", "metric":
                 "return", "value": ret_opt, "std": 0.0})  # fmt: skip
    curves = {}
    for name, fn in (("D3G online", d3g_online), ("D3G from observation", d3g_observational)):
        finals, aligns, cs = [], [], []
        for seed in range(args.seeds):
            agent, curve = fn(seed, args, starts)
            finals.append(evaluate(agent.act, starts, args.horizon))
            aligns.append(proposal_alignment(agent, starts))
            cs.append(curve)
        curves[name] = cs
        rows.append({"part": "d3g", "method": name, "setting": f"{args.updates} updates",
                     "metric": "return", "value": float(np.mean(finals)),
                     "std": float(np.std(finals))})  # fmt: skip
        rows.append({"part": "d3g", "method": name, "setting": f"{args.updates} updates",
                     "metric": "cos(delta(s), -s)", "value": float(np.mean(aligns)),
                     "std": float(np.std(aligns))})  # fmt: skip
        print(f"{name}: return {np.mean(finals):.2f} (random {ret_random:.2f}, optimal "
              f"{ret_opt:.2f}), alignment {np.mean(aligns):.2f}  ({time.time() - t0:.0f} s)",
              flush=True)  # fmt: skip
    elapsed = time.time() - t0
    with open(args.out / "qss_d3g.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"Q(s,s') and D3G: {args.size}x{args.size} grid, {args.episodes} episodes x "
        f"{args.grid_seeds} seeds; point mass, {args.updates} D3G updates x {args.seeds} seeds; "
        f"{elapsed:.0f} s wall, {time.process_time():.0f} s CPU in all "
        f"(tabular {t_grid:.0f} s wall)",
        "",
        "| part | method | setting | metric | mean | std over seeds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['part']} | {r['method']} | {r['setting']} | {r['metric']} | {r['value']:.3f} | "
        f"{r['std']:.3f} |"
        for r in rows
    ]
    (args.out / "qss_d3g_summary.md").write_text("\n".join(lines) + "\n")
    plot(red, shf_all, curves, ret_random, ret_opt, args)
    print(f"total {elapsed:.0f} s")
    return rows


def _smooth(c, w=5):
    w = min(w, c.shape[-1])
    return np.convolve(c.mean(0), np.ones(w) / w, mode="valid")


def plot(red, shf_all, curves, ret_random, ret_opt, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(shf_all), figsize=(5 * (1 + len(shf_all)), 3.6))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(args.action_counts)))
    for k, col in zip(args.action_counts, colors, strict=True):
        axes[0].plot(_smooth(red[("TabularQSA", k)]), color=col, ls="--", label=f"Q(s,a), {k}")
        axes[0].plot(_smooth(red[("TabularQSS", k)]), color=col, label=f"Q(s,s'), {k}")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("episode")
    axes[0].set_ylabel("steps to goal")
    axes[0].set_title("redundant actions (n actions)")
    axes[0].legend(fontsize=7, ncol=2)
    for ax, (k, shf) in zip(axes[1:], shf_all.items(), strict=True):
        for name, c in shf.items():
            ax.plot(_smooth(c), label=name)
        ax.axvline(args.episodes, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("episode (actions shuffled at the line)")
        ax.set_title(f"shuffled actions ({k} actions)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "qss_gridworld.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, cs in curves.items():
        if not cs or not cs[0]:
            continue
        x = [it for it, _ in cs[0]]
        y = np.array([[v for _, v in c] for c in cs])
        ax.errorbar(x, y.mean(0), yerr=y.std(0), label=name, capsize=2)
    ax.axhline(ret_random, color="gray", ls=":", label="random policy")
    ax.axhline(ret_opt, color="k", ls="--", label="optimal controller")
    ax.set_xlabel("D3G updates")
    ax.set_ylabel("return (32 fixed starts)")
    ax.set_title("D3G on a 2-D point mass")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "d3g_pointmass.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
