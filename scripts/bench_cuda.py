"""Time the package's costly operations on each device: a CUDA GPU against the CPU.

One prepared run (a few minutes on a GPU machine) for the speed report (``docs/speed_results.md``)::

    python scripts/bench_cuda.py                          # cpu and cuda, paper sizes
    python scripts/bench_cuda.py --devices cpu --quick    # small sizes, a smoke test

Per device, ``--repeats`` interleaved rounds (every operation on every device in each round, so
drifts of the machine hit all alike), min and median:

- **warmup step**: ``warmup`` of a ``RecurrentNetwork`` (GRU and LSTM, 2 x 256, the paper's
  double-layer size) on 64 random sequences of length 300, batch 32, settling length drawn up to
  200 (``WarmupConfig`` defaults), seconds per Adam step over ``--warmup-steps`` steps;
- **exact VAA**: ``measure_vaa`` of the same networks, n = 100 initial states, M = 1 000 settling
  steps, without and with the active set (the active set drops converged states);
- **training**: ``FastRecurrentPPO`` with a ``RecurrentCellPolicy`` (GRU 64 and LSTM 64) on the
  Passive T-Maze L = 50, 8 environments, rollouts of 102 steps, 10 epochs in 4 minibatches:
  environment steps per second of ``learn`` (the first rollout is a discarded warm-up).

CUDA timings synchronise the device before each clock read. A device that is not available is
reported and skipped. ``--out`` also writes the rows as CSV.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.vaa import measure_vaa
from rl_warmup.warmup import WarmupConfig, warmup


@dataclass(frozen=True)
class Sizes:
    hidden: int
    layers: int
    sequences: int
    length: int
    settle_max: int
    vaa_steps: int
    vaa_n: int
    policy_hidden: int
    timesteps: int


PAPER = Sizes(hidden=256, layers=2, sequences=64, length=300, settle_max=200, vaa_steps=1000, vaa_n=100,
              policy_hidden=64, timesteps=8 * 102 * 5)
QUICK = Sizes(hidden=16, layers=1, sequences=16, length=20, settle_max=10, vaa_steps=50, vaa_n=8,
              policy_hidden=8, timesteps=2 * 102 * 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clock(device: torch.device, fn: Callable[[], object]) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _network(cell: str, sizes: Sizes, device: torch.device) -> RecurrentNetwork:
    net = RecurrentNetwork(cell, 8, sizes.hidden, sizes.layers, generator=torch.Generator().manual_seed(0))
    return net.to(device)


def _sequences(sizes: Sizes, device: torch.device) -> torch.Tensor:
    return torch.randn(sizes.sequences, sizes.length, 8, generator=torch.Generator().manual_seed(1)).to(device)


def warmup_step(cell: str, sizes: Sizes, steps: int, device: torch.device) -> float:
    """Seconds per warmup step (the network is fresh each time, so every round times the same steps)."""
    net, seqs = _network(cell, sizes, device), _sequences(sizes, device)
    config = WarmupConfig(steps=steps, settle_max=sizes.settle_max, vaa_checkpoints=None, restart_threshold=1.0,
                          seed=0)
    return _clock(device, lambda: warmup(net, seqs, config)) / steps


def exact_vaa(cell: str, sizes: Sizes, active_set: bool, device: torch.device) -> float:
    net, seqs = _network(cell, sizes, device), _sequences(sizes, device)
    gen = torch.Generator().manual_seed(2)
    return _clock(device, lambda: measure_vaa(net, seqs, settle_steps=sizes.vaa_steps, n=sizes.vaa_n,
                                              generator=gen, active_set=active_set))


def training(cell: str, sizes: Sizes, device: torch.device) -> float:
    """Environment steps per second of ``FastRecurrentPPO.learn`` after one warm-up rollout."""
    from stable_baselines3.common.env_util import make_vec_env

    import envs  # noqa: F401  (registers the environments)
    from rl_warmup.sb3 import RecurrentCellPolicy
    from rl_warmup.sb3.ppo import FastRecurrentPPO

    n_envs, n_steps = 8, 102
    model = FastRecurrentPPO(
        RecurrentCellPolicy, make_vec_env("rl_warmup/PassiveTMaze-L50-v0", n_envs=n_envs, seed=0), n_steps=n_steps,
        batch_size=n_envs * n_steps // 4, n_epochs=10, seed=0, device=device, verbose=0,
        policy_kwargs={"cell": cell, "lstm_hidden_size": sizes.policy_hidden},
    )
    model.learn(n_envs * n_steps)
    seconds = _clock(device, lambda: model.learn(sizes.timesteps, reset_num_timesteps=False))
    return sizes.timesteps / seconds


def operations(sizes: Sizes, warmup_steps: int) -> list[tuple[str, str, Callable[[torch.device], float]]]:
    """(operation, unit, timer) for every row of the table."""
    ops: list[tuple[str, str, Callable[[torch.device], float]]] = []
    for cell in ("gru", "lstm"):
        shape = f"{sizes.layers} x {sizes.hidden}"
        ops.append((f"warmup step, {cell.upper()} {shape}", "s/step",
                    lambda d, c=cell: warmup_step(c, sizes, warmup_steps, d)))
        for active in (False, True):
            label = "active set" if active else "every state"
            ops.append((f"exact VAA M = {sizes.vaa_steps}, {cell.upper()} {shape}, {label}", "s",
                        lambda d, c=cell, a=active: exact_vaa(c, sizes, a, d)))
        ops.append((f"training, {cell.upper()} {sizes.policy_hidden}, Passive T-Maze L = 50", "steps/s",
                    lambda d, c=cell: training(c, sizes, d)))
    return ops


def available(devices: list[str]) -> list[torch.device]:
    out = []
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"{name}: no CUDA device here (torch {torch.__version__}); skipped", file=sys.stderr)
            continue
        out.append(device)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="devices to time (default: cpu cuda)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="warmup steps timed per round (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test, not a measurement)")
    parser.add_argument("--out", type=Path, help="also write the rows to this CSV")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup_steps < 1:
        parser.error("--repeats and --warmup-steps must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = available(args.devices)
    if not devices:
        print("no device to time", file=sys.stderr)
        return 1
    sizes = QUICK if args.quick else PAPER
    ops = operations(sizes, args.warmup_steps)
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(args.repeats):
        for name, _, timer in ops:
            for device in devices:
                times.setdefault((name, str(device)), []).append(timer(device))
        print(f"round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    rows = []
    for name, unit, _ in ops:
        for device in devices:
            values = times[(name, str(device))]
            best = max(values) if unit == "steps/s" else min(values)
            rows.append({"operation": name, "device": str(device), "unit": unit, "best": best,
                         "median": statistics.median(values), "repeats": len(values)})
    gpu = torch.cuda.get_device_name(0) if any(d.type == "cuda" for d in devices) else "-"
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, GPU {gpu}; best = min time "
          "(max steps/s) over the rounds")
    print("| operation | device | unit | best | median |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['operation']} | {row['device']} | {row['unit']} | {row['best']:.4g} | {row['median']:.4g} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
