"""Repeat first (POPGym style): repeat the first value of the episode at every later step."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_int, check_render_mode
from envs._render import RENDER_FPS, RENDER_MODES, sequence_picture, value_colours


class RepeatFirstEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Output the value shown at the first step, at every later step.

    **Description.** POPGym's *RepeatFirst* with small discrete observations: at every step
    ``t = 0 .. T - 1`` a value ``c_t`` is drawn uniformly (with replacement) among ``n`` and shown;
    the agent must answer ``c_0`` at every step ``t >= 1``.

    **Observation.** ``Box(0, 1, (n + 1,), float32)``: one-hot of ``c_t``, then a flag that is
    ``1`` at ``t = 0`` only.

    **Actions.** ``Discrete(n)``: the answer. The action at ``t = 0`` is not scored.

    **Rewards.** ``+1 / (T - 1)`` at each step ``t >= 1`` whose action equals ``c_0``, else ``0``:
    the optimal return is ``1``; a memoryless policy gets ``1 / n`` in expectation (``c_0`` is
    independent of what it sees at ``t >= 1``).

    **Termination.** Terminated after exactly ``T`` steps (``max_steps``; no separate time limit).
    ``info["is_success"]`` is ``True`` on the last step when every answer was right.

    **Registered configurations.** ``rl_warmup/RepeatFirst-v0``: ``T = 50``, ``n = 4``.

    :param length: number of steps ``T >= 2`` of an episode.
    :param num_values: number of distinct values ``n >= 2``.
    :param render_mode: ``None``, ``"ansi"`` (one line of text) or ``"rgb_array"``: a ``uint8``
        picture with one column per step; row 1 is the time (the current step with a black
        square), row 2 the values dealt so far (one colour per value), row 3 the answer expected
        at each of those steps.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(
        self, length: int = 50, num_values: int = 4, render_mode: str | None = None
    ) -> None:
        self.length = check_int(length, "length", minimum=2)
        self.num_values = check_int(num_values, "num_values", minimum=2)
        self.max_steps = self.length
        """Number of steps of every episode; the episode terminates by itself then, so kwargs
        that change it change the time limit too (MiniGrid's ``max_steps`` convention)."""
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        n = self.num_values
        self.observation_space = spaces.Box(0.0, 1.0, (n + 1,), np.float32)
        self.action_space = spaces.Discrete(n)
        self._rows = np.eye(n + 1, dtype=np.float32)[:n]  # one-hot rows, flag 0
        self._first_rows = self._rows.copy()
        self._first_rows[:, n] = 1.0
        self._reward = 1.0 / (self.length - 1)
        self._values: list[int] = []
        self._t = 0
        self._correct = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the episode's values; return the first one (with the first-step flag)."""
        super().reset(seed=seed)
        self._values = self.np_random.integers(self.num_values, size=self.length).tolist()
        self._t = 0
        self._correct = 0
        return self._first_rows[self._values[0]].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the answer, show the next value."""
        a = check_action(action, self.num_values)
        t = self._t
        T = self.length
        if t >= T:  # absorbing after termination
            return self._rows[self._values[-1]].copy(), 0.0, True, False, {"is_success": False}
        reward = 0.0
        if t >= 1 and a == self._values[0]:
            reward = self._reward
            self._correct += 1
        t += 1
        self._t = t
        if t == T:
            success = self._correct == T - 1
            return self._rows[self._values[-1]].copy(), reward, True, False, {"is_success": success}
        return self._rows[self._values[t]].copy(), reward, False, False, {"is_success": False}

    def _expected(self, s: int) -> int | None:
        """The answer scored at step ``s`` (``None`` when step ``s`` is not scored)."""
        return self._values[0] if s >= 1 else None

    def render(self) -> str | np.ndarray | None:
        """Picture of the current step for the render mode given at construction.

        ``"ansi"``: one line of text; ``"rgb_array"``: a ``uint8`` ``(H, W, 3)`` array (see the
        class docstring); ``None`` without a mode.
        """
        T, t = self.length, self._t
        if not self._values:  # before the first reset
            return None
        shown = range(min(t + 1, T))
        expected = [self._expected(s) for s in shown]
        if self.render_mode == "rgb_array":
            colours = value_colours(self.num_values)
            values = [colours[self._values[s]] for s in shown]
            answers = [None if e is None else colours[e] for e in expected]
            return sequence_picture(T, t, [values, answers])
        if self.render_mode != "ansi":
            return None
        seen = " ".join(str(self._values[s]) for s in shown)
        answer = "-" if t >= T or expected[-1] is None else str(expected[-1])
        return f"t={t}/{T}  values=[{seen}]  expected={answer}\n"
