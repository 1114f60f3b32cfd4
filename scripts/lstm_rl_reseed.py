#!/usr/bin/env python3
"""Is a warmed LSTM agent's RL outcome decided by its warmed network, or by the RL draws after it?

For every warmed run of the given ``compare.py`` output directories, the run is trained again from
the *same* warmed network (same settings and seed, so the same initialisation and warmup) with the
training draws re-seeded right after the warmup: PPO's sampling (torch, numpy, random) and the
training environments get seed ``rl_seed``; evaluation keeps its seeds. ``rl_seed = -1`` keeps
the run's own draws, i.e. reproduces the original run (a check)::

    python scripts/lstm_rl_reseed.py results/lstm_rl_ck8r --filter PassiveTMaze-L50-v0__lstm__ \\
        --rl-seeds 1000 1001 1002 --out results/lstm_rl_reseed

If the outcome is a property of the warmed network, each network reaches 95 % under all draws or
under none; if the draws decide, the reaching runs are spread across networks. Writes
``reseed.csv`` (one row per network and RL seed; rows already there are skipped, so the command
can be run again after an interruption) and prints one line per network.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from rl_warmup.experiment.config import TrainConfig
from rl_warmup.experiment.train import train


class Reseed(BaseCallback):
    """After the run's own callbacks (the warmup) at training start: new draws for training."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def _on_training_start(self) -> None:
        model = self.model
        model.set_random_seed(self.seed)  # torch, numpy, random, action space
        model.env.seed(self.seed)  # each training env gets seed + rank at its next reset
        model._last_obs = model.env.reset()
        model._last_episode_starts[:] = True

    def _on_step(self) -> bool:
        return True


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _append(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="compare.py output directories")
    parser.add_argument("--filter", default="", help="only run directories whose name contains this")
    parser.add_argument("--rl-seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "reseed.csv"
    done = {(r["run"], r["rl_seed"]) for r in _rows(table)}
    for d in args.dirs:
        for run_dir in sorted((d / "runs").iterdir()):
            if args.filter not in run_dir.name or "__warmed__" not in run_dir.name:
                continue
            original = _rows(run_dir / "evaluations.csv")
            for rl_seed in args.rl_seeds:
                if (run_dir.name, str(rl_seed)) in done:
                    continue
                config = TrainConfig.load(run_dir / "config.yaml")
                config = dataclasses.replace(
                    config,
                    output_dir=str(args.out / "runs"),
                    run_name=f"{run_dir.name}__rl{rl_seed}",
                    resume=True,
                    progress_bar=False,
                    tensorboard=False,
                    vaa_every=0,
                )
                result = train(config, callbacks=[Reseed(rl_seed)] if rl_seed >= 0 else [])
                reached = result.timesteps_to_threshold
                row = {
                    "run": run_dir.name,
                    "rl_seed": rl_seed,
                    "reached": int(not math.isnan(reached)),
                    "timesteps_to_threshold": "" if math.isnan(reached) else int(reached),
                    "final_success": f"{result.final_success_rate:.3f}",
                    "original_final_success": original[-1]["success_rate"] if original else "",
                    "seconds": f"{result.wall_seconds:.0f}",
                }
                _append(table, row)
                print(f"{run_dir.name} rl_seed {rl_seed}: reached={row['reached']} final={row['final_success']}",
                      flush=True)
    by_run: dict[str, list[dict[str, str]]] = {}
    for r in _rows(table):
        by_run.setdefault(r["run"], []).append(r)
    for run, rows in by_run.items():
        hits = sum(int(r["reached"]) for r in rows)
        print(f"{run}: reached 95 % under {hits}/{len(rows)} draws")
    plot(args.out, args.dirs, by_run)
    return 0


def plot(out: Path, dirs: list[Path], by_run: dict[str, list[dict[str, str]]]) -> None:
    """``reseed.png``: the success-rate curves of every network (one panel each), its own run in
    black and the re-seeded ones in colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(by_run)
    if not runs:
        return
    cols = min(5, len(runs))
    rows_n = (len(runs) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.4 * rows_n), sharey=True, squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=False):
        original = next((d / "runs" / run for d in dirs if (d / "runs" / run).exists()), None)
        curves = [("own draws", original, "black")] if original is not None else []
        curves += [(f"rl_seed {r['rl_seed']}", out / "runs" / f"{run}__rl{r['rl_seed']}", None) for r in by_run[run]]
        for label, path, color in curves:
            evals = _rows(path / "evaluations.csv") if path is not None else []
            if evals:
                ax.plot([float(e["timesteps"]) / 1000 for e in evals], [float(e["success_rate"]) for e in evals],
                        label=label, color=color, lw=1.8 if color else 1.0)
        hits = sum(int(r["reached"]) for r in by_run[run])
        env, cell, seed = run.split("__")[0].replace("rl_warmup-", ""), run.split("__")[1], run.split("__")[-1]
        ax.set_title(f"{env} {cell} {seed}: {hits}/{len(by_run[run])}", fontsize=8)
        ax.axhline(0.95, color="grey", lw=0.5, ls=":")
        ax.set_xlabel("timesteps (k)", fontsize=8)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("success rate")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "reseed.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
