"""``ANML``: a neuromodulatory network gating a prediction network (Beaulieu et al., "Learning
to Continually Learn", ECAI 2020).

The prediction learning network (PLN) maps ``x`` to a representation ``r(x)`` and a linear
classifier reads it; the neuromodulatory network (NM) sees the same input and multiplies the
representation by a gate in (0, 1)::

    z = classifier(r(x) * sigmoid(nm(x)))

The gate shapes the forward pass and, through it, which PLN weights a gradient step can change
(a gated-off unit gets no gradient): the NM network is meta-learned (:mod:`hebbkern.meta`) so
that sequential SGD on the PLN forgets less. ``gated=False`` is the same PLN without the NM
network (the gate is the constant 1), the ablation of the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_positive_ints


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


class ANML(nn.Module):
    """Gated prediction network: ``pln`` (an MLP with ReLUs, ``in_features -> hidden``), ``nm``
    (an MLP ending in a linear layer to ``hidden[-1]``, then a sigmoid) and ``classifier``
    (``nn.Linear(hidden[-1], num_classes)``).

    Args:
        in_features: input width (flattened images).
        num_classes: the classifier's width; meta-training resets the rows of the classes it
            is about to learn (:func:`hebbkern.meta.reset_rows`).
        hidden: PLN widths, e.g. ``(256, 256)``; the last one is the gated representation.
        nm_hidden: NM hidden widths before its gate layer.
        gated: ``False`` drops the NM network (gate 1).

    Shapes: ``forward(x) -> z``, ``x`` ``[B, in_features]``, ``z`` ``[B, num_classes]``;
    ``gate(x)`` ``[B, hidden[-1]]``.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: tuple[int, ...] = (256, 256),
        nm_hidden: tuple[int, ...] = (128,),
        gated: bool = True,
    ) -> None:
        super().__init__()
        check_positive_ints(in_features=in_features, num_classes=num_classes)
        hidden, nm_hidden = tuple(hidden), tuple(nm_hidden)
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden + nm_hidden):
            raise ValueError(
                f"hidden and nm_hidden must hold positive ints, got {hidden}, {nm_hidden}"
            )
        self.in_features, self.num_classes, self.gated = in_features, num_classes, gated
        self.pln = _mlp([in_features, *hidden])
        self.classifier = nn.Linear(hidden[-1], num_classes)
        if gated:
            nm = _mlp([in_features, *nm_hidden])
            nm.append(nn.Linear(nm_hidden[-1] if nm_hidden else in_features, hidden[-1]))
            self.nm = nm
        else:
            self.nm = None

    def gate(self, x: Tensor) -> Tensor:
        if self.nm is None:
            return x.new_ones(x.shape[0], self.classifier.in_features)
        return torch.sigmoid(self.nm(x))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape [B, {self.in_features}], got {list(x.shape)}")
        r = self.pln(x)
        if self.nm is not None:
            r = r * self.gate(x)
        return self.classifier(r)

    def pln_names(self) -> list[str]:
        """Names of the prediction network's parameters (PLN and classifier): the ones the
        inner loop and meta-test training update; the NM network only changes in the outer
        loop."""
        return [n for n, _ in self.named_parameters() if not n.startswith("nm.")]


__all__ = ["ANML"]
