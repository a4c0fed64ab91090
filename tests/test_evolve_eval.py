"""hebbkern.evolve_eval: paired DMS / DNMS lifetimes. A network that cannot use the reward scores
exactly 50% over the pair on every trial; one whose plasticity uses it does not; the windows and
curves are the plain means of the per-trial correctness."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern.evolve_eval import LearningTest, learning_test, mean_sem
from hebbkern.lifetime_config import LifetimeConfig

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="extension not built")

LIFE = LifetimeConfig(plastic_after_trial=2, quiet_trials=3, loss_trials=5)
N = 12


def network(seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, N, generator=g, dtype=torch.float64) * scale / N**0.5
    w[:, :5] = 0
    return w


@needs_ext
def test_pi_zero_without_reward_input_is_complementary():
    """Pi = 0 and no connections out of the reward neurons (2, 3): the responses cannot depend on
    the targets, so on every trial of every pair exactly one of DMS, DNMS is correct."""
    w = network()
    w[2:4] = 0
    res = learning_test(w, torch.zeros_like(w), n_trials=20, lifetimes=6, config=LIFE, seed=3)
    assert res.correct.shape == (2, 6, 20)
    assert torch.equal(res.correct.sum(0), torch.ones(6, 20))
    assert torch.equal(res.pair_mean(0, 20), torch.full((6,), 0.5, dtype=torch.float64))
    # Not trivially so: the network answers differently across trials.
    assert 0 < float(res.correct[0].mean()) < 1


@needs_ext
def test_the_reference_gives_the_same_pairs():
    w = network(1)
    pi = torch.full_like(w, 0.5)
    kw = dict(n_trials=12, lifetimes=3, config=LIFE, seed=5)
    ref = learning_test(w, pi, backend="reference", **kw)
    cpu = learning_test(w, pi, backend="cpu", **kw)
    assert torch.equal(ref.correct, cpu.correct)


def test_reward_dependent_network_breaks_the_complement():
    """With plasticity on, P follows the reward, so the paired lifetimes diverge (the measurement
    can see adaptation). The reference backend keeps this test independent of the extension."""
    w = network(2)
    pi = torch.full_like(w, 0.5)
    cfg = LifetimeConfig(plastic_after_trial=1, quiet_trials=2, loss_trials=5, eta=3.0, max_dp=1.0)
    res = learning_test(w, pi, n_trials=40, lifetimes=4, config=cfg, seed=7, backend="reference")
    assert not torch.equal(res.correct.sum(0), torch.ones(4, 40))


def test_pairs_share_stimuli_and_the_seed_fixes_them():
    """Same seed, same lifetimes (the comparison between networks is paired); another seed differs."""
    w = network(3)
    w[2:4] = 0
    pi = torch.zeros_like(w)
    kw = dict(n_trials=10, lifetimes=4, config=LIFE, backend="reference")
    a = learning_test(w, pi, seed=11, **kw)
    b = learning_test(w, pi, seed=11, **kw)
    c = learning_test(w, pi, seed=12, **kw)
    assert torch.equal(a.correct, b.correct)
    assert not torch.equal(a.correct, c.correct)


def test_windows_curves_and_sem_are_plain_means():
    g = torch.Generator().manual_seed(0)
    correct = torch.randint(0, 2, (2, 5, 12), generator=g).to(torch.float64)
    res = LearningTest(("dms", "dnms"), correct)
    torch.testing.assert_close(res.window(2, 7), correct[:, :, 2:7].sum(-1) / 5)
    torch.testing.assert_close(res.pair_mean(0, 12), correct.mean((0, 2)))
    curve = res.curve(5)  # 2 full blocks of 5, the last 2 trials dropped
    assert curve.shape == (2, 5, 2)
    torch.testing.assert_close(curve[..., 1], correct[..., 5:10].mean(-1))
    x = torch.tensor([0.5, 0.7, 0.9], dtype=torch.float64)
    m, s = mean_sem(x)
    assert m == pytest.approx(0.7)
    assert s == pytest.approx(0.2 / 3**0.5)  # sample std 0.2


def test_bad_arguments_raise():
    w = network()
    with pytest.raises(ValueError, match="w and pi"):
        learning_test(w, torch.zeros(N, N + 1, dtype=w.dtype), n_trials=4)
    with pytest.raises(ValueError, match="lifetimes"):
        learning_test(w, torch.zeros_like(w), n_trials=4, lifetimes=0)
    res = LearningTest(("dms",), torch.zeros(1, 2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        res.window(3, 3)
    with pytest.raises(ValueError, match="bin_trials"):
        res.curve(7)
