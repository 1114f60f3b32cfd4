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
  timesteps, at the end, and on Ctrl-C, SIGTERM or a crash;
* ``best_model.zip`` (+ ``best_model_vecnormalize.pkl``): the model of the best evaluation so
  far (highest success rate, or mean return where there is no success), as SB3's
  ``EvalCallback`` keeps it: the one to use when learning fell back after its best point;
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
import functools
import json
import math
import shutil
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecNormalize,
)

from rl_warmup.experiment.callbacks import (
    EVAL_COLUMNS,
    EvaluationCallback,
    VAARecorder,
    WarmupRecorder,
)
from rl_warmup.experiment.checkpoint import (
    LOGS_DIR,
    Checkpoint,
    CheckpointCallback,
    CorruptRunError,
    read_checkpoint,
    restore_snapshot,
    save_checkpoint,
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
from rl_warmup.experiment.lock import DirectoryLock
from rl_warmup.experiment.logs import atomic_write, make_logger, number, read_csv, restore_logs

__all__ = [  # EVAL_COLUMNS and read_csv: where they were before the split, for callers
    "EVAL_COLUMNS",
    "RunResult",
    "describe",
    "is_finished",
    "make_env",
    "read_csv",
    "timesteps_to_threshold",
    "train",
    "train_config_from_args",
    "train_parser",
]

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
        ``success_threshold`` (where the environment has no success: whose mean return reached
        ``return_threshold``, when set); NaN when never reached.
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
        atomic_write(Path(path), json.dumps(_json_safe(self.to_dict()), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """Read ``result.json``.

        :raises CorruptRunError: the file is cut off or unreadable (naming it and what to do).
        """
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise CorruptRunError(
                f"{path} is damaged ({type(e).__name__}: {e}); delete it and resume the run to write it "
                "again from the final checkpoint"
            ) from None
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


BEST_MODEL = "best_model.zip"
"""The model of the run's best evaluation (see :class:`EvaluationCallback`), in the run directory."""


# -- environments -----------------------------------------------------------------------------
def make_single_env(env_id: str, prev_action_reward: bool) -> gym.Env:
    """One copy of the environment of a run, with what a recurrent policy needs.

    Observations that are neither a 1-D ``Box`` nor a ``Dict`` (POPGym's ``Discrete``,
    ``MultiDiscrete`` and ``Tuple`` ones, images when the previous action and reward are
    appended) are flattened to a ``float32`` vector (one-hot for discrete parts,
    :class:`envs.popgym_wrapper.PopGymFlattenWrapper`). ``Dict`` observations stay ``Dict`` (the
    run then uses a ``MultiInput`` policy), with ``prev_action`` and ``prev_reward`` keys when
    ``prev_action_reward``.
    """
    from envs.popgym_wrapper import PopGymFlattenWrapper

    env = gym.make(env_id)
    space = env.observation_space
    flat_box = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    if not (flat_box or isinstance(space, gym.spaces.Dict)) and (
        prev_action_reward or not isinstance(space, gym.spaces.Box)
    ):
        env = PopGymFlattenWrapper(env)
    if prev_action_reward:
        from envs import PrevActionRewardWrapper

        env = PrevActionRewardWrapper(env)
    return env


def make_env(config: TrainConfig, *, n_envs: int | None = None, seed: int | None = None) -> VecEnv:
    """The vectorised environment of a run (without VecNormalize); see :func:`make_single_env`.

    :param n_envs: number of copies (``config.n_envs`` when ``None``).
    :param seed: seed of the first copy (``config.seed`` when ``None``); copy ``i`` gets ``seed + i``.
    """
    check_env_id(config.env_id)
    # A callable, not the id: make_vec_env would ask for render_mode="rgb_array", which not every
    # environment supports.
    return make_vec_env(
        functools.partial(make_single_env, config.env_id, config.prev_action_reward),
        n_envs=config.n_envs if n_envs is None else n_envs,
        seed=config.seed if seed is None else seed,
        vec_env_cls=DummyVecEnv,
    )


def build_model(config: TrainConfig, venv: VecEnv) -> Any:
    """A new ``FastRecurrentPPO`` with the run's policy and PPO settings (no warmup yet):
    ``RecurrentCellPolicy`` (``RecurrentCellMultiInputPolicy`` for ``Dict`` observations), or
    sb3-contrib's ``MlpLstmPolicy`` / ``MultiInputLstmPolicy`` for ``cell="stock_lstm"``."""
    from rl_warmup.sb3.policies import RecurrentCellMultiInputPolicy, RecurrentCellPolicy
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    # RecurrentPPO's updates with less overhead per minibatch (rl_warmup.sb3.ppo)
    multi_input = isinstance(venv.observation_space, gym.spaces.Dict)
    policy: Any = RecurrentCellMultiInputPolicy if multi_input else RecurrentCellPolicy
    if config.cell == STOCK_LSTM:
        policy = "MultiInputLstmPolicy" if multi_input else "MlpLstmPolicy"
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
        vaa_regularizer=config.vaa_regularizer(),
    )
    if config.lstm_forget_bias is not None:
        from rl_warmup.cells import set_lstm_forget_bias

        set_lstm_forget_bias(model.policy, config.lstm_forget_bias)
    return model


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
        saved = load_saved_config(run_dir / "config.yaml")
        RunResult.load(run_dir / "result.json")
    except (ValueError, OSError):
        return False  # a damaged file: train() says which
    return not config_differences(saved, _resolved(config))


def load_saved_config(path: Path) -> TrainConfig:
    """The ``config.yaml`` of a run directory, checked: one cut off while it was written (no
    final newline, or not YAML) is refused instead of being read as a partial configuration.

    :raises CorruptRunError: naming the file and what to do.
    """
    advice = f"delete {path.parent} to start the run again, or put back a good copy of the file"
    try:
        text = path.read_text()
        if not text.endswith("\n"):
            raise ValueError("cut off: no final newline")
        return TrainConfig.load(path)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CorruptRunError(f"{path} is damaged ({e}); {advice}") from None


def _resolved(config: TrainConfig) -> TrainConfig:
    return config.replace(run_name=config.run_dir.name)


def timesteps_to_threshold(
    evaluations: list[dict[str, str]], threshold: float, return_threshold: float | None = None
) -> float:
    """Timesteps of the first evaluation with ``success_rate >= threshold``; where no evaluation
    has a success rate (the environment reports none), of the first with ``mean_reward >=
    return_threshold`` when one is given. NaN if none."""
    has_success = any(not math.isnan(number(row.get("success_rate"))) for row in evaluations)
    for row in evaluations:
        if has_success:
            reached = number(row.get("success_rate")) >= threshold
        else:
            reached = return_threshold is not None and number(row.get("mean_reward")) >= return_threshold
        if reached:
            return float(number(row["timesteps"]))
    return math.nan


def _first_and_last_vaa(rows: list[dict[str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    def pick(row: dict[str, str] | None) -> dict[str, float]:
        if row is None:
            return {}
        out = {}
        for role in ("actor", "critic"):
            value = number(row.get(f"vaa/{role}"))
            if not math.isnan(value):
                out[role] = value
        return out

    first = next((r for r in rows if number(r.get("timesteps")) == 0), None)
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
    check_env_id(config.env_id)
    check_runtime(config)
    config = _resolved(config)
    with DirectoryLock(config.run_dir / LOCK_FILE, f"the run {config.run_dir}"):
        return _train(config, callbacks)


LOCK_FILE = ".lock"
"""File of a run directory naming the process training it (see :mod:`rl_warmup.experiment.lock`)."""


def _train(config: TrainConfig, callbacks: list[BaseCallback] | None) -> RunResult:
    from rl_warmup.sb3.ppo import FastRecurrentPPO

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
        diff = config_differences(load_saved_config(config_path), config)
        if diff:
            listed = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"cannot resume {run_dir} with different settings ({listed}); resume with the "
                f"saved settings (--config {config_path} --resume) or choose another run_name"
            )
        if result_path.exists():
            return RunResult.load(result_path)
    resuming = config.resume and ckpt.exists()
    checkpoint_read: Checkpoint | None = None
    if resuming:  # every file is checked before anything of the run is rewritten
        checkpoint_read = read_checkpoint(ckpt_dir)
        sequences = run_dir / "vaa_sequences.pt"
        if config.vaa_every > 0 and sequences.exists():
            try:
                torch.load(sequences, weights_only=True)
            except Exception as e:
                raise CorruptRunError(
                    f"{sequences} is damaged ({type(e).__name__}: {e}); delete {run_dir} to start the "
                    "run again (the VAA measures of a resumed run must use the same episodes)"
                ) from None
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        for name in ("progress.csv", "evaluations.csv", "vaa.csv", "vaa_sequences.pt", "warmup.json", "model.zip", "error.txt"):
            (run_dir / name).unlink(missing_ok=True)
        for name in ("tensorboard", "checkpoints"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    config.save(config_path)

    state: dict[str, Any] = {"wall_seconds": 0.0, "resumed_from": []}
    if checkpoint_read is not None:
        state.update(checkpoint_read.state)
        done = checkpoint_read.num_timesteps
        state["resumed_from"] = [*state.get("resumed_from", []), done]
        for note in restore_logs(run_dir, ckpt_dir / LOGS_DIR, done):
            warnings.warn(note, RuntimeWarning, stacklevel=2)
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

    snapshot: dict[str, Any] | None = None
    if checkpoint_read is not None:
        model = FastRecurrentPPO.load(ckpt, env=venv, device=config.device)
        snapshot = checkpoint_read.snapshot
    else:
        model = build_model(config, venv)
    model.set_logger(make_logger(config, run_dir))

    own: list[BaseCallback] = []
    if config.warmup != "none":
        own.append(
            WarmupRecorder(
                run_dir / "warmup.json",
                config=config.warmup_config(),
                n_episodes=config.warmup_episodes,
                policy=config.warmup_policy,
                progress=config.progress_bar,
            )
        )
    vaa: VAARecorder | None = None
    if config.vaa_every > 0:
        vaa = VAARecorder(
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
        best_path=run_dir / BEST_MODEL,
        stop_at=(config.success_threshold, config.return_threshold) if config.stop_at_threshold else None,
    )
    evaluation.offset_seconds = previous_seconds
    evaluation.start_time = start
    checkpoint = CheckpointCallback(ckpt_dir, config.checkpoint_freq, state)
    own += [evaluation, checkpoint]

    def update_state() -> None:
        state["wall_seconds"] = previous_seconds + time.perf_counter() - start

    if snapshot is not None:
        # the environments, observations and random generators of the checkpoint's rollout start
        venv = restore_snapshot(model, snapshot)
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
    successes = [number(r["success_rate"]) for r in evaluations]
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
        final_mean_reward=number(evaluations[-1]["mean_reward"]) if evaluations else math.nan,
        best_success_rate=max(finite) if finite else math.nan,
        timesteps_to_threshold=timesteps_to_threshold(evaluations, config.success_threshold, config.return_threshold),
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
    from rl_warmup.experiment.grid import CONDITIONS

    parser.add_argument(
        "--condition",
        choices=list(CONDITIONS),
        help="a condition of compare.py: sets --warmup and the condition's settings (warmed-reg: warmup, "
        "then the VAA* regulariser with reg_coef 1 and reg_settle_max 1000); options given here override them",
    )
    add_dataclass_arguments(parser.add_argument_group("settings (TrainConfig fields)"), TrainConfig)
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The resolved :class:`TrainConfig` of parsed ``scripts/train.py`` arguments.

    :raises ValueError: an invalid value, an unknown cell or environment id.
    """
    given = given_values(args, TrainConfig)
    condition = getattr(args, "condition", None)
    if condition is not None:
        from rl_warmup.experiment.grid import condition_settings

        implied = condition_settings(condition)
        if "warmup" in given and given["warmup"] != implied["warmup"]:
            raise ValueError(
                f"--condition {condition} means --warmup {implied['warmup']}, not --warmup {given['warmup']}"
            )
        given = {**implied, **given}
    base = TrainConfig.load(args.config) if getattr(args, "config", None) else None
    config = resolve_config(given, base=base)
    check_env_id(config.env_id)
    return config
