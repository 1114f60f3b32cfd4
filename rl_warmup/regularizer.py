"""Keep multistability during training: an auxiliary VAA* loss (beyond the paper).

Warmup sets many attractors before training; training can destroy them (the project's logs:
warmed GRUs at L = 50 keep an exact VAA of 0.24 of the 0.67 they started with). The regulariser
adds ``coef * mean_l (VAA*_l - target)^2`` to the training loss, each layer's VAA* computed as
in the warmup (:func:`rl_warmup.vaa.layer_vaa_stars`) from states reached on the current data,
so that the gradient keeps pulling the network toward multistability while it learns the task.

Framework-free: :func:`vaa_star_penalty` takes a network and initial states. The SB3 adapter is
``FastRecurrentPPO(..., vaa_regularizer=VAARegularizer(...))`` (:mod:`rl_warmup.sb3.ppo`), which
takes the states from random prefixes of the rollout's episodes once per rollout.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.vaa import VIEWS, layer_vaa_stars


@dataclass(frozen=True)
class VAARegularizer:
    """Settings of the VAA* regulariser.

    :param coef: ``λ``, weight of the penalty in the training loss (0 turns it off).
    :param target: ``k``, the VAA* each layer is pulled toward (the warmup's target).
    :param every: minibatch updates between two penalties (1: every update), counted across
        rollouts. The default, 8, keeps the cost under 10 % of training time on the package's
        presets (``scripts/bench_regularizer.py``).
    :param settle_max: each penalty settles for ``M ~ U{1..settle_max}`` steps (the warmup's
        steady state).
    :param n_states: initial states per penalty (the warmup's batch size).
    :param epsilon: VAA*'s tolerance.
    :param state_view: ``"state"`` (the paper's: ``h`` and ``c`` of an LSTM) or ``"output"``.
    :param perturbations: perturbations averaged per penalty (``WarmupConfig.perturbations``).
    :param seed: seed of the draws (``M``, prefixes, perturbations); the model's seed when ``None``.
    """

    coef: float = 0.1
    target: float = 0.95
    every: int = 8
    settle_max: int = 200
    n_states: int = 32
    epsilon: float = 1e-4
    state_view: str = "state"
    perturbations: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("every", "settle_max", "n_states", "perturbations"):
            value = getattr(self, name)
            if isinstance(value, bool) or operator.index(value) < 1:
                raise ValueError(f"VAARegularizer.{name} must be an integer >= 1, got {value!r}")
        if self.n_states < 2:
            raise ValueError(f"VAARegularizer.n_states must be >= 2, got {self.n_states}")
        if not self.coef >= 0:
            raise ValueError(f"VAARegularizer.coef must be >= 0, got {self.coef}")
        if not 0 < self.target <= 1:
            raise ValueError(f"VAARegularizer.target must lie in (0, 1], got {self.target}")
        if not self.epsilon > 0:
            raise ValueError(f"VAARegularizer.epsilon must be > 0, got {self.epsilon}")
        if self.state_view not in VIEWS:
            raise ValueError(f"VAARegularizer.state_view must be one of {', '.join(VIEWS)}, got {self.state_view!r}")

    @classmethod
    def from_value(cls, value: VAARegularizer | Mapping[str, Any] | None) -> VAARegularizer | None:
        """``None``, a :class:`VAARegularizer`, or a dict of its fields (checked here)."""
        if value is None or isinstance(value, VAARegularizer):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"unknown VAARegularizer field(s) {sorted(unknown)}")
            return cls(**value)
        raise TypeError(f"vaa_regularizer must be a VAARegularizer or a dict of its fields, got {type(value).__name__}")

    @classmethod
    def from_reg_fields(cls, config: Any, epsilon: float, seed: int | None) -> VAARegularizer | None:
        """The regulariser of a run config's ``reg_coef``, ``reg_target``, ``reg_every``,
        ``reg_settle_max`` and ``reg_n_states`` fields (``TrainConfig``, ``SupervisedConfig``);
        ``None`` when ``reg_coef`` is 0. The fields are checked either way."""
        reg = cls(
            coef=config.reg_coef,
            target=config.reg_target,
            every=config.reg_every,
            settle_max=config.reg_settle_max,
            n_states=config.reg_n_states,
            epsilon=epsilon,
            seed=seed,
        )
        return reg if reg.coef > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vaa_star_penalty(
    network: RecurrentNetwork,
    states: Sequence[Tensor],
    settle_steps: int,
    config: VAARegularizer,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``(mean_l (VAA*_l - target)^2, VAA*_l)``: the penalty (not yet multiplied by ``coef``)
    and each layer's VAA*, differentiable with respect to the network's warmable parameters.

    :param states: one ``(n, state_size_l)`` initial state per layer; treated as data (detached).
    """
    detached = [s.detach() for s in states]
    stars = layer_vaa_stars(
        network,
        detached,
        settle_steps,
        config.epsilon,
        generator,
        view=config.state_view,
        perturbations=config.perturbations,
    )
    return ((stars - config.target) ** 2).mean(), stars
