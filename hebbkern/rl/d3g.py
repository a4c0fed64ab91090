"""D3G, Deep Deterministic Dynamics Gradients (Edwards et al., ICML 2020), and a point-mass task.

D3G learns the value of a transition, ``Q(s, s')``, with twin critics (the minimum of two
targets, as TD3) and replaces the actor by a *proposal model* ``s' = s + delta(s)`` trained to
maximise ``Q(s, s')``. Proposals are kept reachable by a cycle through the dynamics: an inverse
model ``I(s, s') -> a`` (trained by regression on the actions seen) and a forward model
``f(s, a) -> s' - s``; the proposal ``s_hat = s + delta(s)`` is mapped to the reachable
``s_cyc = s + f(s, I(s, s_hat))``, the model maximises ``Q1(s, s_cyc)`` and pays
``||s_cyc - s_hat||^2`` (the cycle loss). Critic target::

    y = r + gamma * not_done * min_i Q_i'(s', s' + f(s', I(s', s' + delta'(s'))))

(primes: the slowly tracking target networks). Acting: ``a = I(s, s + delta(s))``.

Observational mode (``observational=True``) learns from ``(s, r, s')`` alone: there is no
action, so the forward model is conditioned on the value instead, ``f(s, Q1(s, s'))``, and the
cycle runs ``s_hat -> q = Q1(s, s_hat) -> s + f(s, q)``. To act, an inverse model still has
to be fitted on some transitions with actions (:meth:`D3G.update_inverse`); the values and
proposals never see an action.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_positive_ints


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


@dataclass
class D3GConfig:
    hidden: int = 64
    lr: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.005
    policy_freq: int = 2  # model and target updates every `policy_freq` critic updates


class TwinCritic(nn.Module):
    """Two independent Q(s, s') networks on ``cat(s, s')``."""

    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1, self.q2 = _mlp(2 * state_dim, 1, hidden), _mlp(2 * state_dim, 1, hidden)

    def forward(self, s: Tensor, s2: Tensor) -> tuple[Tensor, Tensor]:
        ss = torch.cat([s, s2], 1)
        return self.q1(ss), self.q2(ss)

    def Q1(self, s: Tensor, s2: Tensor) -> Tensor:  # noqa: N802 (the paper's name)
        return self.q1(torch.cat([s, s2], 1))


class D3G(nn.Module):
    """The D3G networks and their update; ``update(s, a, r, s2, not_done)`` is one training step
    on a batch (``a=None`` in observational mode). All tensors ``[B, dim]``; ``r``,
    ``not_done`` ``[B, 1]``."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        config: D3GConfig | None = None,
        observational: bool = False,
    ) -> None:
        super().__init__()
        check_positive_ints(state_dim=state_dim, action_dim=action_dim)
        if not max_action > 0:
            raise ValueError(f"max_action must be > 0, got {max_action!r}")
        cfg = config or D3GConfig()
        self.cfg, self.max_action, self.observational = cfg, float(max_action), observational
        h = cfg.hidden
        self.critic = TwinCritic(state_dim, h)
        self.model = _mlp(state_dim, state_dim, h)  # the proposal: delta(s)
        self.inverse = _mlp(2 * state_dim, action_dim, h)  # I(s, s') -> a
        cond = 1 if observational else action_dim
        self.forward_model = _mlp(state_dim + cond, state_dim, h)  # f(s, a or q) -> s' - s
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.model_target = copy.deepcopy(self.model).requires_grad_(False)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.opt_model = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.opt_inverse = torch.optim.Adam(self.inverse.parameters(), lr=cfg.lr)
        self.opt_forward = torch.optim.Adam(self.forward_model.parameters(), lr=cfg.lr)
        self.iterations = 0

    # --- the pieces -------------------------------------------------------------------------
    def inverse_action(self, s: Tensor, s2: Tensor) -> Tensor:
        return self.max_action * torch.tanh(self.inverse(torch.cat([s, s2], 1)))

    def propose(self, s: Tensor, target: bool = False) -> Tensor:
        """The proposed next state ``s + delta(s)``."""
        return s + (self.model_target if target else self.model)(s)

    def cycle(self, s: Tensor, s_hat: Tensor, critic: TwinCritic | None = None) -> Tensor:
        """The reachable next state the proposal ``s_hat`` maps to through the dynamics."""
        if self.observational:
            cond = (critic or self.critic).Q1(s, s_hat)
        else:
            cond = self.inverse_action(s, s_hat)
        return s + self.forward_model(torch.cat([s, cond], 1))

    @torch.no_grad()
    def act(self, s: Tensor) -> Tensor:
        """``I(s, s + delta(s))``: the action toward the proposed next state."""
        return self.inverse_action(s, self.propose(s))

    # --- training ---------------------------------------------------------------------------
    def update_inverse(self, s: Tensor, a: Tensor, s2: Tensor) -> float:
        loss = F.mse_loss(self.inverse_action(s, s2), a)
        self.opt_inverse.zero_grad()
        loss.backward()
        self.opt_inverse.step()
        return loss.item()

    def update(
        self, s: Tensor, a: Tensor | None, r: Tensor, s2: Tensor, not_done: Tensor
    ) -> dict[str, float]:
        if (a is None) != self.observational:
            raise ValueError(
                "a must be None in observational mode and a [B, action_dim] tensor otherwise"
            )
        cfg = self.cfg
        self.iterations += 1
        out: dict[str, float] = {}
        with torch.no_grad():
            s3 = self.cycle(s2, self.propose(s2, target=True), critic=self.critic_target)
            y = r + not_done * cfg.gamma * torch.min(*self.critic_target(s2, s3))
        q1, q2 = self.critic(s, s2)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.opt_critic.zero_grad()
        critic_loss.backward()
        self.opt_critic.step()
        out["critic"] = critic_loss.item()

        if not self.observational:
            out["inverse"] = self.update_inverse(s, a, s2)
            cond = a
        else:
            with torch.no_grad():
                cond = self.critic_target.Q1(s, s2)
        fwd_loss = F.mse_loss(self.forward_model(torch.cat([s, cond], 1)), s2 - s)
        self.opt_forward.zero_grad()
        fwd_loss.backward()
        self.opt_forward.step()
        out["forward"] = fwd_loss.item()

        if self.iterations % cfg.policy_freq == 0:
            s_hat = self.propose(s)
            s_cyc = self.cycle(s, s_hat)
            cycle_loss = F.mse_loss(s_cyc, s_hat)
            model_loss = -self.critic.Q1(s, s_cyc).mean() + cycle_loss
            self.opt_model.zero_grad()
            model_loss.backward()  # grads also reach critic/inverse/forward: cleared before use
            self.opt_model.step()
            out["cycle"] = cycle_loss.item()
            with torch.no_grad():
                for net, tgt in (
                    (self.critic, self.critic_target),
                    (self.model, self.model_target),
                ):
                    for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                        pt.lerp_(p, cfg.tau)
        return out


class PointMass:
    """A batch of point masses in the box ``[-1, 1]^dim``: ``s' = clip(s + step * a)``,
    ``a in [-1, 1]^dim``, reward ``-||s'||`` (reach the origin and stay), episodes of
    ``horizon`` steps from uniform random starts. Pure torch, no simulator."""

    def __init__(self, batch: int = 1, dim: int = 2, step: float = 0.1, horizon: int = 50,
                 generator: torch.Generator | None = None) -> None:  # fmt: skip
        self.batch, self.dim, self.step_size, self.horizon = batch, dim, step, horizon
        self.g = generator

    def reset(self) -> Tensor:
        self.t = 0
        self.s = torch.rand(self.batch, self.dim, generator=self.g) * 2 - 1
        return self.s.clone()

    def step(self, a: Tensor) -> tuple[Tensor, Tensor, bool]:
        a = a.clamp(-1.0, 1.0)
        self.s = (self.s + self.step_size * a).clamp(-1.0, 1.0)
        self.t += 1
        r = -self.s.norm(dim=1, keepdim=True)
        return self.s.clone(), r, self.t >= self.horizon

    def random_action(self) -> Tensor:
        return torch.rand(self.batch, self.dim, generator=self.g) * 2 - 1


__all__ = ["D3G", "D3GConfig", "PointMass", "TwinCritic"]
