"""torch.func transforms (``grad``, ``grad_and_value``, ``vjp``, ``jacrev``, ``vmap`` of them)
through hebbkern's custom ops.

Every op's autograd is registered with ``torch.library.register_autograd`` (or a ``triton_op``'s
``register_autograd``). The ``autograd.Function`` PyTorch generates from it has no
``setup_context`` staticmethod, and functorch refuses such a Function ("In order to use an
autograd.Function with functorch transforms ... it must override the setup_context
staticmethod"): a known, open PyTorch bug, pytorch/pytorch#168393, #170834 and #179652 (PyTorch
2.14, torch/_library/autograd.py). Meta-learning code (MAML-style inner loops written with
``torch.func.functional_call`` and ``torch.func.grad``) hits it on every hebbkern op.

This module is the workaround, in one place. :func:`register_autograd` replaces each op file's
``register_autograd`` call: it registers the formula with PyTorch as before and builds, from the
**same** ``backward`` and ``setup_context`` functions (no second copy of any formula), an
``autograd.Function`` with ``forward`` (the op itself), ``setup_context``, ``backward`` and
``generate_vmap_rule = True`` (so ``vmap`` of ``grad`` batches through the op's own vmap, which
for these ops is PyTorch's per-sample loop fallback). The public functions send their forward op
through that Function (:func:`transformable`) only while a functorch transform is active
(``torch._C._are_functorch_transforms_active()``); eager calls, ``torch.compile``, ``opcheck``,
``torch.export``, CUDA graphs and the C++ autograd node of ``plastic_step``
(csrc/cpu/plastic_step_autograd.cpp) keep the registered path.

What the Function keeps of the generated one's semantics: ``setup_context`` sees the op's
arguments with the schema's defaults filled in, and keyword-only ones as ``keyword_only_inputs``
when the schema has them; ``backward`` sees ``ctx.needs_input_grad`` with one entry per positional
argument and returns one gradient per positional argument. A second derivative raises, as in
eager (where csrc/ops.cpp's not-implemented Autograd kernel, or PyTorch for the Triton backward
ops, raises): under a transform the fused backward runs without a graph and its gradients carry
a node that raises when differentiated (:class:`_NoDerivative`); the hebbian ops' backward is ATen
ops and differentiates again (``differentiable_backward=True``). Forward-mode transforms
(``jvp``, ``jacfwd``, ``hessian``) are not supported: the ops have no forward-mode formula.
``torch.compile`` of a ``torch.func.grad`` runs, with a graph break at the Function (dynamo does
not trace it with ``fullgraph=True``; it did not before either).

**Delete this module when PyTorch fixes pytorch/pytorch#168393 (#170834, #179652)**: the op files
then call ``torch.library.register_autograd`` again and the public functions drop their
``transformable`` line; tests/test_func_transforms.py stays as the check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._library.utils import is_tensorlist_like_type, lookup_op

# The Function of each forward op, by qualified name ("hebbkern::plastic_step_fwd").
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


def register_autograd(
    op: Any, backward: Callable, setup_context: Callable, *, differentiable_backward: bool = False
) -> None:
    """``torch.library.register_autograd(op, backward, setup_context=setup_context)`` (``op`` a
    qualified name) or ``op.register_autograd(...)`` (``op`` a ``custom_op`` / ``triton_op``), and
    the functorch-ready Function built from the same two functions.

    ``differentiable_backward``: ``backward`` is made of differentiable ops (the hebbian ops'
    ATen calls), so a second derivative exists. Otherwise (the fused backward ops) the
    Function's gradients carry a node that raises when differentiated."""
    if isinstance(op, str):
        torch.library.register_autograd(op, backward, setup_context=setup_context)
        overload = lookup_op(op)
    else:
        op.register_autograd(backward, setup_context=setup_context)
        overload = op._opoverload
    name = overload._schema.name
    _FUNCTIONS[name] = _make_function(overload, backward, setup_context, differentiable_backward)


def transformable(fwd: Any) -> Callable[..., Any]:
    """The Function's ``apply`` for the forward op ``fwd`` (a ``torch.ops`` packet or overload,
    or a ``custom_op`` / ``triton_op``), called with the op's arguments. For calls under a
    functorch transform only: the public functions check
    ``torch._C._are_functorch_transforms_active()`` first, so eager calls pay nothing here."""
    if hasattr(fwd, "_qualname"):  # custom_op / triton_op
        return _FUNCTIONS[fwd._qualname]
    if hasattr(fwd, "_qualified_op_name"):  # torch.ops.<ns>.<op>
        return _FUNCTIONS[fwd._qualified_op_name]
    return _FUNCTIONS[fwd._schema.name]  # an overload


def _make_function(
    op: torch._ops.OpOverload,
    backward: Callable,
    setup_context: Callable,
    differentiable_backward: bool,
):
    schema = op._schema
    if any(is_tensorlist_like_type(a.type) for a in (*schema.arguments, *schema.returns)):
        # PyTorch wraps such ops in supports_tensorlist; no hebbkern op with autograd has one.
        raise NotImplementedError(f"hebbkern._func: {schema.name} has a Tensor[] argument")
    name = schema.name
    kw_names = tuple(a.name for a in schema.arguments if a.kwarg_only)
    n_pos = len(schema.arguments) - len(kw_names)

    # The Function's inputs are the positional arguments, then the keyword-only ones in schema
    # order (non-tensors: register_autograd takes no keyword-only tensor), so that functorch sees
    # every argument; forward, setup_context and backward split them again.
    def forward(*inputs):
        if not kw_names:
            return op(*inputs)
        return op(*inputs[:n_pos], **dict(zip(kw_names, inputs[n_pos:], strict=True)))

    def setup(ctx, inputs, output):
        if kw_names:
            kw = dict(zip(kw_names, inputs[n_pos:], strict=True))
            setup_context(ctx=ctx, inputs=inputs[:n_pos], keyword_only_inputs=kw, output=output)
        else:
            setup_context(ctx=ctx, inputs=inputs, output=output)

    def run_backward(ctx, grads):
        if not kw_names:
            return backward(ctx, *grads)
        needs = ctx.needs_input_grad
        ctx.needs_input_grad = needs[:n_pos]
        try:
            result = backward(ctx, *grads)
        finally:
            ctx.needs_input_grad = needs
        result = result if isinstance(result, tuple) else (result,)
        return (*result, *(None,) * len(kw_names))

    def backward_(ctx, *grads):
        if differentiable_backward:
            return run_backward(ctx, grads)
        # functorch always differentiates the backward (create_graph): a Python custom op
        # (the Triton backward ops) would reach PyTorch's generated Function again and fail,
        # and a graph through a backward op with no derivative would give silent zeros. The
        # gradients are computed without a graph and tied to the backward's inputs by a node
        # that raises, as csrc/ops.cpp's not-implemented Autograd kernel does in eager.
        with torch.no_grad():
            result = run_backward(ctx, grads)
        return _no_derivative(name, result, (*grads, *ctx.saved_tensors))

    function = type(
        f"FunctorchFor_{name.replace('::', '_')}",
        (torch.autograd.Function,),
        {
            "forward": staticmethod(forward),
            "setup_context": staticmethod(setup),
            "backward": staticmethod(backward_),
            "generate_vmap_rule": True,
        },
    )

    # The schema's defaults, filled in as register_autograd gives them to setup_context
    # (torch._library.utils.fill_defaults's rule, precomputed: torch.compile traces apply).
    pos_defaults = tuple(a.default_value for a in schema.arguments if not a.kwarg_only)
    kw_defaults = {a.name: a.default_value for a in schema.arguments if a.kwarg_only}

    def apply(*args, **kwargs):
        # Positional arguments by position, keyword-only ones by name (as the public functions
        # call the ops).
        args = args + pos_defaults[len(args) :]
        return function.apply(*args, *(kwargs.get(k, kw_defaults[k]) for k in kw_names))

    apply.function = function  # for tests and debugging
    return apply


class _NoDerivative(torch.autograd.Function):
    """``forward(name, n, *tensors)``: the first ``n`` tensors (a backward's gradients) as they
    are; the others (the backward's inputs) only tie them into the graph. Differentiating the
    gradients raises, naming the op."""

    generate_vmap_rule = True

    @staticmethod
    def forward(name, n, *tensors):
        return tuple(t.view_as(t) for t in tensors[:n])

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.op_name = inputs[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"the derivative for the backward of {ctx.op_name} is not implemented: hebbkern's "
            "fused backward ops have no derivative (a second derivative through the op)"
        )


def _no_derivative(name: str, grads: Any, inputs: tuple) -> tuple:
    """``grads`` (a backward's result: tensors and Nones) behind a :class:`_NoDerivative` node
    whose inputs are the tensors among ``inputs``."""
    grads = grads if isinstance(grads, tuple) else (grads,)
    where = [i for i, g in enumerate(grads) if isinstance(g, torch.Tensor)]
    deps = [t for t in inputs if isinstance(t, torch.Tensor)]
    tied = _NoDerivative.apply(name, len(where), *(grads[i] for i in where), *deps)
    out = list(grads)
    for i, g in zip(where, tied, strict=True):
        out[i] = g
    return tuple(out)
