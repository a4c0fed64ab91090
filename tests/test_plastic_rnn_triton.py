"""The ``triton`` backend of ``hebbkern.plastic_rnn``.

- Here, on any machine: backend selection and argument errors, ``import hebbkern`` not importing
  triton, and the interpreter suite (interpret_plastic_rnn_triton.py) in its own pytest process with
  ``TRITON_INTERPRET=1``.
- On a machine with a CUDA GPU (skipped elsewhere): the kernels against the reference, low
  precision, ``torch.compile(fullgraph=True)``, the full ``opcheck``, memory saved for backward.

The ahead-of-time compilation check is test_plastic_rnn_triton_aot.py.
"""

from __future__ import annotations

import pytest
import torch
from helpers import (
    MODULATED_RULES,
    assert_low_precision_rule,
    clone_inputs,
    make_inputs,
    outputs_dict,
    run,
    saved_bytes,
)
from triton_checks import (
    TOL,
    assert_compiled_grads_match,
    check_triton_against_reference,
    to_device,
)
from triton_env import (
    CUDA_CASES,
    INTERPRETING,
    assert_import_leaves_triton_alone,
    needs_cuda,
    needs_triton,
    run_interpreter_suite,
)

import hebbkern
from hebbkern import backends

CUDA = torch.device("cuda")


# ---------------------------------------------------------------------------------------------
# Any machine.


def test_triton_is_a_backend():
    assert "triton" in hebbkern.BACKENDS
    with hebbkern.use_backend("triton"):
        pass


def test_import_hebbkern_does_not_import_triton():
    assert_import_leaves_triton_alone(
        "hebbkern.plastic_rnn(torch.randn(2, 1, 3), torch.randn(3, 3), torch.randn(3), eta=0.1)"
    )


@needs_triton
def test_default_backend_on_cuda_is_triton(monkeypatch):
    assert backends.resolve(None, torch.device("cuda")) == "triton"
    assert backends.resolve(None, torch.device("cpu")) in ("cpu", "reference")
    monkeypatch.setattr(backends, "triton_available", lambda: False)
    monkeypatch.setattr(backends, "_warned_no_gpu_backend", False)
    with pytest.warns(RuntimeWarning, match="eager reference"):
        assert backends.resolve(None, torch.device("cuda")) == "reference"
    with pytest.raises(RuntimeError, match="triton package"):
        backends.resolve("triton", torch.device("cuda"))


@needs_triton
def test_block_size_of_a_symbolic_width_is_a_plain_int():
    """Under dynamic shapes N is a SymInt (the H200's opcheck, test_aot_dispatch_dynamic, failed
    with "unhashable type: non-nested SymInt" deriving the configurations from it)."""
    from torch._dynamo.source import ConstantSource
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    from hebbkern.triton.plastic_rnn_ops import block_n, configs_for

    env = ShapeEnv()
    N = env.create_symintnode(env.create_symbol(100, ConstantSource("N")), hint=100)
    assert isinstance(N, torch.SymInt)
    BN = block_n(N)
    assert type(BN) is int and BN == 128
    assert [c.kwargs["BLOCK_I"] for c in configs_for(BN)] == [4, 16]


@needs_triton
def test_resident_configurations_are_shipped_for_small_widths():
    """Issue 13 item 4: every padded width up to 64 ships a configuration whose tile is the whole
    sample, flagged RESIDENT for the forward (and for the backward up to 32), last in the list
    (the one run without autotuning); wider ones ship only the tiled shapes. plastic_step keeps
    the tiled shapes (tile_configs)."""
    from hebbkern.triton.plastic_rnn_ops import configs_for, resident, tile_configs

    for BN in (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024):
        for kernel, widest in (("fwd", 64), ("bwd", 32)):
            for per_sample in (False, True):
                cfgs = configs_for(BN, per_sample and kernel == "bwd", kernel)
                flags = [c.kwargs["RESIDENT"] for c in cfgs]
                assert flags[-1] == (BN <= widest), (BN, kernel)
                for c in cfgs:
                    bi = c.kwargs["BLOCK_I"]
                    assert (
                        c.kwargs["RESIDENT"]
                        == resident(kernel, BN, bi)
                        == (bi == BN and BN <= widest)
                    )
                    if c.kwargs["RESIDENT"]:  # ptxas's own register budget (AOT test)
                        assert c.maxnreg is None
    assert [(c.kwargs["BLOCK_I"], c.num_warps) for c in configs_for(64)] == [
        (8, 4), (32, 8), (64, 16)
    ]  # fmt: skip
    assert [(c.kwargs["BLOCK_I"], c.num_warps) for c in configs_for(64, kernel_name="bwd")] == [
        (8, 4), (32, 8)
    ]  # fmt: skip
    assert [(c.kwargs, c.num_warps) for c in tile_configs(32)] == [
        ({"BLOCK_I": 16}, 4), ({"BLOCK_I": 32}, 8)
    ]  # fmt: skip


@pytest.mark.skipif(INTERPRETING, reason="TRITON_INTERPRET is set: CPU tensors are allowed")
@needs_triton
def test_cpu_tensors_need_the_interpreter():
    kw = make_inputs("hebb", requires_grad=False, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend 'triton' needs CUDA tensors"):
        hebbkern.plastic_rnn(**kw, backend="triton")
    with hebbkern.use_backend("triton"), pytest.raises(ValueError, match="needs CUDA tensors"):
        hebbkern.plastic_rnn(**kw)


@pytest.mark.parametrize(
    "change, exc, match",
    [({"w": torch.zeros(4, 4)}, ValueError, r"w must have shape \[9, 9\]"),
     ({"alpha": torch.zeros(9, 3)}, ValueError, "alpha must have shape"),
     ({"eta": None}, ValueError, "needs eta"),
     ({"clip": -1.0}, ValueError, "clip must be > 0"),
     ({"u": torch.zeros(7, 3, 9, dtype=torch.int64)}, TypeError, "u must be float16, bfloat16, float32 or float64")],
)  # fmt: skip
def test_bad_arguments_raise_before_any_kernel(change, exc, match):
    """The checks run before the backend is even resolved, so they hold for 'triton' too."""
    kw = make_inputs("clip", requires_grad=False, dtype=torch.float32)
    kw.update(change)
    with pytest.raises(exc, match=match):
        hebbkern.plastic_rnn(**kw, backend="triton")


@needs_triton
def test_interpreter_suite():
    """interpret_plastic_rnn_triton.py in its own pytest process, TRITON_INTERPRET=1 set before
    triton is imported (float32, small sizes; a few minutes on 2 cores)."""
    run_interpreter_suite("interpret_plastic_rnn_triton.py")


@pytest.mark.skipif(INTERPRETING, reason="the interpreter's kernels cannot be traced")
@needs_triton
@pytest.mark.parametrize("autotune", ["1", "0"])
def test_ops_trace_with_fake_cuda_tensors(autotune, monkeypatch):
    """Without a GPU: both ops run on fake CUDA tensors (the path torch.compile traces), with the
    autotuned and the single-configuration kernels going through wrap_triton, and give the
    documented output shapes."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx

    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_bwd, plastic_rnn_triton_fwd

    monkeypatch.setenv("HEBBKERN_TRITON_AUTOTUNE", autotune)
    T, B, N, K = 5, 2, 16, 3

    def f(u, w, alpha, eta, mod_w, mod_b, fanout_w, fanout_b, clamp):
        fwd = plastic_rnn_triton_fwd(u, w, alpha, None, None, None, clamp, eta, mod_w, mod_b,
                                     fanout_w, fanout_b, "retro", 1.0, K)  # fmt: skip
        h, hebb, elig, hebb_ckpt, elig_ckpt, mod = fwd
        bwd = plastic_rnn_triton_bwd(h, hebb, elig, w, alpha, None, h, hebb_ckpt, elig_ckpt, mod,
                                     clamp, eta, mod_w, fanout_w, fanout_b, "retro", 1.0, K)  # fmt: skip
        return fwd + bwd

    with FakeTensorMode(allow_non_fake_inputs=True):
        d = {"device": "cuda"}
        args = (torch.empty(T, B, N, **d), torch.empty(N, N, **d), torch.empty(N, **d),
                torch.empty((), **d), torch.empty(N, **d), torch.empty((), **d),
                torch.empty(N, **d), torch.empty(N, **d),
                torch.empty(T, B, N, dtype=torch.bool, **d))  # fmt: skip
        gm = make_fx(f)(*args)
        outs = f(*args)
    shapes = [tuple(o.shape) for o in outs]
    C = -(-T // K)
    assert shapes == [
        (T, B, N), (B, N, N), (B, N, N), (C, B, N, N), (C, B, N, N), (T, B),  # forward
        (T, B, N), (N, N), (N,), (B, N), (B, N, N), (B, N, N), (), (N,), (), (N,), (N,),
    ]  # fmt: skip
    ops = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert {
        "hebbkern.plastic_rnn_triton_fwd.default",
        "hebbkern.plastic_rnn_triton_bwd.default",
    } <= ops


# ---------------------------------------------------------------------------------------------
# CUDA GPU.


@pytest.fixture
def one_config(monkeypatch):
    """One kernel configuration per case instead of autotuning: one compile per specialisation."""
    monkeypatch.setenv("HEBBKERN_TRITON_AUTOTUNE", "0")


@needs_cuda
@pytest.mark.parametrize("N", [1, 129])  # the interpreter suite covers more sizes
@pytest.mark.parametrize("rule, alpha_kind, fanout, clamp", CUDA_CASES)
def test_cuda_matches_reference(rule, alpha_kind, fanout, clamp, N, one_config, nan_poison):
    kw = make_inputs(rule, alpha_kind, fanout, clamp, T=9, B=3, N=N, dtype=torch.float32, seed=N)
    check_triton_against_reference(kw, CUDA, TOL[torch.float32], require_nonzero=N > 1)


@needs_cuda
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_cuda_float64(rule, one_config, nan_poison):
    kw = make_inputs(rule, "per_connection", rule == "retro", True, T=12, B=2, N=20, seed=4)
    check_triton_against_reference(kw, CUDA, TOL[torch.float64])


@needs_cuda
def test_cuda_autotuned_long_sequence(nan_poison):
    """Autotuning on (every shipped configuration runs), several chunks, N = 128."""
    kw = make_inputs("neuromod", "per_connection", True, False, T=30, B=4, N=128,
                     dtype=torch.float32, seed=1)  # fmt: skip
    check_triton_against_reference(kw, CUDA, TOL[torch.float32])


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cuda_low_precision(rule, dtype, one_config):
    """flash-attention's rule: against a float64 reference, the kernel's error is at most twice the
    error of the reference run in the same low precision (on the same GPU)."""
    kw = make_inputs(rule, "per_neuron", rule in MODULATED_RULES, True, T=20, B=4, N=64,
                     seed=17, dtype=dtype)  # fmt: skip
    o_k, g_k = run(to_device(kw, CUDA), "triton")
    o_lp, g_lp = run(to_device(kw, CUDA), "reference")
    o_64, g_64 = run(clone_inputs(kw, torch.float64), "reference")
    assert_low_precision_rule((o_k, g_k), (o_lp, g_lp), (o_64, g_64), dtype, grad_dtype=False)


@needs_cuda
@pytest.mark.parametrize("rule", ["clip", "retro"])
def test_cuda_torch_compile_fullgraph(rule, one_config):
    kw = to_device(make_inputs(rule, "per_neuron", rule == "retro", True, T=6, B=2, N=16,
                               dtype=torch.float32, seed=3), CUDA)  # fmt: skip
    assert_compiled_grads_match(hebbkern.plastic_rnn, kw, outputs_dict)


@needs_cuda
@pytest.mark.parametrize("rule", ["hebb", "neuromod", "retro"])
def test_cuda_opcheck(rule, one_config):
    from hebbkern.ops.plastic_rnn import checkpoint_interval
    from hebbkern.triton.plastic_rnn_ops import plastic_rnn_triton_fwd  # noqa: F401

    kw = to_device(make_inputs(rule, "per_connection", rule in MODULATED_RULES, True, T=5, B=2,
                               N=4, seed=8), CUDA)  # fmt: skip
    args = (
        kw["u"], kw["w"], kw["alpha"], kw["h0"], kw["hebb0"], kw.get("elig0"), kw["clamp_mask"],
        kw.get("eta"), kw.get("mod_w"), kw.get("mod_b"), kw.get("fanout_w"), kw.get("fanout_b"),
        rule, float(kw["clip"]), checkpoint_interval(5),
    )  # fmt: skip
    torch.library.opcheck(torch.ops.hebbkern.plastic_rnn_triton_fwd.default, args)


@needs_cuda
def test_cuda_saved_memory_is_an_eighth_of_the_reference(one_config):
    kw = to_device(make_inputs("neuromod", "per_connection", True, False, T=50, B=32, N=128,
                               dtype=torch.float32, seed=0), CUDA)  # fmt: skip
    kw.pop("clamp_mask", None)
    tri, ref = (
        saved_bytes(hebbkern.plastic_rnn, clone_inputs(kw), b) for b in ("triton", "reference")
    )
    assert tri >= 32 * 128 * 128 * 4  # the checkpoints are saved, and counted
    assert tri <= ref / 8, f"triton saves {tri / 2**20:.1f} MiB, reference {ref / 2**20:.1f} MiB"
