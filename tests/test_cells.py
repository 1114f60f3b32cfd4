"""Recurrent layers: formulas, resets, lengths, gradients, settling and ``from_torch``.

Every fast path is checked against a slow reference written here from the cell equations: one
sequence at a time, one step at a time, the state zeroed before a step where an episode starts.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import rl_warmup.cells as cells_mod
from rl_warmup import gru_ext
from rl_warmup.cells import (
    CELL_NAMES,
    BRCLayer,
    ChronoLSTMLayer,
    DoubleLayer,
    GRULayer,
    LSTMLayer,
    MGULayer,
    NBRCLayer,
    RecurrentLayer,
    RecurrentNetwork,
    make_layer,
)

DTYPE = torch.float64
LAYER_KINDS = [(c, False) for c in CELL_NAMES] + [(c, True) for c in CELL_NAMES]
KIND_IDS = [f"{c}{'-double' if d else ''}" for c, d in LAYER_KINDS]


# ------------------------------------------------------------------------------------------
# Slow reference: the cell equations, one step of one sequence
# ------------------------------------------------------------------------------------------
def _gates(w: Tensor, n: int) -> list[Tensor]:
    return list(w.chunk(n, dim=0))


def ref_step(layer: RecurrentLayer, x: Tensor, s: Tensor) -> Tensor:
    """One step of ``layer`` from the flat state ``s`` ``(state_size,)`` on input ``x`` ``(I,)``."""
    if isinstance(layer, DoubleLayer):
        s1, s2 = s.split([layer.first.state_size, layer.second.state_size])
        return torch.cat([ref_step(layer.first, x, s1), ref_step(layer.second, x, s2)])
    if isinstance(layer, LSTMLayer):  # also chrono; torch gate order i, f, g, o
        r = layer.rnn
        h, c = s.split(layer.hidden_size)
        z = r.weight_ih_l0 @ x + r.bias_ih_l0 + r.weight_hh_l0 @ h + r.bias_hh_l0
        i, f, g, o = z.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c])
    if isinstance(layer, GRULayer):  # torch gate order r, z, n
        r = layer.rnn
        wir, wiz, win = _gates(r.weight_ih_l0, 3)
        whr, whz, whn = _gates(r.weight_hh_l0, 3)
        bir, biz, bin_ = r.bias_ih_l0.chunk(3)
        bhr, bhz, bhn = r.bias_hh_l0.chunk(3)
        rg = torch.sigmoid(wir @ x + bir + whr @ s + bhr)
        zg = torch.sigmoid(wiz @ x + biz + whz @ s + bhz)
        ng = torch.tanh(win @ x + bin_ + rg * (whn @ s + bhn))
        return (1 - zg) * ng + zg * s
    if isinstance(layer, MGULayer):
        wf, wh = _gates(layer.input_proj.weight, 2)
        bf, bh = layer.input_proj.bias.chunk(2)
        f = torch.sigmoid(wf @ x + bf + layer.weight_f @ s)
        cand = torch.tanh(wh @ x + bh + layer.weight_h @ (f * s))
        return (1 - f) * s + f * cand
    if isinstance(layer, BRCLayer | NBRCLayer):
        ua, uc, ux = _gates(layer.input_proj.weight, 3)
        ba, bc, bx = layer.input_proj.bias.chunk(3)
        if isinstance(layer, BRCLayer):
            ra, rc = layer.w_a * s, layer.w_c * s
        else:
            wa, wc = _gates(layer.weight_hh, 2)
            ra, rc = wa @ s, wc @ s
        a = 1 + torch.tanh(ua @ x + ba + ra)
        c = torch.sigmoid(uc @ x + bc + rc)
        return c * s + (1 - c) * torch.tanh(ux @ x + bx + a * s)
    raise AssertionError(f"no reference for {type(layer).__name__}")


def ref_run(
    layer: RecurrentLayer,
    inputs: Tensor,
    state: Tensor,
    lengths: Tensor | None = None,
    starts: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Slow loop over sequences and steps: ``(outputs, final_state, all_states)``, zeros past
    each sequence's length."""
    batch, steps, _ = inputs.shape
    outs, finals, alls = [], [], []
    for b in range(batch):
        s = state[b]
        n = steps if lengths is None else int(lengths[b])
        row_out, row_all = [], []
        for t in range(steps):
            if t < n:
                if starts is not None and bool(starts[b, t]):
                    s = torch.zeros_like(s)
                s = ref_step(layer, inputs[b, t], s)
                row_all.append(s)
                row_out.append(layer.output_of(s))
            else:
                row_all.append(torch.zeros_like(s))
                row_out.append(torch.zeros(layer.hidden_size, dtype=s.dtype))
        outs.append(torch.stack(row_out))
        alls.append(torch.stack(row_all))
        finals.append(s)
    return torch.stack(outs), torch.stack(finals), torch.stack(alls)


def _layer(
    cell: str, double: bool, input_size: int = 3, hidden_size: int = 4, seed: int = 0
) -> RecurrentLayer:
    layer = make_layer(cell, input_size, hidden_size, double=double, t_max=20)
    layer.reset_parameters(torch.Generator().manual_seed(seed))
    if cell in ("brc", "nbrc", "mgu"):
        # non-zero biases so that the formulas' bias terms are exercised too
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if name.endswith("bias"):
                    p.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return layer.to(DTYPE)


def _valid_mask(batch: int, steps: int, lengths: Tensor | None) -> Tensor:
    if lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool)
    return torch.arange(steps)[None, :] < lengths[:, None]


# ------------------------------------------------------------------------------------------
# Forward with lengths and episode starts == slow reference (values and gradients)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "double"), LAYER_KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("with_starts", [False, True], ids=["nostarts", "starts"])
def test_forward_matches_stepwise_reference(
    cell: str, double: bool, with_lengths: bool, with_starts: bool
) -> None:
    g = torch.Generator().manual_seed(11)
    layer = _layer(cell, double)
    batch, steps = 5, 7
    inputs = torch.randn(batch, steps, 3, generator=g, dtype=DTYPE, requires_grad=True)
    state = (0.5 * torch.randn(batch, layer.state_size, generator=g, dtype=DTYPE)).requires_grad_()
    lengths = torch.tensor([7, 3, 1, 6, 5]) if with_lengths else None
    starts = None
    if with_starts:
        starts = torch.rand(batch, steps, generator=g) < 0.3
        starts[0, 0] = True  # reset at position 0: the given state is dropped
        starts[1, 0] = False
        starts[1, 2] = True  # a reset inside a row (also inside its length 3)
        starts[3, 5] = True
        starts[4, 6] = True  # past row 4's length when lengths are given: ignored
        starts[2, :] = False

    fast = layer(inputs, state, lengths=lengths, episode_starts=starts)
    ref_out, ref_final, _ = ref_run(layer, inputs, state, lengths, starts)
    valid = _valid_mask(batch, steps, lengths)
    torch.testing.assert_close(fast.outputs[valid], ref_out[valid], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.state, ref_final, rtol=1e-10, atol=1e-10)
    # the same without gradient (fused layers take a packed call then, a grouped one with)
    with torch.no_grad():
        plain = layer(inputs, state, lengths=lengths, episode_starts=starts)
    torch.testing.assert_close(plain.outputs[valid], ref_out[valid], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(plain.state, ref_final, rtol=1e-10, atol=1e-10)
    if cell in ("gru", "lstm", "chrono_lstm"):  # fused layers: padding is zeros on both paths
        assert float(fast.outputs.detach()[~valid].abs().sum()) == 0.0
        assert float(plain.outputs[~valid].abs().sum()) == 0.0

    # gradients of the same scalar, for parameters, inputs and the initial state
    w_out = (
        torch.randn(batch, steps, layer.hidden_size, generator=g, dtype=DTYPE) * valid[..., None]
    )
    w_fin = torch.randn(batch, layer.state_size, generator=g, dtype=DTYPE)
    wrt = [inputs, state, *layer.parameters()]

    def grads(out: Tensor, final: Tensor) -> tuple[Tensor | None, ...]:
        loss = (out * w_out).sum() + (final * w_fin).sum()
        return torch.autograd.grad(loss, wrt, allow_unused=True)

    for gf, gr in zip(grads(fast.outputs, fast.state), grads(ref_out, ref_final), strict=True):
        if gr is None:
            assert gf is None or float(gf.abs().max()) == 0.0
        else:
            assert gf is not None
            torch.testing.assert_close(gf, gr, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize(("cell", "double"), LAYER_KINDS, ids=KIND_IDS)
def test_return_all_states_matches_reference_and_final_state(cell: str, double: bool) -> None:
    g = torch.Generator().manual_seed(3)
    layer = _layer(cell, double)
    batch, steps = 4, 6
    inputs = torch.randn(batch, steps, 3, generator=g, dtype=DTYPE)
    state = torch.randn(batch, layer.state_size, generator=g, dtype=DTYPE)
    lengths = torch.tensor([6, 2, 4, 1])
    starts = torch.zeros(batch, steps, dtype=torch.bool)
    starts[0, 3] = starts[2, 0] = starts[2, 2] = True
    res = layer(inputs, state, lengths=lengths, episode_starts=starts, return_all_states=True)
    assert res.all_states is not None
    assert res.all_states.shape == (batch, steps, layer.state_size)
    _, ref_final, ref_all = ref_run(layer, inputs, state, lengths, starts)
    valid = _valid_mask(batch, steps, lengths)
    torch.testing.assert_close(res.all_states[valid], ref_all[valid], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(res.state, ref_final, rtol=1e-10, atol=1e-10)
    # the final state is the state after each row's last valid step
    torch.testing.assert_close(
        res.all_states[torch.arange(batch), lengths - 1], res.state, rtol=0, atol=0
    )
    # and the outputs are the output part of those states
    torch.testing.assert_close(
        res.outputs[valid], layer.output_of(res.all_states)[valid], rtol=0, atol=0
    )
    # same values as the path that does not keep every state
    plain = layer(inputs, state, lengths=lengths, episode_starts=starts)
    torch.testing.assert_close(plain.state, res.state, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("cell", "double"), LAYER_KINDS, ids=KIND_IDS)
def test_episode_starts_as_float_equals_bool(cell: str, double: bool) -> None:
    g = torch.Generator().manual_seed(5)
    layer = _layer(cell, double)
    inputs = torch.randn(3, 5, 3, generator=g, dtype=DTYPE)
    starts = torch.zeros(3, 5, dtype=torch.bool)
    starts[1, 2] = True
    a = layer(inputs, episode_starts=starts)
    b = layer(inputs, episode_starts=starts.to(DTYPE))
    torch.testing.assert_close(a.outputs, b.outputs, rtol=0, atol=0)
    torch.testing.assert_close(a.state, b.state, rtol=0, atol=0)


def test_reset_at_position_zero_ignores_given_state() -> None:
    layer = _layer("gru", False)
    inputs = torch.randn(2, 4, 3, dtype=DTYPE)
    starts = torch.zeros(2, 4)
    starts[:, 0] = 1
    a = layer(inputs, torch.randn(2, layer.state_size, dtype=DTYPE), episode_starts=starts)
    b = layer(inputs)
    torch.testing.assert_close(a.outputs, b.outputs, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Settling
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "double"), LAYER_KINDS, ids=KIND_IDS)
def test_settle_equals_forward_on_repeated_input(
    cell: str, double: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cells_mod, "_SETTLE_CHUNK", 5)  # cross chunk boundaries
    g = torch.Generator().manual_seed(7)
    layer = _layer(cell, double)
    u = torch.randn(4, 3, generator=g, dtype=DTYPE)
    s0 = torch.randn(4, layer.state_size, generator=g, dtype=DTYPE)
    steps = 13
    expected = layer(u[:, None, :].expand(4, steps, 3), s0)
    torch.testing.assert_close(layer.settle(u, s0, steps), expected.state, rtol=1e-10, atol=1e-12)
    outs, final = layer.settle_outputs(u, s0, steps, keep_outputs=True)
    assert outs is not None
    torch.testing.assert_close(outs, expected.outputs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(final, expected.state, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        layer.settle(u, s0, 0)


@pytest.mark.parametrize(
    ("cell", "double"), [("gru", False), ("mgu", False), ("lstm", True), ("brc", False)]
)
def test_network_settle_equals_forward_on_repeated_input(
    cell: str, double: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cells_mod, "_SETTLE_CHUNK", 4)
    net = RecurrentNetwork(
        cell, 2, 6, 3, double=double, generator=torch.Generator().manual_seed(0)
    ).to(DTYPE)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(5, 2, generator=g, dtype=DTYPE)
    states = [torch.randn(5, s, generator=g, dtype=DTYPE) for s in net.state_sizes]
    expected = net(u[:, None, :].expand(5, 11, 2), states).states
    got = net.settle(u, states, 11)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        net.settle(u, states, 0)


# ------------------------------------------------------------------------------------------
# Networks and from_torch
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [False, True])
def test_from_torch_same_outputs_and_shared_parameters(
    kind: type[nn.LSTM] | type[nn.GRU], batch_first: bool
) -> None:
    torch.manual_seed(0)
    rnn = kind(3, 5, num_layers=2, batch_first=batch_first)
    view = RecurrentNetwork.from_torch(rnn)
    assert len(view.layers) == 2 and view.input_size == 3 and view.output_size == 5
    x = torch.randn(4, 6, 3)  # (B, T, I)

    def compare() -> None:
        out, hx = rnn(x if batch_first else x.transpose(0, 1))
        out = out if batch_first else out.transpose(0, 1)
        res = view(x)
        torch.testing.assert_close(res.outputs, out, rtol=1e-5, atol=1e-6)
        for k, state in enumerate(res.states):
            expected = torch.cat([hx[0][k], hx[1][k]], dim=-1) if kind is nn.LSTM else hx[k]
            torch.testing.assert_close(state, expected, rtol=1e-5, atol=1e-6)

    compare()
    # the parameters are the same objects, not copies
    own = {id(p) for p in rnn.parameters()}
    assert {id(p) for p in view.parameters()} == own
    assert view.layers[1].rnn.weight_hh_l0 is rnn.weight_hh_l1
    # an in-place change on either side is seen by both
    with torch.no_grad():
        rnn.weight_hh_l1.add_(0.3)
        view.layers[0].rnn.bias_ih_l0.sub_(0.2)
    assert float(rnn.bias_ih_l0.detach()[0]) == float(view.layers[0].rnn.bias_ih_l0.detach()[0])
    compare()


def test_from_torch_rejects_unsupported_modules() -> None:
    with pytest.raises(TypeError, match=r"nn\.LSTM or nn\.GRU"):
        RecurrentNetwork.from_torch(nn.RNN(2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bidirectional"):
        RecurrentNetwork.from_torch(nn.GRU(2, 3, bidirectional=True))
    with pytest.raises(ValueError, match="projected"):
        RecurrentNetwork.from_torch(nn.LSTM(2, 4, proj_size=2))
    with pytest.raises(ValueError, match="biases"):
        RecurrentNetwork.from_torch(nn.GRU(2, 3, bias=False))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_network_forward_matches_layer_by_layer_reference(cell: str) -> None:
    net = RecurrentNetwork(cell, 2, 4, 2, generator=torch.Generator().manual_seed(2)).to(DTYPE)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 2, generator=g, dtype=DTYPE)
    lengths = torch.tensor([5, 2, 4])
    starts = torch.zeros(3, 5, dtype=torch.bool)
    starts[0, 2] = True
    res = net(x, lengths=lengths, episode_starts=starts)
    inp = x
    for layer, state in zip(net.layers, res.states, strict=True):
        out, final, _ = ref_run(layer, inp, layer.initial_state(3), lengths, starts)
        torch.testing.assert_close(state, final, rtol=1e-10, atol=1e-10)
        inp = out
    valid = _valid_mask(3, 5, lengths)
    torch.testing.assert_close(res.outputs[valid], inp[valid], rtol=1e-10, atol=1e-10)


def test_double_layer_structure_and_warmable_parameters() -> None:
    net = RecurrentNetwork("lstm", 3, 8, 2, double=True)
    layer = net.layers[0]
    assert isinstance(layer, DoubleLayer)
    assert layer.hidden_size == 8 and layer.first.hidden_size == layer.second.hidden_size == 4
    assert layer.state_size == 16  # (h, c) of both halves
    warm = {id(p) for p in net.warmable_parameters()}
    assert warm == {id(p) for lay in net.layers for p in lay.first.parameters()}  # type: ignore[union-attr]
    assert not warm & {id(p) for lay in net.layers for p in lay.second.parameters()}  # type: ignore[union-attr]
    state = torch.arange(16.0)[None]
    torch.testing.assert_close(layer.warm_state(state), state[:, :8])
    # output of a double state: h of each half, concatenated
    torch.testing.assert_close(
        layer.output_of(state), torch.cat([state[:, :4], state[:, 8:12]], dim=-1)
    )


# ------------------------------------------------------------------------------------------
# Initialisation (the authors' code and Vecoven et al.'s)
# ------------------------------------------------------------------------------------------
def _xavier_bound(fan_in: int, fan_out: int) -> float:
    return math.sqrt(6.0 / (fan_in + fan_out))


def test_brc_initialisation_matches_vecoven() -> None:
    """Feedback weights start at 1 (not random): each neuron starts bistable-capable, as in
    Vecoven et al. 2021's code and the warmup authors' code."""
    layer = BRCLayer(3, 64)
    assert torch.equal(layer.w_a.detach(), torch.ones(64))
    assert torch.equal(layer.w_c.detach(), torch.ones(64))
    assert torch.equal(layer.input_proj.bias.detach(), torch.zeros(3 * 64))
    bound = _xavier_bound(3, 64)  # per gate, fan (input_size, hidden_size)
    w = layer.input_proj.weight.detach()
    assert float(w.abs().max()) <= bound
    for gate in w.chunk(3):
        assert float(gate.abs().max()) > 0.8 * bound  # spread over the per-gate range
    layer.w_a.data.uniform_()
    layer.reset_parameters()
    assert torch.equal(layer.w_a.detach(), torch.ones(64))


def test_nbrc_and_mgu_initialisation_per_gate_xavier() -> None:
    for layer in (NBRCLayer(3, 64), MGULayer(3, 64)):
        bound_in = _xavier_bound(3, 64)
        w = layer.input_proj.weight.detach()
        assert float(w.abs().max()) <= bound_in
        assert float(w.abs().max()) > 0.8 * bound_in
        assert torch.equal(layer.input_proj.bias.detach(), torch.zeros_like(layer.input_proj.bias))
    nbrc = NBRCLayer(3, 64)
    assert float(nbrc.weight_hh.detach().abs().max()) <= _xavier_bound(64, 64)
    mgu = MGULayer(3, 64)
    for w in (mgu.weight_f, mgu.weight_h):
        assert float(w.detach().abs().max()) <= _xavier_bound(64, 64)


def test_gru_initialisation_orthogonal_recurrent_zero_bias() -> None:
    layer = GRULayer(2, 16)
    for w in layer.rnn.weight_hh_l0.detach().chunk(3):
        torch.testing.assert_close(w @ w.T, torch.eye(16), rtol=0, atol=1e-5)
    assert float(layer.rnn.bias_ih_l0.detach().abs().max()) == 0.0
    assert float(layer.rnn.bias_hh_l0.detach().abs().max()) == 0.0


def test_chrono_initialisation() -> None:
    layer = ChronoLSTMLayer(2, 32, t_max=50)
    h = 32
    b_i = layer.rnn.bias_ih_l0.detach()[:h]
    b_f = layer.rnn.bias_ih_l0.detach()[h : 2 * h]
    assert float(b_f.min()) >= 0.0 and float(b_f.max()) <= math.log(49) + 1e-6
    torch.testing.assert_close(b_i, -b_f)
    assert float(layer.rnn.bias_hh_l0.detach()[: 2 * h].abs().max()) == 0.0
    with pytest.raises(ValueError, match="t_max"):
        ChronoLSTMLayer(2, 4, t_max=2)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_generator_makes_initialisation_reproducible(cell: str) -> None:
    a = RecurrentNetwork(cell, 2, 8, 2, generator=torch.Generator().manual_seed(4))
    b = RecurrentNetwork(cell, 2, 8, 2, generator=torch.Generator().manual_seed(4))
    c = RecurrentNetwork(cell, 2, 8, 2, generator=torch.Generator().manual_seed(5))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(
        not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown cell 'rnn'.*gru"):
        make_layer("rnn", 2, 4)
    with pytest.raises(ValueError, match="unknown cell"):
        RecurrentNetwork("transformer", 2, 4)
    with pytest.raises(ValueError, match="even hidden_size"):
        make_layer("gru", 2, 5, double=True)
    with pytest.raises(ValueError, match="num_layers"):
        RecurrentNetwork("gru", 2, 4, 0)
    with pytest.raises(ValueError, match="hidden_size"):
        make_layer("gru", 2, 0)
    net = RecurrentNetwork("gru", 2, 4, 1)
    with pytest.raises(ValueError, match=r"\(batch, time, 2\)"):
        net(torch.randn(3, 5, 4))
    with pytest.raises(ValueError, match=r"\(batch, time, 2\)"):
        net(torch.randn(5, 2))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        net([[0.0, 1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="state must have shape"):
        net.layers[0](torch.randn(3, 5, 2), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="lengths must lie in"):
        net(torch.randn(3, 5, 2), lengths=torch.tensor([5, 0, 2]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        net(torch.randn(3, 5, 2), lengths=torch.tensor([6, 1, 2]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        net(torch.randn(3, 5, 2), lengths=torch.tensor([5, 1]))
    with pytest.raises(ValueError, match="layer states"):
        net(torch.randn(3, 5, 2), [torch.zeros(3, 4), torch.zeros(3, 4)])


def test_layer_does_not_mutate_its_inputs() -> None:
    layer = _layer("mgu", False)
    x = torch.randn(2, 4, 3, dtype=DTYPE)
    s = torch.randn(2, 4, dtype=DTYPE)
    starts = torch.ones(2, 4)
    x0, s0, st0 = x.clone(), s.clone(), starts.clone()
    layer(x, s, episode_starts=starts)
    assert torch.equal(x, x0) and torch.equal(s, s0) and torch.equal(starts, st0)


def test_network_dtype_conversion_is_not_shadowed() -> None:
    """``RecurrentNetwork.double()`` is ``nn.Module.double`` (it was shadowed by an attribute)."""
    net = RecurrentNetwork("gru", 2, 4, 1, double=True)
    assert net.is_double and not RecurrentNetwork("gru", 2, 4, 1).is_double
    assert net.double() is net
    assert all(p.dtype == torch.float64 for p in net.parameters())
    assert net(torch.randn(2, 3, 2, dtype=torch.float64)).outputs.dtype == torch.float64


# --- run_gru: the hand-written GRU backward, compiled and in Python -----------------------
@pytest.mark.parametrize("path", ["compiled", "python"])
@pytest.mark.parametrize(
    ("batch", "steps", "hidden", "inputs"),
    # odd batch and hidden sizes reach the kernel's remainder loops; the last shape is above
    # gru_cpu.cpp's kSmallProduct: its steps use the library's addmm
    [(3, 1, 4, 2), (4, 57, 8, 3), (2, 5, 16, 1), (1, 9, 7, 2), (3, 4, 5, 3), (24, 6, 128, 2)],
)
@pytest.mark.parametrize("use_outputs", ["both", "outputs", "final"])
def test_run_gru_matches_autograd_through_nn_gru(path, batch, steps, hidden, inputs, use_outputs):
    from rl_warmup.cells import gru_path, run_gru

    if path == "compiled" and gru_ext.load() is None:
        pytest.skip("the compiled GRU kernel cannot be built here")
    torch.manual_seed(0)
    rnn = torch.nn.GRU(inputs, hidden, batch_first=True).double()
    with torch.no_grad():  # non-zero biases so that every gradient term is exercised
        for p in rnn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(batch, steps, inputs, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, batch, hidden, dtype=torch.float64, requires_grad=True)
    w_out = torch.randn(batch, steps, hidden, dtype=torch.float64)
    w_fin = torch.randn(1, batch, hidden, dtype=torch.float64)

    def loss(out, h_n):
        terms = {"outputs": (out * w_out).sum(), "final": (h_n * w_fin).sum()}
        return terms["outputs"] + terms["final"] if use_outputs == "both" else terms[use_outputs]

    wrt = [x, h0, *rnn.parameters()]
    ref_out, ref_h = rnn(x, h0)
    ref = torch.autograd.grad(loss(ref_out, ref_h), wrt)
    with gru_path(path):
        out, h_n = run_gru(rnn, x, h0)
    expected = {"compiled": "_CompiledGRUSequenceBackward", "python": "_GRUSequenceBackward"}[path]
    assert type(out.grad_fn).__name__ == expected or steps == 1  # one step: nn.GRU itself
    got = torch.autograd.grad(loss(out, h_n), wrt)
    if path == "python":  # torch.gru's own forward: bit for bit
        assert torch.equal(out, ref_out) and torch.equal(h_n, ref_h)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, ref_h, rtol=1e-12, atol=1e-12)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hidden", [32, 128])
def test_compiled_gru_float32_agrees_with_torch_gru(hidden):
    """float32, the training dtype: saturated gates included (inputs scaled up), outputs within
    round-off of ``torch.gru`` over a long sequence and gradients close to autograd's."""
    from rl_warmup.cells import gru_path, run_gru

    if gru_ext.load() is None:
        pytest.skip("the compiled GRU kernel cannot be built here")
    torch.manual_seed(1)
    rnn = torch.nn.GRU(3, hidden, batch_first=True)
    x = (20.0 * torch.randn(24, 300, 3)).requires_grad_()
    h0 = torch.zeros(1, 24, hidden)
    ref_out, _ = rnn(x, h0)
    ref = torch.autograd.grad(ref_out.square().sum(), [x, *rnn.parameters()])
    with gru_path("compiled"):
        out, _ = run_gru(rnn, x, h0)
    got = torch.autograd.grad(out.square().sum(), [x, *rnn.parameters()])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3 * r.abs().max().item())


def test_gru_ext_falls_back_with_a_warning_when_it_cannot_be_built(monkeypatch):
    from torch.utils import cpp_extension

    from rl_warmup.cells import run_gru

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'x'\nc++: error: command not found")

    monkeypatch.setattr(gru_ext, "_state", {})
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with pytest.warns(RuntimeWarning, match="could not be built .*c\\+\\+: error: command not found"):
        assert gru_ext.load() is None
    out, _ = run_gru(torch.nn.GRU(2, 4, batch_first=True), torch.randn(3, 6, 2), torch.zeros(1, 3, 4))
    assert type(out.grad_fn).__name__ == "_GRUSequenceBackward"  # the Python backward
    monkeypatch.setattr(gru_ext, "_state", {})
    monkeypatch.setenv("RL_WARMUP_GRU_EXT", "0")  # switched off: no build tried, no warning
    assert gru_ext.load() is None


def test_gru_path_refuses_an_unknown_path():
    from rl_warmup.cells import gru_path

    with pytest.raises(ValueError, match="unknown path 'fast'"), gru_path("fast"):
        pass


def test_run_gru_takes_the_hand_written_backward_only_on_cpu_with_gradients():
    from rl_warmup.cells import run_gru

    rnn = torch.nn.GRU(2, 4, batch_first=True)
    x = torch.randn(3, 6, 2)
    h0 = torch.zeros(1, 3, 4)
    out, _ = run_gru(rnn, x, h0)
    assert out.grad_fn is not None and "GRUSequence" in type(out.grad_fn).__name__
    if gru_ext.load() is not None:
        assert type(out.grad_fn).__name__ == "_CompiledGRUSequenceBackward"
    with torch.no_grad():
        out, _ = run_gru(rnn, x, h0)
    assert out.grad_fn is None
    stacked = torch.nn.GRU(2, 4, num_layers=2, batch_first=True)  # not a single layer: nn.GRU itself
    out, _ = run_gru(stacked, x, torch.zeros(2, 3, 4))
    assert "GRUSequence" not in type(out.grad_fn).__name__
    from rl_warmup.cells import autograd_gru

    with autograd_gru():
        out, _ = run_gru(rnn, x, h0)
    assert "GRUSequence" not in type(out.grad_fn).__name__
    out, _ = run_gru(rnn, x, h0)  # back on leaving the context
    assert "GRUSequence" in type(out.grad_fn).__name__


def test_gru_ext_knows_whether_its_build_is_cached(monkeypatch, tmp_path):
    """The one-time build message is printed only when the cache has no build yet."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert not gru_ext._built("rl_warmup_gru_cpu_abc")
    (tmp_path / "rl_warmup_gru_cpu_abc").mkdir(exist_ok=True)  # torch may have made it
    assert not gru_ext._built("rl_warmup_gru_cpu_abc")
    (tmp_path / "rl_warmup_gru_cpu_abc" / "rl_warmup_gru_cpu_abc.so").write_bytes(b"")
    assert gru_ext._built("rl_warmup_gru_cpu_abc")



_FAULTS_SCRIPT = """
import resource, torch
from rl_warmup import gru_ext
assert gru_ext.load() is not None
for i in range(25):  # what a training step does to the allocator: buffers of 1 MiB, then all freed
    if i == 5:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [torch.ones(1 << 18) for _ in range(4)]  # every page written
    del buffers
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_loading_the_kernel_keeps_freed_memory_for_reuse():
    """Once the kernel is loaded, buffers freed together stay with the process: the next step's
    buffers fault no page in. (With glibc's default thresholds the same loop faults ~20 000 pages
    back in in some runs and none in others, depending on where the heap lies: only the kept
    side is deterministic; test_keep_freed_memory_sets_glibcs_thresholds checks the call.)"""
    import os
    import subprocess
    import sys

    if gru_ext.load() is None or not gru_ext.keep_freed_memory():
        pytest.skip("needs the compiled kernel and glibc")
    env = {**os.environ, "RL_WARMUP_MALLOC": "1"}
    done = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True, text=True, check=True)
    assert int(done.stdout.split()[-1]) < 200  # 20 steps x 1 024 pages if they were returned


def test_keep_freed_memory_sets_glibcs_thresholds(monkeypatch):
    import ctypes
    import sys

    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    class GlibC:
        def __init__(self):
            self.mallopt = mallopt
            self.gnu_get_libc_version = lambda: b"2.36"

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: GlibC())
    monkeypatch.delenv("RL_WARMUP_MALLOC", raising=False)
    assert gru_ext.keep_freed_memory() is True
    assert calls == [(-3, 32 << 20), (-1, 64 << 20)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    calls.clear()
    monkeypatch.setenv("RL_WARMUP_MALLOC", "0")  # opted out: glibc untouched
    assert gru_ext.keep_freed_memory() is False and calls == []
    monkeypatch.delenv("RL_WARMUP_MALLOC")
    other = GlibC()
    del other.gnu_get_libc_version  # another C library (musl): its mallopt is not glibc's
    monkeypatch.setattr(ctypes, "CDLL", lambda name: other)
    assert gru_ext.keep_freed_memory() is False and calls == []
    monkeypatch.setattr(sys, "platform", "darwin")
    assert gru_ext.keep_freed_memory() is False and calls == []


def test_load_keeps_freed_memory_once_the_kernel_is_built(monkeypatch):
    from torch.utils import cpp_extension

    kept = []
    monkeypatch.setattr(gru_ext, "_state", {})
    monkeypatch.setattr(gru_ext, "keep_freed_memory", lambda: kept.append(True) or True)
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: object())
    monkeypatch.setattr(gru_ext, "_built", lambda name: True)
    monkeypatch.delenv("RL_WARMUP_GRU_EXT", raising=False)
    assert gru_ext.load() is not None and kept == [True]
    assert gru_ext.load() is not None and kept == [True]  # cached: once

# --- run_lstm, and both kernels over sequences of several lengths ----------------------------
def _sequence_by_sequence(rnn, x, states, lengths):
    """The reference for ``lengths``: each sequence alone, unpadded, through ``rnn`` itself;
    outputs padded with zeros, final states after each sequence's last step."""
    outs, finals = [], []
    for b in range(x.shape[0]):
        length = x.shape[1] if lengths is None else int(lengths[b])
        state = tuple(s[:, b : b + 1] for s in states)
        out, final = rnn(x[b : b + 1, :length], state if len(state) > 1 else state[0])
        outs.append(torch.nn.functional.pad(out, (0, 0, 0, x.shape[1] - length)))
        finals.append(final if isinstance(final, tuple) else (final,))
    return torch.cat(outs), tuple(torch.cat(f, 1) for f in zip(*finals, strict=True))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    ("batch", "steps", "hidden", "inputs"),
    # odd sizes reach the remainder loops; (20, 4, 128, 5) and (9, 5, 256, 3) are above
    # gru_cpu.cpp's kSmallProduct (the library's products) for the LSTM and both; an LSTM of
    # 256 units runs on oneDNN (LSTM_KERNEL_MAX_HIDDEN)
    [(3, 1, 4, 2), (5, 9, 7, 3), (8, 32, 64, 2), (20, 4, 128, 5), (9, 5, 256, 3)],
)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_compiled_kernels_match_autograd_sequence_by_sequence(kind, batch, steps, hidden, inputs, with_lengths):
    """float64: the compiled LSTM (and GRU) over padded sequences with ``lengths`` give each
    sequence's outputs, final states and every gradient as ``nn.LSTM`` / ``nn.GRU`` run on it alone."""
    from rl_warmup.cells import LSTM_KERNEL_MAX_HIDDEN, run_gru, run_lstm

    if gru_ext.load() is None:
        pytest.skip("the compiled kernel cannot be built here")
    torch.manual_seed(2)
    rnn = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(inputs, hidden, batch_first=True).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(batch, steps, inputs, dtype=torch.float64, requires_grad=True)
    states = tuple(
        torch.randn(1, batch, hidden, dtype=torch.float64, requires_grad=True) for _ in range(2 if kind == "lstm" else 1)
    )
    lengths = None
    if with_lengths:
        lengths = torch.sort(torch.randint(1, steps + 1, (batch,)), descending=True).values
        lengths[0] = steps
    weights = [torch.randn(batch, steps, hidden, dtype=torch.float64)]
    weights += [torch.randn(1, batch, hidden, dtype=torch.float64) for _ in states]

    def loss(out, finals):
        return sum((t * w).sum() for t, w in zip((out, *finals), weights, strict=True))

    wrt = [x, *states, *rnn.parameters()]
    ref_out, ref_finals = _sequence_by_sequence(rnn, x, states, lengths)
    ref = torch.autograd.grad(loss(ref_out, ref_finals), wrt)
    if kind == "lstm":
        out, finals = run_lstm(rnn, x, states, lengths)
    else:
        out, h_n = run_gru(rnn, x, states[0], lengths)
        finals = (h_n,)
    compiled = steps > 1 and (kind == "gru" or hidden <= LSTM_KERNEL_MAX_HIDDEN)
    assert (type(out.grad_fn).__name__ == f"_Compiled{kind.upper()}SequenceBackward") is compiled
    got = torch.autograd.grad(loss(out, finals), wrt)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    for f, r in zip(finals, ref_finals, strict=True):
        torch.testing.assert_close(f, r, rtol=1e-12, atol=1e-12)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_compiled_lstm_float32_agrees_with_onednn():
    """float32 with saturated gates (inputs scaled up), 300 steps: within round-off of oneDNN."""
    from rl_warmup.cells import run_lstm

    if gru_ext.load() is None:
        pytest.skip("the compiled kernel cannot be built here")
    torch.manual_seed(1)
    rnn = torch.nn.LSTM(3, 64, batch_first=True)
    x = (20.0 * torch.randn(8, 300, 3)).requires_grad_()
    hx = (torch.zeros(1, 8, 64), torch.zeros(1, 8, 64))
    ref_out, _ = rnn(x, hx)
    ref = torch.autograd.grad(ref_out.square().sum(), [x, *rnn.parameters()])
    out, _ = run_lstm(rnn, x, hx)
    got = torch.autograd.grad(out.square().sum(), [x, *rnn.parameters()])
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3 * r.abs().max().item())


def test_lengths_give_the_same_results_on_every_path(monkeypatch):
    """Without the kernel (the Python GRU backward, autograd, oneDNN's LSTM under
    RL_WARMUP_LSTM_EXT=0) ``lengths`` mean the same: zero outputs after each sequence's last step,
    final states at it."""
    from rl_warmup.cells import gru_path, run_gru, run_lstm

    torch.manual_seed(3)
    x = torch.randn(4, 6, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 4, 4, 1])
    gru = torch.nn.GRU(2, 5, batch_first=True).double()
    ref_out, (ref_h,) = _sequence_by_sequence(gru, x, (h0,), lengths)
    for path in ("compiled", "python", "autograd"):
        with gru_path(path):
            out, h_n = run_gru(gru, x, h0, lengths)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(h_n, ref_h)
    lstm = torch.nn.LSTM(2, 5, batch_first=True).double()
    ref_out, ref_finals = _sequence_by_sequence(lstm, x, (h0, h0), lengths)
    monkeypatch.setenv("RL_WARMUP_LSTM_EXT", "0")
    out, finals = run_lstm(lstm, x, (h0, h0), lengths)
    assert "Compiled" not in type(out.grad_fn).__name__  # oneDNN's
    torch.testing.assert_close(out, ref_out)
    for f, r in zip(finals, ref_finals, strict=True):
        torch.testing.assert_close(f, r)
    with pytest.raises(ValueError, match="non-increasing"):
        run_gru(gru, x, h0, torch.tensor([4, 6, 4, 1]))


@pytest.mark.parametrize("cell", ["brc", "nbrc", "mgu"])
@pytest.mark.parametrize(("batch", "steps", "hidden"), [(3, 7, 5), (8, 40, 32)])
@pytest.mark.parametrize("masks", [False, True])
def test_compiled_loop_cells_match_the_python_loop(cell, batch, steps, hidden, masks):
    """BRC / nBRC / MGU layers over whole sequences: the compiled kernel against the Python loop
    (``gru_path("python")``), float64, with episode starts inside the sequences and lengths."""
    from rl_warmup.cells import gru_path, make_layer

    if gru_ext.load() is None:
        pytest.skip("the compiled kernel cannot be built here")
    torch.manual_seed(3)
    layer = make_layer(cell, 3, hidden).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(batch, steps, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True)
    starts = (torch.rand(batch, steps) < 0.15).double() if masks else None
    lengths = torch.randint(1, steps + 1, (batch,)) if masks else None
    w_out = torch.randn(batch, steps, hidden, dtype=torch.float64)
    w_fin = torch.randn(batch, hidden, dtype=torch.float64)
    wrt = [x, h0, *layer.parameters()]

    def run(path):
        with gru_path(path):
            res = layer(x, h0, lengths=lengths, episode_starts=starts)
        loss = (res.outputs * w_out).sum() + (res.state * w_fin).sum()
        return res, torch.autograd.grad(loss, wrt)

    ref, ref_grads = run("python")
    got, got_grads = run("compiled")
    assert type(got.outputs.grad_fn).__name__ != type(ref.outputs.grad_fn).__name__  # two paths
    torch.testing.assert_close(got.outputs, ref.outputs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.state, ref.state, rtol=1e-12, atol=1e-12)
    for g, r in zip(got_grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_reexec_with_huge_pages_starts_the_same_command_again_with_the_tunable(monkeypatch):
    import os
    import platform
    import sys

    started = []
    monkeypatch.setattr(os, "execv", lambda exe, args: started.append((exe, args, os.environ.get("GLIBC_TUNABLES"))))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "orig_argv", ["python", "-u", "scripts/x.py", "--seeds", "1"])
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("GLIBC_TUNABLES", "")  # recorded, so that what the call sets is undone after the test
    monkeypatch.delenv("GLIBC_TUNABLES")
    monkeypatch.delenv("RL_WARMUP_MALLOC", raising=False)
    gru_ext.reexec_with_huge_pages()
    assert started == [(sys.executable, [sys.executable, "-u", "scripts/x.py", "--seeds", "1"], "glibc.malloc.hugetlb=1")]
    started.clear()
    gru_ext.reexec_with_huge_pages()  # the restarted process has it: runs on
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")  # the user's own: kept
    gru_ext.reexec_with_huge_pages()
    assert started == [] and os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    monkeypatch.delenv("GLIBC_TUNABLES")
    for setting in (lambda: monkeypatch.setenv("RL_WARMUP_MALLOC", "0"),
                    lambda: monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.31")),
                    lambda: monkeypatch.setattr(platform, "libc_ver", lambda: ("", "")),
                    lambda: monkeypatch.setattr(sys, "platform", "darwin")):
        setting()
        gru_ext.reexec_with_huge_pages()
        assert started == [] and "GLIBC_TUNABLES" not in os.environ
