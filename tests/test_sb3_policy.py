"""RecurrentCellPolicy: RecurrentPPO with any cell, state layout, whole-sequence fast path, parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from torch import Tensor

from rl_warmup.cells import (
    CELL_NAMES,
    BRCLayer,
    DoubleLayer,
    GRULayer,
    LSTMLayer,
    MGULayer,
    NBRCLayer,
    RecurrentLayer,
    RecurrentNetwork,
)
from rl_warmup.sb3 import (
    RecurrentCellCnnPolicy,
    RecurrentCellModule,
    RecurrentCellMultiInputPolicy,
    RecurrentCellPolicy,
)

CASES = [(cell, double) for cell in CELL_NAMES for double in (False, True)]
IDS = [f"{cell}{'-double' if double else ''}" for cell, double in CASES]


def _model(
    cell: str = "gru",
    double: bool = False,
    *,
    hidden: int = 8,
    layers: int = 1,
    n_envs: int = 2,
    seed: int = 0,
    **kwargs: object,
) -> RecurrentPPO:
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    policy_kwargs = {
        "cell": cell,
        "double": double,
        "lstm_hidden_size": hidden,
        "n_lstm_layers": layers,
    }
    policy_kwargs.update(kwargs.pop("policy_kwargs", {}))  # type: ignore[arg-type]
    params = {"n_steps": 16, "batch_size": 16, "n_epochs": 1, "seed": seed, **kwargs}
    return RecurrentPPO(RecurrentCellPolicy, env, policy_kwargs=policy_kwargs, **params)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# A cell stepped by hand, from its equations and its parameters
# ----------------------------------------------------------------------------------------
def _linear(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    y = x @ w.T
    return y if b is None else y + b


def _hand_step(layer: RecurrentLayer, x: Tensor, state: Tensor) -> Tensor:
    """The flat state after one step of ``layer`` from ``state`` on input ``x`` ``(B, I)``."""
    if isinstance(layer, DoubleLayer):
        s1, s2 = state.split([layer.first.state_size, layer.second.state_size], dim=-1)
        return torch.cat([_hand_step(layer.first, x, s1), _hand_step(layer.second, x, s2)], dim=-1)
    if isinstance(layer, LSTMLayer):  # chrono-LSTM too
        rnn = layer.rnn
        h, c = state.chunk(2, dim=-1)
        gates = _linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0) + _linear(
            h, rnn.weight_hh_l0, rnn.bias_hh_l0
        )
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)
    if isinstance(layer, GRULayer):
        rnn = layer.rnn
        gi_r, gi_z, gi_n = _linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0).chunk(3, dim=-1)
        gh_r, gh_z, gh_n = _linear(state, rnn.weight_hh_l0, rnn.bias_hh_l0).chunk(3, dim=-1)
        r, z = torch.sigmoid(gi_r + gh_r), torch.sigmoid(gi_z + gh_z)
        return (1 - z) * torch.tanh(gi_n + r * gh_n) + z * state
    proj = _linear(x, layer.input_proj.weight, layer.input_proj.bias)  # type: ignore[union-attr]
    h = state
    if isinstance(layer, MGULayer):
        p_f, p_h = proj.chunk(2, dim=-1)
        f = torch.sigmoid(p_f + _linear(h, layer.weight_f))
        return (1 - f) * h + f * torch.tanh(p_h + _linear(f * h, layer.weight_h))
    p_a, p_c, p_x = proj.chunk(3, dim=-1)
    if isinstance(layer, BRCLayer):
        r_a, r_c = layer.w_a * h, layer.w_c * h
    else:
        assert isinstance(layer, NBRCLayer)
        r_a, r_c = _linear(h, layer.weight_hh).chunk(2, dim=-1)
    a, c = 1 + torch.tanh(p_a + r_a), torch.sigmoid(p_c + r_c)
    return c * h + (1 - c) * torch.tanh(p_x + a * h)


def _hand_network_step(
    net: RecurrentNetwork, x: Tensor, states: list[Tensor]
) -> tuple[Tensor, list[Tensor]]:
    new = []
    for layer, state in zip(net.layers, states, strict=True):
        state = _hand_step(layer, x, state)
        new.append(state)
        x = layer.output_of(state)
    return x, new


def _unit_outputs(layer: RecurrentLayer, state: Tensor) -> Tensor:
    """The output units inside a flat state, written out per cell kind."""
    if isinstance(layer, DoubleLayer):
        s1, s2 = state.split([layer.first.state_size, layer.second.state_size], dim=-1)
        return torch.cat([_unit_outputs(layer.first, s1), _unit_outputs(layer.second, s2)], dim=-1)
    return state[:, : layer.hidden_size]


# ----------------------------------------------------------------------------------------
# Training works for every cell; the state layout RecurrentPPO stores
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_learns_with_every_cell(cell: str, double: bool) -> None:
    model = _model(cell, double, layers=2)
    policy = model.policy
    assert isinstance(policy, RecurrentCellPolicy)
    assert isinstance(policy.rnn_actor, RecurrentNetwork) and isinstance(
        policy.rnn_critic, RecurrentNetwork
    )
    assert policy.rnn_actor is not policy.rnn_critic
    assert isinstance(policy.rnn_actor.layers[0], DoubleLayer) is double
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    model.learn(64)
    # RecurrentPPO sized its buffers from the module: (n_steps, layers, n_envs, storage width)
    assert model.rollout_buffer.hidden_states_pi.shape[-1] == 8
    h, c = model._last_lstm_states.pi
    assert h.shape == c.shape == (2, 2, 8)
    for name in ("lstm_actor.", "lstm_critic."):
        changed = [
            n
            for n, p in policy.named_parameters()
            if n.startswith(name) and not torch.equal(p, before[n])
        ]
        assert changed, f"training did not change the {name} parameters"
    assert all(torch.isfinite(p).all() for p in policy.parameters())
    # LSTM cells keep their cell state in slot c; cells whose state is their output leave it at 0
    if cell in ("lstm", "chrono_lstm"):
        assert c.abs().sum() > 0
    else:
        assert torch.equal(c, torch.zeros_like(c)), (
            "cells without a cell state leave the c slot at zero"
        )


@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_state_layout(cell: str, double: bool) -> None:
    net = RecurrentNetwork(cell, 3, 8, 2, double=double, generator=torch.Generator().manual_seed(0))
    module = RecurrentCellModule(net)
    assert module.num_layers == 2 and module.hidden_size == 8 and module.input_size == 3
    x = torch.randn(5, 4, 3)
    out = net(x)
    h, c = module.from_flat(out.states)
    assert h.shape == c.shape == (2, 5, 8)
    for i, layer in enumerate(net.layers):
        # slot h holds the layer's outputs: the last output for every cell, both halves for double
        assert torch.equal(h[i], _unit_outputs(layer, out.states[i]))
        if isinstance(layer.warm_part, LSTMLayer):
            halves = [layer.first, layer.second] if isinstance(layer, DoubleLayer) else [layer]
            parts = out.states[i].split([p.state_size for p in halves], dim=-1)
            assert torch.equal(c[i], torch.cat([p[:, p.shape[-1] // 2 :] for p in parts], dim=-1))
        else:
            assert torch.equal(c[i], torch.zeros_like(c[i]))
    torch.testing.assert_close(h[-1], out.outputs[:, -1], rtol=0, atol=1e-6)
    # lossless both ways
    for a, b in zip(module.to_flat((h, c)), out.states, strict=True):
        assert torch.equal(a, b)


def test_lstm_state_layout_is_sb3_contribs() -> None:
    """For a plain LSTM, the slots are exactly nn.LSTM's (h, c)."""
    lstm = torch.nn.LSTM(3, 6, num_layers=2)
    module = RecurrentCellModule(RecurrentNetwork.from_torch(lstm))
    x = torch.randn(4, 5, 3)
    h0, c0 = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    ref_out, (ref_h, ref_c) = lstm(x, (h0, c0))
    out, (h, c) = module(x.transpose(0, 1), (h0, c0), torch.zeros(5, 4))
    torch.testing.assert_close(out, ref_out.transpose(0, 1), rtol=0, atol=1e-6)
    torch.testing.assert_close(h, ref_h, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, ref_c, rtol=0, atol=1e-6)


def test_critic_variants_and_network_access() -> None:
    shared = _model(policy_kwargs={"shared_lstm": True, "enable_critic_lstm": False})
    assert shared.policy.rnn_critic is None and shared.policy.lstm_critic is None
    none = _model(policy_kwargs={"enable_critic_lstm": False})
    assert none.policy.rnn_critic is None and none.policy.critic is not None
    for model in (shared, none):
        model.learn(32)
        assert isinstance(model.policy.rnn_actor, RecurrentNetwork)
    policy = _model().policy
    in_optimizer = {id(p) for g in policy.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in policy.parameters())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "rnn"}, "unknown cell 'rnn'"),
        ({"cell": "gru", "double": True, "lstm_hidden_size": 7}, "must be even"),
        ({"lstm_kwargs": {"dropout": 0.1}}, "lstm_kwargs"),
        ({"shared_lstm": True}, "choose between"),
    ],
)
def test_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecurrentPPO(RecurrentCellPolicy, "CartPole-v1", policy_kwargs=kwargs)


# ----------------------------------------------------------------------------------------
# Same outputs as the cell stepped by hand over episodes with resets
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_rollout_equals_hand_stepping(cell: str, double: bool) -> None:
    torch.manual_seed(0)
    policy = _model(cell, double, layers=2, n_envs=3).policy
    n_envs, steps = 3, 12
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(steps, n_envs, 4, generator=gen)
    starts = (torch.rand(steps, n_envs, generator=gen) < 0.25).float()
    starts[0] = 1.0
    nets = {"pi": policy.rnn_actor, "vf": policy.rnn_critic}
    hand = {k: [torch.full((n_envs, s), 0.5) for s in net.state_sizes] for k, net in nets.items()}
    module = policy.lstm_actor
    states = RNNStates(module.from_flat(hand["pi"]), module.from_flat(hand["vf"]))
    with torch.no_grad():
        for t in range(steps):
            actions, values, log_prob, states = policy(
                obs[t], states, starts[t], deterministic=True
            )
            latent = {}
            for k, net in nets.items():
                prev = [s * (1 - starts[t, :, None]) for s in hand[k]]
                latent[k], hand[k] = _hand_network_step(net, obs[t], prev)
            dist = policy._get_action_dist_from_latent(
                policy.mlp_extractor.forward_actor(latent["pi"])
            )
            ref_values = policy.value_net(policy.mlp_extractor.forward_critic(latent["vf"]))
            torch.testing.assert_close(values, ref_values, rtol=0, atol=1e-5)
            torch.testing.assert_close(log_prob, dist.log_prob(actions), rtol=0, atol=1e-5)
            assert torch.equal(actions, dist.get_actions(deterministic=True))
            for k, storage in zip(("pi", "vf"), states, strict=True):
                for got, ref in zip(module.to_flat(storage), hand[k], strict=True):
                    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_predict_resets_and_carries_state() -> None:
    model = _model("lstm", True, layers=2, n_envs=2)
    obs = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    _, state = model.predict(obs, state=None, episode_start=np.ones(2, dtype=bool))
    assert state[0].shape == state[1].shape == (2, 2, 8)
    _, carried = model.predict(obs, state=state, episode_start=np.zeros(2, dtype=bool))
    _, reset = model.predict(obs, state=state, episode_start=np.ones(2, dtype=bool))
    _, fresh = model.predict(obs, state=None, episode_start=np.zeros(2, dtype=bool))
    assert np.array_equal(reset[0], fresh[0]) and np.array_equal(reset[1], fresh[1])
    assert not np.allclose(carried[1], fresh[1])


# ----------------------------------------------------------------------------------------
# Whole-sequence fast path == step-by-step, values, log-probabilities and gradients
# ----------------------------------------------------------------------------------------
def _step_by_step_evaluate(
    policy: RecurrentCellPolicy, obs: Tensor, actions: Tensor, states: RNNStates, starts: Tensor
):
    """``evaluate_actions`` with one recurrent call per time step, as sb3-contrib's loop does."""
    n_seq = states.pi[0].shape[1]
    obs_seq = obs.reshape(n_seq, -1, obs.shape[-1])
    starts_seq = starts.reshape(n_seq, -1)
    latents: dict[str, list[Tensor]] = {"pi": [], "vf": []}
    carried = {"pi": states.pi, "vf": states.vf}
    modules = {"pi": policy.lstm_actor, "vf": policy.lstm_critic}
    for t in range(obs_seq.shape[1]):
        features = policy.extract_features(obs_seq[:, t])
        for k, module in modules.items():
            out, carried[k] = policy._process_sequence(
                features, carried[k], starts_seq[:, t], module
            )
            latents[k].append(out)
    latent_pi = torch.stack(latents["pi"], dim=1).reshape(-1, policy.lstm_output_dim)
    latent_vf = torch.stack(latents["vf"], dim=1).reshape(-1, policy.lstm_output_dim)
    dist = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(latent_pi))
    values = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf))
    return values, dist.log_prob(actions), dist.entropy()


def _grads(
    policy: torch.nn.Module, outputs: tuple[Tensor, ...], extra: list[Tensor]
) -> dict[str, Tensor]:
    """Gradients of a fixed mixture of values, log-probabilities and entropies, by parameter name
    (``extra`` tensors as ``"extra{i}"``)."""
    values, log_prob, entropy = outputs
    weights = torch.linspace(-1.0, 1.0, log_prob.numel())
    loss = (values.flatten() * weights).sum() + (log_prob * weights.flip(0)).sum() + entropy.sum()
    named = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    named += [(f"extra{i}", t) for i, t in enumerate(extra)]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {
        n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(named, grads, strict=True)
    }


@pytest.mark.parametrize("resets", ["buffer", "anywhere"])
@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_fast_path_equals_step_by_step(cell: str, double: bool, resets: str) -> None:
    torch.manual_seed(0)
    policy = _model(cell, double, layers=2).policy
    gen = torch.Generator().manual_seed(2)
    n_seq, seq_len = 5, 9
    obs = torch.randn(n_seq * seq_len, 4, generator=gen)
    actions = torch.randint(0, 2, (n_seq * seq_len,), generator=gen)
    starts = torch.zeros(n_seq, seq_len)
    if (
        resets == "buffer"
    ):  # what RecurrentRolloutBuffer produces: resets only at a sequence's start
        starts[[0, 2, 3], 0] = 1.0
    else:
        starts = (torch.rand(n_seq, seq_len, generator=gen) < 0.2).float()
        starts[1, 0], starts[1, 4], starts[1, 5], starts[3, seq_len - 1] = 1.0, 1.0, 1.0, 1.0
    starts = starts.flatten()
    module = policy.lstm_actor
    init = []
    for _ in range(
        2
    ):  # non-zero initial states, as stored in the buffer (c slot zero for h-only cells)
        flat = [torch.randn(n_seq, s, generator=gen) * 0.5 for s in policy.rnn_actor.state_sizes]
        init.append(module.from_flat(flat))
    leaves = [s.clone().requires_grad_(True) for pair in init for s in pair]
    states = RNNStates((leaves[0], leaves[1]), (leaves[2], leaves[3]))

    fast = policy.evaluate_actions(obs, actions, states, starts)
    slow = _step_by_step_evaluate(policy, obs, actions, states, starts)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    fast_grads, slow_grads = _grads(policy, fast, leaves), _grads(policy, slow, leaves)
    assert any(g.abs().sum() > 0 for n, g in fast_grads.items() if n.startswith("lstm_actor."))
    for name, grad in fast_grads.items():
        torch.testing.assert_close(
            grad, slow_grads[name], rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("path", ["python", "compiled"])
@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_fast_path_on_real_minibatches(cell: str, double: bool, path: str) -> None:
    """Padded minibatches of a real rollout buffer (sequences cut at episode starts).

    ``path``: the whole-sequence cells in torch ops (``"python"``: the same float32 arithmetic as
    the step-by-step reference, so a tight tolerance) or in the compiled kernel (GRU, BRC, nBRC;
    its own float32 arithmetic, equal to the Python path to 1e-10 in float64, test_cells.py):
    a bistable cell's dynamics amplify 1e-7 differences to ~3e-5 in the gradients over a
    rollout, hence a looser tolerance there."""
    from rl_warmup.cells import gru_path

    tol = 1e-5 if path == "python" else 2e-4
    model = _model(cell, double, layers=2, n_steps=32, batch_size=24)
    model.learn(64)
    np.random.seed(0)
    batches = list(model.rollout_buffer.get(24))
    assert any(b.episode_starts.sum() > 0 for b in batches)
    assert any(b.mask.sum() < b.mask.numel() for b in batches), "expected padded minibatches"
    for batch in batches:
        args = (batch.observations, batch.actions.long().flatten())
        with gru_path(path):
            fast = model.policy.evaluate_actions(*args, batch.lstm_states, batch.episode_starts)
        slow = _step_by_step_evaluate(model.policy, *args, batch.lstm_states, batch.episode_starts)
        for a, b in zip(fast, slow, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        fast_grads, slow_grads = _grads(model.policy, fast, []), _grads(model.policy, slow, [])
        for name, grad in fast_grads.items():
            torch.testing.assert_close(grad, slow_grads[name], rtol=tol, atol=tol)


@pytest.mark.parametrize(("cell", "double"), CASES, ids=IDS)
def test_direct_path_only_for_single_fused_layers(cell: str, double: bool) -> None:
    module = RecurrentCellModule(RecurrentNetwork(cell, 3, 8, 2, double=double))
    assert module._direct == (cell in ("lstm", "gru", "chrono_lstm") and not double)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "chrono_lstm"])
def test_direct_path_equals_general_path(cell: str, layers: int) -> None:
    """Single LSTM / GRU layers read the (h, c) storage directly; same numbers as via flat states."""
    torch.manual_seed(0)
    module = RecurrentCellModule(RecurrentNetwork(cell, 3, 8, layers))
    gen = torch.Generator().manual_seed(1)
    n_seq, seq_len = 4, 6
    x = torch.randn(n_seq, seq_len, 3, generator=gen)
    flat = [torch.randn(n_seq, s, generator=gen) for s in module.network.state_sizes]
    storage = module.from_flat(flat)
    for steps in (1, seq_len):  # rollout steps and training sequences
        starts = torch.zeros(n_seq, steps)
        starts[[0, 2], 0] = 1.0
        results = []
        for direct in (True, False):
            module._direct = direct
            module.zero_grad()
            h0, c0 = (s.clone().requires_grad_(True) for s in storage)
            out, (h, c) = module(x[:, :steps], (h0, c0), starts)
            (out.square().sum() + h.sum() + 0.5 * c.sum()).backward()
            grads = [p.grad.clone() for p in module.parameters()]
            results.append((out, h, c, h0.grad, c0.grad, *grads))
        module._direct = True
        for a, b in zip(*results, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------
# Stock sb3-contrib behaviour reproduced (cell="lstm", double=False)
# ----------------------------------------------------------------------------------------
def _our_name(stock_name: str) -> str:
    """``lstm_actor.weight_ih_l1`` -> ``lstm_actor.network.layers.1.rnn.weight_ih_l0``."""
    prefix, _, rest = stock_name.partition(".")
    if prefix not in ("lstm_actor", "lstm_critic"):
        return stock_name
    kind, _, layer = rest.rpartition("_l")
    return f"{prefix}.network.layers.{layer}.rnn.{kind}_l0"


def _copy_stock_weights(stock: torch.nn.Module, ours: RecurrentCellPolicy) -> None:
    ours.load_stock_state_dict(stock.state_dict())


def test_load_stock_state_dict_checks_the_cell() -> None:
    stock = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", policy_kwargs={"lstm_hidden_size": 8})
    with pytest.raises(ValueError, match="only cell='lstm'"):
        _model("gru").policy.load_stock_state_dict(stock.policy.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        _model("lstm", hidden=16).policy.load_stock_state_dict(stock.policy.state_dict())


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        {"n_lstm_layers": 1},
        {"n_lstm_layers": 2},
        {"shared_lstm": True, "enable_critic_lstm": False},
    ],
    ids=["one-layer", "two-layers", "shared"],
)
def test_reproduces_stock_recurrent_policy(policy_kwargs: dict) -> None:
    kwargs = {"lstm_hidden_size": 16, **policy_kwargs}
    common = {"n_steps": 32, "batch_size": 24, "n_epochs": 1, "seed": 0}
    stock = RecurrentPPO(
        "MlpLstmPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        policy_kwargs=kwargs,
        **common,
    )
    stock.learn(64)  # fills the rollout buffer (with episode starts inside) and trains once
    ours = RecurrentPPO(
        RecurrentCellPolicy,
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        policy_kwargs={"cell": "lstm", **kwargs},
        **common,
    )
    _copy_stock_weights(stock.policy, ours.policy)
    assert stock.rollout_buffer.episode_starts.sum() >= 2

    np.random.seed(0)
    batches = list(stock.rollout_buffer.get(24))
    assert any(b.episode_starts.sum() > 0 for b in batches)
    for batch in batches:
        actions = batch.actions.long().flatten()
        args = (batch.observations, actions, batch.lstm_states, batch.episode_starts)
        ref = stock.policy.evaluate_actions(*args)
        got = ours.policy.evaluate_actions(*args)
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        ref_grads = _grads(stock.policy, ref, [])
        got_grads = _grads(ours.policy, got, [])
        assert len(ref_grads) == len(got_grads)
        for name, grad in ref_grads.items():
            torch.testing.assert_close(got_grads[_our_name(name)], grad, rtol=1e-5, atol=1e-5)

    # rollout step: same actions, values and (h, c) states as the stock policy
    obs = torch.as_tensor(stock.rollout_buffer.observations[:2])
    states = stock._last_lstm_states
    starts = torch.tensor([1.0, 0.0])
    with torch.no_grad():
        ref = stock.policy(obs, states, starts, deterministic=True)
        got = ours.policy(obs, states, starts, deterministic=True)
    for a, b in zip(got[:3], ref[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    for a, b in zip(got[3].pi + got[3].vf, ref[3].pi + ref[3].vf, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_training_reproduces_stock_training() -> None:
    """From the same weights and seeds, RecurrentPPO trains the package's LSTM policy like stock."""
    common = {"n_steps": 32, "batch_size": 24, "n_epochs": 2, "seed": 0}
    kwargs = {"lstm_hidden_size": 16, "n_lstm_layers": 2}
    stock = RecurrentPPO(
        "MlpLstmPolicy",
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        policy_kwargs=kwargs,
        **common,
    )
    ours = RecurrentPPO(
        RecurrentCellPolicy,
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        policy_kwargs={"cell": "lstm", **kwargs},
        **common,
    )
    _copy_stock_weights(stock.policy, ours.policy)
    initial = {n: v.clone() for n, v in stock.policy.state_dict().items()}
    for model in (stock, ours):
        model.set_random_seed(0)
        model.learn(3 * 64)
    assert stock.rollout_buffer.episode_starts.sum() >= 2
    for name, value in stock.policy.state_dict().items():
        torch.testing.assert_close(
            ours.policy.state_dict()[_our_name(name)], value, rtol=1e-5, atol=1e-6
        )
    trained = stock.policy.state_dict()
    assert all(not torch.equal(trained[n], initial[n]) for n in initial if n.startswith("lstm_"))


# ----------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path) -> None:
    model = _model("chrono_lstm", True, layers=2, policy_kwargs={"t_max": 50})
    model.learn(64)
    path = tmp_path / "model.zip"
    model.save(path)
    loaded = RecurrentPPO.load(path)
    assert isinstance(loaded.policy, RecurrentCellPolicy)
    assert (loaded.policy.cell, loaded.policy.double, loaded.policy.t_max) == (
        "chrono_lstm",
        True,
        50,
    )
    rng = np.random.default_rng(0)
    state_a = state_b = None
    for t in range(10):
        obs = rng.normal(size=(2, 4)).astype(np.float32)
        start = np.array([t == 0, t == 5])
        act_a, state_a = model.predict(obs, state_a, start, deterministic=True)
        act_b, state_b = loaded.predict(obs, state_b, start, deterministic=True)
        assert np.array_equal(act_a, act_b)
        assert np.array_equal(state_a[0], state_b[0]) and np.array_equal(state_a[1], state_b[1])

    policy_path = tmp_path / "policy.pt"
    model.policy.save(str(policy_path))
    alone = RecurrentCellPolicy.load(str(policy_path))
    assert alone.cell == "chrono_lstm" and alone.n_lstm_layers == 2 and alone.lstm_hidden_size == 8
    for a, b in zip(alone.state_dict().values(), model.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------
# Other observation spaces
# ----------------------------------------------------------------------------------------
def test_multi_input_and_cnn_variants() -> None:
    model = RecurrentPPO(
        RecurrentCellMultiInputPolicy,
        SimpleMultiObsEnv(),
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"cell": "mgu", "lstm_hidden_size": 8},
        seed=0,
    )
    model.learn(32)
    assert model._last_lstm_states.pi[0].shape == (1, 1, 8)
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1)
    cnn = RecurrentPPO(
        RecurrentCellCnnPolicy,
        env,
        n_steps=8,
        batch_size=8,
        n_epochs=1,
        policy_kwargs={"cell": "gru", "lstm_hidden_size": 8},
    )
    cnn.learn(16)
    assert cnn.policy.rnn_actor.input_size == cnn.policy.features_dim
