"""Batched meta-task environments on torch tensors (docs/SPEC.md section 7.1).

``B`` episodes run in lockstep, each with its own task instance (and, when several templates
are given, its own template). At reset every instance is resolved into per-episode lookup tables
(transition rows, and reward probability, reward value and next flag for every
``(state, action, next state, flag)``), so that a step is a fixed, short sequence of batched
tensor ops: no Python loop over the batch or over rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._validation import check_positive_ints
from .template import (
    ANY,
    N_ACTIONS,
    N_STATES,
    ONE_MINUS_PROB_VAR,
    PROB_VAR,
    STATE_VAR,
    VAR_STIM,
    Template,
)

_Q = 5040  # cells of the inverse-CDF transition table (lcm(1..10) * 2)


def _transition_cell(trow: Tensor, state: Tensor, a: Tensor, u: Tensor) -> Tensor:
    # cell of the inverse-CDF table: row (template, s, a), column floor(u * Q)
    return (trow + state * N_ACTIONS + a) * _Q + (u * _Q).long()


def _step_core(s2, a, u, state, flag, trial_step, trial_index, cap, base8, prob, value, nflag,
               obs_table):  # fmt: skip
    """Everything after the transition draw: reward, flag, trial bookkeeping, observation.
    A pure function of tensors, so that ``compile=True`` can fuse it into one kernel."""
    row = base8 + state * N_ACTIONS + a  # episode, s, a
    idx = (row * 2 + flag) * N_STATES + s2  # episode, s, a, flag, s'
    reward = torch.where(u < prob.index_select(0, idx), value.index_select(0, idx), 0.0)
    nf = nflag.index_select(0, idx)
    step = trial_step + 1
    end = (s2 == 0) | (step >= cap)
    state = s2.masked_fill(end, 0)
    obs = obs_table.index_select(0, base8 + state * N_ACTIONS + a)
    obs = torch.cat([obs[:, :-1], reward.unsqueeze(1)], 1)
    return (state, nf.masked_fill(end, 0), step.masked_fill(end, 0), trial_index + end, end,
            reward, obs)  # fmt: skip


def _pad(items: list, length: int, fill) -> list:
    return list(items) + [fill] * (length - len(items))


class MetaTaskEnv:
    """A batch of meta-task episodes.

    Args:
        templates: one :class:`Template` or a sequence; with several, each episode draws its
            template uniformly at every reset (or takes ``template_index`` given to ``reset``).
        batch_size: number of parallel episodes ``B``.
        episode_steps: steps per episode (all episodes in a batch have the same length).
        device, dtype: of observations and rewards.
        seed: seeds the environment's own ``torch.Generator`` (instances, transitions, rewards).
        compile: run the step's arithmetic through ``torch.compile`` (one fused kernel; the
            first step compiles, about a minute on a small CPU). Same results as eager.

    Observation ``[B, stim_dim + 3]``: the current state's stimulus (zeros for none), the
    previous action one-hot and the previous reward (zeros at the start of an episode).

    ``step(action)`` with ``action`` an int tensor ``[B]`` returns ``(obs, reward, done)``,
    ``done`` a Python bool, True on the episode's last step (call ``reset`` then). After a step,
    ``entered`` ``[B]`` is the state the transition led to, ``state`` the current state (0 after
    a trial ended), ``trial_end`` ``[B]`` says which episodes just ended a trial, and
    ``trial_index`` ``[B]`` holds the index (from 0) of the trial each episode is now in. The
    resolved instance is in ``template_index``, ``statevars``, ``probvars``, ``stimuli`` and the
    tables ``reward_prob``, ``reward_value``, ``next_flag`` ``[B, s, a, s', flag]``.
    """

    def __init__(
        self,
        templates: Template | Sequence[Template],
        batch_size: int,
        episode_steps: int = 100,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        compile: bool = False,
    ) -> None:
        if isinstance(templates, Template):
            templates = [templates]
        templates = list(templates)
        if not templates or not all(isinstance(t, Template) for t in templates):
            raise TypeError("templates must be a Template or a non-empty sequence of Templates")
        dims = {t.stim_dim for t in templates}
        if len(dims) != 1:
            raise ValueError(f"templates must share one stim_dim, got {sorted(dims)}")
        check_positive_ints(batch_size=batch_size, episode_steps=episode_steps)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.templates = templates
        self.batch_size, self.episode_steps = batch_size, episode_steps
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.stim_dim = dims.pop()
        self.obs_size = self.stim_dim + N_ACTIONS + 1
        self.n_actions = N_ACTIONS
        self._core = torch.compile(_step_core, dynamic=False) if compile else _step_core
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(seed) if seed is not None else torch.seed())
        self._pack()
        self.reset()

    # -- templates as padded tensors -------------------------------------------------------
    def _pack(self) -> None:
        ts, dev = self.templates, self.device
        K = len(ts)
        f64 = dict(device=dev, dtype=torch.float64)
        i64 = dict(device=dev, dtype=torch.long)
        T = torch.tensor([t.transitions for t in ts], **f64)  # [K, 4, 2, 4]
        self._T = T
        # Transitions are drawn by inverse CDF from a table of Q cells per (template, s, a),
        # which is exact when every probability is a multiple of 1/Q: true for the generated
        # templates (denominators <= 8) and the named ones (tenths). Otherwise the step
        # compares a uniform number with the cumulative probabilities (slower, also exact).
        cells = T * _Q
        self._quantized = bool((cells - cells.round()).abs().max() < 1e-6)
        if self._quantized:
            edges = cells.round().long().cumsum(-1)  # [K, 4, 2, 4], last = Q
            pos = torch.arange(_Q, device=dev)
            nxt = (pos.view(1, 1, 1, 1, _Q) >= edges.unsqueeze(-1)).sum(3)  # [K, 4, 2, Q]
            self._next = nxt.to(torch.uint8).reshape(-1)
        cum = T.cumsum(-1)
        cum = torch.where((cum[..., -1:] - cum) <= 1e-12, torch.full_like(cum, 2.0), cum)
        self._tcum = cum[..., :3].to(self.dtype).reshape(K * N_STATES * N_ACTIONS, 3)
        self._max_trial = torch.tensor([t.max_trial_steps for t in ts], **i64)
        R = max(1, max(len(t.reward_rules) for t in ts))
        rr = [_pad(t.reward_rules, R, [ANY, ANY, ANY, 0.0, 0.0, ANY]) for t in ts]
        self._rules = torch.tensor(rr, **f64)  # [K, R, 6]
        self._rule_valid = torch.tensor([_pad([1] * len(t.reward_rules), R, 0) for t in ts],
                                        device=dev).bool()  # fmt: skip
        FR = max(1, max(len(t.flag_rules) for t in ts))
        fr = [_pad(t.flag_rules, FR, [ANY, ANY, ANY, 0]) for t in ts]
        self._frules = torch.tensor(fr, **i64)  # [K, FR, 4]
        self._frule_valid = torch.tensor([_pad([1] * len(t.flag_rules), FR, 0) for t in ts],
                                         device=dev).bool()  # fmt: skip
        SV = max(1, max(t.n_statevars for t in ts))
        W = N_STATES
        ranges = [_pad(t.statevar_ranges, SV, [0]) for t in ts]
        # [K, SV, 4] values and [K, SV] lengths of the state variables' ranges
        self._sv_vals = torch.tensor([[_pad(x, W, 0) for x in r] for r in ranges], **i64)
        self._sv_len = torch.tensor([[len(x) for x in r] for r in ranges], **i64)  # [K, SV]
        PV = max(1, max(t.n_probvars for t in ts))
        V = max([1] + [len(v) for t in ts for v in t.probvar_values.values()])
        pvals = [[t.probvar_values.get(k, []) for k in range(PV)] for t in ts]
        self._pv_len = torch.tensor([[len(v) for v in p] for p in pvals], **i64)  # 0: uniform
        # [K, PV, V] listed values
        self._pv_vals = torch.tensor([[_pad(v, V, 0.0) for v in p] for p in pvals], **f64)
        self._stim_codes = torch.tensor([t.stimuli for t in ts], **i64)  # [K, 4]
        NF = max(1, max(len(t.fixed_stimuli) for t in ts))
        fixed = [_pad(t.fixed_stimuli, NF, [0] * self.stim_dim) for t in ts]
        self._fixed = torch.tensor(fixed, device=dev, dtype=self.dtype)  # [K, NF, D]
        self._n_varstims = max(1, max(t.n_varstims for t in ts))

    # -- instances -------------------------------------------------------------------------
    def reset(self, template_index: Tensor | None = None) -> Tensor:
        """Draw a new instance per episode and return the first observation ``[B, obs]``."""
        B, dev, g = self.batch_size, self.device, self.gen
        K = len(self.templates)
        if template_index is None:
            tidx = torch.randint(K, (B,), device=dev, generator=g)
        else:
            tidx = torch.as_tensor(template_index, device=dev, dtype=torch.long)
            if tidx.shape != (B,) or (tidx < 0).any() or (tidx >= K).any():
                raise ValueError(f"template_index must be [{B}] ints in [0, {K})")
        self.template_index = tidx
        # state variables: uniform over each template's range
        n = self._sv_len[tidx]  # [B, SV]
        pick = (torch.rand(n.shape, device=dev, generator=g, dtype=torch.float64) * n).long()
        self.statevars = self._sv_vals[tidx].gather(2, pick.unsqueeze(2)).squeeze(2)  # [B, SV]
        # probability variables: uniform (0, 1), or one of the template's values
        u = torch.rand(self._pv_len[tidx].shape, device=dev, generator=g, dtype=torch.float64)
        n = self._pv_len[tidx]
        idx = (u * n.clamp(min=1)).long().clamp(max=self._pv_vals.shape[2] - 1)
        listed = self._pv_vals[tidx].gather(2, idx.unsqueeze(2)).squeeze(2)
        self.probvars = torch.where(n > 0, listed, u)  # [B, PV]
        # stimuli: none, fixed (template) or variable (drawn now)
        D = self.stim_dim
        var = torch.randint(0, 2, (B, self._n_varstims, D), device=dev, generator=g)
        codes = self._stim_codes[tidx]  # [B, 4]
        fixed = self._fixed[tidx].gather(
            1, codes.clamp(0, self._fixed.shape[1] - 1).unsqueeze(2).expand(B, N_STATES, D)
        )
        varst = var.to(self.dtype).gather(
            1, (codes - VAR_STIM).clamp(0, self._n_varstims - 1).unsqueeze(2).expand(-1, -1, D)
        )
        stim = torch.where((codes >= VAR_STIM).unsqueeze(2), varst, fixed)
        self.stimuli = torch.where((codes == ANY).unsqueeze(2), torch.zeros_like(stim), stim)
        self._resolve_rules(tidx)
        self._trial_cap = self._max_trial[tidx]
        self._trow = tidx * (N_STATES * N_ACTIONS)  # template, s, a row of the transitions
        self.state = torch.zeros(B, dtype=torch.long, device=dev)
        self.flag = torch.zeros(B, dtype=torch.long, device=dev)
        self.trial_step = torch.zeros(B, dtype=torch.long, device=dev)
        self.trial_index = torch.zeros(B, dtype=torch.long, device=dev)
        self.trial_end = torch.zeros(B, dtype=torch.bool, device=dev)
        self.entered = torch.zeros(B, dtype=torch.long, device=dev)
        self.t = 0
        self._obs = torch.zeros(B, self.obs_size, device=dev, dtype=self.dtype)
        self._obs[:, :D] = self.stimuli[:, 0]
        return self._obs.clone()

    def _state_match(self, code: Tensor, axis_len: int = N_STATES) -> Tensor:
        # code [B] (-1, a state, or 100+k) -> [B, 4] mask of the states it names
        sv = self.statevars.gather(1, (code - STATE_VAR).clamp(0, self.statevars.shape[1] - 1)
                                   .unsqueeze(1)).squeeze(1)  # fmt: skip
        concrete = torch.where(code >= STATE_VAR, sv, code)
        states = torch.arange(axis_len, device=code.device)
        return (code == ANY).unsqueeze(1) | (states == concrete.unsqueeze(1))

    def _resolve_rules(self, tidx: Tensor) -> None:
        B, dev = tidx.shape[0], self.device
        shape = (B, N_STATES, N_ACTIONS, N_STATES, 2)
        prob = torch.zeros(shape, device=dev, dtype=torch.float64)
        value = torch.zeros(shape, device=dev, dtype=torch.float64)
        rules, valid = self._rules[tidx], self._rule_valid[tidx]  # [B, R, 6], [B, R]
        acts = torch.arange(N_ACTIONS, device=dev)
        flags = torch.arange(2, device=dev)
        for r in range(rules.shape[1]):  # later rules override earlier ones
            old, new, act = (rules[:, r, i].long() for i in range(3))
            p, val, fl = rules[:, r, 3], rules[:, r, 4], rules[:, r, 5].long()
            m = (
                self._state_match(old)[:, :, None, None, None]
                & ((act == ANY).unsqueeze(1) | (acts == act.unsqueeze(1)))[:, None, :, None, None]
                & self._state_match(new)[:, None, None, :, None]
                & ((fl == ANY).unsqueeze(1) | (flags == fl.unsqueeze(1)))[:, None, None, None, :]
                & valid[:, r, None, None, None, None]
            )  # fmt: skip
            k = (p.long() % 1000).clamp(max=self.probvars.shape[1] - 1)
            pv = self.probvars.gather(1, k.unsqueeze(1)).squeeze(1)
            pr = torch.where(p >= ONE_MINUS_PROB_VAR, 1 - pv, torch.where(p >= PROB_VAR, pv, p))
            prob = torch.where(m, pr[:, None, None, None, None], prob)
            value = torch.where(m, val[:, None, None, None, None], value)
        nflag = flags.view(1, 1, 1, 1, 2).expand(shape).clone()
        frules, fvalid = self._frules[tidx], self._frule_valid[tidx]
        for r in range(frules.shape[1]):
            old, new, act, fv = frules[:, r].unbind(1)
            m = (
                self._state_match(old)[:, :, None, None, None]
                & ((act == ANY).unsqueeze(1) | (acts == act.unsqueeze(1)))[:, None, :, None, None]
                & self._state_match(new)[:, None, None, :, None]
                & fvalid[:, r, None, None, None, None]
            )  # fmt: skip
            nflag = torch.where(m, fv[:, None, None, None, None], nflag)
        nflag[:, :, :, 0, :] = 0  # entering state 0 resets the flag
        self.reward_prob = prob  # [B, s, a, s', flag], for tests and analysis
        self.reward_value = value
        self.next_flag = nflag
        # reward probability, reward value and next flag, indexed [b, s, a, flag, s']
        order = (0, 1, 2, 4, 3)
        self._prob = prob.permute(order).reshape(-1).to(self.dtype).contiguous()
        self._value = value.permute(order).reshape(-1).to(self.dtype).contiguous()
        self._nflag = nflag.permute(order).reshape(-1).contiguous()
        # observation before the reward: stimulus of the state, one-hot of the previous action,
        # indexed [b, state, action]; the last column is overwritten with the reward
        D = self.stim_dim
        obs = torch.zeros(B, N_STATES, N_ACTIONS, D + N_ACTIONS + 1, device=dev, dtype=self.dtype)
        obs[..., :D] = self.stimuli.unsqueeze(2)
        obs[..., D : D + N_ACTIONS] = torch.eye(N_ACTIONS, device=dev, dtype=self.dtype)
        self._obs_table = obs.reshape(B * N_STATES * N_ACTIONS, -1)
        self._base8 = torch.arange(B, device=dev) * (N_STATES * N_ACTIONS)

    # -- stepping --------------------------------------------------------------------------
    def step(self, action: Tensor) -> tuple[Tensor, Tensor, bool]:
        if not isinstance(action, Tensor):
            raise TypeError(f"action must be a torch.Tensor, got {type(action).__name__}")
        if action.shape != (self.batch_size,) or action.dtype.is_floating_point:
            raise ValueError(f"action must be an int tensor of shape [{self.batch_size}]")
        if self.t >= self.episode_steps:
            raise RuntimeError("the episode is over: call reset()")
        a = action.to(self.device, torch.long)
        u = torch.rand(2, self.batch_size, device=self.device, generator=self.gen,
                       dtype=self.dtype)  # fmt: skip
        if self._quantized:
            cell = _transition_cell(self._trow, self.state, a, u[0])
            s2 = self._next.index_select(0, cell).long()
        else:
            bounds = self._tcum.index_select(0, self._trow + self.state * N_ACTIONS + a)
            s2 = (u[0].unsqueeze(1) >= bounds).sum(1)
        out = self._core(
            s2, a, u[1], self.state, self.flag, self.trial_step, self.trial_index,
            self._trial_cap, self._base8, self._prob, self._value, self._nflag, self._obs_table,
        )  # fmt: skip
        self.entered = s2  # the state the transition led to, before a trial-end restart
        self.state, self.flag, self.trial_step, self.trial_index, self.trial_end = out[:5]
        reward, obs = out[5:]
        self.t += 1
        return obs, reward, self.t >= self.episode_steps
