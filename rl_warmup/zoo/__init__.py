"""Hyperparameters for rl-baselines3-zoo (``rl_zoo3``), warmed and cold, for the package's environments.

Each variant is a module with a ``hyperparams`` dict, which the zoo reads when ``--conf-file``
names the module (no file path needed)::

    python -m rl_zoo3.train --algo ppo_lstm --env rl_warmup/PassiveTMaze-L50-v0 \\
        --gym-packages envs --conf-file rl_warmup.zoo.warmed_gru
    python -m rl_zoo3.enjoy --algo ppo_lstm --env rl_warmup/PassiveTMaze-L50-v0 \\
        --gym-packages envs -f logs/ --exp-id 1

| module | policy | warmup |
|---|---|---|
| ``rl_warmup.zoo.warmed_gru`` | ``RecurrentCellPolicy(cell="gru")`` | the paper's (``WarmupConfig()``) |
| ``rl_warmup.zoo.cold_gru`` | ``RecurrentCellPolicy(cell="gru")`` | none |
| ``rl_warmup.zoo.warmed_lstm`` | sb3-contrib's ``MlpLstmPolicy`` | ``WarmupConfig.lstm()``, 20 PPO epochs |
| ``rl_warmup.zoo.cold_lstm`` | sb3-contrib's ``MlpLstmPolicy`` | none, 20 PPO epochs |

The settings are those of ``rl_warmup/experiment/presets.yaml`` (what ``rl-warmup train`` uses),
translated to the zoo's keys: every id of :data:`envs.ENVIRONMENTS` has an entry, and
``default`` serves any other id. The warmed variants add ``WarmupCallback`` (the warmup runs at
the start of ``learn``, on random-policy episodes) and every variant ``VAALoggerCallback`` (the
exact VAA and VAA* of the actor in the zoo's logs and TensorBoard). The LSTM variants use 20
epochs per rollout, where warmed LSTM agents learned most often (``docs/lstm_warmup.md``).
For ids the zoo's own file already covers (``CartPoleNoVel-v1``...), pass your own file.
"""

from __future__ import annotations

from typing import Any

from rl_warmup.experiment.config import STOCK_LSTM, TrainConfig, resolve_config
from rl_warmup.warmup import WarmupConfig

VARIANTS: tuple[str, ...] = ("warmed_gru", "cold_gru", "warmed_lstm", "cold_lstm")
"""The modules of this package, one per variant."""

POLICY = "rl_warmup.sb3.policies.RecurrentCellPolicy"
WARMUP_CALLBACK = "rl_warmup.sb3.warmup.WarmupCallback"
VAA_CALLBACK = "rl_warmup.sb3.callbacks.VAALoggerCallback"
PREV_ACTION_REWARD = "envs.PrevActionRewardWrapper"
LSTM_EPOCHS = 20


def _variant(variant: str) -> tuple[str, bool]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    condition, cell = variant.split("_")
    return ("gru" if cell == "gru" else STOCK_LSTM), condition == "warmed"


def _warmup_kwargs(config: TrainConfig, cell: str) -> dict[str, Any]:
    """``WarmupCallback``'s arguments: the fields that differ from ``WarmupConfig()``'s defaults
    (``WarmupConfig.lstm()``'s setting on top for the LSTM), lists for tuples."""
    warmup = config.warmup_config().to_dict()
    if cell == STOCK_LSTM:
        warmup.update(WarmupConfig.lstm().to_dict())
    warmup.pop("seed", None)  # the model's seed (the zoo's --seed) decides
    defaults = WarmupConfig().to_dict()
    changed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in warmup.items() if v != defaults[k]}
    return {"config": changed, "n_episodes": config.warmup_episodes}


def entry(env_id: str, variant: str) -> dict[str, Any]:
    """The zoo's hyperparameters of one environment id for one variant (plain values only, so
    that the zoo can save them in its ``config.yml``)."""
    cell, warmed = _variant(variant)
    overrides: dict[str, Any] = {"env_id": env_id, "cell": cell, "warmup": "full" if warmed else "none"}
    if cell == STOCK_LSTM:
        overrides["n_epochs"] = LSTM_EPOCHS
    config = resolve_config(overrides)
    out: dict[str, Any] = {
        "policy": "MlpLstmPolicy" if cell == STOCK_LSTM else POLICY,
        "n_envs": config.n_envs,
        "n_timesteps": config.total_timesteps,
        "n_steps": config.n_steps,
        "batch_size": config.batch_size,
        "n_epochs": config.n_epochs,
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "clip_range": config.clip_range,
        "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef,
        "max_grad_norm": config.max_grad_norm,
        "normalize": config.normalize,
        "policy_kwargs": config.policy_kwargs(),
    }
    if config.prev_action_reward:
        out["env_wrapper"] = PREV_ACTION_REWARD
    callbacks: list[Any] = []
    if warmed:
        callbacks.append({WARMUP_CALLBACK: _warmup_kwargs(config, cell)})
    if config.vaa_every > 0:
        callbacks.append(
            {
                VAA_CALLBACK: {
                    "every_n_rollouts": config.vaa_every,
                    "n": config.vaa_n,
                    "settle_steps": config.vaa_settle_steps,
                    "star_settle_steps": config.vaa_star_settle_steps,
                }
            }
        )
    if callbacks:
        out["callback"] = callbacks
    return out


def zoo_hyperparams(variant: str) -> dict[str, dict[str, Any]]:
    """``{env_id: hyperparameters}`` for every id of :data:`envs.ENVIRONMENTS`, plus ``default``
    (the presets' defaults, for any other id)."""
    import envs

    table = {env_id: entry(env_id, variant) for env_id in envs.ENVIRONMENTS}
    table["default"] = entry("default", variant)
    return table
