"""hebbkern.evolve: the antithetic ES step against a direct implementation of its formula, the
population's structure, the Pi = 0 control, checkpoint/resume, and the CSV/PNG outputs."""

from __future__ import annotations

import math
import sys

import pytest
import torch

import hebbkern
from hebbkern.evolve import Evolution, EvolveConfig, es_gradient
from hebbkern.lifetime_config import LifetimeConfig

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="extension not built")

SMALL_LIFE = LifetimeConfig(plastic_after_trial=2, quiet_trials=2, loss_trials=3)


def small(**kw):
    base = dict(
        n_neurons=10,
        population=6,
        n_trials=8,
        test_every=3,
        dtype=torch.float64,
        lifetime=SMALL_LIFE,
        seed=4,
    )
    return EvolveConfig(**{**base, **kw})


def test_es_gradient_is_the_formula():
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(8, 3, 4, generator=g, dtype=torch.float64)
    loss = torch.rand(8, generator=g, dtype=torch.float64)
    sigma = 0.07
    want = sum(eps[b] * loss[b] for b in range(8)) / (8 * sigma**2)
    torch.testing.assert_close(es_gradient(eps, loss, sigma), want, rtol=1e-14, atol=0)


@needs_ext
def test_es_step_matches_direct_adam_step():
    """Generation 0 is a test generation (no update); generation 1 takes one Adam step from a
    fresh state, written out here by hand: w - lr m^ / (sqrt(v^) + eps), Pi clipped at 0."""
    cfg = small()
    evo = Evolution(cfg)
    rec0 = evo.step()
    assert rec0["kind"] == "test"
    w0, pi0 = evo.w.clone(), evo.pi.clone()
    rec1 = evo.step()
    assert rec1["kind"] == "train"
    eps_w, eps_pi, loss = evo.last["eps_w"], evo.last["eps_pi"], evo.last["loss"]
    B = cfg.population
    # Antithetic structure: partners are opposite, individual 0 and B/2 unmutated.
    assert torch.equal(eps_w[B // 2 :], -eps_w[: B // 2]) and not eps_w[0].any()
    assert torch.equal(eps_pi[B // 2 :], -eps_pi[: B // 2]) and not eps_pi[B // 2].any()
    # Partners 0 and B/2 are the same network with the same noise: the same loss.
    assert loss[0] == loss[B // 2]
    b1, b2, adam_eps = 0.9, 0.999, 1e-8
    for p0, eps, p1, clip in ((w0, eps_w, evo.w, False), (pi0, eps_pi, evo.pi, True)):
        g = torch.zeros_like(p0)
        for b in range(B):
            g += eps[b] * loss[b]
        g = g / (B * cfg.sigma * cfg.sigma) + cfg.weight_decay * p0
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g * g / (1 - b2)
        want = p0 - cfg.lr * m_hat / (v_hat.sqrt() + adam_eps)
        if clip:
            want = want.clamp(min=0)
        torch.testing.assert_close(p1, want, rtol=1e-12, atol=1e-14)


@needs_ext
def test_losses_are_the_lifetimes_of_the_mutated_population():
    """The recorded losses are hebbkern.lifetime's on mean + eps, partners sharing tasks and noise."""
    evo = Evolution(small(test_every=100))
    evo.step()  # test generation 0
    state = evo.state_dict()
    evo.step()
    # Replay generation 1's draws from the saved random state.
    replay = Evolution(small(test_every=100))
    replay.load_state_dict(state)
    seed = int(torch.randint(0, 2**62, (1,), generator=replay.generator))
    _, stimuli, targets, keys = replay._tasks(False)
    eps_w, eps_pi = replay._mutations()
    out = hebbkern.lifetime(
        replay.w + eps_w,
        replay.pi + eps_pi,
        stimuli,
        targets,
        seed=seed,
        noise_key=keys,
        config=SMALL_LIFE,
    )
    torch.testing.assert_close(evo.last["loss"], out.loss, rtol=0, atol=0)
    assert seed == evo.last["seed"]


@needs_ext
def test_pi_zero_control_keeps_pi_zero():
    evo = Evolution(small(plastic=False))
    for _ in range(3):
        evo.step()
    assert not evo.pi.any() and evo.history[-1]["kind"] == "train"


@needs_ext
def test_checkpoint_resume_is_exact(tmp_path):
    straight = Evolution(small())
    straight.run(5, progress=False)
    ckpt = str(tmp_path / "evo.pt")
    first = Evolution(small())
    first.run(3, checkpoint=ckpt, progress=False)
    resumed = Evolution(small())
    resumed.run(5, checkpoint=ckpt, progress=False)
    assert torch.equal(resumed.w, straight.w) and torch.equal(resumed.pi, straight.pi)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip


@needs_ext
def test_run_writes_csv_and_png(tmp_path):
    evo = Evolution(small())
    hist = evo.run(
        4, csv_path=str(tmp_path / "c.csv"), png_path=str(tmp_path / "c.png"), progress=True
    )
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0].startswith("generation,kind,") and len(lines) == 5
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert [h["kind"] for h in hist] == ["test", "train", "train", "test"]
    assert all(0 <= h["correct_mean"] <= 1 and math.isfinite(h["loss_mean"]) for h in hist)


def test_config_errors():
    with pytest.raises(ValueError, match="population must be even"):
        EvolveConfig(population=5)
    with pytest.raises(ValueError, match="sigma"):
        EvolveConfig(sigma=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@needs_ext
def test_evolution_on_cuda_takes_the_cpu_step():
    """On a GPU: the same run on device="cuda" (the CUDA kernel) as on the CPU, to rounding."""
    cpu, gpu = Evolution(small()), Evolution(small(device="cuda"))
    for _ in range(3):
        cpu.step(), gpu.step()
    torch.testing.assert_close(gpu.w.cpu(), cpu.w, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.pi.cpu(), cpu.pi, rtol=1e-9, atol=1e-12)


def test_run_without_tqdm_shows_no_bar(monkeypatch):
    """tqdm is optional: without it a run with progress=True goes on without a bar."""
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `import tqdm.auto` fail
    hist = Evolution(small()).run(2, progress=True)
    assert len(hist) == 2
