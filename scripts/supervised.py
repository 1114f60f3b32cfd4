#!/usr/bin/env python3
"""Train recurrent networks on a supervised long-memory benchmark, warmed up or not:
``python scripts/supervised.py --help``.

The same as ``rl-warmup supervised`` (installed by pip); the work is in
:mod:`rl_warmup.experiment.supervised_cli`.
"""

from __future__ import annotations

import sys

from rl_warmup.experiment.supervised_cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python scripts/supervised.py"))
