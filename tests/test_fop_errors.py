"""Bad arguments of ``hebbkern.optim.FOP`` and of the raw ``torch.ops.hebbkern.fop_step_`` op:
each raises ValueError/TypeError naming the argument, before any parameter moves."""

from __future__ import annotations

import pytest
import torch

import hebbkern
from hebbkern.optim import FOP

needs_ext = pytest.mark.skipif(not hebbkern.extension_available(), reason="no compiled extension")


def params():
    return [torch.nn.Parameter(torch.randn(4, 3, 3, 3)), torch.nn.Parameter(torch.randn(4))]


# (id, keyword changes, exception, regex the message must match)
CASES = [
    ("lr-negative", dict(lr=-0.1), ValueError, r"^lr must be a finite number >= 0"),
    ("lr-nan", dict(lr=float("nan")), ValueError, r"^lr must be a finite number"),
    ("lr-str", dict(lr="0.1"), TypeError, r"^lr must be a float, got str"),
    ("lr-tensor", dict(lr=torch.tensor(0.1)), TypeError, r"^lr must be a float"),
    ("hyper_lr-negative", dict(hyper_lr=-1.0), ValueError, r"^hyper_lr must be a finite number"),
    ("hyper_lr-inf", dict(hyper_lr=float("inf")), ValueError, r"^hyper_lr must be a finite"),
    ("hyper_lr-bool", dict(hyper_lr=True), TypeError, r"^hyper_lr must be a float, got bool"),
    ("base-unknown", dict(base="rmsprop"), ValueError, r"^base must be one of 'sgd', 'adam'"),
    ("base-None", dict(base=None), ValueError, r"^base must be one of"),
    ("momentum-one", dict(momentum=1.0), ValueError, r"^momentum must be a finite number in"),
    ("momentum-negative", dict(momentum=-0.5), ValueError, r"^momentum must be"),
    ("momentum-adam", dict(base="adam", momentum=0.9), ValueError, r"^momentum must be 0 with"),
    ("betas-short", dict(betas=(0.9,)), TypeError, r"^betas must be a pair of floats"),
    ("betas-float", dict(betas=0.9), TypeError, r"^betas must be a pair of floats"),
    ("beta1-one", dict(betas=(1.0, 0.999)), ValueError, r"^betas\[0\] must be"),
    ("beta2-negative", dict(betas=(0.9, -0.1)), ValueError, r"^betas\[1\] must be"),
    ("eps-negative", dict(eps=-1e-8), ValueError, r"^eps must be"),
    ("weight_decay-negative", dict(weight_decay=-0.1), ValueError, r"^weight_decay must be"),
    ("precondition-unknown", dict(precondition="rows"), ValueError, r"^precondition must be one"),
    ("backend-unknown", dict(backend="cuda"), ValueError, r"^backend must be None or one of"),
]


@pytest.mark.parametrize(
    ("changes", "exc", "msg"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_hyperparameters(changes, exc, msg):
    kw = dict(lr=0.1, hyper_lr=0.01) | changes
    with pytest.raises(exc, match=msg):
        FOP(params(), **kw)


@pytest.mark.parametrize(("changes", "exc", "msg"), [c[1:] for c in CASES[:-1]],
                         ids=[c[0] for c in CASES[:-1]])  # fmt: skip
def test_bad_param_group(changes, exc, msg):
    opt = FOP(params(), lr=0.1, hyper_lr=0.01)
    with pytest.raises(exc, match=msg):
        opt.add_param_group({"params": params()} | changes)
    assert len(opt.param_groups) == 1


def test_non_floating_params():
    with pytest.raises(TypeError, match=r"^params\[1\] must be a floating-point tensor"):
        FOP([torch.nn.Parameter(torch.randn(3)), torch.zeros(3, dtype=torch.int64)], 0.1, 0.1)


def test_sparse_gradient():
    p = torch.nn.Parameter(torch.randn(5, 3))
    p.grad = torch.randn(5, 3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        FOP([p], lr=0.1, hyper_lr=0.1).step()


@needs_ext
def test_backend_cpu_rejects_other_dtypes():
    p = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.bfloat16))
    p.grad = torch.randn(5, 3, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="backend 'cpu' needs float32 or float64"):
        FOP([p], lr=0.1, hyper_lr=0.1, backend="cpu").step()


def op_args(**changes):
    """Valid arguments of torch.ops.hebbkern.fop_step_ (Adam, a conv weight and a bias)."""
    args = dict(
        params=[torch.randn(4, 3, 3, 3), torch.randn(4)], grads=[torch.randn(4, 3, 3, 3), torch.randn(4)],
        precond=[torch.eye(9), torch.empty(0)], prev_dir=[torch.zeros(4, 3, 3, 3), torch.empty(0)],
        buf1=[torch.zeros(4, 3, 3, 3), torch.zeros(4)],
        buf2=[torch.zeros(4, 3, 3, 3), torch.zeros(4)], steps=[torch.tensor(0.0), torch.tensor(0.0)],
        base="adam", lr=0.1, hyper_lr=0.01, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
        weight_decay=0.0,
    )  # fmt: skip
    args.update(changes)
    return args


RAW_CASES = [
    ("grads-short", dict(grads=[torch.randn(4, 3, 3, 3)]), r"one entry per parameter"),
    ("buf2-missing", dict(buf2=[]), r"buf2 must have one entry per parameter"),
    ("buf1-for-sgd", dict(base="sgd", buf2=[]), r"buf1 must .* be empty for plain SGD"),
    ("buf2-for-sgd", dict(base="sgd", momentum=0.9), r"buf2 must .* be empty for 'sgd'"),
    ("prev_dir-short", dict(prev_dir=[torch.zeros(4, 3, 3, 3)]), r"one entry per parameter"),
    ("prev_dir-shape", dict(prev_dir=[torch.zeros(4, 27), torch.empty(0)]), r"prev_dir\[0\] must"),
    ("base", dict(base="lion"), r"base must be 'sgd' or 'adam'"),
    ("momentum-adam", dict(momentum=0.9), r"momentum must be 0 with base 'adam'"),
    (
        "dtype-int",
        dict(params=[torch.ones(4, 3, 3, 3, dtype=torch.int32), torch.ones(4, dtype=torch.int32)]),
        r"params must be float32 or float64",
    ),
    (
        "params-mixed-dtype",
        dict(params=[torch.randn(4, 3, 3, 3), torch.randn(4, dtype=torch.float64)]),
        r"params\[1\] must be a CPU tensor of dtype Float",
    ),
    ("grad-shape", dict(grads=[torch.randn(4, 3, 9), torch.randn(4)]), r"grads\[0\] must be"),
    (
        "grad-dtype",
        dict(grads=[torch.randn(4, 3, 3, 3, dtype=torch.float64), torch.randn(4)]),
        r"grads\[0\] must be",
    ),
    ("M-not-square", dict(precond=[torch.eye(9)[:, :8], torch.empty(0)]), r"precond\[0\] must be"),
    ("M-size", dict(precond=[torch.eye(10), torch.empty(0)]), r"precond\[0\] must be .*d dividing"),
    ("M-dtype", dict(precond=[torch.eye(9, dtype=torch.float64), torch.empty(0)]), r"precond\[0\]"),
    ("M-non-contiguous", dict(precond=[torch.eye(18)[::2, ::2], torch.empty(0)]), r"precond\[0\]"),
    ("buf1-shape", dict(buf1=[torch.zeros(4, 27), torch.zeros(4)]), r"buf1\[0\] must be"),
    ("buf2-short", dict(buf2=[torch.zeros(4, 3, 3, 3), torch.zeros(3)]), r"buf2\[1\] must be"),
    (
        "step-dtype",
        dict(steps=[torch.tensor(0.0), torch.tensor(0, dtype=torch.int64)]),
        r"steps\[1\]",
    ),
    ("step-shape", dict(steps=[torch.zeros(2), torch.tensor(0.0)]), r"steps\[0\] must be"),
]


@needs_ext
@pytest.mark.parametrize(
    ("changes", "msg"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_raw_op_rejects_bad_arguments(changes, msg):
    args = op_args(**changes)
    before = [p.clone() for p in args["params"]]
    with pytest.raises(ValueError, match=msg):
        torch.ops.hebbkern.fop_step_(**args)
    for p, b in zip(args["params"], before, strict=True):
        assert torch.equal(p, b), "a rejected call must not move any parameter"
