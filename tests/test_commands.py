"""The ``rl-warmup`` console command (and ``python -m rl_warmup``), run outside a clone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from rl_warmup.experiment import commands

# the tiny run of test_experiment.py
TINY = [
    "--n-envs", "2", "--n-steps", "32", "--batch-size", "64", "--n-epochs", "1", "--hidden-size", "8",
    "--warmup-steps", "3", "--warmup-episodes", "4", "--warmup-batch-size", "4", "--vaa-n", "8",
    "--vaa-settle-steps", "20", "--vaa-star-settle-steps", "10", "--vaa-every", "2", "--eval-freq", "128",
    "--eval-episodes", "4", "--checkpoint-freq", "128", "--total-timesteps", "256",
    "--no-progress-bar", "--no-tensorboard",
]


def _module(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rl_warmup", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_console_script_is_declared() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("rl-warmup") == "rl_warmup.experiment.commands:main"


def test_train_from_outside_a_clone(tmp_path: Path) -> None:
    res = _module(
        ["train", "--env-id", "rl_warmup/PassiveTMaze-v0", "--warmup", "full", "--output-dir", "out",
         "--run-name", "r", *TINY],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "finished 256 timesteps" in res.stdout
    result = json.loads((tmp_path / "out" / "r" / "result.json").read_text())
    assert result["num_timesteps"] == 256


def test_usage_and_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    assert commands.main([]) == 2
    assert "commands:" in capsys.readouterr().out
    assert commands.main(["--help"]) == 0
    assert commands.main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err
    # errors name the command as the user typed it
    assert commands.main(["train", "--device", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rl-warmup train: error:")


def test_every_command_has_help(tmp_path: Path) -> None:
    for name in commands.COMMANDS:
        res = _module([name, "--help"], cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith(f"usage: rl-warmup {name}")


def test_report_only_calls_runs_without_result_missing_not_failed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = commands.main(
        ["compare", "--report-only", "--cells", "gru", "--conditions", "cold", "--envs", "rl_warmup/PassiveTMaze-v0",
         "--seeds", "0", "1", "--output-dir", str(tmp_path / "cmp")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "2 run(s) of the grid have no result yet; run the command without --report-only" in err
    assert "failed" not in err
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",missing," in r for r in rows[1:])
