#!/usr/bin/env python3
"""Compare warmed and cold-start agents over a grid and write a report: ``python scripts/compare.py``.

Without arguments this is the project's main job (about 2 minutes on 2 CPU cores); see
``--help`` for the grid (conditions, cells, environments, seeds), the backend (local processes or
``--backend ray``) and the report directory. Running the same command again skips finished runs
and resumes interrupted or failed ones.

The same as ``rl-warmup compare`` (installed by pip); the work is in
:func:`rl_warmup.experiment.commands.compare_main`.
"""

from __future__ import annotations

import sys

from rl_warmup.experiment.commands import compare_main


def main(argv: list[str] | None = None) -> int:
    return compare_main(argv, prog="python scripts/compare.py")


if __name__ == "__main__":
    from rl_warmup.experiment.cli import stop_on_sigterm

    stop_on_sigterm()  # docker stop, SLURM preemption: checkpoint and exit as on Ctrl-C
    sys.exit(main())
