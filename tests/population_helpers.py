"""Populations for plastic_rnn (per-sample ``w``, ``alpha``, ``eta``; POPULATION.md): the inputs and
the independent oracle (the shared-parameter reference run once per sample), shared by the CPU
and the CUDA-emulation tests."""

from __future__ import annotations

import math

import torch
from helpers import clone_inputs, loss_weights, make_inputs, outputs_dict, random_source
from torch import Tensor

import hebbkern

# Population alpha kinds: the public forms with per-sample w (POPULATION.md), and their canonical
# (raw op) shapes.
POP_ALPHA_KINDS = ("per_sample_connection", "per_sample_neuron", "per_sample_scalar", "shared")
PER_SAMPLE = ("w", "alpha", "eta")


def pop_alpha_shape(kind: str, B: int, N: int) -> tuple:
    return {
        "per_sample_connection": (B, N, N),
        "per_sample_neuron": (B, N),
        "per_sample_scalar": (B,),
        "shared": (),
        # shared w with per-sample alpha (the only per-sample alpha plastic_step also takes)
        "per_connection": (N, N),
        "per_neuron": (N,),
        "scalar": (),
    }[kind]


def make_population(
    rule: str, alpha_kind: str = "per_sample_connection", *flags: bool, per_sample_w: bool = True,
    per_sample_eta: bool = True, dtype: torch.dtype = torch.float64, **sizes,
) -> dict:  # fmt: skip
    """``make_inputs(rule, "scalar", *flags, **sizes)`` (flags: fan-out, clamp; sizes: T, B, N,
    seed, clip; defaults T=5, B=3, N=7) with ``w`` ``[B, N, N]`` (``per_sample_w``), alpha of
    ``alpha_kind`` and, for the eta rules, ``eta`` ``[B]`` (``per_sample_eta``): every sample its
    own network, drawn distinct so that a mix-up of samples shows."""
    sizes = {"T": 5, "B": 3, "N": 7, "seed": 0, "clip": 0.5, **sizes}
    kw = make_inputs(rule, "scalar", *flags, **sizes)
    B, N, seed = sizes["B"], sizes["N"], sizes["seed"]
    _, rnd = random_source(seed + 1000)
    s = 1.0 / math.sqrt(N)
    if per_sample_w:
        kw["w"] = rnd(B, N, N, scale=s)
    kw["alpha"] = rnd(*pop_alpha_shape(alpha_kind, B, N), scale=s)
    if "eta" in kw and per_sample_eta:
        kw["eta"] = 0.1 + 0.4 * torch.rand(B, generator=torch.Generator().manual_seed(seed + 7))
    for k, v in kw.items():
        if isinstance(v, Tensor) and v.is_floating_point():
            kw[k] = v.detach().to(dtype).requires_grad_(True)
    return kw


def _sample(name: str, x, b: int, B: int, w_per_sample: bool):
    """Sample b's part of argument ``name`` for the shared-parameter reference."""
    if not isinstance(x, Tensor):
        return x
    if name in ("u", "clamp_mask"):
        return x[:, b : b + 1]
    if name in ("h0", "hebb0", "elig0"):
        return x[b : b + 1]
    if name == "w":
        return x[b] if x.dim() == 3 else x
    if name == "alpha":
        # [B, N, N] -> [N, N]; with per-sample w also [B, N] -> [N] and [B] -> []
        per_sample = x.dim() == 3 or (w_per_sample and x.dim() >= 1 and x.shape[0] == B)
        return x[b] if per_sample else x
    if name == "eta":
        return x[b] if x.dim() == 1 and x.numel() > 1 else x
    return x


def oracle(kw: dict, **options) -> tuple[Tensor, hebbkern.PlasticState]:
    """POPULATION.md's oracle: the shared-parameter reference once per sample, stacked."""
    B = kw["u"].shape[1]
    w_ps = kw["w"].dim() == 3
    hs, sh, sH, sE = [], [], [], []
    for b in range(B):
        kb = {k: _sample(k, v, b, B, w_ps) for k, v in kw.items()}
        h, st = hebbkern.reference.plastic_rnn(**kb, **options)
        hs.append(h)
        sh.append(st.h)
        sH.append(st.hebb)
        sE.append(st.elig)
    elig = None if sE[0] is None else torch.cat(sE)
    return torch.cat(hs, 1), hebbkern.PlasticState(torch.cat(sh), torch.cat(sH), elig)


def run_pop(kw: dict, fn, seed: int = 1):
    """``fn(**kw)`` -> ``(h, state)``, backward of a random-weighted sum of every output; returns
    detached outputs and the gradient of every input that requires one."""
    h, st = fn(**kw)
    outs = outputs_dict(h, st)
    wts = loss_weights(outs, seed)
    loss = sum((outs[k] * wts[k].to(outs[k].dtype)).sum() for k in outs)
    names = [k for k, v in kw.items() if isinstance(v, Tensor) and v.requires_grad]
    grads = torch.autograd.grad(loss, [kw[k] for k in names], allow_unused=True)
    return {k: v.detach() for k, v in outs.items()}, dict(zip(names, grads, strict=True))


def op(backend: str, **options):
    return lambda **kw: hebbkern.plastic_rnn(**kw, backend=backend, **options)


def against_oracle(kw: dict, fn, dtype=torch.float64, **options):
    """``(fn's, the float64 oracle's)`` ``(outputs, grads)`` on copies of ``kw``."""
    got = run_pop(clone_inputs(kw, dtype), fn)
    exact = run_pop(clone_inputs(kw, torch.float64), lambda **k: oracle(k, **options))
    return got, exact
