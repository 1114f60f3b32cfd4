"""Passive T-Maze (Ni et al., NeurIPS 2023): memory length without exploration or credit assignment."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_int, check_render_mode
from envs._render import RENDER_FPS, RENDER_MODES, tmaze_picture
from envs.tmaze import (
    DOWN,
    OBS_CORRIDOR,
    OBS_CUE_DOWN,
    OBS_CUE_UP,
    OBS_JUNCTION,
    UP,
)


class PassiveTMazeEnv(gymnasium.Env[np.ndarray, np.int64]):
    """T-Maze whose corridor is walked automatically: only the choice at the junction matters.

    **Description.** As in "When do transformers shine in RL? Decoupling memory from credit
    assignment" (Ni et al., NeurIPS 2023): the cue is shown once, at the start, and the agent must
    recall it ``L`` steps later at the junction. Unlike Ni et al. (where the agent must still
    choose *right*, with a small penalty otherwise), here the agent is moved one cell right at
    every step **whatever the action**, so memory length is isolated from exploration and credit
    assignment. Timeline with memory length ``L``:

    * reset: the agent is at ``x = 0`` and observes the cue (up or down, probability 1/2 each);
    * steps ``1 .. L``: the action is ignored, the agent moves to ``x = 1 .. L``; it observes
      *corridor* at ``0 < x < L`` and *junction* at ``x = L`` (after step ``L``);
    * step ``L + 1``: the action taken while observing the junction is the choice and ends the
      episode.

    Every episode therefore has exactly ``L + 1`` steps, and the cue must be remembered across
    ``L`` steps.

    **Observation.** ``Box(0, 1, (4,), float32)``, one-hot ``[cue-up, cue-down, corridor,
    junction]`` (same encoding as :class:`envs.TMazeEnv`).

    **Actions.** ``Discrete(4)``: 0 right, 1 up, 2 left, 3 down (same as :class:`envs.TMazeEnv`).
    At the junction, up/down choose a goal; right/left choose none (a failure).

    **Rewards.** ``+1`` on the last step if the choice matches the cue, ``0`` otherwise and on every
    other step. A memoryless policy gets ``0.5`` in expectation.

    **Termination.** Terminated after the choice, i.e. after exactly ``L + 1`` steps
    (``max_steps``; no separate time limit). ``info["is_success"]`` is in every step's info and
    is ``True`` only on a correct final choice. Steps after termination are absorbing.

    **Registered configurations.** ``rl_warmup/PassiveTMaze-v0`` (``L = 10``) and
    ``rl_warmup/PassiveTMaze-L{50,100,250,500,1000}-v0``.

    :param length: memory length ``L >= 1``.
    :param render_mode: ``None``, ``"ansi"`` (one line of text) or ``"rgb_array"`` (a ``uint8``
        picture drawn as for :class:`envs.TMazeEnv`; after the choice, the agent is in the chosen
        goal, or still at the junction when it chose right or left).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(self, length: int = 10, render_mode: str | None = None) -> None:
        self.length = check_int(length, "length")
        self.max_steps = self.length + 1
        """Number of steps of every episode; the episode terminates by itself then, so kwargs
        that change it change the time limit too (MiniGrid's ``max_steps`` convention)."""
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(4)
        self._rows = np.eye(4, dtype=np.float32)
        self._t = 0
        self._up = True
        self._choice = -1  # the action at the junction, once taken (for render only)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start at ``x = 0`` with a random cue.

        :param seed: seeds ``self.np_random``.
        :param options: ``{"goal": "up" | "down"}`` forces the cue.
        :return: the cue observation and an empty info dict.
        """
        super().reset(seed=seed)
        goal = None if options is None else options.get("goal")
        if goal is None:
            self._up = bool(self.np_random.random() < 0.5)
        elif goal in ("up", "down"):
            self._up = goal == "up"
        else:
            raise ValueError(f'options["goal"] must be "up" or "down", got {goal!r}')
        self._t = 0
        self._choice = -1
        return self._rows[OBS_CUE_UP if self._up else OBS_CUE_DOWN].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Walk one cell right, or make the final choice at the junction."""
        a = check_action(action, 4)
        t = self._t + 1
        L = self.length
        if t <= L:
            self._t = t
            row = OBS_CORRIDOR if t < L else OBS_JUNCTION
            return self._rows[row].copy(), 0.0, False, False, {"is_success": False}
        if t == L + 1:
            self._t = t
            self._choice = a
            success = a == (UP if self._up else DOWN)
            return (
                self._rows[OBS_JUNCTION].copy(),
                1.0 if success else 0.0,
                True,
                False,
                {"is_success": success},
            )
        return self._rows[OBS_JUNCTION].copy(), 0.0, True, False, {"is_success": False}

    def render(self) -> str | np.ndarray | None:
        """Picture of the current state for the render mode given at construction.

        ``"ansi"``: one line of text, the corridor with the agent ``A`` and the cue;
        ``"rgb_array"``: a ``uint8`` ``(H, W, 3)`` array; ``None`` without a mode.
        """
        x = min(self._t, self.length)
        if self.render_mode == "rgb_array":
            row = {UP: 0, DOWN: 2}.get(self._choice, 1) if self._t > self.length else 1
            return tmaze_picture(self.length, self._up, row, x)
        if self.render_mode != "ansi":
            return None
        cells = ["A" if i == x else ("c" if i == 0 else ".") for i in range(self.length + 1)]
        return "".join(cells) + f"  cue={'up' if self._up else 'down'}\n"
