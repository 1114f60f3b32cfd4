"""Recurrent cells with one interface, stacked into networks whose layers can be warmed up.

Every layer maps an input sequence ``(B, T, input_size)`` to outputs ``(B, T, hidden_size)`` and
carries a *flat* state ``(B, state_size)``: ``h`` for GRU, MGU, BRC and nBRC, ``cat(h, c)`` for
LSTMs (``state_size = 2 * hidden_size``). VAA and VAA* are computed on that flat state.

LSTM and GRU layers use torch's fused ``nn.LSTM`` / ``nn.GRU`` kernels; MGU, BRC and nBRC are plain
torch with the input projection of the whole sequence computed in one matrix product and a loop
over time only for the recurrent part.

Each layer can

* run a padded batch and return the state of every sequence at its own length (``lengths``),
  in one pass (packed sequences for the fused kernels, a masked loop for the others);
* reset its state to zero where an episode starts (``episode_starts``), without a loop over the
  batch: the fused kernels run the episode segments as one packed batch;
* settle under a constant input for many steps (:meth:`RecurrentLayer.settle`).

A :class:`DoubleLayer` is two cells of ``hidden_size // 2`` units on the same input, outputs
concatenated, of which only the first is *warmable* (double-layer warmup, DLWU).
"""

from __future__ import annotations

import contextlib
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rl_warmup import gru_ext

CELL_NAMES: tuple[str, ...] = ("lstm", "gru", "mgu", "brc", "nbrc", "chrono_lstm")
"""Names accepted by :func:`make_layer` and :class:`RecurrentNetwork`."""

_SETTLE_CHUNK = 256  # time steps fed at once to a fused kernel while settling


class LayerOutput(NamedTuple):
    """What a recurrent layer returns.

    :param outputs: ``(B, T, hidden_size)``; positions past a sequence's length are padding.
    :param state: ``(B, state_size)``, the state after the last valid step of each sequence.
    :param all_states: ``(B, T, state_size)`` state after every step, only when asked for.
    """

    outputs: Tensor
    state: Tensor
    all_states: Tensor | None = None


class NetworkOutput(NamedTuple):
    """What a :class:`RecurrentNetwork` returns.

    :param outputs: ``(B, T, output_size)`` outputs of the last layer.
    :param states: one ``(B, state_size_l)`` final state per layer.
    :param all_states: per layer ``(B, T, state_size_l)``, only when asked for.
    """

    outputs: Tensor
    states: list[Tensor]
    all_states: list[Tensor] | None = None


def _check_inputs(inputs: Tensor, input_size: int) -> None:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor of shape (B, T, {input_size}), got {type(inputs).__name__}")
    if inputs.dim() != 3 or inputs.shape[-1] != input_size:
        raise ValueError(
            f"inputs must have shape (batch, time, {input_size}), got {tuple(inputs.shape)}"
        )


def _size(name: str, value: object) -> int:
    """An integer size (numpy integers included, as gymnasium spaces give them); bools and
    floats refused."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


class RecurrentLayer(nn.Module, ABC):
    """One recurrent layer with a flat state. Subclasses implement :meth:`_run`.

    :param input_size: size of the input at each time step.
    :param hidden_size: size of the output at each time step.
    """

    state_size: int

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        input_size, hidden_size = _size("input_size", input_size), _size("hidden_size", hidden_size)
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size

    # -- what warmup sees -------------------------------------------------------------------
    @property
    def warm_part(self) -> RecurrentLayer:
        """The sub-layer whose VAA* is maximised and whose parameters warmup changes."""
        return self

    def warm_state(self, state: Tensor) -> Tensor:
        """The part of a ``(B, state_size)`` state that belongs to :attr:`warm_part`."""
        return state

    def warmable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that warmup is allowed to change."""
        return self.warm_part.parameters()

    def reset_warmable_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise the warmable parameters (used by warmup's restart rule)."""
        self.warm_part.reset_parameters(generator)

    def input_weight(self) -> Tensor:
        """The matrix that maps this layer's input to its gates (for ``WarmupConfig.input_scale``)."""
        raise NotImplementedError(f"{type(self).__name__} does not say which of its weights read its input")

    @abstractmethod
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise all parameters, drawing from ``generator`` when given."""

    # -- running ----------------------------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """Zero state ``(batch_size, state_size)`` on the layer's device and dtype."""
        p = next(self.parameters())
        return torch.zeros(batch_size, self.state_size, device=device or p.device, dtype=dtype or p.dtype)

    def output_of(self, state: Tensor) -> Tensor:
        """The output ``h`` contained in a flat state ``(..., state_size)``."""
        return state[..., : self.hidden_size]

    def forward(
        self,
        inputs: Tensor,
        state: Tensor | None = None,
        *,
        lengths: Tensor | None = None,
        episode_starts: Tensor | None = None,
        return_all_states: bool = False,
    ) -> LayerOutput:
        """Run a padded batch of sequences.

        :param inputs: ``(B, T, input_size)``.
        :param state: ``(B, state_size)`` initial state, zeros when ``None``.
        :param lengths: ``(B,)`` valid lengths in ``1..T``; the returned ``state`` is the one after
            step ``lengths[b] - 1``. All ``T`` when ``None``.
        :param episode_starts: ``(B, T)``, 1 where the state must be reset to zero *before*
            the step (as in sb3-contrib).
        :param return_all_states: also return the state after every step.
        """
        _check_inputs(inputs, self.input_size)
        batch, steps = inputs.shape[:2]
        if state is None:
            state = self.initial_state(batch, inputs.device, inputs.dtype)
        elif state.shape != (batch, self.state_size):
            raise ValueError(f"state must have shape ({batch}, {self.state_size}), got {tuple(state.shape)}")
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=inputs.device, dtype=torch.long)
            if lengths.shape != (batch,):
                raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
            if bool((lengths < 1).any()) or bool((lengths > steps).any()):
                raise ValueError(f"lengths must lie in 1..{steps}")
        if episode_starts is not None:
            episode_starts = episode_starts.to(device=inputs.device).reshape(batch, steps)
        return self._run(inputs, state, lengths, episode_starts, return_all_states)

    @abstractmethod
    def _run(
        self,
        inputs: Tensor,
        state: Tensor,
        lengths: Tensor | None,
        episode_starts: Tensor | None,
        return_all_states: bool,
    ) -> LayerOutput: ...

    def settle(self, inputs: Tensor, state: Tensor, steps: int) -> Tensor:
        """Feed the constant input ``inputs`` ``(B, input_size)`` for ``steps`` steps.

        :return: the final state ``(B, state_size)``.
        """
        return self.settle_outputs(inputs, state, steps, keep_outputs=False)[1]

    def settle_outputs(
        self, inputs: Tensor, state: Tensor, steps: int, keep_outputs: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        """Like :meth:`settle`, also returning the outputs ``(B, steps, hidden_size)`` when asked."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        outs = []
        done = 0
        while done < steps:
            k = min(_SETTLE_CHUNK, steps - done)
            x = inputs[:, None, :].expand(inputs.shape[0], k, inputs.shape[-1])
            res = self._run(x, state, None, None, False)
            state = res.state
            if keep_outputs:
                outs.append(res.outputs)
            done += k
        return (torch.cat(outs, dim=1) if keep_outputs else None), state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


# ------------------------------------------------------------------------------------------
# Fused LSTM / GRU layers
# ------------------------------------------------------------------------------------------
class _Segments(NamedTuple):
    """Episode segments of a batch, laid out as a new padded batch (see :func:`_segment`)."""

    seg_of: Tensor  # (V,) segment id of each valid (b, t)
    pos_of: Tensor  # (V,) position inside its segment
    valid: Tensor  # (B, T) bool
    seg_lengths: Tensor  # (S,)
    first_seg: Tensor  # (B,) id of the first segment of each row
    last_seg: Tensor  # (B,) id of the last segment of each row
    keeps_state: Tensor  # (B,) bool: the first segment continues the given state


def _segment(episode_starts: Tensor | None, lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> _Segments:
    """Cut each row at its episode starts (and its length) into segments, vectorised."""
    t = torch.arange(steps, device=device)
    if lengths is None:
        valid = torch.ones(batch, steps, dtype=torch.bool, device=device)
    else:
        valid = t[None, :] < lengths[:, None]
    if episode_starts is None:
        starts = torch.zeros(batch, steps, dtype=torch.bool, device=device)
    else:
        starts = episode_starts.to(torch.bool)
    keeps_state = ~starts[:, 0]
    begins = starts.clone()
    begins[:, 0] = True
    begins &= valid
    n_seg = begins.sum(dim=1)
    first_seg = torch.cumsum(n_seg, 0) - n_seg
    last_seg = first_seg + n_seg - 1
    seg_local = torch.cumsum(begins.long(), dim=1) - 1
    seg_id = first_seg[:, None] + seg_local
    seg_begin_t = t.expand(batch, steps)[begins]  # (S,) in row-major order = segment id order
    pos = t[None, :] - seg_begin_t[seg_id.clamp(max=seg_begin_t.numel() - 1)]
    seg_of = seg_id[valid]
    pos_of = pos[valid]
    seg_lengths = torch.bincount(seg_of, minlength=int(seg_begin_t.numel()))
    return _Segments(seg_of, pos_of, valid, seg_lengths, first_seg, last_seg, keeps_state)


class _FusedLayer(RecurrentLayer):
    """Common code of the layers backed by a single-layer ``nn.LSTM`` / ``nn.GRU``."""

    rnn: nn.LSTM | nn.GRU
    is_lstm: bool

    def input_weight(self) -> Tensor:
        return self.rnn.weight_ih_l0

    def _split(self, state: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        h = state[:, : self.hidden_size].unsqueeze(0).contiguous()
        if self.is_lstm:
            return h, state[:, self.hidden_size :].unsqueeze(0).contiguous()
        return h

    def _join(self, hx: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        if self.is_lstm:
            h, c = hx
            return torch.cat([h[0], c[0]], dim=-1)
        return hx[0]  # type: ignore[index]

    def _call(self, x: Tensor, state: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if lengths is None:
            if self.is_lstm:
                out, hx = self.rnn(x, self._split(state))
            else:
                out, hx = run_gru(self.rnn, x, self._split(state))  # type: ignore[arg-type]
            return out, self._join(hx)
        if torch.is_grad_enabled() and (
            x.requires_grad or state.requires_grad or any(p.requires_grad for p in self.rnn.parameters())
        ):
            return self._call_grouped(x, state, lengths)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, hx = self.rnn(packed, self._split(state))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, self._join(hx)

    def _call_grouped(self, x: Tensor, state: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Same result as the packed call, as one fused call per time span between two distinct
        lengths (on the rows still running), for when a gradient is needed.

        Autograd through a packed RNN on the CPU slices its whole packed input at every step, and
        the backward of each slice fills and adds a tensor of the whole input's size: time and
        memory quadratic in the sequence length (seconds per warmup step at ``T = 300``). Here the
        input is split once and every span runs unpacked, so the backward stays linear.
        """
        batch, steps, _ = x.shape
        lens = lengths.cpu()
        order = torch.argsort(lens, descending=True, stable=True)
        sorted_lens = lens[order]
        bounds = torch.unique(sorted_lens).tolist()  # ascending distinct lengths
        order_dev = order.to(x.device)
        xs = x.index_select(0, order_dev)
        spans = torch.split(xs[:, : bounds[-1]], [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)], dim=1)
        s = state.index_select(0, order_dev)
        outs: list[Tensor] = []
        finals: list[Tensor] = []
        for bound, span in zip(bounds, spans, strict=True):
            running = int((sorted_lens >= bound).sum())
            continuing = int((sorted_lens > bound).sum())
            out, s_new = self._call(span[:running], s, None)
            outs.append(F.pad(out, (0, 0, 0, 0, 0, batch - running)))
            finals.append(s_new[continuing:running])
            s = s_new[:continuing]
        out_sorted = torch.cat(outs, dim=1)
        if out_sorted.shape[1] < steps:
            out_sorted = F.pad(out_sorted, (0, 0, 0, steps - out_sorted.shape[1]))
        final_sorted = torch.cat(finals[::-1], dim=0)
        inverse = torch.argsort(order).to(x.device)
        return out_sorted.index_select(0, inverse), final_sorted.index_select(0, inverse)

    def _run(
        self,
        inputs: Tensor,
        state: Tensor,
        lengths: Tensor | None,
        episode_starts: Tensor | None,
        return_all_states: bool,
    ) -> LayerOutput:
        if return_all_states:
            return self._run_stepwise(inputs, state, lengths, episode_starts)
        if episode_starts is None or not bool(episode_starts.bool().any()):
            out, final = self._call(inputs, state, lengths)
            return LayerOutput(out, final)
        return self._run_segments(inputs, state, lengths, episode_starts)

    def _run_segments(
        self, inputs: Tensor, state: Tensor, lengths: Tensor | None, episode_starts: Tensor
    ) -> LayerOutput:
        """Episode resets inside sequences: run all episode segments as one packed batch."""
        batch, steps, _ = inputs.shape
        seg = _segment(episode_starts, lengths, batch, steps, inputs.device)
        n_seg = int(seg.seg_lengths.numel())
        max_len = int(seg.seg_lengths.max())
        x_seg = inputs.new_zeros(n_seg, max_len, inputs.shape[-1])
        x_seg = x_seg.index_put((seg.seg_of, seg.pos_of), inputs[seg.valid])
        h0 = state.new_zeros(n_seg, self.state_size)
        keep = seg.keeps_state.to(state.dtype)[:, None]
        h0 = h0.index_put((seg.first_seg,), state * keep)
        out_seg, final_seg = self._call(x_seg, h0, seg.seg_lengths)
        out = inputs.new_zeros(batch, steps, self.hidden_size)
        out = out.index_put(tuple(torch.nonzero(seg.valid, as_tuple=True)), out_seg[seg.seg_of, seg.pos_of])
        return LayerOutput(out, final_seg[seg.last_seg])

    def _run_stepwise(
        self, inputs: Tensor, state: Tensor, lengths: Tensor | None, episode_starts: Tensor | None
    ) -> LayerOutput:
        """One fused call per time step, keeping every state (``c`` is not exposed otherwise)."""
        steps = inputs.shape[1]
        states = []
        final = state
        columns = inputs.split(1, dim=1)  # one split: per-step slicing has a quadratic backward
        for t in range(steps):
            if episode_starts is not None:
                state = state * (1.0 - episode_starts[:, t : t + 1].to(state.dtype))
            _, state = self._call(columns[t], state, None)
            states.append(state)
            if lengths is not None:
                final = torch.where((lengths - 1 == t)[:, None], state, final)
        all_states = torch.stack(states, dim=1)
        if lengths is None:
            final = state
        return LayerOutput(self.output_of(all_states), final, all_states)


class LSTMLayer(_FusedLayer):
    """LSTM layer on torch's fused kernel; flat state ``cat(h, c)``.

    :param input_size: input size.
    :param hidden_size: number of units.
    :param rnn: an existing single-layer ``batch_first`` ``nn.LSTM`` to wrap (its parameters are
        shared, not copied); a new one when ``None``.
    """

    is_lstm = True

    def __init__(self, input_size: int, hidden_size: int, rnn: nn.LSTM | None = None) -> None:
        super().__init__(input_size, hidden_size)
        self.state_size = 2 * hidden_size
        if rnn is None:
            self.rnn = nn.LSTM(self.input_size, self.hidden_size, batch_first=True)
            self.reset_parameters()
        else:
            self.rnn = rnn

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """torch's default LSTM initialisation, ``U(-1/sqrt(H), 1/sqrt(H))``."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.uniform_(-bound, bound, generator=generator)


class ChronoLSTMLayer(LSTMLayer):
    """LSTM with chrono initialisation (Tallec & Ollivier 2018).

    Forget-gate bias ``log(U(1, t_max - 1))``, input-gate bias its negative, other weights as
    :class:`LSTMLayer`.

    :param t_max: expected range of time dependencies, ``>= 3``.
    """

    def __init__(self, input_size: int, hidden_size: int, t_max: int = 100, rnn: nn.LSTM | None = None) -> None:
        if t_max < 3:
            raise ValueError(f"t_max must be >= 3 for the chrono initialisation, got {t_max}")
        self.t_max = int(t_max)
        super().__init__(input_size, hidden_size, rnn)  # calls reset_parameters when rnn is None

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        h = self.hidden_size
        with torch.no_grad():
            u = torch.rand(h, generator=generator, device=self.rnn.bias_ih_l0.device) * (self.t_max - 2) + 1
            b_f = torch.log(u).to(self.rnn.bias_ih_l0.dtype)
            # torch's gate order: input, forget, cell, output
            self.rnn.bias_ih_l0[:h] = -b_f
            self.rnn.bias_ih_l0[h : 2 * h] = b_f
            self.rnn.bias_hh_l0[: 2 * h] = 0.0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, t_max={self.t_max}"


class GRULayer(_FusedLayer):
    """GRU layer on torch's fused kernel, with the paper authors' initialisation.

    Xavier-uniform input weights, orthogonal recurrent weights per gate, zero biases.

    :param rnn: an existing single-layer ``batch_first`` ``nn.GRU`` to wrap (shared parameters).
    """

    is_lstm = False

    def __init__(self, input_size: int, hidden_size: int, rnn: nn.GRU | None = None) -> None:
        super().__init__(input_size, hidden_size)
        self.state_size = hidden_size
        if rnn is None:
            self.rnn = nn.GRU(self.input_size, self.hidden_size, batch_first=True)
            self.reset_parameters()
        else:
            self.rnn = rnn

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        h = self.hidden_size
        with torch.no_grad():
            for g in range(3):
                nn.init.xavier_uniform_(self.rnn.weight_ih_l0[g * h : (g + 1) * h], generator=generator)
                nn.init.orthogonal_(self.rnn.weight_hh_l0[g * h : (g + 1) * h], generator=generator)
            self.rnn.bias_ih_l0.zero_()
            self.rnn.bias_hh_l0.zero_()


class _GRUSequence(torch.autograd.Function):
    """One single-layer, batch-first GRU over whole sequences, with a hand-written backward.

    The forward is ``torch.gru`` itself (the same outputs, bit for bit). On the CPU, autograd
    through ``torch.gru`` walks dozens of small nodes per time step; here the gates of every step
    are recomputed at once from the saved outputs (two matrix products over the whole sequence),
    every coefficient of the backward recurrence that does not depend on the incoming gradient is
    computed before the loop, and the loop over time is three operations per step. Gradients
    equal autograd's to float round-off (``tests/test_cells.py``).
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh):  # type: ignore[no-untyped-def, override]
        out, h_n = torch.gru(x, h0, (w_ih, w_hh, b_ih, b_hh), True, 1, 0.0, False, False, True)
        ctx.save_for_backward(x, h0, out, w_ih, w_hh, b_ih, b_hh)
        return out, h_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hn):  # type: ignore[no-untyped-def, override]
        x, h0, out, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        batch, steps, h = out.shape
        xt = x.transpose(0, 1).reshape(steps * batch, -1)
        prev = torch.cat([h0, out.transpose(0, 1)[:-1]], 0)  # (T, B, H): the state before each step
        gi = torch.addmm(b_ih, xt, w_ih.t()).view(steps, batch, 3, h)
        gh = torch.addmm(b_hh, prev.reshape(steps * batch, h), w_hh.t()).view(steps, batch, 3, h)
        rz = torch.sigmoid(gi[:, :, :2] + gh[:, :, :2])
        r, z = rz[:, :, 0], rz[:, :, 1].contiguous()
        gh_n = gh[:, :, 2]
        n = torch.tanh(gi[:, :, 2] + r * gh_n)
        d_pre_n = (1 - z) * (1 - n * n)  # d h_t / d (gi_n + r * gh_n)
        # d h_t / d (pre-activations of the recurrent product): reset, update, new gate
        coef = torch.stack([d_pre_n * gh_n * r * (1 - r), (prev - n) * z * (1 - z), d_pre_n * r], 2)
        grads = g_out.transpose(0, 1).contiguous() if g_out is not None else out.new_zeros(steps, batch, h)
        dh = torch.empty_like(grads)  # total gradient of the state after each step
        dgh = torch.empty(steps, batch, 3, h, dtype=out.dtype, device=out.device)
        dgh_flat = dgh.view(steps, batch, 3 * h)
        dh[-1] = grads[-1] if g_hn is None else grads[-1] + g_hn[0]
        # per-step views made once: indexing inside the loop would cost as much as the arithmetic
        dh_t, dh_col, coef_t, dgh_t, dgh_row = dh.unbind(0), dh.unsqueeze(2).unbind(0), coef.unbind(0), dgh.unbind(0), dgh_flat.unbind(0)
        grads_t, z_t = grads.unbind(0), z.unbind(0)
        for t in range(steps - 1, 0, -1):
            torch.mul(dh_col[t], coef_t[t], out=dgh_t[t])
            torch.addmm(torch.addcmul(grads_t[t - 1], dh_t[t], z_t[t]), dgh_row[t], w_hh, out=dh_t[t - 1])
        torch.mul(dh_col[0], coef_t[0], out=dgh_t[0])
        d_h0 = torch.addmm(dh_t[0] * z_t[0], dgh_row[0], w_hh).unsqueeze(0)
        dgi = dgh.clone()
        dgi[:, :, 2] = dh * d_pre_n
        dgi = dgi.view(steps * batch, 3 * h)
        dgh_all = dgh_flat.reshape(steps * batch, 3 * h)
        d_x = (dgi @ w_ih).view(steps, batch, -1).transpose(0, 1) if ctx.needs_input_grad[0] else None
        return d_x, d_h0, dgi.t() @ xt, dgh_all.t() @ prev.reshape(steps * batch, h), dgi.sum(0), dgh_all.sum(0)


def _kernel() -> Any:
    """The compiled kernel module; only called on paths taken after :func:`gru_ext.load` succeeded."""
    kernel = gru_ext.load()
    assert kernel is not None
    return kernel


class _CompiledGRUSequence(torch.autograd.Function):
    """:class:`_GRUSequence` on the compiled kernel (:mod:`rl_warmup.gru_ext`): each time step of
    the forward and of the backward is one small matrix product and one vectorised loop, instead
    of about ten dispatched operations. The forward saves its gates for the backward. Outputs
    agree with ``torch.gru`` to float round-off (not bit for bit: its own sigmoid and tanh),
    gradients with autograd's (``tests/test_cells.py``). ``active`` (:func:`_active_rows`, or an
    empty tensor) skips the rows of sequences that have ended: see :func:`run_gru`."""

    @staticmethod
    def forward(ctx, x, h0, active, w_ih, w_hh, b_ih, b_hh):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        x, h0 = x.contiguous(), h0.contiguous()
        out, h_n, gates = kernel.gru_forward(x, h0[0], w_ih, w_hh, b_ih, b_hh, active)
        ctx.save_for_backward(x, h0, active, out, gates, w_ih, w_hh)
        return out, h_n.unsqueeze(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hn):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        x, h0, active, out, gates, w_ih, w_hh = ctx.saved_tensors
        grads = g_out.transpose(0, 1).contiguous() if g_out is not None else out.new_zeros(out.shape[1], *h0.shape[1:])
        g_last = g_hn[0] if g_hn is not None else h0.new_zeros(h0.shape[1:])
        d_x, d_h0, d_w_ih, d_w_hh, d_b_ih, d_b_hh = kernel.gru_backward(
            grads, g_last, x, h0[0], out, gates, w_ih, w_hh, active, ctx.needs_input_grad[0]
        )
        return d_x, d_h0.unsqueeze(0), None, d_w_ih, d_w_hh, d_b_ih, d_b_hh


class _CompiledLSTMSequence(torch.autograd.Function):
    """A single-layer, batch-first LSTM over whole sequences on the compiled kernel
    (:mod:`rl_warmup.gru_ext`), forward and backward, in place of oneDNN's: on the small batches
    of recurrent PPO's minibatches 1.2-1.6x as fast at 64 units (:data:`LSTM_KERNEL_MAX_HIDDEN`),
    and it skips the rows of sequences that have ended (``active``, as
    :class:`_CompiledGRUSequence`). Outputs agree with ``torch.lstm`` to float round-off,
    gradients with autograd's (``tests/test_cells.py``)."""

    @staticmethod
    def forward(ctx, x, h0, c0, active, w_ih, w_hh, b_ih, b_hh):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        x, h0, c0 = x.contiguous(), h0.contiguous(), c0.contiguous()
        out, h_n, c_n, cs, gates = kernel.lstm_forward(x, h0[0], c0[0], w_ih, w_hh, b_ih, b_hh, active)
        ctx.save_for_backward(x, h0, c0, active, out, cs, gates, w_ih, w_hh)
        return out, h_n.unsqueeze(0), c_n.unsqueeze(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out, g_hn, g_cn):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        x, h0, c0, active, out, cs, gates, w_ih, w_hh = ctx.saved_tensors
        grads = g_out.transpose(0, 1).contiguous() if g_out is not None else out.new_zeros(out.shape[1], *h0.shape[1:])
        g_h = g_hn[0].contiguous() if g_hn is not None else h0.new_zeros(h0.shape[1:])
        g_c = g_cn[0].contiguous() if g_cn is not None else h0.new_zeros(h0.shape[1:])
        d_x, d_h0, d_c0, d_w_ih, d_w_hh, d_b = kernel.lstm_backward(
            grads, g_h, g_c, x, h0[0], c0[0], out, cs, gates, w_ih, w_hh, active, ctx.needs_input_grad[0]
        )
        # both biases get the same gradient: two tensors, so that no optimizer step sees one twice
        return d_x, d_h0.unsqueeze(0), d_c0.unsqueeze(0), None, d_w_ih, d_w_hh, d_b, d_b.clone()


def _active_rows(lengths: Tensor | None, steps: int) -> Tensor:
    """``(steps,)`` int64 CPU: the number of sequences still running at each step, for
    ``lengths`` sorted in non-increasing order (an empty tensor when ``lengths`` is ``None``)."""
    if lengths is None:
        return torch.empty(0, dtype=torch.long)
    lens = lengths.to(device="cpu", dtype=torch.long)
    if lens.numel() and (bool((lens[1:] > lens[:-1]).any()) or int(lens[-1]) < 1 or int(lens[0]) > steps):
        raise ValueError(
            f"lengths must be sorted in non-increasing order, each in 1 .. {steps}; got {lens.tolist()}"
        )
    return (lens[None, :] > torch.arange(steps)[:, None]).sum(1)


def _gru_as_packed(out: Tensor, h_n: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """What the GRU kernel returns for ``lengths``, from a padded pass: the outputs zeroed after
    each sequence's last step, the final state taken at it."""
    if lengths is None:
        return out, h_n
    lens = lengths.to(out.device)
    valid = torch.arange(out.shape[1], device=out.device)[None, :] < lens[:, None]
    last = out[torch.arange(out.shape[0], device=out.device), lens - 1]
    return out * valid[..., None], last.unsqueeze(0)


_LOOP_KERNELS: dict[str, tuple[str, str, tuple[bool, ...]]] = {
    "brc": ("bistable_forward", "bistable_backward", (False,)),
    "nbrc": ("bistable_forward", "bistable_backward", (True,)),
    "mgu": ("mgu_forward", "mgu_backward", ()),
}
"""Per :attr:`_LoopLayer.kernel`: the compiled forward and backward (:mod:`rl_warmup.gru_ext`)
and their trailing flags (the bistable kernel's ``full``: nBRC's matrix feedback)."""


class _CompiledLoopSequence(torch.autograd.Function):
    """A BRC, nBRC or MGU layer over whole sequences on the compiled kernel
    (:mod:`rl_warmup.gru_ext`), from the input projections ``proj`` ``(B, T, gates * H)``, with the
    episode starts (``(B, T)``, or empty) zeroing the state before their step as
    :meth:`_LoopLayer._run` does, and the cell's recurrent ``weights``. Returns every step's state
    ``(B, T, H)``; equal to the Python loop to float round-off (``tests/test_cells.py``)."""

    @staticmethod
    def forward(ctx, cell, proj, h0, starts, *weights):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        forward, _, flags = _LOOP_KERNELS[cell]
        out, h_in, gates = getattr(kernel, forward)(proj.contiguous(), h0.contiguous(), starts, *weights, *flags)
        ctx.cell = cell
        ctx.save_for_backward(starts, h_in, gates, *weights)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out):  # type: ignore[no-untyped-def, override]
        kernel = _kernel()
        _, backward, flags = _LOOP_KERNELS[ctx.cell]
        starts, h_in, gates, *weights = ctx.saved_tensors
        grads = g_out.transpose(0, 1).contiguous()
        d_proj, d_h0, *d_weights = getattr(kernel, backward)(grads, starts, h_in, gates, *weights, *flags)
        return None, d_proj, d_h0, None, *d_weights


_GRU_PATH = "compiled"
"""Which whole-sequence pass the GRU (:func:`run_gru`), BRC, nBRC and MGU take on the CPU with
gradients: ``"compiled"`` (the kernel of :mod:`rl_warmup.gru_ext`, falling back to ``"python"``
where it cannot be built), ``"python"`` (:class:`_GRUSequence`; the per-step loop of
:class:`_LoopLayer` for the other three) or ``"autograd"`` (``nn.GRU``; the loop for the others)."""


@contextlib.contextmanager
def gru_path(path: str) -> Iterator[None]:
    """Within this context the GRU (:func:`run_gru`), BRC, nBRC and MGU take ``path``:
    ``"compiled"`` (the default), ``"python"`` (the GRU's hand-written backward in Python, the
    other cells' per-step loop) or ``"autograd"`` (``nn.GRU``), to compare speed or
    gradients."""
    global _GRU_PATH
    if path not in ("compiled", "python", "autograd"):
        raise ValueError(f"gru_path: unknown path {path!r}; expected 'compiled', 'python' or 'autograd'")
    before = _GRU_PATH
    _GRU_PATH = path
    try:
        yield
    finally:
        _GRU_PATH = before


LSTM_KERNEL_MAX_HIDDEN = 128
"""The largest LSTM the compiled kernel runs (:func:`run_lstm`): one CPU thread, forward and
backward of 8 sequences, interleaved with oneDNN's (2026-12-07): 1.2-1.6x faster at 64 units,
about 1.2x at 128, 0.6-0.8x at 256 (the library's per-step products lose to oneDNN's there)."""


def kernel_runs(device: torch.device, dtype: torch.dtype, lstm_units: int | None = None) -> bool:
    """Whether the compiled kernel runs whole-sequence passes with gradients for tensors of this
    device and dtype now: the ``"compiled"`` :func:`gru_path`, on the CPU, with gradients
    enabled, in float32 or float64, the kernel built, and for an LSTM of ``lstm_units`` units
    at most :data:`LSTM_KERNEL_MAX_HIDDEN` of them and the environment not asking for oneDNN's
    (``RL_WARMUP_LSTM_EXT=0``)."""
    return (
        _GRU_PATH == "compiled"
        and device.type == "cpu"
        and torch.is_grad_enabled()
        and dtype in (torch.float32, torch.float64)
        and (lstm_units is None or (lstm_units <= LSTM_KERNEL_MAX_HIDDEN and gru_ext.lstm_enabled()))
        and gru_ext.load() is not None
    )


def _compiled_takes(x: Tensor, lstm_units: int | None = None) -> bool:
    """Whether the compiled kernel runs a whole-sequence pass over ``x`` ``(B, T, ...)``: more
    than one step, and :func:`kernel_runs`."""
    return x.shape[1] > 1 and kernel_runs(x.device, x.dtype, lstm_units)


def autograd_gru() -> contextlib.AbstractContextManager[None]:
    """Within this context :func:`run_gru` leaves the backward to autograd through ``nn.GRU``
    (to compare speed or gradients against the hand-written backward)."""
    return gru_path("autograd")


def _takes_grad(rnn: nn.LSTM | nn.GRU, x: Tensor, *states: Tensor) -> bool:
    """Whether ``rnn`` is a single-layer, unidirectional, batch-first RNN with biases over
    ``(B, T > 1, I)`` inputs on the CPU, with a gradient to take (what the hand-written passes do)."""
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and rnn.num_layers == 1
        and rnn.bias
        and rnn.batch_first
        and not rnn.bidirectional
        and getattr(rnn, "proj_size", 0) == 0
        and x.dim() == 3
        and x.shape[1] > 1
        and (x.requires_grad or any(s.requires_grad for s in states) or rnn.weight_hh_l0.requires_grad)
    )


def run_gru(rnn: nn.GRU, x: Tensor, h0: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``rnn(x, h0)`` for a single-layer, unidirectional, batch-first ``nn.GRU`` with biases.

    On the CPU, when a gradient will be taken, this runs the compiled kernel
    (:class:`_CompiledGRUSequence`, :mod:`rl_warmup.gru_ext`; 2-3x faster than the Python
    backward and 3-5x than autograd through ``nn.GRU`` on recurrent PPO's minibatches), or, where
    it cannot be built, :class:`_GRUSequence`; elsewhere (CUDA's cuDNN kernel, inference, other
    shapes) it is ``rnn(x, h0)``; :func:`gru_path` chooses. Outputs agree with ``rnn(x, h0)`` to
    float round-off (bit for bit on the Python path); gradients agree with autograd's.

    :param lengths: optional ``(B,)`` valid steps of each sequence, sorted in non-increasing
        order: the kernel then computes no step after a sequence's last (the outputs there are
        zeros) and returns, as ``h_n``, each sequence's state after its last step (the other paths
        compute the padding and give the same values).
    """
    if _GRU_PATH != "autograd" and _takes_grad(rnn, x, h0):
        params = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        if _compiled_takes(x):
            return _CompiledGRUSequence.apply(x, h0, _active_rows(lengths, x.shape[1]), *params)
        out, h_n = _GRUSequence.apply(x, h0, *params)
    else:
        out, h_n = rnn(x, h0)
    return _gru_as_packed(out, h_n, lengths)


def run_lstm(
    rnn: nn.LSTM, x: Tensor, hx: tuple[Tensor, Tensor], lengths: Tensor | None = None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``rnn(x, hx)`` for a single-layer, unidirectional, batch-first ``nn.LSTM`` with biases.

    On the CPU, when a gradient will be taken, this runs the compiled kernel
    (:class:`_CompiledLSTMSequence`) instead of oneDNN's where :func:`kernel_runs` says so (up
    to :data:`LSTM_KERNEL_MAX_HIDDEN` units, not with ``RL_WARMUP_LSTM_EXT=0``, another
    :func:`gru_path` or no kernel); elsewhere it is ``rnn(x, hx)``. Outputs agree with
    ``rnn(x, hx)`` to float round-off, gradients with autograd's. ``lengths`` as in
    :func:`run_gru` (the other paths run a packed sequence).
    """
    if _takes_grad(rnn, x, *hx) and _compiled_takes(x, lstm_units=rnn.hidden_size):
        params = (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)
        out, h_n, c_n = _CompiledLSTMSequence.apply(x, hx[0], hx[1], _active_rows(lengths, x.shape[1]), *params)
        return out, (h_n, c_n)
    if lengths is None:
        return rnn(x, hx)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=True)
    out, hx_n = rnn(packed, hx)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], hx_n


# ------------------------------------------------------------------------------------------
# Plain-torch cells: MGU, BRC, nBRC
# ------------------------------------------------------------------------------------------
class _LoopLayer(RecurrentLayer):
    """A cell written in plain torch: ``input_projection`` once, then ``step`` over time."""

    def __init__(self, input_size: int, hidden_size: int, n_gates: int) -> None:
        super().__init__(input_size, hidden_size)
        self.state_size = hidden_size
        self.input_proj = nn.Linear(input_size, n_gates * hidden_size)

    def input_weight(self) -> Tensor:
        return self.input_proj.weight

    def input_projection(self, inputs: Tensor) -> Tensor:
        """``(..., input_size) -> (..., n_gates * hidden_size)``."""
        return self.input_proj(inputs)

    @abstractmethod
    def step(self, proj: Tensor, h: Tensor) -> Tensor:
        """One step from the projected input ``proj`` and the state ``h``; returns the new state."""

    kernel: str | None = None
    """This cell's name in the compiled kernel (:mod:`rl_warmup.gru_ext`, ``_LOOP_KERNELS``):
    ``"brc"``, ``"nbrc"``, ``"mgu"``; ``None``: the per-step loop only."""

    def _kernel_weights(self) -> tuple[Tensor, ...]:
        """The recurrent weights the compiled kernel takes (cells with a :attr:`kernel`)."""
        raise NotImplementedError

    def _run(
        self,
        inputs: Tensor,
        state: Tensor,
        lengths: Tensor | None,
        episode_starts: Tensor | None,
        return_all_states: bool,
    ) -> LayerOutput:
        proj = self.input_projection(inputs)
        steps = inputs.shape[1]
        if self.kernel is not None and _compiled_takes(proj):
            starts = proj.new_zeros(0) if episode_starts is None else episode_starts.to(proj.dtype)
            out = _CompiledLoopSequence.apply(self.kernel, proj, state, starts, *self._kernel_weights())
            if lengths is None:
                final = out[:, -1]
            else:
                final = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
            return LayerOutput(out, final, out if return_all_states else None)
        h = state
        final = state
        outs = []
        columns = proj.unbind(1)  # one unbind: per-step indexing has a quadratic backward
        for t in range(steps):
            if episode_starts is not None:
                h = h * (1.0 - episode_starts[:, t : t + 1].to(h.dtype))
            h = self.step(columns[t], h)
            outs.append(h)
            if lengths is not None:
                final = torch.where((lengths - 1 == t)[:, None], h, final)
        out = torch.stack(outs, dim=1)
        if lengths is None:
            final = h
        return LayerOutput(out, final, out if return_all_states else None)

    def settle_outputs(
        self, inputs: Tensor, state: Tensor, steps: int, keep_outputs: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        proj = self.input_projection(inputs)  # constant input: project once
        h = state
        outs = []
        for _ in range(steps):
            h = self.step(proj, h)
            if keep_outputs:
                outs.append(h)
        return (torch.stack(outs, dim=1) if keep_outputs else None), h

    def _init_input(self, generator: torch.Generator | None) -> None:
        """Xavier-uniform input weights *per gate* (fan ``(input_size, hidden_size)``, as in the
        reference implementations), zero biases."""
        h = self.hidden_size
        for g in range(self.input_proj.weight.shape[0] // h):
            nn.init.xavier_uniform_(self.input_proj.weight[g * h : (g + 1) * h], generator=generator)
        nn.init.zeros_(self.input_proj.bias)


class MGULayer(_LoopLayer):
    """Minimal gated unit (Zhou et al. 2016).

    ``f = σ(W_f x + U_f h + b_f)``, ``h~ = tanh(W_h x + U_h (f ⊙ h) + b_h)``,
    ``h' = (1 - f) ⊙ h + f ⊙ h~``. Initialised as in the paper authors' code: Xavier-uniform
    input and recurrent weights per gate, zero biases.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 2)
        self.weight_f = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.weight_h = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self._init_input(generator)
            nn.init.xavier_uniform_(self.weight_f, generator=generator)
            nn.init.xavier_uniform_(self.weight_h, generator=generator)

    kernel = "mgu"

    def _kernel_weights(self) -> tuple[Tensor, ...]:
        return self.weight_f, self.weight_h

    def step(self, proj: Tensor, h: Tensor) -> Tensor:
        p_f, p_h = proj.chunk(2, dim=-1)
        f = torch.sigmoid(p_f + h @ self.weight_f.T)
        cand = torch.tanh(p_h + (f * h) @ self.weight_h.T)
        return (1.0 - f) * h + f * cand


class BRCLayer(_LoopLayer):
    """Bistable recurrent cell (Vecoven et al. 2021), per-neuron feedback only.

    ``a = 1 + tanh(U_a x + w_a ⊙ h)``, ``c = σ(U_c x + w_c ⊙ h)``,
    ``h' = c ⊙ h + (1 - c) ⊙ tanh(U x + a ⊙ h)``.

    Initialised as in Vecoven et al.'s code (and the warmup authors'): Xavier-uniform input
    weights per gate, feedback weights ``w_a = w_c = 1``, zero biases. (The candidate's bias
    ``b_h`` is the warmup authors' addition; it starts at zero.)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 3)
        self.w_a = nn.Parameter(torch.empty(hidden_size))
        self.w_c = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self._init_input(generator)
            self.w_a.fill_(1.0)
            self.w_c.fill_(1.0)

    kernel = "brc"

    def _kernel_weights(self) -> tuple[Tensor, ...]:
        return (torch.cat([self.w_a, self.w_c]),)

    def step(self, proj: Tensor, h: Tensor) -> Tensor:
        p_a, p_c, p_x = proj.chunk(3, dim=-1)
        a = 1.0 + torch.tanh(p_a + self.w_a * h)
        c = torch.sigmoid(p_c + self.w_c * h)
        return c * h + (1.0 - c) * torch.tanh(p_x + a * h)


class NBRCLayer(_LoopLayer):
    """Neuromodulated bistable recurrent cell (Vecoven et al. 2021): full recurrent gates.

    ``a = 1 + tanh(U_a x + W_a h)``, ``c = σ(U_c x + W_c h)``,
    ``h' = c ⊙ h + (1 - c) ⊙ tanh(U x + a ⊙ h)``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 3)
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        with torch.no_grad():
            self._init_input(generator)
            h = self.hidden_size
            for g in range(2):
                nn.init.xavier_uniform_(self.weight_hh[g * h : (g + 1) * h], generator=generator)

    kernel = "nbrc"

    def _kernel_weights(self) -> tuple[Tensor, ...]:
        return (self.weight_hh,)

    def step(self, proj: Tensor, h: Tensor) -> Tensor:
        p_a, p_c, p_x = proj.chunk(3, dim=-1)
        r_a, r_c = F.linear(h, self.weight_hh).chunk(2, dim=-1)
        a = 1.0 + torch.tanh(p_a + r_a)
        c = torch.sigmoid(p_c + r_c)
        return c * h + (1.0 - c) * torch.tanh(p_x + a * h)


# ------------------------------------------------------------------------------------------
# Double layer and the stacked network
# ------------------------------------------------------------------------------------------
class DoubleLayer(RecurrentLayer):
    """Two cells of ``hidden_size // 2`` units on the same input, outputs concatenated.

    Only :attr:`first` is warmable (double-layer warmup): it stores memory in attractors while
    :attr:`second` keeps rich transient dynamics. The flat state is ``cat(first, second)``.
    """

    def __init__(self, first: RecurrentLayer, second: RecurrentLayer) -> None:
        if first.input_size != second.input_size:
            raise ValueError("both halves of a DoubleLayer must take the same input size")
        super().__init__(first.input_size, first.hidden_size + second.hidden_size)
        self.first = first
        self.second = second
        self.state_size = first.state_size + second.state_size

    @property
    def warm_part(self) -> RecurrentLayer:
        return self.first

    def warm_state(self, state: Tensor) -> Tensor:
        return state[..., : self.first.state_size]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        self.first.reset_parameters(generator)
        self.second.reset_parameters(generator)

    def output_of(self, state: Tensor) -> Tensor:
        s1, s2 = state.split([self.first.state_size, self.second.state_size], dim=-1)
        return torch.cat([self.first.output_of(s1), self.second.output_of(s2)], dim=-1)

    def _run(
        self,
        inputs: Tensor,
        state: Tensor,
        lengths: Tensor | None,
        episode_starts: Tensor | None,
        return_all_states: bool,
    ) -> LayerOutput:
        s1, s2 = state.split([self.first.state_size, self.second.state_size], dim=-1)
        r1 = self.first._run(inputs, s1, lengths, episode_starts, return_all_states)
        r2 = self.second._run(inputs, s2, lengths, episode_starts, return_all_states)
        all_states = None
        if return_all_states:
            assert r1.all_states is not None and r2.all_states is not None
            all_states = torch.cat([r1.all_states, r2.all_states], dim=-1)
        return LayerOutput(
            torch.cat([r1.outputs, r2.outputs], dim=-1), torch.cat([r1.state, r2.state], dim=-1), all_states
        )

    def settle_outputs(
        self, inputs: Tensor, state: Tensor, steps: int, keep_outputs: bool = True
    ) -> tuple[Tensor | None, Tensor]:
        s1, s2 = state.split([self.first.state_size, self.second.state_size], dim=-1)
        o1, f1 = self.first.settle_outputs(inputs, s1, steps, keep_outputs)
        o2, f2 = self.second.settle_outputs(inputs, s2, steps, keep_outputs)
        out = torch.cat([o1, o2], dim=-1) if keep_outputs and o1 is not None and o2 is not None else None
        return out, torch.cat([f1, f2], dim=-1)


def make_layer(cell: str, input_size: int, hidden_size: int, *, double: bool = False, t_max: int = 100) -> RecurrentLayer:
    """Build one layer by cell name (see :data:`CELL_NAMES`).

    :param double: two cells of ``hidden_size // 2`` units, only the first warmable.
    :param t_max: chrono-LSTM's range of time dependencies.
    """
    name = cell.lower().replace("-", "_")
    if name not in CELL_NAMES:
        raise ValueError(f"unknown cell {cell!r}; choose one of {', '.join(CELL_NAMES)}")
    if double:
        if hidden_size % 2 or hidden_size < 2:
            raise ValueError(f"a double layer needs an even hidden_size >= 2, got {hidden_size}")
        half = hidden_size // 2
        return DoubleLayer(
            make_layer(name, input_size, half, t_max=t_max), make_layer(name, input_size, half, t_max=t_max)
        )
    if name == "lstm":
        return LSTMLayer(input_size, hidden_size)
    if name == "chrono_lstm":
        return ChronoLSTMLayer(input_size, hidden_size, t_max=t_max)
    if name == "gru":
        return GRULayer(input_size, hidden_size)
    if name == "mgu":
        return MGULayer(input_size, hidden_size)
    if name == "brc":
        return BRCLayer(input_size, hidden_size)
    return NBRCLayer(input_size, hidden_size)


class RecurrentNetwork(nn.Module):
    """A stack of recurrent layers; layer ``l + 1`` reads the outputs of layer ``l``.

    :param cell: a name from :data:`CELL_NAMES`.
    :param input_size: size of the input at each step.
    :param hidden_size: units per layer (both halves together for ``double``).
    :param num_layers: number of stacked layers.
    :param double: double-layer architecture (only the first half of each layer is warmable);
        readable afterwards as :attr:`is_double`.
    :param t_max: chrono-LSTM's range of time dependencies.
    :param generator: draws the initial parameters when given (reproducible initialisation).
    """

    def __init__(
        self,
        cell: str = "gru",
        input_size: int = 1,
        hidden_size: int = 128,
        num_layers: int = 1,
        *,
        double: bool = False,
        t_max: int = 100,
        generator: torch.Generator | None = None,
        layers: Sequence[RecurrentLayer] | None = None,
    ) -> None:
        super().__init__()
        if layers is None:
            if num_layers < 1:
                raise ValueError(f"num_layers must be >= 1, got {num_layers}")
            sizes = [input_size] + [hidden_size] * num_layers
            layers = [make_layer(cell, sizes[i], hidden_size, double=double, t_max=t_max) for i in range(num_layers)]
            for layer in layers:
                if generator is not None:
                    layer.reset_parameters(generator)
        elif len(layers) == 0:
            raise ValueError("a RecurrentNetwork needs at least one layer")
        self.cell = cell
        # not ``self.double``: that would shadow ``nn.Module.double()`` (dtype conversion)
        self.is_double = bool(double) or any(isinstance(layer, DoubleLayer) for layer in layers)
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_torch(cls, rnn: nn.LSTM | nn.GRU) -> RecurrentNetwork:
        """View a (multi-layer) ``nn.LSTM`` / ``nn.GRU`` as a network of separate layers.

        The parameters are **shared**, not copied: warming up the view warms up ``rnn``. Only
        unidirectional modules without projections are supported.
        """
        if not isinstance(rnn, nn.LSTM | nn.GRU):
            raise TypeError(f"expected nn.LSTM or nn.GRU, got {type(rnn).__name__}")
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError("bidirectional or projected RNNs are not supported")
        if not rnn.bias:
            raise ValueError("RNNs without biases are not supported")
        layers: list[RecurrentLayer] = []
        is_lstm = isinstance(rnn, nn.LSTM)
        for k in range(rnn.num_layers):
            in_size = rnn.input_size if k == 0 else rnn.hidden_size
            kind = nn.LSTM if is_lstm else nn.GRU
            sub = kind(in_size, rnn.hidden_size, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(sub, f"{name}_l0", getattr(rnn, f"{name}_l{k}"))
            sub.to(device=rnn.weight_hh_l0.device)
            layers.append(LSTMLayer(in_size, rnn.hidden_size, sub) if is_lstm else GRULayer(in_size, rnn.hidden_size, sub))
        return cls("lstm" if is_lstm else "gru", layers=layers)

    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def output_size(self) -> int:
        return self.layers[-1].hidden_size

    @property
    def state_sizes(self) -> list[int]:
        return [layer.state_size for layer in self.layers]

    def warmable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters warmup may change (first halves only for double layers)."""
        for layer in self.layers:
            yield from layer.warmable_parameters()

    def initial_states(self, batch_size: int) -> list[Tensor]:
        return [layer.initial_state(batch_size) for layer in self.layers]

    def forward(
        self,
        inputs: Tensor,
        states: Sequence[Tensor] | None = None,
        *,
        lengths: Tensor | None = None,
        episode_starts: Tensor | None = None,
        return_all_states: bool = False,
    ) -> NetworkOutput:
        """Run a padded batch; see :meth:`RecurrentLayer.forward` for the arguments.

        :param states: one ``(B, state_size_l)`` state per layer, zeros when ``None``.
        """
        if states is not None and len(states) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} layer states, got {len(states)}")
        x = inputs
        finals: list[Tensor] = []
        alls: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            res = layer(
                x,
                None if states is None else states[i],
                lengths=lengths,
                episode_starts=episode_starts,
                return_all_states=return_all_states,
            )
            x = res.outputs
            finals.append(res.state)
            if res.all_states is not None:
                alls.append(res.all_states)
        return NetworkOutput(x, finals, alls if return_all_states else None)

    def settle(self, inputs: Tensor, states: Sequence[Tensor], steps: int) -> list[Tensor]:
        """Feed the constant ``inputs`` ``(B, input_size)`` to the whole stack for ``steps`` steps.

        Fed in chunks of time so that memory stays bounded whatever ``steps``.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        states = list(states)
        done = 0
        while done < steps:
            k = min(_SETTLE_CHUNK, steps - done)
            x: Tensor = inputs[:, None, :].expand(inputs.shape[0], k, inputs.shape[-1])
            for i, layer in enumerate(self.layers):
                if i == 0 and isinstance(layer, _LoopLayer):
                    out, states[i] = layer.settle_outputs(inputs, states[i], k, keep_outputs=len(self.layers) > 1)
                else:
                    res = layer._run(x, states[i], None, None, False)
                    out, states[i] = res.outputs, res.state
                if out is not None:
                    x = out
            done += k
        return states


def set_lstm_forget_bias(module: nn.Module, value: float) -> int:
    """Set the forget-gate bias of every ``nn.LSTM`` in ``module`` (``module`` itself included,
    each of its layers) to ``value``: ``bias_ih`` to it and ``bias_hh`` to 0. Returns how many
    LSTMs were changed."""
    count = 0
    for lstm in module.modules():
        if isinstance(lstm, nn.LSTM):
            h = lstm.hidden_size
            with torch.no_grad():  # torch's gate order: input, forget, cell, output
                for k in range(lstm.num_layers):
                    getattr(lstm, f"bias_ih_l{k}")[h : 2 * h] = value
                    getattr(lstm, f"bias_hh_l{k}")[h : 2 * h] = 0.0
            count += 1
    return count
