"""Warmup options beyond the paper (the LSTM study): collapse detection, gradient norms, the
bounded LSTM view, forget-gate bias, gradient clipping, best iterate, adaptive settling, and the
restart rules that read the exact VAA curve."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.warmup import WarmupConfig, WarmupError, WarmupResult, warmup


def sequences(n: int = 64, length: int = 30, seed: int = 0) -> Tensor:
    x = torch.zeros(n, length, 1)
    x[:, 0, 0] = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return x


def lstm(seed: int = 0, hidden: int = 8, layers: int = 1) -> RecurrentNetwork:
    return RecurrentNetwork("lstm", 1, hidden, layers, generator=torch.Generator().manual_seed(seed))


FAST = dict(steps=6, batch_size=8, settle_max=20, vaa_checkpoints=(10, 50), vaa_n=16, restart_threshold=1.0)


# -- collapse detector and gradient norms ---------------------------------------------------------
def test_collapsed_layers_are_those_at_or_below_two_over_n() -> None:
    result = WarmupResult(final_vaa_star=[1 / 32, 0.5, 2 / 32, 0.07], collapse_level=2 / 32)
    assert result.collapsed_layers == [0, 2]
    assert WarmupResult(final_vaa_star=[0.5]).collapsed_layers == []


def test_warmup_reports_a_collapse_and_a_zero_gradient_where_vaa_star_is_flat() -> None:
    # a fresh LSTM contracts: after 200 settling steps every state of the batch is in one
    # attractor, VAA* = 1/n exactly and its gradient is exactly zero
    net = lstm()
    result = warmup(net, sequences(), WarmupConfig(steps=3, lr=1e-9, settle_start=200, settle_max=200,
                                                   batch_size=8, restart_threshold=1.0, vaa_checkpoints=None))
    assert result.collapse_level == pytest.approx(2 / 8)
    assert result.collapsed_layers == [0] and result.final_vaa_star == [pytest.approx(1 / 8)]
    assert result.grad_norm_history == [0.0, 0.0, 0.0]
    # where the states are apart (one settling step), the gradient is not zero
    moving = warmup(lstm(), sequences(), WarmupConfig(steps=2, settle_start=1, settle_increment=0, settle_max=1,
                                                      batch_size=8, restart_threshold=1.0, vaa_checkpoints=None))
    assert all(g > 0 for g in moving.grad_norm_history)


def test_result_carries_the_exact_vaa_curve_and_horizon() -> None:
    net = lstm()
    result = warmup(net, sequences(), WarmupConfig(**FAST))
    assert result.vaa is not None and result.vaa.curve is not None
    assert result.vaa.curve.settle_steps == (10, 50) and result.vaa.n == 16
    assert result.vaa.vaa == result.vaa.curve.vaa[-1]
    assert warmup(lstm(), sequences(), WarmupConfig(**{**FAST, "vaa_checkpoints": None})).vaa is None


# -- the bounded view -----------------------------------------------------------------------------
def test_output_view_gives_gradient_only_through_h_and_is_a_no_op_for_a_gru() -> None:
    gru_cfg = dict(FAST, vaa_checkpoints=None)
    a = RecurrentNetwork("gru", 1, 6, 1, generator=torch.Generator().manual_seed(0))
    b = RecurrentNetwork("gru", 1, 6, 1, generator=torch.Generator().manual_seed(0))
    ra = warmup(a, sequences(), WarmupConfig(**gru_cfg))
    rb = warmup(b, sequences(), WarmupConfig(**gru_cfg, state_view="output"))
    assert ra.loss_history == rb.loss_history
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # for an LSTM the two views give other losses
    rc = warmup(lstm(), sequences(), WarmupConfig(**gru_cfg))
    rd = warmup(lstm(), sequences(), WarmupConfig(**gru_cfg, state_view="output"))
    assert rc.loss_history[0] != rd.loss_history[0]


# -- forget-gate bias, clipping -------------------------------------------------------------------
def test_lstm_forget_bias_is_set_before_warming_and_after_every_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    net = lstm(hidden=4)
    seen = []
    import rl_warmup.warmup as warmup_mod

    original = warmup_mod._attempt

    def spy(network, *args, **kwargs):  # type: ignore[no-untyped-def]
        rnn = network.layers[0].rnn
        seen.append((rnn.bias_ih_l0[4:8].detach().clone(), rnn.bias_hh_l0[4:8].detach().clone()))
        return original(network, *args, **kwargs)

    monkeypatch.setattr(warmup_mod, "_attempt", spy)
    with pytest.raises(WarmupError):  # every attempt refused: the rule below cannot be met
        warmup(net, sequences(), WarmupConfig(**{**FAST, "restart_below": 0.99 - 1e-9, "restart_threshold": 0.99},
                                              lstm_forget_bias=2.5, max_restarts=2))
    assert len(seen) == 3
    for ih, hh in seen:
        assert torch.equal(ih, torch.full((4,), 2.5)) and torch.equal(hh, torch.zeros(4))


@pytest.mark.parametrize("cell", ["lstm", "gru", "mgu", "brc", "nbrc"])
def test_input_scale_multiplies_the_input_weights_before_warming_and_after_every_restart(
    cell: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rl_warmup.warmup as warmup_mod

    net = RecurrentNetwork(cell, 1, 4, 1, generator=torch.Generator().manual_seed(0))
    fresh = RecurrentNetwork(cell, 1, 4, 1, generator=torch.Generator().manual_seed(0))
    seen = []
    original = warmup_mod._attempt

    def spy(network, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(network.layers[0].input_weight().detach().clone())
        return original(network, *args, **kwargs)

    def reset_to_ones(generator=None):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            net.layers[0].input_weight().fill_(1.0)

    monkeypatch.setattr(warmup_mod, "_attempt", spy)
    monkeypatch.setattr(net.layers[0], "reset_warmable_parameters", reset_to_ones)
    with pytest.raises(WarmupError):  # every attempt refused, so every restart is seen
        warmup(net, sequences(), WarmupConfig(**{**FAST, "restart_below": 0.99 - 1e-9, "restart_threshold": 0.99},
                                              input_scale=0.25, max_restarts=1))
    assert len(seen) == 2
    # the first attempt: the network's own input weights, scaled; the restart: its fresh draw
    # (made all ones here, to be recognisable), scaled
    assert torch.equal(seen[0], fresh.layers[0].input_weight().detach() * 0.25)
    assert torch.equal(seen[1], torch.full_like(seen[1], 0.25))


def test_input_scale_one_is_the_paper() -> None:
    a, b = lstm(), lstm()
    warmup(a, sequences(), WarmupConfig(**FAST))
    warmup(b, sequences(), WarmupConfig(**FAST, input_scale=1.0))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_grad_clip_bounds_the_update_and_records_the_unclipped_norm() -> None:
    base = dict(FAST, vaa_checkpoints=None, settle_start=1, settle_increment=0, settle_max=1)
    free, clipped = lstm(), lstm()
    before = [p.detach().clone() for p in clipped.parameters()]
    r_free = warmup(free, sequences(), WarmupConfig(**base))
    r_clip = warmup(clipped, sequences(), WarmupConfig(**base, grad_clip=1e-12))
    # same draws, same first gradient; a gradient clipped far below Adam's eps barely moves anything
    assert r_clip.grad_norm_history[0] == pytest.approx(r_free.grad_norm_history[0]) and r_clip.grad_norm_history[0] > 1e-6
    moved_clipped = max(float((p.detach() - b).abs().max()) for p, b in zip(clipped.parameters(), before, strict=True))
    moved_free = max(float((p.detach() - b).abs().max()) for p, b in zip(free.parameters(), before, strict=True))
    assert moved_clipped < 1e-5 < 1e-3 < moved_free


# -- best iterate ---------------------------------------------------------------------------------
def test_keep_best_ends_with_the_best_scored_iterate_of_the_same_trajectory() -> None:
    config = WarmupConfig(**{**FAST, "steps": 12, "vaa_checkpoints": None})
    snapshots: list[list[Tensor]] = []
    plain = lstm()

    def record(step: int, loss: float, stars: list[float]) -> None:
        snapshots.append([p.detach().clone() for p in plain.parameters()])

    r_plain = warmup(plain, sequences(), config, callback=record)
    best = lstm()
    r_best = warmup(best, sequences(), WarmupConfig(**{**config.to_dict(), "keep_best": True, "best_every": 1}))
    # scoring draws from a generator of its own: the trajectory is the one without keep_best
    assert r_best.loss_history == r_plain.loss_history
    kept = len(snapshots) - 1 if r_best.best_step is None else r_best.best_step
    assert all(torch.equal(p, s) for p, s in zip(best.parameters(), snapshots[kept], strict=True))


# -- adaptive settling ----------------------------------------------------------------------------
def test_adaptive_settle_halves_the_bound_after_a_collapsed_step() -> None:
    config = WarmupConfig(**{**FAST, "steps": 30, "settle_max": 400, "settle_increment": 40, "vaa_checkpoints": None},
                          adaptive_settle=True)
    result = warmup(lstm(), sequences(), config)
    bound, collapses = config.settle_start, 0
    for m, stars in zip(result.settle_history, result.vaa_star_history, strict=True):
        assert 1 <= m <= bound
        if min(stars) <= result.collapse_level:
            bound, collapses = max(config.settle_start, bound // 2), collapses + 1
        else:
            bound = min(bound + config.settle_increment, config.settle_max)
    assert collapses > 0  # the rule was exercised
    # the paper's schedule draws from a bound that only grows
    paper = warmup(lstm(), sequences(), WarmupConfig(**{**config.to_dict(), "adaptive_settle": False}))
    assert max(paper.settle_history) > max(result.settle_history)


# -- restart rules on the exact curve ---------------------------------------------------------------
def test_restart_horizon_refuses_short_transients() -> None:
    # one tiny step leaves a fresh LSTM contracting: its states merge within ~50 steps
    config = WarmupConfig(**{**FAST, "steps": 1, "lr": 1e-6, "vaa_checkpoints": (10, 200, 400)},
                          restart_horizon=400, max_restarts=1)
    with pytest.raises(WarmupError, match=r"memory horizon .* shorter than restart_horizon = 400"):
        warmup(lstm(), sequences(), config)


def test_restart_moving_refuses_states_that_never_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    import rl_warmup.warmup as warmup_mod
    from rl_warmup.vaa import VAACurve, VAAMeasurement

    def chaotic(*args, **kwargs):  # type: ignore[no-untyped-def]
        curve = VAACurve((10, 50), (1.0, 1.0), (0.5, 0.5), (16, 16), (0, 0), None, 16)
        return VAAMeasurement(1.0, 16, 0, 0.5, 16, curve)

    monkeypatch.setattr(warmup_mod, "measure_vaa", chaotic)
    with pytest.raises(WarmupError, match=r"still move by 0.5 per step .* \(chaotic"):
        warmup(lstm(), sequences(), WarmupConfig(**FAST, restart_moving=1e-2, max_restarts=0))
    assert warmup(lstm(), sequences(), WarmupConfig(**FAST, max_restarts=0)).vaa.movement == 0.5  # type: ignore[union-attr]


def test_restart_moving_at_reads_the_movement_at_that_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # outputs still moving 5e-3 per step at M = 10 and settled (1e-6) at M = 50
    import rl_warmup.warmup as warmup_mod
    from rl_warmup.vaa import VAACurve, VAAMeasurement

    def settling(*args, **kwargs):  # type: ignore[no-untyped-def]
        curve = VAACurve((10, 50), (1.0, 1.0), (5e-3, 1e-6), (16, 0), (0, 0), None, 16)
        return VAAMeasurement(1.0, 16, 0, 1e-6, 0, curve)

    monkeypatch.setattr(warmup_mod, "measure_vaa", settling)
    warmup(lstm(), sequences(), WarmupConfig(**FAST, restart_moving=1e-3, max_restarts=0))  # read at 50: passes
    with pytest.raises(WarmupError, match=r"still move by 0\.005 per step after 10 settling steps"):
        warmup(lstm(), sequences(), WarmupConfig(**FAST, restart_moving=1e-3, restart_moving_at=10, max_restarts=0))


def test_restart_vaa_below_refuses_outputs_merged_before_the_first_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # the hole it closes: outputs already merged at the first checkpoint (VAA 1/n throughout) have
    # no horizon and do not move, so the horizon and movement rules both pass them
    import rl_warmup.warmup as warmup_mod
    from rl_warmup.vaa import VAACurve, VAAMeasurement

    def merged(*args, **kwargs):  # type: ignore[no-untyped-def]
        curve = VAACurve((10, 50), (1 / 16, 1 / 16), (0.0, 0.0), (0, 0), (0, 0), None, 16)
        return VAAMeasurement(1 / 16, 16, 0, 0.0, 0, curve)

    monkeypatch.setattr(warmup_mod, "measure_vaa", merged)
    rules = {**FAST, "restart_moving": 1e-3, "restart_horizon": 50, "max_restarts": 0}
    warmup(lstm(), sequences(), WarmupConfig(**rules))  # passes the horizon and movement rules
    with pytest.raises(WarmupError, match=r"exact VAA of the outputs 0\.062 after 50 settling steps, below restart_vaa_below = 0\.1"):
        warmup(lstm(), sequences(), WarmupConfig(**rules, restart_vaa_below=0.1))


def test_restart_vaa_below_reads_the_level_at_restart_moving_at(monkeypatch: pytest.MonkeyPatch) -> None:
    # apart at M = 10 (0.8), merged at M = 50 (0.05): judged at 10 it passes, at the last checkpoint not
    import rl_warmup.warmup as warmup_mod
    from rl_warmup.vaa import VAACurve, VAAMeasurement

    def fading(*args, **kwargs):  # type: ignore[no-untyped-def]
        curve = VAACurve((10, 50), (0.8, 0.05), (1e-6, 1e-6), (0, 0), (0, 0), 50, 16)
        return VAAMeasurement(0.05, 16, 0, 1e-6, 0, curve)

    monkeypatch.setattr(warmup_mod, "measure_vaa", fading)
    base = {**FAST, "restart_vaa_below": 0.1, "max_restarts": 0}
    warmup(lstm(), sequences(), WarmupConfig(**base, restart_moving=1e-3, restart_moving_at=10))
    with pytest.raises(WarmupError, match=r"0\.050 after 50 settling steps"):
        warmup(lstm(), sequences(), WarmupConfig(**base))


@pytest.mark.parametrize("check_draws", [1, 3, 8])
def test_restart_rules_read_check_draws_independent_measures(monkeypatch: pytest.MonkeyPatch, check_draws: int) -> None:
    # a network that passes under every perturbation but the fifth drawn: certified by up to four
    # draws, refused by five or more; without a horizon/moving rule only one measure is taken
    import rl_warmup.warmup as warmup_mod
    from rl_warmup.vaa import VAACurve, VAAMeasurement

    calls: list[int] = []

    def fifth_moves(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        moving = 0.5 if len(calls) == 5 else 1e-6
        curve = VAACurve((10, 50), (1.0, 1.0), (moving, moving), (16, 16), (0, 0), None, 16)
        return VAAMeasurement(1.0, 16, 0, moving, 16, curve)

    monkeypatch.setattr(warmup_mod, "measure_vaa", fifth_moves)
    config = WarmupConfig(**FAST, restart_moving=1e-2, max_restarts=0, check_draws=check_draws)
    if check_draws < 5:
        warmup(lstm(), sequences(), config)
        assert len(calls) == check_draws
    else:
        with pytest.raises(WarmupError, match=r"still move by 0\.5 per step"):
            warmup(lstm(), sequences(), config)
        assert len(calls) == 5
    calls.clear()
    warmup(lstm(), sequences(), WarmupConfig(**FAST, max_restarts=0, check_draws=check_draws))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state_view": "c"}, "state_view must be one of"),
        ({"lstm_forget_bias": math.inf}, "lstm_forget_bias must be finite"),
        ({"grad_clip": 0.0}, "grad_clip must be > 0"),
        ({"movement_penalty": -1.0}, "movement_penalty must be a finite number >= 0"),
        ({"movement_penalty": math.inf}, "movement_penalty must be a finite number >= 0"),
        ({"input_scale": 0.0}, "input_scale must be finite and > 0"),
        ({"input_scale": math.nan}, "input_scale must be finite and > 0"),
        ({"best_every": 0}, "best_every must be >= 1"),
        ({"vaa_checkpoints": ()}, "vaa_checkpoints must be settling lengths"),
        ({"vaa_n": 1}, "vaa_n must be >= 2"),
        ({"restart_moving": 1e-2, "vaa_checkpoints": None}, "restart_moving reads the exact VAA"),
        ({"restart_horizon": 20_000}, "restart_horizon reads the exact VAA curve"),
        ({"restart_horizon": 0}, "restart_horizon must be >= 1"),
        ({"check_draws": 0}, "check_draws must be >= 1"),
        ({"restart_vaa_below": 0.0}, "restart_vaa_below must lie in"),
        ({"restart_vaa_below": 0.1, "vaa_checkpoints": None}, "restart_vaa_below reads the exact VAA"),
        ({"restart_moving_at": 50, "vaa_checkpoints": (10, 50)}, "restart_moving_at needs restart_moving"),
        ({"restart_moving": 1e-3, "restart_moving_at": 20, "vaa_checkpoints": (10, 50)},
         "restart_moving_at must be one of vaa_checkpoints"),
    ],
)
def test_bad_lever_settings(changes: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=f"WarmupConfig.{message}"):
        WarmupConfig(**changes)


def test_vaa_checkpoints_are_sorted_and_deduplicated() -> None:
    assert WarmupConfig(vaa_checkpoints=(500, 100, 100)).vaa_checkpoints == (100, 500)


# -- several perturbations per VAA*, LSTM re-initialisations ------------------------------------
def test_vaa_star_over_k_perturbations_is_the_mean_of_k_single_settlings() -> None:
    from rl_warmup.vaa import initial_states, layer_vaa_stars, vaa_star

    net = RecurrentNetwork("lstm", 2, 5, 2, generator=torch.Generator().manual_seed(0))
    states = initial_states(net, torch.randn(12, 6, 2, generator=torch.Generator().manual_seed(1)),
                            torch.Generator().manual_seed(2), n=7)
    stars = layer_vaa_stars(net, states, 9, generator=torch.Generator().manual_seed(3), view="output", perturbations=3)
    g = torch.Generator().manual_seed(3)
    for k, (layer, state) in enumerate(zip(net.layers, states, strict=True)):
        draws = torch.randn(3, layer.input_size, generator=g)
        expected = []
        for u in draws:
            settled = layer(u.expand(7, 9, -1).contiguous(), state).state
            expected.append(float(vaa_star(settled[:, :5]).detach()))
        assert float(stars[k].detach()) == pytest.approx(sum(expected) / 3, abs=1e-5)
    with pytest.raises(ValueError, match="perturbations must be >= 1"):
        layer_vaa_stars(net, states, 9, perturbations=0)


# -- the movement penalty -------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["state", "output"])
def test_stars_and_movement_against_a_step_by_step_loop(view: str) -> None:
    from rl_warmup.vaa import initial_states, layer_vaa_stars, stars_and_movement

    net = RecurrentNetwork("lstm", 2, 5, 2, generator=torch.Generator().manual_seed(0))
    states = initial_states(net, torch.randn(12, 6, 2, generator=torch.Generator().manual_seed(1)),
                            torch.Generator().manual_seed(2), n=7)
    plain, none = stars_and_movement(net, states, 9, generator=torch.Generator().manual_seed(3), view=view, perturbations=3,
                                     movement=False)
    assert none is None  # without movement: exactly layer_vaa_stars, same draws
    assert torch.equal(plain, layer_vaa_stars(net, states, 9, generator=torch.Generator().manual_seed(3), view=view,
                                              perturbations=3))
    stars, moves = stars_and_movement(net, states, 9, generator=torch.Generator().manual_seed(3), view=view,
                                      perturbations=3, movement=True)
    assert moves is not None and moves.shape == (2,) and moves.requires_grad
    assert torch.allclose(stars, plain, atol=1e-6)
    g = torch.Generator().manual_seed(3)
    for k, (layer, state) in enumerate(zip(net.layers, states, strict=True)):
        draws = torch.randn(3, layer.input_size, generator=g)
        steps = []
        for u in draws:  # the outputs h(t) of every step, one step at a time
            x, hs = layer.warm_state(state), []
            for _ in range(9):
                x = layer.warm_part.settle(u.expand(7, -1), x, 1)
                hs.append(layer.warm_part.output_of(x))
            steps.append(torch.linalg.vector_norm(hs[-1] - hs[-2], dim=-1))
        assert float(moves[k].detach()) == pytest.approx(float(torch.cat(steps).mean().detach()), rel=1e-4)
    one = stars_and_movement(net, states, 1, generator=torch.Generator().manual_seed(3), movement=True)[1]
    assert one is not None and bool((one > 0).all())  # M = 1: the step from the initial states


def test_movement_penalty_zero_is_the_paper_and_a_weight_changes_only_settled_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import rl_warmup.warmup as wu

    config = dict(steps=8, batch_size=8, settle_start=1, settle_increment=3, settle_max=20, restart_threshold=1.0,
                  vaa_checkpoints=None)
    base, off = lstm(), lstm()
    r0 = warmup(base, sequences(), WarmupConfig(**config))
    r1 = warmup(off, sequences(), WarmupConfig(**config, movement_penalty=0.0))
    assert r0.loss_history == r1.loss_history
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), off.parameters(), strict=True))

    calls: list[int] = []
    real = wu.stars_and_movement

    def spy(network, states, steps, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(steps)
        return real(network, states, steps, *args, **kwargs)

    monkeypatch.setattr(wu, "stars_and_movement", spy)
    penalised = lstm()
    r2 = warmup(penalised, sequences(), WarmupConfig(**config, movement_penalty=100.0))
    settled = [i for i, m in enumerate(r2.settle_history) if 2 * m >= 20]
    assert calls == [r2.settle_history[i] for i in settled] and settled  # the penalty only where M >= settle_max / 2
    # the same draws: the loss differs only at the penalised steps, where it is larger
    first = settled[0]
    assert r2.loss_history[:first] == r0.loss_history[:first]
    assert r2.settle_history[: first + 1] == r0.settle_history[: first + 1]
    assert r2.loss_history[first] > r0.loss_history[first]
    assert not all(torch.equal(a, b) for a, b in zip(base.parameters(), penalised.parameters(), strict=True))


def test_lstm_init_chrono_and_orthogonal_set_the_gates_before_every_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    import rl_warmup.warmup as warmup_mod

    seen = []
    original = warmup_mod._attempt

    def spy(network, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append({k: v.detach().clone() for k, v in network.layers[0].rnn.named_parameters()})
        return original(network, *args, **kwargs)

    monkeypatch.setattr(warmup_mod, "_attempt", spy)
    h, t_max = 6, 50
    with pytest.raises(WarmupError):
        warmup(lstm(hidden=h), sequences(), WarmupConfig(**{**FAST, "restart_below": 0.99 - 1e-9, "restart_threshold": 0.99},
                                                        lstm_init="chrono", chrono_t_max=t_max, max_restarts=1))
    assert len(seen) == 2
    for p in seen:
        b_f = p["bias_ih_l0"][h : 2 * h]
        assert bool((b_f >= 0).all()) and bool((b_f <= math.log(t_max - 1) + 1e-6).all())
        assert torch.equal(p["bias_ih_l0"][:h], -b_f) and torch.equal(p["bias_hh_l0"][: 2 * h], torch.zeros(2 * h))
    assert not torch.equal(seen[0]["bias_ih_l0"], seen[1]["bias_ih_l0"])  # a fresh draw after the restart
    seen.clear()
    warmup(lstm(hidden=h), sequences(), WarmupConfig(**{**FAST, "steps": 1}, lstm_init="orthogonal", max_restarts=0))
    w = seen[0]["weight_hh_l0"]
    for g in range(4):
        block = w[g * h : (g + 1) * h]
        assert torch.allclose(block @ block.T, torch.eye(h), atol=1e-5)
    assert torch.equal(seen[0]["bias_ih_l0"], torch.zeros(4 * h))
    with pytest.raises(ValueError, match=r"WarmupConfig\.lstm_init must be"):
        WarmupConfig(lstm_init="xavier")
    with pytest.raises(ValueError, match=r"WarmupConfig\.chrono_t_max must be >= 3"):
        WarmupConfig(chrono_t_max=2)


def test_chrono_initialised_lstm_warmup_keeps_its_states_apart() -> None:
    """A small seeded LSTM warmup that no longer collapses: the paper's warmup of this network
    ends in one attractor; with the chrono gate biases it keeps its states apart for 1 000 steps."""
    seqs = sequences(64, 30, seed=1)
    paper = warmup(lstm(seed=3, hidden=16), seqs, WarmupConfig(steps=30, vaa_checkpoints=(100, 1000), restart_threshold=1.0,
                                                               max_restarts=0))
    chrono = warmup(lstm(seed=3, hidden=16), seqs, WarmupConfig(steps=30, vaa_checkpoints=(100, 1000), restart_threshold=1.0,
                                                                max_restarts=0, lstm_init="chrono"))
    assert paper.vaa is not None and chrono.vaa is not None
    assert chrono.collapsed_layers == [] and chrono.vaa.vaa >= 0.1 and chrono.vaa.movement < 1e-2
    assert chrono.vaa.vaa > paper.vaa.vaa


def test_lstm_setting_is_the_measured_one_and_takes_changes() -> None:
    config = WarmupConfig.lstm(seed=3)
    assert (config.grad_clip, config.perturbations, config.restart_below, config.restart_moving) == (1.0, 8, 0.07, 1e-2)
    assert config.max_restarts == 10
    assert config.seed == 3 and config.steps == WarmupConfig().steps and config.state_view == "state"
    assert WarmupConfig.lstm(perturbations=2).perturbations == 2


def test_lstm_lasting_is_the_measured_ck8_h8m_and_scales_with_the_memory() -> None:
    config = WarmupConfig.lstm_lasting(1000)
    assert config.vaa_checkpoints == (100, 200, 500, 1000, 2000)
    assert (config.restart_horizon, config.restart_moving, config.restart_moving_at) == (2000, 1e-3, 1000)
    assert (config.check_draws, config.max_restarts, config.grad_clip, config.perturbations) == (8, 20, 1.0, 8)
    assert config.restart_below == WarmupConfig.lstm().restart_below
    short = WarmupConfig.lstm_lasting(50, input_scale=0.3)
    # the horizon rule at twice the memory, the movement (chaos) rule at 1 000 steps at least
    assert short.vaa_checkpoints == (50, 100, 1000) and short.restart_moving_at == 1000 and short.restart_horizon == 100
    assert short.input_scale == 0.3
    assert WarmupConfig.lstm_lasting(250).vaa_checkpoints == (100, 200, 250, 500, 1000)
    long = WarmupConfig.lstm_lasting(3000)
    assert long.vaa_checkpoints == (100, 200, 500, 3000, 6000) and long.restart_moving_at == 3000
    with pytest.raises(ValueError, match="memory"):
        WarmupConfig.lstm_lasting(0)


def test_lstm_lasting_restarts_a_network_whose_memory_does_not_last() -> None:
    """A memory far beyond what two warmup steps give: every attempt is refused on its horizon."""
    torch.manual_seed(0)
    net = RecurrentNetwork("lstm", 1, 8, 1)
    seqs = torch.randn(16, 20, 1)
    config = WarmupConfig.lstm_lasting(100_000, steps=2, batch_size=8, settle_max=20, vaa_n=8, max_restarts=1, seed=0)
    with pytest.raises(WarmupError, match="shorter than restart_horizon = 200000"):
        warmup(net, seqs, config)
