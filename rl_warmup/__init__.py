"""rl_warmup: warm up recurrent networks to be multistable before training.

Implements the warmup of Lambrechts, De Geeter, Vecoven, Ernst and Drion (Neural Networks 2023,
arXiv 2106.01001): a few gradient steps that maximise VAA*, a differentiable measure of the
network's reachable multistability, so that the RNN starts with many attractors.

The method (:mod:`rl_warmup.cells`, :mod:`rl_warmup.vaa`, :mod:`rl_warmup.warmup`) knows nothing
of Stable-Baselines3; the integration lives in :mod:`rl_warmup.sb3`.
"""

from rl_warmup.cells import CELL_NAMES, RecurrentNetwork, make_layer
from rl_warmup.vaa import VAACurve, VAAMeasurement, measure_vaa, measure_vaa_star, vaa_star
from rl_warmup.warmup import WarmupConfig, WarmupError, WarmupResult

# The functions ``vaa`` and ``warmup`` are not re-exported here: they would hide the submodules
# ``rl_warmup.vaa`` and ``rl_warmup.warmup`` of the same names.

__version__ = "0.1.0"

__all__ = [
    "CELL_NAMES",
    "RecurrentNetwork",
    "VAACurve",
    "VAAMeasurement",
    "WarmupConfig",
    "WarmupError",
    "WarmupResult",
    "make_layer",
    "measure_vaa",
    "measure_vaa_star",
    "vaa_star",
]
