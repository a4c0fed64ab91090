"""hebbkern.rl: tabular Q(s, s') against value iteration, its transfer across shuffled and
redundant actions, and the D3G update (shapes, bad input, learning on a point mass)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hebbkern.rl import D3G, D3GConfig, GridWorld, PointMass, TabularQSA, TabularQSS
from hebbkern.rl.qss import run_episode


def optimal_values(env: GridWorld, gamma: float) -> np.ndarray:
    """Value iteration on the gridworld (deterministic, reward -1 per step, goal terminal)."""
    v = np.zeros(env.n_states)
    for _ in range(500):
        new = np.zeros_like(v)
        for s in range(env.n_states):
            if s == env.goal:
                continue
            best = -np.inf
            for a in range(4):
                s2, r, done = env.step(s, a)
                best = max(best, r + (0 if done else gamma * v[s2]))
            new[s] = best
        v = new
    return v


def sweep_all_transitions(env, agent, sweeps=200):
    for _ in range(sweeps):
        for s in range(env.n_states):
            if s == env.goal:
                continue
            for a in range(env.n_actions):
                s2, r, done = env.step(s, a)
                agent.update(s, r, s2, done)
                agent.learn_inverse(s, a, s2)


def test_tabular_qss_converges_to_optimal_values():
    env = GridWorld(4, 4)
    agent = TabularQSS(env.n_states, 4, lr=1.0, gamma=0.9)
    sweep_all_transitions(env, agent)
    v = optimal_values(env, 0.9)
    got = np.array([agent.value(s) if s != env.goal else 0.0 for s in range(env.n_states)])
    np.testing.assert_allclose(got, v, atol=1e-9)


def test_qss_values_do_not_depend_on_action_meaning_or_count():
    tables = []
    for n_actions, shuffle in ((4, False), (4, True), (12, True)):
        env = GridWorld(4, n_actions, seed=3)
        if shuffle:
            env.shuffle()
        agent = TabularQSS(env.n_states, n_actions, lr=1.0, gamma=0.9)
        sweep_all_transitions(env, agent, sweeps=50)
        tables.append(agent.q)
    for t in tables[1:]:
        np.testing.assert_array_equal(t, tables[0])


def test_qss_acts_optimally_after_shuffle_with_new_inverse_only():
    env = GridWorld(5, 4, seed=1)
    agent = TabularQSS(env.n_states, 4, lr=1.0, gamma=0.9)
    sweep_all_transitions(env, agent)
    env.shuffle()
    agent.forget_inverse()
    for s in range(env.n_states):  # relearn I alone: one try of each action per state
        for a in range(4):
            agent.learn_inverse(s, a, env.step(s, a)[0])
    assert run_episode(env, agent, eps=0.0) == 2 * (env.size - 1)
    old = agent.q.copy()
    env.step(0, 0)
    np.testing.assert_array_equal(agent.q, old)


def test_qsa_learns_gridworld():
    env = GridWorld(4, 4)
    agent = TabularQSA(env.n_states, 4, seed=0)
    for _ in range(200):
        run_episode(env, agent, 0.1)
    assert run_episode(env, agent, 0.0) == 6


def test_gridworld_bad_input():
    with pytest.raises(ValueError, match="n_actions"):
        GridWorld(4, 6)
    with pytest.raises(ValueError, match="size"):
        GridWorld(1, 4)
    with pytest.raises(ValueError, match="action"):
        GridWorld(4, 4).step(0, 4)


@pytest.mark.parametrize("observational", [False, True])
def test_d3g_update_shapes_and_targets(observational):
    torch.manual_seed(0)
    agent = D3G(3, 2, config=D3GConfig(hidden=16, policy_freq=1), observational=observational)
    s, a, s2 = torch.randn(8, 3), torch.rand(8, 2) * 2 - 1, torch.randn(8, 3)
    r, nd = torch.randn(8, 1), torch.ones(8, 1)
    before = [p.clone() for p in agent.critic_target.parameters()]
    out = agent.update(s, None if observational else a, r, s2, nd)
    assert {"critic", "forward", "cycle"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())
    # The target networks move toward the online ones by tau, not onto them.
    after = list(agent.critic_target.parameters())
    assert any(not torch.equal(b, x) for b, x in zip(before, after, strict=True))
    act = agent.act(s)
    assert act.shape == (8, 2) and act.abs().max() <= 1.0
    assert agent.propose(s).shape == (8, 3)


def test_d3g_bad_input():
    with pytest.raises(ValueError, match="state_dim"):
        D3G(0, 2)
    with pytest.raises(ValueError, match="max_action"):
        D3G(2, 2, max_action=0.0)
    agent = D3G(2, 2, config=D3GConfig(hidden=8))
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="a must be"):
        agent.update(x, None, torch.zeros(4, 1), x, torch.ones(4, 1))


def test_d3g_critic_fits_fixed_point_on_point_mass():
    """With gamma 0 the critic target is the reward: the twin critics must fit -||s'||."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    agent = D3G(2, 2, config=D3GConfig(hidden=32, gamma=0.0, lr=3e-3))
    env = PointMass(256, generator=g)
    s = env.reset()
    a = env.random_action()
    s2, r, _ = env.step(a)
    first = agent.update(s, a, r, s2, torch.ones(256, 1))["critic"]
    for _ in range(300):
        last = agent.update(s, a, r, s2, torch.ones(256, 1))["critic"]
    assert last < 0.05 * first
    # The inverse model, trained on the same transitions, recovers the actions.
    assert torch.nn.functional.mse_loss(agent.inverse_action(s, s2), a) < 0.05


def test_point_mass_dynamics():
    env = PointMass(3, step=0.1, horizon=2)
    env.reset()
    env.s = torch.tensor([[0.0, 0.0], [0.95, 0.0], [-0.5, 0.5]])
    s2, r, done = env.step(torch.tensor([[1.0, 0.0], [1.0, 1.0], [5.0, -5.0]]))
    torch.testing.assert_close(s2, torch.tensor([[0.1, 0.0], [1.0, 0.1], [-0.4, 0.4]]))
    torch.testing.assert_close(r, -s2.norm(dim=1, keepdim=True))
    assert not done
    assert env.step(torch.zeros(3, 2))[2]
