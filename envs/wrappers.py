"""Wrappers shared by every environment: the paper's agent input (observation, previous action, previous reward)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class PrevActionRewardWrapper(gymnasium.Wrapper[np.ndarray, Any, np.ndarray, Any]):
    """Append the previous action and the previous reward to a flat ``Box`` observation (or add
    them to a ``Dict`` one).

    The paper's agent sees ``[o_t, a_{t-1}, r_{t-1}]``. After ``reset`` the previous action is all
    zeros and the previous reward ``0``. A ``Dict`` observation gets two more keys instead,
    ``"prev_action"`` and ``"prev_reward"`` (for ``MultiInput`` policies).

    **Observation.** ``Box(float32)`` of size ``obs_dim + action_dim + 1``:

    * ``Discrete(n)`` actions: one-hot of size ``n``;
    * ``MultiDiscrete(nvec)``: concatenated one-hots (size ``sum(nvec)``);
    * ``MultiBinary(n)``: the bits;
    * ``Box`` actions: the action itself, clipped to the action bounds (which must be finite).

    The reward entry is unbounded (``[-inf, inf]``).

    :param env: environment with a 1-D ``Box`` or a ``Dict`` observation space (flatten others
        first, e.g. with :class:`gymnasium.wrappers.FlattenObservation`).
    :param reward_scale: factor applied to the appended reward (the env's reward is unchanged).
    """

    def __init__(self, env: gymnasium.Env, reward_scale: float = 1.0) -> None:
        super().__init__(env)
        obs_space = env.observation_space
        self._dict = isinstance(obs_space, spaces.Dict)
        if self._dict:
            clash = {"prev_action", "prev_reward"} & set(obs_space.spaces)
            if clash:
                raise ValueError(f"the Dict observation space already has the key(s) {sorted(clash)}")
        elif not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(
                "PrevActionRewardWrapper needs a 1-D Box or a Dict observation space, got "
                f"{obs_space}; flatten it first (gymnasium.wrappers.FlattenObservation)"
            )
        act_space = env.action_space
        if isinstance(act_space, spaces.Discrete):
            action_low = np.zeros(int(act_space.n), dtype=np.float32)
            action_high = np.ones(int(act_space.n), dtype=np.float32)
        elif isinstance(act_space, spaces.MultiDiscrete):
            size = int(np.sum(act_space.nvec))
            action_low, action_high = np.zeros(size, np.float32), np.ones(size, np.float32)
            self._offsets = np.concatenate([[0], np.cumsum(act_space.nvec.reshape(-1))[:-1]])
            self._starts = act_space.start.reshape(-1)
        elif isinstance(act_space, spaces.MultiBinary):
            size = int(np.prod(act_space.shape))
            action_low, action_high = np.zeros(size, np.float32), np.ones(size, np.float32)
        elif isinstance(act_space, spaces.Box):
            if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
                raise ValueError(f"Box action space must be bounded, got {act_space}")
            action_low = act_space.low.reshape(-1).astype(np.float32)
            action_high = act_space.high.reshape(-1).astype(np.float32)
        else:
            raise ValueError(f"unsupported action space {act_space}")
        self.reward_scale = float(reward_scale)
        self._action_dim = action_low.shape[0]
        if self._dict:
            self.observation_space = spaces.Dict(
                {
                    **obs_space.spaces,
                    "prev_action": spaces.Box(action_low, action_high, dtype=np.float32),
                    "prev_reward": spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32),
                }
            )
            return
        self._obs_dim = obs_space.shape[0]
        low = np.concatenate([obs_space.low.astype(np.float32), action_low, [-np.inf]])
        high = np.concatenate([obs_space.high.astype(np.float32), action_high, [np.inf]])
        self.observation_space = spaces.Box(low.astype(np.float32), high.astype(np.float32))

    def _encode_action(self, action: Any) -> np.ndarray:
        space = self.env.action_space
        out = np.zeros(self._action_dim, dtype=np.float32)
        if isinstance(space, spaces.Discrete):
            out[int(action) - int(space.start)] = 1.0
        elif isinstance(space, spaces.MultiDiscrete):
            index = np.asarray(action).reshape(-1) - self._starts
            out[self._offsets + index] = 1.0
        elif isinstance(space, spaces.MultiBinary):
            out[:] = np.asarray(action, dtype=np.float32).reshape(-1)
        else:
            out[:] = np.clip(
                np.asarray(action, dtype=np.float32).reshape(-1),
                space.low.reshape(-1),
                space.high.reshape(-1),
            )
        return out

    def _augment(self, observation: Any, action: np.ndarray, reward: float) -> Any:
        if self._dict:
            return {
                **observation,
                "prev_action": action,
                "prev_reward": np.array([reward * self.reward_scale], dtype=np.float32),
            }
        out = np.empty(self._obs_dim + self._action_dim + 1, dtype=np.float32)
        out[: self._obs_dim] = observation
        out[self._obs_dim : -1] = action
        out[-1] = reward * self.reward_scale
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env; previous action zeros, previous reward 0."""
        observation, info = self.env.reset(seed=seed, options=options)
        return self._augment(observation, np.zeros(self._action_dim, np.float32), 0.0), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the env and append this step's action and reward to the new observation."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        augmented = self._augment(observation, self._encode_action(action), float(reward))
        return augmented, reward, terminated, truncated, info
