"""``hebbkern.nn.PlasticLSTM``: torch.nn conventions, and the drop-in proof of SPEC.md section 2:
a plastic LSTM language model written the way the Backpropamine code writes it (eager loop, bmm,
clamp), with its weights copied into PlasticLSTM, gives the same outputs and gradients, also
across detached truncated-BPTT segments."""

from __future__ import annotations

import io

import pytest
import torch
from helpers import rel_err
from torch import nn

import hebbkern
from hebbkern.nn import PlasticLSTM


class PaperPlasticLSTMLM(nn.Module):
    """A plastic LSTM language model in the style of the paper's code: one eager loop over time,
    ``bmm`` for the plastic term and the outer product, ``clamp`` on the trace."""

    def __init__(self, ntoken: int, ninp: int, nhid: int, rule: str) -> None:
        super().__init__()
        self.rule, self.nhid = rule, nhid
        self.encoder = nn.Embedding(ntoken, ninp)
        self.x2h = nn.Linear(ninp, 4 * nhid)
        self.h2h = nn.Linear(nhid, 4 * nhid)
        self.alpha = nn.Parameter(0.5 * torch.rand(nhid))
        if rule == "hebb":
            self.eta = nn.Parameter(0.1 * torch.ones(1))
        else:
            self.h2mod = nn.Linear(nhid, 1)
            self.modfanout = nn.Linear(1, nhid)
            if rule == "retro":
                self.etaet = nn.Parameter(0.2 * torch.ones(1))
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens, hidden):
        h, c, hebb, et = hidden
        emb = self.encoder(tokens)
        outs = []
        for t in range(tokens.shape[0]):
            i, f, g, o = (self.x2h(emb[t]) + self.h2h(h)).chunk(4, 1)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            g = torch.tanh(g + torch.bmm(h.unsqueeze(1), self.alpha * hebb).squeeze(1))
            c = f * c + i * g
            hnew = o * torch.tanh(c)
            deltahebb = torch.bmm(h.unsqueeze(2), g.unsqueeze(1))
            if self.rule == "hebb":
                hebb = (1 - self.eta) * hebb + self.eta * deltahebb
            else:
                myeta = self.modfanout(torch.tanh(self.h2mod(hnew)).unsqueeze(2))  # [B, 1, N]
                if self.rule == "neuromod":
                    hebb = torch.clamp(hebb + myeta * deltahebb, min=-2.0, max=2.0)
                else:
                    hebb = torch.clamp(hebb + myeta * et, min=-2.0, max=2.0)
                    et = (1 - self.etaet) * et + self.etaet * deltahebb
            h = hnew
            outs.append(h)
        return self.decoder(torch.stack(outs)), (h, c, hebb, et)


class HebbkernLM(nn.Module):
    def __init__(self, ntoken: int, ninp: int, nhid: int, rule: str) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = PlasticLSTM(ninp, nhid, rule=rule, alpha="per_neuron", fanout=True, clip=2.0)
        self.decoder = nn.Linear(nhid, ntoken)

    def forward(self, tokens, state=None):
        out, state = self.rnn(self.encoder(tokens), state)
        return self.decoder(out), state


def copy_weights(paper: PaperPlasticLSTMLM, ours: HebbkernLM) -> None:
    r = ours.rnn
    with torch.no_grad():
        ours.encoder.weight.copy_(paper.encoder.weight)
        ours.decoder.load_state_dict(paper.decoder.state_dict())
        r.weight_ih_l0.copy_(paper.x2h.weight)
        r.bias_ih_l0.copy_(paper.x2h.bias)
        r.weight_hh_l0.copy_(paper.h2h.weight)
        r.bias_hh_l0.copy_(paper.h2h.bias)
        r.alpha_l0.copy_(paper.alpha)
        if paper.rule == "hebb":
            r.eta_l0.copy_(paper.eta[0])
        else:
            r.mod_w_l0.copy_(paper.h2mod.weight[0])
            r.mod_b_l0.copy_(paper.h2mod.bias[0])
            r.fanout_w_l0.copy_(paper.modfanout.weight[:, 0])
            r.fanout_b_l0.copy_(paper.modfanout.bias)
            if paper.rule == "retro":
                r.eta_l0.copy_(paper.etaet[0])


def grads_of(
    paper: PaperPlasticLSTMLM, ours: HebbkernLM
) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    r = ours.rnn
    pairs = [
        ("encoder", paper.encoder.weight.grad, ours.encoder.weight.grad),
        ("decoder.w", paper.decoder.weight.grad, ours.decoder.weight.grad),
        ("decoder.b", paper.decoder.bias.grad, ours.decoder.bias.grad),
        ("w_ih", paper.x2h.weight.grad, r.weight_ih_l0.grad),
        ("b_ih", paper.x2h.bias.grad, r.bias_ih_l0.grad),
        ("w_hh", paper.h2h.weight.grad, r.weight_hh_l0.grad),
        ("b_hh", paper.h2h.bias.grad, r.bias_hh_l0.grad),
        ("alpha", paper.alpha.grad, r.alpha_l0.grad),
    ]
    if paper.rule == "hebb":
        pairs.append(("eta", paper.eta.grad[0], r.eta_l0.grad))
    else:
        pairs += [
            ("mod_w", paper.h2mod.weight.grad[0], r.mod_w_l0.grad),
            ("mod_b", paper.h2mod.bias.grad[0], r.mod_b_l0.grad),
            ("fanout_w", paper.modfanout.weight.grad[:, 0], r.fanout_w_l0.grad),
            ("fanout_b", paper.modfanout.bias.grad, r.fanout_b_l0.grad),
        ]
        if paper.rule == "retro":
            pairs.append(("etaet", paper.etaet.grad[0], r.eta_l0.grad))
    return pairs


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("rule", ["neuromod", "retro", "hebb"])
def test_language_model_drop_in_truncated_bptt(rule, dtype, tol):
    torch.manual_seed(0)
    V, E, N, B, T = 11, 6, 9, 3, 8
    paper = PaperPlasticLSTMLM(V, E, N, rule).to(dtype)
    ours = HebbkernLM(V, E, N, rule).to(dtype)
    copy_weights(paper, ours)
    opt_p = torch.optim.SGD(paper.parameters(), lr=0.5)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.5)
    data = torch.randint(0, V, (3 * T + 1, B))
    zeros = torch.zeros(B, N, dtype=dtype)
    hidden = (zeros, zeros, torch.zeros(B, N, N, dtype=dtype), torch.zeros(B, N, N, dtype=dtype))
    state = None
    for seg in range(3):  # truncated BPTT: detach the state between segments, carry it on
        x, y = data[seg * T : (seg + 1) * T], data[seg * T + 1 : (seg + 1) * T + 1]
        opt_p.zero_grad()
        opt_o.zero_grad()
        lp, hidden = paper(x, hidden)
        lo, state = ours(x, state)
        assert rel_err(lo, lp) < tol, f"segment {seg}: logits"
        assert rel_err(state[2][0], hidden[2]) < tol, f"segment {seg}: trace"
        assert rel_err(state[1][0], hidden[1]) < tol, f"segment {seg}: cell"
        if rule == "retro":
            assert rel_err(state[3][0], hidden[3]) < tol, f"segment {seg}: eligibility"
        loss_p = nn.functional.cross_entropy(lp.reshape(-1, V), y.reshape(-1))
        loss_o = nn.functional.cross_entropy(lo.reshape(-1, V), y.reshape(-1))
        loss_p.backward()
        loss_o.backward()
        for name, gp, go in grads_of(paper, ours):
            assert gp.norm() > 0, f"segment {seg}: paper gradient of {name} is zero"
            assert rel_err(go, gp) < tol, f"segment {seg}: gradient of {name}"
        opt_p.step()
        opt_o.step()
        hidden = tuple(s.detach() for s in hidden)
        state = tuple(s.detach() for s in state)


def test_zero_alpha_is_torch_lstm():
    """With alpha = 0 the layer is an ``nn.LSTM``, whose state_dict it loads (strict=False)."""
    torch.manual_seed(1)
    ref = nn.LSTM(5, 7, num_layers=2, dtype=torch.float64)
    ours = PlasticLSTM(5, 7, num_layers=2, dtype=torch.float64)
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(
        k.split("_l")[0] in ("alpha", "mod_w", "mod_b", "fanout_w", "fanout_b") for k in missing
    )
    with torch.no_grad():
        ours.alpha_l0.zero_()
        ours.alpha_l1.zero_()
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    out_r, (h_r, c_r) = ref(x)
    out_o, (h_o, c_o, hebb) = ours(x)
    assert rel_err(out_o, out_r) < 1e-12 and rel_err(h_o, h_r) < 1e-12
    assert rel_err(c_o, c_r) < 1e-12 and hebb.shape == (2, 3, 7, 7)


def test_two_layers_match_reference():
    torch.manual_seed(2)
    m = PlasticLSTM(4, 5, num_layers=2, rule="retro", dtype=torch.float64)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    out, (h, c, hebb, elig) = m(x)
    with hebbkern.use_backend("reference"):
        out_r, (h_r, c_r, hebb_r, elig_r) = m(x)
    for a, b in ((out, out_r), (h, h_r), (c, c_r), (hebb, hebb_r), (elig, elig_r)):
        assert rel_err(a, b) < 1e-10
    gs = torch.autograd.grad(out.square().sum(), list(m.parameters()))
    gr = torch.autograd.grad(out_r.square().sum(), list(m.parameters()))
    for a, b in zip(gs, gr, strict=True):
        assert rel_err(a, b) < 1e-8


def test_batch_first_and_unbatched():
    torch.manual_seed(3)
    m = PlasticLSTM(3, 4, dtype=torch.float64)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out, st = m(x)
    mb = PlasticLSTM(3, 4, batch_first=True, dtype=torch.float64)
    mb.load_state_dict(m.state_dict())
    out_b, st_b = mb(x.transpose(0, 1))
    assert torch.allclose(out_b.transpose(0, 1), out)
    assert all(torch.allclose(a, b) for a, b in zip(st, st_b, strict=True))
    out_u, st_u = m(x[:, 1])
    assert torch.allclose(out_u, out[:, 1]) and st_u[2].shape == (1, 4, 4)
    assert torch.allclose(st_u[2], st[2][:, 1])
    out_u2, _ = m(x[:, 1], st_u)  # an unbatched state goes back in
    assert out_u2.shape == (6, 4)


def test_state_dict_round_trip_and_repr():
    m = PlasticLSTM(3, 4, num_layers=2, rule="retro", alpha="per_connection")
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    m2 = PlasticLSTM(3, 4, num_layers=2, rule="retro", alpha="per_connection")
    m2.load_state_dict(torch.load(buf))
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert m.alpha_l0.shape == (4, 4) and m.eta_l1.shape == ()
    r = repr(m)
    assert "num_layers=2" in r and "rule='retro'" in r and "per_connection" in r
    m.reset_parameters()
    assert (m.alpha_l0 >= 0).all() and (m.alpha_l0 < 0.001).all()
    assert m.eta_l0.detach().item() == pytest.approx(0.01)
    assert PlasticLSTM(2, 3, rule="hebb").fanout is False  # no fan-out without a modulator


def test_dtype_and_device_arguments():
    m = PlasticLSTM(3, 4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, _ = m.float()(torch.randn(2, 1, 3))
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"input_size": 0, "hidden_size": 3}, ValueError, "input_size"),
        ({"input_size": 2, "hidden_size": 3, "num_layers": 0}, ValueError, "num_layers"),
        ({"input_size": 2, "hidden_size": 3, "rule": "nope"}, ValueError, "rule"),
        ({"input_size": 2, "hidden_size": 3, "alpha": "nope"}, ValueError, "alpha"),
        ({"input_size": 2, "hidden_size": 3, "clip": -1.0}, ValueError, "clip"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        PlasticLSTM(**kwargs)


def test_forward_errors():
    m = PlasticLSTM(3, 4)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        m([1, 2, 3])
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(2, 1, 5))
    x = torch.randn(2, 1, 3)
    with pytest.raises(ValueError, match="state must be a tuple"):
        m(x, (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(ValueError, match="state hebb must have shape"):
        m(x, (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4), torch.zeros(1, 1, 4)))
    with pytest.raises(TypeError, match="state c must have dtype"):
        m(x, (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4, dtype=torch.float64),
              torch.zeros(1, 1, 4, 4)))  # fmt: skip


def test_module_compiles_fullgraph():
    torch.manual_seed(4)
    m = PlasticLSTM(3, 5, num_layers=2, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    out_c, st_c = compiled(x)
    out_e, st_e = m(x)
    assert torch.allclose(out_c, out_e) and torch.allclose(st_c[2], st_e[2])
    g_c = torch.autograd.grad(out_c.sum() + st_c[2].sum(), list(m.parameters()))
    g_e = torch.autograd.grad(out_e.sum() + st_e[2].sum(), list(m.parameters()))
    for a, b in zip(g_c, g_e, strict=True):
        assert torch.allclose(a, b)
