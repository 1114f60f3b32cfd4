"""scripts/lstm_warmup_diagnosis.py: the target rule, resuming, and gathering seeds run as separate processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import load_script

CELL = {"source": "minigrid", "policy": "stock", "network": "1x32", "variant": "s03-ck32-t8fm3-m1000"}


def _rows(seed: int, vaa: float, move: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    key = {**CELL, "seed": seed}
    trace = [{**key, "step": step, "loss": -vaa, "vaa_star": vaa, "vaa_star_min": vaa, "settle": 1000,
              "grad_norm": 0.1, "forget_bias": 0.0} for step in (0, 99)]
    final = {**key, "vaa_star": vaa, "collapsed": False, "vaa_h_1000": vaa, "move_h_1000": move, "nonfinite_1000": 0,
             "horizon": math.inf, "curve": f"{vaa:.3f} {vaa:.3f}", "spread_0": 1.0, "spread_1000": 0.5,
             "best_step": -1, "restarts": 1, "seconds": 2.0}
    return trace, final


@pytest.fixture
def script(monkeypatch):  # type: ignore[no-untyped-def]
    diag = load_script("lstm_warmup_diagnosis")
    ran: list[int] = []
    outcomes = {0: (0.9, 1e-4), 1: (0.8, 2e-3), 2: (0.02, 1e-5), 3: (0.7, 5e-4)}

    def fake_run_one(source, policy, network, variant, seed, args):  # type: ignore[no-untyped-def]
        ran.append(seed)
        (Path(args.out) / "networks").mkdir(exist_ok=True)
        (Path(args.out) / "networks" / f"{source}_{policy}_{network}_{variant}_s{seed}.pt").write_text(str(seed))
        return _rows(seed, *outcomes[seed])

    monkeypatch.setattr(diag, "run_one", fake_run_one)
    return diag, ran


def test_the_target_needs_both_vaa_and_calm_outputs(script) -> None:  # type: ignore[no-untyped-def]
    diag, _ = script
    row = {"collapsed": "False", "vaa_h_1000": "0.5", "move_h_1000": "5e-4"}
    assert diag.good(row)
    assert not diag.good({**row, "move_h_1000": "2e-3"})  # still moving: not lasting
    assert not diag.good({**row, "vaa_h_1000": "0.05"})  # merged
    assert not diag.good({**row, "collapsed": "error", "vaa_h_1000": "nan", "move_h_1000": "nan"})  # WarmupError


def test_merge_gathers_split_seeds_without_running_them_again(script, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    diag, ran = script
    common = ["--sources", "minigrid", "--policies", "stock", "--networks", "1x32", "--variants", CELL["variant"],
              "--trace-settle", "0"]
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    assert diag.main([*common, "--seeds", "0", "1", "--out", str(a)]) == 0
    assert diag.main([*common, "--seeds", "2", "--out", str(b)]) == 0
    assert diag.main([*common, "--seeds", "0", "--out", str(a)]) == 0  # resumed: seed 0 is read back
    assert ran == [0, 1, 2]

    assert diag.main([*common, "--seeds", "0", "1", "2", "3", "--out", str(merged), "--merge", str(a), str(b)]) == 0
    assert ran == [0, 1, 2, 3]  # only the seed no directory had
    final = diag._read(merged / "final.csv")
    assert sorted(int(r["seed"]) for r in final) == [0, 1, 2, 3]
    assert sorted({int(r["seed"]) for r in diag._read(merged / "trace.csv")}) == [0, 1, 2, 3]
    assert sorted(f.name.split("_s")[-1] for f in (merged / "networks").iterdir()) == ["0.pt", "1.pt", "2.pt", "3.pt"]
    summary = (merged / "summary.md").read_text()
    assert "| 4 | 0/4 | 2/4 |" in summary  # seeds 0 and 3 last; 1 moves, 2 merged
    assert (merged / "curves.png").exists() and (merged / "trace.png").exists()

    # merging again copies nothing twice; seeds outside --seeds are not copied
    assert diag.merge(a, merged, {(*CELL.values(), "0"), (*CELL.values(), "1")}) == 0
    only = tmp_path / "only"
    assert diag.main([*common, "--seeds", "1", "--out", str(only), "--merge", str(a)]) == 0
    assert [r["seed"] for r in diag._read(only / "final.csv")] == ["1"]

    with pytest.raises(SystemExit, match=r"no final\.csv in .*missing"):  # checked before anything is copied
        diag.main([*common, "--seeds", "2", "--out", str(only), "--merge", str(b), str(tmp_path / "missing")])
    assert [r["seed"] for r in diag._read(only / "final.csv")] == ["1"]
    # a file written with other columns is refused, not appended to out of line
    (only / "final.csv").write_text("source,seed\nminigrid,1\n")
    with pytest.raises(SystemExit, match="write to a new --out"):
        diag.main([*common, "--seeds", "3", "--out", str(only)])


def test_trace_rows_of_refused_attempts_keep_no_settling_length_or_gradient_norm(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import argparse

    import torch

    from rl_warmup.cells import RecurrentNetwork
    from rl_warmup.warmup import WarmupResult

    diag = load_script("lstm_warmup_diagnosis")
    net = RecurrentNetwork("lstm", 1, 4, 1, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(diag, "build", lambda *a: (net, [torch.randn(5, 1, generator=torch.Generator().manual_seed(1))]))

    def fake_warmup(network, sequences, config, callback):  # type: ignore[no-untyped-def]
        for _attempt in range(2):  # one restart: the steps count from 0 again
            for step in range(config.steps):
                callback(step, 0.1, [0.5])
        return WarmupResult(settle_history=[s + 1 for s in range(config.steps)],
                            grad_norm_history=[10.0 + s for s in range(config.steps)], final_vaa_star=[0.5], restarts=1)

    monkeypatch.setattr(diag, "warmup", fake_warmup)
    args = argparse.Namespace(trace_every=50, trace_settle=0, out=str(tmp_path))
    trace, final = diag.run_one("copy", "-", "1x32", "paper", 0, args)
    saved = torch.load(tmp_path / "networks" / "copy_-_1x32_paper_s0.pt")  # the warmed weights, kept
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())
    assert [r["step"] for r in trace] == [0, 50, 99, 0, 50, 99]
    assert all("settle" not in r and "grad_norm" not in r for r in trace[:3])  # the refused attempt's
    assert [(r["settle"], r["grad_norm"]) for r in trace[3:]] == [(1, 10.0), (51, 60.0), (100, 109.0)]
    assert final["restarts"] == 1


def test_remeasure_measures_saved_networks_under_fresh_draws(monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import torch

    from rl_warmup.cells import RecurrentNetwork

    diag = load_script("lstm_warmup_diagnosis")
    warmed = RecurrentNetwork("lstm", 1, 4, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in warmed.parameters():
            p.mul_(3.0)
    sequences = [torch.randn(5, 1, generator=torch.Generator().manual_seed(1))]
    built = []

    def fresh(*cell):  # type: ignore[no-untyped-def]
        built.append(cell)
        return RecurrentNetwork("lstm", 1, 4, 1, generator=torch.Generator().manual_seed(9)), sequences

    monkeypatch.setattr(diag, "build", fresh)
    args = ["--sources", "copy", "--networks", "1x32", "--variants", "paper", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="no saved network"):
        diag.main([*args, "--seeds", "0", "--remeasure", "3"])
    (tmp_path / "networks").mkdir()
    torch.save(warmed.state_dict(), tmp_path / "networks" / "copy_-_1x32_paper_s0.pt")
    assert diag.main([*args, "--seeds", "0", "1", "--remeasure", "3"]) == 0  # seed 1 has no saved network
    rows = diag._read(tmp_path / "remeasure.csv")
    assert [r["draw"] for r in rows] == ["0", "1", "2"] and built == [("copy", "-", "1x32", 0)]
    # the saved weights, not the fresh ones, under the documented draws
    from rl_warmup.vaa import measure_vaa

    expected = measure_vaa(warmed, sequences, settle_steps=1000, n=100, generator=torch.Generator().manual_seed(20_001))
    assert float(rows[1]["vaa_h_1000"]) == pytest.approx(expected.vaa)
    assert float(rows[1]["move_h_1000"]) == pytest.approx(expected.movement)
    assert "copy - 1x32 paper 0: lasting under" in capsys.readouterr().out
    assert diag.main([*args, "--seeds", "0", "--remeasure", "3"]) == 0 and len(built) == 1  # read back, not redone
    assert diag.main([*args, "--seeds", "0", "--remeasure", "5"]) == 0 and len(built) == 2  # only draws 3 and 4 added
    assert [r["draw"] for r in diag._read(tmp_path / "remeasure.csv")] == ["0", "1", "2", "3", "4"]
    assert "0: lasting under" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(SystemExit):  # each seed has 1 000 draws of its own
        diag.main([*args, "--seeds", "0", "--remeasure", "1001"])
    assert not (tmp_path / "final.csv").exists()  # no warmup ran


def test_gradient_probe_compares_the_two_gradients(monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import torch

    from rl_warmup.cells import RecurrentNetwork

    diag = load_script("lstm_warmup_diagnosis")
    sequences = [torch.randn(6, 1, generator=torch.Generator().manual_seed(k)) for k in range(8)]

    def strong() -> RecurrentNetwork:
        # a slow integrator: forget and output gates open (bias 20), no recurrence, a weak cell input,
        # so that the states stay apart and still move after 1 000 steps (a random LSTM merges them)
        net = RecurrentNetwork("lstm", 1, 4, 1, generator=torch.Generator().manual_seed(0))
        lstm = next(m for m in net.modules() if isinstance(m, torch.nn.LSTM))
        with torch.no_grad():
            lstm.weight_hh_l0.zero_()
            lstm.bias_hh_l0.zero_()
            lstm.bias_ih_l0.copy_(torch.tensor([0.0] * 4 + [20.0] * 4 + [0.0] * 4 + [20.0] * 4))
            lstm.weight_ih_l0[8:12].copy_(0.01 * torch.sign(lstm.weight_ih_l0[8:12]))
        return net

    monkeypatch.setattr(diag, "build", lambda *a: (strong(), sequences))
    assert diag.main(["--sources", "copy", "--networks", "1x32", "--variants", "ck8", "--seeds", "0", "--out",
                      str(tmp_path), "--gradient-probe", "2"]) == 0
    rows = diag._read(tmp_path / "probe.csv")
    assert [r["settle"] for r in rows] == ["500", "1000"] and all(r["steps"] == "2" for r in rows)
    # at M = 500 the warmed integrator's states are apart and moving (by M = 1 000 they may have merged)
    assert float(rows[0]["grad_loss"]) > 0 and float(rows[0]["grad_movement"]) > 0 and float(rows[0]["movement"]) > 0
    assert -1.0 - 1e-5 <= float(rows[0]["cosine"]) <= 1.0 + 1e-5
    assert "after 2 steps, M = 500" in capsys.readouterr().out
    assert not (tmp_path / "final.csv").exists()
    # the probe's numbers against a direct computation on the same network and draws
    import dataclasses

    from rl_warmup.vaa import initial_states, pad_sequences, stars_and_movement
    from rl_warmup.warmup import WarmupConfig, warmup

    net = strong()
    config = dataclasses.replace(WarmupConfig(seed=0), **diag.VARIANTS["ck8"], steps=2, vaa_checkpoints=None,
                                 restart_threshold=1.0, max_restarts=0)
    warmup(net, sequences, config)
    padded, lengths = pad_sequences(sequences)
    gen = torch.Generator().manual_seed(30_000)
    states = initial_states(net, padded, gen, n=config.batch_size, lengths=lengths)
    stars, moves = stars_and_movement(net, states, 500, generator=gen, perturbations=8, movement=True)
    assert moves is not None
    params = list(net.parameters())
    g_loss = torch.cat([g.flatten() for g in torch.autograd.grad(((stars - 0.95) ** 2).mean(), params, retain_graph=True)])
    g_move = torch.cat([g.flatten() for g in torch.autograd.grad(moves.mean(), params)])
    assert float(rows[0]["grad_loss"]) == pytest.approx(float(g_loss.norm()), rel=1e-4)
    assert float(rows[0]["grad_movement"]) == pytest.approx(float(g_move.norm()), rel=1e-4)
    assert float(rows[0]["cosine"]) == pytest.approx(float(g_loss @ g_move / (g_loss.norm() * g_move.norm())), abs=1e-4)
    # probed cells are read back, not probed again
    assert diag.main(["--sources", "copy", "--networks", "1x32", "--variants", "ck8", "--seeds", "0", "--out",
                      str(tmp_path), "--gradient-probe", "2"]) == 0
    assert len(diag._read(tmp_path / "probe.csv")) == 2
    with pytest.raises(SystemExit):
        diag.main(["--out", str(tmp_path), "--gradient-probe", "2", "--remeasure", "2"])
