"""The CUDA kernel of hebbkern.lifetime (hebbkern/lifetime_block.h) run on the CPU by the block
emulation, on the grid of the launch's own geometry function: it reproduces the CPU kernel (same
Philox bits, same summation order) whole lifetimes long, with items and blocks in either order; and
the .cu file compiles for sm_80 and sm_90 without register spills. The GPU itself is tested in
test_lifetime_cuda_gpu (skipped without one)."""

from __future__ import annotations

import subprocess

import pytest
import torch
from cuda_checks import ARCHS, NVCC_FLAGS, ROOT, find_nvcc, parse_ptxas  # noqa: F401
from test_lifetime import SHORT, population

import hebbkern
from hebbkern.lifetime_config import LifetimeConfig

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="extension not built")


def run_both(w, pi, stimuli, targets, keys, seed, cfg, reverse):
    args = (w, pi, stimuli, targets, keys, seed, cfg.int_list(), cfg.float_list())
    return torch.ops.hebbkern.lifetime_fwd(*args), torch.ops.hebbkern._lifetime_emulated_fwd(
        *args, reverse
    )


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reverse", [False, True])
def test_emulation_reproduces_cpu_kernel(dtype, reverse, nan_poison):
    w, pi, stimuli, targets = population(14, 13, 60, dtype, seed=5)
    cfg = LifetimeConfig(plastic_after_trial=4, quiet_trials=3, loss_trials=10)
    keys = torch.arange(14) % 7
    cpu, emu = run_both(w, pi, stimuli, targets, keys, 77, cfg, reverse)
    names = ("trial_loss", "trial_response", "x", "r", "p", "e", "mean_loss")
    for name, a, b in zip(names, cpu, emu, strict=True):
        assert torch.equal(a, b), name


@needs_ext
def test_emulation_whole_default_lifetime():
    """The public schedule, 400 trials x 50 steps, N = 9, the chaotic initial scale 1.5."""
    w, pi, stimuli, targets = population(2, 9, 400, torch.float64, scale=1.5, seed=2)
    cpu, emu = run_both(w, pi, stimuli, targets, torch.tensor([0, 0]), 3, LifetimeConfig(), False)
    for a, b in zip(cpu, emu, strict=True):
        assert torch.equal(a, b)


@needs_ext
def test_emulated_op_checks_arguments():
    w, pi, stimuli, targets = population(2, 9, 4, torch.float64)
    with pytest.raises(ValueError, match="noise_key"):
        torch.ops.hebbkern._lifetime_emulated_fwd(
            w, pi, stimuli, targets, torch.zeros(3, dtype=torch.int64), 0, SHORT.int_list(),
            SHORT.float_list(), False,
        )  # fmt: skip


@pytest.mark.skipif(find_nvcc() is None, reason="nvcc not found")
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_kernel_compiles_without_spills(arch, tmp_path):
    src = ROOT / "csrc" / "cuda" / "lifetime.cu"
    cmd = [find_nvcc(), *NVCC_FLAGS, f"-arch={arch}", "-cubin", "-Xptxas", "-v",
           f"-I{ROOT / 'csrc' / 'include'}", f"-I{ROOT / 'csrc'}", "-o",
           str(tmp_path / "lifetime.cubin"), str(src)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    entries = [
        ln for ln in proc.stderr.splitlines() if "lifetime_fwd_kernel" in ln and "entry" in ln
    ]
    assert len(entries) == 2, proc.stderr  # float and double
    spills = [ln for ln in proc.stderr.splitlines() if "spill" in ln]
    assert spills and all(" 0 bytes spill stores, 0 bytes spill loads" in ln for ln in spills), (
        spills
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@needs_ext
def test_lifetime_cuda_gpu():
    """On a GPU: the CUDA kernel against the CPU kernel (float64 to rounding: device tanh/exp)."""
    w, pi, stimuli, targets = population(14, 13, 40, torch.float64, seed=1)
    cfg = LifetimeConfig(plastic_after_trial=4, quiet_trials=3, loss_trials=10)
    cpu = hebbkern.lifetime(w, pi, stimuli, targets, seed=5, config=cfg, backend="cpu")
    dev = [t.cuda() for t in (w, pi, stimuli, targets)]
    gpu = hebbkern.lifetime(*dev, seed=5, config=cfg, backend="cuda")
    torch.testing.assert_close(gpu.trial_loss.cpu(), cpu.trial_loss, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.p.cpu(), cpu.p, rtol=1e-9, atol=1e-12)
    assert torch.equal(gpu.trial_response.cpu(), cpu.trial_response)
