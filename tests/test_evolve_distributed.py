"""hebbkern.evolve across processes: two gloo processes, each running half the population, take
the same mean update as one process running all of it (one all-gather of the losses per
generation)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hebbkern
from hebbkern.evolve import Evolution, EvolveConfig
from hebbkern.lifetime_config import LifetimeConfig

pytestmark = pytest.mark.skipif(
    not (hebbkern.extension_available() and dist.is_available() and dist.is_gloo_available()),
    reason="needs the extension and torch.distributed with gloo",
)


def config():
    life = LifetimeConfig(plastic_after_trial=2, quiet_trials=2, loss_trials=3)
    return EvolveConfig(
        n_neurons=10, population=8, n_trials=8, test_every=3, dtype=torch.float64, lifetime=life,
        seed=11,
    )  # fmt: skip


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        evo = Evolution(config())
        for _ in range(3):  # test, train, train
            evo.step()
        torch.save(dict(w=evo.w, pi=evo.pi, loss=evo.last["loss"]), f"{out}.{rank}")
        # Neither rank tears its connections down while the other may still be finishing the last
        # all-gather: a peer closing first can abort gloo's I/O thread ("terminate called without
        # an active exception", seen once under torch 2.11).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_take_the_single_process_step(tmp_path):
    single = Evolution(config())
    for _ in range(3):
        single.step()
    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        torch.testing.assert_close(got["loss"], single.last["loss"], rtol=0, atol=0)
        torch.testing.assert_close(got["w"], single.w, rtol=0, atol=0)
        torch.testing.assert_close(got["pi"], single.pi, rtol=0, atol=0)
    assert os.path.exists(f"{out}.1")
