"""Meta-RL agents for :mod:`hebbkern.tasks` (issue 17): a Backpropamine-style neuromodulated
plastic recurrent agent, the same agent written in eager PyTorch (the speed baseline), a
non-plastic LSTM baseline, and A2C training.

A package of its own, not part of ``hebbkern.tasks``: the environments are useful without these
agents (users bring their own through the Gymnasium wrapper), and the agents step any
environment that gives ``[B, obs]`` observations and takes ``[B]`` discrete actions.
"""

from .a2c import A2CConfig, a2c_loss, evaluate, n_step_returns, rollout, train_step
from .models import EagerPlasticAgent, LSTMAgent, PlasticAgent, lstm_hidden_for, n_params

__all__ = [
    "A2CConfig",
    "EagerPlasticAgent",
    "LSTMAgent",
    "PlasticAgent",
    "a2c_loss",
    "evaluate",
    "lstm_hidden_for",
    "n_params",
    "n_step_returns",
    "rollout",
    "train_step",
]
