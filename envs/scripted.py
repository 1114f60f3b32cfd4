"""Scripted policies: batched exploration policies (for warmup rollouts) and optimal policies (for tests).

* :func:`get_exploration_policy` returns a stateless, picklable callable
  ``policy(observations, rng) -> actions`` that acts on a *batch* of observations
  ``(n_envs, ...)`` and returns a batch of actions ``(n_envs, ...)``, drawing only from the
  given ``numpy.random.Generator``.
* :func:`make_optimal_policy` returns a stateful policy for *one* environment that sees only
  observations (it has a memory, the agent's job) and obtains the optimal return of
  :attr:`envs.EnvInfo.optimal_return`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import gymnasium
import numpy as np
from gymnasium import spaces

from envs import ENVIRONMENTS

ExplorationPolicy = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``policy(observations, rng) -> actions``: a batch ``(n_envs, ...)`` in, a batch out."""

TMAZE_ACTION_PROBABILITIES = (1 / 2, 1 / 6, 1 / 6, 1 / 6)
"""The paper's T-Maze exploration: right with probability 1/2, up, left, down 1/6 each."""

MINIGRID_FORWARD_PROBABILITIES = (1 / 4, 1 / 4, 1 / 2)
"""MiniGrid with (left, right, forward): forward half of the time, so that random walks leave
the start room and reach the end of the hallway (uniform random mostly spins in place)."""



def batch_size(observations: Any) -> int:
    """Number of environments in a batch of observations (an array, or a dict of arrays for
    ``Dict`` observation spaces)."""
    if isinstance(observations, Mapping):
        observations = next(iter(observations.values()))
    return int(np.shape(observations)[0])


class CategoricalPolicy:
    """Draw each environment's action from fixed probabilities over a ``Discrete`` space.

    :param probabilities: one probability per action (summing to 1).
    :param start: the space's first action (``Discrete.start``).
    """

    def __init__(self, probabilities: Sequence[float], start: int = 0) -> None:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim != 1 or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(
                f"probabilities must be non-negative and sum to 1, got {probabilities}"
            )
        self.probabilities = p / p.sum()
        self.start = int(start)

    def __call__(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:return: ``int64`` actions of shape ``(n_envs,)``."""
        n = batch_size(observations)
        return rng.choice(self.probabilities.size, size=n, p=self.probabilities) + self.start

    def __repr__(self) -> str:
        return f"CategoricalPolicy({self.probabilities.round(4).tolist()}, start={self.start})"


class UniformPolicy:
    """Draw each environment's action uniformly from ``action_space`` (with the given rng).

    Unbounded ``Box`` dimensions are drawn from a standard normal (shifted exponential when
    bounded on one side), as ``gymnasium.spaces.Box.sample`` does.

    :param action_space: ``Discrete``, ``MultiDiscrete``, ``MultiBinary`` or ``Box``.
    """

    def __init__(self, action_space: spaces.Space) -> None:
        if not isinstance(
            action_space, spaces.Discrete | spaces.MultiDiscrete | spaces.MultiBinary | spaces.Box
        ):
            raise ValueError(f"no uniform exploration policy for action space {action_space}")
        self.action_space = action_space

    def __call__(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:return: a batch of actions of shape ``(n_envs, *action_space.shape)``."""
        n = batch_size(observations)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return rng.integers(int(space.start), int(space.start) + int(space.n), size=n)
        if isinstance(space, spaces.MultiDiscrete):
            nvec = np.broadcast_to(space.nvec, (n, *space.shape))
            start = np.broadcast_to(space.start, (n, *space.shape))
            return (start + np.floor(rng.random((n, *space.shape)) * nvec)).astype(space.dtype)
        if isinstance(space, spaces.MultiBinary):
            return rng.integers(0, 2, size=(n, *space.shape)).astype(space.dtype)
        return self._sample_box(space, n, rng)

    @staticmethod
    def _sample_box(space: spaces.Box, n: int, rng: np.random.Generator) -> np.ndarray:
        shape = (n, *space.shape)
        low = np.broadcast_to(space.low, shape).astype(np.float64)
        high = np.broadcast_to(space.high, shape).astype(np.float64)
        bounded_low, bounded_high = np.isfinite(low), np.isfinite(high)
        sample = rng.standard_normal(shape)
        both = bounded_low & bounded_high
        sample[both] = rng.uniform(low[both], high[both])
        only_low = bounded_low & ~bounded_high
        sample[only_low] = low[only_low] + rng.exponential(size=int(only_low.sum()))
        only_high = ~bounded_low & bounded_high
        sample[only_high] = high[only_high] - rng.exponential(size=int(only_high.sum()))
        if np.issubdtype(space.dtype, np.integer):
            sample = np.floor(sample)
        return np.clip(sample, low, high).astype(space.dtype)

    def __repr__(self) -> str:
        return f"UniformPolicy({self.action_space})"


def _table_id(env_id: str) -> str:
    # "envs:rl_warmup/TMaze-v0" (gymnasium's module:id form) -> "rl_warmup/TMaze-v0"
    return env_id.split(":", 1)[1] if ":" in env_id else env_id


def get_exploration_policy(env_id: str, action_space: gymnasium.Space) -> ExplorationPolicy:
    """The scripted exploration policy of an environment, acting on a batch of observations.

    * T-Maze ids (``rl_warmup/TMaze*``): the paper's policy, right with probability 1/2 and up,
      left, down 1/6 each (:data:`TMAZE_ACTION_PROBABILITIES`);
    * MiniGrid Memory ids with 3 actions: forward 1/2, left and right 1/4
      (:data:`MINIGRID_FORWARD_PROBABILITIES`);
    * every other id, registered here or not: uniform over ``action_space``.

    :param env_id: gymnasium id (``"rl_warmup/TMaze-v0"``; the ``"envs:"`` prefix is accepted).
    :param action_space: the environment's (single, not batched) action space.
    :return: ``policy(observations, rng) -> actions``, observations of shape ``(n_envs, ...)``,
        actions of shape ``(n_envs, *action_space.shape)``; picklable and stateless.
    :raises ValueError: when the id's scripted policy does not fit ``action_space``.
    """
    info = ENVIRONMENTS.get(_table_id(env_id))
    kind = "uniform" if info is None else info.exploration
    if kind == "tmaze":
        probabilities: Sequence[float] = TMAZE_ACTION_PROBABILITIES
    elif kind == "minigrid_forward":
        probabilities = MINIGRID_FORWARD_PROBABILITIES
    else:
        return UniformPolicy(action_space)
    if not isinstance(action_space, spaces.Discrete) or int(action_space.n) != len(probabilities):
        raise ValueError(
            f"the {kind!r} exploration policy of {env_id} needs Discrete({len(probabilities)}) "
            f"actions, got {action_space}"
        )
    return CategoricalPolicy(probabilities, start=int(action_space.start))


class ScriptedPolicy(Protocol):
    """A policy for one environment that sees only observations: ``reset()`` then ``policy(obs)``."""

    def reset(self) -> None:
        """Forget the previous episode (call before acting on a reset observation)."""

    def __call__(self, observation: np.ndarray) -> int:
        """Return the action for this observation (the first call gets the reset observation)."""
        ...


class TMazeOptimalPolicy:
    """Remember the cue, go right, take the cued side at the junction (T-Maze and Passive T-Maze)."""

    def __init__(self) -> None:
        self._up: bool | None = None

    def reset(self) -> None:
        self._up = None

    def __call__(self, observation: np.ndarray) -> int:
        from envs.tmaze import DOWN, OBS_CUE_DOWN, OBS_CUE_UP, OBS_JUNCTION, RIGHT, UP

        if observation[OBS_CUE_UP] > 0.5:
            self._up = True
        elif observation[OBS_CUE_DOWN] > 0.5:
            self._up = False
        if observation[OBS_JUNCTION] > 0.5:
            if self._up is None:
                raise RuntimeError("reached the junction without having seen a cue")
            return UP if self._up else DOWN
        return RIGHT


class MemoryLengthOptimalPolicy:
    """Remember the context bits, answer the queried one."""

    def __init__(self, num_bits: int) -> None:
        self.num_bits = num_bits
        self._context: np.ndarray | None = None

    def reset(self) -> None:
        self._context = None

    def __call__(self, observation: np.ndarray) -> int:
        B = self.num_bits
        if self._context is None:
            self._context = np.array(observation[1 : 1 + B])
        query = observation[1 + B : 1 + 2 * B]
        if query.max() > 0.5:
            return int(self._context[int(query.argmax())] > 0)
        return 0


class RepeatPreviousOptimalPolicy:
    """Keep the last ``k + 1`` values, answer the one seen ``k`` steps ago (``k = ∞``: the first)."""

    def __init__(self, num_values: int, k: int | None) -> None:
        self.num_values = num_values
        self.k = k
        self._seen: deque[int] = deque(maxlen=None if k is None else k + 1)

    def reset(self) -> None:
        self._seen.clear()

    def __call__(self, observation: np.ndarray) -> int:
        self._seen.append(int(np.argmax(observation[: self.num_values])))
        if self.k is None:
            return self._seen[0]
        return self._seen[0] if len(self._seen) == self.k + 1 else 0


class CountRecallOptimalPolicy:
    """Count every dealt value, answer the queried count."""

    def __init__(self, num_values: int) -> None:
        self.num_values = num_values
        self._counts = np.zeros(num_values, dtype=np.int64)

    def reset(self) -> None:
        self._counts[:] = 0

    def __call__(self, observation: np.ndarray) -> int:
        n = self.num_values
        self._counts[int(np.argmax(observation[:n]))] += 1
        return int(self._counts[int(np.argmax(observation[n : 2 * n]))])


def make_optimal_policy(env: gymnasium.Env) -> ScriptedPolicy:
    """An optimal policy for one environment of this package, seeing only its observations.

    It reaches :attr:`envs.EnvInfo.optimal_return` in every episode of the ids that have one
    (deterministic T-Mazes, Passive T-Maze, memory length/chain, repeat first/previous, count
    recall). It reads the task's public parameters (``k``, ``num_values``, ``num_bits``) from
    ``env.unwrapped``, never its hidden state.

    :param env: the environment (wrapped or not) the policy will act in.
    :raises ValueError: when the environment has no scripted optimal policy.
    """
    from envs.count_recall import CountRecallEnv
    from envs.memory_length import MemoryLengthEnv
    from envs.passive_tmaze import PassiveTMazeEnv
    from envs.repeat_first import RepeatFirstEnv
    from envs.repeat_previous import RepeatPreviousEnv
    from envs.tmaze import TMazeEnv

    base: Any = env.unwrapped
    if isinstance(base, TMazeEnv | PassiveTMazeEnv):
        return TMazeOptimalPolicy()
    if isinstance(base, MemoryLengthEnv):
        return MemoryLengthOptimalPolicy(base.num_bits)
    if isinstance(base, RepeatFirstEnv):
        return RepeatPreviousOptimalPolicy(base.num_values, k=None)
    if isinstance(base, RepeatPreviousEnv):
        return RepeatPreviousOptimalPolicy(base.num_values, k=base.k)
    if isinstance(base, CountRecallEnv):
        return CountRecallOptimalPolicy(base.num_values)
    raise ValueError(f"no scripted optimal policy for {type(base).__name__}")
