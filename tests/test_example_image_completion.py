"""examples/image_completion.py: its non-plastic network is plastic_rnn with alpha = 0, its
episodes clamp what the task says, and its smoke size runs end to end and writes its files."""

import json

import torch
from example_helpers import example_fixture

import hebbkern

ex = example_fixture("image_completion", "skimage", "matplotlib")


def test_recurrent_net_is_plastic_rnn_without_plasticity(ex):
    cfg = ex.SMOKE
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(10, cfg.n - 1, generator=g) * 2 - 1
    u, clamp, _, _ = ex.make_episode(patches, cfg, g)
    torch.manual_seed(0)
    net = ex.RecurrentNet(cfg.n)
    with torch.no_grad():
        net.w.mul_(30)  # large enough that the free neurons' dynamics matter
        h, _ = hebbkern.plastic_rnn(u, net.w, torch.zeros(()), rule="hebb", eta=0.01,
                                    clamp_mask=clamp, backend="reference")  # fmt: skip
        torch.testing.assert_close(net(u, clamp), h[-1, 0, :-1])


def test_episode_clamps_shown_pixels_and_frees_the_erased_half(ex):
    cfg = ex.SMOKE
    g = torch.Generator().manual_seed(1)
    patches = torch.rand(10, cfg.n - 1, generator=g) * 2 - 1
    u, clamp, target, erased = ex.make_episode(patches, cfg, g)
    assert u.shape == clamp.shape == (cfg.steps, 1, cfg.n)
    assert clamp[:, 0, -1].all() and (u[:, 0, -1] == 1).all()  # the bias neuron
    assert any(torch.equal(target, p) for p in patches)
    assert erased.sum() == (cfg.n - 1) // 2 or erased.sum() == cfg.n - 1 - (cfg.n - 1) // 2
    test = slice(cfg.steps - cfg.testtime, None)
    assert not clamp[test, 0, :-1][:, erased].any()
    assert clamp[test, 0, :-1][:, ~erased].all()
    torch.testing.assert_close(u[-1, 0, :-1][~erased], target[~erased])
    # Every presentation step clamps a whole image; blank steps clamp only the bias.
    shown = clamp[: -cfg.testtime, 0, :-1]
    assert ((shown.all(1)) | (~shown.any(1))).all()
    assert shown.all(1).sum() == cfg.cycles * cfg.patterns * cfg.prestime


def test_smoke_run_writes_results(ex, tmp_path):
    result = ex.main(["--smoke", "--out", str(tmp_path), "--threads", "1"])
    data = json.loads((tmp_path / "image_completion_smoke.json").read_text())
    assert data["networks"].keys() == {"plastic", "non-plastic"}
    for entry in data["networks"].values():
        ho = entry["held_out"]
        assert 0 <= ho["mse_erased"] < float("inf") and ho["mse_predict_zero"] > 0
    assert result["config"]["n"] == 65
    assert (tmp_path / "image_completion_smoke.md").read_text().count("| plastic |") == 1
    for name in data["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
