"""FastRecurrentPPO and RecurrentCellPolicy on a CUDA device: the same results as on the CPU.

Skipped where torch sees no CUDA device (the development machine has none); a GPU machine runs
them with the rest of the suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from rl_warmup.sb3 import FastRecurrentPPO, RecurrentCellPolicy
from rl_warmup.sb3.fused import FusedActorCritic

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _models(cell: str) -> tuple[FastRecurrentPPO, FastRecurrentPPO]:
    """The same model on the CPU and on CUDA, with the same weights and random seed."""
    models = []
    for device in ("cpu", "cuda"):
        model = FastRecurrentPPO(
            RecurrentCellPolicy,
            make_vec_env("CartPole-v1", n_envs=4, seed=0),
            n_steps=32,
            batch_size=48,
            n_epochs=2,
            seed=0,
            device=device,
            policy_kwargs={"cell": cell, "lstm_hidden_size": 16},
        )
        model.set_logger(Logger(None, []))
        models.append(model)
    models[1].policy.load_state_dict(models[0].policy.state_dict())
    return models[0], models[1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_rollout_step_on_cuda_equals_cpu(cell: str) -> None:
    cpu, gpu = _models(cell)
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(4, 4, generator=g)
    starts = torch.tensor([1.0, 0.0, 0.0, 1.0])
    outs = []
    for model in (cpu, gpu):
        device = model.policy.device
        states = model._last_lstm_states
        with torch.inference_mode():
            values, states_out = [], states
            for _ in range(3):
                # the actions are random (another generator on CUDA): values and states only
                _, v, _, states_out = model.policy.rollout_step(
                    obs.to(device), states_out, starts.to(device)
                )
                flat = [v.flatten(), *(s.flatten() for s in (*states_out.pi, *states_out.vf))]
                values.append(torch.cat(flat).cpu())
        assert isinstance(model.policy._fused, FusedActorCritic)
        outs.append(torch.stack(values))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_evaluate_actions_at_on_cuda_equals_cpu(cell: str) -> None:
    """The valid-steps plan (index tensors on the device) and the sequence kernels on cuDNN."""
    cpu, gpu = _models(cell)
    for model in (cpu, gpu):
        model.policy.lstm_actor.group_overhead = 0.0  # one group per distinct length
        model.policy.lstm_critic.group_overhead = 0.0
    _, callback = cpu._setup_learn(256, None)
    cpu.collect_rollouts(cpu.env, callback, cpu.rollout_buffer, cpu.n_steps)  # type: ignore[arg-type]
    gpu._setup_learn(256, None)
    for name in ("observations", "actions", "rewards", "returns", "episode_starts", "values",
                 "log_probs", "advantages", "hidden_states_pi", "cell_states_pi",
                 "hidden_states_vf", "cell_states_vf"):
        setattr(gpu.rollout_buffer, name, getattr(cpu.rollout_buffer, name).copy())
    gpu.rollout_buffer.full = True
    gpu.rollout_buffer.generator_ready = False
    results = []
    for model in (cpu, gpu):
        np.random.seed(0)
        data = next(iter(model.rollout_buffer.get(48)))
        rows = torch.nonzero(data.mask > 0).squeeze(1)
        values, log_prob, entropy = model.policy.evaluate_actions_at(
            data.observations, data.actions.long().flatten(), data.lstm_states,
            data.episode_starts, rows,
        )
        model.policy.zero_grad()
        (values.sum() + log_prob.sum() + entropy.sum()).backward()  # type: ignore[union-attr]
        grads = [p.grad.cpu() for p in model.policy.parameters() if p.grad is not None]
        results.append([values.cpu(), log_prob.cpu(), entropy.cpu(), *grads])  # type: ignore[union-attr]
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_learn_on_cuda() -> None:
    _, gpu = _models("lstm")
    before = [p.detach().clone() for p in gpu.policy.parameters()]
    gpu.learn(3 * 32 * 4)
    assert gpu.num_timesteps == 3 * 32 * 4
    after = list(gpu.policy.parameters())
    assert all(p.device.type == "cuda" and torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert isinstance(gpu.policy._fused, FusedActorCritic)
