"""scripts/cue_probe.py --models: the cue separation and junction policy of a saved model."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import load_script

from rl_warmup.experiment.config import TrainConfig
from rl_warmup.experiment.train import train


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_script("cue_probe")


def test_models_probe_matches_the_policy_run_by_hand(probe: ModuleType, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig.from_dict(
        {"env_id": "rl_warmup/PassiveTMaze-v0", "cell": "gru", "n_envs": 2, "n_steps": 22, "batch_size": 44,
         "n_epochs": 1, "hidden_size": 8, "vaa_every": 0, "eval_freq": 0, "total_timesteps": 88,
         "output_dir": str(tmp_path), "progress_bar": False, "tensorboard": False}
    )
    train(config)
    model_path = config.run_dir / "model.zip"
    res = probe.trained_probe(model_path, 10)
    assert res["distance"].shape == (11,) and res["probs"].shape == (2, 4)
    np.testing.assert_allclose(res["probs"].sum(axis=1), 1.0, rtol=1e-6)
    # the same numbers from the policy's own sequence path, one sequence at a time
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    policy = FastRecurrentPPO.load(model_path, device="cpu").policy
    obs = probe.cue_sequences(10, int(np.prod(policy.observation_space.shape)))
    outs = []
    for seq in obs:
        feats = policy._actor_critic_features(torch.as_tensor(seq))[0]
        h = policy.lstm_actor.initial_states(1)
        out, _ = policy.lstm_actor(feats[None], h, torch.zeros(1, 11))
        outs.append(out[0])
        logits = policy.action_net(policy.mlp_extractor.forward_actor(out[0, -1:]))
        np.testing.assert_allclose(torch.softmax(logits, -1)[0].detach().numpy(), res["probs"][len(outs) - 1], atol=1e-6)
    np.testing.assert_allclose((outs[0] - outs[1]).norm(dim=-1).detach().numpy(), res["distance"], atol=1e-6)
    assert probe.main(["--models", str(model_path), "--length", "10"]) == 0
    assert "junction action probabilities" in capsys.readouterr().out
    # an untrained policy of the same architecture: the trained weights are not used, the draw is seeded
    fresh = probe.fresh_probe(model_path, 10, seed=0)
    assert not np.allclose(fresh["probs"], res["probs"])
    np.testing.assert_array_equal(fresh["distance"], probe.fresh_probe(model_path, 10, seed=0)["distance"])
    assert probe.main(["--models", str(model_path), "--length", "10", "--fresh", "2"]) == 0
    assert capsys.readouterr().out.count("(untrained, seed") == 2
    with pytest.raises(SystemExit):
        probe.main(["--models", str(model_path)])  # --length missing
