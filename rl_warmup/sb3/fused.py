"""The actor and the critic of a :class:`~rl_warmup.sb3.policies.RecurrentCellPolicy` run side by side, for rollout steps.

A rollout step of ``RecurrentPPO`` runs tiny tensors (``n_envs`` rows, tens of units) through two
recurrent networks and two MLP heads. On a CPU each of the 25-odd tensor operations costs
microseconds of dispatch whatever its size. At 64 LSTM units and 8 environments, one thread,
:meth:`RecurrentCellPolicy.rollout_step
<rl_warmup.sb3.policies.RecurrentCellPolicy.rollout_step>` through the separate modules took
365 µs and through this class 117 µs (``python scripts/bench_policy.py --policy-step --envs
tmaze50``); each of the two ``torch.lstm_cell`` calls of the separate path was about 25 µs
(ad-hoc timing).

:class:`FusedActorCritic` stacks the actor's and the critic's weights along a leading dimension
of size 2 and runs both networks with batched matrix products (``torch.baddbmm``): one product
per weight matrix for both networks, the LSTM / GRU gate arithmetic written out once on the
``(2, n_envs, units)`` states, the MLP heads as batched products too (layers of different widths
zero-padded to the wider one), down to one product that gives the action logits and the value
for a ``Discrete`` action space. States are zeroed only at steps where some episode starts. The
arithmetic is that of the separate modules up to the order of the additions (both gate biases
are summed once, for example), so the outputs agree to rounding (about 1e-7), not bit for bit.
Actions are drawn as ``Categorical.sample`` draws them on a CPU (see :meth:`FusedActorCritic._sample`).

Putting both networks in one cell of twice the units, with block-diagonal recurrent weights,
was tried first: its product does twice the arithmetic (the zero blocks) and at 256 units it was
slower than the two separate cells.

The stacked weights are rebuilt whenever a parameter may have changed: a step of the policy's
optimizer (watched by a hook: PyTorch's fused Adam does not bump version counters), a bumped
version counter (in-place edits, ``load_state_dict``) or a new storage (``.to(device)``). They are
read without gradient, which is why :meth:`RecurrentCellPolicy.rollout_step` uses this only when
gradients are disabled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.distributions import CategoricalDistribution
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import Tensor, nn

__all__ = ["FusedActorCritic"]

#: Activation modules applied once to the stacked heads (elementwise, without parameters);
#: the plain ones by their function (no module call), the others by the module itself.
_FUNCTIONS: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu,
    nn.Tanh: torch.tanh,
    nn.Sigmoid: torch.sigmoid,
}
_ELEMENTWISE = (
    nn.ReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.SiLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.LeakyReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Softplus,
    nn.Mish,
    nn.Identity,
)


def _stack_linear(pi: nn.Linear, vf: nn.Linear) -> tuple[Tensor, Tensor]:
    """Two ``Linear`` layers -> weights ``(2, in, out)`` (transposed) and biases ``(2, 1, out)``.

    A narrower layer is zero-padded to the wider one's sizes: padded inputs meet zero weights and
    padded outputs are never read except through the next layer's zero weights.
    """
    n_in = max(pi.in_features, vf.in_features)
    n_out = max(pi.out_features, vf.out_features)
    weight = pi.weight.new_zeros(2, n_in, n_out)
    bias = pi.weight.new_zeros(2, 1, n_out)
    for k, layer in enumerate((pi, vf)):
        weight[k, : layer.in_features, : layer.out_features] = layer.weight.T
        if layer.bias is not None:
            bias[k, 0, : layer.out_features] = layer.bias
    return weight, bias


def _pair_heads(pi: nn.Module, vf: nn.Module) -> list[tuple[nn.Linear, nn.Linear] | nn.Module] | None:
    """The layers of two ``nn.Sequential`` MLPs paired one to one, or ``None`` if they do not pair.

    Layers pair when both are ``nn.Linear`` (any widths) or both the same parameter-free
    elementwise activation with the same settings.
    """
    if not (isinstance(pi, nn.Sequential) and isinstance(vf, nn.Sequential)) or len(pi) != len(vf):
        return None
    plan: list[tuple[nn.Linear, nn.Linear] | nn.Module] = []
    for a, b in zip(pi, vf, strict=True):
        if type(a) is nn.Linear and type(b) is nn.Linear:
            plan.append((a, b))
        elif (
            type(a) is type(b)
            and isinstance(a, _ELEMENTWISE)
            and a.extra_repr() == b.extra_repr()
            and not list(a.parameters())
        ):
            plan.append(a)
        else:
            return None
    return plan


class FusedActorCritic:
    """One rollout step of a policy's actor and critic, run side by side (see the module doc).

    Build it with :meth:`for_policy`, which returns ``None`` for the policies it does not cover:
    the actor and the critic must each have their own recurrent network of single LSTM or GRU
    layers (``enable_critic_lstm=True``, ``double=False``; any ``n_lstm_layers``). The MLP heads
    run stacked when the actor's and the critic's pair layer by layer (see :func:`_pair_heads`),
    otherwise as modules.

    :param policy: a :class:`~rl_warmup.sb3.policies.RecurrentCellPolicy`.
    """

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy
        actor, critic = policy.lstm_actor, policy.lstm_critic
        self.num_layers: int = actor.num_layers
        self.units: int = actor.hidden_size
        self.is_lstm: bool = bool(actor.network.layers[0].is_lstm)
        self.shared_input: bool = bool(policy.share_features_extractor)
        self._rnns = [
            (a.rnn, b.rnn) for a, b in zip(actor.network.layers, critic.network.layers, strict=True)
        ]
        space = policy.observation_space
        # Box observations through a FlattenExtractor: the features are obs.float().flatten(1)
        self._flatten_obs = (
            self.shared_input
            and type(policy.features_extractor) is FlattenExtractor
            and isinstance(space, spaces.Box)
            and not is_image_space(space)
        )
        self._categorical = isinstance(policy.action_dist, CategoricalDistribution)
        mlp = policy.mlp_extractor
        self._heads = _pair_heads(mlp.policy_net, mlp.value_net)
        # widths of the heads' outputs (latent_dim_pi / latent_dim_vf)
        self._latent = (mlp.latent_dim_pi, mlp.latent_dim_vf)
        # one last product for [action logits | value] (Discrete actions, plain Linear heads)
        self._fused_output = (
            self._heads is not None
            and self._categorical
            and type(policy.action_net) is nn.Linear
            and type(policy.value_net) is nn.Linear
        )
        params: list[Tensor] = []
        for a, b in self._rnns:
            params += [*a._parameters.values(), *b._parameters.values()]
        for layer in self._heads or []:
            if isinstance(layer, tuple):
                params += [*layer[0]._parameters.values(), *layer[1]._parameters.values()]
        if self._fused_output:
            params += [*policy.action_net._parameters.values(), *policy.value_net._parameters.values()]
        self._params = [p for p in params if p is not None]
        self._key: list[tuple[int, int]] | None = None
        self._optimizer_steps = 0  # steps of the policy's optimizer (see _watch_optimizer)
        self._watched: torch.optim.Optimizer | None = None
        self._hook: Any = None
        self._cells: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
        self._layers: list[tuple[Tensor, Tensor] | Callable[[Tensor], Tensor]] = []
        self._output: tuple[Tensor, Tensor] | None = None
        self._returned: RNNStates | None = None
        self._states: tuple[list[Tensor], list[Tensor]] = ([], [])
        self._zeros: Tensor | None = None

    @classmethod
    def for_policy(cls, policy: nn.Module) -> FusedActorCritic | None:
        """A :class:`FusedActorCritic` for ``policy``, or ``None`` when it does not apply."""
        actor = getattr(policy, "lstm_actor", None)
        critic = getattr(policy, "lstm_critic", None)
        if actor is None or critic is None or getattr(policy, "shared_lstm", True):
            return None
        if not (getattr(actor, "_direct", False) and getattr(critic, "_direct", False)):
            return None
        layers = [*actor.network.layers, *critic.network.layers]
        if actor.num_layers != critic.num_layers or actor.hidden_size != critic.hidden_size:
            return None
        for layer in layers:
            rnn = layer.rnn
            if (
                layer.is_lstm != layers[0].is_lstm
                or rnn.num_layers != 1
                or rnn.bidirectional
                or not rnn.bias
                or getattr(rnn, "proj_size", 0)
            ):
                return None
        return cls(policy)

    # -- stacked weights -------------------------------------------------------------------
    def invalidate(self) -> None:
        """Rebuild the stacked weights at the next step.

        Changes are detected by themselves (see :meth:`_current`); call this after changing the
        weights in a way that neither bumps their version counters nor goes through the
        policy's ``optimizer`` (another fused optimiser, for example).
        """
        self._key = None

    def _watch_optimizer(self) -> None:
        """Count the steps of the policy's current optimizer.

        PyTorch's fused Adam (``fused=True``, which :class:`~rl_warmup.sb3.ppo.FastRecurrentPPO`
        uses) updates the parameters without bumping their version counters.
        """
        optimizer = getattr(self.policy, "optimizer", None)
        if optimizer is self._watched:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if isinstance(optimizer, torch.optim.Optimizer):
            self._hook = optimizer.register_step_post_hook(self._count_step)
        self._watched = optimizer
        self._key = None

    def _count_step(self, *args: Any) -> None:
        self._optimizer_steps += 1

    def _current(self) -> None:
        """Rebuild the stacked weights if any parameter changed since they were built.

        A change is a step of the policy's optimizer, a bumped version counter (in-place
        operations, ``load_state_dict``) or a new storage (``.to(device)``).
        """
        self._watch_optimizer()
        key = [(self._optimizer_steps, 0), *((p._version, p.data_ptr()) for p in self._params)]
        if key == self._key:
            return
        units = self.units
        with torch.no_grad():
            self._cells = []
            for a, b in self._rnns:
                pa, pb = a._parameters, b._parameters
                w_ih = torch.stack([pa["weight_ih_l0"], pb["weight_ih_l0"]])  # (2, G*H, in)
                w_hh = torch.stack([pa["weight_hh_l0"], pb["weight_hh_l0"]])
                b_ih = torch.stack([pa["bias_ih_l0"], pb["bias_ih_l0"]])[:, None]  # (2, 1, G*H)
                b_hh = torch.stack([pa["bias_hh_l0"], pb["bias_hh_l0"]])[:, None]
                if self.is_lstm:
                    # gates i, f, g, o -> i, f, o, g: the three sigmoid gates side by side;
                    # both biases summed once
                    order = torch.cat(
                        [torch.arange(2 * units), torch.arange(3 * units, 4 * units),
                         torch.arange(2 * units, 3 * units)]
                    ).to(w_ih.device)
                    w_ih, w_hh = w_ih[:, order], w_hh[:, order]
                    b_ih, b_hh = (b_ih + b_hh)[..., order], b_hh.new_zeros(0)
                self._cells.append(
                    (w_ih.transpose(1, 2).contiguous(), w_hh.transpose(1, 2).contiguous(), b_ih, b_hh)
                )
            self._layers = [
                _stack_linear(*layer)
                if isinstance(layer, tuple)
                else _FUNCTIONS.get(type(layer), layer)
                for layer in self._heads or []
            ]
            self._output = (
                _stack_linear(self.policy.action_net, self.policy.value_net)
                if self._fused_output
                else None
            )
        self._key = key

    # -- one step --------------------------------------------------------------------------
    def _inputs(self, obs: Tensor) -> Tensor:
        """The recurrent networks' inputs ``(2, n_envs, features)``: actor's, critic's."""
        if self._flatten_obs:
            features = obs.float().flatten(1)
        else:
            features, vf_features = self.policy._actor_critic_features(obs)
            if vf_features is not features:
                return torch.stack([features, vf_features])
        return features.expand(2, *features.shape)

    def _stacked(self, states: RNNStates) -> tuple[list[Tensor], list[Tensor]]:
        """Per layer ``(2, n_envs, units)`` states (actor, critic) from ``RNNStates``."""
        if states is self._returned:
            return self._states
        hs = [torch.stack([states.pi[0][i], states.vf[0][i]]) for i in range(self.num_layers)]
        if not self.is_lstm:
            return hs, []
        cs = [torch.stack([states.pi[1][i], states.vf[1][i]]) for i in range(self.num_layers)]
        return hs, cs

    def step(
        self, obs: Tensor, lstm_states: RNNStates, episode_starts: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, RNNStates]:
        """The computation of :meth:`RecurrentCellPolicy.rollout_step <rl_warmup.sb3.policies.RecurrentCellPolicy.rollout_step>`.

        :param obs: ``(n_envs, *obs_shape)`` observations.
        :param lstm_states: states before the step, each ``(num_layers, n_envs, hidden_size)``;
            when it is the object that the previous call returned, the stacked states kept from
            that call are used as they are.
        :param episode_starts: ``(n_envs,)``, 1 where an episode starts at this step.
        :return: actions ``(n_envs, *action_shape)``, values ``(n_envs, 1)``, log-probabilities
            ``(n_envs,)`` and the states after the step (views of the stacked states).
        """
        self._current()
        hs, cs = self._stacked(lstm_states)
        if bool(episode_starts.any()):
            keep = (1.0 - episode_starts).to(hs[0].dtype)[:, None]  # (n_envs, 1)
            hs = [h * keep for h in hs]
            cs = [c * keep for c in cs]
        x = self._inputs(obs)
        units = self.units
        new_h: list[Tensor] = []
        new_c: list[Tensor] = []
        for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(self._cells):
            if self.is_lstm:
                gates = torch.baddbmm(b_ih, x, w_ih).baddbmm_(hs[i], w_hh)
                input_gate, forget_gate, output_gate = gates[..., : 3 * units].sigmoid().chunk(3, -1)
                c = torch.addcmul(forget_gate * cs[i], input_gate, gates[..., 3 * units :].tanh())
                x = output_gate * c.tanh()
                new_c.append(c)
            else:  # GRU: r, z, n
                gi = torch.baddbmm(b_ih, x, w_ih)
                gh = torch.baddbmm(b_hh, hs[i], w_hh)
                reset, update = (gi[..., : 2 * units] + gh[..., : 2 * units]).sigmoid().chunk(2, -1)
                candidate = torch.addcmul(gi[..., 2 * units :], reset, gh[..., 2 * units :]).tanh()
                x = torch.lerp(candidate, hs[i], update)
            new_h.append(x)
        states = self._views(new_h, new_c)
        self._returned, self._states = states, (new_h, new_c)

        policy = self.policy
        if self._heads is None:
            latent_pi = policy.mlp_extractor.forward_actor(x[0])
            latent_vf = policy.mlp_extractor.forward_critic(x[1])
        else:
            for layer in self._layers:
                x = torch.baddbmm(layer[1], x, layer[0]) if isinstance(layer, tuple) else layer(x)
            if self._output is not None:
                out = torch.baddbmm(self._output[1], x, self._output[0])
                return self._sample(out[0, :, : policy.action_space.n], out[1, :, :1], states)
            latent_pi, latent_vf = x[0, :, : self._latent[0]], x[1, :, : self._latent[1]]
        values = policy.value_net(latent_vf)
        if self._categorical:
            return self._sample(policy.action_net(latent_pi), values, states)
        distribution = policy._get_action_dist_from_latent(latent_pi)
        actions = distribution.get_actions(deterministic=False)
        log_prob = distribution.log_prob(actions)
        actions = actions.reshape((-1, *policy.action_space.shape))
        return actions, values, log_prob, states

    @staticmethod
    def _sample(
        logits: Tensor, values: Tensor, states: RNNStates
    ) -> tuple[Tensor, Tensor, Tensor, RNNStates]:
        """Draw one action per row from ``softmax(logits)``; its log-probability from ``log_softmax``.

        The draw is ``argmax(p / e)`` with ``e`` exponential noise from torch's global generator
        (the exponential race, an exact sample of the categorical distribution). This is how
        ``torch.multinomial(p, 1, replacement=True)`` (``Categorical.sample``) draws on a CPU,
        so the actions and the generator's state match sb3's for the same seed there, without
        ``multinomial``'s checks (3x less time per call).
        """
        probs = torch.softmax(logits, dim=-1)
        actions = (probs / torch.empty_like(probs).exponential_()).argmax(dim=-1, keepdim=True)
        log_prob = torch.log_softmax(logits, dim=-1).gather(-1, actions).squeeze(-1)
        return actions.reshape(-1), values, log_prob, states

    def _views(self, hs: list[Tensor], cs: list[Tensor]) -> RNNStates:
        """``RNNStates`` of the stacked states: ``(num_layers, n_envs, units)`` views, actor's and critic's."""
        h = hs[0] if len(hs) == 1 else torch.stack(hs, dim=1)  # (2, [L,] n, H)
        if len(hs) == 1:
            h_pi, h_vf = h[0:1], h[1:2]
        else:
            h_pi, h_vf = h[0], h[1]
        if cs:
            c = cs[0] if len(cs) == 1 else torch.stack(cs, dim=1)
            c_pi, c_vf = (c[0:1], c[1:2]) if len(cs) == 1 else (c[0], c[1])
            return RNNStates((h_pi, c_pi), (h_vf, c_vf))
        # GRU: the c slots hold zeros (RecurrentCellModule's storage layout)
        if self._zeros is None or self._zeros.shape != h_pi.shape or self._zeros.device != h.device:
            self._zeros = h.new_zeros(h_pi.shape)
        return RNNStates((h_pi, self._zeros), (h_vf, self._zeros))
