"""hebbkern.lifetime (SPEC.md section 10): Philox known answers, the fused CPU kernel against the
eager reference over whole lifetimes with every task (float64 to rounding, float32 within tolerance),
the antithetic-partner noise contract, the final state, NaN-poisoned outputs, opcheck and the
argument errors."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern.lifetime_config import TASKS, LifetimeConfig, make_trials
from hebbkern.reference.lifetime import lifetime as ref_lifetime
from hebbkern.reference.philox import perturbation_uniforms, philox4x32_10

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="extension not built")

# A short schedule that still exercises every phase: plasticity from trial 3, quiet last 2 trials.
SHORT = LifetimeConfig(plastic_after_trial=3, quiet_trials=2, loss_trials=5)


def test_philox_known_answers():
    """Random123's published known-answer vectors for Philox4x32-10."""
    cases = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ]
    for ctr, key, want in cases:
        got = philox4x32_10(*(torch.tensor(c) for c in ctr), *key)
        assert tuple(int(g) for g in got) == want


def test_perturbation_layout():
    """Neurons 2k and 2k+1 share one Philox call; uniforms are on the 2^-24 grid; keys separate."""
    keys = torch.tensor([0, 1, 0])
    u0, u1 = perturbation_uniforms(5, keys, 7, 5)
    w = philox4x32_10(torch.tensor(1), torch.tensor(7), torch.tensor(1), torch.tensor(0), 5, 0)
    assert u0[1, 2] * 2**24 == int(w[0]) >> 8 and u1[1, 3] * 2**24 == int(w[3]) >> 8
    assert torch.equal(u0[0], u0[2]) and not torch.equal(u0[0], u0[1])
    assert ((u0 * 2**24) == (u0 * 2**24).round()).all() and (u0 < 1).all() and (u0 >= 0).all()


def population(B, N, n_trials, dtype, *, scale=0.6, seed=0, tasks=None):
    """Weights in the contracting regime (a chaotic network would amplify rounding over 20,000 steps),
    plasticity coefficients >= 0, and a task per individual (every task when B >= 14)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(B, N, N, generator=g, dtype=torch.float64) * scale / N**0.5
    pi = torch.rand(B, N, N, generator=g, dtype=torch.float64)
    tasks = tasks or [TASKS[b % len(TASKS)] for b in range(B)]
    stimuli, targets = make_trials(tasks, n_trials, g)
    return w.to(dtype), pi.to(dtype), stimuli.to(dtype), targets.to(dtype)


def assert_close_result(got, want, rtol, atol):
    for name in ("trial_loss", "x", "r", "p", "e", "mean_loss", "loss", "correct"):
        torch.testing.assert_close(
            getattr(got, name), getattr(want, name), rtol=rtol, atol=atol, msg=name
        )
    assert torch.equal(got.trial_response, want.trial_response)


@needs_ext
def test_matches_reference_float64_whole_lifetime_every_task(nan_poison):
    """The public code's full schedule (400 trials x 50 steps) with each of the 14 tasks."""
    w, pi, stimuli, targets = population(14, 11, 400, torch.float64)
    keys = torch.arange(14)
    got = hebbkern.lifetime(w, pi, stimuli, targets, seed=3, noise_key=keys, backend="cpu")
    want = ref_lifetime(w, pi, stimuli, targets, seed=3, noise_key=keys, config=LifetimeConfig())
    assert_close_result(got, want, rtol=1e-10, atol=1e-12)
    # Plasticity acted and some perturbations reached the trace.
    assert got.p.abs().max() > 0 and got.e.abs().max() > 0


@needs_ext
@pytest.mark.parametrize("N", [9, 16, 33])
def test_matches_reference_float64_short(N, nan_poison):
    w, pi, stimuli, targets = population(6, N, 12, torch.float64, seed=N)
    keys = torch.tensor([4, 9, 4, 2**32 - 1, 0, 7])
    got = hebbkern.lifetime(w, pi, stimuli, targets, seed=2**40 + 5, noise_key=keys, config=SHORT)
    want = ref_lifetime(w, pi, stimuli, targets, seed=2**40 + 5, noise_key=keys, config=SHORT)
    assert_close_result(got, want, rtol=1e-10, atol=1e-12)


@needs_ext
def test_float32_within_tolerance(nan_poison):
    w, pi, stimuli, targets = population(14, 12, 40, torch.float64, seed=1)
    cfg = LifetimeConfig(plastic_after_trial=5, quiet_trials=4, loss_trials=10)
    want = ref_lifetime(w, pi, stimuli, targets, seed=1, noise_key=torch.arange(14), config=cfg)
    f32 = [t.float() for t in (w, pi, stimuli, targets)]
    got = hebbkern.lifetime(*f32, seed=1, config=cfg)
    ref32 = ref_lifetime(*f32, seed=1, noise_key=torch.arange(14), config=cfg)
    for name in ("trial_loss", "x", "p", "e"):
        g, r64, r32 = (getattr(o, name).double() for o in (got, want, ref32))
        err = (g - r64).norm() / r64.norm()
        assert err < 1e-4, (name, float(err))
        # flash-attention's rule: no worse than twice the float32 reference's own error.
        assert err <= 2 * (r32 - r64).norm() / r64.norm() + 1e-6, name
    assert torch.equal(got.trial_response, want.trial_response)


@needs_ext
def test_antithetic_partners_share_noise():
    """Same weights and key: same lifetime; another key: other perturbations."""
    w, pi, stimuli, targets = population(1, 10, 6, torch.float64)
    w, pi, stimuli, targets = (
        t.expand(3, *t.shape[1:]).contiguous() for t in (w, pi, stimuli, targets)
    )
    out = hebbkern.lifetime(
        w, pi, stimuli, targets, seed=9, noise_key=torch.tensor([5, 5, 6]), config=SHORT
    )
    assert torch.equal(out.e[0], out.e[1]) and torch.equal(out.trial_loss[0], out.trial_loss[1])
    assert not torch.equal(out.e[0], out.e[2])


@needs_ext
def test_pi_zero_means_no_plastic_effect():
    """With Pi = 0 the plastic weights change but never act: the lifetime equals one with eta = 0."""
    w, pi, stimuli, targets = population(4, 10, 12, torch.float64)
    pi = torch.zeros_like(pi)
    a = hebbkern.lifetime(w, pi, stimuli, targets, seed=1, config=SHORT)
    b = hebbkern.lifetime(
        w, pi, stimuli, targets, seed=1, config=LifetimeConfig(**{**SHORT.__dict__, "eta": 0.0})
    )
    assert torch.equal(a.trial_loss, b.trial_loss) and a.p.abs().max() > 0


@needs_ext
def test_empty_population():
    w, pi, stimuli, targets = population(0, 10, 6, torch.float32)
    out = hebbkern.lifetime(w, pi, stimuli, targets, seed=0, config=SHORT)
    assert out.loss.shape == (0,) and out.p.shape == (0, 10, 10)


@needs_ext
def test_opcheck():
    w, pi, stimuli, targets = population(3, 9, 4, torch.float64)
    cfg = LifetimeConfig(plastic_after_trial=1, quiet_trials=1, loss_trials=2)
    args = (w, pi, stimuli, targets, torch.arange(3), 1, cfg.int_list(), cfg.float_list())
    torch.library.opcheck(torch.ops.hebbkern.lifetime_fwd.default, args)


def test_reference_backend_runs_without_extension():
    w, pi, stimuli, targets = population(2, 9, 3, torch.float32)
    cfg = LifetimeConfig(plastic_after_trial=0, quiet_trials=1, loss_trials=2)
    out = hebbkern.lifetime(w, pi, stimuli, targets, seed=0, config=cfg, backend="reference")
    assert out.loss.shape == (2,) and torch.isfinite(out.loss).all()


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(w=torch.zeros(2, 9, 9, dtype=torch.int32)), TypeError, "w must be float32"),
        (dict(w=torch.zeros(2, 9, 8)), ValueError, r"w must have shape \[B, N, N\]"),
        (dict(w=torch.zeros(2, 8, 8), pi=torch.zeros(2, 8, 8)), ValueError, "N >= 9"),
        (dict(pi=torch.zeros(2, 9, 9, dtype=torch.float64)), TypeError, "pi must have dtype"),
        (dict(stimuli=torch.zeros(2, 4, 3)), ValueError, "stimuli must have shape"),
        (dict(stimuli=torch.full((2, 4, 2), 0.5)), ValueError, "stimuli must hold stimulus bits"),
        (dict(targets=torch.zeros(2, 5)), ValueError, "targets must have shape"),
        (dict(seed=-1), TypeError, "seed must be an int"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(noise_key=torch.zeros(2)), TypeError, "noise_key must be int64"),
        (
            dict(noise_key=torch.zeros(3, dtype=torch.int64)),
            ValueError,
            "noise_key must have shape",
        ),
        (dict(noise_key=torch.tensor([0, 2**32])), ValueError, "noise_key values"),
        (dict(config=LifetimeConfig(loss_trials=5)), ValueError, "config.loss_trials"),
        (dict(config=LifetimeConfig(response=(30, 40))), ValueError, "config.feedback"),
        (dict(config={"steps": 3}), TypeError, "config must be a LifetimeConfig"),
    ],
)
def test_argument_errors(change, exc, match):
    args = dict(
        w=torch.zeros(2, 9, 9),
        pi=torch.zeros(2, 9, 9),
        stimuli=torch.zeros(2, 4, 2),
        targets=torch.zeros(2, 4),
        seed=0,
        noise_key=None,
        config=LifetimeConfig(loss_trials=2),
    )
    args.update(change)
    with pytest.raises(exc, match=match):
        hebbkern.lifetime(
            args["w"],
            args["pi"],
            args["stimuli"],
            args["targets"],
            seed=args["seed"],
            noise_key=args["noise_key"],
            config=args["config"],
            backend="reference",
        )
