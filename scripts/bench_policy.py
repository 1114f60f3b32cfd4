"""Training speed of RecurrentPPO: sb3-contrib's ``MlpLstmPolicy`` against ``RecurrentCellPolicy``.

Every configuration runs in this one process, interleaved rollout by rollout, with the same
hyperparameters for stock and the package's policy. On CartPole without velocities those are
rl-baselines3-zoo's CartPoleNoVel settings; on the T-Maze (L = 50) and the Passive T-Maze
(L = 500) they are the package's presets (``rl_warmup/experiment/presets.yaml``: ``n_steps``
covering an episode, one minibatch per rollout, 4 epochs). For each it prints environment steps
per second, how the wall time splits between rollout collection and training (the PPO updates),
and the speed-up over stock at the same hidden size.

Examples::

    python scripts/bench_policy.py                       # a few minutes (2048 steps each)
    python scripts/bench_policy.py --timesteps 20000 --hidden 64 128 256 --cells lstm gru mgu
    python scripts/bench_policy.py --envs cartpole tmaze50 passive500   # the issue's table
    python scripts/bench_policy.py --parity --seeds 0 1 2   # learning parity, 1e5 steps per run (long)
    python scripts/bench_policy.py --parity-track 40 --seeds 0 1 2   # same start: same actions until?
    python scripts/bench_policy.py --parity-updates 25 --seeds 0   # same weights and buffer: same update?
    python scripts/bench_policy.py --policy-step --envs tmaze50   # one rollout step of the policy (us)
    python scripts/bench_policy.py --gru-sequence --hidden 64   # GRU forward + backward, both backwards

``--parity`` instead trains stock and the package's LSTM policy with the zoo settings for
``--parity-timesteps`` steps per seed and prints the final mean return of each (mean over the
last 100 training episodes); ``--parity-matched`` starts the package's policy from stock's
initial weights, with the same random numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from rl_warmup import gru_ext
from rl_warmup.cells import gru_path, run_gru, run_lstm
from rl_warmup.sb3.policies import RecurrentCellPolicy
from rl_warmup.sb3.ppo import FastRecurrentPPO

ENV_ID = "rl_warmup/CartPoleNoVel-v0"
GRU_PATHS = {"python": "python", "autograd": "autograd", "onednn": "python"}
"""Suffixes of a ``--cells`` name (``gru-python``, ``gru-autograd``, ``lstm-onednn``) and the
:func:`rl_warmup.cells.gru_path` they select instead of the default compiled kernel: the GRU's
hand-written backward in Python or autograd through ``nn.GRU``; for the LSTM, oneDNN's kernel
with minibatch sequences grouped by length (what ``RL_WARMUP_LSTM_EXT=0`` gives); to time them
side by side."""


def _split_cell(cell: str) -> tuple[str, str]:
    """``"gru-python"`` -> ``("gru", "python")``, ``"lstm-onednn"`` -> ``("lstm", "python")``; a
    name without a path suffix takes ``"compiled"``."""
    base, _, suffix = cell.rpartition("-")
    return (base, GRU_PATHS[suffix]) if base and suffix in GRU_PATHS else (cell, "compiled")


class _MaskVelocity(gym.ObservationWrapper):
    """CartPole without velocities: keeps cart position and pole angle (only used without ``envs``)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        low, high = env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]]
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]].astype(np.float32)


def _env_factory() -> tuple[str, Callable[[], gym.Env] | str]:
    try:
        import envs  # noqa: F401  (registers rl_warmup/ ids)

        return ENV_ID, ENV_ID
    except ImportError:
        return "CartPole-v1 (velocities masked here)", lambda: _MaskVelocity(
            gym.make("CartPole-v1")
        )


@dataclasses.dataclass(frozen=True)
class Hyper:
    """rl-baselines3-zoo's RecurrentPPO settings for CartPoleNoVel-v1."""

    n_envs: int = 8
    """Parallel environments."""
    n_steps: int = 32
    """Steps per environment per rollout."""
    batch_size: int = 256
    """Minibatch size (in transitions)."""
    gamma: float = 0.98
    """Discount."""
    gae_lambda: float = 0.8
    """GAE lambda."""
    n_epochs: int = 20
    """Passes over each rollout."""
    learning_rate: float = 1e-3
    """Initial learning rate (linearly decayed to 0)."""
    clip_range: float = 0.2
    """Initial clip range (linearly decayed to 0)."""
    ent_coef: float = 0.0
    """Entropy coefficient."""
    normalize: bool = True
    """VecNormalize the observations and rewards."""
    env_id: str = ENV_ID
    """Environment."""
    linear_schedules: bool = True
    """Learning rate and clip range decay linearly to 0 (zoo); constant otherwise."""


#: The environments of ``--envs``: zoo settings on CartPole-NoVel, the package's presets on the
#: T-Mazes (n_steps a multiple of the episode length, one minibatch per rollout).
BENCH_ENVS: dict[str, Hyper] = {
    "cartpole": Hyper(),
    "tmaze50": Hyper(
        env_id="rl_warmup/TMaze-L50-v0",
        n_steps=300,
        batch_size=2400,
        n_epochs=4,
        gamma=0.98,
        gae_lambda=0.95,
        ent_coef=0.01,
        normalize=False,
        linear_schedules=False,
    ),
    "passive500": Hyper(
        env_id="rl_warmup/PassiveTMaze-L500-v0",
        n_steps=1002,
        batch_size=8016,
        n_epochs=4,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.01,
        normalize=False,
        linear_schedules=False,
    ),
}


def _make_model(
    cell: str | None, hidden: int, hyper: Hyper, seed: int, fast: bool = True
) -> RecurrentPPO:
    """Stock ``RecurrentPPO("MlpLstmPolicy")`` when ``cell`` is ``None``, else ``RecurrentCellPolicy``
    with that cell, trained by ``FastRecurrentPPO`` (``fast``) or by sb3-contrib's ``RecurrentPPO``."""
    env_fn: Callable[[], gym.Env] | str = hyper.env_id
    if hyper.env_id == ENV_ID:
        _, env_fn = _env_factory()
    else:
        import envs  # noqa: F401  (registers rl_warmup/ ids)
    env: VecEnv = make_vec_env(env_fn, n_envs=hyper.n_envs, seed=seed)
    if hyper.normalize:
        env = VecNormalize(env)
    policy_kwargs: dict[str, Any] = {
        "lstm_hidden_size": hidden,
        "net_arch": {"pi": [64], "vf": [64]},
        "activation_fn": nn.ReLU,
        "ortho_init": False,
        "enable_critic_lstm": True,
    }
    policy_class: Any = "MlpLstmPolicy"
    algorithm: type[RecurrentPPO] = RecurrentPPO
    if cell is not None:
        policy_class = RecurrentCellPolicy
        policy_kwargs["cell"] = _split_cell(cell)[0]
        if fast:
            algorithm = FastRecurrentPPO
    model = algorithm(
        policy_class,
        env,
        n_steps=hyper.n_steps,
        batch_size=hyper.batch_size,
        gamma=hyper.gamma,
        gae_lambda=hyper.gae_lambda,
        n_epochs=hyper.n_epochs,
        learning_rate=(
            LinearSchedule(hyper.learning_rate, 0.0, 1.0)
            if hyper.linear_schedules
            else hyper.learning_rate
        ),
        clip_range=(
            LinearSchedule(hyper.clip_range, 0.0, 1.0)
            if hyper.linear_schedules
            else hyper.clip_range
        ),
        ent_coef=hyper.ent_coef,
        policy_kwargs=policy_kwargs,
        seed=seed,
        verbose=0,
    )
    model.set_logger(Logger(None, []))  # no SB3-<date> folder in the temp directory
    return model


@dataclasses.dataclass
class Timing:
    """Wall time of one configuration: total, in rollout collection and in PPO updates."""

    name: str
    env: str
    hidden: int
    steps: int
    total_s: float
    rollout_s: float
    train_s: float
    cpu_s: float = float("nan")
    """CPU time of this process's thread while it trained (no waiting for a core: next to other
    jobs this varies less than the wall time)."""

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.total_s


class _PhaseTimer:
    """Accumulates the time a model spends in ``collect_rollouts`` and in ``train``."""

    def __init__(self, model: RecurrentPPO) -> None:
        self.rollout_s = 0.0
        self.train_s = 0.0
        collect, train = model.collect_rollouts, model.train

        def timed_collect(*args: Any, **kwargs: Any) -> bool:
            start = time.perf_counter()
            try:
                return collect(*args, **kwargs)
            finally:
                self.rollout_s += time.perf_counter() - start

        def timed_train() -> None:
            start = time.perf_counter()
            try:
                train()
            finally:
                self.train_s += time.perf_counter() - start

        model.collect_rollouts = timed_collect  # type: ignore[method-assign]
        model.train = timed_train  # type: ignore[method-assign]


def _name(cell: str | None, fast: bool = True) -> str:
    if cell is None:
        return "stock MlpLstmPolicy"
    return f"ours {cell} ({'FastRecurrentPPO' if fast else 'RecurrentPPO'})"


def _configs(cells: list[str], loops: list[str]) -> list[tuple[str | None, bool]]:
    """Stock first, then every cell with every training loop (``fast``: FastRecurrentPPO)."""
    return [(None, False)] + [(cell, loop == "fast") for cell in cells for loop in loops]


def benchmark(
    cells: list[str],
    hiddens: list[int],
    timesteps: int,
    hyper: Hyper,
    seed: int,
    warmup_steps: int,
    loops: list[str] = ["fast"],  # noqa: B006
) -> list[Timing]:
    """Time every configuration, interleaved: in each round every model learns one rollout's worth
    of steps in turn, so that a load change on the machine hits all of them alike."""
    rows = []
    chunk = hyper.n_envs * hyper.n_steps
    rounds = max(1, timesteps // chunk)
    for hidden in hiddens:
        configs = _configs(cells, loops)
        models = [_make_model(cell, hidden, hyper, seed, fast) for cell, fast in configs]
        for model in models:  # untimed: the first iterations pay one-off costs
            model.learn(max(warmup_steps, 1))
        timers = [_PhaseTimer(model) for model in models]
        totals = [0.0] * len(models)
        cpu = [0.0] * len(models)
        steps = [model.num_timesteps for model in models]
        for _ in range(rounds):
            for i, model in enumerate(models):
                cell = configs[i][0]
                start, start_cpu = time.perf_counter(), time.thread_time()
                with gru_path(_split_cell(cell)[1]) if cell else contextlib.nullcontext():
                    model.learn(chunk, reset_num_timesteps=False)
                totals[i] += time.perf_counter() - start
                cpu[i] += time.thread_time() - start_cpu
        for (cell, fast), model, timer, total, before, cpu_s in zip(
            configs, models, timers, totals, steps, cpu, strict=True
        ):
            rows.append(
                Timing(
                    _name(cell, fast),
                    hyper.env_id.removeprefix("rl_warmup/"),
                    hidden,
                    model.num_timesteps - before,
                    total,
                    timer.rollout_s,
                    timer.train_s,
                    cpu_s,
                )
            )
    return rows


def print_table(rows: list[Timing]) -> None:
    stock = {(r.env, r.hidden): r for r in rows if r.name.startswith("stock")}
    header = (
        f"{'environment':<20} {'policy':<36} {'hidden':>6} {'steps':>7} {'steps/s':>9} {'speed-up':>8} "
        f"{'rollout s':>9} {'train s':>8} {'train %':>7} {'CPU s':>7} {'CPU speed-up':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = stock.get((r.env, r.hidden))
        speedup = f"{r.steps_per_s / ref.steps_per_s:.2f}x" if ref else "-"
        # the same ratio in CPU time per step (steps differ by at most a rollout)
        cpu_speedup = f"{(ref.cpu_s / ref.steps) / (r.cpu_s / r.steps):.2f}x" if ref else "-"
        print(
            f"{r.env:<20} {r.name:<36} {r.hidden:>6} {r.steps:>7} {r.steps_per_s:>9.0f} {speedup:>8} "
            f"{r.rollout_s:>9.2f} {r.train_s:>8.2f} {100 * r.train_s / r.total_s:>6.0f}% {r.cpu_s:>7.2f} {cpu_speedup:>12}"
        )


def breakdown(
    cells: list[str],
    hiddens: list[int],
    hyper: Hyper,
    seed: int,
    repeats: int = 5,
    loops: list[str] = ["fast"],  # noqa: B006
) -> None:
    """Where one PPO update's time goes (ms per minibatch), after a short training run.

    ``sample``: the rollout buffer building the padded minibatch (sb3-contrib's
    ``RecurrentRolloutBuffer``, or ``SequenceRolloutBuffer`` under ``FastRecurrentPPO``);
    ``forward``: the policy's evaluation (``evaluate_actions``, or ``FastRecurrentPPO``'s on the
    valid positions) and a simplified loss; ``backward``; ``optimizer``: gradient clipping and
    the model's Adam; ``rollout step``: one ``collect_rollouts`` step (``n_envs`` env steps).
    """
    from stable_baselines3.common.callbacks import CallbackList

    parts = ("sample", "forward", "backward", "optimizer")
    print(
        f"{'policy':<36} {'hidden':>6} "
        + " ".join(f"{p:>9}" for p in parts)
        + f" {'update':>8} {'rollout step':>12}"
    )
    for hidden in hiddens:
        for cell, fast in _configs(cells, loops):
            name = _name(cell, fast)
            model = _make_model(cell, hidden, hyper, seed, fast)
            model.learn(2 * hyper.n_envs * hyper.n_steps)
            callback = CallbackList([])
            callback.init_callback(model)
            best = dict.fromkeys((*parts, "rollout"), float("inf"))
            for _ in range(repeats):
                start = time.perf_counter()
                model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)  # type: ignore[arg-type]
                best["rollout"] = min(
                    best["rollout"], (time.perf_counter() - start) / model.n_steps
                )
                spent = dict.fromkeys(parts, 0.0)
                n = 0
                t0 = time.perf_counter()
                for data in model.rollout_buffer.get(hyper.batch_size):
                    t1 = time.perf_counter()
                    actions = data.actions.long().flatten()  # CartPole: Discrete
                    if isinstance(model, FastRecurrentPPO):
                        rows = torch.nonzero(data.mask > 1e-8).squeeze(1)
                        values, log_prob, entropy = model._evaluate(data, actions, rows)
                        loss = (
                            ((values - data.returns[rows]) ** 2).mean()
                            - (log_prob * data.advantages[rows]).mean()
                            - entropy.mean()  # type: ignore[union-attr]
                        )
                    else:
                        values, log_prob, entropy = model.policy.evaluate_actions(
                            data.observations, actions, data.lstm_states, data.episode_starts
                        )
                        mask = data.mask > 1e-8
                        loss = ((values.flatten() - data.returns) ** 2)[mask].mean() - (
                            log_prob * data.advantages
                        )[mask].mean()
                        loss = loss - entropy[mask].mean()
                    t2 = time.perf_counter()
                    model.policy.optimizer.zero_grad()
                    loss.backward()
                    t3 = time.perf_counter()
                    torch.nn.utils.clip_grad_norm_(model.policy.parameters(), model.max_grad_norm)
                    model.policy.optimizer.step()
                    t4 = time.perf_counter()
                    spent["sample"] += t1 - t0
                    spent["forward"] += t2 - t1
                    spent["backward"] += t3 - t2
                    spent["optimizer"] += t4 - t3
                    n += 1
                    t0 = time.perf_counter()
                for p in parts:
                    best[p] = min(best[p], spent[p] / n)
            update = sum(best[p] for p in parts)
            print(
                f"{name:<30} {hidden:>6} "
                + " ".join(f"{1e3 * best[p]:>9.2f}" for p in parts)
                + f" {1e3 * update:>8.2f} {1e3 * best['rollout']:>12.2f}"
            )


def policy_step(cells: list[str], hiddens: list[int], hyper: Hyper, seed: int, steps: int = 2000) -> None:
    """Microseconds per rollout step of the policy alone (``n_envs`` observations, no environment).

    Stock: ``MlpLstmPolicy.forward`` (what sb3-contrib's loop calls); ours: ``rollout_step`` with
    the actor and the critic as separate modules (``fused_rollout = False``) and side by side
    (``FusedActorCritic``). Best of 3 repeats of ``steps`` steps, under ``torch.inference_mode``,
    each step fed the states the previous one returned.
    """
    print(f"{'policy':<36} {'hidden':>6} {'us/step':>8}")
    for hidden in hiddens:
        for cell, fused in [(None, False)] + [(c, f) for c in cells for f in (False, True)]:
            model = _make_model(cell, hidden, hyper, seed)
            model.learn(hyper.n_envs * hyper.n_steps)  # a real state of the model, weights updated
            policy = model.policy
            obs = torch.as_tensor(model.env.reset(), device=policy.device)  # type: ignore[arg-type]
            starts = torch.zeros(hyper.n_envs, device=policy.device)
            if cell is None:
                name = "stock MlpLstmPolicy (forward)"
                step = policy.forward
            else:
                name = f"ours {cell} rollout_step ({'fused' if fused else 'separate'})"
                policy.fused_rollout = fused
                step = policy.rollout_step
            best = float("inf")
            with torch.inference_mode():
                for _ in range(3):
                    states = model._last_lstm_states
                    start = time.perf_counter()
                    for _ in range(steps):
                        *_, states = step(obs, states, starts)
                    best = min(best, (time.perf_counter() - start) / steps)
            print(f"{name:<36} {hidden:>6} {1e6 * best:>8.1f}")


def _minibatch_times(batch: int, steps: int, hidden: int, rounds: int, repeats: int) -> list[list[float]]:
    """ms per forward + backward: GRU through autograd, the Python backward, the compiled kernel,
    and the LSTM on oneDNN and compiled; interleaved."""
    gru = nn.GRU(hidden, hidden, batch_first=True)
    lstm = nn.LSTM(hidden, hidden, batch_first=True)
    x = torch.randn(batch, steps, hidden, requires_grad=True)
    h0 = torch.zeros(1, batch, hidden)

    def gru_pass(path: str) -> Callable[[], None]:
        def run() -> None:
            with gru_path(path):
                out, _ = run_gru(gru, x, h0)
            out.sum().backward()

        return run

    def lstm_pass(path: str) -> Callable[[], None]:
        def run() -> None:
            with gru_path(path):  # "python": oneDNN's LSTM; "compiled": the kernel (up to 128 units)
                out, _ = run_lstm(lstm, x, (h0, h0))
            out.sum().backward()

        return run

    passes = (
        gru_pass("autograd"),
        gru_pass("python"),
        gru_pass("compiled"),
        lstm_pass("python"),
        lstm_pass("compiled"),
    )
    times: list[list[float]] = [[] for _ in passes]
    for _ in range(rounds):
        for i, fn in enumerate(passes):
            fn()  # untimed
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times[i].append(1e3 * (time.perf_counter() - start))
    return times


def gru_sequence(hidden: int, rounds: int = 3, repeats: int = 10) -> None:
    """Forward and backward of one padded minibatch (ms, min / median): ``nn.GRU`` with autograd's
    backward, with the package's hand-written one in Python and compiled
    (:func:`rl_warmup.cells.run_gru`), and ``nn.LSTM`` on oneDNN and on the compiled kernel
    (:func:`rl_warmup.cells.run_lstm`, which keeps oneDNN above
    ``LSTM_KERNEL_MAX_HIDDEN`` units), interleaved, at the minibatch shapes of the three
    benchmark environments."""
    if gru_ext.load() is None:
        print("(the compiled kernel is not available here: its columns time the Python backward and oneDNN)")
    print(f"forward + backward of one minibatch, {hidden} units, ms min / median of {rounds * repeats}")
    names = ("GRU autograd", "GRU Python bwd", "GRU compiled", "LSTM oneDNN", "LSTM compiled")
    print(f"{'sequences x steps':<20} " + " ".join(f"{name:>16}" for name in names))
    for batch, steps in [(8, 32), (16, 149), (8, 501)]:
        times = _minibatch_times(batch, steps, hidden, rounds, repeats)
        cells = [f"{min(t):.1f} / {statistics.median(t):.1f}" for t in times]
        print(f"{f'{batch} x {steps}':<20} " + " ".join(f"{c:>16}" for c in cells))


def _parity_done(path: str | None) -> dict[tuple[int, str], float]:
    """Results already in a ``--parity-out`` file: ``(seed, name) -> final mean return``."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {(int(row["seed"]), row["policy"]): float(row["final_mean_return"]) for row in csv.DictReader(f)}


def _parity_record(path: str | None, seed: int, name: str, value: float, seconds: float) -> None:
    """Append one run to a ``--parity-out`` file (written run by run, so an interrupted study resumes)."""
    if path is None:
        return
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["seed", "policy", "final_mean_return", "seconds"])
        writer.writerow([seed, name, f"{value:.4f}", f"{seconds:.1f}"])


def parity(
    seeds: list[int], timesteps: int, hyper: Hyper, cell: str, matched: bool = False, out: str | None = None
) -> None:
    """Final mean training return (last 100 episodes) of stock vs the package's policy, per seed.

    :param matched: start the package's policy from stock's initial weights (``cell="lstm"``
        only) and reseed before each run, so both runs see the same random numbers; otherwise
        each model draws its own initial weights from the seed.
    :param out: a CSV file that gets each run's result as it finishes; runs already in it are not
        run again (a long study resumes after an interruption; use one file per setting).
    """
    mode = "stock's initial weights" if matched else "own initial weights"
    print(
        f"parity on {_env_factory()[0]}: {timesteps} steps per run, zoo settings, lstm 64, {mode}"
    )
    stock_name, ours_name = _name(None), _name(cell)
    results: dict[str, list[float]] = {stock_name: [], ours_name: []}
    done = _parity_done(out)
    for seed in seeds:
        stock = _make_model(None, 64, hyper, seed)
        ours = _make_model(cell, 64, hyper, seed)
        if matched:
            ours.policy.load_stock_state_dict(stock.policy.state_dict())
        for name, model in ((stock_name, stock), (ours_name, ours)):
            if (seed, name) in done:
                results[name].append(done[(seed, name)])
                print(f"  seed {seed} {name:<30} final mean return {done[(seed, name)]:7.1f}  (from {out})", flush=True)
                continue
            model.set_random_seed(seed)
            start = time.perf_counter()
            model.learn(timesteps)
            returns = [ep["r"] for ep in model.ep_info_buffer]
            value = float(np.mean(returns)) if returns else float("nan")
            results[name].append(value)
            seconds = time.perf_counter() - start
            _parity_record(out, seed, name, value, seconds)
            print(f"  seed {seed} {name:<30} final mean return {value:7.1f}  ({seconds:.0f} s)", flush=True)
    for name, values in results.items():
        print(
            f"{name:<30} mean over seeds {np.mean(values):7.1f} ± {np.std(values):5.1f}  {[round(v, 1) for v in values]}"
        )


def parity_track(seed: int, rollouts: int, hyper: Hyper, cell: str = "lstm") -> list[float]:
    """Stock and the package's policy from the same initial weights and random numbers
    (``--parity-matched``'s start), trained side by side: per rollout, the fraction of actions
    that are the same. Both implement the same algorithm, so they act alike until float round-off
    (a different summation order in the LSTM and the fused step) flips one draw; from then on the
    two runs are different training runs of the same method.

    :return: the fractions, one per rollout (printed as they are computed).
    """
    stock = _make_model(None, 64, hyper, seed)
    ours = _make_model(cell, 64, hyper, seed)
    ours.policy.load_stock_state_dict(stock.policy.state_dict())
    actions: dict[int, list[np.ndarray]] = {id(stock): [], id(ours): []}
    for model in (stock, ours):
        model.set_random_seed(seed)
        train = model.train

        def recorded(model: RecurrentPPO = model, train: Callable[[], None] = train) -> None:
            actions[id(model)].append(model.rollout_buffer.actions.copy())
            train()

        model.train = recorded  # type: ignore[method-assign]
        model.learn(rollouts * hyper.n_envs * hyper.n_steps)
    same = [float((a == b).mean()) for a, b in zip(actions[id(stock)], actions[id(ours)], strict=True)]
    print(f"seed {seed}: identical actions per rollout, stock vs ours {cell} from stock's initial weights")
    print(" ".join(f"{fraction:.3f}" for fraction in same))
    return same


#: RecurrentRolloutBuffer's fields that training reads (copied from stock's buffer by --parity-updates)
_BUFFER_FIELDS = (
    "observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs",
    "advantages", "hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf",
)


def parity_updates(
    seed: int, timesteps: int, hyper: Hyper, every: int = 25, cell: str = "lstm"
) -> tuple[list[float], RecurrentPPO]:
    """Along one stock training run, every ``every``-th rollout: stock's update (``train``, all its
    epochs) and the package's, from the same weights, each with a fresh Adam state, on the same
    buffer and the same numpy draws. Prints and returns, per compared rollout, the largest
    parameter difference between the two results, and the stock model at the end; the stock run
    goes on unchanged (its weights, Adam state and random generators restored after each
    comparison).

    A learning gap between the implementations must come from somewhere: if their updates agree
    to float round-off all along a run, it is not in training.
    """
    stock = _make_model(None, 64, hyper, seed)
    ours = _make_model(cell, 64, hyper, seed)
    train = stock.train
    rollouts = [0]
    diffs: list[float] = []

    def ours_name(name: str) -> str:  # RecurrentCellPolicy.load_stock_state_dict's renaming
        prefix, _, rest = name.partition(".")
        if prefix not in ("lstm_actor", "lstm_critic"):
            return name
        kind, _, layer = rest.rpartition("_l")
        return f"{prefix}.network.layers.{layer}.rnn.{kind}_l0"

    def compare() -> None:
        weights = {k: v.clone() for k, v in stock.policy.state_dict().items()}
        adam = copy.deepcopy(stock.policy.optimizer.state_dict())
        np_state, torch_state = np.random.get_state(), torch.get_rng_state()
        buffer = {f: getattr(stock.rollout_buffer, f).copy() for f in _BUFFER_FIELDS}  # before get() reshapes them
        stock.policy.optimizer.state.clear()
        train()
        updated = {k: v.clone() for k, v in stock.policy.state_dict().items()}
        ours.policy.load_stock_state_dict(weights)
        ours.policy.optimizer.state.clear()
        for name, value in buffer.items():
            setattr(ours.rollout_buffer, name, value)
        ours.rollout_buffer.full, ours.rollout_buffer.generator_ready = True, False
        ours._current_progress_remaining = stock._current_progress_remaining
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        ours.train()
        got = ours.policy.state_dict()
        diff = max(float((got[ours_name(k)] - v).abs().max()) for k, v in updated.items())
        change = max(float((v - weights[k]).abs().max()) for k, v in updated.items())
        returns = [e["r"] for e in stock.ep_info_buffer]
        print(
            f"  rollout {rollouts[0]:4d}: largest |ours - stock| after the update {diff:.1e} "
            f"(largest change of a parameter {change:.1e}; mean return so far {np.mean(returns) if returns else float('nan'):.1f})",
            flush=True,
        )
        diffs.append(diff)
        stock.policy.load_state_dict(weights)
        stock.policy.optimizer.load_state_dict(adam)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)

    def hooked() -> None:
        if rollouts[0] % every == 0:
            compare()
        rollouts[0] += 1
        train()

    stock.train = hooked  # type: ignore[method-assign]
    print(f"seed {seed}: stock's and ours' updates from the same weights and buffer, every {every} rollouts")
    stock.set_random_seed(seed)
    stock.learn(timesteps)
    return diffs, stock


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        default=["lstm", "gru"],
        help="cells of RecurrentCellPolicy to time; gru-python and gru-autograd run the GRU with the "
        "hand-written backward in Python or with autograd through nn.GRU instead of the compiled kernel, "
        "lstm-onednn the LSTM on oneDNN's kernel (nbrc-python etc.: the Python loop)",
    )
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 256], help="hidden sizes")
    parser.add_argument(
        "--timesteps", type=int, default=2048, help="timesteps timed per configuration"
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=256,
        help="untimed timesteps run first per configuration",
    )
    parser.add_argument(
        "--n-epochs", type=int, default=Hyper.n_epochs, help="PPO epochs per rollout"
    )
    parser.add_argument(
        "--envs",
        nargs="+",
        default=["cartpole"],
        choices=sorted(BENCH_ENVS),
        help="environments to time (cartpole: CartPole-NoVel, zoo settings; tmaze50, passive500: "
        "the package's presets)",
    )
    parser.add_argument(
        "--loops",
        nargs="+",
        default=["fast"],
        choices=["fast", "stock"],
        help="training loops for the package's policy: fast (FastRecurrentPPO) and/or stock "
        "(sb3-contrib's RecurrentPPO); the stock policy is always trained by RecurrentPPO",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 for a fair, quiet comparison)"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the phases of one update (ms)"
    )
    parser.add_argument(
        "--parity", action="store_true", help="run the learning-parity comparison instead (long)"
    )
    parser.add_argument("--parity-timesteps", type=int, default=100_000)
    parser.add_argument("--parity-cell", default="lstm")
    parser.add_argument(
        "--parity-matched",
        action="store_true",
        help="start the package's policy from stock's initial weights (cell lstm only)",
    )
    parser.add_argument(
        "--parity-track",
        type=int,
        default=0,
        metavar="ROLLOUTS",
        help="instead train stock and ours from the same weights and random numbers for ROLLOUTS "
        "rollouts and print, per rollout, the fraction of identical actions (seeds: --seeds)",
    )
    parser.add_argument(
        "--parity-updates",
        type=int,
        default=0,
        metavar="EVERY",
        help="instead train stock for --parity-timesteps and, every EVERY rollouts, compare its update "
        "with ours from the same weights and buffer (seeds: --seeds)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of --parity")
    parser.add_argument(
        "--parity-out",
        default=None,
        help="CSV that --parity appends each run's result to; runs already in it are skipped (resume)",
    )
    parser.add_argument(
        "--gru-sequence",
        action="store_true",
        help="instead time forward + backward of one minibatch: nn.GRU with autograd's backward, "
        "with the hand-written one, and nn.LSTM (ms), at --hidden's first size",
    )
    parser.add_argument(
        "--policy-step",
        action="store_true",
        help="instead time one rollout step of the policy alone (us), on the first of --envs",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    hyper = dataclasses.replace(BENCH_ENVS["cartpole"], n_epochs=args.n_epochs)
    if args.parity_updates:
        for seed in args.seeds:
            parity_updates(seed, args.parity_timesteps, hyper, args.parity_updates, args.parity_cell)
        return
    if args.parity_track:
        for seed in args.seeds:
            parity_track(seed, args.parity_track, hyper, args.parity_cell)
        return
    if args.parity:
        parity(args.seeds, args.parity_timesteps, hyper, args.parity_cell, args.parity_matched, args.parity_out)
        return
    print(
        f"torch {torch.__version__} ({args.threads} thread(s)), {platform.processor() or platform.machine()}"
    )
    if args.gru_sequence:
        gru_sequence(args.hidden[0])
        return
    if args.policy_step:
        key = args.envs[0]
        policy_step(args.cells, args.hidden, hyper if key == "cartpole" else BENCH_ENVS[key], args.seed)
        return
    rows = []
    for key in args.envs:
        env_hyper = hyper if key == "cartpole" else BENCH_ENVS[key]
        print(
            f"{env_hyper.env_id if key != 'cartpole' else _env_factory()[0]}: n_envs={env_hyper.n_envs}, "
            f"n_steps={env_hyper.n_steps}, batch={env_hyper.batch_size}, n_epochs={env_hyper.n_epochs}",
            flush=True,
        )
        # at least one full rollout per model, so that every timed step includes its update
        steps = max(args.timesteps, env_hyper.n_envs * env_hyper.n_steps)
        warm = max(args.warmup_steps, env_hyper.n_envs * env_hyper.n_steps)
        rows += benchmark(args.cells, args.hidden, steps, env_hyper, args.seed, warm, args.loops)
    print()
    print_table(rows)
    if args.breakdown:
        print()
        breakdown(args.cells, args.hidden, hyper, args.seed, loops=args.loops)


if __name__ == "__main__":
    main()
