"""Count recall (POPGym style): how many times has the queried value been dealt so far?"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_int, check_render_mode
from envs._render import MARK, QUERY, RENDER_FPS, RENDER_MODES, sequence_picture, value_colours


class CountRecallEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Answer how many times the queried value has been dealt, this step included.

    **Description.** POPGym's *CountRecall* with small discrete observations and exact answers:
    at every step ``t = 0 .. T - 1`` a value ``c_t`` and a query ``q_t`` are drawn uniformly
    (with replacement) among ``n``; the agent must answer ``#{s <= t : c_s = q_t}``. An
    order-free memory (a count per value) is needed.

    **Observation.** ``Box(0, 1, (2 n,), float32)``: one-hot of ``c_t``, then one-hot of ``q_t``.

    **Actions.** ``Discrete(T + 1)``: the count.

    **Rewards.** ``+1 / T`` for each right count, ``0`` otherwise: the optimal return is ``1``.
    The best memoryless policy answers, for "``c_t = q_t``" and "``c_t ≠ q_t``", the count that is
    most frequent over the episode; its expected return is computed in the tests from binomial
    distributions (0.199 for ``T = 20``, ``n = 4``).

    **Termination.** Terminated after exactly ``T`` steps (``max_steps``; no separate time limit).
    ``info["is_success"]`` is ``True`` on the last step when every answer was right.

    **Registered configurations.** ``rl_warmup/CountRecall-v0``: ``T = 20``, ``n = 4``.

    :param length: number of steps ``T >= 1`` of an episode.
    :param num_values: number of distinct values ``n >= 2``.
    :param render_mode: ``None``, ``"ansi"`` (one line of text) or ``"rgb_array"``: a ``uint8``
        picture with one column per step; row 1 is the time (the current step with a black
        square), row 2 the values dealt so far (one colour per value), row 3 the queries, row 4
        the expected count as a yellow bar; white squares mark the current query and the values
        it counts.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(
        self, length: int = 20, num_values: int = 4, render_mode: str | None = None
    ) -> None:
        self.length = check_int(length, "length")
        self.num_values = check_int(num_values, "num_values", minimum=2)
        self.max_steps = self.length
        """Number of steps of every episode; the episode terminates by itself then, so kwargs
        that change it change the time limit too (MiniGrid's ``max_steps`` convention)."""
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        n = self.num_values
        self.observation_space = spaces.Box(0.0, 1.0, (2 * n,), np.float32)
        self.action_space = spaces.Discrete(self.length + 1)
        eye = np.eye(n, dtype=np.float32)
        # _rows[c * n + q] is the observation for value c and query q.
        self._rows = np.concatenate([np.repeat(eye, n, axis=0), np.tile(eye, (n, 1))], axis=1)
        self._reward = 1.0 / self.length
        self._codes: list[int] = []
        self._answers: list[int] = []
        self._t = 0
        self._correct = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the episode's values and queries (and their answers); return the first pair."""
        super().reset(seed=seed)
        n, T = self.num_values, self.length
        values = self.np_random.integers(n, size=T)
        queries = self.np_random.integers(n, size=T)
        counts = np.cumsum(np.eye(n, dtype=np.int64)[values], axis=0)  # (T, n) counts so far
        self._answers = counts[np.arange(T), queries].tolist()
        self._codes = (values * n + queries).tolist()
        self._t = 0
        self._correct = 0
        return self._rows[self._codes[0]].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Score the count, deal the next value and query."""
        a = check_action(action, self.length + 1)
        t = self._t
        T = self.length
        if t >= T:  # absorbing after termination
            return self._rows[self._codes[-1]].copy(), 0.0, True, False, {"is_success": False}
        reward = 0.0
        if a == self._answers[t]:
            reward = self._reward
            self._correct += 1
        t += 1
        self._t = t
        if t == T:
            success = self._correct == T
            return self._rows[self._codes[-1]].copy(), reward, True, False, {"is_success": success}
        return self._rows[self._codes[t]].copy(), reward, False, False, {"is_success": False}

    def render(self) -> str | np.ndarray | None:
        """Picture of the current step for the render mode given at construction.

        ``"ansi"``: one line of text; ``"rgb_array"``: a ``uint8`` ``(H, W, 3)`` array (see the
        class docstring); ``None`` without a mode.
        """
        n, T, t = self.num_values, self.length, self._t
        if not self._codes:  # before the first reset
            return None
        shown = range(min(t + 1, T))
        values = [self._codes[s] // n for s in shown]
        queries = [self._codes[s] % n for s in shown]
        if self.render_mode == "rgb_array":
            colours = value_colours(n)
            marks = []
            count: list = []
            if t < T:
                marks = [(0, s, MARK) for s in shown if values[s] == queries[t]]
                marks.append((1, t, MARK))
                count = [QUERY] * self._answers[t]
            rows = [[colours[v] for v in values], [colours[q] for q in queries], count]
            return sequence_picture(T, t, rows, marks)
        if self.render_mode != "ansi":
            return None
        answer = "-" if t >= T else str(self._answers[t])
        query = "-" if t >= T else str(queries[t])
        seen = " ".join(str(v) for v in values)
        return f"t={t}/{T}  values=[{seen}]  query={query}  expected={answer}\n"
