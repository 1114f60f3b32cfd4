"""The T-Maze of the paper (Lambrechts et al.), a memory task with an exploration problem."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_int, check_probability, check_render_mode
from envs._render import RENDER_FPS, RENDER_MODES, tmaze_picture

# Observation indices (one-hot of size 4) and actions, shared with the Passive T-Maze.
OBS_CUE_UP, OBS_CUE_DOWN, OBS_CORRIDOR, OBS_JUNCTION = 0, 1, 2, 3
RIGHT, UP, LEFT, DOWN = 0, 1, 2, 3
ACTION_NAMES = ("right", "up", "left", "down")

GOAL_REWARD = 4.0
PENALTY = -0.1
_UNIFORM_BLOCK = 64  # uniforms drawn at once for the stochastic transitions


class TMazeEnv(gymnasium.Env[np.ndarray, np.int64]):
    """The T-Maze of the paper: remember a cue seen at the start to pick a goal after a corridor.

    **Description.** Corridor cells ``x = 0 .. L`` with the junction at ``x = L``; the two goals
    are at ``(L, +1)`` (up) and ``(L, -1)`` (down). The agent starts at ``x = 0``; the goal side
    is drawn with probability 1/2 at reset. Optimal behaviour: go right ``L`` times, then up or
    down as the cue said: ``L + 1`` steps. With stochasticity ``λ``, in every non-terminal cell
    (the whole corridor, junction included) the chosen action is replaced with probability ``λ``
    by one drawn uniformly among the four (so it is still the chosen one with probability λ/4).

    ::

                          up goal  (L, +1)
        | 0 | 1 | … | L-1 | L |    junction
                          down goal (L, -1)

    **Observation.** ``Box(0, 1, (4,), float32)``, one-hot: ``[cue-up, cue-down, corridor,
    junction]``. The cue is shown in cell ``x = 0`` only (also when the agent comes back there);
    cells ``0 < x < L`` show *corridor*; the junction and the goals show *junction*.

    **Actions.** ``Discrete(4)``: 0 right, 1 up, 2 left, 3 down. Up/down move only at the
    junction; right is blocked at the junction, left at ``x = 0``.

    **Rewards.** ``+4`` for entering the correct goal; ``-0.1`` for entering the wrong goal and for
    every move that does not change the cell (bumping into a wall); ``0`` otherwise.

    **Termination.** Entering either goal terminates the episode (``info["is_success"]`` tells
    which). The environment truncates the episode itself after ``max_steps`` steps (``3L - 1`` by
    default, MiniGrid's convention), so ``gymnasium.make("rl_warmup/TMaze-v0", length=50)`` gets
    the time limit of ``L = 50``. Steps after termination are absorbing (same observation,
    reward 0, ``terminated=True``).

    ``info["is_success"]`` is in every step's info: ``True`` only on the step that enters the
    correct goal, so it is ``False`` at a truncation (SB3 reads it at the end of an episode).

    **Registered configurations.** ``rl_warmup/TMaze-v0`` (``L = 10``), ``rl_warmup/TMaze-L25-v0``,
    ``-L50``, ``-L100``, ``-L200`` (``λ = 0``); ``rl_warmup/TMazeStochastic-v0`` (``L = 10``) and
    ``rl_warmup/TMazeStochastic-L50-v0`` with ``λ = 0.2``.

    :param length: corridor length ``L >= 1`` (the junction is ``L`` steps right of the start).
    :param stochasticity: probability ``λ`` in ``[0, 1]`` that the action is replaced by a
        uniformly random one.
    :param max_steps: steps after which the episode is truncated; ``None`` for ``3L - 1`` (time
        to reach the junction, go back to the cue and return).
    :param render_mode: ``None``, ``"ansi"`` (a text picture of the maze) or ``"rgb_array"``
        (a ``uint8`` picture of the maze seen from above: start cell in the cue's colour, blue
        for up and orange for down, corridor, junction, correct goal green, wrong goal red,
        agent a black square; see :func:`envs._render.tmaze_picture`).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(
        self,
        length: int = 10,
        stochasticity: float = 0.0,
        render_mode: str | None = None,
        max_steps: int | None = None,
    ) -> None:
        self.length = check_int(length, "length")
        self.stochasticity = check_probability(stochasticity, "stochasticity")
        self.max_steps = (
            max(3 * self.length - 1, 1) if max_steps is None else check_int(max_steps, "max_steps")
        )
        """Steps after which the episode is truncated (``truncated=True``)."""
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        self.observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(4)

        self._rows = np.eye(4, dtype=np.float32)
        # Cells 0..L are the corridor (L is the junction), L + 1 the up goal, L + 2 the down goal.
        # _next[cell][action] is the next cell; goals are absorbing.
        L = self.length
        nxt: list[tuple[int, int, int, int]] = []
        for x in range(L + 3):
            if x > L:
                nxt.append((x, x, x, x))
            elif x == L:
                nxt.append((x, L + 1, x - 1 if L > 0 else x, L + 2))
            else:
                nxt.append((x + 1, x, max(x - 1, 0), x))
        self._next = tuple(nxt)
        self._up_goal = L + 1
        self._cell = 0
        self._goal = L + 1
        self._cue = OBS_CUE_UP
        self._uniforms: list[float] = []
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode at ``x = 0`` with a random goal side.

        :param seed: seeds ``self.np_random`` (same seed, same episode for the same actions).
        :param options: ``{"goal": "up" | "down"}`` forces the goal side (the paper's success
            test runs both).
        :return: the cue observation and an empty info dict.
        """
        super().reset(seed=seed)
        goal = None if options is None else options.get("goal")
        if goal is None:
            up = bool(self.np_random.random() < 0.5)
        elif goal in ("up", "down"):
            up = goal == "up"
        else:
            raise ValueError(f'options["goal"] must be "up" or "down", got {goal!r}')
        self._goal = self.length + 1 if up else self.length + 2
        self._cue = OBS_CUE_UP if up else OBS_CUE_DOWN
        self._cell = 0
        self._t = 0
        self._uniforms = []
        return self._rows[self._cue].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move one cell (see the class docstring for rewards and termination)."""
        a = check_action(action, 4)
        cell = self._cell
        L = self.length
        if cell > L:  # absorbing after termination
            return self._rows[OBS_JUNCTION].copy(), 0.0, True, False, {"is_success": False}
        lam = self.stochasticity
        if lam:
            # One uniform u per step, drawn in blocks from self.np_random (reset discards the
            # block, so a seeded reset replays exactly). Given u < λ, u / λ is uniform on [0, 1):
            # it picks the random replacement action without a second draw.
            if not self._uniforms:
                self._uniforms = self.np_random.random(_UNIFORM_BLOCK).tolist()
                self._uniforms.reverse()
            u = self._uniforms.pop()
            if u < lam:
                a = min(int(4.0 * u / lam), 3)
        new = self._next[cell][a]
        self._cell = new
        self._t += 1
        if new > L:
            success = new == self._goal
            return (
                self._rows[OBS_JUNCTION].copy(),
                GOAL_REWARD if success else PENALTY,
                True,
                False,
                {"is_success": success},
            )
        row = self._cue if new == 0 else (OBS_CORRIDOR if new < L else OBS_JUNCTION)
        return (
            self._rows[row].copy(),
            PENALTY if new == cell else 0.0,
            False,
            self._t >= self.max_steps,
            {"is_success": False},
        )

    def render(self) -> str | np.ndarray | None:
        """Picture of the current state for the render mode given at construction.

        ``"ansi"``: three lines of text (``A`` agent, ``c`` cue cell, ``G`` correct goal, ``g``
        wrong goal); ``"rgb_array"``: a ``uint8`` ``(H, W, 3)`` array; ``None`` without a mode.
        """
        L = self.length
        if self.render_mode == "rgb_array":
            cell = self._cell
            row = 1 if cell <= L else (0 if cell == L + 1 else 2)
            return tmaze_picture(L, self._goal == L + 1, row, min(cell, L))
        if self.render_mode != "ansi":
            return None
        corridor = ["A" if x == self._cell else ("c" if x == 0 else ".") for x in range(L + 1)]
        up = "A" if self._cell == L + 1 else ("G" if self._goal == L + 1 else "g")
        down = "A" if self._cell == L + 2 else ("G" if self._goal == L + 2 else "g")
        pad = " " * L
        return f"{pad}{up}\n{''.join(corridor)}\n{pad}{down}\n"
