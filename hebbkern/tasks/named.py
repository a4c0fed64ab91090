"""Named meta-tasks of the literature written as templates (docs/SPEC.md section 7.1).

Each is a function ``name(stim_dim=8, seed=0) -> Template``; the seed only draws the fixed
stimulus vectors. State 3 is unused (unreachable, no stimulus) where a task needs 3 states.
"""

from __future__ import annotations

import numpy as np

from .template import ANY, ONE_MINUS_PROB_VAR, PROB_VAR, STATE_VAR, VAR_STIM, Template

_BACK_TO_0 = [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]


def _onehot(s: int) -> list:
    return [float(i == s) for i in range(4)]


def _fixed(n: int, stim_dim: int, seed: int) -> list:
    # Distinct binary vectors, so that states with different fixed stimuli look different.
    rng = np.random.default_rng(seed)
    while True:
        v = rng.integers(0, 2, size=(n, stim_dim))
        if len({tuple(r) for r in v}) == n:
            return v.tolist()


def bandit(stim_dim: int = 8, seed: int = 0) -> Template:
    """2-armed bandit: one state; action ``a`` pays 1 with probability ``p_a``, both drawn per
    instance uniform in (0, 1). Every step is a trial."""
    return Template(
        name="bandit",
        transitions=[[_onehot(0), _onehot(0)]] + [_BACK_TO_0] * 3,
        stimuli=[0, ANY, ANY, ANY],
        reward_rules=[[0, ANY, 0, PROB_VAR + 0, 1.0, ANY], [0, ANY, 1, PROB_VAR + 1, 1.0, ANY]],
        fixed_stimuli=_fixed(1, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=1,
    )


def harlow(stim_dim: int = 8, seed: int = 0) -> Template:
    """Harlow: state 0 leads at random to display 1 (object A left, B right) or display 2
    (swapped); both displays are variable stimuli. Per instance one object is the rewarded one:
    ``p`` in {0, 1} is 1 when A is, then action 0 (left) pays in display 1 and action 1 in
    display 2 (the reverse when ``p`` = 0)."""
    half = [0.0, 0.5, 0.5, 0.0]
    return Template(
        name="harlow",
        transitions=[[half, half], _BACK_TO_0, _BACK_TO_0, _BACK_TO_0],
        stimuli=[0, VAR_STIM + 0, VAR_STIM + 1, ANY],
        reward_rules=[
            [1, ANY, 0, PROB_VAR, 1.0, ANY],
            [1, ANY, 1, ONE_MINUS_PROB_VAR, 1.0, ANY],
            [2, ANY, 0, ONE_MINUS_PROB_VAR, 1.0, ANY],
            [2, ANY, 1, PROB_VAR, 1.0, ANY],
        ],
        fixed_stimuli=_fixed(1, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=2,
        probvar_values={0: [0.0, 1.0]},
    )


def two_step(stim_dim: int = 8, seed: int = 0) -> Template:
    """Daw two-step: in state 0 action 0 leads to state 1 with 0.9 (state 2 with 0.1), action 1
    the reverse; leaving state 1 or 2 pays 0.9 in the per-instance rewarded state, 0.1 in the
    other."""
    return Template(
        name="two_step",
        transitions=[
            [[0.0, 0.9, 0.1, 0.0], [0.0, 0.1, 0.9, 0.0]],
            _BACK_TO_0,
            _BACK_TO_0,
            _BACK_TO_0,
        ],
        stimuli=[0, 1, 2, ANY],
        reward_rules=[
            [1, ANY, ANY, 0.1, 1.0, ANY],
            [2, ANY, ANY, 0.1, 1.0, ANY],
            [STATE_VAR, ANY, ANY, 0.9, 1.0, ANY],
        ],
        statevar_ranges=[[1, 2]],
        fixed_stimuli=_fixed(3, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=2,
    )


def t_maze(stim_dim: int = 8, seed: int = 0) -> Template:
    """T-maze: start (0) -> corridor (3) -> action 0 left arm (1), action 1 right arm (2) ->
    back to the start; the reward (1.0) is in the arm drawn per instance."""
    return Template(
        name="t_maze",
        transitions=[
            [_onehot(3), _onehot(3)],
            _BACK_TO_0,
            _BACK_TO_0,
            [_onehot(1), _onehot(2)],
        ],
        stimuli=[0, 1, 1, 2],
        reward_rules=[[STATE_VAR, ANY, ANY, 1.0, 1.0, ANY]],
        statevar_ranges=[[1, 2]],
        fixed_stimuli=_fixed(3, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=3,
    )


def key_door(stim_dim: int = 8, seed: int = 0) -> Template:
    """Key-door: start (0) -> action 0 room 1, action 1 room 3; either room leads to the door
    (2), which pays 1.0 only when the flag is set; leaving the room drawn per instance picks up
    the key (sets the flag). The flag resets on return to the start."""
    return Template(
        name="key_door",
        transitions=[
            [_onehot(1), _onehot(3)],
            [_onehot(2), _onehot(2)],
            _BACK_TO_0,
            [_onehot(2), _onehot(2)],
        ],
        stimuli=[0, 1, 2, 1],
        reward_rules=[[2, ANY, ANY, 1.0, 1.0, 1]],
        flag_rules=[[STATE_VAR, ANY, ANY, 1]],
        statevar_ranges=[[1, 3]],
        fixed_stimuli=_fixed(3, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=3,
    )


def find_the_spot(stim_dim: int = 8, seed: int = 0) -> Template:
    """Find-the-spot on a 2 x 2 grid (the 2-D extension): state = 2 y + x, action 0 toggles x,
    action 1 toggles y; entering the spot (drawn per instance among 1, 2, 3) pays 1.0. A trial
    is 2 moves at most (the far corner is 2 moves away)."""
    return Template(
        name="find_the_spot",
        transitions=[
            [_onehot(1), _onehot(2)],
            [_onehot(0), _onehot(3)],
            [_onehot(3), _onehot(0)],
            [_onehot(2), _onehot(1)],
        ],
        stimuli=[0, 1, 2, 3],
        reward_rules=[[ANY, STATE_VAR, ANY, 1.0, 1.0, ANY]],
        statevar_ranges=[[1, 2, 3]],
        fixed_stimuli=_fixed(4, stim_dim, seed),
        stim_dim=stim_dim,
        max_trial_steps=2,
    )


NAMED = {
    "bandit": bandit,
    "harlow": harlow,
    "two_step": two_step,
    "t_maze": t_maze,
    "key_door": key_door,
    "find_the_spot": find_the_spot,
}


def named_task(name: str, stim_dim: int = 8, seed: int = 0) -> Template:
    if name not in NAMED:
        raise ValueError(f"name must be one of {sorted(NAMED)}, got {name!r}")
    return NAMED[name](stim_dim=stim_dim, seed=seed)
