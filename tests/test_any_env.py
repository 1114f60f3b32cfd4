"""Any gymnasium id in the experiment runner: POPGym ids (flattened automatically), Dict
observations (a MultiInput policy chosen automatically), numpy sizes, unknown ids."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

from rl_warmup.experiment.config import TrainConfig, check_env_id
from rl_warmup.experiment.train import make_single_env, train

TINY: dict[str, Any] = {
    "n_envs": 2, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "hidden_size": 8, "warmup_steps": 3,
    "warmup_episodes": 4, "warmup_batch_size": 4, "vaa_n": 8, "vaa_settle_steps": 20,
    "vaa_star_settle_steps": 10, "eval_episodes": 4, "total_timesteps": 128, "checkpoint_freq": 64,
    "warmup": "full", "progress_bar": False, "tensorboard": False, "eval_freq": 64, "vaa_every": 2,
}


class TwoCueDict(gymnasium.Env[dict[str, Any], int]):
    """A cue in a Dict observation at the first step, a guess at the fourth."""

    observation_space = spaces.Dict(
        {"cue": spaces.Discrete(3), "where": spaces.Box(0.0, 1.0, (2,), dtype=np.float32)}
    )
    action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self.t, self.goal = 0, int(self.np_random.integers(2))
        return {"cue": self.goal + 1, "where": np.zeros(2, np.float32)}, {}

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        self.t += 1
        done = self.t == 4
        reward = float(done and action == self.goal)
        info = {"is_success": reward > 0} if done else {}
        return {"cue": 0, "where": np.array([self.t / 4, 0.0], np.float32)}, reward, done, False, info


if "rl_warmup_test/TwoCueDict-v0" not in gymnasium.registry:
    gymnasium.register("rl_warmup_test/TwoCueDict-v0", entry_point=TwoCueDict)


def _train(tmp_path: Path, env_id: str, **settings: Any) -> dict[str, Any]:
    config = TrainConfig.from_dict({**TINY, "env_id": env_id, "output_dir": str(tmp_path), **settings})
    result = train(config)
    assert result.num_timesteps == 128
    return json.loads((config.run_dir / "result.json").read_text())


@pytest.mark.parametrize(
    ("env_id", "cell"),
    [("popgym-RepeatPreviousEasy-v0", "gru"), ("popgym-CountRecallEasy-v0", "lstm"), ("popgym-AutoencodeEasy-v0", "stock_lstm")],
)
def test_popgym_ids_train_as_given(tmp_path: Path, env_id: str, cell: str) -> None:
    pytest.importorskip("popgym")
    # Discrete, MultiDiscrete and Tuple observations: flattened, then previous action and reward
    env = make_single_env(env_id, prev_action_reward=True)
    assert isinstance(env.observation_space, spaces.Box) and env.observation_space.dtype == np.float32
    assert env.observation_space.contains(env.reset(seed=0)[0])
    _train(tmp_path, env_id, cell=cell)


@pytest.mark.parametrize("cell", ["gru", "stock_lstm"])
@pytest.mark.parametrize("prev_action_reward", [True, False])
def test_dict_observations_get_a_multi_input_policy(tmp_path: Path, cell: str, prev_action_reward: bool) -> None:
    env = make_single_env("rl_warmup_test/TwoCueDict-v0", prev_action_reward)
    assert isinstance(env.observation_space, spaces.Dict)
    assert ("prev_action" in env.observation_space.spaces) == prev_action_reward
    _train(tmp_path, "rl_warmup_test/TwoCueDict-v0", cell=cell, prev_action_reward=prev_action_reward)


def test_unknown_ids_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown environment id 'NoSuch-v0'"):
        check_env_id("NoSuch-v0")
    with pytest.raises(ValueError, match="cannot import module"):
        check_env_id("no_such_module:NoSuch-v0")


def test_summary_reports_the_final_return_where_no_success_is_defined() -> None:
    from rl_warmup.experiment.grid import RESULT_COLUMNS
    from rl_warmup.experiment.report import summarize, summary_markdown

    rows = []
    for seed, ret in enumerate([0.5, -0.25, 0.75]):
        row = dict.fromkeys(RESULT_COLUMNS, "")
        row.update(env_id="popgym-RepeatPreviousEasy-v0", cell="gru", condition="warmed", status="finished",
                   seed=seed, final_success_rate=float("nan"), final_mean_reward=ret, total_timesteps=1000,
                   timesteps_to_threshold=float("nan"), memory_length=float("nan"), run_dir=f"runs/r{seed}")
        rows.append(row)
    summaries = summarize(rows, n_resamples=200)
    assert summaries[0].final_return[0] == pytest.approx(1 / 3)
    text = summary_markdown(rows, summaries, plots=())
    table = [line for line in text.splitlines() if line.startswith("| gru | warmed")]
    assert "| n/a | 0.33 [" in table[0]
    # with a return threshold, the time to it
    for row in rows:
        row["return_threshold"] = 0.5
    rows[0]["timesteps_to_threshold"], rows[2]["timesteps_to_threshold"] = 400, 600
    text = summary_markdown(rows, summarize(rows, n_resamples=200), plots=())
    assert "timesteps to return >= 0.5" in text
    table = [line for line in text.splitlines() if line.startswith("| gru | warmed")]
    assert "| 500 [" in table[0] and "| 2/3 |" in table[0]


def test_time_to_a_return_threshold_where_no_success_is_defined() -> None:
    from rl_warmup.experiment.train import timesteps_to_threshold

    no_success = [{"timesteps": "0", "success_rate": "", "mean_reward": "-1"},
                  {"timesteps": "10", "success_rate": "", "mean_reward": "0.6"}]
    assert timesteps_to_threshold(no_success, 0.95, return_threshold=0.5) == 10
    assert math.isnan(timesteps_to_threshold(no_success, 0.95))
    success = [{"timesteps": "0", "success_rate": "0.2", "mean_reward": "1"},
               {"timesteps": "10", "success_rate": "1.0", "mean_reward": "0.6"}]
    assert timesteps_to_threshold(success, 0.95, return_threshold=0.5) == 10  # success decides


def test_the_best_evaluated_model_is_kept(tmp_path: Path) -> None:
    import csv

    from stable_baselines3.common.evaluation import evaluate_policy

    from rl_warmup.experiment.train import EVAL_SEED_OFFSET, make_env
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    config = TrainConfig.from_dict({**TINY, "env_id": "rl_warmup/PassiveTMaze-v0", "output_dir": str(tmp_path)})
    train(config)
    with (config.run_dir / "evaluations.csv").open() as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["success_rate"]))  # the first of the best
    model = FastRecurrentPPO.load(config.run_dir / "best_model.zip")
    # replay the evaluation callback's own episodes: the kept model scores that row again
    seed = config.seed + EVAL_SEED_OFFSET
    env = make_env(config, n_envs=min(config.eval_episodes, 10), seed=seed)
    env.seed(seed)
    rewards, _ = evaluate_policy(model, env, n_eval_episodes=config.eval_episodes, deterministic=True,
                                 return_episode_rewards=True)
    assert float(best["mean_reward"]) == pytest.approx(float(np.mean(rewards)))
