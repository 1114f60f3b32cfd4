"""The VAA* regulariser (keep multistability during training): its loss, where its gradient goes,
and a seeded run where it keeps the attractors that training destroys without it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

import envs  # noqa: F401  (registers the rl_warmup/ ids)
from rl_warmup.cells import RecurrentNetwork
from rl_warmup.regularizer import VAARegularizer, vaa_star_penalty
from rl_warmup.vaa import layer_vaa_stars


def test_penalty_matches_layer_vaa_stars_on_the_same_states() -> None:
    net = RecurrentNetwork("lstm", 3, 8, 2, generator=torch.Generator().manual_seed(0))
    states = [torch.randn(12, layer.state_size, generator=torch.Generator().manual_seed(i)) for i, layer in enumerate(net.layers)]
    config = VAARegularizer(target=0.9, perturbations=2)
    penalty, stars = vaa_star_penalty(net, states, 30, config, torch.Generator().manual_seed(5))
    expected = layer_vaa_stars(net, states, 30, config.epsilon, torch.Generator().manual_seed(5), view="state", perturbations=2)
    assert torch.allclose(stars, expected)
    assert float(penalty) == pytest.approx(float(((expected - 0.9) ** 2).mean()))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="every"):
        VAARegularizer(every=0)
    with pytest.raises(ValueError, match="target"):
        VAARegularizer(target=1.5)
    with pytest.raises(ValueError, match="unknown VAARegularizer field"):
        VAARegularizer.from_value({"coeff": 1.0})
    assert VAARegularizer.from_value({"coef": 0.5}) == VAARegularizer(coef=0.5)


def _model(reg, seed: int = 0, lr: float = 1e-3, cell: str = "gru", hidden: int = 16):  # type: ignore[no-untyped-def]
    from stable_baselines3.common.env_util import make_vec_env

    from rl_warmup.sb3 import FastRecurrentPPO, RecurrentCellPolicy

    env = make_vec_env("rl_warmup/PassiveTMaze-v0", n_envs=8, seed=seed)
    policy = "MlpLstmPolicy" if cell == "stock_lstm" else RecurrentCellPolicy
    kwargs = {"lstm_hidden_size": hidden} if cell == "stock_lstm" else {"cell": cell, "lstm_hidden_size": hidden}
    return FastRecurrentPPO(policy, env, n_steps=66, batch_size=528, n_epochs=4, learning_rate=lr,
                            policy_kwargs=kwargs, seed=seed, vaa_regularizer=reg)


@pytest.mark.parametrize("cell", ["gru", "stock_lstm"])
def test_only_the_actor_recurrent_parameters_get_its_gradient(cell: str) -> None:
    from rl_warmup.sb3.warmup import recurrent_networks

    # a short settling: a fresh network's states merge within ~100 steps, where VAA* has no gradient
    model = _model({"coef": 1.0, "settle_max": 5}, cell=cell)
    model.learn(528)  # one rollout in the buffer
    network = recurrent_networks(model.policy)["actor"]
    generator = model._regularizer_generator()
    states = model._regularizer_states(network, generator)
    model.policy.optimizer.zero_grad(set_to_none=True)
    loss, _ = model._regularizer_loss(network, states, generator)
    loss.backward()
    recurrent = {id(p) for p in network.parameters()}
    touched = {name for name, p in model.policy.named_parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    assert touched, "the penalty has no gradient"
    for name, p in model.policy.named_parameters():
        if name in touched:
            assert id(p) in recurrent, f"{name} is not a recurrent parameter of the actor"


def test_a_seeded_regularised_run_keeps_its_attractors() -> None:
    """Passive T-Maze L = 10, warmed GRU 32, PPO at a large learning rate (1e-2): with the
    regulariser (coef 1) the exact VAA is still >= 0.1 after 10k steps, and its VAA* is logged.

    The contrast "and falls without it" is asserted by the supervised test below, not here: in
    this RL setting whether *plain* training merges the attractors depends on the machine's
    floating point (it did where this test was written; on 2026-12-06 plain runs kept 0.30 in
    3/3 seeds at lr 1e-2 and fell to 0.02 in 1-2 of 3 at lr 3e-2, see docs/regularizer.md), so a
    test of it would assert the platform, not the regulariser."""
    from rl_warmup.sb3 import collect_policy_sequences, warmup_recurrent_ppo
    from rl_warmup.sb3.warmup import recurrent_networks
    from rl_warmup.vaa import measure_vaa

    torch.set_num_threads(1)
    model = _model({"coef": 1.0}, seed=0, lr=1e-2, hidden=32)
    warmup_recurrent_ppo(model)
    sequences = collect_policy_sequences(model, n_episodes=32)["actor"]
    network = recurrent_networks(model.policy)["actor"]

    def exact() -> float:
        return measure_vaa(network, sequences, settle_steps=1000, n=64, generator=torch.Generator().manual_seed(0)).vaa

    start = exact()
    model.learn(10_000)
    star = model.logger.name_to_value.get("train/vaa_reg_star")
    assert start > 0.1  # warmed
    assert star is not None and 0 < star <= 1  # the penalty ran and was logged
    assert exact() >= 0.1


# -- the supervised trainer ----------------------------------------------------------------------
def _copy_lstm(**changes: Any):
    from rl_warmup.supervised import SupervisedConfig

    values = dict(task="copy", length=3, n_train=640, n_val=128, n_test=128, hidden_size=32, epochs=4,
                  lr=3e-2, cell="lstm", warmup="full", warmup_steps=100, vaa_settle_steps=1000, vaa_n=32)
    return SupervisedConfig(**{**values, **changes})


def test_supervised_run_keeps_its_attractors_with_the_regulariser_only() -> None:
    """Copy T = 3, warmed LSTM 32, Adam at 3e-2: training merges the warmed attractors (exact VAA
    1.0 -> 0.06); with the regulariser (coef 1) they survive (0.86-0.91 in every epoch)."""
    from rl_warmup.supervised import train_supervised

    torch.set_num_threads(1)
    plain = train_supervised(_copy_lstm())
    regularised = train_supervised(_copy_lstm(reg_coef=1.0))
    assert plain.vaa_after_warmup == regularised.vaa_after_warmup > 0.5  # the same warmed network
    assert all(r.reg_star is None for r in plain.history)
    assert regularised.history[0].reg_star is None and all(r.reg_star is not None for r in regularised.history[1:])
    assert max(r.vaa for r in plain.history[2:]) < 0.2
    assert min(r.vaa for r in regularised.history[2:]) > 0.5


def test_supervised_regulariser_resumes_exactly_and_logs_reg_star(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rl_warmup.supervised as sup

    config = _copy_lstm(epochs=2, n_train=192, warmup_steps=4, vaa_settle_steps=30, vaa_n=16, reg_coef=1.0,
                        reg_every=2, out_dir=str(tmp_path))
    reference = sup.train_supervised(dataclasses.replace(config, out_dir=None))
    calls = {"n": 0}
    real = sup.masked_loss

    def interrupting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] == 9:  # the 3rd batch of epoch 2 (6 batches per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sup, "masked_loss", interrupting)
    with pytest.raises(sup.TrainingInterrupted):
        sup.train_supervised(config)
    monkeypatch.setattr(sup, "masked_loss", real)
    resumed = sup.train_supervised(config, resume=True)
    assert [r.reg_star for r in resumed.history] == pytest.approx([r.reg_star for r in reference.history], rel=1e-5)
    assert [r.val_loss for r in resumed.history] == pytest.approx([r.val_loss for r in reference.history], rel=1e-5)
    logged = sup.read_log(tmp_path / "log.csv")
    assert logged[0].reg_star is None and logged[-1].reg_star == pytest.approx(reference.history[-1].reg_star, rel=1e-4)


def test_supervised_regulariser_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="every"):
        _copy_lstm(reg_coef=1.0, reg_every=0)
    assert _copy_lstm().vaa_regularizer() is None
    assert _copy_lstm(reg_coef=0.5).vaa_regularizer().coef == 0.5
