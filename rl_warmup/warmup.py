"""The warmup procedure (Algorithm 3 of Lambrechts et al. 2023).

Before training, a few Adam steps push each layer's VAA* towards a target below 1, so that the
network starts with many attractors reachable from real inputs. Warmup is unsupervised: only
input sequences are needed.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rl_warmup.cells import RecurrentLayer, RecurrentNetwork, set_lstm_forget_bias
from rl_warmup.vaa import (
    VIEWS,
    SequencesLike,
    VAAMeasurement,
    initial_states,
    layer_vaa_stars,
    measure_vaa,
    pad_sequences,
    stars_and_movement,
)

AFTER_CHECKPOINTS: tuple[int, ...] = (100, 200, 500, 1000, 2000, 5000)
"""Settling lengths of the exact VAA curve measured after warmup (:attr:`WarmupResult.vaa`)."""


class WarmupError(RuntimeError):
    """Warmup could not produce a usable network, even after restarts."""


def _check_field_types(config: Any) -> None:
    """Refuse a value of the wrong type for a dataclass field (``steps=2.5``, ``lr="1e-2"``) with
    one line naming the field; numpy scalars are turned into Python ones."""
    for f in fields(config):
        value = getattr(config, f.name)
        kind = str(f.type).replace(" ", "")
        if kind.endswith("|None"):
            if value is None:
                continue
            kind = kind.removesuffix("|None")
        name = f"{type(config).__name__}.{f.name}"
        if kind == "bool":
            ok = isinstance(value, bool | np.bool_)
            value = bool(value) if ok else value
        elif kind == "int":
            ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
            value = int(value) if ok else value
        elif kind == "float":
            ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)
            value = float(value) if ok else value
        elif kind == "str":
            ok = isinstance(value, str)
        elif kind.startswith("tuple[int"):
            ok = isinstance(value, list | tuple) and all(
                isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value
            )
            value = tuple(int(v) for v in value) if ok else value
        else:  # pragma: no cover - a new field type must be added above
            raise TypeError(f"{name}: unsupported field type {f.type!r}")
        if not ok:
            expected = {"int": "an integer", "float": "a number", "bool": "True or False", "str": "a string"}.get(
                kind, "a sequence of integers"
            )
            raise ValueError(f"{name} must be {expected}, got {getattr(config, f.name)!r}")
        object.__setattr__(config, f.name, value)


@dataclass(frozen=True)
class WarmupConfig:
    """Settings of :func:`warmup`; the defaults are the paper's (and its authors' code)."""

    steps: int = 100
    """``S``: Adam steps per attempt."""
    lr: float = 1e-2
    """Adam learning rate."""
    batch_size: int = 32
    """``n``: sequences (initial states) per step."""
    settle_start: int = 1
    """Initial value of the curriculum bound ``M*`` on the settling length."""
    settle_increment: int = 10
    """``c``: ``M*`` grows by this after every step."""
    settle_max: int = 200
    """``M``: cap on ``M*``; also the settling length of the final restart check."""
    adaptive_settle: bool = False
    """Let the curriculum follow the network: after a step whose batch collapsed in some layer
    (VAA* at most ``2 / batch_size``, where VAA* is flat and the gradient is exactly zero),
    ``M*`` is halved instead of grown, so that the next steps settle only as long as the
    network's states stay apart, and the gradient says how to keep them apart longer. ``False``:
    the paper's schedule ``M* = settle_start + settle_increment * step`` (capped at
    ``settle_max``), under which a fast-contracting network (an LSTM at torch's initialisation
    merges its states within ~100 steps) gets zero gradient at many steps (about 40 % of the
    paper's warmup steps on T-Maze features, ``docs/lstm_warmup.md``)."""
    epsilon: float = 1e-4
    """``ε``: distance under which two states count as the same attractor."""
    target: float = 0.95
    """``k``: the loss is the mean over layers of ``(VAA*_l - k)²``."""
    restart_threshold: float = 0.98
    """After warmup, a layer whose VAA* exceeds this is stuck in extreme states: restart."""
    restart_below: float = 0.0
    """After warmup, a layer whose VAA* is at or below this has collapsed into (nearly) a single
    attractor, where VAA*'s gradient vanishes: restart. ``0`` disables the rule (the paper has
    none). LSTMs fall there often (see the README); ``0.1`` catches it."""
    restart_moving: float | None = None
    """After warmup, restart when the outputs of some state still move by more than this per
    step at the last of ``vaa_checkpoints`` (states that never settle: chaotic or oscillating,
    the "too extreme" case that ``restart_threshold`` does not always catch). ``None``: no such
    rule (the paper)."""
    restart_moving_at: int | None = None
    """Settling length, one of ``vaa_checkpoints``, at which ``restart_moving`` reads the outputs'
    movement; ``None``: the last checkpoint. A memory asked to last ``T`` steps is judged at
    ``T`` while the horizon rule needs a checkpoint past it (see ``restart_horizon``): e.g.
    checkpoints ``(100, 200, 500, 1000, 2000)``, ``restart_horizon=2000``,
    ``restart_moving_at=1000``."""
    restart_horizon: int | None = None
    """After warmup, restart when the memory horizon of the exact VAA of the outputs (the first
    of ``vaa_checkpoints`` at which it fell below half its value at the first one, see
    :attr:`rl_warmup.vaa.VAACurve.horizon`) is shorter than this: the states reached from real
    inputs merge within fewer steps than the memory asked for. A warmup that only made short
    transients (VAA* high at ``settle_max`` steps, one attractor a few hundred steps later, the
    common LSTM outcome) is tried again. ``None``: no such rule (the paper)."""
    restart_vaa_below: float | None = None
    """After warmup, restart when the exact VAA of the outputs under some check draw is below this
    at ``restart_moving_at`` (the last of ``vaa_checkpoints`` when that is ``None``). The horizon
    rule alone lets through outputs that have merged before the first checkpoint (a curve that
    starts at 1/n never halves, so it has no horizon) or that halve exactly at ``restart_horizon``;
    a floor at the memory's length closes both (the issue's lasting target: VAA(h, M = 1 000)
    >= 0.1). ``None``: no such rule."""
    check_draws: int = 3
    """Independent exact measures (each with its own initial states and constant perturbation) that
    ``restart_horizon``, ``restart_vaa_below`` and ``restart_moving`` must all pass. An LSTM's memory horizon varies with
    the perturbation (one warmed 1 x 32 network: 2000+ steps under three draws, 1000 under a
    fourth); more draws certify more directions and restart more often. Unused without those rules."""
    check_settle_steps: int | None = None
    """Settling length of the check after warmup (``settle_max`` when ``None``). States can keep
    merging slowly past ``settle_max``; a longer check (e.g. 1000) sees that collapse."""
    max_restarts: int = 3
    """Re-initialisations allowed (for the thresholds above or a non-finite loss) before failing."""
    detach_prefix: bool = False
    """Run the prefix that produces the initial states without gradient (cheaper). The authors'
    code lets the gradient flow through it (``False``)."""
    seed: int | None = 0
    """Seed of the warmup's own random draws (batches, truncations, ``M``, perturbations,
    re-initialisations); ``None`` draws a fresh seed."""
    state_view: str = "state"
    """Part of each layer's state that VAA* compares: ``"state"`` (the paper: the whole state,
    ``tanh`` of ``h`` and ``c`` for an LSTM) or ``"output"`` (``tanh(h)`` only). Identical for
    cells whose state is their output (GRU, MGU, BRC, nBRC)."""
    lstm_forget_bias: float | None = None
    """Before warming, set the forget-gate bias of every warmable LSTM layer to this value
    (``bias_ih`` to it, ``bias_hh`` to 0; also after each restart). ``None`` keeps the
    initialisation (the paper)."""
    lstm_init: str | None = None
    """Before warming (and after each restart), re-initialise every warmable LSTM layer, before
    ``lstm_forget_bias``: ``"orthogonal"`` gives it the paper authors' GRU initialisation
    (Xavier-uniform input weights, orthogonal recurrent weights per gate, zero biases);
    ``"chrono"`` sets the chrono gate biases of Tallec & Ollivier (forget-gate bias
    ``log U(1, chrono_t_max - 1)`` per unit, input-gate bias its negative, so that the cell
    state starts as a slowly leaking, weakly driven memory), other weights kept. ``None`` keeps
    the network's initialisation (the paper)."""
    chrono_t_max: int = 1000
    """``t_max`` of ``lstm_init="chrono"``: the longest time dependency the gates start with."""
    input_scale: float = 1.0
    """Before warming (and after each restart, after ``lstm_init`` and ``lstm_forget_bias``),
    multiply every warmable layer's input weights by this. ``1``: unchanged (the paper). Below 1
    the input drives the gates less: on high-dimensional inputs (MiniGrid Memory's 151 features)
    a perturbation ``u ~ N(0, I)`` drives them ~6x harder than on the T-Maze's 6, and warmed
    1 x 32 LSTMs merge under it (``docs/lstm_warmup.md``, *Scaling the input weights*)."""
    perturbations: int = 1
    """``K``: each step's VAA* is the mean over ``K`` constant perturbations of the same initial
    states (one batched settling pass of ``K * batch_size`` states); also for the final check
    and ``keep_best``. ``1``: the paper's single perturbation. Multistability depends on the
    perturbation; averaging smooths the objective and keeps a gradient where one perturbation
    merges every state and another does not. On high-dimensional inputs (MiniGrid Memory's 151
    features, stock 1 x 32 LSTM) 32 instead of 8 made networks that pass the check draws far more
    often (29 restarts over ten warmups instead of 77, none out of restarts), at about 4x the
    cost of a step (``docs/lstm_warmup.md``, *A loss over more constant inputs*)."""
    movement_penalty: float = 0.0
    """Add ``movement_penalty`` times each layer's mean last-step movement of its outputs,
    ``mean_i ||h_i(M) - h_i(M - 1)||`` over the settled states of the step (all perturbations),
    to the loss, at steps whose drawn settling length ``M`` is at least half of ``settle_max``
    (earlier states are still in their transient). VAA* counts states that still drift apart as
    distinct, so its gradient can favour slow drift over settling; this term asks for states
    that stay where they are (the lasting target: outputs moving less than 1e-3 per step after
    1 000 steps, a *largest* movement, where this term is a mean so that every state gets a
    gradient). ``keep_best``'s score leaves the term out. ``0``: off (the paper), and the draws
    and results are exactly those without the option. With ``10`` on top of the MiniGrid Memory
    setting of ``docs/lstm_warmup.md`` (stock 1 x 32 LSTM, ``input_scale=0.3``,
    ``perturbations=32``, ``settle_max=1000``, eight check draws) the outputs lasted 1 000 steps
    in 9 of 10 seeds instead of 8, with no more time per warmup."""
    grad_clip: float | None = None
    """Clip the norm of the warmup gradient (all warmable parameters together) to this before each
    Adam step; ``None``: no clipping (the paper)."""
    keep_best: bool = False
    """Every ``best_every`` steps, score the network by the warmup loss averaged over 4 fixed
    batches, each with its own fixed perturbation, at one settling length (``check_settle_steps``
    or ``settle_max``), and end with the best-scored iterate instead of the last one. The last iterate of an LSTM warmup
    can be a collapse even when a good network was passed a few steps earlier."""
    best_every: int = 5
    """Steps between two scores of ``keep_best`` (the last step is always scored)."""
    vaa_checkpoints: tuple[int, ...] | None = AFTER_CHECKPOINTS
    """After a successful warmup, measure the exact VAA of the network's outputs at these
    settling lengths in one pass (``WarmupResult.vaa``: the curve, its memory horizon, the
    states' movement and non-finite count); ``None`` skips it."""
    vaa_n: int = 100
    """Initial states of that exact measure."""
    flush_denormal: bool = True
    """While warming up, treat subnormal floats (``< 1.2e-38`` in float32) as zero on the calling
    CPU thread, then restore the previous mode. Through a long prefix of a contracting network
    (a fresh one) the gradient decays into that range, where x86 arithmetic is many times slower:
    a 2x256 GRU step at ``T = 300`` took 2.1 s instead of 1.1 s at initialisation (no measurable
    difference once warmup has moved the weights). Values that small are below float32
    resolution of anything they are added to: results are the same. Threads of torch's intra-op
    pool created before the call keep their own mode."""


    def __post_init__(self) -> None:
        _check_field_types(self)
        for name in ("steps", "batch_size", "settle_start", "settle_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"WarmupConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"WarmupConfig.batch_size must be >= 2 (VAA* compares states), got {self.batch_size}")
        if self.settle_increment < 0:
            raise ValueError(f"WarmupConfig.settle_increment must be >= 0, got {self.settle_increment}")
        if self.settle_start > self.settle_max:
            raise ValueError("WarmupConfig.settle_start must not exceed settle_max")
        if not self.lr > 0 or not self.epsilon > 0:
            raise ValueError("WarmupConfig.lr and epsilon must be > 0")
        if not 0 < self.target <= 1:
            raise ValueError(f"WarmupConfig.target must lie in (0, 1], got {self.target}")
        if not 0 < self.restart_threshold <= 1:
            raise ValueError(
                f"WarmupConfig.restart_threshold must lie in (0, 1] (1 disables the rule), got {self.restart_threshold}"
            )
        if not 0 <= self.restart_below < self.restart_threshold:
            raise ValueError(
                f"WarmupConfig.restart_below must lie in [0, restart_threshold), got {self.restart_below}"
            )
        if self.check_settle_steps is not None and self.check_settle_steps < 1:
            raise ValueError(f"WarmupConfig.check_settle_steps must be >= 1, got {self.check_settle_steps}")
        if self.max_restarts < 0:
            raise ValueError(f"WarmupConfig.max_restarts must be >= 0, got {self.max_restarts}")
        if self.state_view not in VIEWS:
            raise ValueError(f"WarmupConfig.state_view must be one of {', '.join(VIEWS)}, got {self.state_view!r}")
        if self.lstm_forget_bias is not None and not math.isfinite(self.lstm_forget_bias):
            raise ValueError(f"WarmupConfig.lstm_forget_bias must be finite or None, got {self.lstm_forget_bias}")
        if self.lstm_init not in (None, "orthogonal", "chrono"):
            raise ValueError(f"WarmupConfig.lstm_init must be None, 'orthogonal' or 'chrono', got {self.lstm_init!r}")
        if not (math.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"WarmupConfig.input_scale must be finite and > 0, got {self.input_scale}")
        if self.chrono_t_max < 3:
            raise ValueError(f"WarmupConfig.chrono_t_max must be >= 3, got {self.chrono_t_max}")
        if self.perturbations < 1:
            raise ValueError(f"WarmupConfig.perturbations must be >= 1, got {self.perturbations}")
        if not (math.isfinite(self.movement_penalty) and self.movement_penalty >= 0):
            raise ValueError(f"WarmupConfig.movement_penalty must be a finite number >= 0, got {self.movement_penalty}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"WarmupConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.best_every < 1:
            raise ValueError(f"WarmupConfig.best_every must be >= 1, got {self.best_every}")
        if self.vaa_checkpoints is not None:
            if len(self.vaa_checkpoints) == 0 or any(int(m) < 1 for m in self.vaa_checkpoints):
                raise ValueError(f"WarmupConfig.vaa_checkpoints must be settling lengths >= 1, got {self.vaa_checkpoints}")
            object.__setattr__(self, "vaa_checkpoints", tuple(sorted({int(m) for m in self.vaa_checkpoints})))
        if self.check_draws < 1:
            raise ValueError(f"WarmupConfig.check_draws must be >= 1, got {self.check_draws}")
        if self.restart_moving is not None:
            if not self.restart_moving > 0:
                raise ValueError(f"WarmupConfig.restart_moving must be > 0 or None, got {self.restart_moving}")
            if self.vaa_checkpoints is None:
                raise ValueError("WarmupConfig.restart_moving reads the exact VAA after warmup: set vaa_checkpoints")
        if self.restart_moving_at is not None:
            if self.restart_moving is None:
                raise ValueError("WarmupConfig.restart_moving_at needs restart_moving")
            if self.vaa_checkpoints is None or int(self.restart_moving_at) not in self.vaa_checkpoints:
                raise ValueError(
                    f"WarmupConfig.restart_moving_at must be one of vaa_checkpoints {self.vaa_checkpoints}, "
                    f"got {self.restart_moving_at}"
                )
        if self.restart_vaa_below is not None:
            if not 0 < self.restart_vaa_below <= 1:
                raise ValueError(f"WarmupConfig.restart_vaa_below must lie in (0, 1] or be None, got {self.restart_vaa_below}")
            if self.vaa_checkpoints is None:
                raise ValueError("WarmupConfig.restart_vaa_below reads the exact VAA after warmup: set vaa_checkpoints")
        if self.restart_horizon is not None:
            if self.restart_horizon < 1:
                raise ValueError(f"WarmupConfig.restart_horizon must be >= 1 or None, got {self.restart_horizon}")
            if self.vaa_checkpoints is None or self.restart_horizon > self.vaa_checkpoints[-1]:
                raise ValueError(
                    "WarmupConfig.restart_horizon reads the exact VAA curve after warmup: vaa_checkpoints must "
                    f"reach it (last checkpoint {None if self.vaa_checkpoints is None else self.vaa_checkpoints[-1]}, "
                    f"restart_horizon {self.restart_horizon})"
                )
        if self.vaa_n < 2:
            raise ValueError(f"WarmupConfig.vaa_n must be >= 2, got {self.vaa_n}")

    @classmethod
    def lstm(cls, **changes: Any) -> WarmupConfig:
        """The setting measured best for LSTMs (``docs/lstm_warmup.md``): the paper's warmup with
        the gradient clipped to norm 1, VAA* averaged over 8 perturbations, and restarts when the
        warmed network collapsed (VAA* at most 0.07) or never settles (outputs still moving more
        than 0.01 per step after 5 000 steps), up to 10 times.

        On random-policy features of 1 x 32 LSTM policies (10 seeds) it collapsed in 0/10 seeds on
        the Passive T-Maze and the T-Maze, against 4/10 and 6/10 for the paper's warmup; warmed
        LSTM policies reached 95 % success in 8 of 20 RL runs against 1 of 20. It is not
        reliable yet. With 3 restarts (the paper's ``max_restarts``) one of those 20 runs ended
        in ``WarmupError``, every attempt chaotic; with 10 it trained.

        :param changes: fields to set on top (e.g. ``seed=3``).
        """
        base = {"grad_clip": 1.0, "perturbations": 8, "restart_below": 0.07, "restart_moving": 1e-2, "max_restarts": 10}
        return cls(**{**base, **changes})

    @classmethod
    def lstm_lasting(cls, memory: int, **changes: Any) -> WarmupConfig:
        """:meth:`lstm` with the restarts certifying a memory of ``memory`` steps (variant
        *ck8-h8m* of ``docs/lstm_warmup.md``, there with ``memory=1000``).

        After warmup the exact VAA of the outputs is measured on eight fresh draws
        (``check_draws``) at ``vaa_checkpoints`` up to ``2 * memory``; the network is re-initialised
        and warmed again (up to 20 times) unless, on every draw, the VAA has not halved by
        ``2 * memory`` settling steps (``restart_horizon``) and the outputs move less than 1e-3
        per step after ``max(memory, 1000)`` steps (``restart_moving_at``: the movement rule
        refuses chaos, and a state still converging after a few hundred steps is not chaotic;
        read at ``memory = 250`` it made 3 of the first 9 RL warmups at L = 250 run out of
        restarts, ``docs/ladder.md``). On random-policy features of
        T-Maze and Passive T-Maze LSTM policies (1 x 32, 2 x 32 and 1 x 64, stock and
        ``RecurrentCellPolicy``; twelve configurations of 10 seeds, ``memory=1000``) 8 to 10 of
        10 warmups, 111 of 120 in all, then kept a VAA of ``h`` of at least 0.1 at M = 1 000 with
        ``h`` moving less than 1e-3 per step, against 6 to 10 (106 of 120) with :meth:`lstm` plus
        the horizon rule alone; a warmup costs 1.2-5x more time (more restarts), and one in 120 ran
        out of restarts (:class:`WarmupError`). The misses are perturbations the eight draws did
        not sample: with ``check_draws=32, max_restarts=60`` none of 20 certified networks
        missed, and the two configurations left at 8/10 reached 10/10, at 2.6-3.3x the time per
        warmup. On inputs of many more dimensions than the T-Maze's, add ``input_scale=0.3``.

        :param memory: settling steps the separation must last (the task's memory length).
        :param changes: fields to set on top.
        """
        memory = int(memory)
        if memory < 1:
            raise ValueError(f"memory must be >= 1 step, got {memory}")
        moving_at = max(memory, 1000)
        checkpoints = tuple(sorted({m for m in (100, 200, 500) if m < memory} | {memory, 2 * memory, moving_at}))
        lasting = {
            "vaa_checkpoints": checkpoints,
            "restart_horizon": 2 * memory,
            "restart_moving": 1e-3,
            "restart_moving_at": moving_at,
            "check_draws": 8,
            "max_restarts": 20,
        }
        return cls.lstm(**{**lasting, **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WarmupResult:
    """What :func:`warmup` did.

    :param vaa_star_history: per step of the last attempt, the VAA* of each layer.
    :param loss_history: per step of the last attempt, the loss.
    :param settle_history: per step of the last attempt, the settling length ``M`` drawn (below
        the curriculum's bound ``M*``, which ``adaptive_settle`` makes follow the network).
    :param grad_norm_history: per step of the last attempt, the norm of the loss gradient over
        all warmable parameters (before ``grad_clip``); 0 when every state of the batch fell in
        one attractor, where VAA* is flat.
    :param final_vaa_star: per layer, VAA* measured after warmup (``check_settle_steps`` or ``settle_max`` steps, fresh batch).
    :param restarts: re-initialisations that were needed.
    :param restart_reasons: why each restart happened.
    :param best_step: with ``keep_best``, the step (0-based) whose iterate was kept; ``None``
        when the last one was.
    :param collapse_level: ``2 / batch_size``: a layer whose final VAA* is at or below it has
        (nearly) all its states in one attractor (see :attr:`collapsed_layers`).
    :param vaa: the exact VAA of the network's outputs after warmup, with its curve over
        ``vaa_checkpoints`` and the memory horizon (``None`` when not measured).
    """

    vaa_star_history: list[list[float]] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    settle_history: list[int] = field(default_factory=list)
    grad_norm_history: list[float] = field(default_factory=list)
    final_vaa_star: list[float] = field(default_factory=list)
    restarts: int = 0
    restart_reasons: list[str] = field(default_factory=list)
    best_step: int | None = None
    collapse_level: float = 0.0
    vaa: VAAMeasurement | None = None

    @property
    def collapsed_layers(self) -> list[int]:
        """Layers whose final VAA* is at or below :attr:`collapse_level` (a collapse: one attractor)."""
        return [i for i, v in enumerate(self.final_vaa_star) if v <= self.collapse_level]


def _settle_bound(config: WarmupConfig, step: int) -> int:
    """``M*`` at step ``step`` (0-based)."""
    return min(config.settle_start + config.settle_increment * step, config.settle_max)


def warmup(
    network: RecurrentNetwork,
    sequences: SequencesLike,
    config: WarmupConfig | None = None,
    *,
    lengths: Tensor | Sequence[int] | None = None,
    progress: bool = False,
    callback: Callable[[int, float, list[float]], None] | None = None,
) -> WarmupResult:
    """Warm up ``network`` in place so that each layer becomes multistable (Algorithm 3).

    Only :meth:`RecurrentNetwork.warmable_parameters` change; the ``.grad`` of every parameter
    is left as it was. The device is the network's.

    :param network: the network to warm up.
    :param sequences: input sequences (list of ``(T_i, I)`` or padded ``(N, T, I)``).
    :param config: settings; the paper's defaults when ``None``.
    :param lengths: valid lengths of a padded batch.
    :param progress: show a progress bar (tqdm).
    :param callback: called after every step with ``(step, loss, vaa_star_per_layer)``.
    :raises WarmupError: the loss became non-finite, or a layer stayed above
        ``restart_threshold``, more than ``max_restarts`` times.
    """
    config = config or WarmupConfig()
    if not isinstance(network, RecurrentNetwork):
        raise TypeError(
            f"warmup expects a RecurrentNetwork, got {type(network).__name__}; "
            "wrap a torch nn.LSTM/nn.GRU with RecurrentNetwork.from_torch(module)"
        )
    padded, lens = pad_sequences(sequences, lengths, input_size=network.input_size)
    # a fresh seed from the OS, not from torch's global generator (left untouched)
    seed = config.seed if config.seed is not None else secrets.randbits(62)
    generator = torch.Generator().manual_seed(seed)
    params = list(dict.fromkeys(network.warmable_parameters()))
    saved_grads = [p.grad for p in params]
    result = WarmupResult(collapse_level=2.0 / config.batch_size)
    _prepare_layers(network, config, generator)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc="warmup", unit="step")
    try:
        with _denormals_flushed(config.flush_denormal):
            return _attempts(network, padded, lens, config, params, generator, result, bar, callback)
    finally:
        for p, g in zip(params, saved_grads, strict=True):
            p.grad = g
        if bar is not None:
            bar.close()


def _flushing_denormals() -> bool:
    """Whether the calling thread flushes subnormal floats to zero (a 1e-39 reads as 0)."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@contextlib.contextmanager
def _denormals_flushed(enabled: bool) -> Iterator[None]:
    """``torch.set_flush_denormal(True)`` inside the block when asked, the previous mode after."""
    if not enabled or _flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _attempts(
    network: RecurrentNetwork,
    padded: Tensor,
    lens: Tensor,
    config: WarmupConfig,
    params: list[torch.nn.Parameter],
    generator: torch.Generator,
    result: WarmupResult,
    bar: Any,
    callback: Callable[[int, float, list[float]], None] | None,
) -> WarmupResult:
    """Attempts and restarts until one succeeds or ``max_restarts`` is spent."""
    while True:
        reason = _attempt(network, padded, lens, config, params, generator, result, bar, callback)
        if reason is None:
            return result
        if result.restarts >= config.max_restarts:
            raise WarmupError(
                f"warmup failed after {result.restarts} restart(s): {reason}. Try a smaller lr "
                f"(now {config.lr}), a lower target (now {config.target}), or more max_restarts."
            )
        result.restarts += 1
        result.restart_reasons.append(reason)
        for layer in network.layers:
            layer.reset_warmable_parameters(generator)
        _prepare_layers(network, config, generator)


def _prepare_layers(network: RecurrentNetwork, config: WarmupConfig, generator: torch.Generator) -> None:
    """``lstm_init`` (drawn from the warmup's generator), then ``lstm_forget_bias`` (``bias_ih``
    to it, ``bias_hh`` to 0), on every warmable LSTM part; then ``input_scale`` on every warmable
    part."""
    if config.lstm_init is not None or config.lstm_forget_bias is not None:
        _prepare_lstm_gates(network, config, generator)
    if config.input_scale != 1.0:
        with torch.no_grad():
            for layer in network.layers:
                layer.warm_part.input_weight().mul_(config.input_scale)


def _prepare_lstm_gates(network: RecurrentNetwork, config: WarmupConfig, generator: torch.Generator) -> None:
    """``lstm_init`` then ``lstm_forget_bias`` on every warmable LSTM part."""
    for layer in network.layers:
        part: RecurrentLayer = layer.warm_part
        if not getattr(part, "is_lstm", False):
            continue
        rnn = part.rnn  # type: ignore[attr-defined]
        h = part.hidden_size
        with torch.no_grad():  # torch's gate order: input, forget, cell, output
            if config.lstm_init == "orthogonal":
                for g in range(4):
                    torch.nn.init.xavier_uniform_(rnn.weight_ih_l0[g * h : (g + 1) * h], generator=generator)
                    torch.nn.init.orthogonal_(rnn.weight_hh_l0[g * h : (g + 1) * h], generator=generator)
                rnn.bias_ih_l0.zero_()
                rnn.bias_hh_l0.zero_()
            elif config.lstm_init == "chrono":
                u = torch.rand(h, generator=generator) * (config.chrono_t_max - 2) + 1
                b_f = torch.log(u).to(device=rnn.bias_ih_l0.device, dtype=rnn.bias_ih_l0.dtype)
                rnn.bias_ih_l0[:h] = -b_f
                rnn.bias_ih_l0[h : 2 * h] = b_f
                rnn.bias_hh_l0[: 2 * h] = 0.0
        if config.lstm_forget_bias is not None:
            set_lstm_forget_bias(rnn, config.lstm_forget_bias)


_SCORE_DRAWS = 4
"""Batches (each with its own perturbation) that ``keep_best`` scores an iterate on: multistability
depends on the perturbation, and one draw alone selects iterates that suit that draw."""


def _stars(
    network: RecurrentNetwork, states: list[Tensor], steps: int, config: WarmupConfig, generator: torch.Generator
) -> Tensor:
    """Each layer's VAA* as ``config`` measures it (``epsilon``, ``state_view``, ``perturbations``)."""
    return layer_vaa_stars(
        network, states, steps, config.epsilon, generator, view=config.state_view, perturbations=config.perturbations
    )


def _loss(stars: Tensor, config: WarmupConfig) -> Tensor:
    """The warmup loss: mean over layers of ``(VAA*_l - target)²``."""
    return ((stars - config.target) ** 2).mean()


def _check_steps(config: WarmupConfig) -> int:
    """Settling length of the final check and of ``keep_best``'s score."""
    return config.check_settle_steps or config.settle_max


def _score(network: RecurrentNetwork, padded: Tensor, lens: Tensor, config: WarmupConfig, seed: int) -> float:
    """The warmup loss, averaged over fixed batches and perturbations at one settling length (``keep_best``)."""
    generator = torch.Generator().manual_seed(seed)
    losses = []
    with torch.no_grad():
        for _ in range(_SCORE_DRAWS):
            states = initial_states(network, padded, generator, n=config.batch_size, lengths=lens)
            losses.append(float(_loss(_stars(network, states, _check_steps(config), config, generator), config)))
    loss = sum(losses) / len(losses)
    return loss if math.isfinite(loss) else math.inf


def _attempt(
    network: RecurrentNetwork,
    padded: Tensor,
    lens: Tensor,
    config: WarmupConfig,
    params: list[torch.nn.Parameter],
    generator: torch.Generator,
    result: WarmupResult,
    bar: Any,
    callback: Callable[[int, float, list[float]], None] | None,
) -> str | None:
    """One warmup attempt; returns why a restart is needed, or ``None`` on success."""
    result.vaa_star_history.clear()
    result.loss_history.clear()
    result.settle_history.clear()
    result.grad_norm_history.clear()
    result.final_vaa_star = []
    result.best_step = None
    result.vaa = None
    if bar is not None:
        bar.reset()
    optimizer = torch.optim.Adam(params, lr=config.lr)
    # keep_best scores on draws of their own, so that the warmup's draws are the same without it
    score_seed = generator.initial_seed() * 1_000_003 + result.restarts
    best_score, best_params = math.inf, None
    bound = config.settle_start
    for step in range(config.steps):
        if not config.adaptive_settle:
            bound = _settle_bound(config, step)
        m = int(torch.randint(1, bound + 1, (1,), generator=generator))
        with torch.set_grad_enabled(not config.detach_prefix):
            states = initial_states(network, padded, generator, n=config.batch_size, lengths=lens)
        with torch.enable_grad():
            if config.movement_penalty > 0 and 2 * m >= config.settle_max:
                stars, moves = stars_and_movement(
                    network, states, m, generator=generator, epsilon=config.epsilon, view=config.state_view,
                    perturbations=config.perturbations,
                )
                assert moves is not None
                loss = _loss(stars, config) + config.movement_penalty * moves.mean()
            else:
                stars = _stars(network, states, m, config, generator)
                loss = _loss(stars, config)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return f"non-finite loss ({loss_value}) at step {step}"
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        present = [g for g in grads if g is not None]
        grad_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))) if present else 0.0
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], config.grad_clip)
        optimizer.step()
        if config.keep_best and ((step + 1) % config.best_every == 0 or step == config.steps - 1):
            score = _score(network, padded, lens, config, score_seed)
            if score < best_score:
                best_score, result.best_step = score, step
                best_params = [p.detach().clone() for p in params]
        stars_list = [float(v) for v in stars.detach()]
        if config.adaptive_settle:
            collapsed = min(stars_list) <= result.collapse_level
            bound = max(config.settle_start, bound // 2) if collapsed else min(bound + config.settle_increment, config.settle_max)
        result.vaa_star_history.append(stars_list)
        result.loss_history.append(loss_value)
        result.settle_history.append(m)
        result.grad_norm_history.append(grad_norm)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", vaa_star=" ".join(f"{v:.3f}" for v in stars_list))
        if callback is not None:
            callback(step, loss_value, stars_list)
    if best_params is not None and result.best_step != config.steps - 1:
        with torch.no_grad():
            for p, best in zip(params, best_params, strict=True):
                p.copy_(best)
    else:
        result.best_step = None
    with torch.no_grad():
        states = initial_states(network, padded, generator, n=config.batch_size, lengths=lens)
        final = [float(v) for v in _stars(network, states, _check_steps(config), config, generator)]
    result.final_vaa_star = final
    if not all(math.isfinite(v) for v in final):
        return f"non-finite VAA* after warmup ({final})"
    worst = max(final)
    if worst > config.restart_threshold:
        return f"VAA* {worst:.3f} above the restart threshold {config.restart_threshold}"
    lowest = min(final)
    if lowest <= config.restart_below:
        return f"VAA* {lowest:.3f} collapsed to at most restart_below = {config.restart_below}"
    if config.vaa_checkpoints is None:
        return None
    rules = config.restart_horizon is not None or config.restart_moving is not None or config.restart_vaa_below is not None
    for draw in range(config.check_draws if rules else 1):
        measured = measure_vaa(
            network,
            padded,
            settle_steps=config.vaa_checkpoints[-1],
            n=config.vaa_n,
            epsilon=config.epsilon,
            generator=generator,
            lengths=lens,
            checkpoints=config.vaa_checkpoints,
        )
        if draw == 0:
            result.vaa = measured
        assert measured.curve is not None
        horizon = measured.horizon
        if config.restart_horizon is not None and horizon is not None and horizon < config.restart_horizon:
            return (
                f"memory horizon {horizon} settling steps, shorter than restart_horizon = {config.restart_horizon} "
                f"(exact VAA of the outputs {' '.join(f'{v:.2f}' for v in measured.curve.vaa)} "
                f"at M = {' '.join(str(m) for m in measured.curve.settle_steps)})"
            )
        at = config.vaa_checkpoints[-1] if config.restart_moving_at is None else int(config.restart_moving_at)
        if config.restart_vaa_below is not None:
            level = measured.curve.vaa[measured.curve.settle_steps.index(at)]
            if level < config.restart_vaa_below:
                return (
                    f"exact VAA of the outputs {level:.3f} after {at} settling steps, below "
                    f"restart_vaa_below = {config.restart_vaa_below} (merged)"
                )
        if config.restart_moving is not None:
            movement = measured.curve.movement[measured.curve.settle_steps.index(at)]
            if movement > config.restart_moving:
                return (
                    f"outputs still move by {movement:.2g} per step after {at} "
                    f"settling steps, more than restart_moving = {config.restart_moving} (chaotic or too extreme)"
                )
    return None
