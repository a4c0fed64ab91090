"""A ``gymnasium.vector.VectorEnv`` over :class:`~hebbkern.tasks.MetaTaskEnv`, for agents that
speak Gymnasium. Needs ``gymnasium`` (``pip install hebbkern[gym]``); ``import hebbkern`` does not.

Episodes end by truncation after ``episode_steps`` steps (all at once: the batch runs in
lockstep) and reset in the same step (``AutoresetMode.SAME_STEP``): the returned observation is
the new episode's first one, the last one is in ``infos["final_obs"]``. Trial ends, the state
entered and the trial index are in ``infos`` at every step.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from .env import MetaTaskEnv
from .template import Template


class MetaTaskVectorEnv(VectorEnv):
    """``num_envs`` meta-task episodes as a Gymnasium vector environment.

    Args: as :class:`MetaTaskEnv` (``num_envs`` is its ``batch_size``), plus ``numpy``: return
    numpy arrays (the Gymnasium convention, default) or the environment's torch tensors.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    # MetaTaskEnv's arguments written out (num_envs, numpy): the signature help() shows.
    def __init__(
        self,
        templates: Template | Sequence[Template],
        num_envs: int,
        episode_steps: int = 100,
        *,
        device: torch.device | str | None = None,
        seed: int | None = None,
        numpy: bool = True,
    ) -> None:
        self.env = MetaTaskEnv(templates, num_envs, episode_steps, device=device, seed=seed)
        self.num_envs = num_envs
        self.numpy = bool(numpy)
        n = self.env.obs_size
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)
        self.single_action_space = gym.spaces.Discrete(self.env.n_actions)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (num_envs, n), np.float32)
        self.action_space = gym.spaces.MultiDiscrete(np.full(num_envs, self.env.n_actions))

    def _out(self, x: torch.Tensor):
        return x.cpu().numpy() if self.numpy else x

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.gen.manual_seed(int(seed))
        obs = self.env.reset()
        return self._out(obs), {}

    def step(self, actions):
        a = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions)
        obs, reward, done = self.env.step(a.to(self.env.device, torch.long))
        infos = {
            "trial_end": self._out(self.env.trial_end),
            "entered": self._out(self.env.entered),
            "trial_index": self._out(self.env.trial_index),
        }
        trunc = torch.full((self.num_envs,), done, dtype=torch.bool, device=self.env.device)
        term = torch.zeros_like(trunc)
        if done:
            infos["final_obs"] = self._out(obs)
            obs = self.env.reset()
        return self._out(obs), self._out(reward), self._out(term), self._out(trunc), infos
