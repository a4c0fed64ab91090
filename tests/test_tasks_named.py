"""Every named task's transition and reward statistics over many episodes, measured against
its definition written out here (issue 17), and the trial protocol (docs/SPEC.md 7.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hebbkern.tasks import MetaTaskEnv, generate_templates, named_task

B, STEPS = 3000, 40


def rollout(template, seed=0, batch=B, steps=STEPS):
    """Random actions; per step the state, flag, action, entered state, reward, trial end."""
    env = MetaTaskEnv(template, batch, steps, seed=seed, dtype=torch.float64)
    obs = env.reset()
    g = torch.Generator().manual_seed(seed + 1)
    rec = {k: [] for k in ("s", "flag", "a", "s2", "r", "end", "tstep", "obs", "next_obs")}
    for _ in range(steps):
        a = torch.randint(2, (batch,), generator=g)
        rec["s"].append(env.state.clone())
        rec["flag"].append(env.flag.clone())
        rec["tstep"].append(env.trial_step.clone())
        rec["obs"].append(obs)
        obs, r, _ = env.step(a)
        rec["a"].append(a)
        rec["s2"].append(env.entered.clone())
        rec["r"].append(r)
        rec["end"].append(env.trial_end.clone())
        rec["next_obs"].append(obs)
    out = {k: torch.stack(v) for k, v in rec.items()}  # [steps, B]
    return env, out


def assert_rate(hits, n, p, what):
    """Binomial counts within 5 standard deviations (and a small absolute slack)."""
    sd = math.sqrt(max(n * p * (1 - p), 1e-12))
    assert abs(hits - n * p) <= 5 * sd + 1e-9 * n + 0.5, f"{what}: {hits}/{n} vs p={p}"


def check_transitions(template, d):
    T = np.array(template.transitions)
    for s in range(4):
        for a in range(2):
            sel = (d["s"] == s) & (d["a"] == a)
            n = int(sel.sum())
            if n < 200:
                continue
            for s2 in range(4):
                assert_rate(int((d["s2"][sel] == s2).sum()), n, T[s, a, s2], f"T[{s},{a},{s2}]")


def check_protocol(template, env, d):
    # a trial ends on entering state 0 or after max_trial_steps; the next state is then 0
    cap = template.max_trial_steps
    expect_end = (d["s2"] == 0) | (d["tstep"] + 1 >= cap)
    assert torch.equal(d["end"], expect_end)
    assert (d["s"][1:][d["end"][:-1]] == 0).all()
    assert (d["flag"][1:][d["end"][:-1]] == 0).all()  # a trial starts with the flag down
    assert (d["s"][0] == 0).all() and (d["flag"][0] == 0).all()
    # observation: stimulus of the current state, previous action one-hot, previous reward
    D = template.stim_dim
    stim = env.stimuli[torch.arange(env.batch_size), d["s"]]  # [steps, B, D]
    assert torch.equal(d["obs"][..., :D], stim)
    assert torch.equal(
        d["next_obs"][..., D : D + 2], torch.nn.functional.one_hot(d["a"], 2).double()
    )
    assert torch.equal(d["next_obs"][..., -1], d["r"])
    assert torch.equal(d["obs"][0, :, D:], torch.zeros_like(d["obs"][0, :, D:]))


def checked_rollout(template, seed=0):
    """``template`` (or a named task) rolled out with random actions, its transitions and trial
    protocol checked; returns the template, the environment and the record."""
    t = named_task(template) if isinstance(template, str) else template
    env, d = rollout(t, seed=seed)
    check_transitions(t, d)
    check_protocol(t, env, d)
    return t, env, d


def test_bandit():
    t, env, d = checked_rollout("bandit")
    p = env.probvars[:, :2]  # [B, 2] per-instance arm probabilities, uniform in (0, 1)
    assert abs(p.mean().item() - 0.5) < 0.03 and p.min() > 0 and p.max() < 1
    expected = p.gather(1, d["a"].t()).t()  # [steps, B]
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        sel = (expected >= lo) & (expected < hi)
        n, hits, ps = int(sel.sum()), d["r"][sel].sum().item(), expected[sel]
        sd = ps.mul(1 - ps).sum().sqrt().item()
        assert abs(hits - ps.sum().item()) < 5 * sd, (lo, hi, n)
    assert torch.equal(d["end"], torch.ones_like(d["end"]))  # every step is a trial


def test_harlow():
    t, env, d = checked_rollout("harlow")
    pv = env.probvars[:, 0]
    assert set(pv.unique().tolist()) == {0.0, 1.0}
    a_rewarded = (pv == 1).expand_as(d["s"])  # object A (left in display 1) pays
    left_pays = torch.where(d["s"] == 1, a_rewarded, ~a_rewarded)
    expect = ((d["s"] > 0) & ((d["a"] == 0) == left_pays)).double()
    assert torch.equal(d["r"], expect)
    # the two displays are different variable stimuli, re-drawn per instance
    assert not torch.equal(env.stimuli[0, 1], env.stimuli[1, 1]) or not torch.equal(
        env.stimuli[2, 1], env.stimuli[3, 1]
    )


def test_two_step():
    t, env, d = checked_rollout("two_step")
    sv = env.statevars[:, 0].expand_as(d["s"])
    assert set(sv.unique().tolist()) == {1, 2}
    assert (d["r"][d["s"] == 0] == 0).all()
    for s in (1, 2):
        for good in (True, False):
            sel = (d["s"] == s) & ((sv == s) == good)
            assert_rate(int(d["r"][sel].sum()), int(sel.sum()), 0.9 if good else 0.1, (s, good))


def test_t_maze():
    t, env, d = checked_rollout("t_maze")
    sv = env.statevars[:, 0].expand_as(d["s"])
    assert torch.equal(d["r"], (d["s"] == sv).double())
    arm = d["s2"][d["s"] == 3]
    assert torch.equal(arm, d["a"][d["s"] == 3] + 1)  # corridor: action 0 left, 1 right


def test_key_door():
    t, env, d = checked_rollout("key_door")
    sv = env.statevars[:, 0]
    assert set(sv.unique().tolist()) == {1, 3}
    # at the door the flag is set exactly when the room just visited held the key
    prev = torch.cat([torch.zeros_like(d["s"][:1]), d["s"][:-1]])
    at_door = d["s"] == 2
    assert torch.equal(d["flag"][at_door], (prev == sv)[at_door].long())
    assert torch.equal(d["r"], (at_door & (d["flag"] == 1)).double())


def test_find_the_spot():
    t, env, d = checked_rollout("find_the_spot")
    sv = env.statevars[:, 0].expand_as(d["s"])
    assert set(sv.unique().tolist()) == {1, 2, 3}
    assert torch.equal(d["r"], (d["s2"] == sv).double())


# -- generated templates: the env's resolved tables against a plain-Python reading of the rules


def rule_state(code, sv):
    return code if code < 100 else sv[code - 100]


def reference_tables(t, sv, pv):
    """Reward probability, value and next flag for every (s, a, s', flag), rule by rule."""
    prob = np.zeros((4, 2, 4, 2))
    val = np.zeros((4, 2, 4, 2))
    nflag = np.zeros((4, 2, 4, 2), dtype=int)
    for s in range(4):
        for a in range(2):
            for s2 in range(4):
                for f in range(2):
                    for old, new, act, p, v, fl in t.reward_rules:
                        if old != -1 and rule_state(old, sv) != s:
                            continue
                        if new != -1 and rule_state(new, sv) != s2:
                            continue
                        if act != -1 and act != a or fl != -1 and fl != f:
                            continue
                        if p >= 2000:
                            p = 1 - pv[int(p) % 1000]
                        elif p >= 1000:
                            p = pv[int(p) % 1000]
                        prob[s, a, s2, f], val[s, a, s2, f] = p, v
                    nf = f
                    for old, new, act, v in t.flag_rules:
                        if old != -1 and rule_state(old, sv) != s:
                            continue
                        if new != -1 and rule_state(new, sv) != s2:
                            continue
                        if act != -1 and act != a:
                            continue
                        nf = v
                    nflag[s, a, s2, f] = 0 if s2 == 0 else nf
    return prob, val, nflag


def test_generated_instances_resolve_like_the_rules():
    ts = generate_templates(60, seed=9)
    env = MetaTaskEnv(ts, 400, 5, seed=2, dtype=torch.float64)
    for b in range(env.batch_size):
        t = ts[int(env.template_index[b])]
        sv = env.statevars[b].tolist()
        pv = env.probvars[b].tolist()
        assert all(sv[k] in t.statevar_ranges[k] for k in range(t.n_statevars))
        prob, val, nflag = reference_tables(t, sv, pv)
        np.testing.assert_allclose(env.reward_prob[b].numpy(), prob, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(env.reward_value[b].numpy(), val)
        np.testing.assert_array_equal(env.next_flag[b].numpy(), nflag)
        for s, code in enumerate(t.stimuli):
            if code == -1:
                assert (env.stimuli[b, s] == 0).all()
            elif code < 10000:
                assert env.stimuli[b, s].tolist() == t.fixed_stimuli[code]


@pytest.mark.parametrize("seed", [0, 1])
def test_generated_statistics(seed):
    # one template per batch, many instances: rewards per (s, a, s', flag) cell match the
    # resolved probabilities, transitions match T
    t, env, d = checked_rollout(generate_templates(1, seed=seed)[0], seed)
    b = torch.arange(env.batch_size).expand_as(d["s"])
    p = env.reward_prob[b, d["s"], d["a"], d["s2"], d["flag"]]
    v = env.reward_value[b, d["s"], d["a"], d["s2"], d["flag"]]
    assert ((d["r"] == 0) | (d["r"] == v)).all()
    hits = (d["r"] != 0).double()
    sd = p.mul(1 - p).sum().sqrt().item()
    assert abs(hits.sum().item() - p.sum().item()) <= 5 * sd + 0.5
    assert (hits[p == 0] == 0).all() and (hits[p == 1] == 1).all()
