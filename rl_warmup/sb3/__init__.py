"""Stable-Baselines3 / sb3-contrib integration of the package (the only part that imports SB3).

- :mod:`rl_warmup.sb3.policies`: ``RecurrentCellPolicy`` (any cell, double layers) for ``RecurrentPPO``.
- :mod:`rl_warmup.sb3.ppo`: ``FastRecurrentPPO``, ``RecurrentPPO`` with the same updates, less overhead.
- :mod:`rl_warmup.sb3.rollouts`: random-policy episodes turned into the policy's recurrent inputs.
- :mod:`rl_warmup.sb3.warmup`: ``warmup_recurrent_ppo`` and ``WarmupCallback``.
- :mod:`rl_warmup.sb3.callbacks`: ``VAALoggerCallback``.
"""

from rl_warmup.sb3.callbacks import VAALoggerCallback
from rl_warmup.sb3.policies import (
    RecurrentCellCnnPolicy,
    RecurrentCellModule,
    RecurrentCellMultiInputPolicy,
    RecurrentCellPolicy,
)
from rl_warmup.sb3.ppo import FastRecurrentPPO, SequenceRolloutBuffer
from rl_warmup.sb3.rollouts import Episodes, collect_episodes, policy_features, uniform_policy
from rl_warmup.sb3.warmup import (
    WarmupCallback,
    collect_policy_sequences,
    recurrent_networks,
    warmup_recurrent_ppo,
)

__all__ = [
    "Episodes",
    "FastRecurrentPPO",
    "RecurrentCellCnnPolicy",
    "RecurrentCellModule",
    "RecurrentCellMultiInputPolicy",
    "RecurrentCellPolicy",
    "SequenceRolloutBuffer",
    "VAALoggerCallback",
    "WarmupCallback",
    "collect_episodes",
    "collect_policy_sequences",
    "policy_features",
    "recurrent_networks",
    "uniform_policy",
    "warmup_recurrent_ppo",
]
