"""``PlasticRNN(input_projection=False)`` and ``PlasticRNNCell(input_projection=False)`` (issue
20, item 4): the input is added to the drive directly (``u_t = x_t``), as the
differentiable-plasticity pattern-completion network does."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern.nn import PlasticRNN, PlasticRNNCell

N, T, B = 6, 5, 3
f64 = torch.float64


@pytest.mark.parametrize("rule", ["hebb", "retro"])
def test_layer_adds_input_directly(rule):
    torch.manual_seed(0)
    layer = PlasticRNN(N, N, rule=rule, input_projection=False, dtype=f64)
    x = torch.randn(T, B, N, dtype=f64)
    out, state = layer(x)
    kw = dict(rule=rule, eta=layer.eta, clip=layer.clip)
    if rule == "retro":
        kw = dict(rule=rule, eta=layer.eta, mod_w=layer.mod_w, mod_b=layer.mod_b, clip=layer.clip)
    ref_out, ref_state = hebbkern.plastic_rnn(x, layer.w, layer.alpha, backend="reference", **kw)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-14)
    torch.testing.assert_close(state.hebb, ref_state.hebb, rtol=0, atol=1e-14)
    # Gradients reach x itself (no projection in between) and the recurrent parameters.
    x.requires_grad_(True)
    layer(x)[0].sum().backward()
    assert x.grad is not None and layer.w.grad is not None


def test_state_dict_repr_and_reset():
    layer = PlasticRNN(N, N, input_projection=False)
    assert set(layer.state_dict()) == {"w", "alpha", "eta"}
    assert layer.weight_ih is None and layer.bias_ih is None
    assert "input_projection=False" in repr(layer)
    assert "bias=False" not in repr(layer)
    before = layer.w.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.w)
    # With a projection, the keys are back, and the two layouts do not load into each other.
    projected = PlasticRNN(N, N)
    assert {"weight_ih", "bias_ih"} <= set(projected.state_dict())
    with pytest.raises(RuntimeError, match="Missing key"):
        projected.load_state_dict(layer.state_dict())
    with pytest.raises(RuntimeError, match="Unexpected key"):
        layer.load_state_dict(projected.state_dict())
    # bias=False changes nothing without a projection.
    assert set(PlasticRNN(N, N, bias=False, input_projection=False).state_dict()) == {
        "w", "alpha", "eta"
    }  # fmt: skip


def test_cell_matches_layer_and_loads_its_state_dict():
    torch.manual_seed(1)
    layer = PlasticRNN(N, N, rule="neuromod", fanout=True, input_projection=False, dtype=f64)
    cell = PlasticRNNCell(N, N, rule="neuromod", fanout=True, input_projection=False, dtype=f64)
    cell.load_state_dict(layer.state_dict())
    assert "input_projection=False" in repr(cell)
    x = torch.randn(T, B, N, dtype=f64)
    mask = torch.rand(T, B, N) < 0.3
    out, final = layer(x, clamp_mask=mask)
    state = None
    for t in range(T):
        state = cell(x[t], state, clamp_mask=mask[t])
        torch.testing.assert_close(state.h, out[t], rtol=0, atol=1e-13)
    torch.testing.assert_close(state.hebb, final.hebb, rtol=0, atol=1e-13)
    # Clamped neurons take their input value itself.
    torch.testing.assert_close(out[mask], x[mask], rtol=0, atol=0)


def test_batch_first_and_unbatched():
    torch.manual_seed(2)
    layer = PlasticRNN(N, N, input_projection=False, batch_first=True, dtype=f64)
    x = torch.randn(B, T, N, dtype=f64)
    out, _ = layer(x)
    ref, _ = hebbkern.plastic_rnn(x.transpose(0, 1), layer.w, layer.alpha, eta=layer.eta)
    torch.testing.assert_close(out, ref.transpose(0, 1), rtol=0, atol=1e-14)
    one, _ = layer(x[0])  # unbatched [T, N]
    torch.testing.assert_close(one, out[0], rtol=0, atol=1e-14)


def test_errors():
    with pytest.raises(ValueError, match="input_size must equal hidden_size"):
        PlasticRNN(3, N, input_projection=False)
    with pytest.raises(ValueError, match="input_size must equal hidden_size"):
        PlasticRNNCell(N, 3, input_projection=False)
    with pytest.raises(TypeError, match="input_projection must be a bool"):
        PlasticRNN(N, N, input_projection=0)
    layer = PlasticRNN(N, N, input_projection=False)
    with pytest.raises(ValueError, match=r"^x must have shape \[T, B, 6\]"):
        layer(torch.randn(T, B, N + 1))
    with pytest.raises(TypeError, match="^x must have dtype torch.float32"):
        layer(torch.randn(T, B, N, dtype=f64))
