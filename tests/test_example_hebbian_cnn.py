"""examples/hebbian_cnn_layers.py: what each condition passes on, and a smoke run end to end."""

import json

import torch
from example_helpers import example_fixture

ex = example_fixture("hebbian_cnn_layers", "skimage", "sklearn", "matplotlib")


def test_plain_network_passes_sparse_output_dense_one_the_triangle(ex):
    x = torch.randn(4, 1, 12, 12)
    torch.manual_seed(0)
    plain = ex.HebbianCNN((6, 7, 8), "oja", dense=False, prune=0.0)
    torch.manual_seed(0)
    dense = ex.HebbianCNN((6, 7, 8), "oja", dense=True, prune=0.9)
    feats = plain(x)
    # Before pooling each position had one binary winner: pooled 2x2, the channels sum to 1.
    for f in feats:
        torch.testing.assert_close(f.sum(1), torch.ones_like(f.sum(1)))
    dense_feats = dense(x)
    assert (dense_feats[0] >= 0).all() and (dense_feats[0] > 0).float().mean() > 0.2
    assert dense.layers[1].mask.mean() < 0.2 and dense.layers[0].mask is None


def test_smoke_run_writes_results(ex, tmp_path):
    ex.main(["--smoke", "--out", str(tmp_path), "--threads", "1"])
    data = json.loads((tmp_path / "hebbian_cnn_layers_smoke.json").read_text())
    for name in ("digits", "photos"):
        r = data["data"][name]
        assert set(r["hebbian"]) == {"oja none", "oja dense", "oja prune", "oja dense+prune"}
        for acc in list(r["hebbian"].values()) + list(r["random"].values()):
            assert len(acc) == 3 and all(0 <= a <= 1 for a in acc)
    assert (tmp_path / "hebbian_cnn_layers_smoke_filters.png").stat().st_size > 1000
    assert "random" in (tmp_path / "hebbian_cnn_layers_smoke.md").read_text()
