"""FastRecurrentPPO.collect_rollouts: the same rollouts as RecurrentPPO.collect_rollouts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecNormalize

from rl_warmup.sb3 import FastRecurrentPPO, RecurrentCellPolicy
from rl_warmup.sb3.fused import FusedActorCritic

_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "episode_starts",
    "values",
    "log_probs",
    "advantages",
    "returns",
    "hidden_states_pi",
    "cell_states_pi",
    "hidden_states_vf",
    "cell_states_vf",
)
_TIME_LIMIT = 7


class _CoinEnv(gym.Env):
    """Random observations; ends with probability 0.15 per step (``TimeLimit`` truncates at 7)."""

    def __init__(self, action_space: spaces.Space) -> None:
        self.observation_space = spaces.Box(-2.0, 2.0, shape=(3,), dtype=np.float32)
        self.action_space = action_space

    def _obs(self) -> np.ndarray:
        return self.np_random.normal(size=3).astype(np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = float(np.sum(action)) + self.np_random.normal()
        terminated = bool(self.np_random.random() < 0.15)
        return self._obs(), reward, terminated, False, {"is_success": reward > 0}


_SPACES = {
    "discrete": spaces.Discrete(3),
    "box": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
}


def _model(
    cls: type[RecurrentPPO],
    actions: str,
    policy_kwargs: dict,
    normalize: bool = False,
    fused: bool = False,
) -> RecurrentPPO:
    """A model on ``_CoinEnv``; ``fused``: rollout steps through ``FusedActorCritic`` when it applies."""
    env = make_vec_env(lambda: TimeLimit(_CoinEnv(_SPACES[actions]), _TIME_LIMIT), n_envs=3, seed=0)
    if normalize:
        env = VecNormalize(env)
    model = cls(
        RecurrentCellPolicy,
        env,
        n_steps=24,
        batch_size=24,
        seed=0,
        policy_kwargs={"lstm_hidden_size": 8, **policy_kwargs},
    )
    model.set_logger(Logger(None, []))
    model.policy.fused_rollout = fused  # type: ignore[attr-defined]
    return model


def _assert_same(x: np.ndarray, y: np.ndarray, exact: bool, name: str = "") -> None:
    """Equal arrays; float arrays only to rounding (1e-5) unless ``exact``."""
    assert x.dtype == y.dtype and x.shape == y.shape, name
    if exact or not np.issubdtype(x.dtype, np.floating):
        assert np.array_equal(x, y), name
    else:
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)


def _array(x: Any) -> np.ndarray:
    """A copy of ``x`` as a numpy array (tensors included)."""
    return x.numpy().copy() if isinstance(x, torch.Tensor) else np.array(x)


class _Recorder(BaseCallback):
    """Records the callback events and what ``on_step`` sees; stops after ``stop_at`` steps."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop_at = stop_at
        self.events: list[str] = []
        self.seen: list[tuple[np.ndarray, ...]] = []

    def _on_rollout_start(self) -> None:
        self.events.append("start")

    def _on_step(self) -> bool:
        self.events.append("step")
        loc = self.locals
        names = ("actions", "clipped_actions", "rewards", "dones", "new_obs", "values")
        seen = [_array(loc[name]) for name in (*names, "log_probs")]
        seen += [_array(x) for x in (*loc["lstm_states"].pi, *loc["lstm_states"].vf)]
        self.seen.append((*seen, np.array([loc["n_steps"]])))
        return self.stop_at is None or len(self.seen) < self.stop_at

    def _on_rollout_end(self) -> None:
        self.events.append("end")


def _run(
    model: RecurrentPPO, collect: Any, rollouts: int, stop_at: int | None = None
) -> tuple[list[bool], _Recorder, list[dict[str, np.ndarray]]]:
    """``rollouts`` calls of ``collect`` (an unbound ``collect_rollouts``) from torch seed 3."""
    recorder = _Recorder(stop_at)
    _, callback = model._setup_learn(10_000, recorder)
    torch.manual_seed(3)
    results, buffers = [], []
    for _ in range(rollouts):
        results.append(collect(model, model.env, callback, model.rollout_buffer, model.n_steps))
        buffers.append({n: getattr(model.rollout_buffer, n).copy() for n in _FIELDS})
    return results, recorder, buffers


def _assert_same_state(stock: RecurrentPPO, fast: RecurrentPPO, exact: bool = True) -> None:
    assert fast.num_timesteps == stock.num_timesteps
    assert fast.rollout_buffer.pos == stock.rollout_buffer.pos
    assert fast.rollout_buffer.full == stock.rollout_buffer.full
    assert np.array_equal(fast._last_obs, stock._last_obs)  # type: ignore[arg-type]
    assert np.array_equal(fast._last_episode_starts, stock._last_episode_starts)  # type: ignore[arg-type]
    for a, b in zip(
        (*fast._last_lstm_states.pi, *fast._last_lstm_states.vf),
        (*stock._last_lstm_states.pi, *stock._last_lstm_states.vf),
        strict=True,
    ):
        _assert_same(a.numpy(), b.numpy(), exact)
        assert not a.is_inference()  # ordinary tensors, as the parent leaves them
    # Monitor's episode records (without their wall-clock time) and the success buffer
    assert [e["l"] for e in fast.ep_info_buffer] == [e["l"] for e in stock.ep_info_buffer]
    _assert_same(
        np.array([e["r"] for e in fast.ep_info_buffer]),
        np.array([e["r"] for e in stock.ep_info_buffer]),
        exact,
    )
    assert list(fast.ep_success_buffer) == list(stock.ep_success_buffer)


@pytest.mark.parametrize(
    ("actions", "policy_kwargs", "normalize"),
    [
        ("discrete", {"cell": "lstm"}, False),
        ("discrete", {"cell": "gru"}, False),
        ("box", {"cell": "lstm"}, False),
        ("box", {"cell": "gru"}, True),
        ("discrete", {"cell": "lstm", "n_lstm_layers": 2}, True),
        ("discrete", {"cell": "gru", "shared_lstm": True, "enable_critic_lstm": False}, False),
        ("box", {"cell": "mgu", "enable_critic_lstm": False}, False),
        ("discrete", {"cell": "lstm", "double": True}, False),
    ],
    ids=[
        "lstm-discrete",
        "gru-discrete",
        "lstm-box",
        "gru-box-vecnormalize",
        "lstm-2-layers-vecnormalize",
        "gru-shared",
        "mgu-no-critic-rnn-box",
        "double-lstm",
    ],
)
@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
def test_collect_rollouts_fills_stocks_buffer(
    actions: str, policy_kwargs: dict, normalize: bool, fused: bool
) -> None:
    """Same seed and weights: every buffer field, callback view and final state equals stock's.

    Exactly with the separate modules; to rounding (floats) with ``FusedActorCritic``, which
    draws the same actions from the same random numbers.
    """
    stock = _model(RecurrentPPO, actions, policy_kwargs, normalize)
    fast = _model(FastRecurrentPPO, actions, policy_kwargs, normalize, fused=fused)
    exact = not fused or FusedActorCritic.for_policy(fast.policy) is None
    fast.policy.load_state_dict(stock.policy.state_dict())
    calls = 0
    rollout_step = fast.policy.rollout_step

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return rollout_step(*args)

    fast.policy.rollout_step = counted  # type: ignore[method-assign]
    expected = _run(stock, RecurrentPPO.collect_rollouts, rollouts=3)
    after_stock = torch.rand(4)
    got = _run(fast, FastRecurrentPPO.collect_rollouts, rollouts=3)
    after_fast = torch.rand(4)
    assert calls == 3 * fast.n_steps  # the fast loop ran, not the parent's
    assert got[0] == expected[0] == [True, True, True]
    assert got[1].events == expected[1].events == ["start", *["step"] * 24, "end"] * 3
    for a, b in zip(got[1].seen, expected[1].seen, strict=True):
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y, exact)
    for buf_fast, buf_stock in zip(got[2], expected[2], strict=True):
        for name in _FIELDS:
            _assert_same(buf_fast[name], buf_stock[name], exact, name)
    # as many random numbers were drawn from torch's generator (both started from seed 3)
    assert torch.equal(after_fast, after_stock)
    _assert_same_state(stock, fast, exact)
    # the rollouts really contain episode ends and timeouts (bootstrapped rewards)
    stats = np.concatenate([b["episode_starts"] for b in expected[2]])
    assert stats[1:].sum() >= 5
    assert sum(e["l"] == _TIME_LIMIT for e in stock.ep_info_buffer) >= 2
    assert sum(e["l"] < _TIME_LIMIT for e in stock.ep_info_buffer) >= 2


@pytest.mark.parametrize("fused", [False, True], ids=["separate", "fused"])
@pytest.mark.parametrize("actions", ["discrete", "box"])
def test_callback_returning_false_stops_like_stock(actions: str, fused: bool) -> None:
    stock = _model(RecurrentPPO, actions, {"cell": "lstm"})
    fast = _model(FastRecurrentPPO, actions, {"cell": "lstm"}, fused=fused)
    fast.policy.load_state_dict(stock.policy.state_dict())
    expected = _run(stock, RecurrentPPO.collect_rollouts, rollouts=1, stop_at=10)
    got = _run(fast, FastRecurrentPPO.collect_rollouts, rollouts=1, stop_at=10)
    assert got[0] == expected[0] == [False]
    assert got[1].events == expected[1].events == ["start", *["step"] * 10]
    assert fast.rollout_buffer.pos == stock.rollout_buffer.pos == 9
    for name in _FIELDS:  # the 9 steps stored (the kept tensors written before returning)
        _assert_same(got[2][0][name], expected[2][0][name], not fused, name)
    assert np.any(got[2][0]["values"][:9] != 0)
    _assert_same_state(stock, fast, not fused)


def test_learn_with_the_fast_loop_equals_stock_loop() -> None:
    """Whole ``learn`` runs (collection and updates): the same weights and episode logs.

    With the separate modules (bit-identical rollouts). ``FusedActorCritic``'s rollouts agree
    only to rounding, and Adam turns differences of 1e-7 in near-zero gradients into steps of
    the learning rate, so whole runs are compared rollout by rollout instead (above).
    """
    runs = []
    for collect in (RecurrentPPO.collect_rollouts, None):
        model = _model(FastRecurrentPPO, "discrete", {"cell": "gru"})
        if collect is not None:
            model.collect_rollouts = collect.__get__(model)  # type: ignore[method-assign]
        model.learn(3 * 24 * 3)
        runs.append(model)
    slow, fast = runs
    for (name, a), b in zip(
        slow.policy.state_dict().items(), fast.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [e["r"] for e in slow.ep_info_buffer] == [e["r"] for e in fast.ep_info_buffer]
    assert len(fast.ep_info_buffer) > 5


def test_falls_back_to_the_parent_loop() -> None:
    """gSDE and policies without ``rollout_step`` (stock MlpLstmPolicy) take the parent's loop."""
    env = make_vec_env(lambda: TimeLimit(_CoinEnv(_SPACES["box"]), _TIME_LIMIT), n_envs=2, seed=0)
    sde = FastRecurrentPPO(
        RecurrentCellPolicy,
        env,
        n_steps=8,
        batch_size=8,
        use_sde=True,
        policy_kwargs={"lstm_hidden_size": 8},
    )

    def fail(*args: Any) -> Any:
        raise AssertionError("rollout_step must not be used with gSDE")

    sde.policy.rollout_step = fail  # type: ignore[method-assign]
    sde.learn(16)
    assert sde.num_timesteps == 16
    stock_policy = FastRecurrentPPO("MlpLstmPolicy", env, n_steps=8, batch_size=8)
    stock_policy.learn(16)
    assert stock_policy.num_timesteps == 16 and stock_policy.rollout_buffer.full
