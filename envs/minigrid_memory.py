"""MiniGrid memory tasks wrapped for ``RecurrentPPO``'s MLP policy (``MlpLstmPolicy``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from envs._checks import check_action, check_render_mode

# MiniGrid's encoding sizes (minigrid.core.constants): 11 object types, 6 colours, 3 door states.
NUM_OBJECTS, NUM_COLORS, NUM_STATES = 11, 6, 3

MINIGRID_ACTION_NAMES = ("left", "right", "forward", "pickup", "drop", "toggle", "done")


class MiniGridFloatObsWrapper(gymnasium.ObservationWrapper[np.ndarray, Any, dict]):
    """Keep only MiniGrid's partial image and return it as a flat ``float32`` vector.

    **Description.** MiniGrid observations are a dict (image, direction, mission); the image is
    ``uint8`` of shape ``(V, V, 3)`` (object, colour, state) with ``V = 7`` by default. SB3 would
    treat a ``uint8`` image as pixels (divide by 255) and its ``CnnLstmPolicy`` cannot take
    ``7 x 7``, so the image is flattened to floats for ``MlpLstmPolicy``.

    **Observation.** ``one_hot=False``: ``Box(0, 1, (V * V * 3,), float32)``, each channel divided
    by its largest index (10, 5, 2). ``one_hot=True``: ``Box(0, 1, (V * V * 20,), float32)``, the
    concatenated one-hot encodings of object (11), colour (6) and state (3) per cell.

    :param env: a MiniGrid environment (dict observation with an ``"image"`` key).
    :param one_hot: one-hot encode each cell instead of scaling its indices.
    """

    def __init__(self, env: gymnasium.Env, one_hot: bool = False) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict) or "image" not in space.spaces:
            raise ValueError(
                f"MiniGridFloatObsWrapper needs a dict space with 'image', got {space}"
            )
        height, width, channels = space.spaces["image"].shape
        if channels != 3:
            raise ValueError(f"expected an image of (V, V, 3) MiniGrid encodings, got {space}")
        self.one_hot = one_hot
        self._cells = height * width
        if one_hot:
            size = self._cells * (NUM_OBJECTS + NUM_COLORS + NUM_STATES)
            self._object_eye = np.eye(NUM_OBJECTS, dtype=np.float32)
            self._color_eye = np.eye(NUM_COLORS, dtype=np.float32)
            self._state_eye = np.eye(NUM_STATES, dtype=np.float32)
        else:
            size = self._cells * 3
            self._scale = 1.0 / np.array(
                [NUM_OBJECTS - 1, NUM_COLORS - 1, NUM_STATES - 1], dtype=np.float32
            )
        self.observation_space = spaces.Box(0.0, 1.0, (size,), np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        """Flatten the image (a new array)."""
        image = np.asarray(observation["image"]).reshape(self._cells, 3)
        if self.one_hot:
            return np.concatenate(
                [
                    self._object_eye[image[:, 0]],
                    self._color_eye[image[:, 1]],
                    self._state_eye[image[:, 2]],
                ],
                axis=1,
            ).reshape(-1)
        return (image.astype(np.float32) * self._scale).reshape(-1)


class DiscreteActionSubsetWrapper(gymnasium.ActionWrapper[Any, np.int64, np.int64]):
    """Expose only some actions of a ``Discrete`` action space, as ``Discrete(len(actions))``.

    :param env: environment with a ``Discrete`` action space.
    :param actions: the wrapped environment's actions, in the order of the new indices
        (e.g. ``(0, 1, 2)``: MiniGrid's left, right, forward).
    """

    def __init__(self, env: gymnasium.Env, actions: Sequence[int]) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, spaces.Discrete):
            raise ValueError(
                f"DiscreteActionSubsetWrapper needs a Discrete action space, got {space}"
            )
        actions = tuple(int(a) for a in actions)
        if (
            not actions
            or len(set(actions)) != len(actions)
            or not all(space.contains(np.int64(a)) for a in actions)
        ):
            raise ValueError(f"actions must be distinct actions of {space}, got {actions}")
        self.actions = actions
        self.action_space = spaces.Discrete(len(actions))

    def action(self, action: Any) -> np.int64:
        """Map the new index to the wrapped environment's action."""
        index = check_action(action, len(self.actions))
        return np.int64(self.actions[index])


def make_minigrid_memory(
    minigrid_id: str = "MiniGrid-MemoryS7-v0",
    actions: Sequence[int] | None = (0, 1, 2),
    one_hot: bool = False,
    render_mode: str | None = None,
    **kwargs: Any,
) -> gymnasium.Env:
    """Create a MiniGrid memory task as a flat float vector observation for ``MlpLstmPolicy``.

    **Description.** ``MiniGrid-Memory*``: in a start room the agent sees an object (key or
    ball); at the end of a hallway it must go to the matching one of two objects.
    ``MiniGrid-RedBlueDoors-*``: open the red door, then the blue one. The environment is built
    from MiniGrid's registry entry (without gymnasium's wrappers), then wrapped with
    :class:`MiniGridFloatObsWrapper` (partial view only, floats, optionally one-hot) and, when
    ``actions`` is given, :class:`DiscreteActionSubsetWrapper`.

    **Observation.** See :class:`MiniGridFloatObsWrapper` (147 floats, or 980 with ``one_hot``).

    **Actions.** ``Discrete(len(actions))``: ``(0, 1, 2)`` = left, right, forward for the Memory
    tasks, ``(0, 1, 2, 5)`` adds toggle for RedBlueDoors; ``None`` keeps MiniGrid's 7.

    **Rewards.** MiniGrid's: ``1 - 0.9 * steps / max_steps`` on success, ``0`` otherwise.

    **Termination.** Success or failure; MiniGrid truncates after ``max_steps`` (``5 S²`` for
    Memory, ``20 S²`` for RedBlueDoors, following ``size``); the ids add no time limit of their own.

    **Registered configurations.** ``rl_warmup/MiniGrid-MemoryS{7,9,11,13}-v0``,
    ``rl_warmup/MiniGrid-MemoryS{13,17}Random-v0`` (3 actions),
    ``rl_warmup/MiniGrid-RedBlueDoors-{6x6,8x8}-v0`` (4 actions).

    :param minigrid_id: MiniGrid's id of the task.
    :param actions: MiniGrid actions to keep, or ``None`` for all seven.
    :param one_hot: one-hot encode the cells (see :class:`MiniGridFloatObsWrapper`).
    :param render_mode: passed to the MiniGrid environment: ``None``, ``"human"`` or
        ``"rgb_array"`` (MiniGrid's full-grid picture; anything else raises :class:`ValueError`).
    :param kwargs: passed to the MiniGrid environment (override its registered kwargs).
    """
    import minigrid  # noqa: F401  (registers MiniGrid's ids)
    from gymnasium.envs.registration import load_env_creator

    try:
        spec = gymnasium.spec(minigrid_id)
    except gymnasium.error.Error as error:
        raise ValueError(f"unknown MiniGrid id {minigrid_id!r}") from error
    if not isinstance(spec.entry_point, str) or not spec.entry_point.startswith("minigrid."):
        raise ValueError(f"{minigrid_id!r} is not a MiniGrid environment")
    creator = load_env_creator(spec.entry_point)
    metadata = getattr(creator, "metadata", None)
    if isinstance(metadata, dict) and "render_modes" in metadata:
        check_render_mode(render_mode, list(metadata["render_modes"]))
    env: gymnasium.Env = creator(**{**spec.kwargs, **kwargs}, render_mode=render_mode)
    env = MiniGridFloatObsWrapper(env, one_hot=one_hot)
    if actions is not None:
        env = DiscreteActionSubsetWrapper(env, actions)
    return env
