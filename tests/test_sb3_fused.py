"""FusedActorCritic: the rollout step of RecurrentCellPolicy with actor and critic run side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

from rl_warmup.sb3 import FastRecurrentPPO, RecurrentCellPolicy
from rl_warmup.sb3.fused import FusedActorCritic

_N_ENVS = 4


def _policy(env_id: str, **policy_kwargs: Any) -> RecurrentCellPolicy:
    env = make_vec_env(env_id, n_envs=_N_ENVS, seed=0)
    model = FastRecurrentPPO(
        RecurrentCellPolicy,
        env,
        n_steps=8,
        batch_size=32,
        seed=0,
        policy_kwargs={"lstm_hidden_size": 16, **policy_kwargs},
    )
    policy = model.policy
    # random states and biases, so that nothing is trivially zero
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return policy  # type: ignore[return-value]


def _states(policy: RecurrentCellPolicy, seed: int = 0) -> RNNStates:
    g = torch.Generator().manual_seed(seed)
    shape = (policy.n_lstm_layers, _N_ENVS, policy.lstm_actor.hidden_size)
    h_pi, c_pi, h_vf, c_vf = (torch.randn(shape, generator=g) for _ in range(4))
    if policy.cell != "lstm":  # GRU & co: the c slots hold zeros
        c_pi, c_vf = torch.zeros(shape), torch.zeros(shape)
    return RNNStates((h_pi, c_pi), (h_vf, c_vf))


def _steps(policy: RecurrentCellPolicy, fused: bool, n: int = 6) -> list[tuple[torch.Tensor, ...]]:
    """``n`` rollout steps from the same states and torch seed; episodes start at steps 0 and 3."""
    policy.fused_rollout = fused
    obs_space = policy.observation_space
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(5)
    states = _states(policy)
    out = []
    with torch.inference_mode():
        for k in range(n):
            obs = torch.rand((_N_ENVS, *obs_space.shape), generator=g) * 2 - 1  # type: ignore[misc]
            starts = torch.tensor([1.0, 0.0, 0.0, 1.0]) if k in (0, 3) else torch.zeros(_N_ENVS)
            actions, values, log_prob, states = policy.rollout_step(obs, states, starts)
            out.append((actions, values, log_prob, *states.pi, *states.vf))
    out.append((torch.rand(3),))  # the state of torch's generator afterwards
    return out


_CONFIGS = {
    "1-layer": {},
    "2-layers": {"n_lstm_layers": 2},
    "heads-of-different-widths-tanh": {
        "net_arch": {"pi": [32, 16], "vf": [8]},
        "activation_fn": nn.Tanh,
    },
    "same-depth-different-widths": {"net_arch": {"pi": [32, 16], "vf": [8, 24]}},
    "no-heads": {"net_arch": []},
    "elu": {"activation_fn": nn.ELU},
    "separate-features-extractors": {"share_features_extractor": False},
}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"], ids=["discrete", "box"])
@pytest.mark.parametrize("config", list(_CONFIGS), ids=list(_CONFIGS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_step_equals_separate_modules(cell: str, config: str, env_id: str) -> None:
    """The same random numbers drawn, the same discrete actions; values, log-probabilities,
    states (and continuous actions) to rounding."""
    policy = _policy(env_id, cell=cell, **_CONFIGS[config])
    assert isinstance(FusedActorCritic.for_policy(policy), FusedActorCritic)
    separate = _steps(policy, fused=False)
    fused = _steps(policy, fused=True)
    assert isinstance(policy._fused, FusedActorCritic)  # the fused path really ran
    assert torch.equal(fused[-1][0], separate[-1][0])  # as many random numbers drawn
    for step_separate, step_fused in zip(separate[:-1], fused[:-1], strict=True):
        if env_id == "CartPole-v1":  # the same draws give the same discrete actions
            assert torch.equal(step_fused[0], step_separate[0])
        for a, b in zip(step_fused, step_separate, strict=True):
            assert a.shape == b.shape and a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_categorical_draw_is_multinomials() -> None:
    """The exponential race draws what ``torch.multinomial(p, 1, True)`` draws, from the same numbers."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=g) * 3
    for seed in range(50):
        torch.manual_seed(seed)
        expected = torch.multinomial(torch.softmax(logits, -1), 1, True).reshape(-1)
        after_expected = torch.rand(2)
        torch.manual_seed(seed)
        actions, _, log_prob, _ = FusedActorCritic._sample(logits, torch.zeros(64, 1), None)  # type: ignore[arg-type]
        assert torch.equal(actions, expected)
        assert torch.equal(torch.rand(2), after_expected)
        torch.testing.assert_close(
            log_prob, torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
        )


def test_draws_follow_the_distribution() -> None:
    """Action frequencies over many draws match softmax(logits)."""
    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0]]).expand(20000, 4)
    torch.manual_seed(0)
    actions = FusedActorCritic._sample(logits, torch.zeros(1), None)[0]  # type: ignore[arg-type]
    freq = torch.bincount(actions, minlength=4).float() / len(actions)
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.01, rtol=0.0)


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        {"cell": "gru", "shared_lstm": True, "enable_critic_lstm": False},
        {"cell": "lstm", "enable_critic_lstm": False},
        {"cell": "lstm", "double": True},
        {"cell": "mgu"},
        {"cell": "brc"},
    ],
    ids=["shared", "no-critic-rnn", "double", "mgu", "brc"],
)
def test_policies_it_does_not_cover_keep_the_separate_path(policy_kwargs: dict) -> None:
    policy = _policy("CartPole-v1", **policy_kwargs)
    assert FusedActorCritic.for_policy(policy) is None
    steps = _steps(policy, fused=True)
    assert policy._fused is False
    for step, again in zip(steps, _steps(policy, fused=False), strict=True):
        for a, b in zip(step, again, strict=True):
            assert torch.equal(a, b)


def test_weights_are_read_again_after_they_change() -> None:
    """An optimiser step, ``load_state_dict`` and in-place edits are seen by the next step."""
    policy = _policy("CartPole-v1", cell="lstm")
    before = _steps(policy, fused=True)
    # an Adam step on some loss
    obs = torch.rand(8, 4)
    _, values, _ = policy.forward(obs, _states(policy, 1), torch.zeros(8))[:3]
    values.sum().backward()
    policy.optimizer.step()
    after_step = _steps(policy, fused=True)
    assert not torch.allclose(after_step[0][1], before[0][1])
    for a, b in zip(after_step, _steps(policy, fused=False), strict=True):
        torch.testing.assert_close(a[1:], b[1:], rtol=1e-5, atol=1e-6)
    # load_state_dict back to other weights
    other = _policy("CartPole-v1", cell="lstm")
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    policy.load_state_dict(other.state_dict())
    loaded = _steps(policy, fused=True)
    for a, b in zip(loaded, _steps(other, fused=False), strict=True):
        torch.testing.assert_close(a[1:], b[1:], rtol=1e-5, atol=1e-6)


def test_with_gradients_enabled_the_separate_modules_run() -> None:
    """The fused weights carry no gradient: with autograd on, rollout_step uses the modules."""
    policy = _policy("CartPole-v1", cell="gru")
    _, values, _, _ = policy.rollout_step(torch.rand(_N_ENVS, 4), _states(policy), torch.zeros(_N_ENVS))
    assert values.requires_grad
    assert policy._fused is None  # never built


def test_returned_states_are_views_the_next_step_reuses() -> None:
    """Feeding back the states a step returned continues exactly like fresh copies of them."""
    policy = _policy("CartPole-v1", cell="lstm", n_lstm_layers=2)
    obs = torch.rand(_N_ENVS, 4)
    starts = torch.zeros(_N_ENVS)
    with torch.inference_mode():
        _, _, _, states = policy.rollout_step(obs, _states(policy), starts)
        copies = RNNStates(
            tuple(s.clone() for s in states.pi), tuple(s.clone() for s in states.vf)
        )
        torch.manual_seed(0)
        reused = policy.rollout_step(obs, states, starts)
        torch.manual_seed(0)
        fresh = policy.rollout_step(obs, copies, starts)
    for a, b in zip(reused[:3], fresh[:3], strict=True):
        assert torch.equal(a, b)
    for a, b in zip((*reused[3].pi, *reused[3].vf), (*fresh[3].pi, *fresh[3].vf), strict=True):
        assert a.shape == (2, _N_ENVS, 16) and torch.equal(a, b)


def test_gru_c_slots_are_zeros() -> None:
    policy = _policy("CartPole-v1", cell="gru")
    with torch.inference_mode():
        _, _, _, states = policy.rollout_step(
            torch.rand(_N_ENVS, 4), _states(policy), torch.zeros(_N_ENVS)
        )
    assert not states.pi[1].any() and not states.vf[1].any()
    assert np.shape(states.pi[1]) == np.shape(states.pi[0])


def test_learn_keeps_the_fused_weights_current() -> None:
    """After PPO updates by FastRecurrentPPO's fused Adam (which bumps no version counter) the
    rollout steps use the updated weights (a stale copy once made every rollout use the initial
    weights)."""
    env = make_vec_env("CartPole-v1", n_envs=_N_ENVS, seed=0)
    model = FastRecurrentPPO(
        RecurrentCellPolicy,
        env,
        n_steps=16,
        batch_size=64,
        learning_rate=3e-3,
        seed=0,
        policy_kwargs={"lstm_hidden_size": 16, "cell": "lstm"},
    )
    assert model.policy.optimizer.defaults["fused"]
    initial = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(3 * 16 * _N_ENVS)
    policy = model.policy
    assert isinstance(policy._fused, FusedActorCritic)  # rollouts ran fused
    assert any(not torch.equal(initial[k], v) for k, v in policy.state_dict().items())
    for a, b in zip(_steps(policy, fused=True), _steps(policy, fused=False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a change the detectors cannot see: invalidate() makes the next step read it
    fused = policy._fused
    before = _steps(policy, fused=True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=0.1, fused=True)
    policy.rollout_step(torch.rand(_N_ENVS, 4), _states(policy), torch.zeros(_N_ENVS))[1].sum().backward()
    optimizer.step()
    assert torch.equal(_steps(policy, fused=True)[0][1], before[0][1])  # stale, as documented
    fused.invalidate()
    for a, b in zip(_steps(policy, fused=True), _steps(policy, fused=False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
