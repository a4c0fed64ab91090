"""Tabular Q(s, s') and its Q(s, a) baseline on a deterministic gridworld.

Q(s, s') is the value of moving from ``s`` to ``s'`` and acting optimally afterwards::

    Q(s, s') <- Q(s, s') + lr * (r + gamma * max_{s'' in N(s')} Q(s', s'') - Q(s, s'))

where ``N(s)`` is the set of next states seen from ``s``. Acting picks the best neighbour
``s'`` and the action an inverse dynamics model ``I(s, s')`` says leads there; here ``I`` is a
table of the last action seen to take ``s`` to ``s'`` (the gridworld is deterministic). With
``k`` copies of each move, Q(s, a) has ``k`` times as many entries to learn while Q(s, s') has the
same; after the actions are shuffled Q(s, s') stays right and only ``I`` is relearned.
"""

from __future__ import annotations

import numpy as np

# The four moves (row, col): up, down, left, right.
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])


class GridWorld:
    """A ``size x size`` grid, start at (0, 0), goal (terminal, reward 0) at the far corner,
    reward -1 per step otherwise; walls keep the agent in place.

    ``n_actions`` actions, action ``a`` moving by ``MOVES[perm[a] % 4]``: ``n_actions = 4k``
    gives ``k`` redundant copies of each move; :meth:`shuffle` draws a new ``perm`` (the actions'
    meanings change, the reachable states do not).
    """

    def __init__(self, size: int = 8, n_actions: int = 4, seed: int = 0) -> None:
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        if n_actions < 4 or n_actions % 4:
            raise ValueError(f"n_actions must be a positive multiple of 4, got {n_actions}")
        self.size, self.n_actions = size, n_actions
        self.rng = np.random.default_rng(seed)
        self.perm = np.arange(n_actions)
        self.n_states = size * size
        self.goal = self.n_states - 1

    def shuffle(self) -> None:
        self.perm = self.rng.permutation(self.n_actions)

    def step(self, s: int, a: int) -> tuple[int, float, bool]:
        if not 0 <= a < self.n_actions:
            raise ValueError(f"action must be in [0, {self.n_actions}), got {a}")
        r, c = divmod(s, self.size)
        dr, dc = MOVES[self.perm[a] % 4]
        r = min(max(r + dr, 0), self.size - 1)
        c = min(max(c + dc, 0), self.size - 1)
        s2 = r * self.size + c
        done = s2 == self.goal
        return s2, (0.0 if done else -1.0), done


class TabularQSA:
    """Q-learning of Q(s, a), epsilon-greedy with random tie-breaking."""

    def __init__(self, n_states: int, n_actions: int, lr=0.5, gamma=0.99, seed=0) -> None:
        self.q = np.zeros((n_states, n_actions))
        self.n_actions, self.lr, self.gamma = n_actions, lr, gamma
        self.rng = np.random.default_rng(seed)

    def act(self, s: int, eps: float) -> int:
        if self.rng.random() < eps:
            return int(self.rng.integers(self.n_actions))
        best = np.flatnonzero(self.q[s] == self.q[s].max())
        return int(self.rng.choice(best))

    def update(self, s: int, a: int, r: float, s2: int, done: bool) -> None:
        target = r + (0.0 if done else self.gamma * self.q[s2].max())
        self.q[s, a] += self.lr * (target - self.q[s, a])


class TabularQSS:
    """Q-learning of Q(s, s') over observed transitions, with a tabular inverse dynamics model.

    ``update`` needs no action: Q(s, s') learns from state-only observations ``(s, r, s')``;
    ``learn_inverse`` records which action produced ``s -> s'``. Q of an unseen transition is
    ``-inf`` (never proposed); the neighbour set grows as transitions are seen.
    """

    def __init__(self, n_states: int, n_actions: int, lr=0.5, gamma=0.99, seed=0) -> None:
        self.q = np.full((n_states, n_states), -np.inf)
        self.inverse = np.full((n_states, n_states), -1, dtype=np.int64)
        self.n_actions, self.lr, self.gamma = n_actions, lr, gamma
        self.rng = np.random.default_rng(seed)

    def value(self, s: int) -> float:
        """max over seen s' of Q(s, s'); 0 for a state with no seen transition."""
        v = self.q[s].max()
        return 0.0 if v == -np.inf else float(v)

    def update(self, s: int, r: float, s2: int, done: bool) -> None:
        if self.q[s, s2] == -np.inf:
            self.q[s, s2] = 0.0  # first sight of this transition: optimistic start at 0
        target = r + (0.0 if done else self.gamma * self.value(s2))
        self.q[s, s2] += self.lr * (target - self.q[s, s2])

    def learn_inverse(self, s: int, a: int, s2: int) -> None:
        self.inverse[s, s2] = a

    def forget_inverse(self) -> None:
        """Drop the inverse model (the actions changed meaning); keep the values."""
        self.inverse.fill(-1)

    def act(self, s: int, eps: float) -> int:
        """The action the inverse model maps to the best seen next state; a random action with
        probability ``eps`` or when the inverse model knows no action to the best next state."""
        row = self.q[s]
        if self.rng.random() < eps or row.max() == -np.inf:
            return int(self.rng.integers(self.n_actions))
        best = np.flatnonzero(row == row.max())
        s2 = int(self.rng.choice(best))
        a = int(self.inverse[s, s2])
        return a if a >= 0 else int(self.rng.integers(self.n_actions))


def run_episode(env: GridWorld, agent, eps: float, max_steps: int = 200) -> int:
    """One episode of learning from the start state; returns the number of steps taken."""
    s = 0
    for t in range(max_steps):
        a = agent.act(s, eps)
        s2, r, done = env.step(s, a)
        if isinstance(agent, TabularQSS):
            agent.update(s, r, s2, done)
            agent.learn_inverse(s, a, s2)
        else:
            agent.update(s, a, r, s2, done)
        s = s2
        if done:
            return t + 1
    return max_steps


__all__ = ["MOVES", "GridWorld", "TabularQSA", "TabularQSS", "run_episode"]
