"""Advantage actor-critic over batches of episodes (Backpropamine's training, with each
sample's own value as its baseline: SPEC.md section 9)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._validation import check_positive_ints


@dataclass
class A2CConfig:
    gamma: float = 0.9
    n_step: int = 10  # returns over n rewards, then the (detached) value bootstraps
    value_coef: float = 0.1
    entropy_coef: float = 0.03
    lr: float = 1e-3
    grad_clip: float = 4.0


def rollout(agent: nn.Module, env, *, greedy: bool = False) -> dict[str, Tensor]:
    """One episode for the whole batch (reset first). Returns ``[T, B]`` tensors: log-probs,
    values, entropies (with the graph), rewards, trial index of each step, actions."""
    obs = env.reset()
    state = agent.initial_state(env.batch_size)
    out = {k: [] for k in ("logp", "value", "entropy", "reward", "trial", "action")}
    done = False
    while not done:
        logits, value, state = agent(obs, state)
        dist = torch.distributions.Categorical(logits=logits)
        a = logits.argmax(-1) if greedy else dist.sample()
        out["trial"].append(env.trial_index)
        obs, reward, done = env.step(a)
        out["logp"].append(dist.log_prob(a))
        out["value"].append(value)
        out["entropy"].append(dist.entropy())
        out["reward"].append(reward)
        out["action"].append(a)
    return {k: torch.stack(v) for k, v in out.items()}


def n_step_returns(reward: Tensor, value: Tensor, gamma: float, n: int) -> Tensor:
    """``R_t = sum_{k<n} gamma^k r_{t+k} + gamma^n V_{t+n}`` (truncated at the episode's end,
    where nothing bootstraps). ``reward``, ``value`` ``[T, B]``; the value is detached."""
    check_positive_ints(n=n)
    T = reward.shape[0]
    R = torch.zeros_like(reward)
    for k in range(min(n, T)):
        R[: T - k] += gamma**k * reward[k:]
    if n < T:
        R[: T - n] += gamma**n * value.detach()[n:]
    return R


def a2c_loss(roll: dict[str, Tensor], cfg: A2CConfig) -> tuple[Tensor, dict[str, float]]:
    R = n_step_returns(roll["reward"], roll["value"], cfg.gamma, cfg.n_step)
    adv = R - roll["value"]  # each sample's own baseline
    policy = -(roll["logp"] * adv.detach()).mean()
    value = adv.pow(2).mean()
    entropy = roll["entropy"].mean()
    loss = policy + cfg.value_coef * value - cfg.entropy_coef * entropy
    stats = {
        "loss": loss.item(),
        "policy": policy.item(),
        "value": value.item(),
        "entropy": entropy.item(),
        "reward": roll["reward"].mean().item(),
    }
    return loss, stats


def train_step(agent: nn.Module, env, opt: torch.optim.Optimizer, cfg: A2CConfig) -> dict:
    """One episode batch, one A2C update (full backpropagation through the episode)."""
    roll = rollout(agent, env)
    loss, stats = a2c_loss(roll, cfg)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(agent.parameters(), cfg.grad_clip)
    opt.step()
    return stats


@torch.no_grad()
def evaluate(agent: nn.Module, env, n_batches: int = 1, max_trials: int | None = None) -> dict:
    """Within-episode learning: mean reward per trial index (over the episodes that reached
    that trial) and per step, over ``n_batches`` fresh batches of instances."""
    sums, counts, per_step = None, None, []
    for _ in range(n_batches):
        roll = rollout(agent, env)
        trial, reward = roll["trial"], roll["reward"].double()
        K = int(trial.max()) + 1 if max_trials is None else max_trials
        keep = trial < K
        # reward per (episode, trial), then the mean over episodes that reached the trial
        per_ep = torch.zeros(env.batch_size, K, dtype=torch.float64, device=reward.device)
        b = torch.arange(env.batch_size, device=reward.device).expand_as(trial)
        per_ep.index_put_((b[keep], trial[keep]), reward[keep], accumulate=True)
        seen = torch.zeros_like(per_ep)
        seen.index_put_((b[keep], trial[keep]), torch.ones_like(reward[keep]))
        s = per_ep.sum(0)
        c = seen.sum(0)
        if sums is None:
            sums, counts = s, c
        else:
            n = min(len(sums), len(s))
            sums, counts = sums[:n] + s[:n], counts[:n] + c[:n]
        per_step.append(reward.mean(1))
    return {
        "reward_per_trial": (sums / counts.clamp(min=1)).cpu(),
        "episodes_per_trial": counts.cpu(),
        "reward_per_step": torch.stack(per_step).mean(0).cpu(),
    }
