#!/usr/bin/env python3
"""The memory-length ladder report: ``python scripts/ladder_report.py DIR[:TAG] ...``.

Merges the output directories of several ``scripts/compare.py`` invocations into a table and a
plot of success against memory length per condition (the same as ``rl-warmup ladder``; the work
is in :mod:`rl_warmup.experiment.ladder`).
"""

from __future__ import annotations

import sys

from rl_warmup.experiment.commands import ladder_main


def main(argv: list[str] | None = None) -> int:
    return ladder_main(argv, prog="python scripts/ladder_report.py")


if __name__ == "__main__":
    sys.exit(main())
