"""A callback that measures the multistability (VAA, VAA*) of a recurrent policy during training."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from torch import Tensor

from rl_warmup.sb3.rollouts import ActionPolicy, episodes_from_buffer, policy_features
from rl_warmup.sb3.warmup import collect_policy_sequences, recurrent_networks
from rl_warmup.vaa import DEFAULT_CHECKPOINTS, VIEWS, measure_vaa, measure_vaa_star


class VAALoggerCallback(BaseCallback):
    """Every ``every_n_rollouts`` rollouts, record the exact VAA and per-layer VAA* of the
    actor's (and critic's) recurrent network through ``self.logger``, so they reach stdout, CSV
    and TensorBoard like any SB3 metric.

    Keys: ``vaa/actor``, ``vaa/critic`` (the exact VAA after ``settle_steps``),
    ``vaa/actor_nonfinite`` (states that diverged while settling), ``vaa/actor_movement`` (largest
    per-step change of a state at the end: 0 when all have settled), ``vaa/actor_moving`` (states
    still moving by more than ``epsilon`` per step), ``vaa/actor_horizon`` (memory horizon: the
    first checkpoint at which the VAA fell below half its value at the first one; ``inf`` when it
    never did), ``vaa/actor_M100`` … (the VAA at each checkpoint), ``vaa_star/actor_l0`` … per
    layer, and ``vaa/seconds`` (cost of the measure).

    :param every_n_rollouts: measure after every this many rollouts (and at the first one).
    :param source: ``"fixed"``: a fixed set of random-policy episodes collected when training
        starts; ``"rollout"``: the latest rollout buffer, cut at episode starts.
    :param n: number of initial states of the measures.
    :param settle_steps: settling length of the exact VAA.
    :param checkpoints: shorter settling lengths measured in the same pass (the curve VAA(M) and
        its horizon, at almost no extra cost); those above ``settle_steps`` are dropped.
    :param view: part of the state the exact VAA compares: ``"output"`` (each layer's ``h``) or
        ``"state"`` (``h`` and ``c`` for LSTMs, the paper's); see :data:`rl_warmup.vaa.VIEWS`.
    :param star_settle_steps: settling length of VAA* (0 to skip VAA*).
    :param epsilon: attractor tolerance.
    :param n_episodes: episodes of the fixed set.
    :param env: where to collect the fixed set (the model's env when ``None``).
    :param policy: rollout policy of the fixed set (see ``collect_episodes``).
    :param seed: seed of the fixed set and of the measures (same draws at every measure).
    :param max_overhead: bound on the callback's share of the training wall time. A due measure
        is postponed (to the next rollout end, and so on) while the time already spent plus the
        cost of the previous measure exceeds this fraction of the time since training started;
        ``None`` measures exactly every ``every_n_rollouts`` rollouts. With a fast training loop
        one exact VAA (``settle_steps`` cell steps) can cost as much as ten rollouts.
    """

    def __init__(
        self,
        every_n_rollouts: int = 10,
        *,
        source: str = "fixed",
        n: int = 100,
        settle_steps: int = 10_000,
        checkpoints: Sequence[int] | None = DEFAULT_CHECKPOINTS,
        view: str = "output",
        star_settle_steps: int = 200,
        epsilon: float = 1e-4,
        n_episodes: int = 64,
        env: VecEnv | gym.Env | str | None = None,
        policy: str | ActionPolicy = "auto",
        seed: int = 0,
        max_overhead: float | None = 0.05,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if every_n_rollouts < 1:
            raise ValueError(f"every_n_rollouts must be >= 1, got {every_n_rollouts}")
        if source not in ("fixed", "rollout"):
            raise ValueError(f"source must be 'fixed' or 'rollout', got {source!r}")
        if n < 2 or settle_steps < 1 or star_settle_steps < 0:
            raise ValueError("need n >= 2, settle_steps >= 1 and star_settle_steps >= 0")
        if max_overhead is not None and not 0 < max_overhead <= 1:
            raise ValueError(f"max_overhead must lie in (0, 1] or be None, got {max_overhead}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        self.checkpoints = tuple(sorted({int(m) for m in (checkpoints or ()) if 1 <= int(m) <= settle_steps}))
        self.view = view
        self.every_n_rollouts = every_n_rollouts
        self.source = source
        self.n = n
        self.settle_steps = settle_steps
        self.star_settle_steps = star_settle_steps
        self.epsilon = epsilon
        self.n_episodes = n_episodes
        self.env = env
        self.policy = policy
        self.seed = seed
        self.max_overhead = max_overhead
        self.sequences: dict[str, list[Tensor]] | None = None
        self.n_rollouts = 0
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0
        """Seconds spent by the callback in all (collection of the fixed set and measures)."""
        self.postponed = 0
        """Rollout ends at which a due measure was postponed by ``max_overhead``."""
        self._pending = False
        self._last_cost = 0.0
        self._training_start: float | None = None

    def _on_training_start(self) -> None:
        if self._training_start is None:
            self._training_start = time.perf_counter()
        if self.source == "fixed" and self.sequences is None:
            start = time.perf_counter()
            self.sequences = collect_policy_sequences(
                self.model, self.env, n_episodes=self.n_episodes, policy=self.policy, seed=self.seed
            )
            self.seconds += time.perf_counter() - start

    def _on_step(self) -> bool:
        return True

    def _current_sequences(self) -> dict[str, list[Tensor]]:
        if self.source == "fixed":
            assert self.sequences is not None
            return self.sequences
        buffer = self.model.rollout_buffer
        episodes = episodes_from_buffer(
            buffer.observations, np.asarray(buffer.episode_starts)  # type: ignore[attr-defined]
        )
        actor, critic = policy_features(self.model.policy, episodes)
        return {"actor": actor, "critic": critic}

    def measure(self) -> dict[str, float]:
        """Measure now and return ``{key: value}`` (also what is recorded)."""
        start = time.perf_counter()
        sequences = self._current_sequences()
        values: dict[str, float] = {}
        for role, net in recurrent_networks(self.model.policy).items():
            seqs = sequences[role]
            gen = torch.Generator().manual_seed(self.seed)
            m = measure_vaa(
                net, seqs, settle_steps=self.settle_steps, n=self.n, epsilon=self.epsilon, generator=gen,
                view=self.view, checkpoints=self.checkpoints,
            )
            values[f"vaa/{role}"] = m.vaa
            values[f"vaa/{role}_nonfinite"] = float(m.n_nonfinite)
            values[f"vaa/{role}_movement"] = m.movement
            values[f"vaa/{role}_moving"] = float(m.n_moving)
            assert m.curve is not None
            values[f"vaa/{role}_horizon"] = float(m.horizon) if m.horizon is not None else math.inf
            for steps, v in zip(m.curve.settle_steps, m.curve.vaa, strict=True):
                if steps != self.settle_steps:
                    values[f"vaa/{role}_M{steps}"] = v
            if self.star_settle_steps > 0:
                gen = torch.Generator().manual_seed(self.seed)
                stars = measure_vaa_star(
                    net, seqs, settle_steps=self.star_settle_steps, n=self.n, epsilon=self.epsilon, generator=gen
                )
                for layer, v in enumerate(stars):
                    values[f"vaa_star/{role}_l{layer}"] = v
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self._last_cost = elapsed
        values["vaa/seconds"] = elapsed
        return values

    def within_budget(self, now: float | None = None) -> bool:
        """Whether a measure now keeps the callback within ``max_overhead`` of the wall time."""
        if self.max_overhead is None or self._training_start is None:
            return True
        now = time.perf_counter() if now is None else now
        return self.seconds + self._last_cost <= self.max_overhead * (now - self._training_start)

    def _on_rollout_end(self) -> None:
        self.n_rollouts += 1
        if (self.n_rollouts - 1) % self.every_n_rollouts == 0:
            self._pending = True
        if not self._pending:
            return
        if not self.within_budget():
            self.postponed += 1
            return
        self._pending = False
        values = self.measure()
        for key, value in values.items():
            self.logger.record(key, value)
        self.history.append({"timesteps": float(self.num_timesteps), **values})
