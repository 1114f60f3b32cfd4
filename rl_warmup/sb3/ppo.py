"""``FastRecurrentPPO``: sb3-contrib's ``RecurrentPPO`` with the same updates and less overhead.

With a fast recurrent policy (:class:`~rl_warmup.sb3.policies.RecurrentCellPolicy` runs each
minibatch as whole sequences), most of ``RecurrentPPO.train`` is no longer the network but what
surrounds it. Profiled on CartPole-NoVel with rl-baselines3-zoo's settings (8 envs x 32 steps,
one 256-step minibatch, 20 epochs, 64 LSTM units, one thread), per update:

* ``RecurrentRolloutBuffer._get_samples`` pads every minibatch with one ``torch.tensor`` per
  sequence and per field, then ``pad_sequence`` (about 1.5 ms, as long as the LSTM's forward);
* ``torch.optim.Adam``'s default single-tensor loop (about 1 ms for the policy's tensors);
* the train loop's repeated boolean masking of padded positions and the MLP heads run on the
  padded positions that the masks then throw away.

:class:`SequenceRolloutBuffer` builds the minibatches that ``RecurrentRolloutBuffer`` builds,
value for value and from the same random numbers (one ``np.random.randint`` per ``get``, the
same split and sequence layout), but converts the rollout to tensors once per rollout and then
gathers each padded minibatch with one index (padding points to an appended row of zeros).
The sequence layout itself is recomputed per minibatch because it depends on the random split
of each epoch; it is a few vectorised numpy operations.

:class:`FastRecurrentPPO` uses that buffer (``Box`` / ``Discrete`` ... observations; ``Dict``
observations keep sb3-contrib's buffer), selects the valid (unpadded) positions once per
minibatch and computes the losses on them only: the same means over the same values as the
masked means of ``RecurrentPPO.train``, hence the same losses and gradients. When the policy has
``evaluate_actions_at`` (:class:`~rl_warmup.sb3.policies.RecurrentCellPolicy` does) the heads
run on the valid positions only, and LSTM sequences are grouped by length so that most padding
steps are skipped. Adam runs as PyTorch's fused implementation (same update rule) unless
``policy_kwargs`` choose otherwise, its kernel called directly after the first step of a
``train`` (:class:`_FusedAdamSteps`: the parameters and state of ``optimizer.step()`` bit for
bit, a third of its time), and gradients are reset by setting them to ``None`` (what
``zero_grad()`` does, without its overhead).

With the updates that fast, collecting the rollout became most of the wall time on the T-Mazes
(1-1.3 ms per vector step of 8 environments at 64 LSTM units, about as long as stock). Profiled
(``learn`` on T-Maze L = 50 and Passive T-Maze L = 500, the package's presets, one thread), about
two thirds of a step was the policy's ``forward``: besides the two cell kernels, sb3's
``Categorical`` distribution object (validation, ``logsumexp``, ``softmax``, ``multinomial``),
``RNNStates`` and reshapes around ``_process_sequence``, ``nn.Module.__getattr__`` on every
weight access; the environments themselves (``DummyVecEnv`` with its ``deepcopy`` of the info
dicts, the gymnasium wrappers, ``Monitor``) 0.04-0.14 ms per vector step, the rest sb3's loop
and buffer copies. :meth:`FastRecurrentPPO.collect_rollouts` is sb3-contrib's loop, statement for
statement in what it hands to callbacks and buffers, with the policy step replaced by
:meth:`RecurrentCellPolicy.rollout_step <rl_warmup.sb3.policies.RecurrentCellPolicy.rollout_step>`
under ``torch.inference_mode``, the buffer written directly (the same values as
``RecurrentRolloutBuffer.add``; the states, values and log-probabilities kept as tensors and
written once at the end of the rollout) and the timeout loop run over the finished environments
only. ``rollout_step`` runs the actor and the critic side by side
(:class:`~rl_warmup.sb3.fused.FusedActorCritic`: 117 µs per step instead of 365 µs at 64 LSTM
units, ``python scripts/bench_policy.py --policy-step --envs tmaze50``); its values agree with sb3-contrib's loop to rounding (1e-7) and it draws the same
actions from the same random numbers. With ``policy.fused_rollout = False`` (one
``torch.lstm_cell`` / ``torch.gru_cell`` per network and layer) the rollout buffer, callbacks'
locals, episode information, final states and the random numbers drawn are those of the parent,
bit for bit (tested). gSDE, ``Dict`` observations and policies without ``rollout_step``
(sb3-contrib's ``MlpLstmPolicy``) take the parent's loop.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Mapping
from copy import deepcopy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import (
    RecurrentDictRolloutBufferSamples,
    RecurrentRolloutBufferSamples,
    RNNStates,
)
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, make_output_format
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch.optim import optimizer as optimizer_module

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.regularizer import VAARegularizer, vaa_star_penalty
from rl_warmup.sb3.rollouts import policy_features
from rl_warmup.sb3.warmup import recurrent_networks
from rl_warmup.vaa import initial_states

__all__ = ["FastRecurrentPPO", "SequenceRolloutBuffer"]

_STATE_NAMES = ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
_FLAT_NAMES = (
    "observations",
    "actions",
    "values",
    "log_probs",
    "advantages",
    "returns",
    *_STATE_NAMES,
    "episode_starts",
)


def _clip_grad_norm(parameters: list[th.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm)`` (the same norms and scaling, bit
    for bit) in four calls instead of two per parameter: on the CPU torch takes its per-tensor
    path, about a third of the optimizer's time at recurrent PPO's minibatch sizes."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    total = th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))
    th._foreach_mul_(grads, th.clamp(max_norm / (total + 1e-6), max=1.0))


class _FusedAdamSteps:
    """``optimizer.step()`` of a fused ``torch.optim.Adam`` / ``AdamW`` over one parameter group,
    for the updates of one ``train``, with less per-step overhead: the same fused kernel
    (``torch._fused_adam_`` / ``torch._fused_adamw_``) on the same tensors with the same
    arguments, hence the same parameters and moments bit for bit (tested), in ~30 µs instead of
    ~105 µs at a 64-unit LSTM policy's 16 tensors. ``Optimizer.step`` re-reads the state and
    groups the tensors by device at every call, and increments one step counter per tensor; here
    the tensors are read once, the counters are one shared tensor (all counters are equal after
    any run of plain steps) written back into the optimizer's state by :meth:`sync`.
    :meth:`create` gives ``None`` (use ``optimizer.step()``) where that would not be exact: other
    optimizer classes or options (``amsgrad``, ``maximize``, ``capturable``, ``differentiable``,
    a tensor learning rate), several groups, pre-step hooks, state not initialised yet (the first
    step), unequal counters, mixed devices or dtypes, complex or sparse tensors. Post-step hooks
    run after each step as ``optimizer.step()`` runs them (``FusedActorCritic`` counts steps so)."""

    def __init__(self, optimizer: th.optim.Optimizer, params: list[th.Tensor]) -> None:
        self.optimizer = optimizer
        self.group = optimizer.param_groups[0]
        self.params = params
        states = [optimizer.state[p] for p in params]
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        self.steps = [s["step"] for s in states]
        self.step_count = self.steps[0].clone()
        self.shared = [self.step_count] * len(params)
        self.kernel = (
            th._fused_adamw_ if self.group.get("decoupled_weight_decay") else th._fused_adam_
        )

    @classmethod
    def create(cls, optimizer: th.optim.Optimizer) -> _FusedAdamSteps | None:
        if (
            type(optimizer) not in (th.optim.Adam, th.optim.AdamW)
            or len(optimizer.param_groups) != 1
        ):
            return None
        group = optimizer.param_groups[0]
        if not group.get("fused") or any(
            group.get(flag) for flag in ("amsgrad", "maximize", "capturable", "differentiable")
        ):
            return None
        if not isinstance(group["lr"], float) or not all(
            isinstance(b, float) for b in group["betas"]
        ):
            return None
        if (
            optimizer._optimizer_step_pre_hooks
            or optimizer_module._global_optimizer_pre_hooks
            or getattr(optimizer, "grad_scale", None) is not None
        ):
            return None
        params = list(group["params"])
        if not params or any(
            p not in optimizer.state or "exp_avg" not in optimizer.state[p] for p in params
        ):
            return None
        first = params[0]
        if any(
            p.device != first.device or p.dtype != first.dtype or p.is_complex() for p in params
        ):
            return None
        steps = [optimizer.state[p]["step"] for p in params]
        if any(s.device.type != "cpu" and s.device != first.device for s in steps):
            return None
        if len({float(s) for s in steps}) != 1:
            return None
        return cls(optimizer, params)

    def step(self) -> bool:
        """One step; ``False`` (nothing done) when a parameter has no gradient or a sparse one,
        where ``optimizer.step()`` must run instead (after :meth:`sync`)."""
        grads = [p.grad for p in self.params]
        if any(g is None or g.is_sparse for g in grads):
            return False
        group = self.group
        self.step_count.add_(1)
        self.kernel(
            self.params,
            grads,  # type: ignore[arg-type]
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.shared,
            amsgrad=False,
            lr=group["lr"],
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
        # as optimizer.step() runs them (FusedActorCritic counts the steps this way)
        for hook in (
            *optimizer_module._global_optimizer_post_hooks.values(),
            *self.optimizer._optimizer_step_post_hooks.values(),
        ):
            hook(self.optimizer, (), {})
        return True

    def sync(self) -> None:
        """Write the shared counter into every parameter's ``state["step"]``."""
        with th.no_grad():
            for s in self.steps:
                s.copy_(self.step_count)


def _with_zero_row(array: np.ndarray, axis: int = 0) -> np.ndarray:
    """``array`` with one row of zeros appended along ``axis`` (where padded positions point)."""
    shape = list(array.shape)
    shape[axis] = 1
    return np.concatenate([array, np.zeros(shape, dtype=array.dtype)], axis=axis)


def _plain(states: RNNStates) -> RNNStates:
    """``states`` as ordinary tensors (copies made outside inference mode), like the parent's."""
    return RNNStates(tuple(s.clone() for s in states.pi), tuple(s.clone() for s in states.vf))


def _write_kept(buffer: RecurrentRolloutBuffer, kept: list[tuple[th.Tensor, ...]], first: int) -> None:
    """Write the tensors that ``collect_rollouts`` kept per step into the buffer, from position ``first``.

    :param kept: per step ``(h_pi, c_pi, h_vf, c_vf, values, log_probs)``, the states each
        ``(num_layers, n_envs, hidden_size)``, values ``(n_envs, 1)``, log-probabilities ``(n_envs,)``.
    """
    if not kept:
        return
    end = first + len(kept)
    fields = (
        buffer.hidden_states_pi,
        buffer.cell_states_pi,
        buffer.hidden_states_vf,
        buffer.cell_states_vf,
        buffer.values,
        buffer.log_probs,
    )
    with th.inference_mode():
        for k, field in enumerate(fields):
            stacked = th.stack([step[k] for step in kept]).cpu().numpy()
            field[first:end] = stacked.reshape(field[first:end].shape)


class SequenceRolloutBuffer(RecurrentRolloutBuffer):
    """``RecurrentRolloutBuffer`` whose minibatches are gathered from tensors built once per rollout.

    Takes the arguments of :class:`sb3_contrib.common.recurrent.buffers.RecurrentRolloutBuffer`
    and yields the same :class:`RecurrentRolloutBufferSamples` (same values, dtypes and shapes;
    ``observations`` ``(n_seq * max_length, *obs_shape)``, the scalar fields
    ``(n_seq * max_length,)``, the states ``(num_layers, n_seq, hidden_size)``) for the same
    state of numpy's global random generator, which ``get`` draws from exactly as the parent does.
    """

    def reset(self) -> None:
        super().reset()
        self._tables: dict[str, th.Tensor] | None = None

    def _prepare(self) -> None:
        """The parent's flattening (env-major, sequence order kept), then tensors for gathering."""
        for name in _STATE_NAMES:
            self.__dict__[name] = self.__dict__[name].swapaxes(1, 2)
        for name in _FLAT_NAMES:
            self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
        self.generator_ready = True

        n = self.buffer_size * self.n_envs
        scalars = np.stack(
            [
                self.values[:, 0],
                self.log_probs[:, 0],
                self.advantages[:, 0],
                self.returns[:, 0],
                self.episode_starts[:, 0],
                np.ones(n, dtype=np.float32),  # the mask
            ]
        )
        self._tables = {
            # row n (the appended zeros) is what padded positions read
            "observations": self.to_torch(_with_zero_row(self.observations)),
            "actions": self.to_torch(_with_zero_row(self.actions)),
            "scalars": self.to_torch(_with_zero_row(scalars, axis=1)),  # (6, n + 1)
            # (4, n, num_layers, hidden_size): only sequence starts are read, no padding row
            "states": self.to_torch(np.stack([self.__dict__[name] for name in _STATE_NAMES])),
        }
        # the parent's per-epoch env_change, computed once
        env_change = np.zeros((self.buffer_size, self.n_envs))
        env_change[0, :] = 1.0
        self._env_change = self.swap_and_flatten(env_change)

    def get(  # type: ignore[override]
        self, batch_size: int | None = None
    ) -> Generator[RecurrentRolloutBufferSamples, None, None]:
        assert self.full, "Rollout buffer must be full before sampling from it"
        if not self.generator_ready:
            self._prepare()
        n = self.buffer_size * self.n_envs
        if batch_size is None:
            batch_size = n
        # RecurrentRolloutBuffer's shuffle: keep the order, split once at a random index
        split_index = np.random.randint(n)
        indices = np.concatenate((np.arange(split_index, n), np.arange(split_index)))
        start_idx = 0
        while start_idx < n:
            batch_inds = indices[start_idx : start_idx + batch_size]
            yield self._get_samples(batch_inds, self._env_change)
            start_idx += batch_size

    def _get_samples(  # type: ignore[override]
        self,
        batch_inds: np.ndarray,
        env_change: np.ndarray,
        env: VecNormalize | None = None,
    ) -> RecurrentRolloutBufferSamples:
        assert self._tables is not None
        n = self.buffer_size * self.n_envs
        size = len(batch_inds)
        # A sequence starts at an episode start, at a change of environment and at the first index.
        starts = np.logical_or(self.episode_starts[batch_inds], env_change[batch_inds]).reshape(-1)
        starts[0] = True
        seq_start = np.flatnonzero(starts)
        lengths = np.diff(seq_start, append=size)
        max_length = int(lengths.max())
        steps = np.arange(max_length)
        valid = steps < lengths[:, None]  # (n_seq, max_length)
        inside = np.minimum(seq_start[:, None] + steps, size - 1)
        rows = np.where(valid, batch_inds[inside], n).reshape(-1)  # n: the zero row
        self.seq_start_indices = seq_start  # type: ignore[assignment]  # as the parent leaves it

        device = self._tables["scalars"].device
        rows_t = th.as_tensor(rows, device=device)
        first_t = th.as_tensor(batch_inds[seq_start], device=device)
        values, log_probs, advantages, returns, episode_starts, mask = self._tables[
            "scalars"
        ].index_select(1, rows_t)
        # (4, n_seq, num_layers, hidden) -> (4, num_layers, n_seq, hidden)
        states = self._tables["states"].index_select(1, first_t).transpose(1, 2).contiguous()
        return RecurrentRolloutBufferSamples(
            observations=self._tables["observations"].index_select(0, rows_t),
            actions=self._tables["actions"].index_select(0, rows_t),
            old_values=values,
            old_log_prob=log_probs,
            advantages=advantages,
            returns=returns,
            lstm_states=RNNStates((states[0], states[1]), (states[2], states[3])),
            episode_starts=episode_starts,
            mask=mask,
        )


class FastRecurrentPPO(RecurrentPPO):
    """``RecurrentPPO`` with the same updates and less overhead per minibatch (see the module doc).

    Takes every argument of :class:`sb3_contrib.RecurrentPPO`, plus:

    :param fused_optimizer: when the policy's optimizer is ``torch.optim.Adam`` / ``AdamW`` and
        its ``optimizer_kwargs`` set neither ``fused`` nor ``foreach``, rebuild it with the same
        hyperparameters and ``fused=True`` (PyTorch's fused kernel: the same update rule; on CPU
        it gives the same parameters as the default loop, about 4x faster for these policies).

    :param vaa_regularizer: keep the actor's multistability during training: a
        :class:`~rl_warmup.regularizer.VAARegularizer` (or a dict of its fields) adds
        ``coef * mean_l (VAA*_l - target)^2`` to the loss every ``every`` minibatch updates, on
        ``n_states`` states reached over random prefixes of the rollout's episodes (drawn once per
        rollout, as data). Only the actor's recurrent parameters receive its gradient. Logged as
        ``train/vaa_reg_loss`` and ``train/vaa_reg_star``. ``None``: off (the default).

    A model saved by this class loads with ``RecurrentPPO.load`` as well (then trained by the
    stock loop) and vice versa. Early stopping on ``target_kl`` records the epoch as
    ``train/early_stop_epoch`` instead of printing it.
    """

    def __init__(
        self,
        *args: Any,
        fused_optimizer: bool = True,
        vaa_regularizer: VAARegularizer | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.fused_optimizer = fused_optimizer
        self.vaa_regularizer = VAARegularizer.from_value(vaa_regularizer)
        self._reg_minibatches = 0  # minibatch updates so far, for the regulariser's schedule
        super().__init__(*args, **kwargs)

    # -- the VAA* regulariser --------------------------------------------------------------------
    def _regularizer_generator(self) -> th.Generator:
        """Seeded from the update count, so that a resumed run draws what it would have drawn."""
        reg = self.vaa_regularizer
        assert reg is not None
        base = reg.seed if reg.seed is not None else (self.seed or 0)
        return th.Generator().manual_seed((int(base) * 1_000_003 + int(self._n_updates)) % 2**63)

    def _regularizer_states(self, network: RecurrentNetwork, generator: th.Generator) -> list[th.Tensor]:
        """States over random prefixes of this rollout's episodes (split at episode starts)."""
        reg = self.vaa_regularizer
        assert reg is not None
        buffer = self.rollout_buffer
        steps, n_envs = buffer.buffer_size, buffer.n_envs

        def time_major(array: np.ndarray) -> np.ndarray:
            """``(steps, n_envs, ...)``, also after ``get`` flattened it env-major."""
            if array.shape[0] == steps and array.shape[1] == n_envs and not buffer.generator_ready:
                return array
            return array.reshape(n_envs, steps, *array.shape[1:]).swapaxes(0, 1)

        starts = time_major(np.asarray(buffer.episode_starts)).reshape(steps, n_envs)
        observations = buffer.observations
        episodes: list[Any] = []
        for env in range(n_envs):
            cuts = [0, *np.flatnonzero(starts[1:, env] > 0.5) + 1, steps]
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    if isinstance(observations, dict):
                        episodes.append({k: time_major(v)[a:b, env] for k, v in observations.items()})
                    else:
                        episodes.append(time_major(observations)[a:b, env])
        actor_sequences, _ = policy_features(self.policy, episodes)
        device = next(network.parameters()).device
        with th.no_grad():
            states = initial_states(network, [x.to(device) for x in actor_sequences], generator, n=reg.n_states)
        return [s.detach() for s in states]

    def _regularizer_loss(
        self, network: RecurrentNetwork, states: list[th.Tensor], generator: th.Generator
    ) -> tuple[th.Tensor, float]:
        reg = self.vaa_regularizer
        assert reg is not None
        settle = int(th.randint(1, reg.settle_max + 1, (1,), generator=generator))
        penalty, stars = vaa_star_penalty(network, states, settle, reg, generator)
        return reg.coef * penalty, float(stars.detach().mean())

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        # SB3 gives a logger that writes no file an empty SB3-<date> folder in the system temp
        # directory at every learn(); a logger without a folder does the same job and leaves none.
        if not self._custom_logger and self.tensorboard_log is None:
            formats = [make_output_format("stdout", "")] if self.verbose >= 1 else []
            self.set_logger(Logger(folder=None, output_formats=formats))
        return super()._setup_learn(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        optimizer = self.policy.optimizer
        if (
            getattr(self, "fused_optimizer", False)
            and type(optimizer) in (th.optim.Adam, th.optim.AdamW)
            and len(optimizer.param_groups) == 1
            and not optimizer.defaults.get("fused")
            and optimizer.defaults.get("foreach") is None
            and th.device(self.device).type in ("cpu", "cuda")
        ):
            # the same optimizer and hyperparameters (sb3 sets eps=1e-5 for Adam), fused kernel
            defaults = {**optimizer.defaults, "fused": True, "foreach": None}
            self.policy.optimizer = type(optimizer)(self.policy.parameters(), **defaults)
        if not isinstance(self.observation_space, spaces.Dict):
            buffer = self.rollout_buffer
            assert isinstance(buffer, RecurrentRolloutBuffer)
            self.rollout_buffer = SequenceRolloutBuffer(
                buffer.buffer_size,
                buffer.observation_space,
                buffer.action_space,
                buffer.hidden_state_shape,  # type: ignore[arg-type]
                buffer.device,
                gae_lambda=buffer.gae_lambda,
                gamma=buffer.gamma,
                n_envs=buffer.n_envs,
            )

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """``RecurrentPPO.collect_rollouts`` with less work per step (see the module doc).

        The same callbacks, info buffers, timeout bootstrapping, buffer contents, final state
        (``_last_obs``, ``_last_episode_starts``, ``_last_lstm_states``, ``num_timesteps``) and
        draws from torch's random generator as the parent. Falls back to the parent for gSDE,
        ``Dict`` observations, a policy without ``rollout_step`` (e.g. sb3-contrib's
        ``MlpLstmPolicy``) or a buffer that is not a ``RecurrentRolloutBuffer`` with its ``add``.

        :param env: the training environment.
        :param callback: called at the start, at each step and at the end of the rollout.
        :param rollout_buffer: filled with ``n_rollout_steps`` steps of every environment.
        :param n_rollout_steps: steps per environment.
        :return: ``True`` when all steps were collected, ``False`` when a callback stopped it.
        """
        rollout_step = getattr(self.policy, "rollout_step", None)
        if (
            rollout_step is None
            or self.use_sde
            or isinstance(self.observation_space, spaces.Dict)
            or not isinstance(rollout_buffer, RecurrentRolloutBuffer)
            or type(rollout_buffer).add is not RecurrentRolloutBuffer.add
        ):
            return super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        assert self._last_obs is not None, "No previous observation was provided"
        self.policy.set_training_mode(False)
        fused = getattr(self.policy, "_fused", None)
        if fused:  # weights may have changed since the last rollout: read them again
            fused.invalidate()
        n_steps = 0
        rollout_buffer.reset()
        callback.on_rollout_start()
        lstm_states: RNNStates = deepcopy(self._last_lstm_states)  # type: ignore[assignment]
        box = isinstance(self.action_space, spaces.Box)
        discrete = isinstance(self.action_space, spaces.Discrete)
        discrete_obs = isinstance(self.observation_space, spaces.Discrete)
        buffer = rollout_buffer
        action_shape = (buffer.n_envs, buffer.action_dim)
        obs_shape = (buffer.n_envs, *buffer.obs_shape)
        kept: list[tuple[th.Tensor, ...]] = []  # per step: 4 states, values, log-probabilities
        first = buffer.pos

        while n_steps < n_rollout_steps:
            # inference mode: less bookkeeping per operation than no_grad, the same values
            with th.inference_mode():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                episode_starts = th.tensor(
                    self._last_episode_starts, dtype=th.float32, device=self.device
                )
                actions, values, log_probs, lstm_states = rollout_step(
                    obs_tensor, lstm_states, episode_starts
                )
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if box:
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)  # type: ignore[attr-defined]
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs

            # Give access to local variables (the names of the parent's loop)
            callback.update_locals(locals())
            if not callback.on_step():
                _write_kept(buffer, kept, first)
                self._last_lstm_states = _plain(self._last_lstm_states)  # type: ignore[arg-type,assignment]
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            if discrete:
                actions = actions.reshape(-1, 1)

            # Timeouts: bootstrap with the critic's value of the terminal observation (the
            # parent's loop, over the finished environments only)
            for idx in np.flatnonzero(dones).tolist():
                if infos[idx].get("terminal_observation") is not None and infos[idx].get(
                    "TimeLimit.truncated", False
                ):
                    terminal_obs = self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0]
                    with th.no_grad():
                        terminal_lstm_state = (
                            lstm_states.vf[0][:, idx : idx + 1, :].contiguous(),
                            lstm_states.vf[1][:, idx : idx + 1, :].contiguous(),
                        )
                        terminal_starts = th.tensor([False], dtype=th.float32, device=self.device)
                        terminal_value = self.policy.predict_values(  # type: ignore[call-arg]
                            terminal_obs,  # type: ignore[arg-type]
                            terminal_lstm_state,
                            terminal_starts,
                        )[0]
                    rewards[idx] += self.gamma * terminal_value

            # RecurrentRolloutBuffer.add: the same values written without the extra copies; the
            # tensors (states, values, log-probabilities) are kept and written at the end
            pos = buffer.pos
            kept.append((*self._last_lstm_states.pi, *self._last_lstm_states.vf, values, log_probs))  # type: ignore[union-attr]
            obs = self._last_obs
            buffer.observations[pos] = obs.reshape(obs_shape) if discrete_obs else obs  # type: ignore[union-attr]
            buffer.actions[pos] = actions.reshape(action_shape)
            buffer.rewards[pos] = rewards
            buffer.episode_starts[pos] = self._last_episode_starts
            buffer.pos += 1
            if buffer.pos == buffer.buffer_size:
                buffer.full = True

            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones
            self._last_lstm_states = lstm_states  # type: ignore[assignment]

        _write_kept(buffer, kept, first)
        with th.no_grad():
            # the value of the last observation
            episode_starts = th.tensor(dones, dtype=th.float32, device=self.device)
            values = self.policy.predict_values(  # type: ignore[call-arg]
                obs_as_tensor(new_obs, self.device),  # type: ignore[arg-type]
                lstm_states.vf,
                episode_starts,
            )
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        self._last_lstm_states = _plain(lstm_states)  # type: ignore[assignment]
        callback.on_rollout_end()
        return True

    def _evaluate(
        self,
        data: RecurrentRolloutBufferSamples | RecurrentDictRolloutBufferSamples,
        actions: th.Tensor,
        rows: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values ``(n_valid,)``, log-probabilities and entropies at the valid positions ``rows``."""
        at = getattr(self.policy, "evaluate_actions_at", None)
        if at is not None:
            values, log_prob, entropy = at(
                data.observations, actions, data.lstm_states, data.episode_starts, rows
            )
            return values.flatten(), log_prob, entropy
        values, log_prob, entropy = self.policy.evaluate_actions(  # type: ignore[call-arg]
            data.observations, actions, data.lstm_states, data.episode_starts
        )
        return (
            values.flatten().index_select(0, rows),
            log_prob.index_select(0, rows),
            None if entropy is None else entropy.index_select(0, rows),
        )

    def train(self) -> None:
        """``RecurrentPPO.train``: the same losses, on the valid positions of each minibatch."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        parameters = list(self.policy.parameters())
        discrete = isinstance(self.action_space, spaces.Discrete)

        records: list[list[float]] = []  # per minibatch: pg, value, entropy losses, clip fraction
        approx_kl_divs: list[float] = []
        continue_training = True
        loss = th.zeros(())
        reg = self.vaa_regularizer if self.vaa_regularizer is not None and self.vaa_regularizer.coef > 0 else None
        reg_records: list[list[float]] = []
        reg_states: list[th.Tensor] | None = None  # drawn at the first penalty of this rollout
        optimized = [p for group in self.policy.optimizer.param_groups for p in group["params"]]
        lean_tries = 1 if getattr(self, "fused_optimizer", False) else 0
        adam = _FusedAdamSteps.create(self.policy.optimizer) if lean_tries else None
        if reg is not None:
            reg_network = recurrent_networks(self.policy)["actor"]
            reg_generator = self._regularizer_generator()
            minibatch = self._reg_minibatches
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                assert isinstance(
                    data, RecurrentRolloutBufferSamples | RecurrentDictRolloutBufferSamples
                )
                actions = data.actions.long().flatten() if discrete else data.actions
                rows = th.nonzero(data.mask > 1e-8).squeeze(1)
                values, log_prob, entropy = self._evaluate(data, actions, rows)
                advantages = data.advantages.index_select(0, rows)
                old_log_prob = data.old_log_prob.index_select(0, rows)
                returns = data.returns.index_select(0, rows)
                if self.normalize_advantage:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - old_log_prob)
                policy_loss = -th.min(
                    advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                ).mean()
                if clip_range_vf is None:
                    values_pred = values
                else:
                    old_values = data.old_values.index_select(0, rows)
                    values_pred = old_values + th.clamp(
                        values - old_values, -clip_range_vf, clip_range_vf
                    )
                value_loss = ((returns - values_pred) ** 2).mean()
                entropy_loss = log_prob.mean() if entropy is None else -entropy.mean()
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
                if reg is not None:
                    if minibatch % reg.every == 0:
                        if reg_states is None:
                            reg_states = self._regularizer_states(reg_network, reg_generator)
                        reg_loss, reg_star = self._regularizer_loss(reg_network, reg_states, reg_generator)
                        loss = loss + reg_loss
                        reg_records.append([float(reg_loss.detach()), reg_star])
                    minibatch += 1

                with th.no_grad():
                    log_ratio = log_prob - old_log_prob
                    approx_kl = ((th.exp(log_ratio) - 1) - log_ratio).mean()
                    clip_fraction = ((ratio - 1).abs() > clip_range).float().mean()
                    *record, approx_kl_div = th.stack(
                        [policy_loss, value_loss, entropy_loss, clip_fraction, approx_kl]
                    ).tolist()
                records.append(record)
                approx_kl_divs.append(approx_kl_div)
                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    self.logger.record("train/early_stop_epoch", epoch)
                    break

                for parameter in optimized:  # optimizer.zero_grad() (set_to_none) without its overhead
                    parameter.grad = None
                loss.backward()
                _clip_grad_norm(parameters, self.max_grad_norm)
                if adam is None or not adam.step():
                    if adam is not None:
                        adam.sync()
                    self.policy.optimizer.step()
                    adam = None
                    if lean_tries:  # Adam's state exists after its first step
                        lean_tries -= 1
                        adam = _FusedAdamSteps.create(self.policy.optimizer)

            self._n_updates += 1
            if not continue_training:
                break
        if adam is not None:
            adam.sync()
        if reg is not None:
            self._reg_minibatches = minibatch  # the schedule runs across rollouts

        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        pg, value, entropy_mean, clip = np.mean(records, axis=0)
        self.logger.record("train/entropy_loss", entropy_mean)
        self.logger.record("train/policy_gradient_loss", pg)
        self.logger.record("train/value_loss", value)
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", clip)
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if reg_records:
            reg_loss_mean, reg_star_mean = np.mean(reg_records, axis=0)
            self.logger.record("train/vaa_reg_loss", reg_loss_mean)
            self.logger.record("train/vaa_reg_star", reg_star_mean)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
