"""Bad settings are refused before any work starts, with one line saying what is allowed.

Each test here is a probe of the reliability issue that failed before its fix: a setting that was
accepted silently, or failed late inside torch or SB3 with a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

from rl_warmup.experiment.config import TrainConfig, check_runtime
from rl_warmup.experiment.grid import CompareConfig, expand_grid
from rl_warmup.sb3.warmup import WarmupCallback
from rl_warmup.warmup import WarmupConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch_size", 1, "batch_size must be >= 2"),
        ("gamma", 2.0, r"gamma must lie in \(0, 1\]"),
        ("gamma", 0.0, r"gamma must lie in \(0, 1\]"),
        ("gae_lambda", -0.1, r"gae_lambda must lie in \[0, 1\]"),
        ("learning_rate", 0.0, "learning_rate must lie in"),
        ("clip_range", -0.2, "clip_range must lie in"),
        ("ent_coef", -0.01, "ent_coef must lie in"),
        ("max_grad_norm", 0.0, "max_grad_norm must lie in"),
        ("threads", -1, "threads must be >= 0"),
        ("device", "bogus", "device must be auto, cpu, cuda, cuda:N or mps, got 'bogus'"),
    ],
)
def test_train_config_refuses_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_train_config_accepts_the_edges():
    TrainConfig(batch_size=2, gamma=1.0, gae_lambda=0.0, ent_coef=0.0, device="cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="no CUDA device; pass --device cpu"):
        check_runtime(TrainConfig(device="cuda", output_dir=str(tmp_path), tensorboard=False))


def test_missing_tensorboard_is_one_error_before_any_run(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match="pip install tensorboard"):
        check_runtime(TrainConfig(output_dir=str(tmp_path), tensorboard=True))
    check_runtime(TrainConfig(output_dir=str(tmp_path), tensorboard=False))
    # compare.py checks every run first: one error, no run started
    from rl_warmup.experiment.compare import compare

    config = CompareConfig(
        cells=("gru",), conditions=("cold",), envs=("rl_warmup/PassiveTMaze-v0",), seeds=(0,),
        output_dir=str(tmp_path / "cmp"), set=("tensorboard=true",),
    )
    with pytest.raises(ValueError, match="pip install tensorboard"):
        compare(config)
    assert not (tmp_path / "cmp" / "runs").exists()


def test_output_dir_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        with pytest.raises(ValueError, match="is a file, not a directory"):
            check_runtime(TrainConfig(output_dir=str(out), tensorboard=False))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 2.5}, "WarmupConfig.steps must be an integer, got 2.5"),
        ({"lr": "1e-2"}, "WarmupConfig.lr must be a number"),
        ({"keep_best": 1}, "WarmupConfig.keep_best must be True or False"),
        ({"vaa_checkpoints": (100, 2.5)}, "WarmupConfig.vaa_checkpoints must be a sequence of integers"),
    ],
)
def test_warmup_config_refuses_wrong_types(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupConfig(**kwargs)


def test_warmup_config_takes_numpy_scalars_as_python_ones():
    import numpy as np

    config = WarmupConfig(steps=np.int64(3), lr=np.float32(0.5))
    assert type(config.steps) is int and type(config.lr) is float


def test_warmup_callback_validates_a_dict_at_construction():
    with pytest.raises(ValueError, match="lr and epsilon must be > 0"):
        WarmupCallback({"lr": -1})
    assert WarmupCallback({"lr": 0.5, "steps": 3}).config == WarmupConfig(lr=0.5, steps=3)
    with pytest.raises(TypeError, match="must be a WarmupConfig"):
        WarmupCallback(0.01)  # type: ignore[arg-type]


def test_repeated_grid_entries_run_once_with_a_warning(tmp_path):
    config = CompareConfig(
        cells=("gru", "gru"), conditions=("cold",), envs=("rl_warmup/PassiveTMaze-v0",), seeds=(0, 0, 1),
        output_dir=str(tmp_path),
    )
    with pytest.warns(UserWarning, match=r"repeated grid entries run once \(cells: gru; seeds: 0\)"):
        runs = expand_grid(config)
    names = [r.config.run_name for r in runs]
    assert len(names) == len(set(names)) == 2


def test_train_resume_of_a_missing_run_is_an_error(tmp_path, capsys):
    import train as train_script

    code = train_script.main(
        ["--env-id", "rl_warmup/PassiveTMaze-v0", "--output-dir", str(tmp_path), "--run-name", "nope", "--resume"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no run in" in err and "drop --resume" in err
    assert not (tmp_path / "nope").exists()


def test_train_script_bad_device_is_one_line(capsys):
    import train as train_script

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_script.main(["--device", "bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device must be" in err[0]


# -- resume: damaged logs and corrupt files ------------------------------------------------------
TINY = {
    "n_envs": 2, "n_steps": 32, "batch_size": 64, "n_epochs": 1, "hidden_size": 8, "warmup_steps": 3,
    "warmup_episodes": 4, "warmup_batch_size": 4, "vaa_n": 8, "vaa_settle_steps": 20,
    "vaa_star_settle_steps": 10, "eval_episodes": 4, "total_timesteps": 320, "checkpoint_freq": 64,
    "warmup": "full", "progress_bar": False, "tensorboard": False, "eval_freq": 64, "vaa_every": 2,
}


def _interrupted(output_dir: Path):
    """A run stopped by Ctrl-C inside the rollout that starts at 128 (checkpoint at 128)."""
    from stable_baselines3.common.callbacks import BaseCallback

    from rl_warmup.experiment import train

    class CtrlC(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 166:
                raise KeyboardInterrupt
            return True

    config = TrainConfig.from_dict({**TINY, "output_dir": str(output_dir)})
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[CtrlC()])
    return config


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows without the wall-clock columns (and SB3's time/ keys, counted per learn call)."""
    import csv

    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if not k.endswith("seconds") and not k.startswith("time/")}
                for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def interrupted_and_whole(tmp_path_factory):
    from rl_warmup.experiment import train

    root = tmp_path_factory.mktemp("resume")
    whole = TrainConfig.from_dict({**TINY, "output_dir": str(root / "whole")})
    train(whole)
    cut = _interrupted(root / "cut")
    return whole, cut


def _copy(config: TrainConfig, to: Path) -> TrainConfig:
    import shutil

    shutil.copytree(config.run_dir, to / config.run_dir.name)
    return config.replace(output_dir=str(to))


def test_resume_restores_torn_and_cut_logs_from_the_checkpoint(interrupted_and_whole, tmp_path):
    """Truncated evaluations.csv / progress.csv of an interrupted run used to be kept as they
    were (a torn row kept, rows lost for good); now they come back whole, with a warning."""
    from rl_warmup.experiment import train

    whole, cut = interrupted_and_whole
    run = _copy(cut, tmp_path)
    for name, keep in (("evaluations.csv", 0.5), ("progress.csv", 0.6)):
        path = run.run_dir / name
        text = path.read_text()
        path.write_text(text[: int(len(text) * keep)])  # cut mid-row: rows lost and one torn
    with pytest.warns(RuntimeWarning, match="restored from the checkpoint's copy") as caught:
        result = train(run.replace(resume=True))
    assert {str(w.message).split(":")[0] for w in caught} >= {
        str(run.run_dir / "evaluations.csv"), str(run.run_dir / "progress.csv")
    }
    assert result.num_timesteps == 320
    for name in ("evaluations.csv", "vaa.csv", "progress.csv"):
        assert _csv_rows(run.run_dir / name) == _csv_rows(whole.run_dir / name), name


def test_resume_without_log_copies_drops_a_torn_row_with_a_warning(interrupted_and_whole, tmp_path):
    from rl_warmup.experiment import train

    _, cut = interrupted_and_whole
    run = _copy(cut, tmp_path)
    import shutil

    shutil.rmtree(run.run_dir / "checkpoints" / "logs")  # a checkpoint of an older version
    path = run.run_dir / "evaluations.csv"
    path.write_text(path.read_text() + "999,0.5,0.1")  # a torn last row
    with pytest.warns(RuntimeWarning, match="evaluations.csv: dropped 1 torn row"):
        train(run.replace(resume=True))
    assert "999" not in [r["timesteps"] for r in _csv_rows(path)]


@pytest.mark.parametrize(
    "name",
    ["checkpoints/state.json", "checkpoints/last.zip", "checkpoints/last_state.pkl", "vaa_sequences.pt", "config.yaml"],
)
def test_a_corrupt_file_is_named_and_nothing_is_rewritten(interrupted_and_whole, tmp_path, name):
    from rl_warmup.experiment import train
    from rl_warmup.experiment.checkpoint import CorruptRunError

    _, cut = interrupted_and_whole
    run = _copy(cut, tmp_path)
    path = run.run_dir / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}
    with pytest.raises(CorruptRunError, match=f"{path} is damaged") as caught:
        train(run.replace(resume=True))
    assert "\n" not in str(caught.value) and ("delete" in str(caught.value))
    after = {p: p.read_bytes() for p in run.run_dir.rglob("*") if p.is_file()}
    assert after == before  # validation comes before any rewrite


def test_a_corrupt_result_json_fails_that_run_only_and_the_report_is_built(tmp_path):
    from rl_warmup.experiment.compare import compare

    settings = {k: v for k, v in TINY.items() if k not in ("total_timesteps", "warmup", "progress_bar")}
    config = CompareConfig(
        cells=("gru",), conditions=("cold",), envs=("rl_warmup/PassiveTMaze-v0",), seeds=(0, 1),
        output_dir=str(tmp_path), total_timesteps=128, workers=1,
        set=tuple(f"{k}={v}" for k, v in settings.items()),
    )
    compare(config)
    result = tmp_path / "runs" / "rl_warmup-PassiveTMaze-v0__gru__cold__s0" / "result.json"
    result.write_text(result.read_text()[:40])
    outcome = compare(config)
    status = {r["seed"]: (r["status"], r["error"]) for r in outcome.rows}
    assert status[1][0] == "finished"
    assert status[0][0] == "failed" and f"{result} is damaged" in status[0][1]
    assert (tmp_path / "summary.md").exists() and (tmp_path / "results.csv").exists()


def test_learning_leaves_no_sb3_folder_in_the_system_temp_directory(monkeypatch):
    """SB3 makes an empty SB3-<date> folder in the system temp directory at every learn() of a
    model whose logger writes no file (88 of them after an afternoon of tests)."""
    from conftest import sb3_temp_folders

    from rl_warmup.sb3.policies import RecurrentCellPolicy
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    monkeypatch.delenv("SB3_LOGDIR", raising=False)
    before = sb3_temp_folders()
    model = FastRecurrentPPO(RecurrentCellPolicy, "CartPole-v1", n_steps=16, batch_size=16, n_epochs=1,
                             policy_kwargs={"cell": "gru", "lstm_hidden_size": 4}, seed=0)
    model.learn(32)
    model.learn(16, reset_num_timesteps=False)
    assert sb3_temp_folders() == before
    assert model.logger.get_dir() is None  # a logger without a folder


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_vaa_of_non_finite_inputs_is_refused(bad):
    from rl_warmup.cells import RecurrentNetwork
    from rl_warmup.vaa import measure_vaa, measure_vaa_star

    torch.manual_seed(0)
    network = RecurrentNetwork("gru", 3, 8)
    sequences = torch.full((4, 5, 3), bad)
    for measure in (measure_vaa, measure_vaa_star):
        with pytest.raises(ValueError, match="non-finite value"):
            measure(network, sequences, settle_steps=10, n=4)
    sequences = torch.zeros(4, 5, 3)
    sequences[1, 2, 0] = bad  # one bad value is enough
    with pytest.raises(ValueError, match="hold 1 non-finite"):
        measure_vaa(network, [s for s in sequences], settle_steps=10, n=4)


def test_vaa_warns_when_states_diverge_while_settling():
    from rl_warmup.cells import RecurrentNetwork
    from rl_warmup.vaa import measure_vaa

    torch.manual_seed(0)
    network = RecurrentNetwork("gru", 3, 8)
    with torch.no_grad():
        for p in network.parameters():
            p.fill_(float("inf"))  # inf * 0 in the first step: NaN states
    with pytest.warns(RuntimeWarning, match="became non-finite while settling"):
        measure_vaa(network, torch.ones(4, 5, 3), settle_steps=10, n=4)


# -- one process per run directory -------------------------------------------------------------
def test_a_run_directory_is_locked_by_a_live_process_and_a_stale_lock_is_taken_over(tmp_path):
    import json
    import os
    import socket
    import subprocess

    from rl_warmup.experiment import train
    from rl_warmup.experiment.lock import DirectoryLock, LockedError

    config = TrainConfig.from_dict({**TINY, "total_timesteps": 64, "output_dir": str(tmp_path)})
    lock = config.run_dir / ".lock"
    # as another trainer would hold it
    with DirectoryLock(lock, "the run"), pytest.raises(LockedError, match="already locked by this process"):
        train(config)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid}))
        with pytest.raises(LockedError, match=f"in use by process {sleeper.pid}"):
            train(config)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (config.run_dir / "config.yaml").exists()  # nothing was started
    with pytest.warns(RuntimeWarning, match="no longer runs"):
        result = train(config)  # the dead process's lock is taken over
    assert result.num_timesteps == 64 and not lock.exists()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": os.getpid()}))
    with pytest.raises(LockedError, match=r"on host elsewhere.*delete the lock file"):
        train(config.replace(resume=True))


def test_a_second_compare_on_the_same_output_directory_is_refused(tmp_path):
    import json
    import socket
    import subprocess

    from rl_warmup.experiment.compare import compare
    from rl_warmup.experiment.lock import LockedError

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".compare.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": sleeper.pid}))
        config = CompareConfig(cells=("gru",), conditions=("cold",), envs=("rl_warmup/PassiveTMaze-v0",),
                               seeds=(0,), output_dir=str(tmp_path), total_timesteps=64)
        with pytest.raises(LockedError, match=f"comparison in {tmp_path} is in use by process {sleeper.pid}"):
            compare(config)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / "runs").exists()


def test_a_signal_during_a_checkpoint_write_waits_for_the_write(tmp_path, monkeypatch):
    """A SIGTERM that landed inside torch.save failed the run ("unexpected pos"); now it takes
    effect once the checkpoint is complete."""
    import os
    import signal

    from rl_warmup.experiment import train
    from rl_warmup.experiment.checkpoint import read_checkpoint
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    real_save = FastRecurrentPPO.save
    calls = []

    def save_with_a_signal_inside(self, path, *args, **kwargs):
        calls.append(("start", self.num_timesteps))
        if len(calls) == 3:  # the second checkpoint: SIGTERM arrives while it is written
            os.kill(os.getpid(), signal.SIGTERM)
        real_save(self, path, *args, **kwargs)
        calls.append(("end", self.num_timesteps))

    monkeypatch.setattr(FastRecurrentPPO, "save", save_with_a_signal_inside)
    config = TrainConfig.from_dict({**TINY, "output_dir": str(tmp_path)})
    try:
        with pytest.raises(KeyboardInterrupt):
            train(config)
    finally:
        signal.signal(signal.SIGTERM, previous)
    (_, first), _, (_, second) = calls[:3]
    assert calls[3] == ("end", second)  # the interrupted write was finished before the signal acted
    checkpoint = read_checkpoint(config.run_dir / "checkpoints")  # complete, readable
    assert checkpoint.num_timesteps == second > first
    assert not (config.run_dir / "error.txt").exists()


def test_report_shows_each_run_with_the_budget_it_was_given(tmp_path):
    """Runs trained with another --total-timesteps than the invocation that reports them (a
    --report-only, or cold runs given 10x the warmed budget in the same directory) keep their own
    budget in results.csv, which the plots draw the not-reached markers at."""
    import csv

    from rl_warmup.experiment.compare import compare

    small = {k: v for k, v in TINY.items() if k not in ("total_timesteps", "warmup", "progress_bar", "tensorboard")}
    sets = (*(f"{k}={v}" for k, v in small.items()), "tensorboard=false", "progress_bar=false")
    common = dict(cells=("gru",), envs=("rl_warmup/PassiveTMaze-v0",), seeds=(0,), output_dir=str(tmp_path), workers=1,
                  set=sets)
    compare(CompareConfig(conditions=("cold",), total_timesteps=128, **common))
    compare(CompareConfig(conditions=("warmed",), total_timesteps=64, **common))
    compare(CompareConfig(conditions=("cold", "warmed"), total_timesteps=999, report_only=True, **common))
    rows = {r["condition"]: r for r in csv.DictReader((tmp_path / "results.csv").open())}
    assert float(rows["cold"]["total_timesteps"]) == 128 and float(rows["warmed"]["total_timesteps"]) == 64
