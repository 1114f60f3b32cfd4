"""Warmup (Algorithm 3): it makes networks multistable, changes only what it may, restarts and
fails clearly, and is reproducible."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import rl_warmup.warmup as warmup_mod
from rl_warmup.cells import RecurrentNetwork
from rl_warmup.vaa import measure_vaa
from rl_warmup.warmup import WarmupConfig, WarmupError, WarmupResult, warmup


def copy_first_input_sequences(n: int, length: int, seed: int) -> Tensor:
    """Inputs of the copy-first-input task: ``x_t ~ N(0, 1)``, ``(n, length, 1)``."""
    return torch.randn(n, length, 1, generator=torch.Generator().manual_seed(seed))


def small_net(
    cell: str = "gru", double: bool = False, seed: int = 0, hidden: int = 8
) -> RecurrentNetwork:
    return RecurrentNetwork(
        cell, 1, hidden, 2, double=double, generator=torch.Generator().manual_seed(seed)
    )


def params_of(net: RecurrentNetwork) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


# ------------------------------------------------------------------------------------------
# It works: exact VAA from ~1/n to > 0.5 (the paper's settings: S = 100, lr 1e-2, batch 32)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_warmup_makes_two_layer_network_multistable(cell: str) -> None:
    sequences = copy_first_input_sequences(128, 50, seed=0)
    net = RecurrentNetwork(cell, 1, 32, 2, generator=torch.Generator().manual_seed(1))

    def exact_vaa() -> float:
        # the paper's measure (h and c): for the LSTM, h of this warmed network has merged into one
        # attractor by M = 1000 while c still drifts apart (docs/lstm_warmup.md)
        res = measure_vaa(
            net, sequences, settle_steps=1000, n=100, generator=torch.Generator().manual_seed(5), view="state"
        )
        assert res.n_nonfinite == 0
        return res.vaa

    before = exact_vaa()
    assert before < 0.05  # monostable at initialisation: all 100 states in ~one attractor
    result = warmup(net, sequences, WarmupConfig(seed=1))
    after = exact_vaa()
    assert after > 0.5, f"{cell}: exact VAA {before:.3f} -> {after:.3f}, warmup {result}"
    assert len(result.loss_history) == 100 and all(math.isfinite(v) for v in result.loss_history)
    assert all(0 < v <= 0.98 for v in result.final_vaa_star)


# ------------------------------------------------------------------------------------------
# What warmup may change
# ------------------------------------------------------------------------------------------
def test_double_layer_second_half_unchanged_and_grads_restored() -> None:
    net = small_net("gru", double=True, hidden=8)
    sequences = copy_first_input_sequences(16, 12, seed=1)
    before = params_of(net)
    # existing gradients, some None, must come back as they were (same tensors, same values)
    sentinel: dict[str, Tensor | None] = {}
    for k, (name, p) in enumerate(net.named_parameters()):
        p.grad = None if k % 3 == 0 else torch.full_like(p, float(k))
        sentinel[name] = p.grad
    warmup(net, sequences, WarmupConfig(steps=6, batch_size=8, settle_max=20, seed=0))
    for name, p in net.named_parameters():
        if ".second." in name:
            assert torch.equal(p.detach(), before[name]), f"{name} changed"
        if sentinel[name] is None:
            assert p.grad is None, f"{name}.grad was set"
        else:
            assert p.grad is sentinel[name], f"{name}.grad was replaced"
            assert torch.equal(p.grad, torch.full_like(p, float(p.grad.flatten()[0])))
    changed = [
        n
        for n, p in net.named_parameters()
        if ".first." in n and not torch.equal(p.detach(), before[n])
    ]
    assert len(changed) >= 4  # the warm halves did move


def test_only_warmable_parameters_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything that ``warmable_parameters`` does not list is left bit for bit."""
    net = small_net("mgu")
    frozen = {id(p) for p in net.layers[1].parameters()}
    monkeypatch.setattr(
        RecurrentNetwork, "warmable_parameters", lambda self: iter(self.layers[0].parameters())
    )
    before = params_of(net)
    warmup(
        net, copy_first_input_sequences(16, 10, seed=0), WarmupConfig(steps=4, batch_size=8, seed=0)
    )
    for name, p in net.named_parameters():
        if id(p) in frozen:
            assert torch.equal(p.detach(), before[name])
    assert any(
        not torch.equal(p.detach(), before[n])
        for n, p in net.layers[0].named_parameters(prefix="layers.0")
    )


def test_warmup_of_from_torch_view_changes_the_torch_module() -> None:
    torch.manual_seed(0)
    rnn = torch.nn.GRU(1, 6, num_layers=2, batch_first=True)
    before = rnn.weight_hh_l1.detach().clone()
    warmup(
        RecurrentNetwork.from_torch(rnn),
        copy_first_input_sequences(12, 8, 0),
        WarmupConfig(steps=3, batch_size=6),
    )
    assert not torch.equal(rnn.weight_hh_l1.detach(), before)


# ------------------------------------------------------------------------------------------
# Restarts and failures
# ------------------------------------------------------------------------------------------
def _nan_for_first(calls: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the first ``calls`` VAA* computations NaN (keeping the graph); count all calls."""
    real = warmup_mod.layer_vaa_stars
    counter = [0]

    def patched(*args, **kwargs):  # type: ignore[no-untyped-def]
        counter[0] += 1
        stars = real(*args, **kwargs)
        return stars * float("nan") if counter[0] <= calls else stars

    monkeypatch.setattr(warmup_mod, "layer_vaa_stars", patched)
    return counter


def test_non_finite_loss_triggers_restarts_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    net = small_net()
    _nan_for_first(2, monkeypatch)
    result = warmup(
        net,
        copy_first_input_sequences(16, 10, 0),
        WarmupConfig(steps=3, batch_size=8, max_restarts=3),
    )
    assert result.restarts == 2
    assert len(result.restart_reasons) == 2 and all(
        "non-finite loss" in r for r in result.restart_reasons
    )
    assert len(result.loss_history) == 3  # histories are those of the successful attempt
    assert all(math.isfinite(p.detach().sum().item()) for p in net.parameters())


def test_non_finite_loss_every_time_raises_after_max_restarts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = small_net()
    counter = _nan_for_first(10**6, monkeypatch)
    with pytest.raises(
        WarmupError, match=r"failed after 2 restart\(s\): non-finite loss .*smaller lr"
    ):
        warmup(
            net,
            copy_first_input_sequences(16, 10, 0),
            WarmupConfig(steps=3, batch_size=8, max_restarts=2),
        )
    assert counter[0] == 3  # three attempts, each stopped at its first step


def test_diverged_network_is_reinitialised() -> None:
    """A network whose weights are already NaN: the first attempt fails, the restart
    re-initialises the warmable parameters and warmup then succeeds."""
    net = small_net("gru")
    with torch.no_grad():
        net.layers[0].rnn.weight_hh_l0.fill_(float("nan"))
    result = warmup(net, copy_first_input_sequences(16, 10, 0), WarmupConfig(steps=3, batch_size=8))
    assert result.restarts == 1 and "non-finite" in result.restart_reasons[0]
    assert all(bool(torch.isfinite(p).all()) for p in net.parameters())


def test_restart_threshold_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    net = small_net()
    resets = [0]
    real_reset = type(net.layers[0]).reset_warmable_parameters

    def counting_reset(self, generator=None):  # type: ignore[no-untyped-def]
        resets[0] += 1
        real_reset(self, generator)

    monkeypatch.setattr(type(net.layers[0]), "reset_warmable_parameters", counting_reset)
    config = WarmupConfig(steps=2, batch_size=8, restart_threshold=0.01, max_restarts=1)
    with pytest.raises(
        WarmupError, match=r"after 1 restart\(s\): VAA\* .* above the restart threshold 0.01"
    ):
        warmup(net, copy_first_input_sequences(16, 10, 0), config)
    assert resets[0] == 2  # both layers re-initialised once


# ------------------------------------------------------------------------------------------
# Curriculum, callback, reproducibility, equivalent inputs
# ------------------------------------------------------------------------------------------
def test_curriculum_and_callback() -> None:
    calls: list[tuple[int, float, list[float]]] = []
    config = WarmupConfig(steps=12, batch_size=6, settle_start=2, settle_increment=3, settle_max=20)
    result = warmup(
        small_net(),
        copy_first_input_sequences(16, 10, 0),
        config,
        callback=lambda *a: calls.append(a),
    )
    assert [c[0] for c in calls] == list(range(12))
    assert [c[1] for c in calls] == result.loss_history
    assert [c[2] for c in calls] == result.vaa_star_history
    for step, m in enumerate(result.settle_history):
        assert 1 <= m <= min(2 + 3 * step, 20)
    assert result.settle_history[0] <= 2
    assert max(result.settle_history) > 5  # the bound did grow
    for stars, loss in zip(result.vaa_star_history, result.loss_history, strict=True):
        assert loss == pytest.approx(sum((s - 0.95) ** 2 for s in stars) / len(stars), rel=1e-5)


@pytest.mark.parametrize("detach_prefix", [False, True])
def test_same_seed_same_result_bitwise(detach_prefix: bool) -> None:
    sequences = copy_first_input_sequences(24, 15, 0)
    config = WarmupConfig(steps=8, batch_size=8, seed=3, detach_prefix=detach_prefix)
    a, b = small_net("lstm", seed=2), small_net("lstm", seed=2)
    ra, rb = warmup(a, sequences, config), warmup(b, sequences, config)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert ra == rb
    c = small_net("lstm", seed=2)
    rc = warmup(
        c, sequences, WarmupConfig(steps=8, batch_size=8, seed=4, detach_prefix=detach_prefix)
    )
    assert rc.loss_history != ra.loss_history


def test_detach_prefix_changes_the_gradient_not_the_draws() -> None:
    sequences = copy_first_input_sequences(24, 15, 0)
    a, b = small_net(seed=2), small_net(seed=2)
    ra = warmup(a, sequences, WarmupConfig(steps=3, batch_size=8, detach_prefix=False))
    rb = warmup(b, sequences, WarmupConfig(steps=3, batch_size=8, detach_prefix=True))
    assert ra.settle_history == rb.settle_history  # same random draws
    assert ra.loss_history[0] == rb.loss_history[0]  # same first forward pass
    assert any(
        not torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_list_and_padded_inputs_give_the_same_warmup() -> None:
    g = torch.Generator().manual_seed(0)
    lens = [5, 9, 3, 7, 9, 4, 6, 8]
    seqs = [torch.randn(t, 1, generator=g) for t in lens]
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    a, b = small_net(seed=1), small_net(seed=1)
    config = WarmupConfig(steps=3, batch_size=4, seed=0)
    ra = warmup(a, seqs, config)
    rb = warmup(b, padded, config, lengths=torch.tensor(lens))
    assert ra == rb
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_seed_none_leaves_global_rng_alone() -> None:
    net, sequences = (
        small_net(),
        copy_first_input_sequences(8, 5, 0),
    )  # (module init draws globally)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    warmup(net, sequences, WarmupConfig(steps=1, batch_size=4, seed=None))
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "steps must be >= 1"),
        ("steps", -5, "steps must be >= 1"),
        ("batch_size", 1, "batch_size must be >= 2"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("settle_start", 0, "settle_start must be >= 1"),
        ("settle_max", 0, "settle_max must be >= 1"),
        ("settle_increment", -1, "settle_increment must be >= 0"),
        ("settle_start", 300, "settle_start must not exceed settle_max"),
        ("lr", 0.0, "lr and epsilon must be > 0"),
        ("lr", float("nan"), "lr and epsilon must be > 0"),
        ("epsilon", -1e-4, "lr and epsilon must be > 0"),
        ("target", 1.5, r"target must lie in \(0, 1\]"),
        ("target", 0.0, r"target must lie in \(0, 1\]"),
        ("restart_threshold", 0.0, r"restart_threshold must lie in \(0, 1\]"),
        ("restart_threshold", float("nan"), r"restart_threshold must lie in \(0, 1\]"),
        ("max_restarts", -1, "max_restarts must be >= 0"),
    ],
)
def test_bad_config_fields(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=f"WarmupConfig.{message}"):
        WarmupConfig(**{field: value})  # type: ignore[arg-type]


def test_config_defaults_are_the_papers() -> None:
    config = WarmupConfig()
    assert (config.steps, config.lr, config.batch_size) == (100, 1e-2, 32)
    assert (config.settle_start, config.settle_increment, config.settle_max) == (1, 10, 200)
    assert (config.epsilon, config.target, config.restart_threshold) == (1e-4, 0.95, 0.98)
    assert config.detach_prefix is False and config.flush_denormal is True
    assert WarmupConfig(**config.to_dict()) == config
    with pytest.raises(AttributeError):
        config.lr = 1.0  # type: ignore[misc]


def test_bad_warmup_input() -> None:
    net = small_net()
    with pytest.raises(ValueError, match="empty list"):
        warmup(net, [])
    with pytest.raises(ValueError, match="input size 3 but the network expects 1"):
        warmup(net, torch.randn(4, 5, 3))
    with pytest.raises(ValueError, match="lengths must lie in"):
        warmup(net, torch.randn(4, 5, 1), lengths=[5, 5, 0, 5])
    with pytest.raises(TypeError, match="from_torch"):
        warmup(torch.nn.GRU(1, 4), torch.randn(4, 5, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown cell 'gur'"):
        RecurrentNetwork("gur", 1, 4)


def test_result_is_a_plain_record() -> None:
    result = WarmupResult()
    assert result.restarts == 0 and result.loss_history == [] and result.final_vaa_star == []


def _flushing() -> bool:
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(1.0)) == 0.0


@pytest.mark.parametrize("was_on", [False, True])
def test_flush_denormal_restores_the_mode_and_changes_no_result(was_on: bool) -> None:
    sequences = copy_first_input_sequences(16, 40, 0)
    config = WarmupConfig(steps=4, batch_size=8, seed=0, settle_start=30)
    torch.set_flush_denormal(was_on)
    try:
        seen: list[bool] = []
        a = small_net(seed=3)
        ra = warmup(a, sequences, config, callback=lambda *_: seen.append(_flushing()))
        assert seen == [True] * 4  # flushed while warming up
        assert _flushing() == was_on  # and the caller's mode is back
        b = small_net(seed=3)
        rb = warmup(b, sequences, WarmupConfig(**{**config.to_dict(), "flush_denormal": False}))
        assert _flushing() == was_on
    finally:
        torch.set_flush_denormal(False)
    assert ra == rb
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
