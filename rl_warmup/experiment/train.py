"""Train one RecurrentPPO agent, cold or warmed up, with evaluation, VAA logging and checkpoints.

:func:`train` is what ``scripts/train.py`` runs and what every run of a comparison grid calls.
A run directory (``config.run_dir``) holds:

* ``config.yaml``: the resolved :class:`~rl_warmup.experiment.config.TrainConfig` (reproduces the run);
* ``progress.csv``: SB3's log (rollout, train, ``eval/``, ``vaa/``, ``vaa_star/``, ``warmup/`` keys);
* ``tensorboard/``: the same as TensorBoard events;
* ``evaluations.csv``: one row per evaluation (:data:`EVAL_COLUMNS`);
* ``vaa.csv``: one row per VAA measure (``timesteps`` and the ``vaa/…`` keys of
  :class:`~rl_warmup.sb3.callbacks.VAALoggerCallback`); the first row, at timestep 0, is the VAA
  after warmup (before training for a cold start); ``vaa_sequences.pt``: the fixed episodes
  (network inputs) those measures use;
* ``warmup.json``: per network, VAA* per layer after warmup, restarts and seconds;
* ``checkpoints/last.zip`` (+ ``last_vecnormalize.pkl``, ``state.json``, ``last_state.pkl``):
  the latest checkpoint, always as of the start of a rollout, written every ``checkpoint_freq``
  timesteps, at the end, and on Ctrl-C or a crash;
* ``model.zip``: the final model; ``result.json``: the :class:`RunResult`, written only when the
  run finished (its presence is what marks a run as done); ``error.txt``: traceback of a crash.

A resumed run (``resume=True``) loads ``checkpoints/last.zip``, drops log rows written after that
checkpoint and continues with ``reset_num_timesteps=False`` up to the same ``total_timesteps``;
warmup is not run again. ``last_state.pkl`` holds the rest of the training state at that rollout
start: the training environments themselves (pickled, with their episodes in progress and their
random generators; ``VecNormalize`` statistics included), the last observations, episode starts
and recurrent states, the episode-information buffers, and the random generators of torch, numpy
and Python. With it the resumed run is the uninterrupted run, bit for bit (weights, logs and
evaluations; tested). If the environments cannot be pickled the file is not written and a resume
starts new episodes: a valid continuation, not an identical one.
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import json
import math
import os
import random
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, make_output_format
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecNormalize,
    sync_envs_normalization,
)

from rl_warmup.experiment.cli import add_dataclass_arguments, given_values
from rl_warmup.experiment.config import (
    RUNTIME_FIELDS,
    STOCK_LSTM,
    TrainConfig,
    check_env_id,
    check_runtime,
    dump_yaml,
    resolve_config,
)
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

EVAL_SEED_OFFSET = 10_000
"""Evaluation environments are seeded with ``seed + EVAL_SEED_OFFSET`` before every evaluation."""

_RESUME_IGNORED = RUNTIME_FIELDS | {"output_dir"}


@dataclass
class RunResult:
    """What a finished run reports (``result.json``).

    :param run_dir: the run directory.
    :param num_timesteps: timesteps trained.
    :param final_success_rate: success rate of the last evaluation (NaN if the env has none).
    :param final_mean_reward: mean return of the last evaluation.
    :param best_success_rate: best success rate of all evaluations.
    :param timesteps_to_threshold: timesteps of the first evaluation whose success rate reached
        ``success_threshold``; NaN when never reached.
    :param vaa_after_warmup: per network (``actor``, ``critic``), VAA at timestep 0 (after the
        warmup, or at initialisation for a cold start); empty when VAA logging is off.
    :param vaa_final: per network, VAA at the end of training.
    :param warmup_vaa_star: per network, VAA* of each layer right after warmup (empty for cold).
    :param warmup_restarts: per network, warmup restarts.
    :param wall_seconds: wall-clock seconds of training, all sessions together.
    :param resumed_from: timesteps at which the run was resumed (empty if never interrupted).
    """

    run_dir: str
    env_id: str
    cell: str
    warmup: str
    seed: int
    num_timesteps: int
    final_success_rate: float
    final_mean_reward: float
    best_success_rate: float
    timesteps_to_threshold: float
    success_threshold: float
    vaa_after_warmup: dict[str, float] = field(default_factory=dict)
    vaa_final: dict[str, float] = field(default_factory=dict)
    warmup_vaa_star: dict[str, list[float]] = field(default_factory=dict)
    warmup_restarts: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    resumed_from: list[int] = field(default_factory=list)
    status: str = "finished"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        _atomic_write(Path(path), json.dumps(_json_safe(self.to_dict()), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        data = json.loads(Path(path).read_text())
        for key in ("final_success_rate", "final_mean_reward", "best_success_rate", "timesteps_to_threshold"):
            if data.get(key) is None:
                data[key] = math.nan
        return cls(**data)


# -- small file helpers -----------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (empty list if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _truncate_csv(path: Path, key: str, max_timesteps: int) -> None:
    """Keep the header and the rows whose ``key`` is at most ``max_timesteps`` (or empty)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.reader(f)
        rows = list(reader)
    if not rows:
        return
    header, body = rows[0], rows[1:]
    if key not in header:
        return
    i = header.index(key)
    kept = [r for r in body if i >= len(r) or r[i] == "" or _number(r[i]) <= max_timesteps]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)
    os.replace(tmp, path)


class _CSVAppender:
    """Append rows to a CSV file whose header may grow (rewritten when new keys appear)."""

    def __init__(self, path: Path, columns: tuple[str, ...] = ()) -> None:
        self.path = path
        self.columns = list(columns)
        if path.exists():
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            self.columns = header + [c for c in self.columns if c not in header]

    def append(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            old = read_csv(self.path)
            self.columns += new
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, self.columns)
                writer.writeheader()
                writer.writerows(old)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


class ResumableCSVOutputFormat(CSVOutputFormat):
    """SB3's CSV writer that keeps an existing file's rows (a resumed run appends to its log)."""

    def __init__(self, filename: str) -> None:
        old = Path(filename).read_text() if Path(filename).exists() else ""
        super().__init__(filename)  # opens with "w+": truncates
        lines = old.splitlines(keepends=True)
        if lines:
            self.file.write(old if old.endswith("\n") else old + "\n")
            self.file.flush()
            self.keys = next(csv.reader([lines[0]]))


def make_logger(config: TrainConfig, run_dir: Path) -> Logger:
    """SB3 logger writing ``progress.csv`` (appending), TensorBoard and optionally stdout."""
    formats: list[KVWriter] = [ResumableCSVOutputFormat(str(run_dir / "progress.csv"))]
    if config.tensorboard:
        try:
            formats.append(make_output_format("tensorboard", str(run_dir / "tensorboard")))
        except (ImportError, AssertionError) as e:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard "
                "(or the project's [tensorboard] extra), or pass tensorboard=False (--no-tensorboard)"
            ) from e
    if config.verbose >= 1:
        formats.append(make_output_format("stdout", str(run_dir)))
    return Logger(folder=str(run_dir), output_formats=formats)


# -- environments -----------------------------------------------------------------------------
def make_env(config: TrainConfig, *, n_envs: int | None = None, seed: int | None = None) -> VecEnv:
    """The vectorised environment of a run (without VecNormalize).

    :param n_envs: number of copies (``config.n_envs`` when ``None``).
    :param seed: seed of the first copy (``config.seed`` when ``None``); copy ``i`` gets ``seed + i``.
    """
    check_env_id(config.env_id)
    wrapper = None
    if config.prev_action_reward:
        from envs import PrevActionRewardWrapper

        wrapper = PrevActionRewardWrapper
    # A callable, not the id: make_vec_env would ask for render_mode="rgb_array", which not every
    # environment supports.
    return make_vec_env(
        functools.partial(gym.make, config.env_id),
        n_envs=config.n_envs if n_envs is None else n_envs,
        seed=config.seed if seed is None else seed,
        wrapper_class=wrapper,
        vec_env_cls=DummyVecEnv,
    )


# -- callbacks ----------------------------------------------------------------------------------
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
    """

    def __init__(self, eval_env: VecEnv, path: Path, *, eval_freq: int, n_episodes: int, seed: int) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.path = path
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.seed = seed
        self.writer = _CSVAppender(path, EVAL_COLUMNS)
        self.last_timesteps = -1
        self.next_eval = 0
        self.start_time = time.perf_counter()
        self.offset_seconds = 0.0
        self._successes: list[bool] = []

    def _on_training_start(self) -> None:
        rows = read_csv(self.path)
        if rows:
            self.last_timesteps = int(_number(rows[-1]["timesteps"]))
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
        self.logger.record("eval/mean_reward", row["mean_reward"])
        self.logger.record("eval/mean_ep_length", row["mean_ep_length"])
        if not math.isnan(success):
            self.logger.record("eval/success_rate", success)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(self.num_timesteps)
        return row

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate()
            self._schedule()
        return True


SNAPSHOT_FILE = "last_state.pkl"
#: What a VecNormalize changes while it runs: statistics and the last raw observations / rewards.
_NORMALIZE_STATE = ("obs_rms", "ret_rms", "returns", "old_obs", "old_reward")


@dataclass
class Snapshot:
    """The training state at the start of a rollout, beyond what ``model.save`` keeps.

    :param blob: pickled environments, last observations / episode starts / recurrent states,
        episode-information buffers, the logger's values not yet written and random generator
        states (``None`` when the environments could not be pickled); what ``last_state.pkl``
        holds.
    :param num_timesteps: the model's timesteps at that point.
    :param n_updates: its ``_n_updates``.
    :param policy: a copy of the policy's ``state_dict`` (optimizer included separately).
    :param optimizer: a copy of the policy optimizer's ``state_dict``.
    """

    blob: bytes | None
    num_timesteps: int
    n_updates: int
    policy: dict[str, Any]
    optimizer: dict[str, Any]


def capture_snapshot(model: Any) -> Snapshot:
    """The state of ``model`` and its training environments now (call it at a rollout start)."""
    rng = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    env = model.get_env()
    normalize = None
    if isinstance(env, VecNormalize):  # VecNormalize pickles without its venv: keep both parts
        normalize = {name: getattr(env, name, None) for name in _NORMALIZE_STATE}
        env = env.venv
    state = {
        "env": env,
        "normalize": normalize,
        "last_obs": model._last_obs,
        "last_episode_starts": model._last_episode_starts,
        "last_lstm_states": model._last_lstm_states,
        "ep_info_buffer": model.ep_info_buffer,
        "ep_success_buffer": model.ep_success_buffer,
        "rng": rng,
        # values recorded but not yet written (the last update's train/ keys)
        "logger": (
            dict(model.logger.name_to_value),
            dict(model.logger.name_to_count),
            dict(model.logger.name_to_excluded),
        ),
    }
    try:
        blob: bytes | None = cloudpickle.dumps(state)
    except Exception as error:  # an environment that cannot be pickled
        warnings.warn(
            f"the training environments could not be pickled ({type(error).__name__}: {error}); "
            "a resumed run will start new episodes instead of continuing these ones exactly",
            RuntimeWarning,
            stacklevel=2,
        )
        blob = None
    return Snapshot(
        blob,
        int(model.num_timesteps),
        int(model._n_updates),
        {k: v.detach().clone() for k, v in model.policy.state_dict().items()},
        copy.deepcopy(model.policy.optimizer.state_dict()),
    )


def restore_snapshot(model: Any, blob: bytes) -> VecEnv:
    """Put the state of ``last_state.pkl`` back into a loaded ``model``; returns its training env
    (the environments it replaces are closed).

    Also puts back the logger's pending values (call it after ``model.set_logger``) and, last, the
    random generators, so call it right before ``model.learn``.
    """
    state = cloudpickle.loads(blob)
    env = model.get_env()
    if state["normalize"] is not None and isinstance(env, VecNormalize):
        env.venv.close()
        env.venv = state["env"]
        for name, value in state["normalize"].items():
            setattr(env, name, value)
    else:
        model.set_env(state["env"], force_reset=False)
        env.close()
    model._last_obs = state["last_obs"]
    model._last_episode_starts = state["last_episode_starts"]
    model._last_lstm_states = state["last_lstm_states"]
    model.ep_info_buffer = state["ep_info_buffer"]
    model.ep_success_buffer = state["ep_success_buffer"]
    values, counts, excluded = state["logger"]
    model.logger.name_to_value.update(values)
    model.logger.name_to_count.update(counts)
    model.logger.name_to_excluded.update(excluded)
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    return model.get_env()


class CheckpointCallback(BaseCallback):
    """Save ``checkpoints/last.zip`` (+ VecNormalize statistics, ``state.json`` and
    ``last_state.pkl``) at the start of a rollout once ``every`` timesteps have passed since the
    last save. Files are replaced atomically.

    At every rollout start it keeps a :class:`Snapshot` in memory, and :meth:`save_interrupted`
    (Ctrl-C, a crash) writes the model as of that rollout start (parameters, optimizer, timesteps,
    environments, random generators), so that a resumed run repeats the interrupted rollout
    exactly and ends at the same total as an uninterrupted one.
    """

    def __init__(self, directory: Path, every: int, state: dict[str, Any]) -> None:
        super().__init__()
        self.directory = directory
        self.every = every
        self.state = state
        self.last_saved = 0
        self.snapshot: Snapshot | None = None

    def _on_training_start(self) -> None:
        self.last_saved = self.num_timesteps

    def _on_rollout_start(self) -> None:
        self.snapshot = capture_snapshot(self.model)
        if self.num_timesteps - self.last_saved >= self.every:
            self.save()

    def _on_step(self) -> bool:
        return True

    def save(self) -> None:
        """Save now (nothing is saved before the first timestep: a resume then starts afresh)."""
        if self.model.num_timesteps <= 0:
            return
        blob = None
        if self.snapshot is not None and self.snapshot.num_timesteps == self.model.num_timesteps:
            blob = self.snapshot.blob
        save_checkpoint(self.model, self.directory, self.state, blob)
        self.last_saved = self.model.num_timesteps

    def save_interrupted(self) -> None:
        """Save after Ctrl-C or a crash, as of the start of the last rollout."""
        if self.model is None:
            return
        snapshot = self.snapshot
        if snapshot is not None and snapshot.num_timesteps != self.model.num_timesteps:
            model = self.model
            model.policy.load_state_dict(snapshot.policy)
            model.policy.optimizer.load_state_dict(snapshot.optimizer)
            model.num_timesteps = snapshot.num_timesteps
            model._n_updates = snapshot.n_updates
        self.save()


def save_checkpoint(model: Any, directory: Path, state: dict[str, Any], snapshot: bytes | None = None) -> None:
    """Write ``last.zip``, ``last_vecnormalize.pkl`` (if any), ``last_state.pkl`` (the
    :class:`Snapshot` blob taken at this point, if given; removed otherwise) and ``state.json``,
    each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "last.tmp.zip"
    model.save(tmp)
    normalize = model.get_vec_normalize_env()
    if normalize is not None:
        normalize.save(directory / "last_vecnormalize.tmp.pkl")
        os.replace(directory / "last_vecnormalize.tmp.pkl", directory / "last_vecnormalize.pkl")
    if snapshot is not None:
        (directory / "last_state.tmp.pkl").write_bytes(snapshot)
        os.replace(directory / "last_state.tmp.pkl", directory / SNAPSHOT_FILE)
    else:
        (directory / SNAPSHOT_FILE).unlink(missing_ok=True)
    os.replace(tmp, directory / "last.zip")
    _atomic_write(directory / "state.json", json.dumps({**state, "num_timesteps": int(model.num_timesteps)}, indent=2))


class _Warmup(WarmupCallback):
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
        _atomic_write(self.path, json.dumps({"seconds": seconds, "networks": data}, indent=2) + "\n")


class _VAARecorder(VAALoggerCallback):
    """:class:`VAALoggerCallback` measuring at timestep 0 (after warmup, before training), every
    ``every_n_rollouts`` rollouts after that and on request, each measure appended to ``vaa.csv``.

    The fixed episodes it measures on are collected once, on the training env at the start of
    the run, and kept in ``sequences_path``: a resumed run reads them instead of collecting again
    (which would reset the training env it resumes and measure on other inputs). Rollouts are
    counted from the start of the run, so a resumed run measures at the same timesteps.
    """

    def __init__(self, path: Path, sequences_path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writer = _CSVAppender(path, ("timesteps",))
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


# -- the run ------------------------------------------------------------------------------------
def config_differences(saved: TrainConfig, wanted: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between two configurations, ignoring those a resume may change."""
    a, b = saved.to_dict(), wanted.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in _RESUME_IGNORED and a[k] != b[k]}


def is_finished(config: TrainConfig) -> bool:
    """Whether ``config.run_dir`` holds a finished run of this configuration."""
    run_dir = config.run_dir
    if not (run_dir / "result.json").exists() or not (run_dir / "config.yaml").exists():
        return False
    try:
        saved = TrainConfig.load(run_dir / "config.yaml")
    except (ValueError, OSError):
        return False
    return not config_differences(saved, _resolved(config))


def _resolved(config: TrainConfig) -> TrainConfig:
    return config.replace(run_name=config.run_dir.name)


def timesteps_to_threshold(evaluations: list[dict[str, str]], threshold: float) -> float:
    """Timesteps of the first evaluation with ``success_rate >= threshold``; NaN if none."""
    for row in evaluations:
        if _number(row.get("success_rate")) >= threshold:
            return float(_number(row["timesteps"]))
    return math.nan


def _first_and_last_vaa(rows: list[dict[str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    def pick(row: dict[str, str] | None) -> dict[str, float]:
        if row is None:
            return {}
        out = {}
        for role in ("actor", "critic"):
            value = _number(row.get(f"vaa/{role}"))
            if not math.isnan(value):
                out[role] = value
        return out

    first = next((r for r in rows if _number(r.get("timesteps")) == 0), None)
    return pick(first), pick(rows[-1] if rows else None)


def train(config: TrainConfig, *, callbacks: list[BaseCallback] | None = None) -> RunResult:
    """Train one agent as ``config`` says, in ``config.run_dir``; see the module docstring.

    :param config: the run's settings.
    :param callbacks: extra SB3 callbacks, called after the run's own.
    :return: the result, also saved as ``result.json``. With ``config.resume`` and a finished
        run in the directory, the saved result is returned without training.
    :raises ValueError: unknown environment id, or resuming with different settings.
    :raises FileExistsError: the directory holds a run and ``resume`` is false.
    """
    from rl_warmup.sb3.policies import RecurrentCellPolicy
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    check_env_id(config.env_id)
    check_runtime(config)
    config = _resolved(config)
    run_dir = config.run_dir
    ckpt_dir = run_dir / "checkpoints"
    ckpt = ckpt_dir / "last.zip"
    result_path = run_dir / "result.json"
    config_path = run_dir / "config.yaml"
    if config_path.exists() and (ckpt.exists() or result_path.exists()):
        if not config.resume:
            raise FileExistsError(
                f"{run_dir} already holds a run: pass resume=True (--resume) to continue it (a "
                "finished run is then skipped), or choose another output_dir / run_name"
            )
        diff = config_differences(TrainConfig.load(config_path), config)
        if diff:
            listed = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"cannot resume {run_dir} with different settings ({listed}); resume with the "
                f"saved settings (--config {config_path} --resume) or choose another run_name"
            )
        if result_path.exists():
            return RunResult.load(result_path)
    resuming = config.resume and ckpt.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        for name in ("progress.csv", "evaluations.csv", "vaa.csv", "vaa_sequences.pt", "warmup.json", "model.zip", "error.txt"):
            (run_dir / name).unlink(missing_ok=True)
        for name in ("tensorboard", "checkpoints"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    config.save(config_path)

    state: dict[str, Any] = {"wall_seconds": 0.0, "resumed_from": []}
    if resuming:
        state.update(json.loads((ckpt_dir / "state.json").read_text()))
        done = int(state["num_timesteps"])
        state["resumed_from"] = [*state.get("resumed_from", []), done]
        _truncate_csv(run_dir / "progress.csv", "time/total_timesteps", done)
        _truncate_csv(run_dir / "evaluations.csv", "timesteps", done)
        _truncate_csv(run_dir / "vaa.csv", "timesteps", done)
    previous_seconds = float(state.get("wall_seconds", 0.0))
    start = time.perf_counter()

    venv: VecEnv = make_env(config)
    eval_env: VecEnv = make_env(config, n_envs=min(config.eval_episodes, 10), seed=config.seed + EVAL_SEED_OFFSET)
    if config.normalize:
        if resuming and (ckpt_dir / "last_vecnormalize.pkl").exists():
            venv = VecNormalize.load(str(ckpt_dir / "last_vecnormalize.pkl"), venv)
        else:
            venv = VecNormalize(venv, gamma=config.gamma)
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False, gamma=config.gamma)

    snapshot_blob: bytes | None = None
    if resuming:
        model = FastRecurrentPPO.load(ckpt, env=venv, device=config.device)
        if (ckpt_dir / SNAPSHOT_FILE).exists():
            snapshot_blob = (ckpt_dir / SNAPSHOT_FILE).read_bytes()
    else:
        # RecurrentPPO's updates with less overhead per minibatch (rl_warmup.sb3.ppo)
        policy: Any = RecurrentCellPolicy
        if config.cell == STOCK_LSTM:
            policy = "MultiInputLstmPolicy" if isinstance(venv.observation_space, gym.spaces.Dict) else "MlpLstmPolicy"
        model = FastRecurrentPPO(
            policy,
            venv,
            learning_rate=config.learning_rate,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            n_epochs=config.n_epochs,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            clip_range=config.clip_range,
            ent_coef=config.ent_coef,
            vf_coef=config.vf_coef,
            max_grad_norm=config.max_grad_norm,
            policy_kwargs=config.policy_kwargs(),
            seed=config.seed,
            device=config.device,
            verbose=0,
        )
    model.set_logger(make_logger(config, run_dir))

    own: list[BaseCallback] = []
    if config.warmup != "none":
        own.append(
            _Warmup(
                run_dir / "warmup.json",
                config=config.warmup_config(),
                n_episodes=config.warmup_episodes,
                policy=config.warmup_policy,
                progress=config.progress_bar,
            )
        )
    vaa: _VAARecorder | None = None
    if config.vaa_every > 0:
        vaa = _VAARecorder(
            run_dir / "vaa.csv",
            run_dir / "vaa_sequences.pt",
            every_n_rollouts=config.vaa_every,
            n=config.vaa_n,
            settle_steps=config.vaa_settle_steps,
            star_settle_steps=config.vaa_star_settle_steps,
            epsilon=config.warmup_epsilon,
            seed=config.seed,
        )
        own.append(vaa)
    evaluation = EvaluationCallback(
        eval_env,
        run_dir / "evaluations.csv",
        eval_freq=config.eval_freq,
        n_episodes=config.eval_episodes,
        seed=config.seed + EVAL_SEED_OFFSET,
    )
    evaluation.offset_seconds = previous_seconds
    evaluation.start_time = start
    checkpoint = CheckpointCallback(ckpt_dir, config.checkpoint_freq, state)
    own += [evaluation, checkpoint]

    def update_state() -> None:
        state["wall_seconds"] = previous_seconds + time.perf_counter() - start

    if snapshot_blob is not None:
        # the environments, observations and random generators of the checkpoint's rollout start
        venv = restore_snapshot(model, snapshot_blob)
    try:
        # Also called with 0 steps left (a crash after the last step): it sets the callbacks up.
        model.learn(
            max(config.total_timesteps - model.num_timesteps, 0),
            callback=CallbackList(own + list(callbacks or [])),
            reset_num_timesteps=not resuming,
            progress_bar=config.progress_bar,
        )
        if evaluation.last_timesteps < model.num_timesteps:
            evaluation.evaluate()
        if vaa is not None and (not vaa.history or vaa.history[-1]["timesteps"] < model.num_timesteps):
            vaa.record_now()
            model.logger.dump(model.num_timesteps)
    except BaseException as error:
        update_state()
        try:
            checkpoint.save_interrupted()
        finally:
            if not isinstance(error, KeyboardInterrupt):
                (run_dir / "error.txt").write_text("".join(traceback.format_exception(error)))
            model.logger.close()
            venv.close()
            eval_env.close()
        raise
    update_state()
    save_checkpoint(model, ckpt_dir, state)
    model.save(run_dir / "model.zip")
    model.logger.close()
    venv.close()
    eval_env.close()

    evaluations = read_csv(run_dir / "evaluations.csv")
    successes = [_number(r["success_rate"]) for r in evaluations]
    vaa_first, vaa_last = _first_and_last_vaa(read_csv(run_dir / "vaa.csv"))
    warm = json.loads((run_dir / "warmup.json").read_text()) if (run_dir / "warmup.json").exists() else {}
    networks = warm.get("networks", {})
    finite = [s for s in successes if not math.isnan(s)]
    result = RunResult(
        run_dir=str(run_dir),
        env_id=config.env_id,
        cell=config.cell,
        warmup=config.warmup,
        seed=config.seed,
        num_timesteps=int(model.num_timesteps),
        final_success_rate=successes[-1] if successes else math.nan,
        final_mean_reward=_number(evaluations[-1]["mean_reward"]) if evaluations else math.nan,
        best_success_rate=max(finite) if finite else math.nan,
        timesteps_to_threshold=timesteps_to_threshold(evaluations, config.success_threshold),
        success_threshold=config.success_threshold,
        vaa_after_warmup=vaa_first,
        vaa_final=vaa_last,
        warmup_vaa_star={k: v["final_vaa_star"] for k, v in networks.items()},
        warmup_restarts={k: v["restarts"] for k, v in networks.items()},
        wall_seconds=round(float(state["wall_seconds"]), 3),
        resumed_from=list(state.get("resumed_from", [])),
    )
    (run_dir / "error.txt").unlink(missing_ok=True)
    result.save(result_path)
    return result


def describe(config: TrainConfig) -> str:
    """The resolved configuration as YAML text (for ``--dry-run`` style printing by scripts)."""
    return dump_yaml(config.to_dict())


# -- command line --------------------------------------------------------------------------------
def train_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scripts/train.py``: one option per :class:`TrainConfig` field."""
    parser = argparse.ArgumentParser(
        prog="train.py",
        description=(
            "Train one RecurrentPPO agent (cold start or warmed up) on a gymnasium environment. "
            "Values come from the TrainConfig defaults, then the environment's preset "
            "(rl_warmup/experiment/presets.yaml), then the options given here."
        ),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="start from a saved config.yaml (presets are then not applied; other options override it)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration as YAML and exit"
    )
    add_dataclass_arguments(parser.add_argument_group("settings (TrainConfig fields)"), TrainConfig)
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The resolved :class:`TrainConfig` of parsed ``scripts/train.py`` arguments.

    :raises ValueError: an invalid value, an unknown cell or environment id.
    """
    given = given_values(args, TrainConfig)
    base = TrainConfig.load(args.config) if getattr(args, "config", None) else None
    config = resolve_config(given, base=base)
    check_env_id(config.env_id)
    return config
