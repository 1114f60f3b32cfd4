"""scripts/bench_policy.py on tiny budgets: the tables it prints come from real runs of both policies."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import pytest
import torch
from conftest import load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_policy")


def _tiny(bench: ModuleType) -> object:
    return dataclasses.replace(
        bench.BENCH_ENVS["tmaze50"], env_id="rl_warmup/TMaze-v0", n_steps=16, batch_size=128
    )


def test_benchmark_times_stock_and_ours(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    rows = bench.benchmark(["lstm"], [8], 256, _tiny(bench), seed=0, warmup_steps=128)
    assert [r.name for r in rows] == ["stock MlpLstmPolicy", "ours lstm (FastRecurrentPPO)"]
    for row in rows:
        assert row.steps == 256 and row.env == "TMaze-v0" and row.hidden == 8
        assert 0 < row.rollout_s + row.train_s <= row.total_s
        assert 0 < row.cpu_s <= row.total_s * 1.05  # one thread: no more CPU than wall time
    bench.print_table(rows)
    out = capsys.readouterr().out
    assert "1.00x" in out and "ours lstm" in out


def test_policy_step_times_every_path(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    bench.policy_step(["gru"], [8], _tiny(bench), seed=0, steps=5)
    lines = capsys.readouterr().out.splitlines()[1:]
    names = [line.rsplit(maxsplit=2)[0] for line in lines]
    assert names == [
        "stock MlpLstmPolicy (forward)",
        "ours gru rollout_step (separate)",
        "ours gru rollout_step (fused)",
    ]
    assert all(float(line.split()[-1]) > 0 for line in lines)


def test_cell_names_choose_the_sequence_path(bench: ModuleType) -> None:
    assert bench._split_cell("gru") == ("gru", "compiled")
    assert bench._split_cell("gru-python") == ("gru", "python")
    assert bench._split_cell("gru-autograd") == ("gru", "autograd")
    assert bench._split_cell("lstm-onednn") == ("lstm", "python")  # no compiled path: oneDNN's LSTM
    assert bench._split_cell("chrono_lstm") == ("chrono_lstm", "compiled")


def test_minibatch_times_every_sequence_path(bench: ModuleType) -> None:
    times = bench._minibatch_times(2, 5, 4, rounds=1, repeats=2)
    assert len(times) == 5  # GRU autograd, Python backward, compiled; LSTM oneDNN, compiled
    assert all(len(t) == 2 and min(t) > 0 for t in times)


def test_parity_records_each_run_and_resumes(bench: ModuleType, tmp_path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "parity.csv")
    hyper = dataclasses.replace(bench.BENCH_ENVS["cartpole"], n_steps=16, batch_size=128, n_epochs=1)
    bench.parity([0], 512, hyper, "lstm", out=out)  # episodes end within the budget: finite returns
    first = bench._parity_done(out)
    assert set(first) == {(0, "stock MlpLstmPolicy"), (0, "ours lstm (FastRecurrentPPO)")}
    assert all(value > 0 for value in first.values())
    capsys.readouterr()
    bench.parity([0], 512, hyper, "lstm", out=out)  # nothing left to run: both read back
    assert capsys.readouterr().out.count(f"(from {out})") == 2
    assert bench._parity_done(out) == first


def test_parity_track_same_start_same_actions(bench: ModuleType) -> None:
    """From stock's weights and random numbers the package's LSTM policy acts like stock's: the
    whole loop (rollouts with the fused step, VecNormalize, training) is the same algorithm."""
    hyper = dataclasses.replace(bench.BENCH_ENVS["cartpole"], n_steps=16, batch_size=64, n_epochs=2)
    same = bench.parity_track(0, 3, hyper)
    assert len(same) == 3
    assert same[0] == 1.0  # the first rollout precedes any update
    assert min(same) >= 0.99  # after two updates: at most a rare round-off flip


def test_parity_updates_agree_along_a_stock_run(bench: ModuleType) -> None:
    """Every compared rollout of a short stock run: the package's update equals stock's to round-off,
    and the comparisons leave the stock run as it would have been without them."""
    hyper = dataclasses.replace(bench.BENCH_ENVS["cartpole"], n_steps=16, batch_size=64, n_epochs=2)
    diffs, stock = bench.parity_updates(0, 5 * 8 * 16, hyper, every=2)
    assert len(diffs) == 3  # rollouts 0, 2 and 4
    assert max(diffs) < 1e-5
    reference = bench._make_model(None, 64, hyper, 0)
    reference.set_random_seed(0)
    reference.learn(5 * 8 * 16)
    for name, value in reference.policy.state_dict().items():
        assert torch.equal(value, stock.policy.state_dict()[name]), name
