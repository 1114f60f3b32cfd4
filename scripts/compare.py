#!/usr/bin/env python3
"""Compare warmed and cold-start agents over a grid and write a report: ``python scripts/compare.py``.

Without arguments this is the project's main job (about 2 minutes on 2 CPU cores); see
``--help`` for the grid (conditions, cells, environments, seeds), the backend (local processes or
``--backend ray``) and the report directory. Running the same command again skips finished runs
and resumes interrupted or failed ones.

Everything happens in :func:`rl_warmup.experiment.compare.compare`; this file only parses the
command line and prints progress.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from rl_warmup.experiment.compare import compare, compare_config_from_args, compare_parser
    from rl_warmup.experiment.lock import LockedError

    parser = compare_parser()
    args = parser.parse_args(argv)
    try:
        config = compare_config_from_args(args)
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    state = {"done": 0, "total": 0}

    def on_start(total: int) -> None:
        state["total"] = total
        print(f"{total} runs ({config.backend} backend, {config.workers} workers), report in {config.output_dir}", flush=True)

    def on_result(row: dict[str, Any]) -> None:
        state["done"] += 1
        name = Path(row["run_dir"]).name
        elapsed = time.perf_counter() - start
        if row["status"] == "finished":
            success = row["final_success_rate"]
            text = "n/a" if isinstance(success, float) and math.isnan(success) else f"{float(success):.2f}"
            what = "already finished" if row["reused"] else f"finished in {float(row['wall_seconds']):.0f} s"
            detail = f"{what}, final success {text}"
        else:
            detail = f"FAILED: {row['error']}"
        print(f"[{state['done']}/{state['total']} {elapsed / 60:5.1f} min] {name}: {detail}", flush=True)

    try:
        outcome = compare(config, on_result=on_result, on_start=on_start)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (finished runs are skipped)", file=sys.stderr)
        return 130
    except (ValueError, ImportError, LockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {Path(config.output_dir) / 'summary.md'} ({time.perf_counter() - start:.0f} s)")
    if outcome.failed:
        print(f"{len(outcome.failed)} run(s) failed; see summary.md and the error.txt of each run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from rl_warmup.experiment.cli import stop_on_sigterm

    stop_on_sigterm()  # docker stop, SLURM preemption: checkpoint and exit as on Ctrl-C
    sys.exit(main())
