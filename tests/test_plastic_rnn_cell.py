"""``hebbkern.nn.PlasticRNNCell``: PlasticRNN's parameters, one step per call; a trained PlasticRNN
state_dict loads into the cell and stepping the cell reproduces the layer, values and gradients."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import rel_err

import hebbkern
from hebbkern.nn import PlasticRNN, PlasticRNNCell

CONFIGS = [
    pytest.param(dict(rule="hebb", alpha="per_connection"), id="hebb"),
    pytest.param(dict(rule="oja", alpha="scalar"), id="oja-scalar"),
    pytest.param(dict(rule="clip", alpha="per_neuron", clip=0.5), id="clip-perneuron"),
    pytest.param(dict(rule="neuromod", alpha="per_connection", fanout=True), id="neuromod-fanout"),
    pytest.param(dict(rule="retro", alpha="per_neuron", fanout=True, clip=2.0), id="retro-fanout"),
]


def _perturbed_layer(cfg, I=5, N=7, seed=0):
    """A PlasticRNN whose parameters are moved away from their initialisation, as training would,
    so that every parameter matters (eta, mod_b, ... not at their init values)."""
    torch.manual_seed(seed)
    layer = PlasticRNN(I, N, dtype=torch.float64, **cfg)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p) * (p.abs().mean() + 0.05))
        if layer.eta is not None:
            layer.eta.fill_(0.2)
    return layer


@pytest.mark.parametrize("cfg", CONFIGS)
def test_same_parameter_names_and_shapes(cfg):
    layer, cell = PlasticRNN(4, 6, **cfg), PlasticRNNCell(4, 6, **cfg)
    a, b = layer.state_dict(), cell.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_trained_layer_loads_into_cell_and_matches(cfg, nan_poison):
    T, B, I, N = 6, 3, 5, 7
    layer = _perturbed_layer(cfg, I, N)
    cell = PlasticRNNCell(I, N, dtype=torch.float64, **cfg)
    cell.load_state_dict(layer.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, state = layer(x)
    loss_l = out.sin().sum() + state.hebb.square().sum()
    grads_l = torch.autograd.grad(loss_l, list(layer.parameters()))

    s = None
    outs = []
    for t in range(T):
        s = cell(x[t], s)
        outs.append(s.h)
    out_c = torch.stack(outs)
    loss_c = out_c.sin().sum() + s.hebb.square().sum()
    grads_c = torch.autograd.grad(loss_c, list(cell.parameters()))
    assert rel_err(out_c, out) < 1e-10
    assert rel_err(s.hebb, state.hebb) < 1e-10
    if cfg["rule"] == "retro":
        assert rel_err(s.elig, state.elig) < 1e-10
    for (name, _), gl, gc in zip(layer.named_parameters(), grads_l, grads_c, strict=True):
        assert gl.norm() > 0, name
        assert rel_err(gc, gl) < 1e-8, name


def test_cell_state_dict_loads_into_layer():
    cell = PlasticRNNCell(3, 4, rule="neuromod", fanout=True)
    layer = PlasticRNN(3, 4, rule="neuromod", fanout=True)
    layer.load_state_dict(cell.state_dict())
    for (n1, p1), (n2, p2) in zip(cell.named_parameters(), layer.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_state_dict_round_trip(cfg):
    cell = PlasticRNNCell(3, 5, **cfg)
    buf = io.BytesIO()
    torch.save(cell.state_dict(), buf)
    buf.seek(0)
    fresh = PlasticRNNCell(3, 5, **cfg)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(2, 3)
    a, b = cell(x), fresh(x)
    assert torch.equal(a.h, b.h) and torch.equal(a.hebb, b.hebb)


def test_initialisation_matches_plastic_rnn():
    for rule in ("hebb", "neuromod"):
        torch.manual_seed(3)
        layer = PlasticRNN(4, 6, rule=rule, fanout=rule == "neuromod")
        torch.manual_seed(3)
        cell = PlasticRNNCell(4, 6, rule=rule, fanout=rule == "neuromod")
        for (n, p), q in zip(layer.named_parameters(), cell.parameters(), strict=True):
            assert torch.equal(p, q), n


def test_reset_parameters_redraws():
    cell = PlasticRNNCell(4, 6, rule="neuromod", fanout=True)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    cell.reset_parameters()
    assert not torch.equal(before["w"], cell.w) and not torch.equal(
        before["weight_ih"], cell.weight_ih
    )


def test_extra_repr():
    assert repr(PlasticRNNCell(3, 4)) == "PlasticRNNCell(3, 4, rule='hebb', alpha='per_connection')"
    r = repr(
        PlasticRNNCell(3, 4, rule="retro", alpha="per_neuron", fanout=True, clip=2.0, bias=False)
    )
    assert r == (
        "PlasticRNNCell(3, 4, rule='retro', alpha='per_neuron', fanout=True, clip=2.0, bias=False)"
    )


def test_dtype_and_to():
    cell = PlasticRNNCell(3, 4, rule="retro", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in cell.parameters())
    cell = cell.float()
    s = cell(torch.randn(2, 3))
    assert s.h.dtype == torch.float32 and s.elig.shape == (2, 4, 4)


def test_unbatched_and_clamp():
    cell = PlasticRNNCell(3, 4, rule="clip", dtype=torch.float64)
    x = torch.randn(3, dtype=torch.float64)
    mask = torch.tensor([True, False, False, True])
    s1 = cell(x, clamp_mask=mask)
    s2 = cell(x, s1)
    b1 = cell(x[None], clamp_mask=mask[None])
    b2 = cell(x[None], b1)
    assert s2.h.shape == (4,) and s2.hebb.shape == (4, 4)
    assert torch.equal(s2.h, b2.h[0]) and torch.equal(s2.hebb, b2.hebb[0])
    u = torch.nn.functional.linear(x, cell.weight_ih, cell.bias_ih)
    assert torch.equal(s1.h[mask], u[mask])


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(input_size=0, hidden_size=3), "input_size"), (dict(input_size=2, hidden_size=True), "hidden_size"),
     (dict(input_size=2, hidden_size=3, rule="bcm"), "rule"),
     (dict(input_size=2, hidden_size=3, alpha="dense"), "alpha"),
     (dict(input_size=2, hidden_size=3, fanout=True), "fanout"),
     (dict(input_size=2, hidden_size=3, clip=-1.0), "clip")],
)  # fmt: skip
def test_bad_constructor_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        PlasticRNNCell(**kwargs)


def test_bad_input():
    cell = PlasticRNNCell(3, 4)
    with pytest.raises(ValueError, match=r"^x must have shape \[B, 3\]"):
        cell(torch.randn(2, 5))
    with pytest.raises(TypeError, match="^x must be a torch.Tensor"):
        cell([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"^hebb must have shape \[2, 4, 4\]"):
        cell(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(4, 5)))
    with pytest.raises(TypeError, match="^state must be"):
        cell(torch.randn(2, 3), torch.zeros(2, 4))


def test_compile_fullgraph():
    torch._dynamo.reset()
    cell = PlasticRNNCell(3, 5, rule="neuromod", fanout=True, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64)

    def run(x):
        s = None
        for t in range(x.shape[0]):
            s = cell(x[t], s)
        return s.h.sum() + s.hebb.sum()

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    assert rel_err(compiled(x), run(x)) < 1e-12
    g1 = torch.autograd.grad(compiled(x), list(cell.parameters()))
    g2 = torch.autograd.grad(run(x), list(cell.parameters()))
    for a, b in zip(g1, g2, strict=True):
        assert rel_err(a, b) < 1e-12


def test_exported_from_package():
    assert hebbkern.nn.PlasticRNNCell is PlasticRNNCell
