"""The callbacks of a run: evaluation (``evaluations.csv``), the warmup (``warmup.json``) and the
VAA measures (``vaa.csv``)."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from rl_warmup.experiment.logs import CSVAppender, atomic_write, number, read_csv
from rl_warmup.sb3.callbacks import VAALoggerCallback
from rl_warmup.sb3.warmup import WarmupCallback

EVAL_COLUMNS: tuple[str, ...] = (
    "timesteps",
    "success_rate",
    "mean_reward",
    "std_reward",
    "mean_ep_length",
    "episodes",
    "wall_seconds",
)
"""Columns of ``evaluations.csv``; ``success_rate`` is empty when the env reports no ``is_success``."""


def _score(success: float, mean_reward: float) -> float:
    """What "best evaluation" means: the success rate, or the mean return without one."""
    return mean_reward if math.isnan(success) else success


class EvaluationCallback(BaseCallback):
    """Evaluate every ``eval_freq`` timesteps (and when training starts), append a row to
    ``evaluations.csv`` and record ``eval/success_rate``, ``eval/mean_reward`` in the logger.

    Every evaluation resets the evaluation env with the same seed, so all evaluations of a run
    (and of every run with the same seed) play the same episodes.

    :param eval_env: evaluation environments (wrapped in VecNormalize with ``training=False`` when
        the training env is normalised).
    :param path: the CSV file.
    :param eval_freq: timesteps between evaluations (0: only at the start and when asked).
    :param n_episodes: episodes per evaluation.
    :param seed: seed of the evaluation episodes.
    :param best_path: where to keep the model of the best evaluation so far (``best_model.zip``,
        with ``best_model_vecnormalize.pkl`` when normalised): highest success rate, or highest
        mean return where the environment reports no success. ``None``: not kept.
    :param stop_at: ``(success_threshold, return_threshold)``: end training (``_on_step`` returns
        False) once an evaluation reaches the success threshold, or, where the environment
        reports no success, the return threshold (if not None). ``None``: never stop.
    """

    def __init__(
        self,
        eval_env: VecEnv,
        path: Path,
        *,
        eval_freq: int,
        n_episodes: int,
        seed: int,
        best_path: Path | None = None,
        stop_at: tuple[float, float | None] | None = None,
    ) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.reached = False
        self.best_path = best_path
        self.best_score = -math.inf
        self.eval_env = eval_env
        self.path = path
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.seed = seed
        self.writer = CSVAppender(path, EVAL_COLUMNS)
        self.last_timesteps = -1
        self.next_eval = 0
        self.start_time = time.perf_counter()
        self.offset_seconds = 0.0
        self._successes: list[bool] = []

    def _on_training_start(self) -> None:
        rows = read_csv(self.path)
        if rows:
            self.last_timesteps = int(number(rows[-1]["timesteps"]))
        scores = [_score(number(r["success_rate"]), number(r["mean_reward"])) for r in rows]
        self.best_score = max(scores, default=-math.inf)
        self.reached = any(self._reaches(number(r["success_rate"]), number(r["mean_reward"])) for r in rows)
        if self.last_timesteps < 0:
            self.evaluate()  # before training: the starting point of the learning curve
        self._schedule()

    def _schedule(self) -> None:
        last = max(self.last_timesteps, self.num_timesteps)
        self.next_eval = (last // self.eval_freq + 1) * self.eval_freq if self.eval_freq > 0 else 2**62

    def _collect(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        if locals_["done"]:
            success = locals_["info"].get("is_success")
            if success is not None:
                self._successes.append(bool(success))

    def evaluate(self) -> dict[str, float]:
        """Evaluate now; append the row and record it in the logger."""
        normalize = self.model.get_vec_normalize_env()
        if normalize is not None:
            sync_envs_normalization(self.training_env, self.eval_env)
        self._successes = []
        self.eval_env.seed(self.seed)
        rewards, lengths = evaluate_policy(
            self.model,  # type: ignore[arg-type]
            self.eval_env,
            n_eval_episodes=self.n_episodes,
            deterministic=True,
            return_episode_rewards=True,
            warn=False,
            callback=self._collect,
        )
        rewards_arr, lengths_arr = np.asarray(rewards, float), np.asarray(lengths, float)
        success = float(np.mean(self._successes)) if self._successes else math.nan
        row = {
            "timesteps": int(self.num_timesteps),
            "success_rate": success,
            "mean_reward": float(rewards_arr.mean()),
            "std_reward": float(rewards_arr.std()),
            "mean_ep_length": float(lengths_arr.mean()),
            "episodes": len(rewards_arr),
            "wall_seconds": round(self.offset_seconds + time.perf_counter() - self.start_time, 3),
        }
        self.writer.append(row)
        self.last_timesteps = int(self.num_timesteps)
        self.reached = self.reached or self._reaches(success, row["mean_reward"])
        score = _score(success, row["mean_reward"])
        if self.best_path is not None and score > self.best_score:
            self.best_score = score
            self._save_best()
        self.logger.record("eval/mean_reward", row["mean_reward"])
        self.logger.record("eval/mean_ep_length", row["mean_ep_length"])
        if not math.isnan(success):
            self.logger.record("eval/success_rate", success)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        return row

    def _save_best(self) -> None:
        from rl_warmup.experiment.checkpoint import signals_deferred

        assert self.best_path is not None
        tmp = self.best_path.with_name(self.best_path.stem + ".tmp.zip")
        with signals_deferred():
            self.model.save(tmp)
            os.replace(tmp, self.best_path)
            normalize = self.model.get_vec_normalize_env()
            if normalize is not None:
                stats = self.best_path.with_name(self.best_path.stem + "_vecnormalize.pkl")
                normalize.save(stats.with_suffix(".tmp"))
                os.replace(stats.with_suffix(".tmp"), stats)

    def _reaches(self, success: float, mean_reward: float) -> bool:
        if self.stop_at is None:
            return False
        threshold, return_threshold = self.stop_at
        if not math.isnan(success):
            return success >= threshold
        return return_threshold is not None and mean_reward >= return_threshold

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            self._schedule()
        return not self.reached


class WarmupRecorder(WarmupCallback):
    """:class:`WarmupCallback` that also writes ``warmup.json``."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    def _on_training_start(self) -> None:
        if self.results is not None or self.model.num_timesteps > 0:
            return
        start = time.perf_counter()
        super()._on_training_start()
        seconds = time.perf_counter() - start
        assert self.results is not None
        data = {
            role: {
                "final_vaa_star": r.final_vaa_star,
                "collapsed": bool(r.collapsed_layers),
                "restarts": r.restarts,
                "restart_reasons": r.restart_reasons,
                "best_step": r.best_step,
                **(
                    {}
                    if r.vaa is None or r.vaa.curve is None
                    else {
                        "vaa_curve": dict(zip(r.vaa.curve.settle_steps, r.vaa.curve.vaa, strict=True)),
                        "vaa_horizon": r.vaa.horizon,
                        "vaa_movement": r.vaa.movement,
                    }
                ),
            }
            for role, r in self.results.items()
        }
        self.logger.record("warmup/seconds", seconds)
        atomic_write(self.path, json.dumps({"seconds": seconds, "networks": data}, indent=2) + "\n")


class VAARecorder(VAALoggerCallback):
    """:class:`VAALoggerCallback` measuring at timestep 0 (after warmup, before training), every
    ``every_n_rollouts`` rollouts after that and on request, each measure appended to ``vaa.csv``.

    The fixed episodes it measures on are collected once, on the training env at the start of
    the run, and kept in ``sequences_path``: a resumed run reads them instead of collecting again
    (which would reset the training env it resumes and measure on other inputs). Rollouts are
    counted from the start of the run, so a resumed run measures at the same timesteps.
    """

    def __init__(self, path: Path, sequences_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writer = CSVAppender(path, ("timesteps",))
        self.sequences_path = sequences_path

    def _on_training_start(self) -> None:
        if self.sequences is None and self.sequences_path.exists():
            self.sequences = torch.load(self.sequences_path, weights_only=True)
        super()._on_training_start()
        if not self.sequences_path.exists():
            tmp = self.sequences_path.with_suffix(".tmp")
            torch.save(self.sequences, tmp)
            os.replace(tmp, self.sequences_path)
        self.n_rollouts = self.model.num_timesteps // (self.model.n_steps * self.model.n_envs)
        if self.model.num_timesteps == 0:
            self.record_now()

    def _on_rollout_end(self) -> None:
        self.n_rollouts += 1
        if self.n_rollouts % self.every_n_rollouts == 0:
            self.record_now()

    def record_now(self) -> dict[str, float]:
        values = self.measure()
        for key, value in values.items():
            self.logger.record(key, value)
        self.history.append({"timesteps": float(self.num_timesteps), **values})
        self.writer.append({"timesteps": int(self.num_timesteps), **values})
        return values
