"""Drop-in proof (issue 5, item 8): a Backpropamine maze agent written the way the paper's code
writes it (eager ``bmm``, ``clamp``, a ``Linear(1, N)`` fan-out; stepped once per environment
step) has its weights copied into ``hebbkern.nn.PlasticRNNCell`` and gives the same outputs and
gradients over an episode.
"""

from __future__ import annotations

import pytest
import torch
from helpers import rel_err
from torch import nn

from hebbkern.nn import PlasticRNNCell

MAZE = 5  # open square maze with a wall around it (7 x 7 grid); the reward sits at a fixed cell
ACTIONS = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]])
INPUT_SIZE = 9 + 4 + 1 + 1  # 3x3 neighbourhood, previous action, previous reward, bias input


class PaperAgent(nn.Module):
    """The maze network of Backpropamine (Miconi et al., 2019) as its code writes it."""

    def __init__(self, isize: int, hsize: int, nbactions: int) -> None:
        super().__init__()
        self.i2h = nn.Linear(isize, hsize)
        self.w = nn.Parameter(0.001 * torch.rand(hsize, hsize))
        self.alpha = nn.Parameter(0.001 * torch.rand(hsize, hsize))
        self.h2mod = nn.Linear(hsize, 1)
        self.modfanout = nn.Linear(1, hsize)
        self.h2o = nn.Linear(hsize, nbactions)
        self.h2v = nn.Linear(hsize, 1)

    def forward(self, inputs, hidden):
        hactiv, hebb = hidden
        hprev = hactiv
        hactiv = torch.tanh(
            self.i2h(inputs)
            + hactiv.unsqueeze(1).bmm(self.w + torch.mul(self.alpha, hebb)).squeeze(1)
        )
        activout = self.h2o(hactiv)
        valueout = self.h2v(hactiv)
        deltahebb = torch.bmm(hprev.unsqueeze(2), hactiv.unsqueeze(1))
        myeta = torch.tanh(self.h2mod(hactiv)).unsqueeze(2)  # [B, 1, 1]
        myeta = self.modfanout(myeta)  # [B, 1, N]: per post-synaptic neuron
        hebb = torch.clamp(hebb + myeta * deltahebb, min=-1.0, max=1.0)
        return activout, valueout, (hactiv, hebb)


class HebbkernAgent(nn.Module):
    """The same agent with the plastic layer replaced by hebbkern's fused cell."""

    def __init__(self, isize: int, hsize: int, nbactions: int) -> None:
        super().__init__()
        self.cell = PlasticRNNCell(isize, hsize, rule="neuromod", fanout=True, clip=1.0)
        self.h2o = nn.Linear(hsize, nbactions)
        self.h2v = nn.Linear(hsize, 1)

    @torch.no_grad()
    def copy_from(self, paper: PaperAgent) -> None:
        c = self.cell
        c.weight_ih.copy_(paper.i2h.weight)
        c.bias_ih.copy_(paper.i2h.bias)
        c.w.copy_(paper.w)
        c.alpha.copy_(paper.alpha)
        c.mod_w.copy_(paper.h2mod.weight[0])
        c.mod_b.copy_(paper.h2mod.bias[0])
        c.fanout_w.copy_(paper.modfanout.weight[:, 0])
        c.fanout_b.copy_(paper.modfanout.bias)
        self.h2o.load_state_dict(paper.h2o.state_dict())
        self.h2v.load_state_dict(paper.h2v.state_dict())

    def forward(self, inputs, hidden):
        state = self.cell(inputs, hidden)
        return self.h2o(state.h), self.h2v(state.h), (state.h, state.hebb)


def observe(pos, prev_action, prev_reward):
    """3x3 neighbourhood (1 = wall), one-hot previous action, previous reward, a bias input."""
    B = pos.shape[0]
    grid = torch.ones(MAZE + 2, MAZE + 2)
    grid[1:-1, 1:-1] = 0
    rows = pos[:, 0:1] + torch.arange(-1, 2).repeat_interleave(3)
    cols = pos[:, 1:2] + torch.arange(-1, 2).repeat(3)
    x = torch.zeros(B, INPUT_SIZE)
    x[:, :9] = grid[rows, cols]
    x[torch.arange(B), 9 + prev_action] = 1.0
    x[:, 13] = prev_reward
    x[:, 14] = 1.0
    return x


def run_episode(agent, steps, B, hsize, actions=None, seed=0):
    """A2C-style episode: returns the loss and the actions taken (sampled when ``actions`` is None,
    else replayed, so two agents see the same inputs)."""
    g = torch.Generator().manual_seed(seed)  # the environment
    g_policy = torch.Generator().manual_seed(seed + 1)
    pos = torch.randint(1, MAZE + 1, (B, 2), generator=g)
    reward_at = torch.tensor([MAZE // 2 + 1, MAZE // 2 + 1])
    hidden = (torch.zeros(B, hsize), torch.zeros(B, hsize, hsize))
    prev_a, prev_r = torch.zeros(B, dtype=torch.long), torch.zeros(B)
    logps, values, rewards, taken, logits_all = [], [], [], [], []
    for t in range(steps):
        logits, value, hidden = agent(observe(pos, prev_a, prev_r), hidden)
        probs = torch.softmax(logits, 1)
        a = (
            torch.multinomial(probs.detach(), 1, generator=g_policy)[:, 0]
            if actions is None
            else actions[t]
        )
        new = pos + ACTIONS[a]
        blocked = ((new < 1) | (new > MAZE)).any(1)
        pos = torch.where(blocked[:, None], pos, new)
        r = (pos == reward_at).all(1).float() - 0.1 * blocked.float()
        # Each sample's own value baseline (SPEC.md section 9).
        logps.append(torch.log(probs[torch.arange(B), a]))
        values.append(value[:, 0])
        rewards.append(r)
        taken.append(a)
        logits_all.append(logits)
        prev_a, prev_r = a, r
        relocate = (pos == reward_at).all(1)
        pos = torch.where(relocate[:, None], torch.randint(1, MAZE + 1, (B, 2), generator=g), pos)
    ret, loss = torch.zeros(B), 0.0
    for t in reversed(range(steps)):
        ret = rewards[t] + 0.9 * ret
        adv = ret - values[t]
        loss = loss - (logps[t] * adv.detach()).mean() + 0.1 * adv.square().mean()
    return loss, taken, torch.stack(logits_all), hidden


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_backpropamine_agent_drops_in(backend):
    from hebbkern import use_backend

    torch.manual_seed(0)
    B, hsize, steps = 6, 20, 30
    paper = PaperAgent(INPUT_SIZE, hsize, 4)
    with torch.no_grad():  # a trained agent: plasticity large enough to matter
        paper.w.normal_(0, 0.3)
        paper.alpha.normal_(0, 0.3)
    ours = HebbkernAgent(INPUT_SIZE, hsize, 4)
    ours.copy_from(paper)

    loss_p, actions, logits_p, (h_p, hebb_p) = run_episode(paper, steps, B, hsize)
    with use_backend(backend):
        loss_o, _, logits_o, (h_o, hebb_o) = run_episode(ours, steps, B, hsize, actions=actions)
    assert rel_err(logits_o, logits_p) < 1e-5
    assert rel_err(hebb_o, hebb_p) < 1e-5
    assert (hebb_p.abs() == 1).any(), "the clip must bite for the test to cover it"
    assert abs(loss_o.item() - loss_p.item()) < 1e-5 * abs(loss_p.item())

    names_p, params_p = zip(*paper.named_parameters(), strict=True)
    names_o, params_o = zip(*ours.named_parameters(), strict=True)
    gp = dict(zip(names_p, torch.autograd.grad(loss_p, params_p), strict=True))
    go = dict(zip(names_o, torch.autograd.grad(loss_o, params_o), strict=True))
    pairs = {
        "cell.weight_ih": gp["i2h.weight"], "cell.bias_ih": gp["i2h.bias"], "cell.w": gp["w"],
        "cell.alpha": gp["alpha"], "cell.mod_w": gp["h2mod.weight"][0],
        "cell.mod_b": gp["h2mod.bias"][0], "cell.fanout_w": gp["modfanout.weight"][:, 0],
        "cell.fanout_b": gp["modfanout.bias"], "h2o.weight": gp["h2o.weight"],
        "h2o.bias": gp["h2o.bias"], "h2v.weight": gp["h2v.weight"], "h2v.bias": gp["h2v.bias"],
    }  # fmt: skip
    assert set(pairs) == set(go)
    for name, ref in pairs.items():
        assert ref.norm() > 0, name
        assert rel_err(go[name], ref) < 1e-4, name
