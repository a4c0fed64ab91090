"""Random meta-task templates with the meta-parameters and acceptance filter of Miconi's
generator ("A parametrized space of simple meta-RL tasks", public code Meta-Task-Generator).

Written from the paper's description of the process; two departures, both where the public
code's own comments state a different intent:
- a reward rule on old state 0 that requires flag 1 is redrawn (entering state 0 resets the
  flag, so such a rule never fires; the public code tests state 1 instead);
- the "copy action 0's outcome to the other action, then maybe swap two outcomes" branch swaps
  with probability 0.5 (the public code draws a normal variate there).
"""

from __future__ import annotations

import numpy as np

from .template import (
    ANY,
    N_ACTIONS,
    N_STATES,
    ONE_MINUS_PROB_VAR,
    PROB_VAR,
    STATE_VAR,
    VAR_STIM,
    Template,
    accepted,
)

# Meta-parameters common to all generated meta-tasks (the public code's values).
P_USE_OLD_STATE = 1.0  # a rule's condition includes the old state
P_USE_NEW_STATE = 0.0  # ... the new state
P_USE_ACTION = 0.33  # ... the action
N_STATEVARS = 1
N_PROBVARS = 2
P_NO_STIM = 0.2  # a state shows nothing
N_VARSTIMS = 2
N_FIXEDSTIMS = 3
# Per-template draws: a choice among these values, uniform.
N_REWARD_RULES = (1, 1, 1, 2, 3)
N_FLAG_RULES = (1, 1, 1, 2)
P_STATE_IS_VARIABLE = (0.0, 0.0, 0.5)
P_REWARD_IS_PROBABILISTIC = (0.0, 0.0, 0.0, 1.0)
P_REWARD_PROB_IS_VARIABLE = (0.2, 0.5, 0.8)
P_RULE_USES_FLAG = (0.0, 0.0, 0.5)


def _transitions(rng: np.random.Generator) -> list:
    # Mostly one-hot rows, sometimes two or more outcomes (one possibly 5x likelier), often the
    # same distribution for both actions with two outcomes swapped for one action.
    T = np.zeros((N_STATES, N_ACTIONS, N_STATES))
    for s in range(N_STATES):
        for a in range(N_ACTIONS):
            main = rng.integers(N_STATES)
            T[s, a, main] = 1.0
            if rng.random() < 0.33:
                T[s, a, main] *= 5.0
            if rng.random() < 0.5:
                T[s, a, rng.integers(N_STATES)] = 1.0
                if rng.random() < 0.33:
                    T[s, a, rng.integers(N_STATES)] = 1.0
                    if rng.random() < 0.33:
                        T[s, a, rng.integers(N_STATES)] = 1.0
        if rng.random() < 0.5:
            T[s, 1:] = T[s, 0]
            support = np.flatnonzero(T[s, 0])
            if len(support) > 1 and rng.random() < 0.5:
                keep = rng.integers(N_ACTIONS)
                p1, p2 = rng.choice(support, size=2, replace=False)
                for a in range(N_ACTIONS):
                    if a != keep:
                        T[s, a, [p1, p2]] = T[s, a, [p2, p1]]
    T /= T.sum(axis=2, keepdims=True)
    return T.tolist()


def _cond(rng: np.random.Generator) -> tuple[int, int, int]:
    old = new = act = ANY
    while old == ANY and new == ANY and act == ANY:
        if rng.random() < P_USE_OLD_STATE:
            old = int(rng.integers(N_STATES))
        if rng.random() < P_USE_NEW_STATE:
            new = int(rng.integers(N_STATES))
        if rng.random() < P_USE_ACTION:
            act = int(rng.integers(N_ACTIONS))
    return old, new, act


def _draw(rng: np.random.Generator, stim_dim: int, max_trial_steps: int) -> Template:
    n_rules = int(rng.choice(N_REWARD_RULES))
    n_flag_rules = int(rng.choice(N_FLAG_RULES))
    p_state_var = float(rng.choice(P_STATE_IS_VARIABLE))
    p_prob = float(rng.choice(P_REWARD_IS_PROBABILISTIC))
    p_prob_var = float(rng.choice(P_REWARD_PROB_IS_VARIABLE))
    p_flag = float(rng.choice(P_RULE_USES_FLAG))

    ranges = []
    for _ in range(N_STATEVARS):
        size = 2 if rng.random() < 0.5 else int(rng.integers(2, N_STATES))
        ranges.append(sorted(int(x) for x in rng.choice(np.arange(1, N_STATES), size, False)))

    # At least two distinct variable stimuli if any (one alone does not vary across tasks).
    while True:
        stims = []
        for _ in range(N_STATES):
            code = (
                int(rng.integers(N_FIXEDSTIMS))
                if rng.random() < 0.666
                else VAR_STIM + int(rng.integers(N_VARSTIMS))
            )
            stims.append(ANY if rng.random() < P_NO_STIM else code)
        if len({s for s in stims if s >= VAR_STIM}) != 1:
            break
    fixed = rng.integers(0, 2, size=(N_FIXEDSTIMS, stim_dim)).tolist()

    T = _transitions(rng)

    rules = []
    for _ in range(n_rules):
        while True:
            old, new, act = _cond(rng)
            prob = 1.0
            if old != ANY and rng.random() < p_state_var:
                old = STATE_VAR + int(rng.integers(N_STATEVARS))
            if new != ANY and rng.random() < p_state_var:
                new = STATE_VAR + int(rng.integers(N_STATEVARS))
            flag = ANY
            if rng.random() < p_flag:
                flag = int(rng.choice((1, 1, 1, 0)))
            if rng.random() < p_prob:
                prob = float(rng.choice((0.2, 0.5, 0.8, 1.0)))
                if rng.random() < p_prob_var:
                    base = PROB_VAR if rng.random() < 0.5 else ONE_MINUS_PROB_VAR
                    prob = base + int(rng.integers(N_PROBVARS))
            if not (old == 0 and flag == 1):
                break
        rules.append([old, new, act, prob, 1.0, flag])

    flag_rules = []
    for _ in range(n_flag_rules):
        while True:
            old, new, act = _cond(rng)
            # State 0 may not set the flag unconditionally.
            if old != 0 or new != ANY or act != ANY:
                break
        flag_rules.append([old, new, act, int(rng.choice((1, 1, 1, 0)))])
    for fr in flag_rules:
        if fr[0] != ANY and rng.random() < p_state_var:
            fr[0] = STATE_VAR + int(rng.integers(N_STATEVARS))
        if fr[1] != ANY and rng.random() < p_state_var:
            fr[1] = STATE_VAR + int(rng.integers(N_STATEVARS))
    flag_rules[0][3] = 1  # at least one rule sets the flag

    return Template(
        transitions=T,
        stimuli=stims,
        reward_rules=rules,
        flag_rules=flag_rules,
        statevar_ranges=ranges,
        fixed_stimuli=fixed,
        stim_dim=stim_dim,
        max_trial_steps=max_trial_steps,
    )


def generate_template(
    rng: np.random.Generator | int, *, stim_dim: int = 8, max_trial_steps: int = 3
) -> tuple[Template, int]:
    """Draw templates until one passes the acceptance filter; return it and the number of
    rejected draws. ``rng`` is a numpy Generator or a seed."""
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator or an int seed, got {type(rng).__name__}")
    rejected = 0
    while True:
        t = _draw(rng, stim_dim, max_trial_steps)
        if accepted(t):
            return t, rejected
        rejected += 1


def generate_templates(
    n: int, seed: int, *, stim_dim: int = 8, max_trial_steps: int = 3
) -> list[Template]:
    """``n`` accepted templates from one seed (the same seed gives the same list)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t, _ = generate_template(rng, stim_dim=stim_dim, max_trial_steps=max_trial_steps)
        t.name = f"generated-{seed}-{i}"
        out.append(t)
    return out
