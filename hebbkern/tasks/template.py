"""Meta-task templates (docs/SPEC.md section 7): the data, validation, JSON, the acceptance filter.

A template is one *meta-task*: 4 hidden states, 2 actions, a transition table ``T[s, a, s']``,
a stimulus code per state, ordered reward rules and flag rules. Some entries are *variables*,
re-drawn for every task instance (an episode). The integer codes are the paper's:

- state fields: ``-1`` any, ``0..3`` a state, ``100 + k`` state variable ``k`` (drawn per
  instance from ``statevar_ranges[k]``);
- reward probabilities: a number in ``[0, 1]``, ``1000 + k`` probability variable ``k``,
  ``2000 + k`` one minus probability variable ``k`` (drawn per instance, uniform in (0, 1), or
  from ``probvar_values[k]`` when a template lists values, which the named tasks use);
- stimuli: ``-1`` none (zeros), ``0..`` a fixed stimulus (``fixed_stimuli[i]``, a binary vector
  drawn once with the template), ``10000 + k`` variable stimulus ``k`` (a binary vector re-drawn
  per instance).

The episode/trial protocol that runs a template is in docs/SPEC.md section 7.1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

N_STATES = 4
N_ACTIONS = 2
ANY = -1
STATE_VAR = 100
PROB_VAR = 1000
ONE_MINUS_PROB_VAR = 2000
VAR_STIM = 10000


@dataclass
class Template:
    """One meta-task. Rules are lists so that a template reads like the paper's JSON.

    reward_rules: ``[old_state, new_state, action, probability, value, flag]`` (flag ``-1``
    don't care, ``0``/``1`` required value); later matching rules override earlier ones.
    flag_rules: ``[old_state, new_state, action, new_flag]``; entering state 0 resets the flag.
    """

    transitions: list  # [4][2][4], rows sum to 1
    stimuli: list  # [4] codes
    reward_rules: list
    flag_rules: list = field(default_factory=list)
    statevar_ranges: list = field(default_factory=list)
    fixed_stimuli: list = field(default_factory=list)  # [n_fixed][stim_dim] of 0/1
    stim_dim: int = 8
    max_trial_steps: int = 3
    probvar_values: dict = field(default_factory=dict)  # {k: [values]}; absent -> uniform(0, 1)
    name: str = ""

    def __post_init__(self) -> None:
        validate(self)

    # -- derived counts --------------------------------------------------------------------
    @property
    def n_statevars(self) -> int:
        return len(self.statevar_ranges)

    @property
    def n_probvars(self) -> int:
        ks = [int(r[3]) % 1000 for r in self.reward_rules if r[3] >= PROB_VAR]
        ks += [int(k) for k in self.probvar_values]
        return max(ks) + 1 if ks else 0

    @property
    def n_varstims(self) -> int:
        ks = [s - VAR_STIM for s in self.stimuli if s >= VAR_STIM]
        return max(ks) + 1 if ks else 0

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "T": self.transitions,
            "stimuli": self.stimuli,
            "rewardconditions": self.reward_rules,
            "flagconditions": self.flag_rules,
            "statevarranges": self.statevar_ranges,
            "fixed_stimuli": self.fixed_stimuli,
            "stim_dim": self.stim_dim,
            "max_trial_steps": self.max_trial_steps,
            "probvar_values": {str(k): v for k, v in self.probvar_values.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Template:
        if not isinstance(d, dict):
            raise TypeError(f"d must be a dict, got {type(d).__name__}")
        for key in ("T", "stimuli", "rewardconditions", "fixed_stimuli"):
            if key not in d:
                raise ValueError(f"template dict is missing {key!r}")
        return cls(
            transitions=d["T"],
            stimuli=d["stimuli"],
            reward_rules=d["rewardconditions"],
            flag_rules=d.get("flagconditions", []),
            statevar_ranges=d.get("statevarranges", []),
            fixed_stimuli=d["fixed_stimuli"],
            stim_dim=d.get("stim_dim", len(d["fixed_stimuli"][0]) if d["fixed_stimuli"] else 8),
            max_trial_steps=d.get("max_trial_steps", 3),
            probvar_values={int(k): v for k, v in d.get("probvar_values", {}).items()},
            name=d.get("name", ""),
        )


def save_templates(templates: list[Template], path: str | Path) -> None:
    """Write templates as one JSON list."""
    Path(path).write_text(json.dumps([t.to_dict() for t in templates], indent=1))


def load_templates(path: str | Path) -> list[Template]:
    """Read templates written by :func:`save_templates`."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of templates")
    return [Template.from_dict(d) for d in data]


def _check_state_code(val, what: str, n_sv: int) -> None:
    ok = val == ANY or 0 <= val < N_STATES or STATE_VAR <= val < STATE_VAR + n_sv
    if not isinstance(val, int) or isinstance(val, bool) or not ok:
        raise ValueError(f"{what} must be -1, a state 0..3 or a state variable 100+k, got {val!r}")


def validate(t: Template) -> None:
    """Raise ValueError naming the field when a template is malformed."""
    T = t.transitions
    if len(T) != N_STATES or any(len(row) != N_ACTIONS for row in T):
        raise ValueError("transitions must have shape [4][2][4]")
    for s in range(N_STATES):
        for a in range(N_ACTIONS):
            p = T[s][a]
            if len(p) != N_STATES or any(x < 0 for x in p) or not math.isclose(sum(p), 1.0):
                raise ValueError(f"transitions[{s}][{a}] must be 4 probabilities summing to 1")
    if len(t.stimuli) != N_STATES:
        raise ValueError("stimuli must have 4 codes")
    if not isinstance(t.stim_dim, int) or t.stim_dim < 1:
        raise ValueError(f"stim_dim must be a positive int, got {t.stim_dim!r}")
    for v in t.fixed_stimuli:
        if len(v) != t.stim_dim or any(x not in (0, 1) for x in v):
            raise ValueError("fixed_stimuli must be binary vectors of length stim_dim")
    for s in t.stimuli:
        ok = s == ANY or 0 <= s < len(t.fixed_stimuli) or s >= VAR_STIM
        if not ok:
            raise ValueError(f"stimuli code {s!r} is not -1, a fixed stimulus or 10000+k")
    for k, rng in enumerate(t.statevar_ranges):
        if not rng or any(not 0 <= x < N_STATES for x in rng):
            raise ValueError(f"statevar_ranges[{k}] must be a non-empty list of states")
    n_sv = len(t.statevar_ranges)
    for i, r in enumerate(t.reward_rules):
        if len(r) != 6:
            raise ValueError(f"reward_rules[{i}] must be [old, new, action, prob, value, flag]")
        _check_state_code(r[0], f"reward_rules[{i}] old state", n_sv)
        _check_state_code(r[1], f"reward_rules[{i}] new state", n_sv)
        if r[2] not in (ANY, 0, 1):
            raise ValueError(f"reward_rules[{i}] action must be -1, 0 or 1")
        if not (0.0 <= r[3] <= 1.0 or r[3] >= PROB_VAR):
            raise ValueError(f"reward_rules[{i}] probability must be in [0, 1] or 1000+k/2000+k")
        if r[5] not in (ANY, 0, 1):
            raise ValueError(f"reward_rules[{i}] flag must be -1, 0 or 1")
    for i, r in enumerate(t.flag_rules):
        if len(r) != 4:
            raise ValueError(f"flag_rules[{i}] must be [old, new, action, new_flag]")
        _check_state_code(r[0], f"flag_rules[{i}] old state", n_sv)
        _check_state_code(r[1], f"flag_rules[{i}] new state", n_sv)
        if r[2] not in (ANY, 0, 1) or r[3] not in (0, 1):
            raise ValueError(f"flag_rules[{i}] action must be -1/0/1 and new_flag 0/1")
    if not isinstance(t.max_trial_steps, int) or t.max_trial_steps < 1:
        raise ValueError(f"max_trial_steps must be a positive int, got {t.max_trial_steps!r}")
    for k, vals in t.probvar_values.items():
        if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
            raise ValueError(f"probvar_values[{k}] must be a non-empty list of probabilities")


def acceptance(t: Template) -> dict[str, bool]:
    """The generator's acceptance criteria (each must hold for a generated template).

    - ``varies``: something changes across instances: two or more variable stimuli, a reward
      rule on a state variable, or a probability variable with more than one reward rule (one
      rule with a random probability is the same meta-task as a fixed one);
    - ``actions_matter``: at least two states where the two actions lead to different outcomes;
    - ``zero_not_absorbing``: some action leaves state 0 with positive probability;
    - ``all_reachable``: every state is entered from some other state.
    """
    T = t.transitions
    var_stims = {s for s in t.stimuli if s >= VAR_STIM}
    rule_codes = [c for r in t.reward_rules for c in (r[0], r[1])]
    varies = (
        len(var_stims) >= 2
        or any(STATE_VAR <= c < PROB_VAR for c in rule_codes)
        or (any(r[3] >= PROB_VAR for r in t.reward_rules) and len(t.reward_rules) > 1)
    )
    actions_matter = sum(T[s][0] != T[s][1] for s in range(N_STATES)) >= 2
    zero_not_absorbing = any(T[0][a][0] < 1.0 for a in range(N_ACTIONS))
    all_reachable = all(
        any(T[s2][a][s] > 0 for s2 in range(N_STATES) if s2 != s for a in range(N_ACTIONS))
        for s in range(N_STATES)
    )
    return {
        "varies": varies,
        "actions_matter": actions_matter,
        "zero_not_absorbing": zero_not_absorbing,
        "all_reachable": all_reachable,
    }


def accepted(t: Template) -> bool:
    return all(acceptance(t).values())
