"""FastRecurrentPPO and SequenceRolloutBuffer: the same minibatches and updates as RecurrentPPO."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.logger import Logger

from rl_warmup.sb3 import FastRecurrentPPO, RecurrentCellMultiInputPolicy, RecurrentCellPolicy
from rl_warmup.sb3.ppo import SequenceRolloutBuffer

_BUFFER_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "returns",
    "episode_starts",
    "values",
    "log_probs",
    "advantages",
    "hidden_states_pi",
    "cell_states_pi",
    "hidden_states_vf",
    "cell_states_vf",
)


def _filled_buffers(
    action_space: spaces.Space, n_steps: int = 20, n_envs: int = 3, seed: int = 0
) -> tuple[RecurrentRolloutBuffer, SequenceRolloutBuffer]:
    """Stock and fast buffers filled with the same random transitions, episode starts inside."""
    rng = np.random.default_rng(seed)
    obs_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    shape = (n_steps, 2, n_envs, 4)  # (n_steps, num_layers, n_envs, hidden)
    buffers = (
        RecurrentRolloutBuffer(n_steps, obs_space, action_space, shape, "cpu", n_envs=n_envs),
        SequenceRolloutBuffer(n_steps, obs_space, action_space, shape, "cpu", n_envs=n_envs),
    )
    action_space.seed(seed)
    for _ in range(n_steps):
        obs = rng.normal(size=(n_envs, 3)).astype(np.float32)
        action = np.stack([action_space.sample() for _ in range(n_envs)])
        if isinstance(action_space, spaces.Discrete):
            action = action.reshape(-1, 1)
        reward = rng.normal(size=n_envs).astype(np.float32)
        start = rng.random(n_envs) < 0.15
        value = torch.as_tensor(rng.normal(size=(n_envs, 1)), dtype=torch.float32)
        log_prob = torch.as_tensor(rng.normal(size=n_envs), dtype=torch.float32)
        states = [torch.as_tensor(rng.normal(size=shape[1:]), dtype=torch.float32) for _ in "abcd"]
        for buffer in buffers:
            buffer.add(
                obs,
                action,
                reward,
                start,
                value,
                log_prob,
                lstm_states=RNNStates((states[0], states[1]), (states[2], states[3])),
            )
    last = torch.as_tensor(rng.normal(size=(n_envs, 1)), dtype=torch.float32)
    dones = rng.random(n_envs) < 0.2
    for buffer in buffers:
        buffer.compute_returns_and_advantage(last_values=last, dones=dones)
    return buffers


@pytest.mark.parametrize(
    "action_space",
    [spaces.Discrete(3), spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)],
    ids=["discrete", "box"],
)
@pytest.mark.parametrize("batch_size", [None, 7, 16, 60])
def test_buffer_yields_stocks_minibatches(
    action_space: spaces.Space, batch_size: int | None
) -> None:
    stock, fast = _filled_buffers(action_space)
    assert stock.episode_starts.sum() >= 3
    for epoch in range(3):  # several epochs: different random splits, tensors built once
        np.random.seed(epoch)
        expected = list(stock.get(batch_size))
        np.random.seed(epoch)
        got = list(fast.get(batch_size))
        assert len(got) == len(expected) == -(-60 // (batch_size or 60))
        for a, b in zip(got, expected, strict=True):
            for name in b._fields:
                x, y = getattr(a, name), getattr(b, name)
                if name == "lstm_states":
                    pairs = list(zip(x.pi + x.vf, y.pi + y.vf, strict=True))
                else:
                    pairs = [(x, y)]
                for u, v in pairs:
                    assert u.dtype == v.dtype and u.shape == v.shape, name
                    assert torch.equal(u, v), name
        # padding exists in these minibatches, so the zero row is really exercised
        assert any(float(b.mask.min()) == 0.0 for b in expected)


def _pair(
    policy: object, policy_kwargs: dict, env_id: str = "CartPole-v1", **kwargs: object
) -> tuple[RecurrentPPO, FastRecurrentPPO]:
    """Stock and fast models with the same weights and the same filled rollout buffer."""
    common = {"n_steps": 32, "batch_size": 24, "n_epochs": 3, "seed": 0, **kwargs}
    env = make_vec_env(env_id, n_envs=2, seed=0)
    stock = RecurrentPPO(policy, env, policy_kwargs=policy_kwargs, **common)  # type: ignore[arg-type]
    env = make_vec_env(env_id, n_envs=2, seed=0)
    fast = FastRecurrentPPO(policy, env, policy_kwargs=policy_kwargs, **common)  # type: ignore[arg-type]
    fast.policy.load_state_dict(stock.policy.state_dict())
    for model in (stock, fast):
        model.set_logger(Logger(None, []))
    _, callback = stock._setup_learn(64, None)
    stock.collect_rollouts(stock.env, callback, stock.rollout_buffer, stock.n_steps)  # type: ignore[arg-type]
    for name in _BUFFER_FIELDS:
        setattr(fast.rollout_buffer, name, getattr(stock.rollout_buffer, name).copy())
    fast.rollout_buffer.full = True
    fast.rollout_buffer.generator_ready = False
    fast._current_progress_remaining = stock._current_progress_remaining
    assert stock.rollout_buffer.episode_starts.sum() >= 1
    return stock, fast


@pytest.mark.parametrize(
    ("policy", "policy_kwargs", "env_id", "kwargs"),
    [
        ("MlpLstmPolicy", {"lstm_hidden_size": 16}, "CartPole-v1", {}),
        (
            RecurrentCellPolicy,
            {"cell": "lstm", "lstm_hidden_size": 16, "n_lstm_layers": 2},
            "CartPole-v1",
            {},
        ),
        (
            RecurrentCellPolicy,
            {
                "cell": "gru",
                "lstm_hidden_size": 16,
                "shared_lstm": True,
                "enable_critic_lstm": False,
            },
            "CartPole-v1",
            {"clip_range_vf": 0.1},
        ),
        (
            RecurrentCellPolicy,
            {"cell": "mgu", "lstm_hidden_size": 16, "enable_critic_lstm": False},
            "Pendulum-v1",
            {"ent_coef": 0.01},
        ),
        (
            RecurrentCellPolicy,
            {"cell": "lstm", "lstm_hidden_size": 16},
            "Pendulum-v1",
            {"target_kl": 1e-6},
        ),
    ],
    ids=[
        "stock-policy",
        "lstm-2-layers",
        "gru-shared-vf-clip",
        "mgu-no-critic-rnn-box",
        "lstm-box-target-kl",
    ],
)
def test_train_reproduces_stock_train(
    policy: object, policy_kwargs: dict, env_id: str, kwargs: dict
) -> None:
    """Same buffer, weights and random numbers: FastRecurrentPPO.train updates like RecurrentPPO.train."""
    stock, fast = _pair(policy, policy_kwargs, env_id, **kwargs)
    initial = {n: v.clone() for n, v in stock.policy.state_dict().items()}
    assert fast.policy.optimizer.param_groups[0]["fused"] is True
    assert (
        fast.policy.optimizer.param_groups[0]["eps"]
        == stock.policy.optimizer.param_groups[0]["eps"]
    )
    # a second call: Adam's state carries over, the buffer's tensors are rebuilt for the rollout
    for _ in range(2):
        np.random.seed(1)
        stock.train()
        np.random.seed(1)
        fast.train()
        assert fast._n_updates == stock._n_updates
    trained = stock.policy.state_dict()
    for name, value in trained.items():
        torch.testing.assert_close(fast.policy.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert sum(not torch.equal(trained[n], initial[n]) for n in initial) >= len(initial) // 2
    logged, expected = fast.logger.name_to_value, stock.logger.name_to_value
    for key in (
        "entropy_loss",
        "policy_gradient_loss",
        "value_loss",
        "approx_kl",
        "clip_fraction",
        "loss",
    ):
        assert logged[f"train/{key}"] == pytest.approx(
            expected[f"train/{key}"], rel=1e-4, abs=1e-7
        ), key
    if "target_kl" in kwargs:  # stopped at the first minibatch of the first epoch, like stock
        assert stock._n_updates == 2 and logged["train/early_stop_epoch"] == 0


@pytest.mark.parametrize(
    ("cell", "overhead", "lstm_ext"),
    [("gru", None, "1"), ("lstm", None, "1"), ("lstm", None, "0"), ("lstm", 0.0, "0"), ("lstm", 10.0, "0")],
)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_evaluate_actions_at_equals_evaluate_actions(
    env_id: str, cell: str, overhead: float | None, lstm_ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Heads on the valid rows only; the sequences of a minibatch packed in one call of the
    compiled kernel (GRU and LSTM stacks), or, with oneDNN's LSTM (``RL_WARMUP_LSTM_EXT=0``),
    grouped by length (overhead 0: one call per distinct length) give the outputs and gradients
    of the full padded evaluation."""
    from rl_warmup import gru_ext

    monkeypatch.setenv("RL_WARMUP_LSTM_EXT", lstm_ext)
    policy_kwargs = {"cell": cell, "lstm_hidden_size": 16, "n_lstm_layers": 2}
    _, fast = _pair(RecurrentCellPolicy, policy_kwargs, env_id)
    packed = (cell == "gru" or lstm_ext == "1") and gru_ext.load() is not None
    assert fast.policy.lstm_actor._packed(torch.device("cpu")) is packed
    if overhead is not None:
        fast.policy.lstm_actor.group_overhead = fast.policy.lstm_critic.group_overhead = overhead
    np.random.seed(0)
    padded = 0
    for data in fast.rollout_buffer.get(24):
        actions = data.actions.long().flatten() if env_id == "CartPole-v1" else data.actions
        rows = torch.nonzero(data.mask > 0).squeeze(1)
        padded += len(data.mask) - len(rows)
        args = (data.observations, actions, data.lstm_states, data.episode_starts)
        full = fast.policy.evaluate_actions(*args)
        at = fast.policy.evaluate_actions_at(*args, rows)
        for a, b in zip(at, full, strict=True):
            torch.testing.assert_close(a, b[rows], rtol=1e-6, atol=1e-6)
        grads = []
        for values, log_prob, entropy in (at, [x[rows] for x in full]):
            fast.policy.zero_grad()
            (values.sum() + log_prob.sum() + entropy.sum()).backward()
            grads.append([p.grad.clone() for p in fast.policy.parameters() if p.grad is not None])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert padded > 0  # the padded positions were really left out


def test_save_load_with_either_class(tmp_path) -> None:
    model = FastRecurrentPPO(
        RecurrentCellPolicy,
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        n_steps=16,
        batch_size=16,
        n_epochs=2,
        policy_kwargs={"cell": "gru", "lstm_hidden_size": 8},
        seed=0,
    )
    model.learn(64)
    path = tmp_path / "fast.zip"
    model.save(path)
    for cls in (RecurrentPPO, FastRecurrentPPO):
        loaded = cls.load(path, env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
        assert type(loaded) is cls
        for a, b in zip(
            loaded.policy.state_dict().values(), model.policy.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b)
        rng = np.random.default_rng(0)
        state_a = state_b = None
        for t in range(8):
            obs = rng.normal(size=(2, 4)).astype(np.float32)
            start = np.array([t == 0, t == 4])
            act_a, state_a = model.predict(obs, state_a, start, deterministic=True)
            act_b, state_b = loaded.predict(obs, state_b, start, deterministic=True)
            assert np.array_equal(act_a, act_b) and np.array_equal(state_a[0], state_b[0])
        loaded.learn(32)  # trains on after loading, with either loop
    fast = FastRecurrentPPO.load(path)
    assert isinstance(fast.rollout_buffer, SequenceRolloutBuffer)
    assert fast.policy.optimizer.param_groups[0]["fused"] is True


def test_dict_observations_keep_sb3_contribs_buffer() -> None:
    model = FastRecurrentPPO(
        RecurrentCellMultiInputPolicy,
        SimpleMultiObsEnv(),
        n_steps=16,
        batch_size=8,
        n_epochs=2,
        policy_kwargs={"cell": "lstm", "lstm_hidden_size": 8},
        seed=0,
    )
    before = {n: p.clone() for n, p in model.policy.named_parameters()}
    model.learn(32)
    assert not isinstance(model.rollout_buffer, SequenceRolloutBuffer)
    assert model._n_updates == 4
    assert any(not torch.equal(p, before[n]) for n, p in model.policy.named_parameters())


def test_fused_optimizer_can_be_turned_off() -> None:
    model = FastRecurrentPPO(
        "MlpLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, fused_optimizer=False
    )
    assert not model.policy.optimizer.param_groups[0]["fused"]
    kept = FastRecurrentPPO(
        "MlpLstmPolicy",
        "CartPole-v1",
        n_steps=8,
        batch_size=8,
        policy_kwargs={"optimizer_kwargs": {"foreach": True}},
    )
    assert kept.policy.optimizer.param_groups[0]["foreach"] is True
    assert not kept.policy.optimizer.param_groups[0]["fused"]


def test_group_plan_minimises_calls_and_padding() -> None:
    from rl_warmup.sb3.policies import _group_plan

    lengths = [32, 32, 30, 12, 10, 10, 3]
    assert _group_plan(lengths, 1e9) == [(7, 32)]  # calls too dear: one padded call
    assert _group_plan(lengths, 0.0) == [(2, 32), (3, 30), (4, 12), (6, 10), (7, 3)]
    # overhead 20: 3 rows x 32 + 4 rows x 12 (+ 2 calls) beats every other cut
    assert _group_plan(lengths, 20.0) == [(3, 32), (7, 12)]
    assert _group_plan([5, 5, 5], 0.0) == [(3, 5)]

    def cost(plan: list[tuple[int, int]], overhead: float) -> float:
        begins = [0] + [end for end, _ in plan[:-1]]
        return sum(
            overhead + (end - b) * steps for b, (end, steps) in zip(begins, plan, strict=True)
        )

    # against every way of cutting the 7 sorted rows (brute force over the 2^6 cut sets)
    for overhead in (0.0, 1.0, 7.5, 20.0, 60.0, 94.0, 113.0, 114.0, 500.0):
        best = min(
            cost(
                [(end, lengths[b]) for b, end in zip([0, *cuts], [*cuts, 7], strict=True)],
                overhead,
            )
            for k in range(7)
            for cuts in map(list, itertools.combinations(range(1, 7), k))
        )
        assert cost(_group_plan(lengths, overhead), overhead) == pytest.approx(best)


@pytest.mark.parametrize("scale", [1e-3, 10.0])
def test_clip_grad_norm_equals_torchs_bit_for_bit(scale: float) -> None:
    """FastRecurrentPPO's gradient clipping (a few foreach calls) scales exactly as
    ``torch.nn.utils.clip_grad_norm_`` does, below and above the threshold; parameters without a
    gradient are left alone."""
    from rl_warmup.sb3.ppo import _clip_grad_norm

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in [(64, 2), (256, 64), (256,), (1,), (2, 64)]]
    grads = [scale * torch.randn_like(p) for p in params]
    results = []
    for clip in (_clip_grad_norm, torch.nn.utils.clip_grad_norm_):
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        params[3].grad = None
        clip(params, 0.5)
        results.append([p.grad for p in params])
    for ours, torchs in zip(*results, strict=True):
        assert (ours is None and torchs is None) or torch.equal(ours, torchs)


def _adam_pair(
    optimizer_class: type, **kwargs: object
) -> tuple[list, torch.optim.Optimizer, list, torch.optim.Optimizer]:
    torch.manual_seed(0)
    shapes = [(256, 2), (256, 64), (256,), (1, 64), (1,)]
    first = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    options = {"lr": 1e-3, "eps": 1e-5, "fused": True, **kwargs}
    return first, optimizer_class(first, **options), second, optimizer_class(second, **options)


@pytest.mark.parametrize(
    ("optimizer_class", "kwargs"),
    [
        (torch.optim.Adam, {}),
        (torch.optim.Adam, {"weight_decay": 0.01}),
        (torch.optim.AdamW, {"weight_decay": 0.1}),
    ],
    ids=["adam", "adam-l2", "adamw"],
)
def test_lean_fused_adam_steps_equal_optimizer_steps_bit_for_bit(
    optimizer_class: type, kwargs: dict
) -> None:
    """FastRecurrentPPO's Adam steps (one shared step counter, the tensors read once) give the
    parameters, moments and counters of ``optimizer.step()`` bit for bit, across a learning rate
    change and a state dict round trip."""
    from rl_warmup.sb3.ppo import _FusedAdamSteps

    plain_params, plain, lean_params, lean_opt = _adam_pair(optimizer_class, **kwargs)
    assert _FusedAdamSteps.create(lean_opt) is None  # no state before the first step
    generator = torch.Generator().manual_seed(1)
    for segment in range(3):
        lean = None
        for _ in range(5):
            grads = [torch.randn(p.shape, generator=generator) for p in plain_params]
            for params in (plain_params, lean_params):
                for p, g in zip(params, grads, strict=True):
                    p.grad = g.clone()
            plain.step()
            if lean is None:
                lean_opt.step()
                lean = _FusedAdamSteps.create(lean_opt)
                assert lean is not None
            else:
                assert lean.step()
        lean.sync()
        for group in (plain.param_groups[0], lean_opt.param_groups[0]):
            group["lr"] *= 0.5  # as sb3's schedule does between rollouts
        if segment == 1:  # a saved and loaded optimizer: separate counters again
            lean_opt.load_state_dict(lean_opt.state_dict())
        for a, b in zip(plain_params, lean_params, strict=True):
            assert torch.equal(a, b)
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(plain.state[a][key], lean_opt.state[b][key]), key
    assert float(lean_opt.state[lean_params[0]]["step"]) == 15


def test_lean_fused_adam_steps_refuse_what_they_cannot_reproduce() -> None:
    """``optimizer.step()`` stays in charge where the lean step would not be exact."""
    from rl_warmup.sb3.ppo import _FusedAdamSteps

    def stepped(
        optimizer_class: type = torch.optim.Adam, **kwargs: object
    ) -> torch.optim.Optimizer:
        params, opt, _, _ = _adam_pair(optimizer_class, **kwargs)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        return opt

    assert _FusedAdamSteps.create(stepped()) is not None
    assert _FusedAdamSteps.create(stepped(amsgrad=True)) is None
    assert _FusedAdamSteps.create(stepped(maximize=True)) is None
    assert _FusedAdamSteps.create(stepped(fused=None)) is None  # the single-tensor loop
    assert _FusedAdamSteps.create(stepped(lr=torch.tensor(1e-3))) is None
    opt = stepped()
    handle = opt.register_step_pre_hook(lambda *args: None)
    assert _FusedAdamSteps.create(opt) is None
    handle.remove()
    seen = []
    opt.register_step_post_hook(lambda optimizer, args, kwargs: seen.append(optimizer))
    lean = _FusedAdamSteps.create(opt)
    assert lean is not None and lean.step() and seen == [opt]  # run as optimizer.step() runs it
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))]})
    assert _FusedAdamSteps.create(opt) is None
    opt = stepped()
    first = opt.param_groups[0]["params"][0]
    opt.state[first]["step"] += 1  # unequal counters: no shared one
    assert _FusedAdamSteps.create(opt) is None
    opt = stepped()
    lean = _FusedAdamSteps.create(opt)
    assert lean is not None
    before = [p.detach().clone() for p in opt.param_groups[0]["params"]]
    opt.param_groups[0]["params"][1].grad = None  # Adam would skip it: the caller steps instead
    assert not lean.step()
    assert all(
        torch.equal(a, b) for a, b in zip(before, opt.param_groups[0]["params"], strict=True)
    )
    assert float(lean.step_count) == 1


def test_train_with_the_lean_adam_equals_train_with_optimizer_step(monkeypatch) -> None:
    """Two rollouts of FastRecurrentPPO with its lean Adam steps and with ``optimizer.step()``:
    the same parameters and optimizer state, bit for bit."""
    from rl_warmup.sb3 import ppo

    def run() -> tuple[dict, dict]:
        model = FastRecurrentPPO(
            RecurrentCellPolicy,
            "CartPole-v1",
            n_steps=32,
            batch_size=32,
            n_epochs=3,
            seed=0,
            policy_kwargs={"cell": "lstm", "lstm_hidden_size": 8},
        )
        model.learn(64)
        return model.policy.state_dict(), model.policy.optimizer.state_dict()

    lean_steps = []
    step = ppo._FusedAdamSteps.step
    monkeypatch.setattr(
        ppo._FusedAdamSteps, "step", lambda self: lean_steps.append(step(self)) or lean_steps[-1]
    )
    lean_params, lean_state = run()
    assert len(lean_steps) == 2 * 3 - 1 and all(lean_steps)  # all but the first update
    monkeypatch.setattr(ppo._FusedAdamSteps, "create", classmethod(lambda cls, optimizer: None))
    plain_params, plain_state = run()
    for name, value in plain_params.items():
        assert torch.equal(lean_params[name], value), name
    assert lean_state["state"].keys() == plain_state["state"].keys()
    for index, state in plain_state["state"].items():
        for key, value in state.items():
            assert torch.equal(lean_state["state"][index][key], value), (index, key)
