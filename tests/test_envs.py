"""Every registered id: API checkers, reproducible resets, time limits, docstrings, bad arguments."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.envs.registration import load_env_creator
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import ENVIRONMENTS, NAMESPACE

ENV_IDS = list(ENVIRONMENTS)
ENVS_DIR = Path(envs.__file__).parent

# gymnasium's check_env warns whenever it is given a wrapper (it recommends `env.unwrapped`). The
# wrapper-stack ids (NoVel control, MiniGrid) are checked as the stack the user gets, so this one
# warning is expected for them and only for them.
WRAPPED_WARNING = "is different from the unwrapped version"


def _strip_make_wrappers(env: gymnasium.Env) -> gymnasium.Env:
    """The entry point's own environment: remove TimeLimit / OrderEnforcing / PassiveEnvChecker."""
    from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit

    while isinstance(env, TimeLimit | OrderEnforcing | PassiveEnvChecker):
        env = env.env
    return env


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


# ---------------------------------------------------------------------------------------------
# The table and the registry
# ---------------------------------------------------------------------------------------------


def test_table_ids_are_namespaced_and_registered():
    assert len(ENV_IDS) == len(set(ENV_IDS)) > 20
    for env_id, info in ENVIRONMENTS.items():
        assert env_id.startswith(f"{NAMESPACE}/") and env_id.endswith("-v0"), env_id
        spec = gymnasium.spec(env_id)
        assert spec.entry_point == info.entry_point
        assert dict(spec.kwargs) == dict(info.kwargs)
        assert spec.max_episode_steps == envs.registered_time_limit(info)


def test_register_envs_is_idempotent():
    before = dict(gymnasium.registry)
    assert envs.register_envs() == []
    assert envs.register_envs() == []
    assert dict(gymnasium.registry) == before


def test_required_variants_are_registered():
    for length in (10, 50, 100, 250, 500, 1000):
        env_id = (
            "rl_warmup/PassiveTMaze-v0" if length == 10 else f"rl_warmup/PassiveTMaze-L{length}-v0"
        )
        assert ENVIRONMENTS[env_id].kwargs["length"] == length
    for name in (
        "MemoryS7",
        "MemoryS9",
        "MemoryS11",
        "MemoryS13",
        "MemoryS13Random",
        "MemoryS17Random",
    ):
        assert f"rl_warmup/MiniGrid-{name}-v0" in ENVIRONMENTS
    assert ENVIRONMENTS["rl_warmup/TMaze-v0"].max_episode_steps == 3 * 10 - 1


def test_public_names_resolve():
    for name in envs.__all__:
        assert getattr(envs, name) is not None, name
    with pytest.raises(AttributeError):
        _ = envs.does_not_exist


def test_envs_never_imports_rl_warmup():
    offenders = []
    for path in ENVS_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name == "rl_warmup" or name.startswith("rl_warmup.") for name in names):
                offenders.append(f"{path.relative_to(ENVS_DIR)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_docstring_has_the_sections(env_id):
    doc = load_env_creator(ENVIRONMENTS[env_id].entry_point).__doc__ or ""
    for section in (
        "Description",
        "Observation",
        "Actions",
        "Rewards",
        "Termination",
        "Registered configurations",
    ):
        assert f"**{section}.**" in doc, (env_id, section)


# ---------------------------------------------------------------------------------------------
# API checkers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_check_env_without_warnings(env_id):
    info = ENVIRONMENTS[env_id]
    env = gymnasium.make(env_id)
    target = _strip_make_wrappers(env) if info.wrapper_stack else env.unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # render modes of the third-party stacks include "human" (a window): not checked here
        gymnasium_check_env(target, skip_render_check=info.wrapper_stack)
    messages = _messages(caught)
    if info.wrapper_stack:
        assert len(messages) == 1 and WRAPPED_WARNING in messages[0], messages
    else:
        assert messages == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(target, warn=True)
    assert _messages(caught) == []
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_observations_are_flat_float32_boxes(env_id):
    env = gymnasium.make(env_id)
    space = env.observation_space
    assert isinstance(space, gymnasium.spaces.Box) and space.dtype == np.float32
    assert len(space.shape) == 1
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and space.contains(obs)


# ---------------------------------------------------------------------------------------------
# Reproducibility and time limits
# ---------------------------------------------------------------------------------------------


def _rollout(env_id: str, seed: int, n_steps: int) -> list[tuple]:
    env = gymnasium.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    obs, _ = env.reset(seed=seed)
    trace: list[tuple] = [(obs.tobytes(),)]
    for step, action in enumerate(actions):
        obs, reward, terminated, truncated, _ = env.step(action)
        trace.append((step, obs.tobytes(), float(reward), terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()  # continues the seeded generator
            trace.append((obs.tobytes(),))
    env.close()
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_rollout(env_id):
    n_steps = 150
    first = _rollout(env_id, seed=3, n_steps=n_steps)
    assert _rollout(env_id, seed=3, n_steps=n_steps) == first
    assert _rollout(env_id, seed=4, n_steps=n_steps) != first


_FIXED_LENGTH = (
    "PassiveTMaze",
    "MemoryLength",
    "MemoryChain",
    "RepeatFirst",
    "RepeatPrevious",
    "CountRecall",
)


def _check_horizon(env: gymnasium.Env, env_id: str, limit: int) -> None:
    """Episodes under the exploration policy end by ``limit``, and never truncated earlier."""
    policy = envs.get_exploration_policy(env_id, env.action_space)
    rng = np.random.default_rng(0)
    reached_limit = False
    for episode in range(3):
        obs, _ = env.reset(seed=episode)
        t = 0
        terminated = truncated = False
        while not (terminated or truncated) and t <= limit:
            obs, _, terminated, truncated, _ = env.step(policy(obs[None], rng)[0])
            t += 1
        assert terminated or truncated, f"episode not over after the time limit {limit}"
        assert t <= limit
        if t == limit:
            reached_limit = True
        elif truncated:
            raise AssertionError(f"truncated at {t} < {limit}")
    if any(name in env_id for name in _FIXED_LENGTH):
        assert reached_limit  # these episodes always last exactly the time limit


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_respects_time_limit(env_id):
    info = ENVIRONMENTS[env_id]
    env = gymnasium.make(env_id)
    limit = info.max_episode_steps
    assert limit is not None
    if info.env_truncates:  # the env's own horizon must agree with the table
        assert env.unwrapped.max_steps == limit
    _check_horizon(env, env_id, limit)


def _horizon_kwargs(env_id: str) -> dict[str, int]:
    """Kwargs that change the horizon of ``env_id`` (doubling its length or growing its grid)."""
    kwargs = ENVIRONMENTS[env_id].kwargs
    for key in ("length", "memory_length"):
        if key in kwargs:
            return {key: 2 * kwargs[key] + 3}
    if "Memory" in env_id:
        return {"size": 19}
    if "RedBlueDoors" in env_id:
        return {"size": 10}
    return {}


@pytest.mark.parametrize("env_id", [i for i in ENV_IDS if _horizon_kwargs(i)])
def test_time_limit_follows_the_kwargs(env_id):
    """The Minigrid way: ``gymnasium.make(id, length=...)`` gets the new length's horizon, not
    the time limit registered for the default (which ended episodes before the junction)."""
    info = ENVIRONMENTS[env_id]
    assert info.env_truncates
    env = gymnasium.make(env_id, **_horizon_kwargs(env_id))
    limit = env.unwrapped.max_steps
    assert limit > info.max_episode_steps
    _check_horizon(env, env_id, limit)


@pytest.mark.parametrize(
    "env_id, kwargs, steps",
    [
        ("rl_warmup/PassiveTMaze-v0", {"length": 50}, 51),
        ("rl_warmup/TMaze-v0", {"length": 50}, 149),
        ("rl_warmup/MemoryLength-v0", {"memory_length": 50}, 51),
        ("rl_warmup/RepeatFirst-v0", {"length": 200}, 200),
        ("rl_warmup/TMaze-v0", {"length": 50, "max_steps": 60}, 60),
    ],
)
def test_reported_time_limits(env_id, kwargs, steps):
    env = gymnasium.make(env_id, **kwargs)
    env.reset(seed=0)
    for t in range(1, steps + 1):
        _, _, terminated, truncated, _ = env.step(2 if env_id == "rl_warmup/TMaze-v0" else 0)
        assert (terminated or truncated) == (t == steps), t
    # a limit given to gymnasium.make still applies on top
    env = gymnasium.make(env_id, max_episode_steps=5, **kwargs)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(5)][-1]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_non_integer_actions_are_refused(env_id):
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    if not ENVIRONMENTS[env_id].env_truncates:
        pytest.skip("gymnasium's own CartPole / Pendulum check their actions (AssertionError)")
    with pytest.raises(ValueError, match="action must be an integer"):
        env.step(1.5)
    with pytest.raises(ValueError, match="action must be an integer"):
        env.step(env.action_space.n)
    env.step(np.int64(1))
    env.step(np.array(0))


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("rl_warmup/TMaze-v0", {"length": 10**12}),
        ("rl_warmup/PassiveTMaze-v0", {"length": 10**9}),
        ("rl_warmup/RepeatFirst-v0", {"num_values": 10**12}),
        ("rl_warmup/MemoryLength-v0", {"memory_length": 10**12}),
    ],
)
def test_huge_sizes_are_refused_clearly(env_id, kwargs):
    with pytest.raises(ValueError, match="must be <= 1000000"):
        gymnasium.make(env_id, **kwargs)


def test_tmaze_is_truncated_at_3l_minus_1():
    env = gymnasium.make("rl_warmup/TMaze-v0")
    env.reset(seed=0)
    for t in range(1, 30):
        _, reward, terminated, truncated, info = env.step(2)  # left forever: bumps at x = 0
        assert reward == pytest.approx(-0.1) and not terminated and info["is_success"] is False
        assert truncated == (t == 29)


def test_sync_vector_env_runs_every_id_family():
    for env_id in (
        "rl_warmup/TMaze-v0",
        "rl_warmup/CountRecall-v0",
        "rl_warmup/MiniGrid-MemoryS7-v0",
    ):
        vec = gymnasium.vector.SyncVectorEnv([lambda env_id=env_id: gymnasium.make(env_id)] * 8)
        policy = envs.get_exploration_policy(env_id, vec.single_action_space)
        rng = np.random.default_rng(0)
        obs, _ = vec.reset(seed=0)
        for _ in range(20):
            obs, reward, _, _, _ = vec.step(policy(obs, rng))
            assert obs.shape == (8, *vec.single_observation_space.shape) and reward.shape == (8,)
        vec.close()


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    ("envs.tmaze:TMazeEnv", {"length": 0}),
    ("envs.tmaze:TMazeEnv", {"length": -3}),
    ("envs.tmaze:TMazeEnv", {"length": 2.5}),
    ("envs.tmaze:TMazeEnv", {"length": True}),
    ("envs.tmaze:TMazeEnv", {"stochasticity": -0.1}),
    ("envs.tmaze:TMazeEnv", {"stochasticity": 1.5}),
    ("envs.tmaze:TMazeEnv", {"stochasticity": "0.2"}),
    ("envs.tmaze:TMazeEnv", {"render_mode": "human"}),
    ("envs.passive_tmaze:PassiveTMazeEnv", {"length": 0}),
    ("envs.memory_length:MemoryLengthEnv", {"memory_length": 0}),
    ("envs.memory_length:MemoryLengthEnv", {"num_bits": 0}),
    ("envs.repeat_first:RepeatFirstEnv", {"length": 1}),
    ("envs.repeat_first:RepeatFirstEnv", {"num_values": 1}),
    ("envs.repeat_previous:RepeatPreviousEnv", {"length": 4, "k": 4}),
    ("envs.repeat_previous:RepeatPreviousEnv", {"k": 0}),
    ("envs.count_recall:CountRecallEnv", {"length": 0}),
    ("envs.count_recall:CountRecallEnv", {"num_values": 1}),
    ("envs.minigrid_memory:make_minigrid_memory", {"minigrid_id": "MiniGrid-NoSuchThing-v0"}),
    ("envs.minigrid_memory:make_minigrid_memory", {"minigrid_id": "CartPole-v1"}),
    ("envs.minigrid_memory:make_minigrid_memory", {"actions": (0, 0)}),
    ("envs.minigrid_memory:make_minigrid_memory", {"actions": (0, 9)}),
]


@pytest.mark.parametrize(("entry_point", "kwargs"), BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error(entry_point, kwargs):
    with pytest.raises(ValueError, match=r"must|unknown|not a MiniGrid"):
        load_env_creator(entry_point)(**kwargs)


def test_bad_arguments_through_make():
    with pytest.raises(ValueError, match="length must be >= 1"):
        gymnasium.make("rl_warmup/TMaze-v0", length=0)
    with pytest.raises(ValueError, match=r"stochasticity must be in \[0, 1\]"):
        gymnasium.make("rl_warmup/TMaze-v0", stochasticity=2.0)


@pytest.mark.parametrize(
    "env_id", [i for i, info in ENVIRONMENTS.items() if not info.wrapper_stack]
)
def test_bad_actions_and_options_raise_value_error(env_id):
    env = gymnasium.make(env_id).unwrapped
    env.reset(seed=0)
    n = int(env.action_space.n)
    for action in (-1, n):
        with pytest.raises(ValueError, match="action must"):
            env.step(action)


def test_bad_reset_options_raise_value_error():
    with pytest.raises(ValueError, match="goal"):
        envs.TMazeEnv().reset(options={"goal": "left"})
    with pytest.raises(ValueError, match="goal"):
        envs.PassiveTMazeEnv().reset(options={"goal": 1})
    with pytest.raises(ValueError, match="context"):
        envs.MemoryLengthEnv(num_bits=2).reset(options={"context": [1, 0]})
    with pytest.raises(ValueError, match="query"):
        envs.MemoryLengthEnv(num_bits=2).reset(options={"query": 2})


def test_modules_import_without_optional_packages():
    for module in (
        "envs.popgym_wrapper",
        "envs.minigrid_memory",
        "envs.classic_pomdp",
        "envs.gymnasium_plugin",
    ):
        importlib.import_module(module)


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


def test_benchmark_measures_three_ways():
    from envs.benchmark import benchmark

    result = benchmark("rl_warmup/MiniGrid-MemoryS7-v0", n_steps=64, n_vec=4, repeats=1)
    assert result.env_id == "rl_warmup/MiniGrid-MemoryS7-v0"
    assert min(result.bare, result.made, result.vector) > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id",
    ["rl_warmup/TMaze-v0", "rl_warmup/TMazeStochastic-v0", "rl_warmup/PassiveTMaze-L100-v0"],
)
def test_tmaze_family_steps_at_least_100k_per_second(env_id):
    from envs.benchmark import benchmark

    result = benchmark(env_id, n_steps=100_000, n_vec=8, repeats=3)
    assert result.bare >= 100_000, result
