"""Cost of the VAA* regulariser relative to training wall time, side by side in one process.

Builds one warmed ``FastRecurrentPPO`` model per setting (the same seed and warmup), then lets
them learn one rollout each in turn (interleaved, so that load changes on a shared machine hit
all of them alike) and prints, per setting, seconds per rollout (min / median over the rollouts)
and the overhead against the model without the regulariser.

    python scripts/bench_regularizer.py                     # Passive T-Maze L = 50, GRU 32, presets
    python scripts/bench_regularizer.py --every 1 4 8 --rollouts 20 --cell lstm
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rl_warmup.experiment.config import resolve_config
from rl_warmup.experiment.train import build_model, make_env
from rl_warmup.regularizer import VAARegularizer
from rl_warmup.sb3 import FastRecurrentPPO, warmup_recurrent_ppo


def _model(env_id: str, cell: str, reg: VAARegularizer | None, seed: int) -> FastRecurrentPPO:
    """The experiment runner's model for the env's presets, warmed up, with ``reg``."""
    config = resolve_config({"env_id": env_id, "cell": cell, "seed": seed})
    model = build_model(config, make_env(config))
    model.vaa_regularizer = reg
    warmup_recurrent_ppo(model, config=config.warmup_config())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--env", default="rl_warmup/PassiveTMaze-L50-v0")
    parser.add_argument("--cell", default="gru", help="a cell of RecurrentCellPolicy, or stock_lstm")
    parser.add_argument("--every", type=int, nargs="+", default=[VAARegularizer().every],
                        help="VAARegularizer.every values to time (default: the default schedule)")
    parser.add_argument("--coef", type=float, default=0.1)
    parser.add_argument("--rollouts", type=int, default=12, help="rollouts per model (the first not counted)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings: dict[str, VAARegularizer | None] = {"no regulariser": None}
    for every in args.every:
        settings[f"coef {args.coef:g}, every {every}"] = VAARegularizer(coef=args.coef, every=every)
    models = {name: _model(args.env, args.cell, reg, args.seed) for name, reg in settings.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rollouts):
        for name, model in models.items():
            size = model.n_steps * model.n_envs
            start = time.perf_counter()
            model.learn(size, reset_num_timesteps=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["no regulariser"][1:])
    first = next(iter(models.values()))
    print(f"{args.env}, {args.cell} {first.policy_kwargs.get('lstm_hidden_size')}, {first.n_envs} envs x "
          f"{first.n_steps} steps, {first.n_epochs} epochs, {args.rollouts} rollouts each (first not counted), "
          f"interleaved, torch {torch.__version__}, {args.threads} thread(s)")
    print("| setting | s per rollout (min / median) | overhead (median) |")
    print("|---|---|---|")
    for name, values in times.items():
        rest = values[1:]
        print(f"| {name} | {min(rest):.3f} / {statistics.median(rest):.3f} | {statistics.median(rest) / base - 1:+.1%} |")


if __name__ == "__main__":
    main()
