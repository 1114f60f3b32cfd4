#!/usr/bin/env python3
"""Train one RecurrentPPO agent, cold or warmed up: ``python scripts/train.py --help``.

Examples::

    python scripts/train.py --env-id rl_warmup/PassiveTMaze-L50-v0 --cell gru --warmup full
    python scripts/train.py --config runs/<run>/config.yaml --resume   # continue after Ctrl-C

Everything happens in :func:`rl_warmup.experiment.train.train`; this file only parses the command
line and prints.
"""

from __future__ import annotations

import math
import sys


def main(argv: list[str] | None = None) -> int:
    from rl_warmup.experiment.lock import LockedError
    from rl_warmup.experiment.train import describe, train, train_config_from_args, train_parser

    parser = train_parser()
    args = parser.parse_args(argv)
    try:
        config = train_config_from_args(args)
    except (ValueError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(describe(config), end="")
        return 0
    if config.threads > 0:
        import torch

        torch.set_num_threads(config.threads)
    run_dir = config.run_dir
    if config.resume and not (run_dir / "config.yaml").exists():
        print(
            f"{parser.prog}: error: --resume: no run in {run_dir} to continue (no config.yaml); "
            "check --output-dir / --run-name, or drop --resume to start a new run",
            file=sys.stderr,
        )
        return 2
    print(f"run directory: {run_dir}")
    try:
        result = train(config)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: the last checkpoint is kept in {run_dir / 'checkpoints'}; continue with\n"
            f"  python scripts/train.py --config {run_dir / 'config.yaml'} --resume",
            file=sys.stderr,
        )
        return 130
    except (FileExistsError, ValueError, ImportError, LockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    success = "n/a" if math.isnan(result.final_success_rate) else f"{result.final_success_rate:.2f}"
    reached = result.timesteps_to_threshold
    print(
        f"finished {result.num_timesteps} timesteps in {result.wall_seconds:.0f} s: final success rate {success}, "
        f"mean return {result.final_mean_reward:.3f}, "
        + (f"{result.success_threshold:g} success first at {reached:.0f} timesteps" if not math.isnan(reached)
           else f"{result.success_threshold:g} success not reached")
        + (f", VAA after warmup {result.vaa_after_warmup.get('actor', math.nan):.3f}, "
           f"at the end {result.vaa_final.get('actor', math.nan):.3f}" if result.vaa_final else "")
    )
    return 0


if __name__ == "__main__":
    from rl_warmup.experiment.cli import stop_on_sigterm

    stop_on_sigterm()  # docker stop, SLURM preemption: checkpoint and exit as on Ctrl-C
    sys.exit(main())
