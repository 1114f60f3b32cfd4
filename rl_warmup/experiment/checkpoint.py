"""Checkpoints of a run: what they hold, how they are written, and how they are read back.

``checkpoints/`` of a run directory holds ``last.zip`` (the model), ``last_vecnormalize.pkl``
(if any), ``last_state.pkl`` (:class:`Snapshot`: environments, recurrent states and random
generators at a rollout start) and ``state.json`` (timesteps and wall time), each replaced
atomically.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import shutil
import signal
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rl_warmup.experiment.logs import LOG_KEYS, atomic_write

LOGS_DIR = "logs"
"""Folder of a checkpoint holding the copies of the run's logs as of that checkpoint."""

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


def restore_snapshot(model: Any, blob: bytes | dict[str, Any]) -> VecEnv:
    """Put the state of ``last_state.pkl`` (its bytes, or as :func:`read_checkpoint` loaded it)
    back into a loaded ``model``; returns its training env (the environments it replaces are
    closed).

    Also puts back the logger's pending values (call it after ``model.set_logger``) and, last, the
    random generators, so call it right before ``model.learn``.
    """
    state = cloudpickle.loads(blob) if isinstance(blob, bytes) else blob
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


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (their Python handlers run in the main thread):
    a Ctrl-C or a SIGTERM that arrives while a checkpoint is written takes effect right after it,
    instead of interrupting ``torch.save`` half-way (which failed the run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # ignored or default dispositions stay as they are
            previous[signum] = handler
            signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number, frame in caught[:1]:
            previous[number](number, frame)  # e.g. raises KeyboardInterrupt now


def save_checkpoint(model: Any, directory: Path, state: dict[str, Any], snapshot: bytes | None = None) -> None:
    """Write ``last.zip``, ``last_vecnormalize.pkl`` (if any), ``last_state.pkl`` (the
    :class:`Snapshot` blob taken at this point, if given; removed otherwise), a copy of the run's
    logs (``logs/``, the run directory being ``directory``'s parent) and, last, ``state.json``,
    each atomically, with SIGINT and SIGTERM held back until it is written."""
    with signals_deferred():
        _write_checkpoint(model, directory, state, snapshot)


def _write_checkpoint(model: Any, directory: Path, state: dict[str, Any], snapshot: bytes | None) -> None:
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
    # the logs as of this checkpoint: what a resumed run's logs start from
    (directory / LOGS_DIR).mkdir(exist_ok=True)
    for name in LOG_KEYS:
        if (directory.parent / name).exists():
            copy_tmp = directory / LOGS_DIR / (name + ".tmp")
            shutil.copyfile(directory.parent / name, copy_tmp)
            os.replace(copy_tmp, directory / LOGS_DIR / name)
    os.replace(tmp, directory / "last.zip")
    atomic_write(directory / "state.json", json.dumps({**state, "num_timesteps": int(model.num_timesteps)}, indent=2))


class CorruptRunError(ValueError):
    """A file of a run directory cannot be read back: the message names it and says what to do."""


@dataclass
class Checkpoint:
    """A checkpoint read back and checked by :func:`read_checkpoint`.

    :param state: ``state.json`` (``num_timesteps``, ``wall_seconds``, ``resumed_from``).
    :param model_path: ``last.zip`` (a complete zip archive holding SB3's ``data``).
    :param snapshot: ``last_state.pkl`` unpickled, or ``None`` when the checkpoint has none.
    """

    state: dict[str, Any]
    model_path: Path
    snapshot: dict[str, Any] | None

    @property
    def num_timesteps(self) -> int:
        return int(self.state["num_timesteps"])


def read_checkpoint(directory: Path) -> Checkpoint:
    """Read and check every file of a checkpoint before anything of the run is rewritten.

    :raises CorruptRunError: a file is cut off or unreadable; the message names it and what to do.
    """
    restart = f"delete {directory.parent} to start the run again, or put back a good copy of the file"
    state_path = directory / "state.json"
    try:
        state = json.loads(state_path.read_text())
        if int(state["num_timesteps"]) < 0:
            raise ValueError("negative num_timesteps")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptRunError(f"{state_path} is damaged ({type(e).__name__}: {e}); {restart}") from None
    model_path = directory / "last.zip"
    try:
        with zipfile.ZipFile(model_path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptRunError(f"{model_path} is damaged ({type(e).__name__}: {e}); {restart}") from None
    if bad is not None or "data" not in names:
        problem = f"member {bad} fails its CRC" if bad is not None else "no 'data' member"
        raise CorruptRunError(f"{model_path} is damaged ({problem}); {restart}")
    for name in ("last_vecnormalize.pkl", SNAPSHOT_FILE):
        path = directory / name
        if not path.exists():
            continue
        try:
            loaded = cloudpickle.loads(path.read_bytes())
        except Exception as e:
            extra = (
                f"delete it to resume with new episodes (a valid continuation, not the identical run), or {restart}"
                if name == SNAPSHOT_FILE
                else restart
            )
            raise CorruptRunError(f"{path} is damaged ({type(e).__name__}: {e}); {extra}") from None
        if name == SNAPSHOT_FILE:
            return Checkpoint(state, model_path, loaded)
    return Checkpoint(state, model_path, None)
