"""The memory-length ladder report: merging comparisons, horizons, speed-ups, the command."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from rl_warmup.experiment.grid import RESULT_COLUMNS
from rl_warmup.experiment.ladder import LadderRun, ladder_markdown, load_runs, speedup
from rl_warmup.experiment.report import write_results_csv


def _comparison(root: Path, rows: list[dict]) -> Path:
    """A compare output directory with the given runs (and their warmup.json)."""
    root.mkdir(parents=True)
    full = []
    for i, row in enumerate(rows):
        run_dir = root / "runs" / f"run{i}"
        run_dir.mkdir(parents=True)
        if row["condition"] == "warmed":
            networks = {"actor": {"vaa_curve": {"100": 0.8, "1000": 0.8, "5000": 0.3}, "vaa_horizon": 5000}}
            (run_dir / "warmup.json").write_text(json.dumps({"networks": networks}))
        full.append({c: "" for c in RESULT_COLUMNS} | {"status": "finished", "run_dir": str(run_dir),
                                                      "success_threshold": 0.95} | row)
    write_results_csv(full, root / "results.csv")
    return root


def _row(condition: str, env: str, seed: int, steps: float, budget: float) -> dict:
    return {"condition": condition, "cell": "gru", "env_id": env, "seed": seed, "num_timesteps": budget,
            "total_timesteps": budget, "timesteps_to_threshold": steps, "final_success_rate": 1.0 if steps == steps else 0.5,
            "best_success_rate": 1.0, "vaa_after_warmup_actor": 0.8, "vaa_final_actor": 0.5, "wall_seconds": 60.0}


def test_merged_comparisons_give_the_table_horizons_and_speedups(tmp_path: Path) -> None:
    env = "rl_warmup/PassiveTMaze-L50-v0"
    a = _comparison(tmp_path / "a", [_row("warmed", env, 0, 1000.0, 10_000), _row("warmed", env, 1, 3000.0, 10_000)])
    b = _comparison(tmp_path / "b", [_row("cold", env, 0, 8000.0, 100_000), _row("cold", env, 1, math.nan, 100_000)])
    runs = load_runs([str(a), f"{b}:long"])
    assert {r.label for r in runs} == {"warmed gru", "cold gru (long)"}
    warmed = [r for r in runs if r.label == "warmed gru"]
    assert all(r.memory_length == 50 and r.horizon == 5000 and r.horizon_max == 5000 for r in warmed)
    assert [r.reached for r in runs if r.label.startswith("cold")] == [True, False]

    # cold: (8000 + 100000 at its budget) / 2 = 54000; warmed: 2000 -> 27, a lower bound
    ratio, low, high, censored = speedup([r for r in runs if r.label.startswith("cold")], warmed)
    assert ratio == pytest.approx(27.0) and censored and low <= ratio <= high

    text = ladder_markdown(load_runs([str(a), str(b)]))
    assert "| warmed gru | 50 | 2 | 2/2 | 1.00 | 2k | 10k | 0.80 | 0.50 | 5,000 | 1.0 min |" in text
    assert "| PassiveTMaze | 50 | gru | 1/2 | 2/2 | >= 27.0 [" in text


def test_ladder_command_writes_the_report_and_refuses_a_missing_directory(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from rl_warmup.experiment.commands import main

    a = _comparison(tmp_path / "a", [_row("warmed", "rl_warmup/PassiveTMaze-L100-v0", 0, 5000.0, 10_000)])
    assert main(["ladder", str(a), "--output-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "ladder.png").stat().st_size > 0
    assert "| warmed gru | 100 |" in (tmp_path / "out" / "ladder.md").read_text()
    assert main(["ladder", str(tmp_path / "nothing")]) == 2
    assert "results.csv does not exist" in capsys.readouterr().err


def test_speedup_of_empty_sides_is_nan() -> None:
    run = LadderRun("warmed gru", "e", "E", 10, 0, True, 5.0, 10, 1, 0.5, 0.5, math.inf, 5000, 1)
    assert all(math.isnan(v) for v in speedup([], [run])[:3])


@pytest.mark.parametrize(("name", "min_compares"), [("ladder_commands.sh", 20), ("regularizer_commands.sh", 6)])
def test_every_command_of_a_study_script_is_a_valid_grid(tmp_path: Path, name: str, min_compares: int) -> None:
    """scripts/ladder_commands.sh and scripts/regularizer_commands.sh, run with a stand-in
    ``python`` that records its arguments: every compare.py invocation parses, expands to a grid of
    valid run configurations, and the report section covers every output directory that the study
    sections write; every supervised.py invocation parses into valid configurations."""
    import os
    import shlex
    import subprocess

    from rl_warmup.experiment.compare import compare_config_from_args, compare_parser
    from rl_warmup.experiment.grid import expand_grid

    repo = Path(__file__).resolve().parents[1]
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(calls))}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    script = (repo / "scripts" / name).read_text()
    sections = re.findall(r"^(\w+)\(\) \{", script, flags=re.M)
    assert "report" in sections and len(sections) >= 5
    res = subprocess.run(
        ["bash", str(repo / "scripts" / name), *sections], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = calls.read_text().splitlines()
    compares = [shlex.split(line)[1:] for line in lines if line.startswith("scripts/compare.py")]
    assert len(compares) >= min_compares
    written, reported = set(), set()
    for argv in compares:
        args = compare_parser().parse_args(argv)
        config = compare_config_from_args(args)
        runs = expand_grid(config)
        assert runs, argv
        (reported if config.report_only else written).add(config.output_dir)
    assert written <= reported
    from rl_warmup.experiment.supervised_cli import build_parser, configs_from_args

    for line in lines:
        if line.startswith("scripts/supervised.py"):
            configs = configs_from_args(build_parser().parse_args(shlex.split(line)[1:]))
            assert configs, line
    assert any(line.startswith("scripts/ladder_report.py") for line in lines)


def test_a_family_at_one_memory_length_is_drawn_as_bars_per_condition(tmp_path: Path) -> None:
    # a line over one point would stack every condition that scored the same on one marker
    from rl_warmup.experiment.ladder import plot_ladder

    def run(label: str, seed: int, reached: bool, final: float, length: float = 100.0, family: str = "TMaze") -> LadderRun:
        return LadderRun(label, f"rl_warmup/{family}-L{length:g}-v0", family, length, seed, reached,
                         1000.0 if reached else math.nan, 2000, final, 0.5, 0.5, 1000, 5000, 1.0)

    runs = [run("warmed gru", 0, True, 1.0), run("warmed gru", 1, False, 0.0), run("cold gru", 0, False, 0.5),
            run("cold gru", 1, False, 0.5)]
    fig = plot_ladder(runs, tmp_path / "one.png")
    (ax,) = fig.axes
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [0.0, 0.5, 0.5, 0.5]  # cold: reached 0, final 0.5; warmed: reached 0.5, final 0.5
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == ["cold gru", "warmed gru"]
    # two lengths: lines, no bars
    fig = plot_ladder([*runs, run("warmed gru", 0, True, 1.0, length=250.0)], tmp_path / "two.png")
    assert not fig.axes[0].patches and fig.axes[0].lines


def test_the_lasting_lstm_settings_of_the_study_scripts_are_lstm_lasting_250() -> None:
    """scripts/study_settings.sh's WU_LASTING_250, given to compare.py --set, resolves to
    ``WarmupConfig.lstm_lasting(250)`` (the seed aside)."""
    import dataclasses
    import subprocess

    from rl_warmup.experiment.compare import compare_config_from_args, compare_parser
    from rl_warmup.experiment.grid import expand_grid
    from rl_warmup.warmup import WarmupConfig

    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        ["bash", "-c", f'source {repo / "scripts" / "study_settings.sh"} && printf "%s" "$WU_LASTING_250"'],
        capture_output=True, text=True, timeout=30, check=True,
    )
    argv = ["--cells", "lstm", "--conditions", "warmed", "--envs", "rl_warmup/PassiveTMaze-L250-v0", "--seeds", "0",
            "--output-dir", "unused", "--set", *res.stdout.split()]
    (run,) = expand_grid(compare_config_from_args(compare_parser().parse_args(argv)))
    config = run.config.warmup_config()
    assert dataclasses.replace(config, seed=None) == dataclasses.replace(WarmupConfig.lstm_lasting(250), seed=None)


def test_a_failed_warmup_counts_as_a_run_that_did_not_reach_and_other_failures_are_skipped(tmp_path: Path) -> None:
    env = "rl_warmup/PassiveTMaze-L50-v0"
    failed = _row("warmed", env, 1, math.nan, 10_000) | {
        "status": "failed", "error": "rl_warmup.warmup.WarmupError: warmup failed after 20 restart(s): ...", "num_timesteps": "",
        "final_success_rate": "", "vaa_after_warmup_actor": "", "vaa_final_actor": "", "wall_seconds": ""}
    crashed = _row("warmed", env, 2, math.nan, 10_000) | {"status": "failed", "error": "RuntimeError: disk full"}
    a = _comparison(tmp_path / "a", [_row("warmed", env, 0, 1000.0, 10_000), failed, crashed])
    runs = load_runs([str(a)])
    assert [(r.seed, r.reached, r.warmup_failed) for r in runs] == [(0, True, False), (1, False, True)]
    assert runs[1].num_timesteps == 10_000 and math.isnan(runs[1].final_success)
    text = ladder_markdown(runs)
    # 1 of 2 reached; the means are over the run that trained
    assert "| warmed gru | 50 | 2 (1 warmup failed) | 1/2 | 1.00 | 1k | 10k | 0.80 | 0.50 |" in text
    assert "never trained" in text
    from rl_warmup.experiment.ladder import plot_ladder

    plot_ladder(runs, tmp_path / "ladder.png")
    assert (tmp_path / "ladder.png").stat().st_size > 0


def test_points_of_earlier_reports_are_drawn_with_the_runs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """ladder_points.csv round-trips, and --points merges earlier sessions' points into the plot
    (a condition and length present in both: the runs' point wins)."""
    from rl_warmup.experiment.commands import main
    from rl_warmup.experiment.ladder import ladder_points, read_points, write_points

    env = "rl_warmup/PassiveTMaze-L100-v0"
    a = _comparison(tmp_path / "a", [_row("warmed", env, 0, 5000.0, 10_000), _row("warmed", env, 1, math.nan, 10_000)])
    points = ladder_points(load_runs([str(a)]))
    assert [(p.label, p.memory_length, p.runs, p.reached, p.final_success) for p in points] == [
        ("warmed gru", 100, 2, 1, 0.75)
    ]
    write_points(points, tmp_path / "p.csv")
    assert read_points(tmp_path / "p.csv") == points

    earlier = tmp_path / "earlier.csv"
    earlier.write_text(
        "# transcribed from an earlier report\n"
        "family,memory_length,label,runs,reached,final_success,source\n"
        "PassiveTMaze,100,warmed gru,5,5,1.0,old report\n"  # replaced by the runs' point
        "PassiveTMaze,1000,warmed gru,5,4,0.9,old report\n"
    )
    assert main(["ladder", str(a), "--points", str(earlier), "--output-dir", str(tmp_path / "out")]) == 0
    merged = {(p.label, p.memory_length): p for p in read_points(tmp_path / "out" / "ladder_points.csv")}
    assert (merged[("warmed gru", 100)].runs, merged[("warmed gru", 1000)].reached) == (2, 4)
    assert merged[("warmed gru", 1000)].source == "old report"
    assert (tmp_path / "out" / "ladder.png").stat().st_size > 0
    # points alone: a plot and the CSV, no table
    assert main(["ladder", "--points", str(earlier), "--output-dir", str(tmp_path / "only")]) == 0
    assert not (tmp_path / "only" / "ladder.md").exists() and (tmp_path / "only" / "ladder.png").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("family,memory_length,label,runs,reached,final_success\nPassiveTMaze,100,cold gru,3,4,0.5\n")
    assert main(["ladder", "--points", str(bad)]) == 2
    assert "reached = 4 is not within 0 .. runs = 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ladder"])
