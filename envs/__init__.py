"""Memory-demanding POMDP environments, registered with gymnasium under ``rl_warmup/…-v0``.

(The supervised long-memory benchmarks live in the subpackage :mod:`envs.supervised`.)

This package stands alone: it imports gymnasium and numpy (and minigrid / popgym only inside the
factories that need them), never ``rl_warmup``.

Importing it is cheap: the table below and :func:`register_envs` need only entry-point strings;
the environment modules are imported on first attribute access or by ``gymnasium.make``.

How gymnasium finds the environments:

* ``import envs`` registers every id of :data:`ENVIRONMENTS` (``gymnasium.register_envs(envs)``
  is the idiom that keeps linters quiet), and ``gymnasium.make("envs:rl_warmup/TMaze-v0")``
  imports the package itself;
* gymnasium < 1.0 loads the ``gymnasium.envs`` entry point of ``pyproject.toml``
  (``rl_warmup = "envs:register_envs"``), so a plain ``gymnasium.make("rl_warmup/TMaze-v0")``
  works without any import;
* gymnasium >= 1.0 dropped that plugin loading; ``python -m envs.gymnasium_plugin install`` writes
  a one-line ``.pth`` file into site-packages that registers the ids when gymnasium is imported
  (see :mod:`envs.gymnasium_plugin`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

# Marker read (as text, without importing) by envs/_gymnasium_hook.py to make sure the `envs`
# package it registers from is this one and not another top-level `envs` on sys.path.
__rl_warmup_envs__ = True

NAMESPACE = "rl_warmup"
"""The gymnasium namespace of every registered id (``rl_warmup/<Name>-v0``)."""


@dataclass(frozen=True)
class EnvInfo:
    """One row of :data:`ENVIRONMENTS`: everything registration and the tests need about an id."""

    entry_point: str
    """``"module:callable"`` that creates the environment (a class or a factory function)."""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments passed to the entry point (the variant)."""
    max_episode_steps: int | None = None
    """Longest episode of the registered configuration (its time limit)."""
    env_truncates: bool = True
    """True when the environment ends its episodes itself at its horizon ``env.unwrapped.max_steps``
    (MiniGrid's convention), which follows the kwargs: ``gymnasium.make(id, length=50)`` gets the
    horizon of ``length=50``, so the id is registered *without* gymnasium's
    :class:`~gymnasium.wrappers.TimeLimit` (a registered limit would keep the default's horizon
    whatever the kwargs). False for wrapper stacks whose horizon no kwarg changes (CartPole,
    Pendulum): ``gymnasium.make`` applies ``max_episode_steps`` as usual."""
    optimal_return: float | None = None
    """Undiscounted return of the optimal scripted policy of :mod:`envs.scripted` in every
    episode, or ``None`` when the id has no optimal scripted policy."""
    chance_return: float | None = None
    """Best expected undiscounted return of a memoryless policy (one that sees only the current
    observation; rounded to 4 digits), or ``None`` when not known (the tests derive each value)."""
    exploration: str = "uniform"
    """Name of the scripted exploration policy of :func:`envs.get_exploration_policy`:
    ``"uniform"``, ``"tmaze"`` (right 1/2, the others 1/6) or ``"minigrid_forward"``."""
    wrapper_stack: bool = False
    """True when the entry point returns wrappers around a third-party environment
    (CartPole, Pendulum, MiniGrid) rather than one of this package's ``gymnasium.Env`` classes."""
    description: str = ""
    """One line for the README table and ``pprint``."""


def _tmaze(length: int, stochasticity: float = 0.0) -> EnvInfo:
    deterministic = stochasticity == 0.0
    return EnvInfo(
        entry_point="envs.tmaze:TMazeEnv",
        kwargs={"length": length, "stochasticity": stochasticity},
        max_episode_steps=3 * length - 1,
        optimal_return=4.0 if deterministic else None,
        # memoryless, deterministic: reach the junction, then always the same side
        chance_return=(4.0 - 0.1) / 2 if deterministic else None,
        exploration="tmaze",
        description=f"T-Maze of the paper, corridor length {length}, stochasticity {stochasticity}",
    )


def _passive_tmaze(length: int) -> EnvInfo:
    return EnvInfo(
        entry_point="envs.passive_tmaze:PassiveTMazeEnv",
        kwargs={"length": length},
        max_episode_steps=length + 1,
        optimal_return=1.0,
        chance_return=0.5,
        description=f"Passive T-Maze (Ni et al. 2023), memory length {length}",
    )


def _memory_length(memory_length: int, num_bits: int = 1) -> EnvInfo:
    return EnvInfo(
        entry_point="envs.memory_length:MemoryLengthEnv",
        kwargs={"memory_length": memory_length, "num_bits": num_bits},
        max_episode_steps=memory_length + 1,
        optimal_return=1.0,
        chance_return=0.0,
        description=f"bsuite memory_len style, {num_bits} context bit(s), query after {memory_length} steps",
    )


def _minigrid(minigrid_id: str, max_steps: int, actions: tuple[int, ...]) -> EnvInfo:
    return EnvInfo(
        entry_point="envs.minigrid_memory:make_minigrid_memory",
        kwargs={"minigrid_id": minigrid_id, "actions": actions},
        max_episode_steps=max_steps,
        exploration="minigrid_forward" if actions == (0, 1, 2) else "uniform",
        wrapper_stack=True,
        description=f"{minigrid_id}: partial 7x7 view as a flat float vector, actions {actions}",
    )


_TABLE: dict[str, EnvInfo] = {
    # 1. The paper's T-Maze.
    "TMaze-v0": _tmaze(10),
    "TMaze-L25-v0": _tmaze(25),
    "TMaze-L50-v0": _tmaze(50),
    "TMaze-L100-v0": _tmaze(100),
    "TMaze-L200-v0": _tmaze(200),
    "TMazeStochastic-v0": _tmaze(10, 0.2),
    "TMazeStochastic-L50-v0": _tmaze(50, 0.2),
    # 2. Passive T-Maze: memory length isolated from exploration and credit assignment.
    "PassiveTMaze-v0": _passive_tmaze(10),
    "PassiveTMaze-L50-v0": _passive_tmaze(50),
    "PassiveTMaze-L100-v0": _passive_tmaze(100),
    "PassiveTMaze-L250-v0": _passive_tmaze(250),
    "PassiveTMaze-L500-v0": _passive_tmaze(500),
    "PassiveTMaze-L1000-v0": _passive_tmaze(1000),
    # 3. bsuite-style memory length / memory chain.
    "MemoryLength-v0": _memory_length(10),
    "MemoryLength-L30-v0": _memory_length(30),
    "MemoryLength-L100-v0": _memory_length(100),
    "MemoryChain-v0": _memory_length(10, num_bits=3),
    # 4. POPGym-style recall tasks (small one-hot observations).
    "RepeatFirst-v0": EnvInfo(
        entry_point="envs.repeat_first:RepeatFirstEnv",
        kwargs={"length": 50, "num_values": 4},
        max_episode_steps=50,
        optimal_return=1.0,
        chance_return=0.25,
        description="repeat the first of 50 random values (4 possible) at every later step",
    ),
    "RepeatPrevious-v0": EnvInfo(
        entry_point="envs.repeat_previous:RepeatPreviousEnv",
        kwargs={"length": 50, "k": 4, "num_values": 4},
        max_episode_steps=50,
        optimal_return=1.0,
        chance_return=0.25,
        description="repeat the value seen 4 steps earlier, 50 steps, 4 possible values",
    ),
    "CountRecall-v0": EnvInfo(
        entry_point="envs.count_recall:CountRecallEnv",
        kwargs={"length": 20, "num_values": 4},
        max_episode_steps=20,
        optimal_return=1.0,
        chance_return=0.1994,  # best memoryless policy, from binomial distributions (tests)
        description="answer how many times the queried value has been dealt, 20 steps",
    ),
    # 5. Classic control without velocities (rl-baselines3-zoo "NoVel" convention).
    "CartPoleNoVel-v0": EnvInfo(
        entry_point="envs.classic_pomdp:make_cartpole_novel",
        max_episode_steps=500,
        wrapper_stack=True,
        env_truncates=False,
        description="CartPole-v1 observing only cart position and pole angle (velocities removed)",
    ),
    "PendulumNoVel-v0": EnvInfo(
        entry_point="envs.classic_pomdp:make_pendulum_novel",
        max_episode_steps=200,
        wrapper_stack=True,
        env_truncates=False,
        description="Pendulum-v1 observing only cos and sin of the angle, actions rescaled to [-1, 1]",
    ),
    # 6. MiniGrid memory tasks, wrapped for RecurrentPPO's MLP policy.
    "MiniGrid-MemoryS7-v0": _minigrid("MiniGrid-MemoryS7-v0", 5 * 7**2, (0, 1, 2)),
    "MiniGrid-MemoryS9-v0": _minigrid("MiniGrid-MemoryS9-v0", 5 * 9**2, (0, 1, 2)),
    "MiniGrid-MemoryS11-v0": _minigrid("MiniGrid-MemoryS11-v0", 5 * 11**2, (0, 1, 2)),
    "MiniGrid-MemoryS13-v0": _minigrid("MiniGrid-MemoryS13-v0", 5 * 13**2, (0, 1, 2)),
    "MiniGrid-MemoryS13Random-v0": _minigrid("MiniGrid-MemoryS13Random-v0", 5 * 13**2, (0, 1, 2)),
    "MiniGrid-MemoryS17Random-v0": _minigrid("MiniGrid-MemoryS17Random-v0", 5 * 17**2, (0, 1, 2)),
    "MiniGrid-RedBlueDoors-6x6-v0": _minigrid(
        "MiniGrid-RedBlueDoors-6x6-v0", 20 * 6**2, (0, 1, 2, 5)
    ),
    "MiniGrid-RedBlueDoors-8x8-v0": _minigrid(
        "MiniGrid-RedBlueDoors-8x8-v0", 20 * 8**2, (0, 1, 2, 5)
    ),
}

ENVIRONMENTS: Mapping[str, EnvInfo] = MappingProxyType(
    {f"{NAMESPACE}/{name}": info for name, info in _TABLE.items()}
)
"""The one table of environments (read-only): full gymnasium id -> :class:`EnvInfo`.
Registration (:func:`register_envs`), the exploration policies and the tests all read it."""


def registered_time_limit(info: EnvInfo) -> int | None:
    """The ``max_episode_steps`` given to gymnasium's registry for a row of :data:`ENVIRONMENTS`:
    ``None`` when the environment truncates itself (see :attr:`EnvInfo.env_truncates`)."""
    return None if info.env_truncates else info.max_episode_steps


def register_envs() -> list[str]:
    """Register every id of :data:`ENVIRONMENTS` with gymnasium; calling it again is a no-op.

    An id already registered with the same entry point, kwargs and time limit is left alone, so
    the import hook, the entry point and ``import envs`` can all call this function.

    :return: the ids registered by this call (empty when all were registered already).
    """
    from gymnasium.envs.registration import register, registry

    registered = []
    for env_id, info in ENVIRONMENTS.items():
        existing = registry.get(env_id)
        if (
            existing is not None
            and existing.entry_point == info.entry_point
            and dict(existing.kwargs) == dict(info.kwargs)
            and existing.max_episode_steps == registered_time_limit(info)
        ):
            continue
        register(
            id=env_id,
            entry_point=info.entry_point,
            kwargs=dict(info.kwargs),
            max_episode_steps=registered_time_limit(info),
        )
        registered.append(env_id)
    return registered


# Public names provided lazily (PEP 562) so that `import envs` stays cheap: name -> module.
_LAZY = {
    "TMazeEnv": "envs.tmaze",
    "PassiveTMazeEnv": "envs.passive_tmaze",
    "MemoryLengthEnv": "envs.memory_length",
    "RepeatFirstEnv": "envs.repeat_first",
    "RepeatPreviousEnv": "envs.repeat_previous",
    "CountRecallEnv": "envs.count_recall",
    "MaskVelocityWrapper": "envs.classic_pomdp",
    "make_cartpole_novel": "envs.classic_pomdp",
    "make_pendulum_novel": "envs.classic_pomdp",
    "MiniGridFloatObsWrapper": "envs.minigrid_memory",
    "DiscreteActionSubsetWrapper": "envs.minigrid_memory",
    "make_minigrid_memory": "envs.minigrid_memory",
    "PopGymFlattenWrapper": "envs.popgym_wrapper",
    "make_popgym": "envs.popgym_wrapper",
    "PrevActionRewardWrapper": "envs.wrappers",
    "get_exploration_policy": "envs.scripted",
    "make_optimal_policy": "envs.scripted",
    "ExplorationPolicy": "envs.scripted",
    "ScriptedPolicy": "envs.scripted",
}

__all__ = [
    "ENVIRONMENTS",
    "NAMESPACE",
    "CountRecallEnv",
    "DiscreteActionSubsetWrapper",
    "EnvInfo",
    "ExplorationPolicy",
    "MaskVelocityWrapper",
    "MemoryLengthEnv",
    "MiniGridFloatObsWrapper",
    "PassiveTMazeEnv",
    "PopGymFlattenWrapper",
    "PrevActionRewardWrapper",
    "RepeatFirstEnv",
    "RepeatPreviousEnv",
    "ScriptedPolicy",
    "TMazeEnv",
    "get_exploration_policy",
    "make_cartpole_novel",
    "make_minigrid_memory",
    "make_optimal_policy",
    "make_pendulum_novel",
    "make_popgym",
    "register_envs",
    "registered_time_limit",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from envs.classic_pomdp import MaskVelocityWrapper, make_cartpole_novel, make_pendulum_novel
    from envs.count_recall import CountRecallEnv
    from envs.memory_length import MemoryLengthEnv
    from envs.minigrid_memory import (
        DiscreteActionSubsetWrapper,
        MiniGridFloatObsWrapper,
        make_minigrid_memory,
    )
    from envs.passive_tmaze import PassiveTMazeEnv
    from envs.popgym_wrapper import PopGymFlattenWrapper, make_popgym
    from envs.repeat_first import RepeatFirstEnv
    from envs.repeat_previous import RepeatPreviousEnv
    from envs.scripted import (
        ExplorationPolicy,
        ScriptedPolicy,
        get_exploration_policy,
        make_optimal_policy,
    )
    from envs.tmaze import TMazeEnv
    from envs.wrappers import PrevActionRewardWrapper

register_envs()
