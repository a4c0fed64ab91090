"""The meta-task space (issue 17): templates, generator, acceptance filter, JSON, determinism."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from hebbkern.tasks import (
    NAMED,
    MetaTaskEnv,
    Template,
    acceptance,
    accepted,
    generate_template,
    generate_templates,
    load_templates,
    named_task,
    save_templates,
)
from hebbkern.tasks import generator as gen


def test_generated_templates_pass_the_filter_and_vary():
    ts = generate_templates(200, seed=3)
    assert all(accepted(t) for t in ts)
    # the space is not degenerate: several rule counts, variable and fixed parts all occur
    assert {len(t.reward_rules) for t in ts} == {1, 2, 3}
    assert any(s >= 10000 for t in ts for s in t.stimuli)
    assert any(r[0] >= 100 for t in ts for r in t.reward_rules)
    assert any(r[3] >= 1000 for t in ts for r in t.reward_rules)
    assert any(r[5] != -1 for t in ts for r in t.reward_rules)
    for t in ts:
        T = np.array(t.transitions)
        np.testing.assert_allclose(T.sum(-1), 1.0)
        # a reward rule on state 0 that needs the flag set never fires (the flag is 0 there)
        assert not any(r[0] == 0 and r[5] == 1 for r in t.reward_rules)
        assert any(fr[3] == 1 for fr in t.flag_rules)


def test_the_filter_rejects_draws():
    # The raw draws fail the filter often; generate_template reports how many it rejected.
    rng = np.random.default_rng(0)
    rejected = sum(generate_template(rng)[1] for _ in range(50))
    assert rejected > 0
    raw = [gen._draw(np.random.default_rng(i), 8, 3) for i in range(300)]
    verdicts = [acceptance(t) for t in raw]
    for key in ("varies", "actions_matter", "zero_not_absorbing", "all_reachable"):
        assert any(not v[key] for v in verdicts), key


@pytest.mark.parametrize(
    "edit, key",
    [
        (
            lambda t: t.transitions.__setitem__(0, [[1.0, 0, 0, 0], [1.0, 0, 0, 0]]),
            "zero_not_absorbing",
        ),
        (
            lambda t: [
                t.transitions[s].__setitem__(1, list(t.transitions[s][0])) for s in range(4)
            ],
            "actions_matter",
        ),
        (
            lambda t: [
                t.transitions[s][a].__setitem__(slice(None), [0.5, 0.5, 0, 0])
                for s in range(4)
                for a in range(2)
            ],
            "all_reachable",
        ),
    ],
)
def test_each_criterion(edit, key):
    t = generate_templates(1, seed=0)[0]
    assert acceptance(t)[key]
    t2 = copy.deepcopy(t)
    edit(t2)
    assert not acceptance(t2)[key]


def test_varies_criterion():
    t = named_task("two_step")  # a reward rule on a state variable
    assert acceptance(t)["varies"]
    t.reward_rules = [[1, -1, -1, 0.1, 1.0, -1]]
    assert not acceptance(t)["varies"]
    t.reward_rules = [[1, -1, -1, 1000, 1.0, -1]]  # one random probability alone does not vary
    assert not acceptance(t)["varies"]
    t.reward_rules.append([2, -1, -1, 2000, 1.0, -1])
    assert acceptance(t)["varies"]
    t.reward_rules = [[1, -1, -1, 1.0, 1.0, -1]]
    t.stimuli = [0, 10000, 10001, -1]
    assert acceptance(t)["varies"]


def test_determinism_from_a_seed():
    a = [t.to_dict() for t in generate_templates(20, seed=11)]
    b = [t.to_dict() for t in generate_templates(20, seed=11)]
    c = [t.to_dict() for t in generate_templates(20, seed=12)]
    assert a == b and a != c
    ts = generate_templates(5, seed=1)
    runs = []
    for _ in range(2):
        env = MetaTaskEnv(ts, 64, 30, seed=7)
        acts = torch.Generator().manual_seed(1)
        out = [env.reset()]
        for _ in range(30):
            obs, r, _ = env.step(torch.randint(2, (64,), generator=acts))
            out += [obs, r]
        runs.append(torch.cat([o.flatten() for o in out]))
    assert torch.equal(runs[0], runs[1])


def test_json_round_trip(tmp_path):
    ts = generate_templates(30, seed=5) + [named_task(n) for n in NAMED]
    path = tmp_path / "templates.json"
    save_templates(ts, path)
    back = load_templates(path)
    assert [t.to_dict() for t in back] == [t.to_dict() for t in ts]
    json.loads(path.read_text())  # plain JSON
    # the same environment stream from the loaded templates
    e1, e2 = MetaTaskEnv(ts, 32, 10, seed=0), MetaTaskEnv(back, 32, 10, seed=0)
    assert torch.equal(e1.reward_prob, e2.reward_prob)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("transitions", [[[1, 0, 0, 0]] * 2] * 3, "transitions"),
        ("transitions", [[[0.5, 0, 0, 0]] * 2] * 4, r"transitions\[0\]\[0\]"),
        ("stimuli", [0, 0, 0], "stimuli"),
        ("stimuli", [0, 7, 0, 0], "stimuli code"),
        ("reward_rules", [[0, -1, -1, 1.0, 1.0]], r"reward_rules\[0\]"),
        ("reward_rules", [[5, -1, -1, 1.0, 1.0, -1]], "old state"),
        ("reward_rules", [[101, -1, -1, 1.0, 1.0, -1]], "old state"),
        ("reward_rules", [[0, -1, 2, 1.0, 1.0, -1]], "action"),
        ("reward_rules", [[0, -1, -1, 1.5, 1.0, -1]], "probability"),
        ("flag_rules", [[0, -1, -1, 2]], r"flag_rules\[0\]"),
        ("statevar_ranges", [[0, 4]], "statevar_ranges"),
        ("max_trial_steps", 0, "max_trial_steps"),
        ("fixed_stimuli", [[0, 2, 0, 0, 0, 0, 0, 0]], "fixed_stimuli"),
    ],
)
def test_bad_templates_raise(field, value, match):
    d = named_task("two_step").to_dict()
    key = {
        "transitions": "T",
        "reward_rules": "rewardconditions",
        "flag_rules": "flagconditions",
        "statevar_ranges": "statevarranges",
        "stimuli": "stimuli",
        "max_trial_steps": "max_trial_steps",
        "fixed_stimuli": "fixed_stimuli",
    }[field]
    d[key] = value
    with pytest.raises(ValueError, match=match):
        Template.from_dict(d)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="name"):
        named_task("nope")
    with pytest.raises(ValueError, match="n must"):
        generate_templates(-1, 0)
    with pytest.raises(TypeError, match="rng"):
        generate_template("seed")
    with pytest.raises(TypeError, match="d must"):
        Template.from_dict([1])
    with pytest.raises(ValueError, match="missing"):
        Template.from_dict({"T": []})
