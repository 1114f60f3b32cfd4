"""Wrappers (previous action/reward, velocity masking, MiniGrid, POPGym) and exploration policies."""

from __future__ import annotations

import pickle
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.scripted import MINIGRID_FORWARD_PROBABILITIES, TMAZE_ACTION_PROBABILITIES

# ---------------------------------------------------------------------------------------------
# PrevActionRewardWrapper
# ---------------------------------------------------------------------------------------------


def test_prev_action_reward_on_tmaze():
    env = envs.PrevActionRewardWrapper(gymnasium.make("rl_warmup/TMaze-v0", length=2))
    assert env.observation_space.shape == (4 + 4 + 1,)
    obs, _ = env.reset(seed=0, options={"goal": "up"})
    np.testing.assert_array_equal(obs, [1, 0, 0, 0, 0, 0, 0, 0, 0])
    obs, reward, *_ = env.step(2)  # left: bump
    np.testing.assert_allclose(obs, [1, 0, 0, 0, 0, 0, 1, 0, -0.1], rtol=1e-6)
    obs, reward, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 0, 1, 0, 1, 0, 0, 0, 0])
    env.step(0)
    obs, reward, terminated, *_ = env.step(1)  # up: correct goal
    np.testing.assert_array_equal(obs, [0, 0, 0, 1, 0, 1, 0, 0, 4])
    assert terminated and reward == 4.0
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[4:], 0.0)
    assert obs.dtype == np.float32


def test_prev_action_reward_passes_sb3_checker_and_box_actions():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(envs.PrevActionRewardWrapper(gymnasium.make("rl_warmup/MemoryChain-v0")))
        sb3_check_env(envs.PrevActionRewardWrapper(gymnasium.make("rl_warmup/PendulumNoVel-v0")))
    assert [str(w.message) for w in caught] == []
    env = envs.PrevActionRewardWrapper(
        gymnasium.make("rl_warmup/PendulumNoVel-v0"), reward_scale=0.5
    )
    env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.25], dtype=np.float32))
    assert obs.shape == (2 + 1 + 1,)
    assert obs[2] == pytest.approx(0.25) and obs[3] == pytest.approx(0.5 * reward)


def _image_only() -> gymnasium.Env:
    """An environment with a 3-D Box observation."""

    class Image(gymnasium.Env):
        observation_space = spaces.Box(0, 255, (4, 4, 3), np.uint8)
        action_space = spaces.Discrete(2)

    return Image()


def test_prev_action_reward_multidiscrete_and_errors():
    class Toy(gymnasium.Env):
        observation_space = spaces.Box(0, 1, (2,), np.float32)
        action_space = spaces.MultiDiscrete([2, 3], start=[1, 0])

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.ones(2, np.float32), 1.0, False, False, {}

    env = envs.PrevActionRewardWrapper(Toy())
    env.reset()
    obs, *_ = env.step(np.array([2, 1]))
    np.testing.assert_array_equal(obs, [1, 1, 0, 1, 0, 1, 0, 1])
    import minigrid  # noqa: F401  (registers MiniGrid's ids)

    # a Dict observation (MiniGrid's) gets two more keys instead; other spaces are refused
    wrapped = envs.PrevActionRewardWrapper(gymnasium.make("MiniGrid-MemoryS7-v0"))
    assert {"prev_action", "prev_reward"} <= set(wrapped.observation_space.spaces)
    obs, _ = wrapped.reset(seed=0)
    assert wrapped.observation_space.contains(obs) and not obs["prev_action"].any()
    obs, reward, *_ = wrapped.step(2)
    assert obs["prev_action"][2] == 1.0 and obs["prev_reward"][0] == reward
    with pytest.raises(ValueError, match="1-D Box or a Dict observation"):
        envs.PrevActionRewardWrapper(_image_only())


# ---------------------------------------------------------------------------------------------
# Velocity masking
# ---------------------------------------------------------------------------------------------


def test_mask_velocity_wrapper_masks_or_removes():
    from gymnasium.envs.classic_control import CartPoleEnv

    masked = envs.MaskVelocityWrapper(CartPoleEnv())
    full, _ = masked.env.reset(seed=1)
    obs, _ = masked.reset(seed=1)
    np.testing.assert_allclose(obs, [full[0], 0.0, full[2], 0.0])
    assert masked.observation_space.shape == (4,)
    removed = gymnasium.make("rl_warmup/CartPoleNoVel-v0")
    obs, _ = removed.reset(seed=1)
    np.testing.assert_allclose(obs, [full[0], full[2]])
    assert np.all(np.isfinite(removed.observation_space.high))
    pendulum = gymnasium.make("rl_warmup/PendulumNoVel-v0")
    assert pendulum.observation_space.shape == (2,)
    assert pendulum.action_space == spaces.Box(-1.0, 1.0, (1,), np.float32)
    zoo = gymnasium.make("rl_warmup/PendulumNoVel-v0", remove=False)
    assert zoo.reset(seed=0)[0][2] == 0.0


def test_mask_velocity_wrapper_errors():
    with pytest.raises(ValueError, match="no known velocity indices"):
        envs.MaskVelocityWrapper(envs.TMazeEnv())
    with pytest.raises(ValueError, match="velocity_indices"):
        envs.MaskVelocityWrapper(envs.TMazeEnv(), velocity_indices=[7])


# ---------------------------------------------------------------------------------------------
# MiniGrid
# ---------------------------------------------------------------------------------------------


def test_minigrid_stack_obs_and_actions():
    env = gymnasium.make("rl_warmup/MiniGrid-MemoryS7-v0")
    obs, _ = env.reset(seed=0)
    assert (
        obs.shape == (7 * 7 * 3,) and obs.dtype == np.float32 and 0 <= obs.min() <= obs.max() <= 1
    )
    assert env.action_space == spaces.Discrete(3)
    image = env.unwrapped.gen_obs()["image"]
    np.testing.assert_allclose(obs.reshape(7, 7, 3) * [10, 5, 2], image, atol=1e-5)
    one_hot = gymnasium.make("rl_warmup/MiniGrid-MemoryS7-v0", one_hot=True)
    obs, _ = one_hot.reset(seed=0)
    assert obs.shape == (7 * 7 * 20,)
    cells = obs.reshape(49, 20)
    np.testing.assert_array_equal(cells.sum(axis=1), 3.0)
    np.testing.assert_array_equal(cells[:, :11].argmax(1), image.reshape(49, 3)[:, 0])
    doors = gymnasium.make("rl_warmup/MiniGrid-RedBlueDoors-6x6-v0")
    assert doors.action_space == spaces.Discrete(4)
    assert doors.unwrapped.max_steps == 20 * 6 * 6


def test_discrete_action_subset_maps_actions():
    env = envs.DiscreteActionSubsetWrapper(envs.TMazeEnv(length=3), actions=(0, 2))
    env.reset(seed=0)
    assert env.action(1) == 2
    with pytest.raises(ValueError, match="action must be"):
        env.step(2)
    with pytest.raises(ValueError, match="Discrete action space"):
        envs.DiscreteActionSubsetWrapper(gymnasium.make("rl_warmup/PendulumNoVel-v0"), (0,))


# ---------------------------------------------------------------------------------------------
# POPGym
# ---------------------------------------------------------------------------------------------


class _TupleEnv(gymnasium.Env):
    """A stand-in with POPGym's awkward spaces (always tested, popgym or not)."""

    observation_space = spaces.Tuple((spaces.Discrete(3), spaces.MultiDiscrete([2, 4])))
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return (1, np.array([1, 3])), {}

    def step(self, action):
        return (2, np.array([0, 0])), 0.0, False, False, {}


def test_flatten_wrapper_one_hots_tuples_and_multidiscrete():
    env = envs.PopGymFlattenWrapper(_TupleEnv())
    assert env.observation_space == spaces.Box(0.0, 1.0, (3 + 2 + 4,), np.float32)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 1, 0, 0, 0, 1])
    assert obs.dtype == np.float32
    obs, *_ = env.step(0)
    np.testing.assert_array_equal(obs, [0, 0, 1, 1, 0, 1, 0, 0, 0])


POPGYM_IDS = [
    "popgym-RepeatPreviousEasy-v0",
    "popgym-CountRecallEasy-v0",
    "popgym-AutoencodeEasy-v0",
]


@pytest.mark.parametrize("env_id", POPGYM_IDS)
def test_popgym_envs_become_float_boxes(env_id):
    pytest.importorskip(
        "popgym", reason="popgym is an optional extra: pip install 'rl-warmup[popgym]'"
    )
    env = envs.make_popgym(env_id)
    assert (
        isinstance(env.observation_space, spaces.Box) and env.observation_space.dtype == np.float32
    )
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, _, _, _, info_1 = env.step(env.action_space.sample())
    _, _, _, _, info_2 = env.step(env.action_space.sample())
    assert info_1 is not info and info_2 is not info_1  # Monitor writes into infos
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env)
    assert not [w for w in caught if "MultiDiscrete" in str(w.message) or "Tuple" in str(w.message)]


def test_recurrent_ppo_learns_a_few_steps_on_popgym_multidiscrete():
    pytest.importorskip(
        "popgym", reason="popgym is an optional extra: pip install 'rl-warmup[popgym]'"
    )
    from sb3_contrib import RecurrentPPO

    env = envs.make_popgym("popgym-CountRecallEasy-v0")
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(total_timesteps=32)


def test_make_popgym_without_popgym_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "popgym", None)  # makes `import popgym` raise ImportError
    with pytest.raises(ImportError, match=r"rl-warmup\[popgym\]"):
        envs.make_popgym("popgym-RepeatPreviousEasy-v0")


# ---------------------------------------------------------------------------------------------
# RecurrentPPO takes the observations directly
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id", ["rl_warmup/TMaze-v0", "rl_warmup/CountRecall-v0", "rl_warmup/MiniGrid-MemoryS7-v0"]
)
def test_recurrent_ppo_mlp_lstm_runs(env_id):
    from sb3_contrib import RecurrentPPO

    env = gymnasium.make(env_id)
    if env_id.endswith("TMaze-v0"):
        env = envs.PrevActionRewardWrapper(env)
    model = RecurrentPPO(
        "MlpLstmPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu"
    )
    model.learn(total_timesteps=32)


# ---------------------------------------------------------------------------------------------
# Exploration policies
# ---------------------------------------------------------------------------------------------


def test_tmaze_exploration_policy_is_the_papers():
    for env_id in (
        "rl_warmup/TMaze-v0",
        "rl_warmup/TMazeStochastic-L50-v0",
        "envs:rl_warmup/TMaze-v0",
    ):
        policy = envs.get_exploration_policy(env_id, spaces.Discrete(4))
        np.testing.assert_allclose(policy.probabilities, TMAZE_ACTION_PROBABILITIES)
    actions = policy(np.zeros((60_000, 4), np.float32), np.random.default_rng(0))
    assert actions.shape == (60_000,) and np.issubdtype(actions.dtype, np.integer)
    frequencies = np.bincount(actions, minlength=4) / actions.size
    np.testing.assert_allclose(frequencies, TMAZE_ACTION_PROBABILITIES, atol=0.01)
    again = policy(np.zeros((60_000, 4), np.float32), np.random.default_rng(0))
    np.testing.assert_array_equal(actions, again)  # randomness only from the given generator
    assert (
        pickle.loads(pickle.dumps(policy)).probabilities.tolist() == policy.probabilities.tolist()
    )


def test_minigrid_memory_exploration_goes_forward():
    policy = envs.get_exploration_policy("rl_warmup/MiniGrid-MemoryS9-v0", spaces.Discrete(3))
    np.testing.assert_allclose(policy.probabilities, MINIGRID_FORWARD_PROBABILITIES)
    uniform = envs.get_exploration_policy(
        "rl_warmup/MiniGrid-RedBlueDoors-6x6-v0", spaces.Discrete(4)
    )
    assert isinstance(uniform, envs.scripted.UniformPolicy)


@pytest.mark.parametrize(
    "space",
    [
        spaces.Discrete(5, start=2),
        spaces.Box(-1.0, 1.0, (1,), np.float32),
        spaces.Box(
            np.array([-np.inf, 0.0, -1.0]), np.array([np.inf, np.inf, 3.0]), dtype=np.float64
        ),
        spaces.MultiDiscrete([3, 4], start=[1, 0]),
        spaces.MultiBinary(3),
    ],
)
def test_uniform_exploration_policy_stays_in_space(space):
    policy = envs.get_exploration_policy("CartPole-v1", space)
    actions = policy(np.zeros((500, 2)), np.random.default_rng(1))
    assert actions.shape == (500, *space.shape)
    assert all(space.contains(np.asarray(a, dtype=space.dtype)) for a in actions)
    np.testing.assert_array_equal(actions, policy(np.zeros((500, 2)), np.random.default_rng(1)))


def test_exploration_policy_checks_the_action_space():
    with pytest.raises(ValueError, match=r"needs Discrete\(4\)"):
        envs.get_exploration_policy("rl_warmup/TMaze-v0", spaces.Discrete(3))
    with pytest.raises(ValueError, match="no uniform exploration policy"):
        envs.get_exploration_policy(
            "rl_warmup/CartPoleNoVel-v0", spaces.Tuple((spaces.Discrete(2),))
        )


def test_exploration_reaches_the_tmaze_junction_better_than_uniform():
    """Why the paper's policy: it reaches a goal in a 3L - 1 step budget far more often."""
    rng = np.random.default_rng(0)

    def success_rate(policy) -> float:
        env = gymnasium.make("rl_warmup/TMaze-L25-v0")
        reached = 0
        for episode in range(100):
            obs, _ = env.reset(seed=episode)
            while True:
                obs, _, terminated, truncated, _ = env.step(policy(obs[None], rng)[0])
                if terminated or truncated:
                    reached += terminated
                    break
        return reached / 100

    paper = success_rate(envs.get_exploration_policy("rl_warmup/TMaze-L25-v0", spaces.Discrete(4)))
    uniform = success_rate(envs.scripted.UniformPolicy(spaces.Discrete(4)))
    assert paper > 0.3 and uniform < 0.05
