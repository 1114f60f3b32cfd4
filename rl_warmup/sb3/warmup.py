"""Warmup of a ``RecurrentPPO`` model's recurrent policy, as a function and as a callback."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from torch import Tensor

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.sb3.rollouts import ActionPolicy, as_vec_env, collect_episodes, policy_features
from rl_warmup.warmup import WarmupConfig, WarmupResult, warmup


def recurrent_networks(policy: Any) -> dict[str, RecurrentNetwork]:
    """The recurrent networks of a recurrent SB3 policy, by role (``"actor"``, ``"critic"``).

    Stock sb3-contrib policies hold ``nn.LSTM`` modules; they are viewed as
    :class:`RecurrentNetwork` sharing their parameters (each layer its own system). The
    package's :class:`~rl_warmup.sb3.policies.RecurrentCellPolicy` exposes ``rnn_actor`` and
    ``rnn_critic``. The critic is absent with ``shared_lstm=True`` or ``enable_critic_lstm=False``.
    """
    if not isinstance(policy, RecurrentActorCriticPolicy):
        raise TypeError(
            f"warmup needs a recurrent policy (sb3-contrib RecurrentPPO), got {type(policy).__name__}; "
            "a feed-forward model such as PPO has no recurrent network to warm up"
        )
    nets: dict[str, RecurrentNetwork] = {}
    if hasattr(policy, "rnn_actor"):
        nets["actor"] = policy.rnn_actor
        if getattr(policy, "rnn_critic", None) is not None:
            nets["critic"] = policy.rnn_critic
        return nets
    nets["actor"] = RecurrentNetwork.from_torch(policy.lstm_actor)
    if policy.lstm_critic is not None:
        nets["critic"] = RecurrentNetwork.from_torch(policy.lstm_critic)
    return nets


def _check_model(model: Any) -> RecurrentActorCriticPolicy:
    if not isinstance(model, BaseAlgorithm):
        raise TypeError(f"expected a stable-baselines3 model (RecurrentPPO), got {type(model).__name__}")
    recurrent_networks(model.policy)  # raises a clear TypeError for non-recurrent policies
    return model.policy  # type: ignore[return-value]


def _model_env(model: BaseAlgorithm, env: VecEnv | gym.Env | str | None) -> tuple[VecEnv | gym.Env, bool]:
    """The env to collect from, and whether it is the model's own training env."""
    if env is None:
        own = model.get_env()
        if own is None:
            raise ValueError("the model has no environment: pass env=... to collect warmup rollouts")
        return own, True
    if isinstance(env, str):
        env = as_vec_env(env)
    space = env.observation_space
    if space != model.observation_space:
        raise ValueError(
            f"the environment's observation space {space} differs from the model's {model.observation_space}"
        )
    return env, False


def _restart_model_env(model: BaseAlgorithm) -> None:
    """After collecting on the training env, start fresh episodes for training."""
    env = model.get_env()
    assert env is not None
    model._last_obs = env.reset()  # type: ignore[assignment]
    model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)
    states = getattr(model, "_last_lstm_states", None)
    if states is not None:
        model._last_lstm_states = type(states)(
            tuple(torch.zeros_like(s) for s in states.pi), tuple(torch.zeros_like(s) for s in states.vf)
        )


def collect_policy_sequences(
    model: BaseAlgorithm,
    env: VecEnv | gym.Env | str | None = None,
    *,
    n_episodes: int | None = 64,
    n_steps: int | None = None,
    policy: str | ActionPolicy = "auto",
    seed: int = 0,
    max_length: int | None = None,
) -> dict[str, list[Tensor]]:
    """Random-policy episodes turned into the inputs of the actor's and critic's recurrent modules.

    With ``env=None`` the model's own env is used (so observations are exactly what the policy
    sees, ``VecNormalize`` included) and then reset for training.

    :return: ``{"actor": [...], "critic": [...]}`` lists of ``(T_i, features_dim)`` tensors.
    """
    policy_obj = _check_model(model)
    source, own = _model_env(model, env)
    episodes = collect_episodes(
        source, n_episodes, n_steps, policy=policy, seed=seed, max_length=max_length
    )
    if own:
        _restart_model_env(model)
    actor, critic = policy_features(policy_obj, episodes.observations)
    return {"actor": actor, "critic": critic}


def warmup_recurrent_ppo(
    model: BaseAlgorithm,
    env: VecEnv | gym.Env | str | None = None,
    config: WarmupConfig | None = None,
    *,
    sequences: dict[str, list[Tensor]] | None = None,
    n_episodes: int | None = 64,
    n_steps: int | None = None,
    policy: str | ActionPolicy = "auto",
    max_length: int | None = None,
    progress: bool = False,
) -> dict[str, WarmupResult]:
    """Warm up the recurrent networks of a ``RecurrentPPO`` model in place.

    The actor's network and, when it has its own, the critic's are warmed separately (seeds
    ``config.seed`` and ``config.seed + 1``), each layer as its own system, on the features of
    random-policy episodes. Only recurrent parameters change (for double layers, only the
    first halves). The policy optimizer's state for those parameters is dropped, so no Adam
    moments computed before warmup survive it.

    :param env: where to collect episodes; the model's env when ``None``.
    :param config: warmup settings (paper defaults when ``None``); a dict of
        :class:`~rl_warmup.warmup.WarmupConfig` fields is turned into one (and validated) here.
    :param sequences: precomputed inputs (see :func:`collect_policy_sequences`); no collection then.
    :param n_episodes: rollout budget in episodes.
    :param n_steps: rollout budget in environment steps.
    :param policy: ``"auto"``, ``"uniform"``, ``"exploration"`` or ``policy(obs, rng) -> actions``.
    :param max_length: cut longer episodes into windows of this many steps.
    :return: the warmup result per network (``"actor"``, ``"critic"``).
    """
    policy_obj = _check_model(model)
    config = config or WarmupConfig()
    if sequences is None:
        seed = config.seed if config.seed is not None else 0
        sequences = collect_policy_sequences(
            model, env, n_episodes=n_episodes, n_steps=n_steps, policy=policy, seed=seed, max_length=max_length
        )
    nets = recurrent_networks(policy_obj)
    results: dict[str, WarmupResult] = {}
    for i, (role, net) in enumerate(nets.items()):
        seqs = sequences.get(role)
        if not seqs:
            raise ValueError(f"no input sequences for the {role}'s recurrent network")
        role_config = config if config.seed is None else dataclasses.replace(config, seed=config.seed + i)
        results[role] = warmup(net, seqs, role_config, progress=progress)
        _forget_optimizer_state(policy_obj, net)
    return results


def _forget_optimizer_state(policy: Any, net: RecurrentNetwork) -> None:
    optimizer = getattr(policy, "optimizer", None)
    if optimizer is None:
        return
    for p in net.parameters():
        optimizer.state.pop(p, None)


class WarmupCallback(BaseCallback):
    """Warm up the model's recurrent policy when training starts.

    Usage: ``model.learn(n, callback=[WarmupCallback(), VAALoggerCallback()])``. Runs once, and
    only on a model that has not trained yet (a resumed run is not warmed again). The per-layer
    VAA* after warmup and the number of restarts are recorded under ``warmup/...``.

    :param config: warmup settings (paper defaults when ``None``); a dict of
        :class:`~rl_warmup.warmup.WarmupConfig` fields is turned into one (and validated) here.
    :param env: where to collect random-policy episodes; the model's env when ``None``.
    :param n_episodes: rollout budget in episodes.
    :param n_steps: rollout budget in environment steps.
    :param policy: rollout policy, see :func:`warmup_recurrent_ppo`.
    :param max_length: cut longer episodes into windows of this many steps.
    :param progress: show a progress bar during warmup.
    """

    def __init__(
        self,
        config: WarmupConfig | Mapping[str, Any] | None = None,
        env: VecEnv | gym.Env | str | None = None,
        *,
        n_episodes: int | None = 64,
        n_steps: int | None = None,
        policy: str | ActionPolicy = "auto",
        max_length: int | None = None,
        progress: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if n_episodes is None and n_steps is None:
            raise ValueError("give a rollout budget: n_episodes, n_steps, or both")
        if isinstance(config, Mapping):
            config = WarmupConfig(**config)  # a plain dict of settings, validated now
        elif config is not None and not isinstance(config, WarmupConfig):
            raise TypeError(f"config must be a WarmupConfig (or a dict of its fields), got {type(config).__name__}")
        self.config = config or WarmupConfig()
        self.env = env
        self.n_episodes = n_episodes
        self.n_steps = n_steps
        self.policy = policy
        self.max_length = max_length
        self.progress = progress
        self.results: dict[str, WarmupResult] | None = None

    def _on_training_start(self) -> None:
        if self.results is not None or self.model.num_timesteps > 0:
            return
        self.results = warmup_recurrent_ppo(
            self.model,
            self.env,
            self.config,
            n_episodes=self.n_episodes,
            n_steps=self.n_steps,
            policy=self.policy,
            max_length=self.max_length,
            progress=self.progress,
        )
        for role, res in self.results.items():
            for layer, value in enumerate(res.final_vaa_star):
                self.logger.record(f"warmup/{role}_vaa_star_l{layer}", value)
            self.logger.record(f"warmup/{role}_restarts", res.restarts)
            self.logger.record(f"warmup/{role}_collapsed", float(bool(res.collapsed_layers)))
            if res.vaa is not None:
                self.logger.record(f"warmup/{role}_vaa", res.vaa.vaa)
                self.logger.record(f"warmup/{role}_movement", res.vaa.movement)
                horizon = res.vaa.horizon
                self.logger.record(f"warmup/{role}_horizon", float(horizon) if horizon is not None else math.inf)
            if self.verbose >= 1:
                stars = " ".join(f"{v:.3f}" for v in res.final_vaa_star)
                exact = "" if res.vaa is None else f", exact VAA {res.vaa.vaa:.3f} (horizon {res.vaa.horizon})"
                print(f"Warmup of the {role}: VAA* per layer {stars}{exact}, {res.restarts} restart(s)")

    def _on_step(self) -> bool:
        return True
