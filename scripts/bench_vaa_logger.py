"""Cost of the VAA logger callback relative to training wall time (T-Maze by default).

Trains the same RecurrentPPO model three times from the same seed: without the logger, with
:class:`~rl_warmup.sb3.callbacks.VAALoggerCallback` at its default settings (time budget
``max_overhead=0.05``), and with the budget off, and prints a table:
wall time of each run, time spent inside the callback's measures, and the overhead ratio.

Usage::

    python scripts/bench_vaa_logger.py                       # T-Maze, 20k steps
    python scripts/bench_vaa_logger.py --timesteps 50000 --policy gru   # FastRecurrentPPO
"""

from __future__ import annotations

import argparse
import time

import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

import envs  # noqa: F401  (registers rl_warmup/ ids)
from rl_warmup.sb3.callbacks import VAALoggerCallback
from rl_warmup.sb3.policies import RecurrentCellPolicy
from rl_warmup.sb3.ppo import FastRecurrentPPO
from rl_warmup.sb3.warmup import warmup_recurrent_ppo
from rl_warmup.warmup import WarmupConfig


def _algorithm(args: argparse.Namespace) -> type[RecurrentPPO]:
    """The package trains its own policy with FastRecurrentPPO (faster updates, so the logger's
    share of the wall time is larger than under stock RecurrentPPO); ``--algo stock`` compares."""
    return RecurrentPPO if args.policy == "stock" or args.algo == "stock" else FastRecurrentPPO


def _train(args: argparse.Namespace, with_logger: bool, max_overhead: float | None) -> tuple[float, float, int, int]:
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    if args.policy == "stock":
        policy: object = "MlpLstmPolicy"
        kwargs: dict[str, object] = {"lstm_hidden_size": args.hidden}
    else:
        policy = RecurrentCellPolicy
        kwargs = {"cell": args.policy, "lstm_hidden_size": args.hidden}
    model = _algorithm(args)(policy, env, n_steps=args.n_steps, batch_size=args.n_steps * args.n_envs // 4,
                         policy_kwargs=kwargs, seed=args.seed)
    model.set_logger(Logger(None, []))  # no SB3-<date> folder in the temp directory
    if args.warmup:  # before the clock starts: the logger's share is of training time only
        warmup_recurrent_ppo(model, config=WarmupConfig(seed=args.seed))
    callback = VAALoggerCallback(every_n_rollouts=args.every, max_overhead=max_overhead) if with_logger else None
    start = time.perf_counter()
    model.learn(args.timesteps, callback=callback)
    wall = time.perf_counter() - start
    if callback is None:
        return wall, 0.0, 0, 0
    return wall, callback.seconds, len(callback.history), callback.postponed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="rl_warmup/TMaze-v0")
    parser.add_argument("--policy", default="stock", help="'stock' (sb3-contrib MlpLstmPolicy) or a cell name")
    parser.add_argument("--algo", choices=("fast", "stock"), default="fast",
                        help="algorithm of a cell policy: FastRecurrentPPO (the package's) or RecurrentPPO")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=128)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=10, help="every_n_rollouts of the logger (its default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", action="store_true",
                        help="warm the policy up first (paper's defaults): warmed networks keep moving for "
                        "longer, so the measure cannot stop early as it does on a cold one")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = _train(args, with_logger=False, max_overhead=None)[0]
    runs = {
        "VAALoggerCallback (defaults, max_overhead 0.05)": _train(args, with_logger=True, max_overhead=0.05),
        "VAALoggerCallback (max_overhead None)": _train(args, with_logger=True, max_overhead=None),
    }
    print(f"env {args.env}, {_algorithm(args).__name__}, policy {args.policy} {args.hidden}, {args.n_envs} envs x {args.n_steps} steps, "
          f"{args.timesteps} timesteps, {'warmed' if args.warmup else 'cold'}, logger every {args.every} rollouts "
          "(defaults n=100, settle 10000)")
    print("| run | wall s | logger s | measures | postponed | logger share of wall | wall vs. no logger |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| no logger | {base:.1f} | - | - | - | - | 1.00 |")
    for name, (wall, inside, n_measures, postponed) in runs.items():
        print(f"| {name} | {wall:.1f} | {inside:.1f} | {n_measures} | {postponed} | {inside / wall:.1%} | {wall / base:.2f} |")


if __name__ == "__main__":
    main()
