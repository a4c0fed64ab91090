"""Recurrent actor-critic agents: ``forward(obs [B, I], state) -> (logits [B, A], value [B],
state)``, ``initial_state(B)``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import PlasticRNNCell
from ..types import PlasticState


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class PlasticAgent(nn.Module):
    """Backpropamine's RL agent: a neuromodulated plastic recurrent layer
    (:class:`hebbkern.nn.PlasticRNNCell`, rule ``neuromod`` or ``retro``, a per-neuron fan-out
    of the modulator) stepped once per environment step, with a policy and a value head."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        n_actions: int = 2,
        rule: str = "neuromod",
        fanout: bool = True,
        clip: float = 1.0,
    ) -> None:
        super().__init__()
        if rule not in ("neuromod", "retro"):
            raise ValueError(f"rule must be 'neuromod' or 'retro', got {rule!r}")
        self.cell = PlasticRNNCell(input_size, hidden_size, rule=rule, fanout=fanout, clip=clip)
        self.policy = nn.Linear(hidden_size, n_actions)
        self.value = nn.Linear(hidden_size, 1)

    def initial_state(self, batch_size: int) -> PlasticState:
        return self.cell.initial_state(batch_size)

    def step(self, obs: Tensor, state: PlasticState) -> PlasticState:
        return self.cell(obs, state)

    def forward(self, obs: Tensor, state: PlasticState) -> tuple[Tensor, Tensor, PlasticState]:
        state = self.step(obs, state)
        h = state.h
        return self.policy(h), self.value(h).squeeze(-1), state


class EagerPlasticAgent(PlasticAgent):
    """The same agent (same parameters, same ``state_dict``) with the plastic step written as
    Backpropamine's code writes it: ``bmm``, an outer product and ``clamp`` per step in eager
    PyTorch, each kept by autograd. The baseline of the training-throughput benchmark."""

    def step(self, obs: Tensor, state: PlasticState) -> PlasticState:
        c = self.cell
        h_prev, hebb, elig = state
        u = nn.functional.linear(obs, c.weight_ih, c.bias_ih)
        weff = c.w + c.alpha * hebb  # [B, N, N], indexed [pre, post]
        h = torch.tanh(u + torch.bmm(h_prev.unsqueeze(1), weff).squeeze(1))
        m = torch.tanh(h @ c.mod_w + c.mod_b).unsqueeze(1)  # [B, 1]
        if c.fanout_w is not None:
            m = m * c.fanout_w + c.fanout_b  # [B, N]: per post-synaptic neuron
        outer = torch.bmm(h_prev.unsqueeze(2), h.unsqueeze(1))
        if c.rule == "neuromod":
            hebb = torch.clamp(hebb + m.unsqueeze(1) * outer, -c.clip, c.clip)
        else:
            hebb = torch.clamp(hebb + m.unsqueeze(1) * elig, -c.clip, c.clip)
            elig = (1 - c.eta) * elig + c.eta * outer
        return PlasticState(h, hebb, elig)


class LSTMAgent(nn.Module):
    """The non-plastic baseline: an ``nn.LSTMCell`` with a policy and a value head."""

    def __init__(self, input_size: int, hidden_size: int, n_actions: int = 2) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.policy = nn.Linear(hidden_size, n_actions)
        self.value = nn.Linear(hidden_size, 1)

    def initial_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        z = self.policy.weight.new_zeros(batch_size, self.cell.hidden_size)
        return z, z.clone()

    def forward(self, obs: Tensor, state) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        h, c = self.cell(obs, state)
        return self.policy(h), self.value(h).squeeze(-1), (h, c)


def lstm_hidden_for(input_size: int, n_params_at_least: int, n_actions: int = 2) -> int:
    """The smallest LSTM hidden size whose agent has at least ``n_params_at_least`` parameters."""
    H = 1
    while n_params(LSTMAgent(input_size, H, n_actions)) < n_params_at_least:
        H += 1
    return H
