"""How far apart a warmed actor keeps the two T-Maze cues, and whether that predicts RL success.

For every run of the given ``compare.py`` output directories (Passive T-Maze and T-Maze runs),
the run's warmup is redone exactly (same settings, same seed: :func:`train` stopped before the
first update) and the warmed actor is fed the two observation sequences an agent walking straight
to the junction sees: ``cue (up or down), corridor x (L - 1), junction``. The script records the
distance between the two runs of the actor's last-layer output ``h`` (what the policy head
reads) at every step, and joins it with the run's outcome from ``results.csv``::

    python scripts/cue_probe.py results/lstm_rl_ck8r results/lstm_rl_oc --out results/cue_probe

It writes ``probe.csv`` (one row per run) and ``curves.csv`` (distance against step), and prints
how the runs that reached 95 % differ from those that did not. ``--models`` probes saved models
instead (during or after training)::

    python scripts/cue_probe.py --length 1000 --models results/ladder_main/runs/*/model.zip

``--fresh K`` also probes ``K`` untrained policies of each model's architecture (torch seeds
``0 .. K-1``): what separation a cell starts with before any warmup or training.

A check that the warmup was reproduced: the recomputed VAA* of the actor must equal
``warmup_vaa_star_actor`` of the run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from envs.tmaze import OBS_CORRIDOR, OBS_CUE_DOWN, OBS_CUE_UP, OBS_JUNCTION, RIGHT
from rl_warmup.experiment.config import TrainConfig
from rl_warmup.experiment.train import train
from rl_warmup.sb3.rollouts import policy_features
from rl_warmup.sb3.warmup import recurrent_networks

CHECK_STEPS = (1, 5, 10, 25, 50, 100, 250, 500, 1000)


def cue_sequences(length: int, obs_dim: int = 4) -> np.ndarray:
    """``(2, length + 1, obs_dim)`` observations: cue up, cue down; then corridor, junction.

    With ``obs_dim = 9`` (the T-Maze presets' previous action and reward appended), the previous
    action is "right" (0) from the second step on and the previous reward 0, as on the walk.
    """
    if obs_dim not in (4, 9):
        raise ValueError(f"expected T-Maze observations of size 4 or 9, got {obs_dim}")
    obs = np.zeros((2, length + 1, obs_dim), dtype=np.float32)
    obs[0, 0, OBS_CUE_UP] = 1
    obs[1, 0, OBS_CUE_DOWN] = 1
    obs[:, 1:length, OBS_CORRIDOR] = 1
    obs[:, length, OBS_JUNCTION] = 1
    if obs_dim == 9:
        obs[:, 1:, 4 + RIGHT] = 1
    return obs


def _walk_outputs(policy: Any, length: int) -> torch.Tensor:
    """The actor's last-layer outputs ``(2, length + 1, H)`` along the two walks of
    :func:`cue_sequences` (cue up, cue down)."""
    obs = cue_sequences(length, int(np.prod(policy.observation_space.shape)))
    actor, _ = policy_features(policy, [obs[0], obs[1]])
    net = recurrent_networks(policy)["actor"]
    with torch.no_grad():
        return net(torch.stack(actor)).outputs


def cue_distance(policy: Any, length: int, extra: int = 0) -> dict[str, Any]:
    """Distance between the actor's outputs for the two cues, at every step of the walk.

    ``extra`` more corridor steps are inserted before the junction, to see how long the
    separation lasts beyond the task's own length (the junction observation then comes later).
    """
    out = _walk_outputs(policy, length + extra)
    d = (out[0] - out[1]).norm(dim=-1).numpy()
    norm = 0.5 * (out[0].norm(dim=-1) + out[1].norm(dim=-1)).numpy()
    return {"distance": d, "norm": norm}


def trained_probe(path: Path, length: int) -> dict[str, Any]:
    """Cue separation and junction policy of a *trained* (or partly trained) model.

    :param path: a saved ``FastRecurrentPPO`` model (``model.zip``, ``best_model.zip`` or a
        checkpoint's ``last.zip``) of a Passive T-Maze or T-Maze run.
    :return: ``distance`` (as :func:`cue_distance`) and ``probs``: the actor's action
        probabilities at the junction after each cue, ``(2, n_actions)``.
    """
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    policy = FastRecurrentPPO.load(path, device="cpu").policy
    out = _walk_outputs(policy, length)
    with torch.no_grad():
        probs = torch.softmax(policy.action_net(policy.mlp_extractor.forward_actor(out[:, -1])), dim=-1)
    return {"distance": (out[0] - out[1]).norm(dim=-1).numpy(), "probs": probs.numpy()}


def _fmt(values: np.ndarray) -> str:
    return "[" + " ".join(f"{v:.3f}" for v in values) + "]"


def fresh_probe(path: Path, length: int, seed: int) -> dict[str, Any]:
    """Like :func:`trained_probe`, for an untrained policy of the saved model's architecture
    (class, spaces and ``policy_kwargs``), initialised under ``torch.manual_seed(seed)``."""
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    model = FastRecurrentPPO.load(path, device="cpu")
    torch.manual_seed(seed)
    policy = type(model.policy)(model.observation_space, model.action_space, lambda _: 0.0, **model.policy_kwargs)
    out = _walk_outputs(policy, length)
    with torch.no_grad():
        probs = torch.softmax(policy.action_net(policy.mlp_extractor.forward_actor(out[:, -1])), dim=-1)
    return {"distance": (out[0] - out[1]).norm(dim=-1).numpy(), "probs": probs.numpy()}


def models_main(paths: list[Path], length: int, fresh: int = 0) -> int:
    """Print, per saved model, the cue separation at the first step and at the junction, and the
    junction action probabilities after each cue (``--models``); with ``fresh``, the same for
    that many untrained policies of its architecture."""
    for path in paths:
        probes = [(str(path), trained_probe(path, length))]
        probes += [(f"{path} (untrained, seed {k})", fresh_probe(path, length, k)) for k in range(fresh)]
        for name, res in probes:
            d, probs = res["distance"], res["probs"]
            print(
                f"{name}: separation step 1 {d[0]:.3f}, junction {d[-1]:.3f}; junction action probabilities "
                f"after cue up {_fmt(probs[0])}, after cue down {_fmt(probs[1])}",
                flush=True,
            )
    return 0


class _Probe(BaseCallback):
    """Measure right after the warmup (the run's own callbacks come first), then stop."""

    def __init__(self, length: int, extra: int) -> None:
        super().__init__()
        self.length, self.extra = length, extra
        self.result: dict[str, Any] | None = None

    def _on_training_start(self) -> None:
        self.result = cue_distance(self.model.policy, self.length, self.extra)

    def _on_step(self) -> bool:
        return False


def probe_run(run_dir: Path, extra: int, scratch: Path) -> dict[str, Any]:
    config = TrainConfig.load(run_dir / "config.yaml")
    length = int(config.env_id.split("-L")[1].split("-")[0]) if "-L" in config.env_id else 10
    config = dataclasses.replace(
        config,
        output_dir=str(scratch),
        run_name=run_dir.name,
        resume=False,
        vaa_every=0,
        eval_freq=10**9,
        progress_bar=False,
        tensorboard=False,
        verbose=0,
    )
    probe = _Probe(length, extra)
    train(config, callbacks=[probe])
    assert probe.result is not None
    warm = _read_json(scratch / run_dir.name / "warmup.json")
    return {"length": length, **probe.result, "warmup": warm}


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text()) if path.exists() else {}


def _star(warm: dict[str, Any]) -> float:
    """The actor's VAA* after warmup, mean over layers (as ``results.csv`` reports it)."""
    stars = warm.get("networks", {}).get("actor", {}).get("final_vaa_star")
    if stars is None:
        return math.nan
    return statistics.fmean(stars) if isinstance(stars, list) else float(stars)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="compare.py output directories")
    parser.add_argument("--out", type=Path, help="where probe.csv, curves.csv and cue_probe.png go")
    parser.add_argument(
        "--models",
        nargs="+",
        type=Path,
        help="instead probe these saved models (model.zip, best_model.zip, checkpoints/last.zip) after "
        "training, on the memory length --length",
    )
    parser.add_argument("--length", type=int, default=None, help="memory length L of --models")
    parser.add_argument("--fresh", type=int, default=0,
                        help="with --models: also probe this many untrained policies of each model's architecture")
    parser.add_argument("--extra", type=int, default=450, help="corridor steps added beyond L (default 450)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.models:
        if args.length is None:
            parser.error("--models needs --length (the memory length L of the runs)")
        return models_main(args.models, args.length, args.fresh)
    if not args.dirs or args.out is None:
        parser.error("give compare.py output directories and --out (or --models with --length)")
    args.out.mkdir(parents=True, exist_ok=True)
    probe_path, curve_path = args.out / "probe.csv", args.out / "curves.csv"
    done = {(r["dir"], r["run"]) for r in _rows(probe_path)}
    for d in args.dirs:
        outcomes = {Path(r["run_dir"]).name: r for r in _rows(d / "results.csv")}
        for run_dir in sorted((d / "runs").iterdir()):
            if (str(d), run_dir.name) in done or run_dir.name not in outcomes:
                continue
            outcome = outcomes[run_dir.name]
            if outcome["status"] != "finished" or outcome["condition"] != "warmed":
                continue
            with tempfile.TemporaryDirectory() as scratch:
                res = probe_run(run_dir, args.extra, Path(scratch))
            dist, length = res["distance"], res["length"]
            row = {
                "dir": str(d),
                "run": run_dir.name,
                "cell": outcome["cell"],
                "env": outcome["env_id"],
                "seed": outcome["seed"],
                "reached": int(outcome["timesteps_to_threshold"] not in ("", "nan")),
                "final_success": outcome["final_success_rate"],
                "best_success": outcome["best_success_rate"],
                "vaa_after_warmup": outcome["vaa_after_warmup_actor"],
                "vaa_star_run": outcome["warmup_vaa_star_actor"],
                "vaa_star_redone": f"{_star(res['warmup']):.6g}",
                "d_first": f"{dist[0]:.4g}",
                "d_junction_minus1": f"{dist[length - 1]:.4g}",
                "d_max": f"{dist.max():.4g}",
                "d_end": f"{dist[-2]:.4g}",
                "h_norm": f"{res['norm'][length - 1]:.4g}",
            }
            _append(probe_path, row)
            for t in CHECK_STEPS:
                if t < len(dist):
                    _append(curve_path, {"dir": str(d), "run": run_dir.name, "step": t, "distance": f"{dist[t]:.4g}"})
            print(f"{d.name}/{run_dir.name}: reached={row['reached']} d(L-1)={row['d_junction_minus1']} "
                  f"d_max={row['d_max']} d(end)={row['d_end']} VAA={row['vaa_after_warmup']}", flush=True)
    rows = list(_rows(probe_path))
    _summarise(rows)
    plot(rows, list(_rows(curve_path)), args.out / "cue_probe.png")
    return 0


def plot(rows: list[dict[str, str]], curves: list[dict[str, str]], path: Path) -> None:
    """Left: cue separation at the junction, per task and policy, runs that reached 95 % filled.
    Right: the separation along the walk (and beyond, with ``--extra``), reached runs solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    groups = sorted({(r["env"].split("/")[-1], r["cell"]) for r in rows})
    for y, (env, cell) in enumerate(groups):
        for r in rows:
            if (r["env"].split("/")[-1], r["cell"]) == (env, cell):
                reached = r["reached"] == "1"
                left.scatter(float(r["d_junction_minus1"]), y + (0.1 if reached else -0.1), s=30,
                             facecolors="C2" if reached else "none", edgecolors="C2" if reached else "C3")
    left.set_yticks(range(len(groups)), [f"{e} {c}" for e, c in groups], fontsize=7)
    left.set_xscale("log")
    left.set_xlabel("||h_up - h_down|| one step before the junction")
    left.set_title("filled: reached 95 %; open: did not", fontsize=8)
    outcome = {(r["dir"], r["run"]): r["reached"] == "1" for r in rows}
    by_run: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for c in curves:
        by_run.setdefault((c["dir"], c["run"]), []).append((int(c["step"]), float(c["distance"])))
    for key, points in by_run.items():
        points.sort()
        reached = outcome.get(key, False)
        right.plot([p[0] for p in points], [max(p[1], 1e-8) for p in points], color="C2" if reached else "C3",
                   ls="-" if reached else "--", lw=0.8, alpha=0.8)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("step of the straight walk")
    right.set_ylabel("cue separation of h")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summarise(rows: list[dict[str, str]]) -> None:
    for key in ("d_junction_minus1", "d_max", "d_end", "vaa_after_warmup"):
        yes = [float(r[key]) for r in rows if r["reached"] == "1"]
        no = [float(r[key]) for r in rows if r["reached"] == "0"]
        if yes and no:
            # probability that a run that reached 95 % has the larger value (AUC)
            auc = statistics.fmean(float(a > b) + 0.5 * float(a == b) for a in yes for b in no)
            print(f"{key:>20}: reached median {statistics.median(yes):.3g} (n={len(yes)}), "
                  f"not reached median {statistics.median(no):.3g} (n={len(no)}), AUC {auc:.2f}")


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


if __name__ == "__main__":
    sys.exit(main())
