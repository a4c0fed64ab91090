"""Learning values over transitions, Q(s, s') (Edwards et al., "Estimating Q(s,s') with Deep
Deterministic Dynamics Gradients", ICML 2020): the tabular learner and its gridworld
(:mod:`.qss`) and D3G for continuous states (:mod:`.d3g`).

A value of a transition instead of an action transfers across any change of the action set
that keeps the reachable next states: redundant or shuffled actions need only a new inverse
dynamics model, not new values; and Q(s, s') can be learned from state-only observations.
"""

from .d3g import D3G, D3GConfig, PointMass
from .qss import GridWorld, TabularQSA, TabularQSS

__all__ = ["D3G", "D3GConfig", "GridWorld", "PointMass", "TabularQSA", "TabularQSS"]
