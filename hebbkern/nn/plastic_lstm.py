"""``PlasticLSTM``: the Backpropamine plastic LSTM, shaped like ``torch.nn.LSTM``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import MODULATED_RULES, check_clip
from .._variants import check_lstm_variants
from ..ops.plastic_lstm import plastic_lstm
from ._checks import check_factory_dtype
from ._plastic_params import (
    PLASTIC_NAMES,
    check_config,
    check_sequence_input,
    plastic_parameters,
    reset_plastic_,
)


class PlasticLSTM(nn.Module):
    r"""Plastic LSTM (Backpropamine's language model, SPEC.md section 2), fused over the sequence.

    Each layer is a ``torch.nn.LSTM`` layer whose candidate path is plastic::

        g_t = tanh(x_t W_ig^T + b_ig + b_hg + h_{t-1} (W_hg^T + alpha * H_{t-1}))

    with the trace ``H`` ``[B, N, N]`` updated after each step by ``rule`` from ``h_{t-1}`` (pre)
    and ``g_t`` (post); the modulated rules read ``m_t = tanh(h_t . mod_w + mod_b)`` (with
    ``fanout``: ``m_t[j] = fanout_w[j] m_t + fanout_b[j]``).

    The parameters keep ``torch.nn.LSTM``'s names and shapes (``weight_ih_l{k}`` ``[4N, in]``,
    ``weight_hh_l{k}`` ``[4N, N]``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, gate order i, f, g, o), so
    an ``nn.LSTM`` state_dict loads with ``strict=False``; the plastic ones are ``alpha_l{k}``,
    ``eta_l{k}``, ``mod_w_l{k}``, ``mod_b_l{k}``, ``fanout_w_l{k}``, ``fanout_b_l{k}``.

    Initialisation: the LSTM weights as ``torch.nn.LSTM`` (``U(-1/sqrt(N), 1/sqrt(N))``),
    ``alpha`` ``0.001 * U[0, 1)``, ``eta`` 0.01, the modulator and its fan-out as
    ``nn.Linear(N, 1)`` and ``nn.Linear(1, N)``.

    Args:
        input_size: features of the input.
        hidden_size: ``N``.
        num_layers: stacked layers; layer k > 0 reads layer k - 1's output.
        rule: ``"neuromod"`` (default), ``"retro"``, ``"hebb"`` (plain plastic), ``"oja"``,
            ``"clip"``.
        alpha: ``"per_neuron"`` ``[N]`` (the paper's), ``"per_connection"`` ``[N, N]`` or
            ``"scalar"``.
        fanout: per-neuron fan-out of the neuromodulator (modulated rules only; ignored by the
            others).
        clip: bound of the clipped rules (2 in the paper).
        batch_first: input and output are ``[B, T, *]``.
        clip_mode, post: the language model's read-out clip and post-synaptic term (SPEC.md
            section 2.1, as in :func:`hebbkern.plastic_lstm`), on every backend.

    Shapes: ``forward(x, state=None) -> (output, state)``; ``x`` ``[T, B, input_size]`` (or
    ``[B, T, input_size]`` with ``batch_first``, or unbatched ``[T, input_size]``), ``output``
    ``[T, B, N]``, ``state = (h, c, hebb)`` with ``h``, ``c`` ``[num_layers, B, N]`` and ``hebb``
    ``[num_layers, B, N, N]``, plus ``elig`` ``[num_layers, B, N, N]`` for rule ``"retro"``. For
    truncated BPTT, detach the state between segments and pass it back in.
    """

    # torch.nn.LSTM's arguments and the plastic options written out (as torch.nn does) for help().
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        rule: str = "neuromod",
        alpha: str = "per_neuron",
        fanout: bool = True,
        clip: float = 2.0,
        batch_first: bool = False,
        device=None,
        dtype=None,
        clip_mode: str = "update",
        post: str = "candidate",
    ) -> None:
        super().__init__()
        sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers}
        check_config(sizes, rule, alpha)
        self.clip_mode, self.post = check_lstm_variants(rule, clip_mode, post)
        # fan-out only exists for the modulated rules
        self.fanout = bool(fanout) and rule in MODULATED_RULES
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.rule, self.alpha_kind = rule, alpha
        self.clip, self.batch_first = check_clip(clip), bool(batch_first)
        check_factory_dtype(dtype)
        factory = {"device": device, "dtype": dtype}
        N = hidden_size

        def param(*shape):
            return nn.Parameter(torch.empty(shape, **factory))

        for k in range(num_layers):
            in_k = input_size if k == 0 else N
            self.register_parameter(f"weight_ih_l{k}", param(4 * N, in_k))
            self.register_parameter(f"weight_hh_l{k}", param(4 * N, N))
            self.register_parameter(f"bias_ih_l{k}", param(4 * N))
            self.register_parameter(f"bias_hh_l{k}", param(4 * N))
            for name, prm in plastic_parameters(N, rule, alpha, self.fanout, factory).items():
                self.register_parameter(f"{name}_l{k}", prm)
        self.reset_parameters()

    def _p(self, name: str, k: int) -> Tensor | None:
        return getattr(self, f"{name}_l{k}")

    def reset_parameters(self) -> None:
        N = self.hidden_size
        bound = 1.0 / math.sqrt(N)
        with torch.no_grad():
            for k in range(self.num_layers):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    self._p(name, k).uniform_(-bound, bound)
                plastic = {name: self._p(name, k) for name in PLASTIC_NAMES}
                reset_plastic_(N, plastic, alpha_normal=False)  # Backpropamine's alpha for all

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        s += f", rule={self.rule!r}, alpha={self.alpha_kind!r}"
        if self.rule in MODULATED_RULES:
            s += f", fanout={self.fanout}"
        if self.rule in ("clip", "neuromod", "retro"):
            s += f", clip={self.clip}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.clip_mode != "update":
            s += f", clip_mode={self.clip_mode!r}"
        if self.post != "candidate":
            s += f", post={self.post!r}"
        return s

    def forward(
        self, x: Tensor, state: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        check_sequence_input(x, self.input_size, self._p("weight_ih", 0))
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        L, B = self.num_layers, x.shape[1]
        retro = self.rule == "retro"
        if state is not None:
            state = self._check_state(state, unbatched, B, x)
        hs, cs, hebbs, eligs = [], [], [], []
        out = x
        for k in range(L):
            h0 = c0 = hebb0 = elig0 = None
            if state is not None:
                h0, c0, hebb0 = state[0][k], state[1][k], state[2][k]
                elig0 = state[3][k] if retro else None
            u = nn.functional.linear(out, self._p("weight_ih", k), self._p("bias_ih", k))
            u = u + self._p("bias_hh", k)
            out, st = plastic_lstm(
                u, self._p("weight_hh", k).t(), self._p("alpha", k), rule=self.rule,
                eta=self._p("eta", k), mod_w=self._p("mod_w", k), mod_b=self._p("mod_b", k),
                fanout_w=self._p("fanout_w", k), fanout_b=self._p("fanout_b", k), clip=self.clip,
                h0=h0, c0=c0, hebb0=hebb0, elig0=elig0, clip_mode=self.clip_mode, post=self.post,
            )  # fmt: skip
            hs.append(st.h)
            cs.append(st.c)
            hebbs.append(st.hebb)
            eligs.append(st.elig)
        new = [torch.stack(hs), torch.stack(cs), torch.stack(hebbs)]
        if retro:
            new.append(torch.stack(eligs))
        if unbatched:
            out = out.squeeze(1)
            new = [s.squeeze(1) for s in new]
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, tuple(new)

    def _check_state(self, state, unbatched: bool, B: int, x: Tensor) -> list[Tensor]:
        L, N = self.num_layers, self.hidden_size
        n = 4 if self.rule == "retro" else 3
        names = ("h", "c", "hebb", "elig")[:n]
        if isinstance(state, Tensor) or not isinstance(state, (tuple, list)):
            raise TypeError(
                f"state must be a tuple ({', '.join(names)}) for rule {self.rule!r}, "
                f"got {type(state).__name__}"
            )
        if len(state) != n:
            raise ValueError(
                f"state must be a tuple ({', '.join(names)}) of {n} items for rule "
                f"{self.rule!r}, got {len(state)}"
            )
        out = []
        for name, s in zip(names, state, strict=True):
            if not isinstance(s, Tensor):
                raise TypeError(f"state {name} must be a torch.Tensor, got {type(s).__name__}")
            s = s.unsqueeze(1) if unbatched else s
            want = (L, B, N) if name in ("h", "c") else (L, B, N, N)
            if tuple(s.shape) != want:
                note = " (unbatched: without B)" if unbatched else ""
                got = list(state[len(out)].shape)
                raise ValueError(f"state {name} must have shape {list(want)}{note}, got {got}")
            if s.dtype != x.dtype:
                raise TypeError(f"state {name} must have dtype {x.dtype}, got {s.dtype}")
            out.append(s)
        return out
