"""opcheck of every hebbkern custom op on every layout (issue 21, item 3).

Each scenario runs a public op forward and backward on small float64 inputs while a dispatch
mode records the custom-op calls it makes (the forward op and, during the backward, the backward
op), so the checked arguments are exactly what the library passes. Every recorded call is then
re-run through ``torch.library.opcheck`` (schema, autograd registration, ``test_faketensor`` and
``test_aot_dispatch_dynamic``) with its tensors contiguous, transposed (``.mT`` views), sliced
(every other element of the last dimension) and expanded (stride 0 along the last dimension).
A fake kernel that reports strides the real kernel does not produce fails ``test_faketensor``.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import hebbkern
from hebbkern.optim import FOP

pytestmark = pytest.mark.skipif(
    not hebbkern.extension_available(), reason="the compiled extension is not built"
)

F64 = torch.float64


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "hebbkern":
            snap = torch.utils._pytree.tree_map_only(
                torch.Tensor, lambda t: t.detach().clone(), (args, kwargs)
            )
            self.calls.append((func, *snap))
        return func(*args, **kwargs)


def _r(*shape, scale=0.3, seed=[0]):  # noqa: B006 - a counter shared by the scenarios
    seed[0] += 1
    g = torch.Generator().manual_seed(seed[0])
    return (scale * torch.randn(shape, generator=g, dtype=F64)).requires_grad_()


def _loss(*outs):
    return sum(o.sum() for o in torch.utils._pytree.tree_leaves(outs) if o is not None)


def _rnn(rule, alpha_shape):
    N = 4
    kw = {}
    if rule in ("hebb", "oja", "clip", "retro"):
        kw["eta"] = torch.tensor(0.2, dtype=F64, requires_grad=True)
    if rule in ("neuromod", "retro"):
        kw.update(mod_w=_r(N), fanout_w=_r(N), fanout_b=_r(N))
    mask = torch.rand(3, 2, N, generator=torch.Generator().manual_seed(3)) < 0.3
    h, st = hebbkern.plastic_rnn(_r(3, 2, N, scale=1.0), _r(N, N), _r(*alpha_shape), rule=rule,
                                 h0=_r(2, N), hebb0=_r(2, N, N), clamp_mask=mask,
                                 backend="cpu", **kw)  # fmt: skip
    _loss(h, st).backward()


def _step(per_sample_w, alpha_shape, rule="retro"):
    B, N = 3, 4
    kw = dict(eta=0.2, mod_w=_r(N)) if rule == "retro" else dict(eta=0.2)
    if rule == "retro":
        kw["elig"] = _r(B, N, N)
    s = hebbkern.plastic_step(_r(B, N, scale=1.0), _r(B, N), _r(B, N, N),
                              _r(B, N, N) if per_sample_w else _r(N, N), _r(*alpha_shape),
                              rule=rule, backend="cpu", **kw)  # fmt: skip
    _loss(s).backward()


def _trace(shared, eta_shape, rule="oja"):
    B, M, K = 3, 4, 5
    t = _r(M, K) if shared else _r(B, M, K)
    eta = _r(*eta_shape) if eta_shape is not None else 0.1
    out = hebbkern.trace_update(t, _r(B, M), _r(B, K), rule=rule, eta=eta,
                                clip=0.5 if rule == "clip" else None, backend="cpu")  # fmt: skip
    _loss(out).backward()


def _linear(shared, alpha_shape):
    B, M, K = 3, 4, 5
    H = _r(M, K) if shared else _r(B, M, K)
    _loss(
        hebbkern.plastic_linear(_r(B, M), _r(M, K), _r(*alpha_shape), H, backend="cpu")
    ).backward()


def _lstm(rule, alpha_shape):
    N = 3
    kw = dict(mod_w=_r(N), fanout_w=_r(N), fanout_b=_r(N))
    if rule == "retro":
        kw["eta"] = torch.tensor(0.2, dtype=F64, requires_grad=True)
        kw["elig0"] = _r(2, N, N)
    h, st = hebbkern.plastic_lstm(_r(4, 2, 4 * N, scale=1.0), _r(N, 4 * N), _r(*alpha_shape),
                                  rule=rule, h0=_r(2, N), c0=_r(2, N), hebb0=_r(2, N, N),
                                  backend="cpu", **kw)  # fmt: skip
    _loss(h, st).backward()


def _hebbian(conv):
    if conv:
        dw = hebbkern.hebbian_update(_r(4, 2, 3, 3), _r(2, 2, 5, 5), _r(2, 4, 3, 3), rule="oja",
                                     backend="cpu")  # fmt: skip
    else:
        dw = hebbkern.hebbian_update(_r(4, 3), _r(5, 3), _r(5, 4), rule="oja", backend="cpu")
    _loss(dw).backward()


def _fop(base):
    params = [torch.nn.Parameter(_r(4, 3).detach()), torch.nn.Parameter(_r(2, 2, 3, 3).detach())]
    momentum = 0.9 if base == "sgd" else 0.0
    opt = FOP(params, lr=0.1, hyper_lr=0.1, base=base, momentum=momentum, backend="cpu")
    for _ in range(2):
        for p in params:
            p.grad = _r(*p.shape).detach()
        opt.step()


SCENARIOS = {
    "rnn-hebb-nn": lambda: _rnn("hebb", (4, 4)),
    "rnn-retro-n": lambda: _rnn("retro", (4,)),
    "rnn-neuromod-s": lambda: _rnn("neuromod", ()),
    "step-shared-nn": lambda: _step(False, (4, 4)),
    "step-persample-bnn": lambda: _step(True, (3, 4, 4)),
    "step-hebb-n": lambda: _step(False, (4,), rule="hebb"),
    "trace-persample-bk": lambda: _trace(False, (3, 5)),
    "trace-shared-b": lambda: _trace(True, (3,)),
    "trace-shared-clip": lambda: _trace(True, (), rule="clip"),
    "linear-persample-mk": lambda: _linear(False, (4, 5)),
    "linear-shared-k": lambda: _linear(True, (5,)),
    "lstm-neuromod-nn": lambda: _lstm("neuromod", (3, 3)),
    "lstm-retro-n": lambda: _lstm("retro", (3,)),
    "hebbian-linear": lambda: _hebbian(False),
    "hebbian-conv": lambda: _hebbian(True),
    "fop-adam": lambda: _fop("adam"),
    "fop-sgd": lambda: _fop("sgd"),
}

LAYOUTS = ("contiguous", "transposed", "sliced", "expanded")


def _recorded(name):
    rec = _Recorder()
    with rec:
        SCENARIOS[name]()
    # One call per distinct op (a scenario's forward and backward ops; FOP's repeated steps).
    seen, calls = set(), []
    for c in rec.calls:
        if c[0] not in seen:
            seen.add(c[0])
            calls.append(c)
    assert calls, f"{name} made no hebbkern custom-op call"
    return calls


def _layout(t: torch.Tensor, kind: str, grad: bool) -> torch.Tensor:
    if not t.is_floating_point() and t.dtype != torch.bool:
        return t
    if kind == "transposed" and t.dim() >= 2:
        base = t.mT.contiguous()
        return base.requires_grad_(grad).mT if t.is_floating_point() else base.mT
    if kind == "sliced" and t.dim() >= 1:
        base = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        base[..., ::2] = t
        base.requires_grad_(grad and t.is_floating_point())
        return base[..., ::2]
    if kind == "expanded" and t.dim() >= 1 and t.numel() > 0 and t.shape[-1] > 1:
        base = t[..., :1].clone().requires_grad_(grad and t.is_floating_point())
        return base.expand(t.shape)
    return t.clone().requires_grad_(grad and t.is_floating_point())


CASES = [(s, lay) for s in SCENARIOS for lay in LAYOUTS]


@pytest.mark.parametrize("scenario,layout", CASES, ids=[f"{s}-{lay}" for s, lay in CASES])
def test_opcheck_every_layout(scenario, layout):
    for func, args, kwargs in _recorded(scenario):
        mutable = func._schema.is_mutable
        if mutable and layout == "expanded":
            continue  # an in-place op cannot write into a stride-0 view (torch refuses it too)
        # Autograd is registered on the forward ops only; their inputs require grad so that
        # opcheck's autograd-registration test sees them.
        grad = not mutable and func._opname.endswith(("_fwd", "_linear", "_conv2d"))

        def lay(x, g=grad):
            return torch.utils._pytree.tree_map_only(
                torch.Tensor, lambda t: _layout(t, layout, g), x
            )

        if mutable:
            # FOP's step: the parameters and gradients come in any layout; its state buffers
            # (preconditioners, moments) are FOP's own, contiguous by the op's contract.
            args = (lay(args[0]), lay(args[1]), *args[2:])
        else:
            args, kwargs = lay((args, kwargs))
        torch.library.opcheck(func, args, kwargs)
