"""The weight-layout option (issue 20, item 2) and the row split of the plastic_step CPU kernels
(issue 20, item 7).

``layout="post_pre"`` stores ``w``, a per-connection ``alpha`` and the traces ``[.., post, pre]``:
a call equals the ``"pre_post"`` call on the transposed tensors, with transposed traces and
gradients (float64, every backend). The row split (a batch smaller than ``kRowSplitMaxBatch`` with
``N * N >= 2 * GRAIN_SIZE``) cuts one sample's rows over threads: it is checked against the
eager reference in both layouts, and to give the same bits with 1 and 2 threads.
"""

from __future__ import annotations

import pytest
import torch
from helpers import grad_names, loss_weights, rel_err
from helpers_step import run_step, step_inputs

import hebbkern
from hebbkern.nn import PlasticRNN, PlasticRNNCell

RULES = ("hebb", "oja", "clip", "neuromod", "retro")
SQUARE = ("hebb", "elig", "w", "alpha")  # the arguments stored [pre, post] / [post, pre]


def transposed(kw: dict) -> dict:
    """``kw`` with every [.., N, N] argument transposed (fresh leaves)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            t = v.detach()
            if k in SQUARE and t.dim() >= 2:
                t = t.transpose(-1, -2)
            out[k] = t.contiguous().requires_grad_(v.requires_grad)
        else:
            out[k] = v
    return out


def swap_back(name: str, x):
    return x.transpose(-1, -2) if x is not None and name in SQUARE and x.dim() >= 2 else x


def run_canonical(kw: dict, backend: str, seed: int = 1):
    """``run_step`` with the traces read back in the pre_post layout before the loss, so that a
    post_pre call is scored by the same loss as the pre_post call on transposed inputs."""
    post_pre = kw.get("layout") == "post_pre"
    st = hebbkern.plastic_step(**kw, backend=backend)
    outs = {"h": st.h, "hebb": st.hebb}
    if st.elig is not None:
        outs["elig"] = st.elig
    if post_pre:
        outs = {k: swap_back("hebb", v) if k != "h" else v for k, v in outs.items()}
    wts = loss_weights(outs, seed)
    loss = sum((outs[k] * wts[k].to(outs[k].dtype)).sum() for k in outs)
    names = grad_names(kw)
    grads = torch.autograd.grad(loss, [kw[k] for k in names], allow_unused=True)
    return {k: v.detach() for k, v in outs.items()}, dict(zip(names, grads, strict=True))


def check_layout_equal(kw: dict, backend: str, tol: float = 1e-12) -> None:
    ref_out, ref_grads = run_canonical(kw, backend)
    kt = transposed(kw)
    kt["layout"] = "post_pre"
    out, grads = run_canonical(kt, backend)
    for k, v in ref_out.items():
        assert rel_err(out[k], v) < tol, k
    for k, g in ref_grads.items():
        if g is None:
            assert grads[k] is None, k
            continue
        assert rel_err(swap_back(k, grads[k]), g) < tol, k


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron", "scalar", "per_sample"])
def test_post_pre_equals_transposed(backend, rule, alpha_kind, nan_poison):
    fan = rule in ("neuromod", "retro")
    kw = step_inputs(rule, alpha_kind, fanout=fan, clamp=True, B=3, N=7)
    check_layout_equal(kw, backend)


@pytest.mark.parametrize("rule", ["hebb", "neuromod"])
def test_post_pre_per_sample_w(rule):
    kw = step_inputs(rule, "per_connection", fanout=rule == "neuromod", B=2, N=5,
                     per_sample_w=True)  # fmt: skip
    check_layout_equal(kw, "cpu")


# The row split: B < 4 and N * N >= 2 * 32768 (N >= 256); N = 300 gives chunks of 110 rows and a
# last, shorter one.
@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize(
    "rule, alpha_kind, B",
    [("hebb", "per_connection", 1), ("neuromod", "per_neuron", 1), ("retro", "scalar", 2),
     ("oja", "per_sample", 3), ("clip", "per_connection", 2)],
)  # fmt: skip
def test_row_split_matches_reference(rule, alpha_kind, B, layout, nan_poison):
    fan = rule in ("neuromod", "retro")
    kw = step_inputs(rule, alpha_kind, fanout=fan, clamp=True, B=B, N=300)
    if layout == "post_pre":
        kw = transposed(kw)
        kw["layout"] = "post_pre"
    out_ref, g_ref = run_step(kw, "reference")
    out, g = run_step(kw, "cpu")
    for k, v in out_ref.items():
        assert rel_err(out[k], v) < 1e-12, k
    for k, v in g_ref.items():
        assert rel_err(g[k], v) < 1e-12, k


@pytest.mark.parametrize("layout", ["pre_post", "post_pre"])
@pytest.mark.parametrize("B, N", [(1, 300), (30, 100)])
def test_same_bits_with_1_and_2_threads(B, N, layout, restore_threads):
    kw = step_inputs("neuromod", "per_connection", fanout=True, B=B, N=N, dtype=torch.float32)
    kw["layout"] = layout
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(run_step(kw, "cpu"))
    (o1, g1), (o2, g2) = results
    for k in o1:
        assert torch.equal(o1[k], o2[k]), k
    for k in g1:
        assert torch.equal(g1[k], g2[k]), k


def test_post_pre_gradcheck():
    kw = step_inputs("neuromod", "per_neuron", fanout=True, B=2, N=4)
    names = [k for k, v in kw.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def f(*xs):
        args = dict(kw, **dict(zip(names, xs, strict=True)))
        st = hebbkern.plastic_step(**args, layout="post_pre", backend="cpu")
        return st.h, st.hebb

    assert torch.autograd.gradcheck(f, [kw[k] for k in names])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("alpha_kind", ["per_connection", "per_neuron"])
def test_plastic_rnn_post_pre(backend, alpha_kind):
    g = torch.Generator().manual_seed(0)
    T, B, N = 4, 2, 6
    u = torch.randn(T, B, N, generator=g, dtype=torch.float64)
    w = 0.3 * torch.randn(N, N, generator=g, dtype=torch.float64)
    alpha = 0.3 * torch.randn(*((N, N) if alpha_kind == "per_connection" else (N,)), generator=g,
                              dtype=torch.float64)  # fmt: skip
    hebb0 = 0.1 * torch.randn(B, N, N, generator=g, dtype=torch.float64)
    leaves = [x.requires_grad_() for x in (u, w, alpha, hebb0)]
    kw = dict(rule="neuromod", mod_w=torch.full((N,), 0.2, dtype=torch.float64), clip=2.0,
              backend=backend)  # fmt: skip
    h, st = hebbkern.plastic_rnn(u, w, alpha, hebb0=hebb0, **kw)
    ref = (h.sum() + (st.hebb * torch.arange(N * N).view(N, N)).sum(), st.hebb)
    g_ref = torch.autograd.grad(ref[0], leaves)

    def tr(x):
        return x.detach().transpose(-1, -2).contiguous().requires_grad_() if x.dim() >= 2 else x

    lt = [u, tr(w), tr(alpha) if alpha.dim() == 2 else alpha.detach().requires_grad_(), tr(hebb0)]
    h2, st2 = hebbkern.plastic_rnn(lt[0], lt[1], lt[2], hebb0=lt[3], layout="post_pre", **kw)
    loss2 = h2.sum() + (st2.hebb.transpose(-1, -2) * torch.arange(N * N).view(N, N)).sum()
    g2 = torch.autograd.grad(loss2, lt)
    assert rel_err(h2, h) < 1e-12
    assert rel_err(st2.hebb.transpose(-1, -2), st.hebb) < 1e-12
    for a, b in zip(g2, g_ref, strict=True):
        a = a.transpose(-1, -2) if a.dim() >= 2 and a.shape[-1] == a.shape[-2] else a
        assert rel_err(a, b) < 1e-12


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("shared", [True, False])
def test_plastic_linear_post_pre(backend, shared):
    g = torch.Generator().manual_seed(0)
    B, M, K = 3, 5, 4
    x = torch.randn(B, M, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(M, K, generator=g, dtype=torch.float64)
    alpha = torch.randn(M, K, generator=g, dtype=torch.float64)
    hebb = torch.randn(*((M, K) if shared else (B, M, K)), generator=g, dtype=torch.float64)
    z = hebbkern.plastic_linear(x, w, alpha, hebb, backend=backend)
    z2 = hebbkern.plastic_linear(
        x, w.t(), alpha.t(), hebb.transpose(-1, -2), backend=backend, layout="post_pre"
    )
    assert rel_err(z2, z) < 1e-12


def test_modules_post_pre_state_dict():
    torch.manual_seed(0)
    kw = dict(rule="neuromod", fanout=True, clip=2.0, dtype=torch.float64)
    a = PlasticRNN(3, 6, **kw)
    b = PlasticRNN(3, 6, layout="post_pre", **kw)
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    sd = a.state_dict()
    sd["w"], sd["alpha"] = sd["w"].t().contiguous(), sd["alpha"].t().contiguous()
    b.load_state_dict(sd)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out_a, st_a = a(x)
    out_b, st_b = b(x)
    assert rel_err(out_b, out_a) < 1e-12
    assert rel_err(st_b.hebb.transpose(-1, -2), st_a.hebb) < 1e-12
    assert "layout='post_pre'" in repr(b)

    ca = PlasticRNNCell(3, 6, **kw)
    cb = PlasticRNNCell(3, 6, layout="post_pre", **kw)
    ca.load_state_dict(a.state_dict())  # the layer's state_dict loads into the cell
    cb.load_state_dict(b.state_dict())
    sa = sb = None
    for t in range(5):
        sa, sb = ca(x[t], sa), cb(x[t], sb)
        assert rel_err(sb.h, out_a[t]) < 1e-12
    assert rel_err(sb.hebb.transpose(-1, -2), sa.hebb) < 1e-12


def test_unknown_layout():
    kw = step_inputs("hebb", B=1, N=3, requires_grad=False)
    for bad in ("post-pre", "", None, 1):
        with pytest.raises(ValueError, match="layout"):
            hebbkern.plastic_step(**kw, layout=bad)
    u = torch.zeros(2, 1, 3)
    with pytest.raises(ValueError, match="layout"):
        hebbkern.plastic_rnn(u, torch.zeros(3, 3), torch.zeros(3, 3), eta=0.1, layout="pre")
    with pytest.raises(ValueError, match="layout"):
        hebbkern.plastic_linear(torch.zeros(1, 3), torch.zeros(3, 2), torch.zeros(()),
                                torch.zeros(3, 2), layout="postpre")  # fmt: skip
    for cls in (PlasticRNN, PlasticRNNCell):
        with pytest.raises(ValueError, match="layout"):
            cls(3, 4, layout="transposed")


def _raw(kw: dict) -> tuple:
    return (
        kw["u"], kw["h"], kw["hebb"], kw.get("elig"), kw["w"], kw["alpha"], kw.get("clamp_mask"),
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        kw["rule"], float(kw["clip"]),
    )  # fmt: skip


@pytest.mark.parametrize("rule, alpha_kind", [("retro", "per_connection"), ("oja", "per_neuron")])
def test_opcheck_post_pre(rule, alpha_kind):
    kw = step_inputs(rule, alpha_kind, rule == "retro", True, B=2, N=4, seed=8)
    torch.library.opcheck(torch.ops.hebbkern.plastic_step_fwd_post_pre.default, _raw(kw))
    kw = step_inputs(rule, alpha_kind, rule == "retro", True, B=2, N=4, seed=8,
                     requires_grad=False)  # fmt: skip
    h_new, hebb_new, elig_new, mod = torch.ops.hebbkern.plastic_step_fwd_post_pre(*_raw(kw))
    g = torch.Generator().manual_seed(0)
    outs = (h_new, hebb_new, elig_new if rule == "retro" else None)
    grads = tuple(None if x is None else torch.randn(x.shape, generator=g, dtype=x.dtype)
                  for x in outs)  # fmt: skip
    a = _raw(kw)
    torch.library.opcheck(
        torch.ops.hebbkern.plastic_step_bwd_post_pre.default, grads + a[:6] + (h_new, mod) + a[6:]
    )


def test_torch_compile_post_pre():
    torch._dynamo.reset()
    kw = step_inputs("neuromod", "per_connection", True, False, B=2, N=5, seed=2)

    def two_steps(u, h, hebb, w, alpha):
        extra = {k: kw[k] for k in ("mod_w", "mod_b", "fanout_w", "fanout_b")}
        s = hebbkern.plastic_step(u, h, hebb, w, alpha, rule="neuromod", layout="post_pre", **extra)
        s = hebbkern.plastic_step(u, s.h, s.hebb, w, alpha, rule="neuromod", layout="post_pre",
                                  **extra)  # fmt: skip
        return s.h.sum() + s.hebb.square().sum()

    args = [kw[k] for k in ("u", "h", "hebb", "w", "alpha")]
    got = torch.compile(two_steps, fullgraph=True, backend="aot_eager")(*args)
    ref = two_steps(*args)
    assert rel_err(got, ref) < 1e-12
    for a, b in zip(torch.autograd.grad(got, args), torch.autograd.grad(ref, args), strict=True):
        assert rel_err(a, b) < 1e-12
