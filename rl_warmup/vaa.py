"""Variability amongst attractors: the exact VAA and its differentiable proxy VAA*.

``VAA`` counts how many distinct attractors the states reached from real input sequences fall
into under one constant perturbation (Lambrechts et al. 2023). ``VAA*`` treats each layer as its
own dynamical system and replaces the hard "same attractor" test by a soft one, so that it can be
maximised by gradient descent (see :mod:`rl_warmup.warmup`).

All measures are batched: pairwise distances with :func:`torch.cdist` computed exactly (no
``|x|² + |y|² - 2xy`` shortcut, which is far less precise than ``epsilon = 1e-4``), chunked over
rows so that memory stays ``O(chunk × n)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rl_warmup.cells import RecurrentNetwork

SequencesLike = Sequence[Tensor] | Sequence[np.ndarray] | Tensor
"""A list of ``(T_i, input_size)`` sequences, or a padded ``(N, T, input_size)`` batch."""

_CHUNK_ELEMENTS = 1 << 22  # rows × n pairwise entries computed at once (16 MB in float32)


VIEWS: tuple[str, ...] = ("output", "state")
"""Which part of a network's state the exact VAA compares. ``"output"``: each layer's output
``h`` (what the rest of the model reads); ``"state"``: the whole state, for an LSTM ``h`` and the
cell state ``c`` (the paper's and the authors' code). The two differ only for LSTM layers, whose
unbounded ``c`` can keep drifting (and so count as distinct) long after ``h`` has merged; see
``docs/lstm_warmup.md``."""

DEFAULT_CHECKPOINTS: tuple[int, ...] = (100, 200, 500, 1000, 2000, 5000, 10_000)
"""Settling lengths at which :func:`measure_vaa_curve` measures by default."""


class VAACurve(NamedTuple):
    """The exact VAA at several settling lengths of one settling pass (:func:`measure_vaa_curve`).

    Every field but ``horizon`` and ``n`` has one entry per checkpoint.

    :param settle_steps: the checkpoints ``M``, increasing.
    :param vaa: the exact VAA after ``M`` steps.
    :param movement: largest per-step change ``||x_M - x_{M-1}||`` over the finite states: how far
        from converged the states still are (a fixed point moves 0).
    :param n_moving: states whose last step moved by more than ``epsilon``: not settled yet, they
        may still merge with (or leave) another state's ``epsilon``-ball. They count in ``vaa`` as
        they stand.
    :param n_nonfinite: states that diverged (inf or NaN).
    :param horizon: memory horizon, the first checkpoint at which the VAA fell below half its
        value at the first checkpoint (or to ``1/n``, a single attractor): how long the
        separation between states reached from real inputs lasts. The first checkpoint when it
        is already collapsed there; ``None`` when the VAA never halves within the curve (the
        horizon lies beyond its last checkpoint).
    :param n: number of states.
    """

    settle_steps: tuple[int, ...]
    vaa: tuple[float, ...]
    movement: tuple[float, ...]
    n_moving: tuple[int, ...]
    n_nonfinite: tuple[int, ...]
    horizon: int | None
    n: int


class VAAMeasurement(NamedTuple):
    """Result of :func:`measure_vaa`.

    :param vaa: the exact VAA in ``[1/n, 1]``, after ``settle_steps``.
    :param n: number of states measured.
    :param n_nonfinite: states that diverged (inf or NaN) while settling; they count as one
        common "diverged" class in ``vaa``.
    :param movement: largest per-step change of a finite state at the last step (0: all settled).
    :param n_moving: states that moved by more than ``epsilon`` at the last step (not converged).
    :param curve: the VAA at every checkpoint of the same settling pass, when checkpoints were asked.
    """

    vaa: float
    n: int
    n_nonfinite: int
    movement: float = 0.0
    n_moving: int = 0
    curve: VAACurve | None = None

    @property
    def horizon(self) -> int | None:
        """Memory horizon of :attr:`curve` (``None`` without a curve, or beyond its last checkpoint)."""
        return None if self.curve is None else self.curve.horizon


def _row_chunks(n: int) -> range:
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    return range(0, n, rows)


def _check_states(states: Tensor) -> None:
    if not isinstance(states, Tensor):
        raise TypeError(f"states must be a torch.Tensor of shape (n, d), got {type(states).__name__}")
    if states.dim() != 2:
        raise ValueError(f"states must have shape (n, d), got {tuple(states.shape)}")
    if states.shape[0] < 2:
        raise ValueError(f"VAA needs at least n = 2 states, got {states.shape[0]}")


def _distances(rows: Tensor, states: Tensor) -> Tensor:
    return torch.cdist(rows, states, compute_mode="donot_use_mm_for_euclid_dist")


def vaa(states: Tensor, epsilon: float = 1e-4) -> Tensor:
    """Exact VAA of ``(n, d)`` states: ``(1/n) Σ_i 1 / #{j : ||x_i - x_j|| < ε}``.

    Lies in ``[1/n, 1]``: ``1/n`` when all states are within ``ε`` of each other, 1 when all are
    distinct. Non-finite states (diverged while settling) are one class of their own. Not
    differentiable; returns a 0-dim tensor.
    """
    _check_states(states)
    n = states.shape[0]
    with torch.no_grad():
        finite = torch.isfinite(states).all(dim=1)
        clean = torch.where(finite[:, None], states, torch.zeros_like(states))
        counts = []
        for start in _row_chunks(n):
            rows = slice(start, start + max(1, _CHUNK_ELEMENTS // n))
            close = _distances(clean[rows], clean) < epsilon
            same_class = finite[rows, None] == finite[None, :]
            close = (close & same_class) | (~finite[rows, None] & ~finite[None, :])
            counts.append(close.sum(dim=1))
        count = torch.cat(counts).to(torch.float64)
        return (1.0 / count).mean()


def vaa_star(states: Tensor, epsilon: float = 1e-4) -> Tensor:
    """Differentiable VAA* of ``(n, d)`` states.

    With ``d_ij = ||tanh(x_i) - tanh(x_j)||``:
    ``Ĉ_ij = 1 - max(0, d_ij - ε) / (d_ij + 1e-6)`` (so ``Ĉ_ii = 1``) and
    ``VAA* = (1/n) Σ_i 1 / Σ_j Ĉ_ij``. Returns a 0-dim tensor with gradient.
    """
    _check_states(states)
    n = states.shape[0]
    squashed = torch.tanh(states)
    sums = []
    for start in _row_chunks(n):
        rows = slice(start, start + max(1, _CHUNK_ELEMENTS // n))
        d = _distances(squashed[rows], squashed)
        c_hat = 1.0 - torch.clamp(d - epsilon, min=0.0) / (d + 1e-6)
        sums.append(c_hat.sum(dim=1))
    return (1.0 / torch.cat(sums)).mean()


def pad_sequences(
    sequences: SequencesLike, lengths: Tensor | Sequence[int] | None = None, *, input_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Validate sequences and return ``(padded (N, T, I) float tensor, lengths (N,) long)``.

    :param sequences: a list of ``(T_i, I)`` tensors/arrays, or a padded ``(N, T, I)`` tensor.
    :param lengths: valid lengths of a padded batch (all ``T`` when ``None``).
    :param input_size: expected ``I``, checked when given.
    """
    if isinstance(sequences, Tensor | np.ndarray) and not isinstance(sequences, list):
        padded = torch.as_tensor(sequences)
        if padded.dim() != 3:
            raise ValueError(f"a padded batch must have shape (N, T, input_size), got {tuple(padded.shape)}")
        if padded.shape[0] == 0 or padded.shape[1] == 0:
            raise ValueError("no input sequences were given (empty batch)")
        if lengths is None:
            lens = torch.full((padded.shape[0],), padded.shape[1], dtype=torch.long)
        else:
            lens = torch.as_tensor(lengths, dtype=torch.long).cpu()
            if lens.shape != (padded.shape[0],):
                raise ValueError(f"lengths must have shape ({padded.shape[0]},), got {tuple(lens.shape)}")
            if bool((lens < 1).any()) or bool((lens > padded.shape[1]).any()):
                raise ValueError(f"lengths must lie in 1..{padded.shape[1]}")
    else:
        if not isinstance(sequences, Sequence) or len(sequences) == 0:
            raise ValueError("no input sequences were given (empty list)")
        if lengths is not None:
            raise ValueError("lengths is only for a padded batch; a list of sequences carries its own")
        seqs = [torch.as_tensor(s) for s in sequences]
        for i, s in enumerate(seqs):
            if s.dim() != 2 or s.shape[0] == 0:
                raise ValueError(f"sequence {i} must have shape (T_i >= 1, input_size), got {tuple(s.shape)}")
        if len({s.shape[1] for s in seqs}) != 1:
            raise ValueError("all sequences must have the same input size")
        lens = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    if input_size is not None and padded.shape[-1] != input_size:
        raise ValueError(f"sequences have input size {padded.shape[-1]} but the network expects {input_size}")
    if not torch.is_floating_point(padded):
        padded = padded.float()
    bad = int((~torch.isfinite(padded)).sum())
    if bad:
        raise ValueError(
            f"the input sequences hold {bad} non-finite value(s) (NaN or inf) of {padded.numel()}: states reached "
            "from them are meaningless; clean the inputs (e.g. torch.nan_to_num) first"
        )
    return padded, lens


def initial_states(
    network: RecurrentNetwork,
    sequences: SequencesLike,
    generator: torch.Generator | None = None,
    *,
    n: int | None = None,
    lengths: Tensor | Sequence[int] | None = None,
) -> list[Tensor]:
    """States reached from the zero state over random prefixes of the sequences.

    ``n`` sequences are drawn (without replacement when there are enough, all of them when
    ``n is None``), each truncated at ``c ~ U{1..T_i}``, and run as **one** padded batched pass;
    the state of every layer is gathered at step ``c_i - 1``. Gradient flows when enabled.

    :return: one ``(n, state_size_l)`` tensor per layer.
    """
    padded, lens = pad_sequences(sequences, lengths, input_size=network.input_size)
    total = padded.shape[0]
    if n is None:
        idx = torch.arange(total)
    else:
        if n < 2:
            raise ValueError(f"n must be >= 2 states, got {n}")
        if n <= total:
            idx = torch.randperm(total, generator=generator)[:n]
        else:
            idx = torch.randint(total, (n,), generator=generator)
    sel_lens = lens[idx]
    cuts = (torch.rand(idx.numel(), generator=generator, dtype=torch.float64) * sel_lens).long() + 1
    cuts = torch.minimum(cuts, sel_lens)
    p = next(network.parameters())
    batch = padded[idx, : int(cuts.max())].to(device=p.device, dtype=p.dtype)
    return network(batch, lengths=cuts.to(p.device)).states


def _draw_normal(size: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
    return torch.randn(size, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def memory_horizon(settle_steps: Sequence[int], values: Sequence[float], n: int) -> int | None:
    """First checkpoint at which the VAA fell below half its first value, or to ``1/n``.

    See :attr:`VAACurve.horizon`; ``None`` when that never happens within the checkpoints.
    """
    if len(settle_steps) != len(values) or not values:
        raise ValueError("settle_steps and values must be non-empty and of the same length")
    single = 1.0 / n + 1e-9
    for m, v in zip(settle_steps, values, strict=True):
        if v <= single or v < values[0] / 2:
            return int(m)
    return None


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")


def _viewed(network: RecurrentNetwork, states: Sequence[Tensor], view: str) -> Tensor:
    """The ``(n, d)`` concatenation of the part of each layer's state that ``view`` names.

    A state that diverged anywhere (an LSTM's ``c`` at inf has a finite ``h = o tanh(c)``) is
    NaN in every view, so that it is counted as diverged whatever the view.
    """
    full = torch.cat(list(states), dim=1)
    if view == "state":
        return full
    out = torch.cat([layer.output_of(s) for layer, s in zip(network.layers, states, strict=True)], dim=1)
    diverged = ~torch.isfinite(full).all(dim=1)
    return torch.where(diverged[:, None], torch.full_like(out, float("nan")), out)


def _checkpoints(checkpoints: Sequence[int]) -> tuple[int, ...]:
    cps = tuple(sorted({int(m) for m in checkpoints}))
    if not cps:
        raise ValueError("give at least one checkpoint")
    if cps[0] < 1:
        raise ValueError(f"checkpoints must be >= 1, got {cps[0]}")
    return cps


ACTIVE_CHUNK = 20
"""Settling steps between two convergence checks of the active set (see :func:`settle_curve`)."""

_ACTIVE_CHUNK_MAX = 640  # chunk length reached by doubling while every state keeps moving fast
_GROW_AFTER = 200  # steps before the chunk may grow (a fresh network converges within ~100)
_GROW_MOVING = 1000.0  # grow only while every active state moves > this x tolerance per chunk


class _ActiveSettler:
    """Settle ``n`` states under a constant input, stepping only those that have not converged.

    Every :data:`ACTIVE_CHUNK` steps (on a fixed grid) each state's displacement over the last
    chunk ``d``, over the last two chunks ``D`` and over its last step ``s`` are compared with
    ``tolerance`` and with the chunk before (``d_prev``). A state is *frozen* (no longer stepped)
    when it is non-finite, or when ``d`` and ``s`` are below ``tolerance`` and either ``d == 0`` (a
    fixed point, or a cycle whose period divides the chunk), ``d <= d_prev / 2`` (geometric
    convergence: less than ``d`` left to travel) or ``D <= max(d, d_prev)`` (float round-off
    jitter around a fixed point: no net progress over two chunks, where a drift moves
    ``d + d_prev``). Each leaves it far under ``epsilon`` from where the full computation would take it.
    While no state freezes and all move far (chaos, fast drifts), the chunk doubles (after the
    first 200 steps, up to 640): fewer, longer calls of each layer. States that keep moving (slow drifts, long
    transients, cycles, chaos) are never frozen, so their result is the full computation's.
    """

    def __init__(self, network: RecurrentNetwork, states: Sequence[Tensor], inputs: Tensor, tolerance: float, enabled: bool) -> None:
        self.network = network
        self.current = [s.clone() for s in states]
        self.inputs = inputs
        self.tolerance = tolerance
        self.enabled = enabled
        n = inputs.shape[0]
        self.active = torch.arange(n, device=inputs.device)
        self.done = 0
        self.snapshot = torch.cat(self.current, dim=1)
        self.snapshot_before = self.snapshot.clone()  # two chunks back
        # NaN: no state is frozen on its first chunk's displacement alone (a constant drift has
        # d == d_prev and is never frozen, unless it is exactly 0)
        self.previous = torch.full((n,), float("nan"), device=inputs.device, dtype=self.snapshot.dtype)
        self.steps_run = 0  # state-steps computed, for benchmarks: n x M without freezing
        # States that keep moving fast for long (chaos, slow drifts) gain nothing from frequent
        # checks, and each chunk is one more call of every layer (a oneDNN LSTM call reorders its
        # weights): the chunk doubles while no state freezes and all move far, up to a cap.
        self.chunk = ACTIVE_CHUNK

    @property
    def n_active(self) -> int:
        return int(self.active.numel())

    def _step(self, k: int) -> None:
        if self.active.numel() == 0:
            return
        if self.active.numel() == self.inputs.shape[0]:
            self.current = self.network.settle(self.inputs, self.current, k)
        else:
            idx = self.active
            moved = self.network.settle(self.inputs[idx], [s[idx] for s in self.current], k)
            for s, new in zip(self.current, moved, strict=True):
                s[idx] = new
        self.steps_run += k * int(self.active.numel())

    def _check(self, before_last: Tensor) -> None:
        idx = self.active
        now = torch.cat([s[idx] for s in self.current], dim=1)
        finite = torch.isfinite(now).all(dim=1)
        d = torch.linalg.vector_norm(now - self.snapshot[idx], dim=1)
        d = torch.where(finite, d, torch.zeros_like(d))
        last = torch.linalg.vector_norm(now - before_last, dim=1)
        two = torch.linalg.vector_norm(now - self.snapshot_before[idx], dim=1)
        prev = self.previous[idx]
        small = (d < self.tolerance) & (last < self.tolerance)
        # converging (d halves), or jittering in place: over two chunks no farther than over one
        # (a drift, however slow, moves d + d_prev, and a slow orbit about as much)
        settled = (d == 0) | (d <= prev / 2) | (two <= torch.maximum(d, prev))
        frozen = ~finite | (small & settled)
        self.snapshot_before[idx] = self.snapshot[idx]
        self.snapshot[idx] = now
        self.previous[idx] = d
        self.active = idx[~frozen]
        moving_fast = bool((d[~frozen] > _GROW_MOVING * self.tolerance).all())
        if self.done >= _GROW_AFTER and not bool(frozen.any()) and moving_fast and self.chunk < _ACTIVE_CHUNK_MAX:
            self.chunk *= 2
            # displacements over chunks of different lengths are not compared: one more chunk
            # before a state may be frozen again by the halving or the jitter rule
            self.previous[self.active] = float("nan")

    def advance(self, to: int) -> None:
        """Settle to step ``to`` (the active states; frozen ones stay where they are)."""
        while self.done < to:
            if not self.enabled:
                self._step(to - self.done)
                self.done = to
                return
            boundary = (self.done // self.chunk + 1) * self.chunk
            if to < boundary:
                self._step(to - self.done)
                self.done = to
                return
            if boundary - 1 > self.done:
                self._step(boundary - 1 - self.done)
            before_last = torch.cat([s[self.active] for s in self.current], dim=1)
            self._step(1)
            self.done = boundary
            if self.active.numel():
                self._check(before_last)


def settle_curve(
    network: RecurrentNetwork,
    states: Sequence[Tensor],
    inputs: Tensor,
    checkpoints: Sequence[int],
    epsilon: float = 1e-4,
    *,
    view: str = "output",
    active_set: bool = True,
    tolerance: float | None = None,
) -> VAACurve:
    """Settle ``states`` under the constant ``inputs`` once and measure the exact VAA at every
    checkpoint on the way (no gradient): the whole curve for the price of its largest ``M``.

    :param states: one ``(n, state_size_l)`` initial state per layer.
    :param inputs: ``(n, input_size)`` constant input.
    :param checkpoints: settling lengths ``M`` to measure at (sorted, duplicates dropped).
    :param active_set: stop stepping the states that have converged (they move by less than
        ``tolerance`` over :data:`ACTIVE_CHUNK` steps, and twice less than over the chunk before,
        or not at all), and stop settling when none is left. States that keep moving are stepped
        to the end, so the result is the full computation's up to far less than ``epsilon``;
        a network whose states converge (a fresh or a collapsed one) is measured many times
        faster. ``False``: every state is stepped ``M`` times.
    :param tolerance: displacement over a chunk below which a geometrically converging state is
        frozen; ``epsilon / 100`` by default.
    """
    _check_view(view)
    cps = _checkpoints(checkpoints)
    tol = epsilon / 100 if tolerance is None else float(tolerance)
    if not tol >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    with torch.no_grad():
        settler = _ActiveSettler(network, states, inputs, tol, active_set)
        n = inputs.shape[0]
        vaas, moves, moving, nonfinite = [], [], [], []
        for m in cps:
            settler.advance(m - 1)
            before = _viewed(network, settler.current, view)
            settler.advance(m)
            after = _viewed(network, settler.current, view)
            finite = torch.isfinite(after).all(dim=1) & torch.isfinite(before).all(dim=1)
            step = torch.linalg.vector_norm(after - before, dim=1)
            step = torch.where(finite, step, torch.zeros_like(step))
            vaas.append(float(vaa(after, epsilon)))
            moves.append(float(step.max()))
            moving.append(int((step > epsilon).sum()))
            nonfinite.append(int((~torch.isfinite(after).all(dim=1)).sum()))
    return VAACurve(cps, tuple(vaas), tuple(moves), tuple(moving), tuple(nonfinite), memory_horizon(cps, vaas, n), n)


def measure_vaa(
    network: RecurrentNetwork,
    sequences: SequencesLike,
    settle_steps: int = 10_000,
    n: int = 100,
    epsilon: float = 1e-4,
    generator: torch.Generator | None = None,
    *,
    lengths: Tensor | Sequence[int] | None = None,
    view: str = "output",
    checkpoints: Sequence[int] | None = None,
    active_set: bool = True,
) -> VAAMeasurement:
    """Exact VAA of the whole network (all layers concatenated), without gradient.

    :param settle_steps: ``M``, steps of the constant perturbation ``u ~ N(0, I)``.
    :param n: number of initial states.
    :param view: ``"output"`` (each layer's ``h``, the default) or ``"state"`` (``h`` and ``c``
        for LSTMs, the paper's choice); see :data:`VIEWS`.
    :param checkpoints: also measure at these settling lengths ``<= settle_steps``, in the same
        pass (the result's ``curve`` and ``horizon``); ``settle_steps`` is always the last one.
    """
    if settle_steps < 1:
        raise ValueError(f"settle_steps must be >= 1, got {settle_steps}")
    _check_view(view)
    if checkpoints is not None and any(int(m) > settle_steps for m in checkpoints):
        raise ValueError(f"checkpoints must not exceed settle_steps = {settle_steps}")
    cps = _checkpoints([*(checkpoints or ()), settle_steps])
    with torch.no_grad():
        states = initial_states(network, sequences, generator, n=n, lengths=lengths)
        u = _draw_normal(network.input_size, generator, states[0]).expand(states[0].shape[0], -1)
        curve = settle_curve(network, states, u, cps, epsilon, view=view, active_set=active_set)
    if curve.n_nonfinite[-1]:
        warnings.warn(
            f"measure_vaa: {curve.n_nonfinite[-1]} of {curve.n} states became non-finite while settling "
            f"(the network diverges under this perturbation); they count as one attractor in VAA = "
            f"{curve.vaa[-1]:.3g}",
            RuntimeWarning,
            stacklevel=2,
        )
    return VAAMeasurement(
        curve.vaa[-1],
        curve.n,
        curve.n_nonfinite[-1],
        curve.movement[-1],
        curve.n_moving[-1],
        curve if checkpoints is not None else None,
    )


def layer_vaa_stars(
    network: RecurrentNetwork,
    states: Sequence[Tensor],
    settle_steps: int,
    epsilon: float = 1e-4,
    generator: torch.Generator | None = None,
    *,
    view: str = "state",
    perturbations: int = 1,
) -> Tensor:
    """VAA* of each layer, differentiable: a ``(num_layers,)`` tensor.

    Layer ``l``'s warmable part runs alone for ``settle_steps`` steps from its own part of
    ``states[l]`` under its own constant perturbation ``u_l ~ N(0, I)``.

    :param view: ``"state"`` (the paper: the whole state, ``tanh`` of ``h`` and ``c`` for an
        LSTM) or ``"output"`` (``tanh(h)`` only, a bounded view of an LSTM); the same for
        cells whose state is their output.
    :param perturbations: ``K``: settle the same states under ``K`` perturbations of their own
        (one batched pass of ``K * n`` states) and average the ``K`` values of VAA*. ``1``: the
        paper's single perturbation (the same draws as before this option existed).
    """
    return stars_and_movement(
        network, states, settle_steps, generator=generator, epsilon=epsilon, view=view, perturbations=perturbations,
        movement=False,
    )[0]


def stars_and_movement(
    network: RecurrentNetwork, states: Sequence[Tensor], settle_steps: int, *, generator: torch.Generator | None = None,
    epsilon: float = 1e-4, view: str = "state", perturbations: int = 1, movement: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """:func:`layer_vaa_stars` and each layer's mean last-step movement of its outputs,
    ``mean_i ||h_i(M) - h_i(M - 1)||`` over all settled states (differentiable,
    ``(num_layers,)``; ``None`` with ``movement=False``). The movement costs one split of the
    settling pass (``M - 1`` steps, then one), which rounds differently from one pass of ``M``:
    without it the draws and results are those of :func:`layer_vaa_stars`."""
    if settle_steps < 1:
        raise ValueError(f"settle_steps must be >= 1, got {settle_steps}")
    if perturbations < 1:
        raise ValueError(f"perturbations must be >= 1, got {perturbations}")
    _check_view(view)
    values, moves = [], []
    for layer, state in zip(network.layers, states, strict=True):
        part = layer.warm_part
        n = state.shape[0]
        if perturbations == 1:
            u = _draw_normal(part.input_size, generator, state).expand(n, -1)
            start = layer.warm_state(state)
        else:
            draws = torch.randn(perturbations, part.input_size, generator=generator, dtype=torch.float32)
            u = draws.to(device=state.device, dtype=state.dtype).repeat_interleave(n, dim=0)
            start = layer.warm_state(state).repeat(perturbations, 1)
        if movement:
            before = part.settle(u, start, settle_steps - 1) if settle_steps > 1 else start
            settled = part.settle(u, before, 1)
            step = part.output_of(settled) - part.output_of(before)
            moves.append(torch.linalg.vector_norm(step, dim=-1).mean())
        else:
            settled = part.settle(u, start, settle_steps)
        if view == "output":
            settled = part.output_of(settled)
        stars = [vaa_star(block, epsilon) for block in settled.split(n)]
        values.append(torch.stack(stars).mean())
    return torch.stack(values), (torch.stack(moves) if movement else None)


def measure_vaa_star(
    network: RecurrentNetwork,
    sequences: SequencesLike,
    settle_steps: int = 200,
    n: int = 100,
    epsilon: float = 1e-4,
    generator: torch.Generator | None = None,
    *,
    lengths: Tensor | Sequence[int] | None = None,
    view: str = "state",
) -> list[float]:
    """VAA* of each layer (see :func:`layer_vaa_stars`), without gradient."""
    with torch.no_grad():
        states = initial_states(network, sequences, generator, n=n, lengths=lengths)
        return [float(v) for v in layer_vaa_stars(network, states, settle_steps, epsilon, generator, view=view)]
