"""Regression tests of issue 21's process crashes and unbounded allocations, each run in a child
process so that a crash fails the test instead of killing pytest.

- SIGFPE (integer division by zero) on empty dimensions: plastic_linear (M = 0, K = 0, and the
  per-sample backward with B = 0), trace_update (M = 0, K = 0, both traces and directions),
  plastic_step's backward with B = 0 and a shared w or [N, N] alpha, PlasticRNNCell with B = 0.
- Expanded inputs: a stride-0 view whose copy would be huge is refused, naming the argument,
  before anything is allocated.
- plastic_lstm gives bitwise the same results at 1 and 2 threads.
"""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import assert_survives

import hebbkern

needs_ext = pytest.mark.skipif(
    not hebbkern.extension_available(), reason="the compiled extension is not built"
)


@needs_ext
def test_plastic_linear_empty_dims_do_not_crash():
    out = assert_survives(
        """
        import torch, hebbkern
        f = hebbkern.plastic_linear
        # K = 0 (the issue's case) and M = 0, per-sample trace: the forward divided by M * K.
        z = f(torch.randn(2, 3), torch.randn(3, 0), torch.randn(()), torch.randn(2, 3, 0))
        assert z.shape == (2, 0)
        z = f(torch.randn(2, 0), torch.randn(0, 4), torch.randn(()), torch.randn(2, 0, 4))
        assert z.shape == (2, 4) and (z == 0).all()
        # B = 0 with a per-sample trace, through the backward (divided by B * K).
        x = torch.randn(0, 3, requires_grad=True)
        w = torch.randn(3, 4, requires_grad=True)
        a = torch.randn(3, 4, requires_grad=True)
        H = torch.randn(0, 3, 4, requires_grad=True)
        f(x, w, a, H).sum().backward()
        assert (w.grad == 0).all() and (a.grad == 0).all()
        for M, K in ((0, 4), (3, 0)):
            x = torch.randn(2, M, requires_grad=True)
            H = torch.randn(2, M, K, requires_grad=True)
            f(x, torch.randn(M, K), torch.randn(()), H).sum().backward()
        print("ok")
        """
    )
    assert "ok" in out


@needs_ext
def test_trace_update_empty_dims_do_not_crash():
    out = assert_survives(
        """
        import torch, hebbkern
        for B, M, K in ((3, 4, 0), (3, 0, 4), (0, 4, 5)):
            for shared in (False, True):
                for rule in ("add", "hebb", "oja"):
                    shape = (M, K) if shared else (B, M, K)
                    t = torch.randn(shape, requires_grad=True)
                    pre = torch.randn(B, M, requires_grad=True)
                    post = torch.randn(B, K, requires_grad=True)
                    out = hebbkern.trace_update(t, pre, post, rule=rule, eta=0.1)
                    assert out.shape == shape
                    out.sum().backward()
        print("ok")
        """
    )
    assert "ok" in out


@needs_ext
def test_plastic_step_backward_empty_batch_does_not_crash():
    out = assert_survives(
        """
        import torch, hebbkern
        N = 5
        for alpha_shape in ((N, N), (N,), ()):
            for w_shape in ((N, N), (0, N, N)):
                u = torch.randn(0, N, requires_grad=True)
                w = torch.randn(w_shape, requires_grad=True)
                a = torch.randn(alpha_shape, requires_grad=True)
                h, hebb = torch.zeros(0, N), torch.zeros(0, N, N)
                s = hebbkern.plastic_step(u, h, hebb, w, a, rule="hebb", eta=0.1)
                (s.h.sum() + s.hebb.sum()).backward()
                assert (w.grad == 0).all() and (a.grad == 0).all()
        # The issue's module case.
        hebbkern.nn.PlasticRNNCell(3, 5)(torch.randn(0, 3)).h.sum().backward()
        print("ok")
        """
    )
    assert "ok" in out


def test_expanded_input_refused_before_allocating():
    out = assert_survives(
        """
        import resource, torch, hebbkern
        # A 16 GiB copy would fail (not swap the machine) if the guard let it through.
        resource.setrlimit(resource.RLIMIT_AS, (1 << 34, 1 << 34))
        N = 2 ** 16
        w = torch.zeros(1, 1).expand(N, N)
        cases = {
            "w": lambda: hebbkern.plastic_rnn(torch.zeros(1, 0, N), w, torch.zeros(()), eta=0.1),
            "x": lambda: hebbkern.plastic_linear(
                torch.zeros(1, 1).expand(N * N, 1), torch.zeros(1, 1), torch.zeros(()),
                torch.zeros(1, 1)),
            "trace": lambda: hebbkern.trace_update(
                torch.zeros(1, 1).expand(N, N), torch.zeros(0, N), torch.zeros(0, N),
                rule="add", eta=0.1),
            "wh": lambda: hebbkern.plastic_lstm(
                torch.zeros(1, 0, 4 * N), torch.zeros(1, 1).expand(N, 4 * N), torch.zeros(()),
                mod_w=torch.zeros(N)),
        }
        for name, call in cases.items():
            try:
                call()
            except ValueError as e:
                assert name in str(e) and "expanded" in str(e), (name, str(e))
            else:
                raise AssertionError(f"{name}: an expanded 16 GiB view was accepted")
        # Small expanded views still work (copied, as before).
        a = torch.full((1,), 0.1).expand(4, 4)
        h, _ = hebbkern.plastic_rnn(torch.randn(2, 3, 4), torch.zeros(4, 4), a, eta=0.1)
        assert torch.isfinite(h).all()
        print("ok")
        """
    )
    assert "ok" in out


@needs_ext
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plastic_lstm_bitwise_equal_across_thread_counts(dtype):
    """The issue's case (B = 6, N = 48, float32) and odd batch sizes, forward and every
    gradient, at 1 and 2 threads, each in its own process."""
    code = f"""
        import sys, torch, hebbkern
        torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else THREADS)
        torch.manual_seed(0)
        dt = torch.{dtype}
        out = []
        for B, N, T, rule in ((6, 48, 7, "neuromod"), (5, 16, 4, "retro"), (13, 8, 3, "hebb")):
            u = torch.randn(T, B, 4 * N, dtype=dt, requires_grad=True)
            wh = (0.3 * torch.randn(N, 4 * N, dtype=dt)).requires_grad_()
            alpha = (0.1 * torch.randn(N, N, dtype=dt)).requires_grad_()
            kw = dict(mod_w=(0.3 * torch.randn(N, dtype=dt)).requires_grad_())
            if rule == "hebb":
                kw = dict(eta=0.1)
            elif rule == "retro":
                kw["eta"] = 0.1
            h, st = hebbkern.plastic_lstm(u, wh, alpha, rule=rule, **kw)
            (h.square().sum() + st.hebb.sum()).backward()
            out += [h.detach(), st.c.detach(), st.hebb.detach(), u.grad, wh.grad, alpha.grad]
        torch.save(out, OUT)
    """
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        results = []
        for threads in (1, 2):
            path = f"{d}/out{threads}.pt"
            src = code.replace("THREADS", str(threads)).replace("OUT", repr(path))
            assert_survives(src)
            results.append(torch.load(path))
        for i, (a, b) in enumerate(zip(*results, strict=True)):
            assert torch.equal(a, b), f"tensor {i} differs between 1 and 2 threads"
