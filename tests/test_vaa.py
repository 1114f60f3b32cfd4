"""Exact VAA and VAA*: hand-made states, the formula as a slow loop, gradients, chunking, and
the initial states reached over random prefixes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

import rl_warmup.vaa as vaa_mod
from rl_warmup.cells import CELL_NAMES, RecurrentNetwork
from rl_warmup.vaa import (
    initial_states,
    layer_vaa_stars,
    measure_vaa,
    measure_vaa_star,
    pad_sequences,
    vaa,
    vaa_star,
)

EPS = 1e-4


# ------------------------------------------------------------------------------------------
# Slow references written from the formulas
# ------------------------------------------------------------------------------------------
def slow_vaa(states: Tensor, epsilon: float = EPS) -> float:
    n = states.shape[0]
    total = 0.0
    for i in range(n):
        count = 0
        for j in range(n):
            fi, fj = bool(torch.isfinite(states[i]).all()), bool(torch.isfinite(states[j]).all())
            if not fi or not fj:
                count += int(not fi and not fj)  # the diverged states are one class
            else:
                count += int(float(torch.linalg.vector_norm(states[i] - states[j])) < epsilon)
        total += 1.0 / count
    return total / n


def slow_vaa_star(states: Tensor, epsilon: float = EPS) -> Tensor:
    n = states.shape[0]
    x = torch.tanh(states)
    total = states.new_zeros(())
    for i in range(n):
        row = states.new_zeros(())
        for j in range(n):
            if i == j:
                row = row + 1.0
                continue
            d = torch.sqrt(((x[i] - x[j]) ** 2).sum())
            row = row + 1.0 - torch.clamp(d - epsilon, min=0.0) / (d + 1e-6)
        total = total + 1.0 / row
    return total / n


def clustered_states(sizes: list[int], dim: int = 6, seed: int = 0) -> Tensor:
    """Clusters of the given sizes: points within 1e-6 of their centre, centres 1 apart."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for k, size in enumerate(sizes):
        centre = torch.zeros(dim, dtype=torch.float64)
        centre[k % dim] = 1.0 + k // dim
        rows.append(centre + 1e-6 * torch.rand(size, dim, generator=g, dtype=torch.float64))
    perm = torch.randperm(sum(sizes), generator=g)
    return torch.cat(rows)[perm]


# ------------------------------------------------------------------------------------------
# Exact VAA on hand-made states
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 7, 50])
def test_vaa_all_equal_is_one_over_n(n: int) -> None:
    states = torch.randn(1, 5).expand(n, 5).contiguous()
    assert float(vaa(states)) == pytest.approx(1.0 / n, abs=1e-12)
    # within epsilon of each other (but not equal) is still one attractor
    near = states + 1e-6 * torch.rand(n, 5)
    assert float(vaa(near)) == pytest.approx(1.0 / n, abs=1e-12)


@pytest.mark.parametrize("n", [2, 7, 50])
def test_vaa_all_distinct_is_one(n: int) -> None:
    states = torch.arange(n, dtype=torch.float32)[:, None] * torch.ones(n, 3)
    assert float(vaa(states)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sizes", [[3, 3, 3], [1, 4, 10], [5], [2, 2, 2, 2, 2, 2, 2, 1]])
def test_vaa_of_k_clusters(sizes: list[int]) -> None:
    states = clustered_states(sizes)
    n = sum(sizes)
    # each cluster of size s contributes s * (1/s) = 1, so VAA = k / n
    assert float(vaa(states)) == pytest.approx(len(sizes) / n, abs=1e-12)
    assert float(vaa(states)) == pytest.approx(slow_vaa(states), abs=1e-12)


def test_vaa_epsilon_is_a_strict_threshold() -> None:
    states = torch.tensor([[0.0, 0.0], [3e-4, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert float(vaa(states, epsilon=2e-4)) == pytest.approx(1.0)
    assert float(vaa(states, epsilon=4e-4)) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_vaa_non_finite_rows_are_one_class_and_never_inf() -> None:
    states = torch.tensor(
        [
            [0.0, 0.0],
            [5.0, 5.0],
            [float("inf"), 0.0],
            [float("nan"), 1.0],
            [0.0, float("-inf")],
            [1e-7, 0.0],  # same attractor as row 0
        ]
    )
    value = float(vaa(states))
    assert math.isfinite(value)
    # rows 0 and 5 together, row 1 alone, rows 2, 3, 4 the diverged class
    assert value == pytest.approx((0.5 + 1.0 + 3 * (1 / 3) + 0.5) / 6, abs=1e-12)
    assert value == pytest.approx(slow_vaa(states), abs=1e-12)
    # a finite state at zero is not merged with diverged states (which are zeroed internally)
    states = torch.tensor([[0.0, 0.0], [float("nan"), float("nan")]])
    assert float(vaa(states)) == pytest.approx(1.0)
    all_bad = torch.full((4, 3), float("inf"))
    assert float(vaa(all_bad)) == pytest.approx(0.25)


def test_vaa_huge_but_finite_states() -> None:
    states = torch.tensor([[3e38, 0.0], [3e38, 0.0], [-3e38, 0.0]])
    assert float(vaa(states)) == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_vaa_matches_slow_loop_on_random_states() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.randn(12, 4, generator=g, dtype=torch.float64)
    states = torch.cat([base, base[:6] + 3e-5 * torch.rand(6, 4, generator=g, dtype=torch.float64)])
    assert float(vaa(states)) == pytest.approx(slow_vaa(states), abs=1e-12)


def test_vaa_is_not_differentiable_but_returns_a_tensor() -> None:
    states = torch.randn(5, 3, requires_grad=True)
    out = vaa(states)
    assert isinstance(out, Tensor) and out.dim() == 0 and not out.requires_grad


# ------------------------------------------------------------------------------------------
# VAA*
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vaa_star_matches_formula_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    base = 0.7 * torch.randn(10, 5, generator=g, dtype=torch.float64)
    states = torch.cat(
        [
            base,
            base[:4] + 2e-5 * torch.randn(4, 5, generator=g, dtype=torch.float64),  # d < eps
            base[4:7] + 3e-4 * torch.randn(3, 5, generator=g, dtype=torch.float64),  # d ~ eps
            base[:1],  # exact duplicate
            torch.full((1, 5), 40.0, dtype=torch.float64),  # saturated by the tanh
            torch.full((1, 5), 50.0, dtype=torch.float64),
        ]
    )
    assert float(vaa_star(states)) == pytest.approx(float(slow_vaa_star(states)), abs=1e-6)
    # float32 too, to float32 precision
    assert float(vaa_star(states.float())) == pytest.approx(float(slow_vaa_star(states)), abs=1e-5)


def test_vaa_star_limits() -> None:
    same = torch.ones(8, 3)
    assert float(vaa_star(same)) == pytest.approx(1 / 8, abs=1e-6)
    far = torch.eye(8) * 3
    # the soft count keeps a tiny bias: C_ij = 1 - (d - eps) / (d + 1e-6) > 0 for far states
    assert 0.99 < float(vaa_star(far)) <= 1.0


def test_vaa_star_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    states = torch.randn(5, 3, generator=g, dtype=torch.float64)
    states = torch.cat([states, states[:1] + 3e-5])  # one pair inside epsilon
    states.requires_grad_(True)
    assert torch.autograd.gradcheck(vaa_star, (states,), eps=1e-7, atol=1e-6)


def test_vaa_star_gradient_matches_formula_loop() -> None:
    g = torch.Generator().manual_seed(3)
    states = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    (grad_fast,) = torch.autograd.grad(vaa_star(states), states)
    (grad_slow,) = torch.autograd.grad(slow_vaa_star(states), states)
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-6, atol=1e-9)
    assert torch.isfinite(grad_fast).all()


def test_chunking_gives_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.randn(9, 3, generator=g, dtype=torch.float64)
    states = torch.cat([base, base[:5] + 1e-5, torch.full((2, 3), float("nan"))])
    clean = states[:14].clone().requires_grad_(True)
    full_vaa = float(vaa(states))
    full_star = vaa_star(clean)
    (full_grad,) = torch.autograd.grad(full_star, clean)
    for chunk in (1, 7, 16, 33):  # one row at a time, and uneven chunks
        monkeypatch.setattr(vaa_mod, "_CHUNK_ELEMENTS", chunk)
        assert float(vaa(states)) == full_vaa
        star = vaa_star(clean)
        (grad,) = torch.autograd.grad(star, clean)
        assert float(star.detach()) == pytest.approx(float(full_star.detach()), abs=1e-12)
        torch.testing.assert_close(grad, full_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn", [vaa, vaa_star])
def test_bad_states_raise(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="at least n = 2"):
        fn(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        fn(torch.zeros(4))
    with pytest.raises(TypeError, match="torch"):
        fn([[0.0], [1.0]])


# ------------------------------------------------------------------------------------------
# Sequences and initial states
# ------------------------------------------------------------------------------------------
def test_pad_sequences_list_and_padded() -> None:
    seqs = [torch.ones(3, 2), 2 * torch.ones(1, 2), np.full((4, 2), 3.0)]
    padded, lens = pad_sequences(seqs)
    assert padded.shape == (3, 4, 2) and lens.tolist() == [3, 1, 4]
    assert padded.dtype.is_floating_point
    assert float(padded[1, 1:].abs().sum()) == 0.0
    again, lens2 = pad_sequences(padded, lens)
    assert torch.equal(again, padded) and torch.equal(lens2, lens)
    full, lens3 = pad_sequences(np.zeros((2, 5, 2), dtype=np.int64))
    assert full.dtype.is_floating_point and lens3.tolist() == [5, 5]


def test_pad_sequences_bad_input() -> None:
    with pytest.raises(ValueError, match="empty list"):
        pad_sequences([])
    with pytest.raises(ValueError, match="empty batch"):
        pad_sequences(torch.zeros(0, 4, 2))
    with pytest.raises(ValueError, match="input size 3 but the network expects 2"):
        pad_sequences([torch.zeros(4, 3)], input_size=2)
    with pytest.raises(ValueError, match="same input size"):
        pad_sequences([torch.zeros(4, 3), torch.zeros(4, 2)])
    with pytest.raises(ValueError, match="sequence 1"):
        pad_sequences([torch.zeros(4, 3), torch.zeros(0, 3)])
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        pad_sequences(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="lengths must lie in"):
        pad_sequences(torch.zeros(2, 4, 1), [4, 5])
    with pytest.raises(ValueError, match="lengths must have shape"):
        pad_sequences(torch.zeros(2, 4, 1), [4])
    with pytest.raises(ValueError, match="only for a padded batch"):
        pad_sequences([torch.zeros(4, 1)], [4])


def _prefix_states(net: RecurrentNetwork, seq: Tensor) -> list[Tensor]:
    """Slow reference: the whole-network state after each prefix, one sequence, one prefix at a
    time (a separate forward pass per truncation). Returns one ``(sum state sizes,)`` per c."""
    out = []
    for c in range(1, seq.shape[0] + 1):
        res = net(seq[None, :c])
        out.append(torch.cat([s[0] for s in res.states]))
    return out


def _match_prefix(state: Tensor, prefixes: list[Tensor]) -> int | None:
    """Prefix length ``c`` whose state equals ``state`` (to 1e-6: with a gradient, a GRU runs the
    compiled kernel, equal to ``torch.gru`` to float round-off), or ``None``."""
    for c, ref in enumerate(prefixes, start=1):
        if torch.allclose(state, ref, rtol=0, atol=1e-6):
            return c
    return None


NET_KINDS = [(c, False) for c in CELL_NAMES] + [("gru", True), ("lstm", True), ("brc", True)]


@pytest.mark.parametrize(
    ("cell", "double"), NET_KINDS, ids=[f"{c}{'-double' if d else ''}" for c, d in NET_KINDS]
)
@pytest.mark.parametrize("as_list", [True, False], ids=["list", "padded"])
def test_initial_states_equal_separate_truncated_runs(
    cell: str, double: bool, as_list: bool
) -> None:
    net = RecurrentNetwork(
        cell, 2, 4, 2, double=double, t_max=10, generator=torch.Generator().manual_seed(0)
    )
    net = net.double()
    g = torch.Generator().manual_seed(1)
    lens = [6, 1, 4, 9, 3, 7]
    seqs = [torch.randn(t, 2, generator=g, dtype=torch.float64) for t in lens]
    prefixes = [_prefix_states(net, s) for s in seqs]
    if as_list:
        data, lengths = seqs, None
    else:
        data, lengths = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True), torch.tensor(lens)
        data[1, 1:] = 1e6  # padding must never be read

    # every sequence once (n = None): row i is sequence i cut at some c in 1..T_i
    cuts: list[list[int]] = [[] for _ in seqs]
    for rep in range(6):
        states = initial_states(net, data, torch.Generator().manual_seed(rep), lengths=lengths)
        assert [s.shape for s in states] == [(len(seqs), size) for size in net.state_sizes]
        flat = torch.cat(states, dim=1)
        for i in range(len(seqs)):
            c = _match_prefix(flat[i], prefixes[i])
            assert c is not None, f"state {i} is not the state of any prefix of sequence {i}"
            cuts[i].append(c)
    assert cuts[1] == [1] * 6
    assert len(set(cuts[3])) > 1  # truncations vary (T = 9)

    # sampling n states: each is a prefix state of one of the sequences
    states = initial_states(net, data, torch.Generator().manual_seed(9), n=4, lengths=lengths)
    flat = torch.cat(states, dim=1)
    assert flat.shape[0] == 4
    for row in flat:
        assert any(_match_prefix(row, p) is not None for p in prefixes)
    # more states than sequences: drawn with replacement
    flat = torch.cat(
        initial_states(net, data, torch.Generator().manual_seed(9), n=15, lengths=lengths), dim=1
    )
    assert flat.shape[0] == 15


def test_initial_states_cuts_are_uniform() -> None:
    """``c ~ U{1..T}``: with a network whose state counts the steps, the cut is readable."""
    net = RecurrentNetwork("gru", 1, 1, 1)
    with torch.no_grad():  # z = 0 and r = 1, so h' = tanh(x + h): a different state after each step
        for p in net.parameters():
            p.zero_()
        net.layers[0].rnn.bias_ih_l0[1] = -50.0  # z = 0: h' = n
        net.layers[0].rnn.weight_hh_l0[2, 0] = 1.0  # n = tanh(x + r * h)
        net.layers[0].rnn.weight_ih_l0[2, 0] = 1.0
        net.layers[0].rnn.bias_hh_l0[0] = 50.0  # r = 1
    seq = torch.full((1, 5, 1), 0.1)
    prefixes = _prefix_states(net, seq[0])
    counts = torch.zeros(5)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        state = initial_states(net, seq.expand(2, 5, 1), g)[0][0]
        c = _match_prefix(state.double(), [p.double() for p in prefixes])
        assert c is not None
        counts[c - 1] += 1
    assert float(counts.min()) > 50  # each of the 5 cuts about 80 times in 400


def test_initial_states_gradient_flows_and_bad_n() -> None:
    net = RecurrentNetwork("gru", 2, 4, 1)
    seqs = [torch.randn(5, 2) for _ in range(3)]
    states = initial_states(net, seqs, torch.Generator().manual_seed(0), n=3)
    assert states[0].requires_grad
    with torch.no_grad():
        assert not initial_states(net, seqs, torch.Generator().manual_seed(0), n=3)[0].requires_grad
    with pytest.raises(ValueError, match="n must be >= 2"):
        initial_states(net, seqs, n=1)
    with pytest.raises(ValueError, match="input size 3 but the network expects 2"):
        initial_states(net, [torch.randn(5, 3)])


def test_initial_states_same_generator_same_states() -> None:
    net = RecurrentNetwork("mgu", 2, 4, 2)
    seqs = [torch.randn(t, 2) for t in (3, 8, 5, 6)]
    a = initial_states(net, seqs, torch.Generator().manual_seed(3), n=3)
    b = initial_states(net, seqs, torch.Generator().manual_seed(3), n=3)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


# ------------------------------------------------------------------------------------------
# Measures on networks
# ------------------------------------------------------------------------------------------
def test_measure_vaa_matches_hand_computation() -> None:
    net = RecurrentNetwork("lstm", 1, 4, 2, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(20, 8, 1, generator=torch.Generator().manual_seed(1))
    res = measure_vaa(net, seqs, settle_steps=30, n=10, generator=torch.Generator().manual_seed(2))
    # same draws by hand: initial states, then one perturbation, then the whole-network VAA
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        states = initial_states(net, seqs, g, n=10)
        u = torch.randn(1, generator=g, dtype=torch.float32).expand(10, 1)
        settled = torch.cat(net(u[:, None, :].expand(10, 30, 1), states).states, dim=1)
    assert res.n == 10 and res.n_nonfinite == 0
    assert res.vaa == pytest.approx(float(vaa(settled)), abs=1e-12)


def test_measure_vaa_counts_diverged_states(monkeypatch: pytest.MonkeyPatch) -> None:
    net = RecurrentNetwork("gru", 1, 3, 2)
    seqs = torch.randn(10, 5, 1)

    def diverging_settle(self, inputs, states, steps):  # type: ignore[no-untyped-def]
        out = [s.clone() for s in states]
        out[1][:3] = float("inf")
        out[0][3] = float("nan")
        return out

    monkeypatch.setattr(RecurrentNetwork, "settle", diverging_settle)
    with pytest.warns(RuntimeWarning, match="became non-finite while settling"):
        res = measure_vaa(net, seqs, settle_steps=5, n=8, generator=torch.Generator().manual_seed(0))
    assert res.n_nonfinite == 4
    assert math.isfinite(res.vaa) and 1 / 8 <= res.vaa <= 1.0


def test_measure_vaa_bad_arguments() -> None:
    net = RecurrentNetwork("gru", 1, 3, 1)
    with pytest.raises(ValueError, match="settle_steps"):
        measure_vaa(net, torch.randn(4, 5, 1), settle_steps=0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        measure_vaa(net, torch.randn(4, 5, 1), n=1)
    with pytest.raises(ValueError, match="empty list"):
        measure_vaa(net, [])


def test_layer_vaa_stars_per_layer_and_double_uses_first_half() -> None:
    net = RecurrentNetwork("gru", 1, 6, 2, double=True, generator=torch.Generator().manual_seed(0))
    seqs = torch.randn(12, 6, 1, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    states = initial_states(net, seqs, g, n=8)
    stars = layer_vaa_stars(net, states, 5, generator=torch.Generator().manual_seed(3))
    assert stars.shape == (2,) and stars.requires_grad
    # by hand: layer l's first half alone, from its part of the state, with its own perturbation
    g = torch.Generator().manual_seed(3)
    for k, (layer, state) in enumerate(zip(net.layers, states, strict=True)):
        u = torch.randn(layer.input_size, generator=g).expand(8, -1)
        part = layer.warm_part
        settled = part(u[:, None, :].expand(8, 5, -1), state[:, : part.state_size]).state
        assert float(stars[k].detach()) == pytest.approx(float(vaa_star(settled).detach()), abs=1e-6)
    with pytest.raises(ValueError, match="settle_steps"):
        layer_vaa_stars(net, states, 0)
    values = measure_vaa_star(net, seqs, settle_steps=5, n=8)
    assert len(values) == 2 and all(1 / 8 - 1e-6 <= v <= 1.0 for v in values)
