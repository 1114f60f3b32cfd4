"""scripts/train.py and scripts/compare.py end to end (subprocesses, tiny budgets), resuming after a
crash or Ctrl-C, clear failures on bad input, and the report's statistics.

Crashes are simulated with :class:`CrashingPassiveTMaze`, registered below: the scripts reach it
as ``test_experiment:rl_warmup_test/CrashingPassiveTMaze-v0`` (gymnasium imports this module). It
raises once the file named by ``RL_WARMUP_TEST_CRASH_WHEN`` exists (the run's first checkpoint),
so the crash happens at a known point: the first step after that checkpoint.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest

from envs.passive_tmaze import PassiveTMazeEnv

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "scripts" / "train.py")
COMPARE = str(ROOT / "scripts" / "compare.py")
CRASH_ENV = "test_experiment:rl_warmup_test/CrashingPassiveTMaze-v0"
CRASH_VAR = "RL_WARMUP_TEST_CRASH_WHEN"

# Tiny runs: 2 envs x 32 steps per rollout (64 timesteps), 256 timesteps in all.
TINY: dict[str, Any] = {
    "n_envs": 2,
    "n_steps": 32,
    "batch_size": 64,
    "n_epochs": 1,
    "hidden_size": 8,
    "warmup_steps": 3,
    "warmup_episodes": 4,
    "warmup_batch_size": 4,
    "vaa_n": 8,
    "vaa_settle_steps": 20,
    "vaa_star_settle_steps": 10,
    "vaa_every": 2,
    "eval_freq": 128,
    "eval_episodes": 4,
    "checkpoint_freq": 128,
    "total_timesteps": 256,
}


class CrashingPassiveTMaze(PassiveTMazeEnv):
    """Passive T-Maze that raises once a file matching ``$RL_WARMUP_TEST_CRASH_WHEN`` (a glob)
    exists, in the copy whose first reset seed is in ``$RL_WARMUP_TEST_CRASH_SEEDS`` (default 0)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if seed is not None and not hasattr(self, "first_seed"):
            self.first_seed = seed
        return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        pattern = os.environ.get(CRASH_VAR)
        seeds = {int(s) for s in os.environ.get("RL_WARMUP_TEST_CRASH_SEEDS", "0").split(",")}
        if pattern and getattr(self, "first_seed", None) in seeds and glob.glob(pattern):
            raise RuntimeError("simulated crash")
        return super().step(action)


if "rl_warmup_test/CrashingPassiveTMaze-v0" not in gymnasium.registry:
    gymnasium.register(
        "rl_warmup_test/CrashingPassiveTMaze-v0",
        entry_point="test_experiment:CrashingPassiveTMaze",
        kwargs={"length": 10},
        max_episode_steps=11,
    )


def _flags(settings: dict[str, Any]) -> list[str]:
    out = []
    for key, value in settings.items():
        out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RL_WARMUP_TEST_")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    full_env["OMP_NUM_THREADS"] = "1"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


# -- train.py ------------------------------------------------------------------------------------
def test_train_script_writes_every_file_and_skips_a_finished_run(tmp_path: Path) -> None:
    from rl_warmup.experiment import TrainConfig
    from rl_warmup.experiment.train import EVAL_COLUMNS

    args = [TRAIN, "--env-id", "rl_warmup/PassiveTMaze-v0", "--cell", "gru", "--warmup", "double",
            "--output-dir", "out", "--run-name", "run", "--no-progress-bar", *_flags(TINY)]
    proc = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "out" / "run"
    for name in ("config.yaml", "progress.csv", "evaluations.csv", "vaa.csv", "warmup.json", "result.json",
                 "model.zip", "checkpoints/last.zip", "checkpoints/state.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "error.txt").exists()

    # The saved configuration is the resolved one: command line over preset over defaults.
    config = TrainConfig.load(run / "config.yaml")
    assert (config.cell, config.warmup, config.hidden_size, config.total_timesteps) == ("gru", "double", 8, 256)
    assert config.prev_action_reward is False  # from the Passive T-Maze preset
    assert config.learning_rate == pytest.approx(1e-3)  # from the preset's default section

    assert _header(run / "evaluations.csv") == list(EVAL_COLUMNS)
    evals = _rows(run / "evaluations.csv")
    assert [int(r["timesteps"]) for r in evals] == [0, 128, 256]
    assert all(0.0 <= float(r["success_rate"]) <= 1.0 and int(r["episodes"]) == 4 for r in evals)
    assert all(float(r["mean_ep_length"]) == 11.0 for r in evals)  # Passive T-Maze L = 10

    progress = _header(run / "progress.csv")
    for key in ("eval/success_rate", "eval/mean_reward", "vaa/actor", "vaa/critic", "vaa_star/actor_l0",
                "warmup/actor_vaa_star_l0", "rollout/ep_rew_mean", "train/loss", "time/total_timesteps"):
        assert key in progress, key

    vaa = _rows(run / "vaa.csv")
    assert vaa[0]["timesteps"] == "0" and vaa[-1]["timesteps"] == "256"
    assert all(1 / 8 - 1e-9 <= float(r["vaa/actor"]) <= 1 for r in vaa)  # VAA lies in [1/n, 1]

    result = json.loads((run / "result.json").read_text())
    assert result["num_timesteps"] == 256 and result["status"] == "finished"
    assert result["final_success_rate"] == float(evals[-1]["success_rate"])
    assert result["vaa_after_warmup"]["actor"] == float(vaa[0]["vaa/actor"])
    assert set(result["warmup_vaa_star"]) == {"actor", "critic"}
    assert result["resumed_from"] == []

    # Same run again: refused without --resume, skipped (nothing rewritten) with it.
    mtime = (run / "result.json").stat().st_mtime_ns
    again = _run(args, tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    resumed = _run([*args, "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "result.json").stat().st_mtime_ns == mtime
    assert len(_rows(run / "evaluations.csv")) == 3


def test_train_script_resumes_after_a_crash_with_the_same_totals(tmp_path: Path) -> None:
    run = tmp_path / "out" / "run"
    args = [TRAIN, "--env-id", CRASH_ENV, "--warmup", "full", "--output-dir", "out", "--run-name", "run", "--no-progress-bar",
            "--no-tensorboard", *_flags({**TINY, "total_timesteps": 384})]
    crashed = _run(args, tmp_path, env={CRASH_VAR: str(run / "checkpoints" / "last.zip")})
    assert crashed.returncode != 0
    assert "simulated crash" in crashed.stderr
    assert "simulated crash" in (run / "error.txt").read_text()
    assert not (run / "result.json").exists()
    # The checkpoint of timestep 128 was the trigger; the crash came during the next rollout,
    # so the checkpoint saved on the way out is that same rollout start.
    assert json.loads((run / "checkpoints" / "state.json").read_text())["num_timesteps"] == 128
    warmed_at = (run / "warmup.json").stat().st_mtime_ns

    proc = _run([*args, "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["num_timesteps"] == 384 and result["resumed_from"] == [128]
    assert not (run / "error.txt").exists()
    steps = [int(r["timesteps"]) for r in _rows(run / "evaluations.csv")]
    assert steps == [0, 128, 256, 384]  # no evaluation lost or repeated
    assert (run / "warmup.json").stat().st_mtime_ns == warmed_at  # warmup not run again
    assert [int(r["timesteps"]) for r in _rows(run / "vaa.csv")] == [0, 128, 256, 384]


def test_ctrl_c_keeps_a_checkpoint_at_the_rollout_start_and_resume_ends_at_the_same_total(tmp_path: Path) -> None:
    from stable_baselines3.common.callbacks import BaseCallback

    from rl_warmup.experiment import TrainConfig, train
    from rl_warmup.sb3.ppo import FastRecurrentPPO, SequenceRolloutBuffer

    class CtrlC(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 150:
                raise KeyboardInterrupt
            return True

    seen: list[tuple[type, type]] = []

    class Seen(BaseCallback):  # which algorithm trains, fresh and resumed
        def _on_training_start(self) -> None:
            seen.append((type(self.model), type(self.model.rollout_buffer)))

        def _on_step(self) -> bool:
            return True

    config = TrainConfig.from_dict({**TINY, "vaa_every": 0, "warmup": "full", "output_dir": str(tmp_path),
                                    "progress_bar": False, "tensorboard": False})
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Seen(), CtrlC()])
    state = json.loads((config.run_dir / "checkpoints" / "state.json").read_text())
    assert state["num_timesteps"] == 128  # the start of the interrupted rollout
    assert not (config.run_dir / "error.txt").exists()
    with pytest.raises(FileExistsError, match="resume"):
        train(config)
    with pytest.raises(ValueError, match="n_epochs"):
        train(config.replace(resume=True, n_epochs=2))
    result = train(config.replace(resume=True), callbacks=[Seen()])
    assert result.num_timesteps == 256 and result.resumed_from == [128]
    assert seen == [(FastRecurrentPPO, SequenceRolloutBuffer)] * 2


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "vecnormalize"])
def test_interrupted_and_resumed_run_is_the_uninterrupted_run(tmp_path: Path, normalize: bool) -> None:
    """Ctrl-C mid-rollout, then resume: the same weights, evaluations, VAA measures and training
    log as a run that was never interrupted (environments and random generators restored)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from rl_warmup.experiment import TrainConfig, train
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    class CtrlC(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 166:  # inside the rollout that starts at 128
                raise KeyboardInterrupt
            return True

    settings = {**TINY, "total_timesteps": 320, "checkpoint_freq": 64, "warmup": "full", "normalize": normalize,
                "progress_bar": False, "tensorboard": False, "eval_freq": 64, "vaa_every": 2}
    whole = TrainConfig.from_dict({**settings, "output_dir": str(tmp_path / "whole")})
    cut = TrainConfig.from_dict({**settings, "output_dir": str(tmp_path / "cut")})
    train(whole)
    with pytest.raises(KeyboardInterrupt):
        train(cut, callbacks=[CtrlC()])
    assert (cut.run_dir / "checkpoints" / "last_state.pkl").exists()
    result = train(cut.replace(resume=True))
    assert result.resumed_from == [128] and result.num_timesteps == 320

    a = FastRecurrentPPO.load(whole.run_dir / "model.zip")
    b = FastRecurrentPPO.load(cut.run_dir / "model.zip")
    for (name, x), y in zip(a.policy.state_dict().items(), b.policy.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    for name in ("evaluations.csv", "vaa.csv"):
        rows_a, rows_b = _rows(whole.run_dir / name), _rows(cut.run_dir / name)
        assert len(rows_a) >= 4
        drop = {"wall_seconds", "vaa/seconds"}
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows_a] == [
            {k: v for k, v in r.items() if k not in drop} for r in rows_b
        ], name
    # the training log, row for row (sb3's time/iterations counts from the start of each learn
    # call; the other time/ keys and the .../seconds keys are wall-clock)
    def log(run_dir: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items()
                 if (not k.startswith("time/") or k == "time/total_timesteps") and not k.endswith("seconds")}
                for r in _rows(run_dir / "progress.csv")]

    assert len([r for r in log(whole.run_dir) if r.get("train/loss")]) == 5
    assert log(whole.run_dir) == log(cut.run_dir)


def test_scripts_fail_clearly_on_unknown_environment_or_cell(tmp_path: Path) -> None:
    for args, message in [
        ([TRAIN, "--env-id", "NoSuchEnv-v0"], "unknown environment id 'NoSuchEnv-v0'"),
        ([TRAIN, "--cell", "tcn"], "unknown cell 'tcn'"),
        ([COMPARE, "--envs", "rl_warmup/NoSuchMaze-v0", "--output-dir", "r"], "unknown environment id"),
        ([COMPARE, "--cells", "gru", "tcn", "--output-dir", "r"], "unknown cell(s) ['tcn']"),
    ]:
        proc = _run(args, tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "runs").exists()


# -- compare.py ----------------------------------------------------------------------------------
def test_compare_writes_the_report_keeps_going_after_a_failure_and_resumes(tmp_path: Path) -> None:
    from rl_warmup.experiment.grid import RESULT_COLUMNS

    report = tmp_path / "report"
    settings = {k: v for k, v in TINY.items() if k != "total_timesteps"}
    args = [COMPARE, "--envs", CRASH_ENV, "--cells", "gru", "--conditions", "cold", "warmed",
            "--seeds", "0", "100", "--total-timesteps", "256", "--output-dir", str(report), "--workers", "1",
            "--set", *(f"{k}={v}" for k, v in settings.items()), "tensorboard=false"]
    # One worker runs the grid in order: cold s0, cold s100, warmed s0, warmed s100. Envs seeded
    # 100 crash once cold s100 has a checkpoint: cold s100 right after its checkpoint of timestep
    # 128, warmed s100 at its first step (during warmup, so before any checkpoint).
    crash = {CRASH_VAR: str(report / "runs" / "*__cold__s100" / "checkpoints" / "last.zip"),
             "RL_WARMUP_TEST_CRASH_SEEDS": "100"}
    first = _run(args, tmp_path, env=crash)
    assert first.returncode == 1, first.stderr
    assert "FAILED: RuntimeError: simulated crash" in first.stdout

    rows = _rows(report / "results.csv")
    assert _header(report / "results.csv") == list(RESULT_COLUMNS)
    assert len(rows) == 4
    status = {(r["condition"], r["seed"]): r["status"] for r in rows}
    assert status == {("cold", "0"): "finished", ("cold", "100"): "failed",
                      ("warmed", "0"): "finished", ("warmed", "100"): "failed"}
    for r in rows:
        assert r["memory_length"] == "10.0"
        if r["status"] == "failed":
            assert r["error"] == "RuntimeError: simulated crash"
            assert r["final_success_rate"] == ""
        else:
            assert 0 <= float(r["final_success_rate"]) <= 1 and int(r["num_timesteps"]) == 256
            assert r["vaa_after_warmup_actor"] and r["vaa_final_actor"]
            assert (r["warmup_vaa_star_actor"] != "") == (r["condition"] == "warmed")
    summary = (report / "summary.md").read_text()
    assert "| gru | cold | 1/2 |" in summary and "| gru | warmed | 1/2 |" in summary
    assert "## Failed runs" in summary and "simulated crash" in summary
    for name in ("learning_curves.png", "vaa.png", "time_to_threshold.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"({name})" in summary

    finished = {r["run_dir"]: Path(r["run_dir"], "result.json").stat().st_mtime_ns for r in rows if r["status"] == "finished"}
    second = _run(args, tmp_path)
    assert second.returncode == 0, second.stderr
    rows = _rows(report / "results.csv")
    assert [r["status"] for r in rows] == ["finished"] * 4
    for r in rows:
        if r["run_dir"] in finished:  # not redone
            assert r["reused"] == "True" and r["resumed_from"] == ""
            assert Path(r["run_dir"], "result.json").stat().st_mtime_ns == finished[r["run_dir"]]
        else:  # resumed from the checkpoint kept by the crash, or started again without one
            assert r["reused"] == "False"
            assert r["resumed_from"] == ("128" if r["condition"] == "cold" else "")
    summary = (report / "summary.md").read_text()
    assert "| gru | cold | 2/2 |" in summary and "Failed runs" not in summary
    assert "2 reused from an earlier invocation" in summary


def test_compare_ctrl_c_stops_the_workers_and_keeps_their_checkpoints(tmp_path: Path) -> None:
    report = tmp_path / "report"
    settings = {k: v for k, v in TINY.items() if k != "total_timesteps"}
    args = [COMPARE, "--envs", "rl_warmup/PassiveTMaze-v0", "--cells", "gru", "--conditions", "cold",
            "--seeds", "0", "--workers", "1", "--total-timesteps", "1000000", "--output-dir", str(report),
            "--set", *(f"{k}={v}" for k, v in settings.items()), "tensorboard=false", "checkpoint_freq=64"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RL_WARMUP_TEST_")}
    # A suite started in the background (`cmd &`, nohup) ignores SIGINT, and children inherit that;
    # the driver stands for a command typed in a terminal, where Ctrl-C is delivered.
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = report / "runs" / "rl_warmup-PassiveTMaze-v0__gru__cold__s0" / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 180
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), "no checkpoint was written"
        seen = json.loads(state.read_text())["num_timesteps"]
        proc.send_signal(signal.SIGINT)  # as Ctrl-C, to the driver only: it must stop the worker
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert json.loads(state.read_text())["num_timesteps"] >= seen
    assert not (state.parent.parent / "result.json").exists()
    assert not (state.parent.parent / "error.txt").exists()


@pytest.mark.parametrize("script", ["train", "compare"])
def test_sigterm_checkpoints_like_ctrl_c(tmp_path: Path, script: str) -> None:
    """docker stop / SLURM preemption send SIGTERM: the run keeps its checkpoint, says how to
    resume, and the same command then finishes it."""
    settings = {k: v for k, v in TINY.items() if k != "total_timesteps"}
    if script == "train":
        run = tmp_path / "out" / "run"
        args = [TRAIN, "--env-id", "rl_warmup/PassiveTMaze-v0", "--cell", "gru", "--output-dir", "out",
                "--run-name", "run", "--no-progress-bar", "--no-tensorboard",
                *_flags({**settings, "checkpoint_freq": 64, "total_timesteps": 1_000_000})]
    else:
        run = tmp_path / "report" / "runs" / "rl_warmup-PassiveTMaze-v0__gru__cold__s0"
        args = [COMPARE, "--envs", "rl_warmup/PassiveTMaze-v0", "--cells", "gru", "--conditions", "cold",
                "--seeds", "0", "--workers", "1", "--total-timesteps", "1000000", "--output-dir", "report",
                "--set", *(f"{k}={v}" for k, v in settings.items()), "tensorboard=false", "checkpoint_freq=64"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RL_WARMUP_TEST_")}
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = run / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + 180
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), "no checkpoint was written"
        seen = json.loads(state.read_text())["num_timesteps"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "resume" in stderr and "Traceback" not in stderr
    assert json.loads(state.read_text())["num_timesteps"] >= seen
    assert not (run / "result.json").exists() and not (run / "error.txt").exists()


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_compare_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    """SIGKILL of the driver (the OOM killer) used to leave both workers running their queue and
    then blocked forever on a pipe; now they checkpoint their run and exit."""
    report = tmp_path / "report"
    settings = {k: v for k, v in TINY.items() if k != "total_timesteps"}
    args = [COMPARE, "--envs", "rl_warmup/PassiveTMaze-v0", "--cells", "gru", "--conditions", "cold",
            "--seeds", "0", "1", "2", "--workers", "2", "--total-timesteps", "1000000", "--output-dir",
            str(report), "--set", *(f"{k}={v}" for k, v in settings.items()), "tensorboard=false",
            "checkpoint_freq=64"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RL_WARMUP_TEST_")}
    proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs = report / "runs"
    states = [runs / f"rl_warmup-PassiveTMaze-v0__gru__cold__s{s}" / "checkpoints" / "state.json" for s in (0, 1)]
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not all(p.exists() for p in states) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(p.exists() for p in states), "the two runs did not start"
        workers = [p for p in _children(proc.pid) if _alive(p)]
        assert workers, "no worker process found"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 60
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "workers outlived their driver"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
    # the third run never started; the two running ones kept a checkpoint and no result
    assert not (runs / "rl_warmup-PassiveTMaze-v0__gru__cold__s2" / "result.json").exists()
    for state in states:
        assert json.loads(state.read_text())["num_timesteps"] > 0
        assert not (state.parent.parent / "result.json").exists()


def test_compare_on_a_local_ray_cluster(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    report = tmp_path / "report"
    settings = {k: v for k, v in TINY.items() if k != "total_timesteps"}
    proc = _run([COMPARE, "--backend", "ray", "--workers", "1", "--envs", "rl_warmup/PassiveTMaze-v0", "--cells",
                 "gru", "--conditions", "warmed", "--seeds", "0", "--total-timesteps", "128", "--output-dir",
                 str(report), "--set", *(f"{k}={v}" for k, v in settings.items()), "tensorboard=false"], tmp_path,
                # starting a local Ray cluster alone takes ~110 s next to two busy processes on 2 cores
                timeout=600)
    assert proc.returncode == 0, proc.stderr
    (row,) = _rows(report / "results.csv")
    assert row["status"] == "finished" and int(row["num_timesteps"]) == 128
    assert (Path(row["run_dir"]) / "evaluations.csv").exists()


# -- library pieces (in process) -----------------------------------------------------------------
def test_bootstrap_ci_is_exact_on_a_two_point_sample_and_seeded() -> None:
    from rl_warmup.experiment.report import bootstrap_band, bootstrap_ci

    # Means of two draws from {0, 1}: 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert bootstrap_ci([0.0, 1.0]) == (0.5, 0.0, 1.0)
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, math.nan, 3.0])[0] == 2.0  # NaN (e.g. not reached) is left out
    values = [0.1, 0.9, 0.4, 0.7, 0.5]
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert a == b and a[1] < a[0] < a[2]
    _, low, high = bootstrap_ci(values, confidence=0.5)
    assert low > bootstrap_ci(values)[1] and high < bootstrap_ci(values)[2]
    curves = np.array([[0.0, 1.0, np.nan], [1.0, 1.0, 1.0]])
    m, lo, hi = bootstrap_band(curves)
    np.testing.assert_allclose(m, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(lo, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(hi, [1.0, 1.0, 1.0])


def test_timesteps_to_threshold_is_the_first_evaluation_reaching_it() -> None:
    from rl_warmup.experiment.train import timesteps_to_threshold

    rows = [{"timesteps": "0", "success_rate": "0.5"}, {"timesteps": "100", "success_rate": "0.95"},
            {"timesteps": "200", "success_rate": "0.9"}, {"timesteps": "300", "success_rate": "1.0"}]
    assert timesteps_to_threshold(rows, 0.95) == 100
    assert timesteps_to_threshold(rows, 1.0) == 300
    assert math.isnan(timesteps_to_threshold(rows[:1], 0.95))
    assert math.isnan(timesteps_to_threshold([{"timesteps": "0", "success_rate": ""}], 0.5))


def test_presets_precedence_defaults_glob_exact_command_line(tmp_path: Path) -> None:
    from rl_warmup.experiment.config import TrainConfig, resolve_config

    presets = tmp_path / "p.yaml"
    presets.write_text(
        "default: {n_envs: 3, n_steps: 10, hidden_size: 16}\n"
        "'rl_warmup/PassiveTMaze-*': {n_steps: 20, gamma: 0.9}\n"
        "rl_warmup/PassiveTMaze-L50-v0: {n_steps: 51}\n"
    )
    base = {"presets": str(presets)}
    c = resolve_config({**base, "env_id": "rl_warmup/PassiveTMaze-L50-v0", "hidden_size": "24"})
    assert (c.n_envs, c.n_steps, c.gamma, c.hidden_size) == (3, 51, 0.9, 24)
    c = resolve_config({**base, "env_id": "rl_warmup/PassiveTMaze-v0"})
    assert (c.n_steps, c.gamma, c.hidden_size) == (20, 0.9, 16)
    c = resolve_config({**base, "env_id": "CartPole-v1"})
    assert (c.n_steps, c.gamma) == (10, TrainConfig.gamma)
    presets.write_text("default: {n_stepz: 10}\n")
    with pytest.raises(ValueError, match="unknown TrainConfig field 'n_stepz'"):
        resolve_config(base)


def test_package_presets_are_valid_for_every_registered_environment() -> None:
    import envs
    from rl_warmup.experiment.config import load_presets, resolve_config

    presets = load_presets()
    for env_id in envs.ENVIRONMENTS:
        config = resolve_config({"env_id": env_id})
        assert config.env_id == env_id
    for key in presets:
        assert key == "default" or any(c in key for c in "*?[") or key in envs.ENVIRONMENTS, key
    # Passive T-Maze: every episode fits in a rollout, whole episodes per rollout, and each
    # minibatch is a whole number of environments' rollouts.
    for env_id, info in envs.ENVIRONMENTS.items():
        if "PassiveTMaze" in env_id:
            config = resolve_config({"env_id": env_id})
            length = info.kwargs["length"] + 1
            assert config.n_steps % length == 0, env_id
            assert config.batch_size % config.n_steps == 0, env_id
            assert (config.n_steps * config.n_envs) % config.batch_size == 0, env_id


def test_every_setting_is_documented_in_help_and_config_round_trips(tmp_path: Path) -> None:
    import dataclasses

    from rl_warmup.experiment.cli import field_docs
    from rl_warmup.experiment.compare import compare_parser
    from rl_warmup.experiment.config import TrainConfig
    from rl_warmup.experiment.grid import CompareConfig
    from rl_warmup.experiment.train import train_parser
    from rl_warmup.warmup import WarmupConfig

    for cls, parser in ((TrainConfig, train_parser()), (CompareConfig, compare_parser())):
        docs = field_docs(cls)
        text = " ".join(parser.format_help().split())
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            assert f"--{f.name.replace('_', '-')}" in text
            assert docs[f.name].replace("``", "")[:30] in text
    # Every WarmupConfig field is reachable from the command line as warmup_<field>.
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {f"warmup_{f.name}" for f in dataclasses.fields(WarmupConfig)} <= names
    assert TrainConfig(seed=7).warmup_config() == WarmupConfig(seed=7)
    config = TrainConfig(cell="mgu", warmup="double", net_arch=(16, 16), warmup_seed=None)
    config.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == config
    with pytest.raises(ValueError, match="n_steps: expected an integer"):
        TrainConfig.from_dict({"n_steps": "many"})
    with pytest.raises(ValueError, match="unknown warmup mode"):
        TrainConfig(warmup="half")


def test_time_to_threshold_plot_has_one_panel_per_environment_family(tmp_path: Path) -> None:
    from rl_warmup.experiment import report

    assert report._family("rl_warmup/PassiveTMaze-L50-v0") == "PassiveTMaze"
    assert report._family("rl_warmup/PassiveTMaze-v0") == "PassiveTMaze"
    assert report._family("rl_warmup/TMaze-L25-v0") == "TMaze"
    assert report._family("CartPole-v1") == "CartPole"
    rows = [
        {
            "status": "finished",
            "env_id": env,
            "memory_length": length,
            "cell": "gru",
            "condition": condition,
            "seed": seed,
            "total_timesteps": budget,
            "timesteps_to_threshold": "" if condition == "cold" else budget / 2 + seed,
        }
        for env, length, budget in (
            ("rl_warmup/PassiveTMaze-v0", 10, 20000),
            ("rl_warmup/PassiveTMaze-L50-v0", 50, 60000),
            ("rl_warmup/TMaze-v0", 10, 50000),
        )
        for condition in ("cold", "warmed")
        for seed in (0, 1)
    ]
    path = tmp_path / "time.png"
    figure = report.plot_time_to_threshold(rows, path)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["PassiveTMaze", "TMaze"]
    assert figure.axes[0].get_xscale() == "log"  # two distinct lengths: a memory-length axis
    assert [t.get_text() for t in figure.axes[1].get_xticklabels()] == ["L = 10"]
    assert path.stat().st_size > 10_000


def test_stock_lstm_trains_sb3_contribs_policy_and_warms_it(tmp_path: Path) -> None:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

    from rl_warmup.experiment.config import resolve_config
    from rl_warmup.experiment.train import train
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    settings = {**TINY, "env_id": "rl_warmup/PassiveTMaze-v0", "cell": "stock_lstm", "warmup": "full",
                "output_dir": str(tmp_path), "progress_bar": False, "tensorboard": False, "threads": 1}
    config = resolve_config(settings)
    assert set(config.policy_kwargs()) == {"lstm_hidden_size", "n_lstm_layers", "enable_critic_lstm", "net_arch"}
    result = train(config)
    model = FastRecurrentPPO.load(config.run_dir / "model.zip")
    assert type(model.policy) is RecurrentActorCriticPolicy  # sb3-contrib's MlpLstmPolicy itself
    assert model.policy.lstm_actor.hidden_size == 8
    warmup = json.loads((config.run_dir / "warmup.json").read_text())["networks"]
    assert set(warmup) == {"actor", "critic"} and len(warmup["actor"]["final_vaa_star"]) == 1
    assert result.warmup_vaa_star["actor"] == warmup["actor"]["final_vaa_star"]
    with pytest.raises(ValueError, match="stock_lstm has none"):
        resolve_config({**settings, "warmup": "double"})


def test_stop_at_threshold_ends_the_run_at_its_first_solved_evaluation(tmp_path: Path) -> None:
    """A warmed GRU on the Passive T-Maze L = 10 solves it within its 20k-step preset: with
    ``stop_at_threshold`` the run ends at that evaluation, and the same run without it goes on."""
    from rl_warmup.experiment import train
    from rl_warmup.experiment.config import resolve_config
    from rl_warmup.experiment.train import read_csv

    base = {"env_id": "rl_warmup/PassiveTMaze-v0", "cell": "gru", "warmup": "full", "seed": 0, "vaa_every": 0,
            "progress_bar": False, "tensorboard": False, "threads": 1}
    stopped = train(resolve_config({**base, "stop_at_threshold": True, "output_dir": str(tmp_path / "a")}))
    assert stopped.timesteps_to_threshold < 20_000
    assert stopped.num_timesteps == stopped.timesteps_to_threshold  # nothing after the solved evaluation
    rows = read_csv(Path(stopped.run_dir) / "evaluations.csv")
    assert float(rows[-1]["success_rate"]) >= 0.95 and all(float(r["success_rate"]) < 0.95 for r in rows[:-1])
    assert (Path(stopped.run_dir) / "model.zip").exists() and (Path(stopped.run_dir) / "result.json").exists()

    budget = int(stopped.timesteps_to_threshold) + 2 * 1056  # two more evaluations
    full = train(resolve_config({**base, "total_timesteps": budget, "output_dir": str(tmp_path / "b")}))
    assert full.num_timesteps >= budget
    assert full.timesteps_to_threshold == stopped.timesteps_to_threshold  # the same run up to there


@pytest.mark.parametrize("cell", ["lstm", "stock_lstm"])
def test_lstm_forget_bias_is_set_in_every_lstm_of_the_policy(cell: str) -> None:
    import torch

    from rl_warmup.experiment.config import resolve_config
    from rl_warmup.experiment.train import build_model, make_env

    config = resolve_config({"env_id": "rl_warmup/PassiveTMaze-v0", "cell": cell, "hidden_size": 8, "lstm_forget_bias": 1.0})
    venv = make_env(config)
    model = build_model(config, venv)
    lstms = [m for m in model.policy.modules() if isinstance(m, torch.nn.LSTM)]
    assert len(lstms) >= 2  # actor and critic
    for lstm in lstms:
        assert torch.all(lstm.bias_ih_l0[8:16] == 1.0) and torch.all(lstm.bias_hh_l0[8:16] == 0.0)
        assert not torch.all(lstm.bias_ih_l0[:8] == 1.0)  # the other gates keep their initialisation
    model.learn(64)  # trains with it
    venv.close()
    with pytest.raises(ValueError, match="lstm_forget_bias applies to cell lstm"):
        resolve_config({"cell": "gru", "lstm_forget_bias": 1.0})


def test_warmed_reg_condition_adds_the_regulariser_in_compare_and_train(tmp_path: Path) -> None:
    from rl_warmup.experiment.grid import CompareConfig, expand_grid
    from rl_warmup.experiment.train import train_config_from_args, train_parser

    config = CompareConfig(cells=("lstm",), conditions=("warmed", "warmed-reg"), envs=("rl_warmup/PassiveTMaze-v0",),
                           seeds=(0,), output_dir=str(tmp_path / "out"))
    warmed, reg = expand_grid(config)
    assert (warmed.config.warmup, warmed.config.reg_coef) == ("full", 0.0)
    assert (reg.config.warmup, reg.config.reg_coef, reg.config.reg_settle_max) == ("full", 1.0, 1000)
    assert reg.config.run_name.endswith("__warmed-reg__s0") and reg.config.vaa_regularizer() is not None
    # --set overrides the condition's settings
    (over,) = expand_grid(CompareConfig(cells=("lstm",), conditions=("warmed-reg",), envs=("rl_warmup/PassiveTMaze-v0",),
                                        seeds=(0,), output_dir=str(tmp_path / "o2"), set=("reg_coef=0.5",)))
    assert (over.config.reg_coef, over.config.reg_settle_max) == (0.5, 1000)
    args = train_parser().parse_args(["--condition", "warmed-reg", "--reg-settle-max", "200"])
    trained = train_config_from_args(args)
    assert (trained.warmup, trained.reg_coef, trained.reg_settle_max) == ("full", 1.0, 200)
    with pytest.raises(ValueError, match="--condition cold means --warmup none"):
        train_config_from_args(train_parser().parse_args(["--condition", "cold", "--warmup", "full"]))
