#!/usr/bin/env python3
"""Train one RecurrentPPO agent, cold or warmed up: ``python scripts/train.py --help``.

Examples::

    python scripts/train.py --env-id rl_warmup/PassiveTMaze-L50-v0 --cell gru --warmup full
    python scripts/train.py --config runs/<run>/config.yaml --resume   # continue after Ctrl-C

The same as ``rl-warmup train`` (installed by pip); the work is in
:func:`rl_warmup.experiment.commands.train_main`.
"""

from __future__ import annotations

import sys

from rl_warmup.experiment.commands import train_main


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, prog="python scripts/train.py")


if __name__ == "__main__":
    from rl_warmup.experiment.cli import stop_on_sigterm

    stop_on_sigterm()  # docker stop, SLURM preemption: checkpoint and exit as on Ctrl-C
    sys.exit(main())
