"""The batched meta-task environment (issue 17): arguments, per-episode templates and instances,
devices, and the Gymnasium wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hebbkern.tasks import MetaTaskEnv, generate_templates, named_task


def test_bad_arguments_raise():
    t = named_task("bandit")
    with pytest.raises(TypeError, match="templates"):
        MetaTaskEnv([], 4)
    with pytest.raises(ValueError, match="batch_size"):
        MetaTaskEnv(t, 0)
    with pytest.raises(ValueError, match="episode_steps"):
        MetaTaskEnv(t, 4, 0)
    with pytest.raises(TypeError, match="dtype"):
        MetaTaskEnv(t, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="stim_dim"):
        MetaTaskEnv([t, named_task("harlow", stim_dim=5)], 4)
    env = MetaTaskEnv(t, 4, 2, seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="action"):
        env.step(torch.zeros(4))
    with pytest.raises(TypeError, match="action"):
        env.step([0, 0, 0, 0])
    with pytest.raises(ValueError, match="template_index"):
        env.reset(template_index=torch.tensor([0, 0, 0, 1]))
    env.step(torch.zeros(4, dtype=torch.long))
    _, _, done = env.step(torch.zeros(4, dtype=torch.long))
    assert done
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(4, dtype=torch.long))


def test_each_episode_its_own_template_and_instance():
    named = [named_task(n) for n in ("bandit", "two_step", "t_maze")]
    env = MetaTaskEnv(named, 600, 6, seed=0)
    counts = torch.bincount(env.template_index, minlength=3)
    assert (counts > 150).all()
    idx = torch.arange(600) % 3
    env.reset(template_index=idx)
    assert torch.equal(env.template_index, idx)
    # each episode follows its own template: bandit episodes stay in state 0, T-maze episodes
    # go through the corridor (3), two-step episodes visit 1 or 2
    a = torch.zeros(600, dtype=torch.long)
    env.step(a)
    assert (env.entered[idx == 0] == 0).all()
    assert (env.entered[idx == 2] == 3).all()
    assert ((env.entered[idx == 1] == 1) | (env.entered[idx == 1] == 2)).all()
    # instances differ within the batch (two-step's rewarded state)
    sv = env.statevars[idx == 1, 0]
    assert set(sv.tolist()) == {1, 2}


def test_non_quantized_transitions_take_the_comparison_path():
    # 1/11 is not a multiple of 1/5040 (5040 = lcm(1..10) * 2)
    t = named_task("two_step")
    t.transitions[0][0] = [0.0, 10 / 11, 1 / 11, 0.0]
    env = MetaTaskEnv(t, 20000, 1, seed=0)
    assert not env._quantized
    env.step(torch.zeros(20000, dtype=torch.long))
    frac = (env.entered == 2).double().mean().item()
    assert abs(frac - 1 / 11) < 5 * (1 / 11 * 10 / 11 / 20000) ** 0.5
    assert MetaTaskEnv(named_task("two_step"), 4, 1, seed=0)._quantized


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_generic(dtype):
    ts = generate_templates(4, seed=0)
    env = MetaTaskEnv(ts, 16, 3, dtype=dtype, device="cpu", seed=0)
    obs = env.reset()
    assert obs.dtype == dtype and obs.shape == (16, env.obs_size)
    obs, r, _ = env.step(torch.ones(16, dtype=torch.int32))
    assert obs.dtype == dtype and r.dtype == dtype and r.shape == (16,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_protocol():
    env = MetaTaskEnv(generate_templates(8, seed=0), 256, 20, device="cuda", seed=0)
    obs = env.reset()
    assert obs.is_cuda
    for _ in range(20):
        obs, r, _ = env.step(torch.randint(2, (256,), device="cuda"))
        assert torch.equal(obs[:, -1], r)


def test_gymnasium_vector_env():
    gym = pytest.importorskip("gymnasium")
    from hebbkern.tasks.gym import MetaTaskVectorEnv

    venv = MetaTaskVectorEnv(named_task("two_step"), num_envs=8, episode_steps=4, seed=0)
    assert isinstance(venv, gym.vector.VectorEnv)
    obs, info = venv.reset(seed=1)
    assert obs.shape == (8, 11) and obs.dtype == np.float32
    assert venv.single_observation_space.shape == (11,)
    assert venv.single_action_space.n == 2
    for t in range(4):
        obs, r, term, trunc, info = venv.step(venv.action_space.sample())
        assert r.shape == (8,) and not term.any()
        assert trunc.all() == (t == 3)
    assert "final_obs" in info
    assert (obs[:, 8:] == 0).all()  # a new episode: no previous action or reward
    venv2 = MetaTaskVectorEnv(named_task("two_step"), num_envs=8, numpy=False)
    o, _ = venv2.reset()
    assert torch.is_tensor(o)


@pytest.mark.slow
def test_compiled_step_matches_eager():
    ts = generate_templates(6, seed=2)
    envs = [MetaTaskEnv(ts, 128, 12, seed=4, compile=c) for c in (False, True)]
    outs = [[e.reset()] for e in envs]
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        a = torch.randint(2, (128,), generator=g)
        for e, o in zip(envs, outs, strict=True):
            obs, r, _ = e.step(a)
            o += [obs, r, e.state.double(), e.trial_index.double()]
    for x, y in zip(*outs, strict=True):
        assert torch.equal(x, y)
