"""Agents for the meta-task environments (issue 17): the hebbkern agent against the same agent in
eager PyTorch, the LSTM baseline's size, n-step returns and the A2C loss."""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err

from hebbkern.agents import (
    A2CConfig,
    EagerPlasticAgent,
    LSTMAgent,
    PlasticAgent,
    a2c_loss,
    evaluate,
    lstm_hidden_for,
    n_params,
    n_step_returns,
    rollout,
    train_step,
)
from hebbkern.tasks import MetaTaskEnv, generate_templates, named_task


@pytest.mark.parametrize("rule", ["neuromod", "retro"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_plastic_agent_matches_eager(rule, dtype):
    torch.manual_seed(0)
    ts = generate_templates(4, seed=0)
    fused = PlasticAgent(11, 24, rule=rule).to(dtype)
    eager = EagerPlasticAgent(11, 24, rule=rule).to(dtype)
    eager.load_state_dict(fused.state_dict())
    with torch.no_grad():  # larger plastic weights, so that the traces matter
        for m in (fused, eager):
            m.cell.alpha.mul_(300)
            if rule == "retro":
                m.cell.eta.fill_(0.3)
    rolls = []
    for agent in (fused, eager):
        env = MetaTaskEnv(ts, 7, 15, seed=3, dtype=dtype)
        torch.manual_seed(1)  # same action samples
        roll = rollout(agent, env)
        loss, _ = a2c_loss(roll, A2CConfig())
        grads = torch.autograd.grad(loss, list(agent.parameters()))
        rolls.append((roll, grads))
    (r1, g1), (r2, g2) = rolls
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.equal(r1["action"], r2["action"])
    for k in ("logp", "value", "entropy", "reward"):
        assert rel_err(r1[k], r2[k]) < tol, k
    for (name, _), a, b in zip(fused.named_parameters(), g1, g2, strict=True):
        assert rel_err(a, b) < 10 * tol, name


def test_lstm_baseline_has_at_least_as_many_parameters():
    for N in (16, 48, 64):
        plastic = PlasticAgent(11, N, rule="retro")
        H = lstm_hidden_for(11, n_params(plastic))
        assert n_params(LSTMAgent(11, H)) >= n_params(plastic) > n_params(LSTMAgent(11, H - 1))


def test_n_step_returns_against_a_loop():
    g = torch.Generator().manual_seed(0)
    T, B = 9, 3
    r, v = torch.rand(T, B, generator=g), torch.rand(T, B, generator=g)
    for n in (1, 3, 9, 20):
        R = n_step_returns(r, v, 0.8, n)
        for t in range(T):
            ref = sum(0.8**k * r[t + k] for k in range(min(n, T - t)))
            if t + n < T:
                ref = ref + 0.8**n * v[t + n]
            assert torch.allclose(R[t], ref, atol=1e-6)
    with pytest.raises(ValueError, match="n must"):
        n_step_returns(r, v, 0.9, 0)


def test_each_sample_has_its_own_baseline():
    # the policy gradient of sample 0 does not depend on sample 1's value estimate
    T, B = 5, 2
    logp = torch.zeros(T, B, requires_grad=True)
    base = {"reward": torch.rand(T, B), "entropy": torch.zeros(T, B), "logp": logp}
    grads = []
    for v1 in (0.0, 5.0):
        value = torch.zeros(T, B)
        value[:, 1] = v1
        loss, _ = a2c_loss({**base, "value": value}, A2CConfig())
        grads.append(torch.autograd.grad(loss, logp)[0])
    assert torch.equal(grads[0][:, 0], grads[1][:, 0])
    assert not torch.equal(grads[0][:, 1], grads[1][:, 1])


def test_evaluate_reward_per_trial():
    # a T-maze episode of 12 steps has 4 trials of 3 steps; per-trial reward is 0 or 1
    agent = LSTMAgent(11, 8)
    env = MetaTaskEnv(named_task("t_maze"), 50, 12, seed=0)
    ev = evaluate(agent, env, n_batches=2)
    assert ev["reward_per_trial"].shape == (4,)
    assert (ev["episodes_per_trial"] == 100).all()
    assert ((ev["reward_per_trial"] >= 0) & (ev["reward_per_trial"] <= 1)).all()
    assert ev["reward_per_step"].shape == (12,)


@pytest.mark.parametrize("make", [lambda: PlasticAgent(11, 16), lambda: LSTMAgent(11, 16)])
def test_a2c_improves_the_policy(make):
    # a T-maze whose reward is always in the left arm: the policy gradient must move the
    # corridor choice from random (1/6 reward per step) towards the left arm (1/3)
    torch.manual_seed(0)
    t = named_task("t_maze")
    t.statevar_ranges = [[1]]
    agent = make()
    env = MetaTaskEnv(t, 32, 12, seed=0)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-2)
    cfg = A2CConfig(entropy_coef=0.0)
    rewards = [train_step(agent, env, opt, cfg)["reward"] for _ in range(25)]
    assert sum(rewards[-5:]) / 5 > 0.25, rewards
