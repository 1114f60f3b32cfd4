"""A recurrent actor-critic policy for sb3-contrib's ``RecurrentPPO`` built on any cell of the package.

``RecurrentPPO(RecurrentCellPolicy, env, policy_kwargs=dict(cell="gru", double=True,
lstm_hidden_size=64))`` trains a GRU (or LSTM, chrono-LSTM, MGU, BRC, nBRC, single or double
layers) instead of sb3-contrib's ``nn.LSTM``, with ``RecurrentPPO`` itself unchanged.

**How states are stored.** ``RecurrentPPO`` sizes its rollout buffer from
``policy.lstm_actor.num_layers`` and ``policy.lstm_actor.hidden_size`` and carries the states as
``RNNStates(pi=(h, c), vf=(h, c))``, each ``(num_layers, n_envs, hidden_size)``. The layers of a
:class:`~rl_warmup.cells.RecurrentNetwork` have a *flat* state ``(B, state_size)``. Each flat
layer state is split, losslessly, over the two slots:

* slot ``h`` holds the layer's output units (``layer.output_of(state)``, ``lstm_hidden_size``
  values): ``h`` for every cell, ``cat(h1, h2)`` for a double layer;
* slot ``c`` holds the rest of the flat state, zero-padded: ``c`` for an LSTM, ``cat(c1, c2)``
  for a double LSTM, and zeros for GRU, MGU, BRC and nBRC (their state *is* their output).

The storage width :attr:`RecurrentCellModule.hidden_size` is ``lstm_hidden_size`` for every cell
of :data:`~rl_warmup.cells.CELL_NAMES`. For ``cell="lstm", double=False`` the layout is exactly
sb3-contrib's ``(h, c)``.

**Speed.** A training minibatch of ``RecurrentPPO`` is a batch of padded sequences that the
rollout buffer cuts at episode starts, so an episode can only start at the first step of a
sequence. sb3-contrib then loops over time in Python, one ``nn.LSTM`` call per step. Here the
states of the sequences that start an episode are zeroed and each minibatch runs as whole
sequences, one fused ``nn.LSTM`` / ``nn.GRU`` call per layer. Resets anywhere else inside a
sequence (never produced by the buffer, but allowed) go through
:meth:`RecurrentNetwork.forward(..., episode_starts=...)
<rl_warmup.cells.RecurrentNetwork.forward>`, still without a Python loop over time for the fused
cells. Padding steps are run like sb3-contrib does, so every output, padded positions included,
equals the step-by-step computation. A rollout step (a sequence of length 1) of a single-layer
LSTM / GRU stack goes through ``torch.lstm_cell`` / ``torch.gru_cell``, cheaper per call than the
sequence kernel; :meth:`RecurrentCellPolicy.rollout_step` is ``forward`` for such a step with the
Python around it cut down (no distribution object for ``Discrete`` actions, the same random
draws), and, without autograd, runs the actor and the critic side by side
(:class:`~rl_warmup.sb3.fused.FusedActorCritic`: equal to rounding, about 3x less time per step
at 64 units). :meth:`RecurrentCellPolicy.evaluate_actions_at` (used by
:class:`~rl_warmup.sb3.ppo.FastRecurrentPPO`) evaluates the valid steps only: the heads skip the
padding, and LSTM sequences are grouped by length (:class:`ValidPlan`, one plan per minibatch for
both networks) so that most padding steps are not run either.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import Schedule
from torch import Tensor, nn

from rl_warmup.cells import (
    CELL_NAMES,
    RecurrentNetwork,
    _FusedLayer,
    kernel_runs,
    run_gru,
    run_lstm,
)
from rl_warmup.sb3.fused import FusedActorCritic

__all__ = [
    "RecurrentCellCnnPolicy",
    "RecurrentCellModule",
    "RecurrentCellMultiInputPolicy",
    "RecurrentCellPolicy",
]


def _normalise_cell(cell: str) -> str:
    if not isinstance(cell, str):
        raise TypeError(
            f"cell must be a string, one of {', '.join(CELL_NAMES)}; got {type(cell).__name__}"
        )
    name = cell.lower().replace("-", "_")
    if name not in CELL_NAMES:
        raise ValueError(
            f"unknown cell {cell!r} for RecurrentCellPolicy; choose one of {', '.join(CELL_NAMES)}"
        )
    return name


def _group_plan(lengths: list[int], overhead: float) -> list[tuple[int, int]]:
    """Cut sequences sorted by decreasing length into groups that run as separate calls.

    Minimises ``overhead x calls + sum over groups of rows x longest length`` exactly (dynamic
    programming over the distinct lengths; a single group when there are more than 64).

    :param lengths: sequence lengths, sorted in decreasing order.
    :param overhead: the cost of one call, in rows x steps.
    :return: ``(end, steps)`` per group: rows ``previous end .. end - 1`` run for ``steps``.
    """
    # Any cut costs at least one more call and saves at most the padding of a single call.
    if overhead >= len(lengths) * lengths[0] - sum(lengths):
        return [(len(lengths), lengths[0])]
    distinct: list[int] = []  # distinct lengths, decreasing
    ends: list[int] = []  # rows up to and including each distinct length
    for i, length in enumerate(lengths):
        if distinct and distinct[-1] == length:
            ends[-1] = i + 1
        else:
            distinct.append(length)
            ends.append(i + 1)
    d = len(distinct)
    if d == 1 or d > 64:
        return [(len(lengths), lengths[0])]
    best = [0.0] + [float("inf")] * d  # best[j]: cost of the first j distinct lengths
    cut = [0] * (d + 1)
    for j in range(1, d + 1):
        for i in range(j):
            rows = ends[j - 1] - (ends[i - 1] if i else 0)
            cost = best[i] + overhead + rows * distinct[i]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    plan: list[tuple[int, int]] = []
    j = d
    while j > 0:
        i = cut[j]
        plan.append((ends[j - 1], distinct[i]))
        j = i
    return plan[::-1]


@dataclasses.dataclass(frozen=True)
class ValidPlan:
    """Groups of sequences of a padded batch to run for fewer steps (:meth:`RecurrentCellModule.valid_plan`).

    The valid positions of a padded batch of ``n_seq`` sequences of ``T`` steps, sequence ``i``
    valid for its first ``lengths[i]`` steps, are run group by group: the sequences sorted by
    decreasing length, each group for the longest length in it.
    """

    groups: list[tuple[Tensor, int, Tensor | None]]
    """Per group: sequence indices ``(rows,)``, steps run, and the flat indices of the valid
    positions in the group's ``(rows * steps)`` outputs (``None``: all of them)."""
    starts: list[Tensor]
    """Per group: ``(rows, steps)`` episode starts (float)."""
    positions: Tensor
    """``(n_valid,)`` padded-batch position (``i * T + t``) of each output row, in plan order."""
    inverse: Tensor
    """``(n_valid,)``: ``positions[inverse]`` is ascending (the order of the valid rows)."""
    steps: int
    """The padded length ``T``."""
    lengths: list[Tensor] | None = None
    """Per group, for a packed plan: the ``(rows,)`` lengths of its sequences (non-increasing),
    which the compiled kernel reads to skip each sequence's padding (:func:`rl_warmup.cells.run_gru`)."""

    @classmethod
    def build(
        cls,
        lens: np.ndarray,
        order: np.ndarray,
        plan: list[tuple[int, int]],
        episode_starts: Tensor,
        packed: bool = False,
    ) -> ValidPlan:
        """From sequence lengths, their decreasing order, :func:`_group_plan`'s groups and the
        ``(n_seq, T)`` episode starts of the padded batch; ``packed``: keep each group's lengths."""
        steps = episode_starts.shape[1]
        device = episode_starts.device
        groups: list[tuple[Tensor, int, Tensor | None]] = []
        positions = []
        begin = 0
        for end, run in plan:
            seqs = order[begin:end]
            seq_lens = lens[seqs]
            total = int(seq_lens.sum())
            offsets = np.cumsum(seq_lens) - seq_lens  # first output row of each sequence
            within = np.arange(total) - np.repeat(offsets, seq_lens)  # step t of each row
            valid = None
            if total != len(seqs) * run:
                valid = torch.as_tensor(np.repeat(np.arange(len(seqs)) * run, seq_lens) + within, device=device)
            groups.append((torch.as_tensor(seqs, device=device), run, valid))
            positions.append(np.repeat(seqs * steps, seq_lens) + within)
            begin = end
        flat = np.concatenate(positions)
        group_lengths = None
        if packed:
            bounds = [0, *(end for end, _ in plan)]
            group_lengths = [torch.as_tensor(lens[order[a:b]]) for a, b in itertools.pairwise(bounds)]
        return cls(
            groups,
            [episode_starts.index_select(0, idx)[:, :run].float() for idx, run, _ in groups],
            torch.as_tensor(flat, device=device),
            torch.as_tensor(np.argsort(flat, kind="stable"), device=device),
            steps,
            group_lengths,
        )

    def gather(self, x: Tensor) -> list[Tensor]:
        """``(n_seq * T, ...)`` padded, sequence-major -> per group ``(rows, steps, ...)``."""
        padded = x.reshape(-1, self.steps, *x.shape[1:])
        return [padded.index_select(0, idx)[:, :run] for idx, run, _ in self.groups]


class RecurrentCellModule(nn.Module):
    """A :class:`~rl_warmup.cells.RecurrentNetwork` that ``RecurrentPPO`` can treat as its ``nn.LSTM``.

    It exposes what ``RecurrentPPO`` reads (:attr:`num_layers`, :attr:`hidden_size` as the width
    of the stored state slots, :attr:`input_size`) and converts between the ``(h, c)`` storage,
    each ``(num_layers, B, hidden_size)``, and the network's flat per-layer states (see the
    module docstring for the layout).

    :param network: the recurrent network (its parameters are used as they are, not copied).
    """

    def __init__(self, network: RecurrentNetwork) -> None:
        super().__init__()
        self.network = network
        widths = []
        self._identity: list[bool] = []
        for i, layer in enumerate(network.layers):
            size, units = layer.state_size, layer.hidden_size
            # Where the output units sit in the flat state: apply ``output_of`` to the positions.
            positions = torch.arange(size, dtype=torch.float64)[None]
            out_idx = layer.output_of(positions)[0].long()
            is_out = torch.zeros(size, dtype=torch.bool)
            is_out[out_idx] = True
            if out_idx.numel() != units or int(is_out.sum()) != units:
                raise ValueError(f"layer {i}: output_of must select {units} distinct state entries")
            # storage position -> flat index: the output units first, then the rest in order
            order = torch.cat([out_idx, torch.arange(size)[~is_out]])
            self._identity.append(bool(torch.equal(order, torch.arange(size))))
            self.register_buffer(f"_order_{i}", order, persistent=False)
            self.register_buffer(f"_inverse_{i}", torch.argsort(order), persistent=False)
            widths.append(max(units, size - units))
        self._units = [layer.hidden_size for layer in network.layers]
        self._sizes = [layer.state_size for layer in network.layers]
        self._width = max(widths)
        # Single (not double) LSTM / GRU layers whose storage is their own (h, c): the fused
        # nn.LSTM / nn.GRU can read and write the storage slots directly (see _forward_direct).
        self._direct = all(
            isinstance(layer, _FusedLayer) and layer.hidden_size == self._width
            for layer in network.layers
        ) and all(self._identity)
        # valid_plan runs groups of sequences of similar lengths as separate calls only for
        # LSTM stacks (oneDNN's kernel on CPU costs in proportion to rows x steps); a GRU's
        # kernel costs per step whatever the rows, so grouping would only add calls.
        self._groupable = self._direct and all(
            layer.is_lstm  # type: ignore[union-attr]
            for layer in network.layers
        )
        #: The cost of one more call to the sequence kernel, in rows x steps of computation,
        #: for :meth:`valid_plan` (a CPU, one-thread estimate: ~730 at 64 units, ~46 at 256).
        #: Any value gives the same outputs; 0 runs one call per distinct sequence length.
        self.group_overhead: float = 3e6 / float(self._width) ** 2

    @property
    def num_layers(self) -> int:
        """Number of stacked layers (first dimension of the stored states)."""
        return len(self.network.layers)

    @property
    def hidden_size(self) -> int:
        """Width of each stored state slot ``h`` and ``c`` (``lstm_hidden_size`` for every cell)."""
        return self._width

    @property
    def input_size(self) -> int:
        return self.network.input_size

    @property
    def output_size(self) -> int:
        return self.network.output_size

    # -- state layout ---------------------------------------------------------------------
    def to_flat(self, states: tuple[Tensor, Tensor]) -> list[Tensor]:
        """``(h, c)``, each ``(num_layers, B, hidden_size)`` -> one ``(B, state_size_l)`` per layer."""
        h, c = states
        if (
            h.dim() != 3
            or h.shape[0] != self.num_layers
            or h.shape[-1] != self._width
            or c.shape != h.shape
        ):
            raise ValueError(
                f"states must be (h, c), each of shape ({self.num_layers}, batch, {self._width}); "
                f"got {tuple(h.shape)} and {tuple(c.shape)}"
            )
        flat = []
        for i, (units, size) in enumerate(zip(self._units, self._sizes, strict=True)):
            rest = size - units
            hi = h[i] if units == self._width else h[i, :, :units]
            if rest == 0:
                x = hi
            else:
                x = torch.cat([hi, c[i] if rest == self._width else c[i, :, :rest]], dim=-1)
            if not self._identity[i]:
                x = x.index_select(-1, getattr(self, f"_inverse_{i}"))
            flat.append(x)
        return flat

    def from_flat(self, flat: list[Tensor]) -> tuple[Tensor, Tensor]:
        """One ``(B, state_size_l)`` per layer -> ``(h, c)``, each ``(num_layers, B, hidden_size)``."""
        hs, cs = [], []
        for i, (x, units) in enumerate(zip(flat, self._units, strict=True)):
            if not self._identity[i]:
                x = x.index_select(-1, getattr(self, f"_order_{i}"))
            h, c = x[:, :units], x[:, units:]
            hs.append(self._pad(h))
            cs.append(self._pad(c))
        return torch.stack(hs), torch.stack(cs)

    def _pad(self, x: Tensor) -> Tensor:
        missing = self._width - x.shape[-1]
        if missing == 0:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], missing)], dim=-1)

    def initial_states(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)`` storage for ``batch_size`` sequences."""
        p = next(self.network.parameters())
        zeros = torch.zeros(
            self.num_layers, batch_size, self._width, device=p.device, dtype=p.dtype
        )
        return zeros, zeros.clone()

    # -- running --------------------------------------------------------------------------
    def forward(
        self, features: Tensor, states: tuple[Tensor, Tensor], episode_starts: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run padded sequences, resetting the state before every step where an episode starts.

        :param features: ``(n_seq, T, input_size)``, batch first.
        :param states: ``(h, c)`` storage, each ``(num_layers, n_seq, hidden_size)``: the states
            before the first step.
        :param episode_starts: ``(n_seq, T)``, 1 where the state is zeroed *before* the step.
        :return: outputs ``(n_seq, T, output_size)`` and the ``(h, c)`` storage after the last step.
        """
        starts = episode_starts.to(features.dtype)
        steps = features.shape[1]
        resets_inside = steps > 1 and bool(starts[:, 1:].any())
        if self._direct and not resets_inside:
            return self._forward_direct(features, states, starts)
        flat = self.to_flat(states)
        if resets_inside:
            out = self.network(features, flat, episode_starts=starts)
        else:
            # Only the first step can start an episode (always the case for rollouts, seq_len 1,
            # and for RecurrentPPO's training minibatches): zero those states, one fused call.
            keep = (1.0 - starts[:, :1]).to(flat[0].dtype)
            out = self.network(features, [s * keep for s in flat])
        return out.outputs, self.from_flat(out.states)

    def valid_plan(self, lengths: Tensor, episode_starts: Tensor) -> ValidPlan | None:
        """How to run only the valid steps of sequences of ``lengths``, or ``None`` for one padded call.

        Where every layer runs on the compiled kernel (:func:`rl_warmup.cells.kernel_runs`:
        GRU and LSTM stacks training on the CPU), the sequences are sorted by length and run in
        one call that skips each one's padding (a *packed* plan). Otherwise, for stacks of single
        LSTM layers (oneDNN's kernel on CPU costs in proportion to rows x steps), the sorted
        sequences are cut into groups chosen to minimise ``calls x group_overhead + rows x
        steps`` (:func:`_group_plan`), each run for its own longest length. ``None`` when that
        gains nothing (other cells, a single sequence, no padding, or a single group of the full
        length).

        :param lengths: ``(n_seq,)`` valid steps of each sequence, each in ``1 .. T``.
        :param episode_starts: ``(n_seq, T)`` episode starts of the padded batch.
        """
        n_seq = lengths.shape[0]
        packed = self._packed(episode_starts.device)
        if not (packed or self._groupable) or n_seq < 2:
            return None
        lens = np.asarray(lengths.tolist(), dtype=np.int64)
        order = np.argsort(-lens, kind="stable")
        if packed:  # one call that skips each sequence's padding
            if lens.min() == episode_starts.shape[1]:
                return None
            return ValidPlan.build(lens, order, [(n_seq, int(lens[order[0]]))], episode_starts, packed=True)
        plan = _group_plan(lens[order].tolist(), self.group_overhead)
        if len(plan) == 1 and plan[0][1] == episode_starts.shape[1]:
            return None
        return ValidPlan.build(lens, order, plan, episode_starts)

    def _packed(self, device: torch.device) -> bool:
        """Whether every layer runs on the compiled kernel here (:func:`rl_warmup.cells.kernel_runs`),
        which skips the steps after each sequence's last: :meth:`valid_plan` then runs all
        sequences in one call."""
        if not self._direct:
            return False
        dtype = self.network.layers[0].rnn.weight_hh_l0.dtype  # type: ignore[union-attr]
        return all(
            kernel_runs(device, dtype, layer.hidden_size if layer.is_lstm else None)  # type: ignore[union-attr]
            for layer in self.network.layers
        )

    def forward_plan(
        self, features: list[Tensor], states: tuple[Tensor, Tensor], plan: ValidPlan
    ) -> Tensor:
        """The outputs of :meth:`forward` at the valid steps, in the plan's order.

        :param features: :meth:`ValidPlan.gather` of the ``(n_seq * T, input_size)`` inputs.
        :param states: ``(h, c)`` storage, each ``(num_layers, n_seq, hidden_size)``.
        :param plan: from :meth:`valid_plan`.
        :return: ``(n_valid, output_size)``: row ``k`` is the output at padded position
            ``plan.positions[k]`` (the padding that follows a sequence never influences its
            earlier steps, so these equal :meth:`forward`'s outputs there).
        """
        h, c = states
        outs = []
        lengths = plan.lengths or [None] * len(plan.groups)
        for (idx, _, valid), x, starts, lens in zip(plan.groups, features, plan.starts, lengths, strict=True):
            out, _ = self._forward_direct(x, (h.index_select(1, idx), c.index_select(1, idx)), starts, lens)
            out = out.reshape(-1, out.shape[-1])
            outs.append(out if valid is None else out.index_select(0, valid))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _forward_direct(
        self, features: Tensor, states: tuple[Tensor, Tensor], starts: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """:meth:`forward` for stacks of single LSTM / GRU layers without resets after the first step.

        The same computation as the general path (zeroed states where the first step starts an
        episode, then one fused call per layer) without converting to flat states and back:
        the storage ``(h, c)`` is exactly what ``nn.LSTM`` takes (``c`` unused for a GRU). This is
        the path of every rollout step, where the conversions cost as much as the cell itself.
        ``lengths``: a packed plan's (:meth:`valid_plan`) non-increasing sequence lengths, or
        ``None``.
        """
        h, c = states
        if (
            h.dim() != 3
            or h.shape[0] != self.num_layers
            or h.shape[-1] != self._width
            or c.shape != h.shape
        ):
            raise ValueError(
                f"states must be (h, c), each of shape ({self.num_layers}, batch, {self._width}); "
                f"got {tuple(h.shape)} and {tuple(c.shape)}"
            )
        keep = (1.0 - starts[:, :1]).to(h.dtype).T[..., None]  # (1, B, 1)
        if features.shape[1] == 1:  # one step (every rollout step): the cell kernels
            out = self.step(features[:, 0], (h, c), keep[0])
            assert out is not None  # a direct stack, shapes checked above
            return out[0][:, None], out[1]
        x = features
        hs, cs = [], []
        for i, layer in enumerate(self.network.layers):
            if layer.is_lstm:  # type: ignore[union-attr]
                x, (h_i, c_i) = run_lstm(layer.rnn, x, (h[i : i + 1] * keep, c[i : i + 1] * keep), lengths)  # type: ignore[union-attr, arg-type]
                cs.append(c_i)
            else:
                x, h_i = run_gru(layer.rnn, x, h[i : i + 1] * keep, lengths)  # type: ignore[union-attr, arg-type]
            hs.append(h_i)
        h_out = hs[0] if len(hs) == 1 else torch.cat(hs)
        # GRU: the c slot holds no state (zeros, as from_flat writes it)
        c_out = (cs[0] if len(cs) == 1 else torch.cat(cs)) if cs else torch.zeros_like(h_out)
        return x, (h_out, c_out)

    def step(
        self, features: Tensor, states: tuple[Tensor, Tensor], keep: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor]] | None:
        """One step of every sequence (a rollout step) through the cell kernels, or ``None``.

        The computation of :meth:`forward` for ``T = 1`` (the states zeroed where ``keep`` is 0,
        then ``torch.lstm_cell`` / ``torch.gru_cell`` per layer with the layers' own parameters:
        the cell ``nn.LSTM`` / ``nn.GRU`` computes, without the per-call cost of the sequence
        kernel, 3x less time per step at 64 units on one CPU thread), with as few tensor
        operations as that takes: each layer's state is masked as a 2-D slice, a
        single layer's outputs are views rather than stacked copies, a GRU's unused ``c`` slot is
        not masked.

        :param features: ``(B, input_size)``.
        :param states: ``(h, c)`` storage, each ``(num_layers, B, hidden_size)``.
        :param keep: ``(B, 1)``, 0 where an episode starts (the state is zeroed), else 1.
        :return: outputs ``(B, output_size)`` and the ``(h, c)`` storage after the step; ``None``
            when this module is not a stack of single LSTM / GRU layers or the states do not
            have the expected shape (then use :meth:`forward`).
        """
        h, c = states
        if not self._direct or h.shape != (len(self._units), features.shape[0], self._width):
            return None
        x = features
        hs, cs = [], []
        for i, layer in enumerate(self.network.layers):
            # the parameters read from the module's dict: nn.Module.__getattr__ costs per access
            params = layer.rnn._parameters  # type: ignore[union-attr]
            weights = (
                params["weight_ih_l0"],
                params["weight_hh_l0"],
                params["bias_ih_l0"],
                params["bias_hh_l0"],
            )
            if layer.is_lstm:  # type: ignore[union-attr]
                x, c_i = torch.lstm_cell(x, (h[i] * keep, c[i] * keep), *weights)  # type: ignore[arg-type]
                cs.append(c_i)
            else:
                x = torch.gru_cell(x, h[i] * keep, *weights)  # type: ignore[arg-type]
            hs.append(x)
        h_out = hs[0][None] if len(hs) == 1 else torch.stack(hs)
        if not cs:
            return x, (h_out, torch.zeros_like(h_out))
        return x, (h_out, cs[0][None] if len(cs) == 1 else torch.stack(cs))

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, hidden_size={self.hidden_size} (storage width)"


class RecurrentCellPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's recurrent actor-critic policy with any cell of :mod:`rl_warmup.cells`.

    Takes every argument of :class:`sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy`
    (``lstm_hidden_size`` is the number of units per layer, both halves together for a double
    layer; ``n_lstm_layers`` the number of stacked layers), plus:

    :param cell: one of :data:`~rl_warmup.cells.CELL_NAMES` (``"lstm"``, ``"gru"``, ``"mgu"``,
        ``"brc"``, ``"nbrc"``, ``"chrono_lstm"``).
    :param double: double-layer architecture: each layer is two cells of ``lstm_hidden_size // 2``
        units, of which only the first is warmed up.
    :param t_max: chrono-LSTM's range of time dependencies.
    :param lstm_kwargs: not supported (the cells take no extra arguments); must be empty.

    The recurrent networks are reachable as :attr:`rnn_actor` and :attr:`rnn_critic`
    (:class:`~rl_warmup.cells.RecurrentNetwork`); ``lstm_actor`` / ``lstm_critic`` are the
    :class:`RecurrentCellModule` wrappers that ``RecurrentPPO`` sees.
    """

    lstm_actor: RecurrentCellModule  # type: ignore[assignment]
    lstm_critic: RecurrentCellModule | None  # type: ignore[assignment]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        lstm_hidden_size: int = 256,
        n_lstm_layers: int = 1,
        shared_lstm: bool = False,
        enable_critic_lstm: bool = True,
        lstm_kwargs: dict[str, Any] | None = None,
        cell: str = "lstm",
        double: bool = False,
        t_max: int = 100,
    ) -> None:
        # Validate before anything is built, so that mistakes fail fast and clearly.
        cell = _normalise_cell(cell)
        if lstm_kwargs:
            raise ValueError(
                f"lstm_kwargs={lstm_kwargs!r} is not supported by RecurrentCellPolicy: the cells of "
                "rl_warmup.cells take no extra constructor arguments"
            )
        if lstm_hidden_size < 1 or n_lstm_layers < 1:
            raise ValueError(
                f"need lstm_hidden_size >= 1 and n_lstm_layers >= 1, got {lstm_hidden_size}, {n_lstm_layers}"
            )
        if isinstance(observation_space, spaces.Dict) and features_extractor_class is FlattenExtractor:
            raise ValueError(
                f"RecurrentCellPolicy cannot read Dict observations ({observation_space}): use "
                "RecurrentCellMultiInputPolicy (sb3's CombinedExtractor), or flatten the observations "
                "(gymnasium.wrappers.FlattenObservation)"
            )
        if double and lstm_hidden_size % 2:
            raise ValueError(
                f"double=True splits each layer in two halves: lstm_hidden_size must be even, got {lstm_hidden_size}"
            )
        if shared_lstm and enable_critic_lstm:
            raise ValueError(
                "choose between a shared recurrent network (shared_lstm=True, enable_critic_lstm=False), "
                "a separate one (enable_critic_lstm=True) or none for the critic"
            )
        if shared_lstm and not share_features_extractor:
            raise ValueError("shared_lstm=True needs share_features_extractor=True")

        self.cell = cell
        self.double = bool(double)
        self.t_max = int(t_max)
        self.lstm_hidden_size = int(lstm_hidden_size)
        self.n_lstm_layers = int(n_lstm_layers)
        # What RecurrentActorCriticPolicy.__init__ does, with our networks instead of nn.LSTM
        # (calling it would build and throw away two nn.LSTM and an optimizer).
        self.lstm_output_dim = lstm_hidden_size  # read by _build_mlp_extractor
        ActorCriticPolicy.__init__(
            self,
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        self.lstm_kwargs: dict[str, Any] = {}
        self.shared_lstm = shared_lstm
        self.enable_critic_lstm = enable_critic_lstm
        self.lstm_actor = self._make_module()
        self.lstm_critic = self._make_module() if enable_critic_lstm else None
        self.critic = None
        if not (shared_lstm or enable_critic_lstm):
            # no recurrent critic: map the features to the size of the actor's outputs
            self.critic = nn.Linear(self.features_dim, lstm_hidden_size)
        #: Rollout steps run the actor and the critic as one network when they allow it
        #: (:class:`~rl_warmup.sb3.fused.FusedActorCritic`); ``False`` runs them separately.
        self.fused_rollout = True
        self._fused: FusedActorCritic | bool | None = None  # built at the first rollout step
        # For predict(): zero states are (n_layers, n_envs, storage width)
        self.lstm_hidden_state_shape = (n_lstm_layers, 1, self.lstm_actor.hidden_size)
        self.optimizer = self.optimizer_class(
            self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
        )

    def _make_module(self) -> RecurrentCellModule:
        network = RecurrentNetwork(
            self.cell,
            self.features_dim,
            self.lstm_hidden_size,
            self.n_lstm_layers,
            double=self.double,
            t_max=self.t_max,
        )
        return RecurrentCellModule(network).to(self.device)

    @property
    def rnn_actor(self) -> RecurrentNetwork:
        """The actor's recurrent network (shared with the critic when ``shared_lstm``)."""
        return self.lstm_actor.network

    @property
    def rnn_critic(self) -> RecurrentNetwork | None:
        """The critic's own recurrent network; ``None`` when shared or when the critic has none."""
        return None if self.lstm_critic is None else self.lstm_critic.network

    def load_stock_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        """Load the weights of a stock sb3-contrib recurrent policy (``MlpLstmPolicy`` & co.).

        Only for ``cell="lstm"`` (or ``"chrono_lstm"``), ``double=False`` and the same sizes: the
        ``nn.LSTM`` parameters ``lstm_actor.weight_ih_l{k}`` … go to layer ``k`` of the network,
        everything else keeps its name. The policy then computes exactly what the stock one does.

        :param state_dict: ``stock_policy.state_dict()``.
        """
        if self.cell not in ("lstm", "chrono_lstm") or self.double:
            raise ValueError(
                f"a stock nn.LSTM state dict fits only cell='lstm' with double=False, not "
                f"cell={self.cell!r}, double={self.double}"
            )
        renamed = {}
        for name, value in state_dict.items():
            prefix, _, rest = name.partition(".")
            if prefix in ("lstm_actor", "lstm_critic"):
                kind, _, layer = rest.rpartition("_l")
                name = f"{prefix}.network.layers.{layer}.rnn.{kind}_l0"
            renamed[name] = value
        self.load_state_dict(renamed, strict=True)

    @staticmethod
    def _process_sequence(  # type: ignore[override]
        features: Tensor,
        lstm_states: tuple[Tensor, Tensor],
        episode_starts: Tensor,
        lstm: RecurrentCellModule,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the recurrent module on ``RecurrentPPO``'s flat padded batch, whole sequences at once.

        :param features: ``(n_seq * seq_len, features_dim)``, sequence-major (sequence ``i``
            occupies rows ``i * seq_len`` to ``(i + 1) * seq_len - 1``); ``seq_len`` is 1 while
            collecting rollouts.
        :param lstm_states: ``(h, c)`` storage, each ``(num_layers, n_seq, hidden_size)``.
        :param episode_starts: ``(n_seq * seq_len,)``, 1 where the state is reset before the step.
        :param lstm: the :class:`RecurrentCellModule`.
        :return: outputs ``(n_seq * seq_len, output_size)`` and the ``(h, c)`` storage after the
            last step of each sequence.
        """
        n_seq = lstm_states[0].shape[1]
        sequences = features.reshape(n_seq, -1, lstm.input_size)
        starts = episode_starts.reshape(n_seq, -1)
        outputs, states = lstm(sequences, lstm_states, starts)
        return outputs.reshape(-1, outputs.shape[-1]), states

    def _actor_critic_features(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """The features extractor's outputs for the actor and the critic (the same tensor when shared)."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return features, features  # type: ignore[return-value]
        pi_features, vf_features = features
        return pi_features, vf_features

    def rollout_step(
        self, obs: Tensor, lstm_states: RNNStates, episode_starts: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, RNNStates]:
        """:meth:`forward` (``deterministic=False``) for one rollout step, with less overhead.

        The same computation and the same draws from torch's random generator as ``forward``
        (hence the same actions for the same generator state): for a ``Discrete`` action space the
        action is drawn as ``torch.distributions.Categorical(logits=...).sample()`` draws it (one
        ``torch.multinomial`` on the normalised probabilities) and its log-probability is read
        from the normalised logits, without building the distribution; other action spaces go
        through sb3's distribution. Used by :meth:`FastRecurrentPPO.collect_rollouts
        <rl_warmup.sb3.ppo.FastRecurrentPPO.collect_rollouts>` (under ``torch.inference_mode()``);
        call it under ``torch.no_grad()`` or ``torch.inference_mode()``.

        :param obs: ``(n_envs, *obs_shape)`` observations.
        :param lstm_states: states before the step, each ``(num_layers, n_envs, hidden_size)``.
        :param episode_starts: ``(n_envs,)`` float, 1 where an episode starts at this step.
        :return: actions ``(n_envs, *action_shape)``, values ``(n_envs, 1)``, log-probabilities
            ``(n_envs,)`` and the states after the step.
        """
        if self.fused_rollout and not torch.is_grad_enabled():
            if self._fused is None:
                self._fused = FusedActorCritic.for_policy(self) or False
            if self._fused:
                return self._fused.step(obs, lstm_states, episode_starts)
        pi_features, vf_features = self._actor_critic_features(obs)
        keep = (1.0 - episode_starts).to(lstm_states.pi[0].dtype)[:, None]  # (n_envs, 1)

        def step(
            x: Tensor, states: tuple[Tensor, Tensor], lstm: RecurrentCellModule
        ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            out = lstm.step(x, states, keep)
            if out is None:  # other cells: the general path
                return self._process_sequence(x, states, episode_starts, lstm)
            return out

        latent_pi, states_pi = step(pi_features, lstm_states.pi, self.lstm_actor)  # type: ignore[arg-type]
        if self.lstm_critic is not None:
            latent_vf, states_vf = step(vf_features, lstm_states.vf, self.lstm_critic)  # type: ignore[arg-type]
        elif self.shared_lstm:
            latent_vf = latent_pi.detach()
            states_vf = (states_pi[0].detach(), states_pi[1].detach())
        else:
            latent_vf = self.critic(vf_features)  # type: ignore[misc]
            states_vf = states_pi
        latent_pi = self.mlp_extractor.forward_actor(latent_pi)
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        if isinstance(self.action_dist, CategoricalDistribution):
            logits = self.action_net(latent_pi)
            logits = logits - logits.logsumexp(dim=-1, keepdim=True)  # Categorical's normalisation
            actions = torch.multinomial(torch.softmax(logits, dim=-1), 1, True)  # (n_envs, 1)
            log_prob = logits.gather(-1, actions).squeeze(-1)
            actions = actions.reshape(-1)
        else:
            distribution = self._get_action_dist_from_latent(latent_pi)
            actions = distribution.get_actions(deterministic=False)
            log_prob = distribution.log_prob(actions)
            actions = actions.reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        return actions, values, log_prob, RNNStates(states_pi, states_vf)

    def evaluate_actions_at(
        self,
        obs: Tensor,
        actions: Tensor,
        lstm_states: RNNStates,
        episode_starts: Tensor,
        rows: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`evaluate_actions` at the positions ``rows`` of the padded batch only.

        The outputs at ``rows`` are those of :meth:`evaluate_actions`. When ``rows`` are the first
        steps of each sequence (as the rollout buffer lays them out) and no episode starts inside
        a sequence, LSTM stacks run only the valid steps, in groups of similar lengths
        (:meth:`RecurrentCellModule.valid_plan`); otherwise the recurrent networks run on the
        whole padded batch. The MLP heads and the action distribution run on ``rows`` only. For a ``Discrete`` action space the log-probabilities and entropies are computed
        from ``log_softmax`` directly, the formulas of ``torch.distributions.Categorical``
        without building one.

        :param obs: ``(n_seq * seq_len, *obs_shape)`` padded batch, sequence-major.
        :param actions: actions at every position, ``(n_seq * seq_len, ...)``.
        :param lstm_states: states before the first step of each sequence.
        :param episode_starts: ``(n_seq * seq_len,)``.
        :param rows: ``(n_rows,)`` long indices of the positions to evaluate (the valid ones).
        :return: values ``(n_rows, 1)``, log-probabilities ``(n_rows,)`` and entropies
            ``(n_rows,)`` (``None`` when the distribution has no closed form).
        """
        pi_features, vf_features = self._actor_critic_features(obs)
        n_seq = lstm_states.pi[0].shape[1]
        steps = episode_starts.shape[0] // n_seq
        lengths = torch.bincount(torch.div(rows, steps, rounding_mode="floor"), minlength=n_seq)
        # rows as the rollout buffer lays them out: the first lengths[i] steps of each sequence,
        # no episode starting after the first step of a sequence
        prefix = (torch.arange(steps, device=rows.device) < lengths[:, None]).reshape(-1)
        plan = None
        if bool(torch.equal(torch.nonzero(prefix).squeeze(1), rows)) and not (
            steps > 1 and bool(episode_starts.reshape(n_seq, steps)[:, 1:].any())
        ):
            plan = self.lstm_actor.valid_plan(lengths, episode_starts.reshape(n_seq, steps))
        if plan is None:
            # the recurrent networks on the whole padded batch, the rest on the valid rows
            positions = rows
            latent_pi = self._process_sequence(pi_features, lstm_states.pi, episode_starts, self.lstm_actor)[0]
            latent_pi = latent_pi.index_select(0, rows)
            if self.lstm_critic is not None:
                latent_vf = self._process_sequence(
                    vf_features, lstm_states.vf, episode_starts, self.lstm_critic
                )[0].index_select(0, rows)
        else:
            # the valid steps only, group by group, in the plan's order (put back at the end)
            positions = plan.positions
            xs_pi = plan.gather(pi_features)
            latent_pi = self.lstm_actor.forward_plan(xs_pi, lstm_states.pi, plan)  # type: ignore[arg-type]
            if self.lstm_critic is not None:
                xs_vf = xs_pi if vf_features is pi_features else plan.gather(vf_features)
                latent_vf = self.lstm_critic.forward_plan(xs_vf, lstm_states.vf, plan)  # type: ignore[arg-type]
        if self.lstm_critic is None:
            if self.shared_lstm:
                latent_vf = latent_pi.detach()
            else:
                latent_vf = self.critic(vf_features.index_select(0, positions))  # type: ignore[misc]
        latent_pi = self.mlp_extractor.forward_actor(latent_pi)
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        actions = actions.index_select(0, positions)
        if isinstance(self.action_dist, CategoricalDistribution):
            logits = torch.log_softmax(self.action_net(latent_pi), dim=-1)
            log_prob = logits.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
            clamped = torch.clamp(logits, min=torch.finfo(logits.dtype).min)
            entropy: Tensor | None = -(clamped * logits.exp()).sum(-1)
        else:
            distribution = self._get_action_dist_from_latent(latent_pi)
            log_prob, entropy = distribution.log_prob(actions), distribution.entropy()
        if plan is None:
            return values, log_prob, entropy
        back = plan.inverse
        return (
            values.index_select(0, back),
            log_prob.index_select(0, back),
            None if entropy is None else entropy.index_select(0, back),
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            share_features_extractor=self.share_features_extractor,
            lstm_hidden_size=self.lstm_hidden_size,
            n_lstm_layers=self.n_lstm_layers,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            cell=self.cell,
            double=self.double,
            t_max=self.t_max,
        )
        return data


class RecurrentCellCnnPolicy(RecurrentCellPolicy):
    """:class:`RecurrentCellPolicy` with sb3's ``NatureCNN`` features extractor (image observations)."""

    def __init__(
        self,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)


class RecurrentCellMultiInputPolicy(RecurrentCellPolicy):
    """:class:`RecurrentCellPolicy` with sb3's ``CombinedExtractor`` (``Dict`` observation spaces)."""

    def __init__(
        self,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, features_extractor_class=features_extractor_class, **kwargs)
