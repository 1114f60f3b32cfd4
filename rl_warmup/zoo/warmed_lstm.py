"""rl-baselines3-zoo hyperparameters, variant ``warmed_lstm`` (see :mod:`rl_warmup.zoo`):
``python -m rl_zoo3.train --algo ppo_lstm --env <id> --gym-packages envs --conf-file rl_warmup.zoo.warmed_lstm``."""

from rl_warmup.zoo import zoo_hyperparams

hyperparams = zoo_hyperparams("warmed_lstm")
