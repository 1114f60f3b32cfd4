"""Settings of one training run (:class:`TrainConfig`), per-environment presets, and YAML files.

One frozen dataclass, one docstring per field: the same object feeds :func:`~rl_warmup.experiment.train`,
the command line of ``scripts/train.py`` (see :mod:`rl_warmup.experiment.cli`) and the
``config.yaml`` saved in every run directory.

Where a value comes from, lowest precedence first:

1. the dataclass default;
2. the presets file (``presets.yaml`` of this package unless ``presets`` names another): its
   ``default`` section, then every section whose key is a glob pattern matching the environment id
   (``rl_warmup/PassiveTMaze-*``), in file order, then the section of the exact id;
3. explicit overrides (the command line).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import importlib.util
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from rl_warmup.experiment.cli import coerce_value
from rl_warmup.regularizer import VAARegularizer
from rl_warmup.warmup import WarmupConfig

STOCK_LSTM = "stock_lstm"
"""The ``cell`` value that trains sb3-contrib's own ``MlpLstmPolicy`` (``nn.LSTM``) instead of
:class:`~rl_warmup.sb3.policies.RecurrentCellPolicy`: what a user of ``RecurrentPPO`` has by default."""

CELLS: tuple[str, ...] = ("lstm", "gru", "mgu", "brc", "nbrc", "chrono_lstm", STOCK_LSTM)
"""Cells of :class:`rl_warmup.sb3.policies.RecurrentCellPolicy` (``rl_warmup.cells.CELL_NAMES``), and
:data:`STOCK_LSTM`, sb3-contrib's ``MlpLstmPolicy``."""

WARMUP_MODES: tuple[str, ...] = ("none", "full", "double")
"""``none``: cold start; ``full``: warm the whole recurrent network; ``double``: double layers
(two halves per layer), only the first halves warmed (DLWU)."""

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
"""The package's per-environment hyperparameters."""

_WU = WarmupConfig()
_REG = VAARegularizer()


@dataclass(frozen=True)
class TrainConfig:
    """One RecurrentPPO agent on one environment, cold or warmed up, and how the run is logged."""

    # --- what is trained -------------------------------------------------------------------
    env_id: str = "rl_warmup/PassiveTMaze-v0"
    """Gymnasium id of the environment: one of the project's (``rl_warmup/...``, see
    ``envs.ENVIRONMENTS``) or any registered id; ``module:Id`` imports ``module`` first."""
    cell: str = "lstm"
    """Recurrent cell: lstm, gru, mgu, brc, nbrc or chrono_lstm (RecurrentCellPolicy), or
    stock_lstm (sb3-contrib's own MlpLstmPolicy, or MultiInputLstmPolicy for Dict observations)."""
    hidden_size: int = 64
    """Units per recurrent layer (both halves together for double layers)."""
    n_layers: int = 1
    """Stacked recurrent layers."""
    t_max: int = 100
    """Range of time dependencies of the chrono-LSTM initialisation (other cells ignore it)."""
    lstm_forget_bias: float | None = None
    """LSTM cells (lstm, stock_lstm) only: set every LSTM's forget-gate bias to this when the
    model is built (``bias_ih`` to it, ``bias_hh`` to 0; 1 is Gers et al.'s and Jozefowicz et
    al.'s advice), before any warmup; none: PyTorch's initialisation."""
    warmup: str = "none"
    """Warmup mode: none (cold start), full (whole network warmed) or double (double layers, first
    halves warmed)."""
    prev_action_reward: bool = True
    """Append the previous action (one-hot) and reward to the observation, as the paper's agent."""

    # --- warmup (Algorithm 3); defaults are the paper's -------------------------------------
    warmup_steps: int = _WU.steps
    """Adam steps of the warmup."""
    warmup_lr: float = _WU.lr
    """Adam learning rate of the warmup."""
    warmup_batch_size: int = _WU.batch_size
    """Sequences (initial states) per warmup step."""
    warmup_settle_start: int = _WU.settle_start
    """Initial bound M* of the settling length curriculum."""
    warmup_settle_increment: int = _WU.settle_increment
    """Growth of M* after every warmup step."""
    warmup_settle_max: int = _WU.settle_max
    """Cap on M*; also the settling length of the restart check."""
    warmup_adaptive_settle: bool = _WU.adaptive_settle
    """Halve M* after a step whose batch collapsed (zero gradient) instead of growing it."""
    warmup_epsilon: float = _WU.epsilon
    """Distance under which two states are the same attractor."""
    warmup_target: float = _WU.target
    """Target k of VAA* (loss (VAA*_l - k)^2)."""
    warmup_restart_threshold: float = _WU.restart_threshold
    """Restart the warmup when a layer's VAA* ends above this."""
    warmup_restart_below: float = _WU.restart_below
    """Restart the warmup when a layer's VAA* ends at or below this (collapse); 0: never (paper)."""
    warmup_restart_moving: float | None = _WU.restart_moving
    """Restart the warmup when the outputs still move by more than this per step after the exact
    VAA's settling (chaotic or too extreme); none: never (paper)."""
    warmup_restart_moving_at: int | None = _WU.restart_moving_at
    """Settling length (one of warmup_vaa_checkpoints) at which warmup_restart_moving reads the
    movement; none: the last checkpoint."""
    warmup_restart_horizon: int | None = _WU.restart_horizon
    """Restart the warmup when the exact VAA's memory horizon is shorter than this; none: never (paper)."""
    warmup_restart_vaa_below: float | None = _WU.restart_vaa_below
    """Restart the warmup when the exact VAA of the outputs is below this at warmup_restart_moving_at
    (or the last checkpoint) under some check draw (merged); none: never."""
    warmup_check_draws: int = _WU.check_draws
    """Exact measures, each with its own perturbation, that the horizon/moving/VAA-floor restarts must all pass."""
    warmup_check_settle_steps: int | None = _WU.check_settle_steps
    """Settling length of the check after warmup; none: warmup_settle_max."""
    warmup_max_restarts: int = _WU.max_restarts
    """Re-initialisations allowed before the warmup fails."""
    warmup_detach_prefix: bool = _WU.detach_prefix
    """Run the prefix producing the initial states without gradient (the authors' code: false)."""
    warmup_state_view: str = _WU.state_view
    """Part of each layer's state VAA* compares: state (the paper; h and c for LSTMs) or output (h)."""
    warmup_lstm_forget_bias: float | None = _WU.lstm_forget_bias
    """Set the LSTM forget-gate bias to this before warming; none: keep the initialisation."""
    warmup_lstm_init: str | None = _WU.lstm_init
    """Re-initialise warmable LSTM layers before warming: orthogonal, chrono, or none (keep)."""
    warmup_chrono_t_max: int = _WU.chrono_t_max
    """t_max of warmup_lstm_init=chrono."""
    warmup_input_scale: float = _WU.input_scale
    """Multiply the warmable layers' input weights by this before warming (1: unchanged, the paper)."""
    warmup_perturbations: int = _WU.perturbations
    """Constant perturbations each VAA* is averaged over (1: the paper)."""
    warmup_movement_penalty: float = _WU.movement_penalty
    """Weight of the outputs' last-step movement in the warmup loss (settled steps only); 0: off (the paper)."""
    warmup_grad_clip: float | None = _WU.grad_clip
    """Clip the warmup gradient norm to this; none: no clipping (the paper)."""
    warmup_keep_best: bool = _WU.keep_best
    """End the warmup with the best-scored iterate (loss on a fixed batch) instead of the last one."""
    warmup_best_every: int = _WU.best_every
    """Steps between two scores of warmup_keep_best."""
    warmup_vaa_checkpoints: tuple[int, ...] | None = _WU.vaa_checkpoints
    """Settling lengths of the exact VAA curve measured after warmup (warmup.json); none: skip it."""
    warmup_vaa_n: int = _WU.vaa_n
    """Initial states of that exact measure."""
    warmup_flush_denormal: bool = _WU.flush_denormal
    """Flush subnormal floats to zero during warmup (faster, same results)."""
    warmup_seed: int | None = None
    """Seed of the warmup's draws; none: the run's seed."""
    warmup_episodes: int = 64
    """Random-policy episodes collected for the warmup."""
    warmup_policy: str = "auto"
    """Policy of those episodes: auto (the env's scripted exploration policy if known, else
    uniform), exploration or uniform."""

    # --- RecurrentPPO ----------------------------------------------------------------------
    n_envs: int = 8
    """Parallel training environments (DummyVecEnv)."""
    n_steps: int = 128
    """Steps per environment and rollout; gradients flow only within a rollout, so it must cover
    the memory length of the task."""
    batch_size: int = 256
    """Minibatch size in steps."""
    n_epochs: int = 10
    """Passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate of PPO."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clipping parameter."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""
    enable_critic_lstm: bool = True
    """Give the critic its own recurrent network (warmed too); false: no recurrent critic."""
    net_arch: tuple[int, ...] = (64,)
    """Hidden sizes of the MLP heads after the recurrent network (actor and critic)."""
    normalize: bool = False
    """Wrap the training env in VecNormalize (observations and rewards)."""

    # --- VAA* regulariser (keep multistability during training; rl_warmup.regularizer) -------
    reg_coef: float = 0.0
    """Weight of the VAA* penalty coef * mean_l (VAA*_l - target)^2 in PPO's loss; 0: off."""
    reg_target: float = _REG.target
    """VAA* each layer of the actor is pulled toward."""
    reg_every: int = _REG.every
    """Minibatch updates between two penalties."""
    reg_settle_max: int = _REG.settle_max
    """Each penalty settles for M ~ U{1..reg_settle_max} steps."""
    reg_n_states: int = _REG.n_states
    """Initial states per penalty (random prefixes of the rollout's episodes)."""
    total_timesteps: int = 100_000
    """Environment steps of training, all environments together."""
    seed: int = 0
    """Seed of the agent, the environments (seed + rank), evaluation (seed + 10000) and warmup."""
    device: str = "cpu"
    """Torch device of the policy (cpu, cuda, cuda:1, auto)."""

    # --- logging, evaluation, checkpoints ----------------------------------------------------
    output_dir: str = "runs"
    """Parent directory of the run directory."""
    run_name: str = ""
    """Name of the run directory; empty: <env>__<cell>__<warmup>__s<seed>."""
    eval_freq: int = 5_000
    """Evaluate every this many timesteps (also before training and at the end); 0: only at the
    start and at the end."""
    eval_episodes: int = 20
    """Episodes per evaluation (deterministic actions, fixed evaluation seeds)."""
    success_threshold: float = 0.95
    """Success rate that counts as solved (timesteps to threshold)."""
    return_threshold: float | None = None
    """Where the environment reports no success (POPGym, CartPole...): the mean evaluation
    return that counts as solved, for the timesteps to threshold; none: not measured there."""
    stop_at_threshold: bool = False
    """Stop training at the first evaluation that reaches the threshold (``success_threshold``,
    or ``return_threshold`` where there is no success): the run ends there, ``result.json``
    written, with fewer than ``total_timesteps`` steps. For generous budgets whose only question
    is *when* an agent solves the task (steps to threshold)."""
    checkpoint_freq: int = 10_000
    """Save the checkpoint every this many timesteps (also at the end, on Ctrl-C, SIGTERM or a crash)."""
    vaa_every: int = 10
    """Measure VAA and VAA* every this many rollouts (and at the first one); 0: never."""
    vaa_n: int = 100
    """Initial states of the VAA measures."""
    vaa_settle_steps: int = 10_000
    """Settling length of the exact VAA (the authors' 10000)."""
    vaa_star_settle_steps: int = 200
    """Settling length of the per-layer VAA* (0: skip)."""
    tensorboard: bool = True
    """Write TensorBoard event files (needs the tensorboard package)."""
    progress_bar: bool = True
    """Show a progress bar during training."""
    verbose: int = 0
    """1: also print SB3's log table to stdout."""
    threads: int = 0
    """Torch CPU threads of the process (0: torch's default); set by the entry points."""
    presets: str = ""
    """YAML presets file; empty: the package's rl_warmup/experiment/presets.yaml."""
    resume: bool = False
    """Continue the run in the run directory from its last checkpoint, up to the same total."""

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.warmup not in WARMUP_MODES:
            raise ValueError(f"unknown warmup mode {self.warmup!r}; choose one of {', '.join(WARMUP_MODES)}")
        if self.cell == STOCK_LSTM and self.warmup == "double":
            raise ValueError("warmup=double needs RecurrentCellPolicy's double layers; stock_lstm has none")
        if self.warmup == "double" and self.hidden_size % 2:
            raise ValueError(f"warmup=double splits each layer in two: hidden_size must be even, got {self.hidden_size}")
        positive = ("hidden_size", "n_layers", "n_envs", "n_steps", "batch_size", "n_epochs",
                    "total_timesteps", "eval_episodes", "checkpoint_freq", "warmup_episodes", "vaa_n")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_freq", "vaa_every", "vaa_star_settle_steps", "threads", "verbose"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.vaa_every and self.vaa_settle_steps < 1:
            raise ValueError("vaa_settle_steps must be >= 1")
        if self.warmup_policy not in ("auto", "exploration", "uniform"):
            raise ValueError(f"warmup_policy must be auto, exploration or uniform, got {self.warmup_policy!r}")
        if self.batch_size < 2:
            raise ValueError(
                f"batch_size must be >= 2 (PPO normalises advantages over a minibatch), got {self.batch_size}"
            )
        ranges = (
            ("gamma", 0.0, 1.0, False, "(0, 1]"),
            ("gae_lambda", 0.0, 1.0, True, "[0, 1]"),
            ("clip_range", 0.0, math.inf, False, "(0, inf)"),
            ("learning_rate", 0.0, math.inf, False, "(0, inf)"),
            ("max_grad_norm", 0.0, math.inf, False, "(0, inf)"),
            ("ent_coef", 0.0, math.inf, True, "[0, inf)"),
            ("vf_coef", 0.0, math.inf, True, "[0, inf)"),
        )
        for name, low, high, closed, text in ranges:
            value = getattr(self, name)
            if not (low <= value if closed else low < value) or not value <= high:
                raise ValueError(f"{name} must lie in {text}, got {value}")
        if self.t_max < 1:
            raise ValueError(f"t_max must be >= 1, got {self.t_max}")
        if self.lstm_forget_bias is not None:
            if self.cell not in ("lstm", STOCK_LSTM):
                raise ValueError(f"lstm_forget_bias applies to cell lstm or {STOCK_LSTM}, not {self.cell!r}")
            if not math.isfinite(self.lstm_forget_bias):
                raise ValueError(f"lstm_forget_bias must be finite, got {self.lstm_forget_bias}")
        check_device_name(self.device)
        if not 0 < self.success_threshold <= 1:
            raise ValueError(f"success_threshold must lie in (0, 1], got {self.success_threshold}")
        if self.run_name and (self.run_name in (".", "..") or "/" in self.run_name):
            raise ValueError(f"run_name must be a plain directory name, got {self.run_name!r}")
        self.warmup_config()  # validates the warmup fields
        self.vaa_regularizer()  # and the regulariser's

    # -- derived -----------------------------------------------------------------------------
    def warmup_config(self) -> WarmupConfig:
        """The :class:`WarmupConfig` of the ``warmup_*`` fields."""
        # A WarmupConfig field without a warmup_<name> counterpart keeps WarmupConfig's default.
        values = {
            f.name: getattr(self, f"warmup_{f.name}")
            for f in fields(WarmupConfig)
            if hasattr(self, f"warmup_{f.name}")
        }
        if values.get("seed") is None:
            values["seed"] = self.seed
        return WarmupConfig(**values)

    def vaa_regularizer(self) -> VAARegularizer | None:
        """The :class:`VAARegularizer` of the ``reg_*`` fields; ``None`` when ``reg_coef`` is 0."""
        return VAARegularizer.from_reg_fields(self, self.warmup_epsilon, self.seed)

    @property
    def run_dir(self) -> Path:
        """``output_dir / run_name`` (the automatic name when ``run_name`` is empty)."""
        return Path(self.output_dir) / (self.run_name or default_run_name(self))

    def policy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~rl_warmup.sb3.policies.RecurrentCellPolicy` (of
        sb3-contrib's ``MlpLstmPolicy`` for ``cell="stock_lstm"``)."""
        if self.cell == STOCK_LSTM:
            return {
                "lstm_hidden_size": self.hidden_size,
                "n_lstm_layers": self.n_layers,
                "enable_critic_lstm": self.enable_critic_lstm,
                "net_arch": list(self.net_arch),
            }
        return {
            "cell": self.cell,
            "double": self.warmup == "double",
            "t_max": self.t_max,
            "lstm_hidden_size": self.hidden_size,
            "n_lstm_layers": self.n_layers,
            "enable_critic_lstm": self.enable_critic_lstm,
            "net_arch": list(self.net_arch),
        }

    # -- files -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), in field order: what ``config.yaml`` holds."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **coerce_fields(changes))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "settings") -> TrainConfig:
        """Build from plain values, e.g. a ``config.yaml``; unknown keys raise a clear error."""
        return cls(**coerce_fields(values, source=source))

    def save(self, path: str | Path) -> None:
        """Write the resolved configuration as YAML (what reproduces the run)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(dump_yaml(self.to_dict(), header=_CONFIG_HEADER))
        os.replace(tmp, path)  # atomic: a crash never leaves half a config

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a configuration saved by :meth:`save`."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig fields")
        return cls.from_dict(data, source=str(path))


RUNTIME_FIELDS: frozenset[str] = frozenset(
    {"progress_bar", "verbose", "threads", "resume", "device", "presets", "tensorboard"}
)
"""Fields that may change when a run is resumed: they do not change what is computed."""

_CONFIG_HEADER = (
    "# Resolved configuration of this run (defaults, presets and command line merged).\n"
    "# Reproduce it with: python scripts/train.py --config <this file>\n"
)


def default_run_name(config: TrainConfig) -> str:
    """``<env>__<cell>__<warmup>__s<seed>`` with the env id made file-name safe."""
    return f"{safe_name(config.env_id)}__{config.cell}__{config.warmup}__s{config.seed}"


def safe_name(text: str) -> str:
    """``rl_warmup/PassiveTMaze-v0`` -> ``rl_warmup-PassiveTMaze-v0``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def dump_yaml(data: Mapping[str, Any], *, header: str = "") -> str:
    """YAML text of a flat mapping, keys in the given order."""
    return header + yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


# -- type coercion ---------------------------------------------------------------------------
_FIELDS = {f.name: f for f in fields(TrainConfig)}


def coerce_field(name: str, value: Any, *, source: str = "settings") -> Any:
    """Convert a value (YAML scalar, command-line text) to the type of TrainConfig field ``name``."""
    if name not in _FIELDS:
        raise ValueError(f"{source}: unknown TrainConfig field {name!r}; see scripts/train.py --help")
    return coerce_value(TrainConfig, name, value, source=source)


def coerce_fields(values: Mapping[str, Any], *, source: str = "settings") -> dict[str, Any]:
    """:func:`coerce_field` over a mapping."""
    return {k: coerce_field(k, v, source=source) for k, v in values.items()}


# -- presets ---------------------------------------------------------------------------------
def load_presets(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read a presets file: ``{section: {field: value}}``, fields checked against TrainConfig.

    :param path: YAML file; the package's ``presets.yaml`` when ``None`` or empty.
    """
    path = Path(path) if path else PRESETS_FILE
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a presets file maps section names to mappings of TrainConfig fields")
    for section, values in data.items():
        if not isinstance(values, dict):
            raise ValueError(f"{path}: section {section!r} must be a mapping of TrainConfig fields")
        for key in values:
            if key in ("env_id", "presets", "resume"):
                raise ValueError(f"{path}: section {section!r} may not set {key!r}")
            if key not in _FIELDS:
                raise ValueError(f"{path}: section {section!r}: unknown TrainConfig field {key!r}")
    return data


def preset_for(env_id: str, presets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merged preset of an environment id: ``default``, matching glob sections, exact section."""
    name = env_id.split(":", 1)[-1]
    merged: dict[str, Any] = dict(presets.get("default", {}))
    for key, values in presets.items():
        if key != "default" and key != name and any(c in key for c in "*?[") and fnmatch.fnmatchcase(name, key):
            merged.update(values)
    merged.update(presets.get(name, {}))
    return merged


def resolve_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """The configuration of a run: defaults, then the environment's preset, then ``overrides``.

    With ``base`` (e.g. a saved ``config.yaml``) presets are not applied: ``base`` replaces steps
    1-2 and ``overrides`` apply on top.

    :param overrides: field values that win over everything else (strings are converted).
    :param base: a complete configuration to start from.
    """
    overrides = coerce_fields(dict(overrides or {}), source="overrides")
    if base is not None:
        return base.replace(**overrides)
    env_id = overrides.get("env_id", TrainConfig.env_id)
    presets = load_presets(overrides.get("presets") or None)
    values = coerce_fields(preset_for(env_id, presets), source=f"preset of {env_id}")
    values.update(overrides)
    return TrainConfig(**values)


# -- environment ids ---------------------------------------------------------------------------
def check_env_id(env_id: str) -> None:
    """Raise a clear ``ValueError`` if gymnasium does not know ``env_id``.

    The project's ids are registered by importing :mod:`envs`; ``module:Id`` imports ``module``.
    """
    import gymnasium as gym

    import envs

    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"environment id {env_id!r}: cannot import module {module!r} ({e})") from e
    if name.startswith("popgym-") and name not in gym.registry:
        try:
            importlib.import_module("popgym")  # registers the popgym-* ids
        except ImportError:
            raise ValueError(
                f"environment id {env_id!r} is a POPGym id and popgym is not installed: "
                'pip install "rl-warmup[popgym]"'
            ) from None
    try:
        gym.spec(name)
    except gym.error.Error as e:
        ours = ", ".join(sorted(envs.ENVIRONMENTS))
        raise ValueError(
            f"unknown environment id {env_id!r} ({e}). The project's ids are: {ours}. Any other "
            "registered gymnasium id works too; for a third-party package's id write 'module:Id'."
        ) from None


# -- what the machine must offer ----------------------------------------------------------------
def check_device_name(device: str) -> None:
    """Raise a ``ValueError`` unless ``device`` is ``auto`` or a torch device name (``cpu``,
    ``cuda``, ``cuda:1``, ``mps``); whether the machine has it is :func:`check_runtime`'s job."""
    if device == "auto":
        return
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}") from None


def check_runtime(config: TrainConfig) -> None:
    """Check, before any work starts, what a run needs from this machine: the device exists, the
    TensorBoard package is there when ``tensorboard`` is on, and the output directory can be made.

    :raises ValueError: with one line saying what is wrong and what to pass instead.
    """
    import torch

    if config.device != "auto":
        device = torch.device(config.device)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {config.device!r}: this torch has no CUDA device; pass --device cpu (or auto)")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"device {config.device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
                )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {config.device!r}: MPS is not available here; pass --device cpu (or auto)")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install tensorboard (or the "
            "project's [tensorboard] extra), or pass --no-tensorboard (tensorboard=False)"
        )
    out = Path(config.output_dir)
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"output_dir {config.output_dir!r}: {existing} is a file, not a directory")
    if existing is not None and existing != out and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir {config.output_dir!r}: cannot create it, {existing} is not writable")
    if existing == out and not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir {config.output_dir!r} is not writable")
