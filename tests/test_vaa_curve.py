"""The exact VAA over settling time: one pass, the curve VAA(M), movement, convergence and horizon.

Hand-made linear systems ``x_{t+1} = a x_t + b u`` have known behaviour under a constant input:
with ``|a| < 1`` every state converges to the same fixed point ``b u / (1 - a)`` (distances shrink
by ``a`` per step); with ``a = 1`` states drift by ``b u`` per step forever and keep their
distances; ``tanh(k x)`` with ``k > 1`` is bistable.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_vaa import slow_vaa_star  # the formula loop the batched VAA* is checked against
from torch import Tensor

from rl_warmup.cells import LayerOutput, RecurrentLayer, RecurrentNetwork
from rl_warmup.vaa import (
    DEFAULT_CHECKPOINTS,
    initial_states,
    layer_vaa_stars,
    measure_vaa,
    memory_horizon,
    settle_curve,
    vaa,
    vaa_star,
)


class MapLayer(RecurrentLayer):
    """``x_{t+1} = f(x_t) + b u_t`` elementwise, a hand-made system with a flat state."""

    def __init__(self, size: int, step, b: float = 0.0) -> None:  # type: ignore[no-untyped-def]
        super().__init__(size, size)
        self.state_size = size
        self.step_fn = step
        self.b = b
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # initial_state reads the device from a parameter

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        pass

    def _run(self, inputs, state, lengths, episode_starts, return_all_states):  # type: ignore[no-untyped-def]
        outs = []
        for t in range(inputs.shape[1]):
            state = self.step_fn(state) + self.b * inputs[:, t]
            outs.append(state)
        return LayerOutput(torch.stack(outs, dim=1), state, None)


def settle_from(layer: RecurrentLayer, x0: Tensor, checkpoints, u: float = 1.0, eps: float = 1e-4):  # type: ignore[no-untyped-def]
    net = RecurrentNetwork(layers=[layer])
    inputs = torch.full((x0.shape[0], layer.input_size), u)
    return settle_curve(net, [x0], inputs, checkpoints, eps)


def spread(n: int, size: int = 1, scale: float = 1.0) -> Tensor:
    return torch.linspace(-scale, scale, n)[:, None].expand(n, size).clone()


def test_contracting_system_converges_to_one_attractor_with_the_predicted_horizon() -> None:
    a = 0.9
    x0 = spread(11)  # neighbours 0.2 apart; the fixed point 0.05 / (1 - a) = 0.5 is none of them
    curve = settle_from(MapLayer(1, lambda x: a * x, b=0.05), x0, [1, 10, 50, 100, 200, 400])
    # distances after M steps: 0.2 a^M; all states merge once 0.2 a^M < ε (and all n within ε of each other)
    expected = [float(vaa(x0 * a**m)) for m in (1, 10, 50, 100, 200, 400)]
    assert list(curve.vaa) == pytest.approx(expected, abs=1e-6)
    assert curve.vaa[0] == 1.0 and curve.vaa[-1] == pytest.approx(1 / 11)
    # horizon: the first checkpoint where VAA < 1/2
    first_half = next(m for m, v in zip(curve.settle_steps, curve.vaa, strict=True) if v < 0.5)
    assert curve.horizon == first_half
    # movement of the state at step M is |x_M - x_{M-1}| = (1 - a) |x_{M-1} - x*| -> 0
    assert curve.movement[-1] < 1e-12 and curve.movement[0] > 0.01
    assert curve.n_moving[-1] == 0 and curve.n_moving[0] == 11
    assert curve.n_nonfinite == (0,) * 6


def test_drifting_states_stay_distinct_but_are_reported_as_moving() -> None:
    # a = 1: x_M = x_0 + M b u; distances never shrink, no state ever converges
    x0 = spread(8, size=2)
    curve = settle_from(MapLayer(2, lambda x: x, b=0.01), x0, [10, 100, 1000])
    assert curve.vaa == (1.0, 1.0, 1.0)
    assert curve.horizon is None  # never halves within the curve
    # each state moves by ||b u|| = 0.01 * sqrt(2) per step, more than ε: all n count as moving
    assert curve.movement == pytest.approx((0.01 * math.sqrt(2),) * 3, rel=1e-4)
    assert curve.n_moving == (8, 8, 8)


def test_bistable_system_keeps_two_attractors_and_settles() -> None:
    x0 = spread(10, scale=0.5)
    curve = settle_from(MapLayer(1, lambda x: torch.tanh(3 * x)), x0, [50, 500, 5000], u=0.0)
    assert curve.vaa == pytest.approx((2 / 10,) * 3)  # two classes of 5 states: (1/n) Σ 1/5 = 2/10
    assert curve.n_moving[-1] == 0 and curve.movement[-1] < 1e-6
    assert curve.horizon is None  # attractors: the separation never fades


def test_diverging_states_are_counted_as_nonfinite_in_every_view() -> None:
    x0 = spread(6)
    curve = settle_from(MapLayer(1, lambda x: 2.0 * x), x0, [10, 200])
    # |x| doubles per step: every non-zero state reaches inf in float32 by step 200; x0 has no 0 in it
    assert curve.n_nonfinite[0] == 0 and curve.n_nonfinite[-1] == 6
    assert math.isfinite(curve.vaa[-1]) and curve.vaa[-1] == pytest.approx(1 / 6)


def test_one_pass_equals_separate_settlings_on_a_real_network() -> None:
    net = RecurrentNetwork("lstm", 2, 6, 2, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(30, 9, 2, generator=torch.Generator().manual_seed(1))
    checkpoints = [3, 20, 100]
    res = measure_vaa(net, seqs, settle_steps=100, n=12, generator=torch.Generator().manual_seed(2),
                      checkpoints=checkpoints, view="state")
    assert res.curve is not None and res.curve.settle_steps == (3, 20, 100)
    for m, value in zip(checkpoints, res.curve.vaa, strict=True):
        single = measure_vaa(net, seqs, settle_steps=m, n=12, generator=torch.Generator().manual_seed(2), view="state")
        assert value == single.vaa
    assert res.vaa == res.curve.vaa[-1] and res.horizon == res.curve.horizon


def test_output_view_compares_h_only_and_state_view_h_and_c() -> None:
    net = RecurrentNetwork("lstm", 1, 4, 2, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(20, 8, 1, generator=torch.Generator().manual_seed(1))
    results = {}
    for view in ("output", "state"):
        results[view] = measure_vaa(net, seqs, settle_steps=30, n=10, generator=torch.Generator().manual_seed(2), view=view)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        states = initial_states(net, seqs, g, n=10)
        u = torch.randn(1, generator=g).expand(10, 1)
        settled = net(u[:, None, :].expand(10, 30, 1), states).states
    h = torch.cat([s[:, :4] for s in settled], dim=1)
    assert results["output"].vaa == pytest.approx(float(vaa(h)), abs=1e-12)
    assert results["state"].vaa == pytest.approx(float(vaa(torch.cat(settled, dim=1))), abs=1e-12)
    with pytest.raises(ValueError, match="view"):
        measure_vaa(net, seqs, settle_steps=3, view="c")
    with pytest.raises(ValueError, match="checkpoints must not exceed"):
        measure_vaa(net, seqs, settle_steps=3, checkpoints=[5])


def test_lstm_with_diverged_cell_state_counts_as_nonfinite_in_the_output_view(monkeypatch: pytest.MonkeyPatch) -> None:
    net = RecurrentNetwork("lstm", 1, 3, 1)

    def diverging_settle(self, inputs, states, steps):  # type: ignore[no-untyped-def]
        out = [s.clone() for s in states]
        out[0][:2, 3:] = float("inf")  # c of two states is inf while their h = o tanh(c) stays finite
        return out

    monkeypatch.setattr(RecurrentNetwork, "settle", diverging_settle)
    with pytest.warns(RuntimeWarning, match="became non-finite while settling"):
        res = measure_vaa(net, torch.randn(10, 5, 1), settle_steps=5, n=8, generator=torch.Generator().manual_seed(0))
    assert res.n_nonfinite == 2


def test_memory_horizon_rules() -> None:
    assert memory_horizon([100, 200, 500], [0.8, 0.5, 0.39], n=100) == 500
    assert memory_horizon([100, 200, 500], [0.8, 0.7, 0.6], n=100) is None
    assert memory_horizon([100, 200], [0.01, 0.01], n=100) == 100  # collapsed from the start
    assert memory_horizon([100, 200], [0.02, 0.01], n=100) == 200
    with pytest.raises(ValueError):
        memory_horizon([1, 2], [0.5], n=10)


def test_default_checkpoints_span_the_issue_range() -> None:
    assert DEFAULT_CHECKPOINTS[0] == 100 and DEFAULT_CHECKPOINTS[-1] == 10_000


# ------------------------------------------------------------------------------------------
# VAA* on the bounded view of an LSTM (tanh(h) only) against the formula loop
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_layers", [1, 2])
def test_output_view_vaa_star_matches_formula_loop_on_h(num_layers: int) -> None:
    net = RecurrentNetwork("lstm", 1, 5, num_layers, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(16, 7, 1, generator=torch.Generator().manual_seed(1))
    states = initial_states(net, seqs, torch.Generator().manual_seed(2), n=9)
    stars = layer_vaa_stars(net, states, 12, generator=torch.Generator().manual_seed(3), view="output")
    g = torch.Generator().manual_seed(3)
    for k, (layer, state) in enumerate(zip(net.layers, states, strict=True)):
        u = torch.randn(layer.input_size, generator=g).expand(9, -1)
        settled = layer(u[:, None, :].expand(9, 12, -1), state).state
        expected = slow_vaa_star(settled[:, :5])
        value = float(stars[k].detach())
        assert value == pytest.approx(float(expected.detach()), abs=1e-5)
        assert value == pytest.approx(float(vaa_star(settled[:, :5]).detach()), abs=1e-6)
    # gradient flows to the recurrent weights through h only
    stars.sum().backward()
    assert net.layers[0].rnn.weight_hh_l0.grad is not None


# ------------------------------------------------------------------------------------------
# The active set: converged states are no longer stepped
# ------------------------------------------------------------------------------------------
class Counting:
    """A step function that counts the state-steps it computes."""

    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        self.fn = fn
        self.state_steps = 0

    def __call__(self, x: Tensor) -> Tensor:
        self.state_steps += x.shape[0]
        return self.fn(x)


SYSTEMS = {
    # name: (step, b, u, x0)
    "contracting": (lambda x: 0.9 * x, 0.05, 1.0, spread(11)),
    "slowly contracting": (lambda x: 0.9995 * x, 0.0, 1.0, spread(11, scale=0.01)),
    "drifting": (lambda x: x, 1e-7, 1.0, spread(8, size=2, scale=1e-3)),
    "bistable": (lambda x: torch.tanh(3 * x), 0.0, 0.0, spread(10, scale=0.5)),
    "diverging": (lambda x: 2.0 * x, 0.0, 0.0, spread(6)),
    "period two": (lambda x: -x, 0.0, 0.0, spread(6)),
}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_active_set_gives_the_full_computation_s_curve(name: str) -> None:
    fn, b, u, x0 = SYSTEMS[name]
    checkpoints = [1, 7, 100, 1000, 5000]
    curves = []
    for active in (False, True):
        net = RecurrentNetwork(layers=[MapLayer(x0.shape[1], fn, b=b)])
        inputs = torch.full((x0.shape[0], x0.shape[1]), u)
        curves.append(settle_curve(net, [x0], inputs, checkpoints, active_set=active))
    full, fast = curves
    assert fast.vaa == full.vaa
    assert fast.n_moving == full.n_moving and fast.n_nonfinite == full.n_nonfinite
    assert fast.horizon == full.horizon
    assert fast.movement == pytest.approx(full.movement, abs=1e-6)


def test_active_set_stops_stepping_converged_states_only() -> None:
    m = 10_000
    converging = Counting(lambda x: 0.5 * x)
    curve = settle_from(MapLayer(1, converging, b=0.1), spread(10), [100, m])
    assert curve.vaa == pytest.approx((0.1, 0.1))
    assert converging.state_steps < 10 * 200  # converged within a few chunks, then never stepped
    # a slow drift (1e-8 per step: below the tolerance per chunk, but 1e-4 = ε over M) is never frozen
    drifting = Counting(lambda x: x)
    settle_from(MapLayer(1, drifting, b=1e-8), spread(10, scale=1e-3), [100, m])  # small: x + 1e-8 != x in float32
    assert drifting.state_steps == 10 * m
    # float round-off jitter: a cycle of period 3 (which does not divide the chunk) 1e-7 wide
    a, b, c = (torch.tensor(0.5) + k * 1.2e-7 for k in range(3))
    cycle = Counting(lambda x: torch.where(x == a, b, torch.where(x == b, c, a)))
    jitter = settle_from(MapLayer(1, cycle), torch.full((5, 1), float(a)), [100, m], u=0.0)
    assert jitter.vaa == pytest.approx((0.2, 0.2)) and jitter.n_moving == (0, 0)
    assert cycle.state_steps < 5 * 200
    # the same, half of the states converging and half drifting: only the drifting half runs to the end
    mixed = Counting(lambda x: torch.where(x > 0, 0.5 * x, x + 1e-8))
    net = RecurrentNetwork(layers=[MapLayer(1, mixed)])
    x0 = torch.tensor([[1.0], [2.0], [-1e-3], [-2e-3]])
    settle_curve(net, [x0], torch.zeros(4, 1), [m])
    assert 2 * m <= mixed.state_steps < 2 * m + 2 * 200


@pytest.mark.parametrize("cell", ["gru", "lstm", "mgu"])
def test_active_set_measures_real_networks_like_the_full_computation(cell: str) -> None:
    net = RecurrentNetwork(cell, 2, 16, 2, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(30, 12, 2, generator=torch.Generator().manual_seed(1))
    values = [
        measure_vaa(net, seqs, settle_steps=2000, n=20, generator=torch.Generator().manual_seed(2),
                    checkpoints=[10, 100, 500], view="state", active_set=active)
        for active in (False, True)
    ]
    assert values[0].curve is not None and values[1].curve is not None
    assert values[1].curve.vaa == values[0].curve.vaa
    assert values[1].curve.n_moving == values[0].curve.n_moving
