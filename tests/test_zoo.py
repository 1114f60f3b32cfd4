"""rl-baselines3-zoo with the package's hyperparameter modules: the real ``rl_zoo3`` on a tiny
budget trains a warmed agent, ``enjoy`` loads it, and an Optuna run keeps the warmup on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rl_warmup.zoo import VARIANTS, entry, zoo_hyperparams

rl_zoo3 = pytest.importorskip("rl_zoo3")

ENV = "rl_warmup/PassiveTMaze-v0"
TINY = ["-params", "n_envs:2", "n_steps:32", "batch_size:64", "n_epochs:1"]


def _zoo(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_covers_every_package_id_with_plain_values(variant: str) -> None:
    import envs

    table = zoo_hyperparams(variant)
    assert set(envs.ENVIRONMENTS) | {"default"} == set(table)
    yaml.safe_dump(table)  # the zoo saves them in config.yml: plain values only
    warmed = variant.startswith("warmed")
    callbacks = [next(iter(c)) for c in table[ENV]["callback"]]
    assert ("rl_warmup.sb3.warmup.WarmupCallback" in callbacks) == warmed
    assert "rl_warmup.sb3.callbacks.VAALoggerCallback" in callbacks


def test_lstm_variant_uses_the_lstm_warmup_setting() -> None:
    (warmup,) = (c for c in entry(ENV, "warmed_lstm")["callback"] if "rl_warmup.sb3.warmup.WarmupCallback" in c)
    config = warmup["rl_warmup.sb3.warmup.WarmupCallback"]["config"]
    assert config["grad_clip"] == 1.0 and config["perturbations"] == 8
    assert entry(ENV, "warmed_lstm")["n_epochs"] == entry(ENV, "cold_lstm")["n_epochs"] == 20


def test_zoo_trains_a_warmed_agent_and_enjoy_loads_it(tmp_path: Path) -> None:
    train = _zoo(
        ["rl_zoo3.train", "--algo", "ppo_lstm", "--env", ENV, "--gym-packages", "envs", "--conf-file",
         "rl_warmup.zoo.warmed_gru", "--n-timesteps", "256", "--eval-freq", "128", "--eval-episodes", "2",
         "--seed", "0", "-f", "logs", *TINY],
        tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "actor_vaa_star_l0" in train.stdout  # the warmup ran and logged through SB3 (warmup/...)
    run = tmp_path / "logs" / "ppo_lstm" / "rl_warmup-PassiveTMaze-v0_1"
    assert (run / "rl_warmup-PassiveTMaze-v0.zip").is_file()
    saved = (run / "rl_warmup-PassiveTMaze-v0" / "config.yml").read_text()  # the zoo's own YAML (OrderedDict tags)
    assert "RecurrentCellPolicy" in saved and "WarmupCallback" in saved
    enjoy = _zoo(
        ["rl_zoo3.enjoy", "--algo", "ppo_lstm", "--env", ENV, "--gym-packages", "envs", "-f", "logs",
         "--exp-id", "1", "-n", "30", "--no-render", "--deterministic"],
        tmp_path,
    )
    assert enjoy.returncode == 0, enjoy.stderr[-3000:]
    assert "Mean reward" in enjoy.stdout


@pytest.mark.slow  # the zoo's sampler draws n_steps up to 2048: minutes per trial on a CPU
def test_optuna_trials_run_with_the_warmup_on(tmp_path: Path) -> None:
    # the zoo silences SB3's logger in trials: a verbose WarmupCallback says when it ran
    (tmp_path / "conf.py").write_text(
        "from rl_warmup.zoo import zoo_hyperparams\n"
        "hyperparams = zoo_hyperparams('warmed_gru')\n"
        "for entry in hyperparams.values():\n"
        "    entry['callback'][0]['rl_warmup.sb3.warmup.WarmupCallback']['verbose'] = 1\n"
    )
    res = _zoo(
        ["rl_zoo3.train", "--algo", "ppo_lstm", "--env", ENV, "--gym-packages", "envs", "--conf-file",
         "conf.py", "-optimize", "--n-trials", "2", "--n-timesteps", "256", "--n-jobs", "1",
         "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "2", "--seed", "0",
         "-f", "logs", *TINY],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("Warmup of the actor") == 2  # each trial warmed its model
    assert "Number of finished trials:  2" in res.stdout  # the zoo prints it with two spaces
