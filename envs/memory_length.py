"""Memory length / memory chain, as bsuite's ``memory_len`` and ``memory_size`` experiments."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_int, check_render_mode
from envs._render import (
    CUE_DOWN,
    CUE_UP,
    QUERY,
    RENDER_FPS,
    RENDER_MODES,
    faded,
    sequence_picture,
)


class MemoryLengthEnv(gymnasium.Env[np.ndarray, np.int64]):
    """Recall a ±1 context bit shown at the first step when queried at the last step.

    **Description.** As bsuite's ``memory_len`` (one bit) and ``memory_chain`` / ``memory_size``
    (several bits, one of them queried): at reset the agent sees ``num_bits`` random context bits
    in ``{-1, +1}``; during the next ``memory_length`` steps it sees only the time left; at the
    last observation a query says which bit to report. The episode has exactly
    ``memory_length + 1`` steps (actions ``a_0 .. a_L``); only the last one, taken while the query
    is shown, is scored.

    **Observation.** ``Box(-1, 1, (1 + 2 * num_bits,), float32)``:
    ``[time_left, context_1 .. context_B, query_1 .. query_B]`` where ``time_left = 1 - t / L`` at
    observation ``t = 0 .. L``, the context bits are ``±1`` at ``t = 0`` and ``0`` afterwards, and
    the query is the one-hot index of the queried bit at ``t = L`` (zeros before).

    **Actions.** ``Discrete(2)``: ``0`` answers ``-1``, ``1`` answers ``+1``. Ignored before the
    query.

    **Rewards.** On the last step ``+1`` if the answer equals the queried context bit, ``-1``
    otherwise; ``0`` on every other step. A memoryless policy gets ``0`` in expectation.

    **Termination.** Terminated after the answer (step ``L + 1``: ``max_steps``, no
    separate time limit). ``info["is_success"]`` is in every step's info, ``True`` only on a correct
    answer. Steps after termination are absorbing.

    **Registered configurations.** ``rl_warmup/MemoryLength-v0`` (``L = 10``, 1 bit),
    ``rl_warmup/MemoryLength-L30-v0``, ``rl_warmup/MemoryLength-L100-v0`` (1 bit);
    ``rl_warmup/MemoryChain-v0`` (``L = 10``, 3 bits).

    :param memory_length: number of steps ``L >= 1`` between the context and the query.
    :param num_bits: number of context bits ``B >= 1`` (one of them is queried).
    :param render_mode: ``None``, ``"ansi"`` (one line of text) or ``"rgb_array"``: a ``uint8``
        picture with one column per step; row 1 is the time (steps done light grey, the current
        one with a black square), row 2 the context bits (blue ``+1``, orange ``-1``; faded once
        hidden), row 3 the query (yellow on the queried bit, faded until it is shown).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
    }

    def __init__(
        self, memory_length: int = 10, num_bits: int = 1, render_mode: str | None = None
    ) -> None:
        self.memory_length = check_int(memory_length, "memory_length")
        self.num_bits = check_int(num_bits, "num_bits")
        self.max_steps = self.memory_length + 1
        """Number of steps of every episode; the episode terminates by itself then, so kwargs
        that change it change the time limit too (MiniGrid's ``max_steps`` convention)."""
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"])
        L, B = self.memory_length, self.num_bits
        self.observation_space = spaces.Box(-1.0, 1.0, (1 + 2 * B,), np.float32)
        self.action_space = spaces.Discrete(2)
        # Row t holds the observation at time t without context or query.
        self._rows = np.zeros((L + 1, 1 + 2 * B), dtype=np.float32)
        self._rows[:, 0] = 1.0 - np.arange(L + 1, dtype=np.float32) / L
        self._t = 0
        self._context = np.ones(B, dtype=np.float32)
        self._query = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the context bits and the queried bit.

        :param seed: seeds ``self.np_random``.
        :param options: ``{"context": sequence of ±1, "query": int}`` to force them (tests).
        :return: the first observation (time left 1, the context) and an empty info dict.
        """
        super().reset(seed=seed)
        options = options or {}
        B = self.num_bits
        if "context" in options:
            context = np.asarray(options["context"], dtype=np.float32).reshape(-1)
            if context.shape != (B,) or not np.all(np.abs(context) == 1.0):
                raise ValueError(f'options["context"] must hold {B} values in {{-1, +1}}')
        else:
            context = self.np_random.choice(np.array([-1.0, 1.0], dtype=np.float32), size=B)
        query = int(options.get("query", self.np_random.integers(B)))
        if not 0 <= query < B:
            raise ValueError(f'options["query"] must be in [0, {B}), got {query}')
        self._context = context
        self._query = query
        self._t = 0
        obs = self._rows[0].copy()
        obs[1 : 1 + B] = context
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one step; the answer is scored at the last step."""
        a = check_action(action, 2)
        t = self._t + 1
        L = self.memory_length
        if t < L:
            self._t = t
            return self._rows[t].copy(), 0.0, False, False, {"is_success": False}
        if t == L:
            self._t = t
            obs = self._rows[L].copy()
            obs[1 + self.num_bits + self._query] = 1.0
            return obs, 0.0, False, False, {"is_success": False}
        if t == L + 1:
            self._t = t
            success = (a == 1) == bool(self._context[self._query] > 0)
            return (
                self._rows[L].copy(),
                1.0 if success else -1.0,
                True,
                False,
                {"is_success": success},
            )
        return self._rows[L].copy(), 0.0, True, False, {"is_success": False}

    def render(self) -> str | np.ndarray | None:
        """Picture of the current step for the render mode given at construction.

        ``"ansi"``: one line of text; ``"rgb_array"``: a ``uint8`` ``(H, W, 3)`` array (see the
        class docstring); ``None`` without a mode.
        """
        L, B, t = self.memory_length, self.num_bits, self._t
        bits = [bool(b > 0) for b in self._context]
        if self.render_mode == "rgb_array":
            context = [CUE_UP if up else CUE_DOWN for up in bits]
            if t > 0:
                context = [faded(c) for c in context]
            query: list = [None] * B
            query[self._query] = QUERY if t >= L else faded(QUERY)
            return sequence_picture(L + 1, t, [context, query])
        if self.render_mode != "ansi":
            return None
        context_text = " ".join("+1" if up else "-1" for up in bits)
        query_text = str(self._query) if t >= L else "?"
        return f"t={t}/{L + 1}  context=[{context_text}]{'' if t == 0 else ' (hidden)'}  query={query_text}\n"
