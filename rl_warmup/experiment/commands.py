"""The ``rl-warmup`` console command (installed by pip) and the bodies of ``scripts/*.py``.

::

    rl-warmup compare                       # the main job: warmed vs cold over a small grid
    rl-warmup train --env-id rl_warmup/PassiveTMaze-L50-v0 --cell gru --warmup full
    rl-warmup supervised --task copy --length 300 --cells gru lstm
    rl-warmup ladder results/ladder_gru results/ladder_fb1:fb1   # success against memory length
    rl-warmup <command> --help

``python -m rl_warmup`` is the same command. Each ``*_main`` takes the arguments after the
command name and returns the exit status: 0 done, 1 a run failed, 2 bad settings, 130
interrupted (Ctrl-C or SIGTERM, the last checkpoint kept).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl_warmup.experiment.cli import parse_as

PROG = "rl-warmup"


def train_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Train one agent, cold or warmed up (:func:`rl_warmup.experiment.train.train`)."""
    from rl_warmup.experiment.lock import LockedError
    from rl_warmup.experiment.train import describe, train, train_config_from_args, train_parser

    parser = train_parser()
    args = parse_as(parser, argv, prog)
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
            f"  {parser.prog} --config {run_dir / 'config.yaml'} --resume",
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
        + (
            f"{result.success_threshold:g} success first at {reached:.0f} timesteps"
            if not math.isnan(reached)
            else f"{result.success_threshold:g} success not reached"
        )
        + (
            f", VAA after warmup {result.vaa_after_warmup.get('actor', math.nan):.3f}, "
            f"at the end {result.vaa_final.get('actor', math.nan):.3f}"
            if result.vaa_final
            else ""
        )
    )
    return 0


def compare_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Warmed vs cold over a grid, then the report (:func:`rl_warmup.experiment.compare.compare`)."""
    from rl_warmup.experiment.compare import compare, compare_config_from_args, compare_parser
    from rl_warmup.experiment.lock import LockedError

    parser = compare_parser()
    args = parse_as(parser, argv, prog)
    try:
        config = compare_config_from_args(args)
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    state = {"done": 0, "total": 0}

    def on_start(total: int) -> None:
        state["total"] = total
        print(
            f"{total} runs ({config.backend} backend, {config.workers} workers), report in {config.output_dir}",
            flush=True,
        )

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
    if outcome.missing:
        print(
            f"{len(outcome.missing)} run(s) of the grid have no result yet"
            + ("; run the command without --report-only to train them" if config.report_only else ""),
            file=sys.stderr,
        )
    return 1 if outcome.failed or outcome.missing else 0


def supervised_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Supervised long-memory benchmarks (:mod:`rl_warmup.experiment.supervised_cli`)."""
    from rl_warmup.experiment.supervised_cli import main as supervised

    return supervised(argv, prog=prog)


def ladder_main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Merge comparisons into the memory-length ladder (:mod:`rl_warmup.experiment.ladder`)."""
    import argparse

    from rl_warmup.experiment.ladder import (
        ladder_markdown,
        ladder_points,
        load_runs,
        merge_points,
        plot_ladder,
        read_points,
        write_points,
    )

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Success against memory length per condition, merged over the output directories of "
        "several `compare` invocations: a markdown table (with memory horizons and cold/warmed speed-ups), "
        "a plot and the plotted points as CSV (ladder_points.csv).",
    )
    parser.add_argument("sources", nargs="*", metavar="DIR[:TAG]",
                        help="a compare --output-dir; TAG names its rows, e.g. results/ladder_fb1:fb1")
    parser.add_argument("--points", nargs="+", default=[], metavar="CSV",
                        help="points of earlier reports (their ladder_points.csv, or the same columns by hand) "
                        "drawn with the runs' (a condition and length in both: the runs' replace them); "
                        "the table covers the runs only")
    parser.add_argument("--output-dir", default="results/ladder", help="where ladder.md, ladder.png and ladder_points.csv go")
    parser.add_argument("--threshold", type=float, default=0.95, help="success rate that counts as solved")
    args = parser.parse_args(argv)
    if not args.sources and not args.points:
        parser.error("give comparison directories, --points CSVs, or both")
    try:
        runs = load_runs(args.sources)
        earlier = [pt for path in args.points for pt in read_points(path)]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs and not earlier:
        print("error: no finished run in " + ", ".join(args.sources), file=sys.stderr)
        return 2
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = merge_points(earlier, ladder_points(runs))
    if runs:
        (out / "ladder.md").write_text(ladder_markdown(runs, threshold=args.threshold))
    write_points(points, out / "ladder_points.csv")
    plot_ladder(points, out / "ladder.png", threshold=args.threshold)
    written = [out / name for name in (("ladder.md",) if runs else ()) + ("ladder_points.csv", "ladder.png")]
    print(f"{len(runs)} runs, {len(points)} points: " + ", ".join(str(w) for w in written))
    return 0


COMMANDS: dict[str, tuple[Callable[..., int], str]] = {
    "train": (train_main, "train one agent, cold or warmed up"),
    "compare": (compare_main, "warmed vs cold agents over a grid of cells, environments and seeds, with a report"),
    "supervised": (supervised_main, "copy-first-input, denoising, permuted sequential MNIST"),
    "ladder": (ladder_main, "success against memory length, merged over several compare directories"),
}


def _usage() -> str:
    lines = [f"usage: {PROG} <command> [options]   ({PROG} <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rl-warmup`` command: ``rl-warmup <command> [options]``."""
    from rl_warmup.experiment.cli import stop_on_sigterm

    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"{PROG} {version('rl-warmup')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"{PROG}: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if argv is None:
        stop_on_sigterm()  # docker stop, SLURM preemption: checkpoint and exit as on Ctrl-C
    return COMMANDS[name][0](rest, prog=f"{PROG} {name}")
