"""The comparison job: run a grid of warmed and cold-start agents and write its report.

``compare(CompareConfig())`` is the default job of ``scripts/compare.py`` (and the README's first
command): LSTM and GRU agents, cold vs warmed, on the Passive T-Maze with memory lengths 10
(20k timesteps) and 50 (60k timesteps), three seeds: 24 runs, about 13 CPU-minutes, so a few
minutes of wall time on two free CPU cores.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_warmup.experiment.cli import add_dataclass_arguments, coerce_value, given_values
from rl_warmup.experiment.config import check_runtime, dump_yaml
from rl_warmup.experiment.grid import (
    CompareConfig,
    collect_rows,
    expand_grid,
    failed_rows,
    missing_rows,
    run_grid,
)
from rl_warmup.experiment.lock import DirectoryLock

COMPARE_FILE = "compare.yaml"
"""The comparison's settings, saved in the report directory."""


@dataclass
class CompareOutcome:
    """Rows of every run (``results.csv``), the report files written, and the wall time."""

    rows: list[dict[str, Any]]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        return failed_rows(self.rows)

    @property
    def missing(self) -> list[dict[str, Any]]:
        return missing_rows(self.rows)


def compare(
    config: CompareConfig,
    *,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> CompareOutcome:
    """Run the grid of ``config`` (skipping finished runs) and write the report.

    :param on_result: called with each run's ``results.csv`` row as it completes.
    :param on_start: called with the number of runs before they start.
    :raises ValueError: an unknown environment id, cell or condition, or a bad override.
    """
    from rl_warmup.experiment.report import write_report

    runs = expand_grid(config)
    if not config.report_only:
        for run in runs:  # what the machine must offer, before any run starts
            check_runtime(run.config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(config).items()}
    (out / COMPARE_FILE).write_text(dump_yaml(values, header="# Settings of this comparison (scripts/compare.py).\n"))
    if on_start is not None:
        on_start(len(runs))
    if config.report_only:
        rows, seconds = collect_rows(runs), None
    else:
        with DirectoryLock(out / ".compare.lock", f"the comparison in {out}"):
            outcome = run_grid(
                runs,
                backend=config.backend,
                workers=config.workers,
                address=config.address,
                cpus_per_run=config.cpus_per_run,
                on_result=on_result,
            )
        rows, seconds = outcome.rows, outcome.seconds
    files = write_report(rows, out, config=config, seconds=seconds)
    return CompareOutcome(rows, files, seconds)


def compare_parser() -> argparse.ArgumentParser:
    """The argument parser of ``scripts/compare.py``: one option per :class:`CompareConfig` field."""
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description=(
            "Compare warmed and cold-start RecurrentPPO agents over a grid of conditions × cells × "
            "environments × seeds, and write a report (results.csv, summary.md, plots). Without "
            "arguments: the default comparison, about 2 minutes on 2 CPU cores. Running the same "
            "command again skips finished runs and resumes interrupted ones."
        ),
    )
    add_dataclass_arguments(parser.add_argument_group("settings (CompareConfig fields)"), CompareConfig)
    return parser


def compare_config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The :class:`CompareConfig` of parsed ``scripts/compare.py`` arguments.

    :raises ValueError: an invalid value.
    """
    given = given_values(args, CompareConfig)
    return CompareConfig(**{k: coerce_value(CompareConfig, k, v, source="command line") for k, v in given.items()})
