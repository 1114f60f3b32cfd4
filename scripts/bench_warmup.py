"""Speed of the warmup core against a naive implementation, side by side in one process.

The naive baseline is written here the way the paper authors' research code computes the same
quantities: one forward pass per sequence for the prefixes, the constant perturbation fed to each
layer as one fused call, and a Python loop over ``i`` for the pairwise distances. It replays the
library's random draws (settling lengths ``M``, sequences, truncations, perturbations) from the
same seed, so both compute the same numbers; the ``agree`` column checks it.

Measured, for the paper's configuration (GRU 2 x 256, batch 32, sequences of length 300) and an
RL-sized one (GRU 2 x 64, episodes of 20..100 steps):

* seconds per warmup step at steady state (``M ~ U{1..200}``, ``M* = 200``), with the gradient
  through the prefix (faithful) and with ``detach_prefix=True``; the faithful step also with the
  library's ``flush_denormal`` off ("no FTZ"), to show what batching alone gains;
* seconds per exact VAA (``n = 100``, ``settle_steps = 1000``);
* the exact VAA reached after a full warmup (curriculum from ``M* = 1``) in each mode, so that
  speed is never bought with a worse warmup.

Run: ``python scripts/bench_warmup.py`` (half an hour or more on 2 cores: the naive faithful
warmup of the paper's network alone takes 100 steps of several seconds), ``--quick`` for a short
check. Timings are wall-clock; on a shared machine, ``--threads 1`` is less disturbed by other
processes than two threads that wait for each other.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import io
import statistics
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from rl_warmup.cells import RecurrentNetwork
from rl_warmup.vaa import DEFAULT_CHECKPOINTS, measure_vaa, pad_sequences, settle_curve, vaa_star
from rl_warmup.warmup import WarmupConfig, WarmupResult, warmup


@dataclass(frozen=True)
class BenchConfig:
    """One network and data set to benchmark."""

    name: str
    """Label in the table."""
    hidden_size: int
    """Units per layer."""
    num_layers: int
    """Stacked GRU layers."""
    input_size: int
    """Input size per step."""
    min_length: int
    """Shortest sequence."""
    max_length: int
    """Longest sequence (all sequences have it when equal to ``min_length``)."""
    num_sequences: int = 256
    """Sequences in the data set, ``x_t ~ N(0, 1)``."""


CONFIGS = {
    "paper": BenchConfig("paper GRU 2x256 T=300", 256, 2, 1, 300, 300),
    "rl": BenchConfig("RL GRU 2x64 T<=100", 64, 2, 9, 20, 100),
}
TARGETS = {"faithful": 3.0, "detach_prefix": 10.0, "exact VAA": 5.0}


def make_sequences(cfg: BenchConfig, seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(cfg.min_length, cfg.max_length + 1, (cfg.num_sequences,), generator=g)
    return [torch.randn(int(t), cfg.input_size, generator=g) for t in lengths]


# ------------------------------------------------------------------------------------------
# The naive baseline (the authors' research-code way)
# ------------------------------------------------------------------------------------------
def naive_prefix_states(
    net: RecurrentNetwork, seqs: list[Tensor], g: torch.Generator, n: int
) -> list[Tensor]:
    """Draw ``n`` sequences and truncations as the library does, then one forward per sequence."""
    lens = torch.tensor([s.shape[0] for s in seqs])
    idx = (
        torch.randperm(len(seqs), generator=g)[:n]
        if n <= len(seqs)
        else torch.randint(len(seqs), (n,), generator=g)
    )
    cuts = torch.minimum(
        (torch.rand(n, generator=g, dtype=torch.float64) * lens[idx]).long() + 1, lens[idx]
    )
    per_sequence = [
        net(seqs[int(i)][None, : int(c)]).states for i, c in zip(idx, cuts, strict=True)
    ]
    return [torch.cat([states[k] for states in per_sequence]) for k in range(len(net.layers))]


def naive_vaa_star(states: Tensor, epsilon: float) -> Tensor:
    n = states.shape[0]
    squashed = torch.tanh(states)
    total = states.new_zeros(())
    for i in range(n):
        d = torch.norm(squashed - squashed[i], dim=1)
        total = total + 1.0 / (1.0 - F.relu(d - epsilon) / (d + 1e-6)).sum() / n
    return total


def naive_vaa(states: Tensor, epsilon: float) -> float:
    n = states.shape[0]
    return (
        sum(1.0 / float((torch.norm(states - states[i], dim=1) < epsilon).sum()) for i in range(n))
        / n
    )


def naive_step(
    net: RecurrentNetwork,
    opt: torch.optim.Optimizer,
    seqs: list[Tensor],
    g: torch.Generator,
    bound: int,
    config: WarmupConfig,
) -> float:
    """One warmup step; draws in the library's order: M, sequences and cuts, one u per layer."""
    m = int(torch.randint(1, bound + 1, (1,), generator=g))
    with torch.set_grad_enabled(not config.detach_prefix):
        states = naive_prefix_states(net, seqs, g, config.batch_size)
    stars = []
    for layer, state in zip(net.layers, states, strict=True):
        u = torch.randn(layer.input_size, generator=g)
        settled = layer(u.expand(state.shape[0], m, -1), state).state  # one fused call of M steps
        stars.append(naive_vaa_star(settled, config.epsilon))
    loss = ((torch.stack(stars) - config.target) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def naive_warmup(
    net: RecurrentNetwork,
    seqs: list[Tensor],
    config: WarmupConfig,
    steps: int,
    step_times: list[float] | None = None,
) -> list[float]:
    g = torch.Generator().manual_seed(int(config.seed or 0))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    losses = []
    for step in range(steps):
        t0 = time.perf_counter()
        bound = min(config.settle_start + config.settle_increment * step, config.settle_max)
        losses.append(naive_step(net, opt, seqs, g, bound, config))
        if step_times is not None:
            step_times.append(time.perf_counter() - t0)
    return losses


def naive_measure_vaa(
    net: RecurrentNetwork, seqs: list[Tensor], settle_steps: int, n: int, seed: int
) -> float:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        states = naive_prefix_states(net, seqs, g, n)
        u = torch.randn(net.input_size, generator=g)
        settled = net(u.expand(n, settle_steps, -1), states).states  # the whole stack, one call
        return naive_vaa(torch.cat(settled, dim=1), 1e-4)


# ------------------------------------------------------------------------------------------
# Library side
# ------------------------------------------------------------------------------------------
def library_warmup(
    net: RecurrentNetwork,
    seqs: list[Tensor],
    config: WarmupConfig,
    step_times: list[float] | None = None,
) -> WarmupResult:
    last = [time.perf_counter()]

    def on_step(step: int, loss: float, stars: list[float]) -> None:
        now = time.perf_counter()
        if step_times is not None:
            step_times.append(now - last[0])
        last[0] = now

    return warmup(net, seqs, config, callback=on_step)


# ------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------
def step_times(
    base: RecurrentNetwork,
    seqs: list[Tensor],
    detach: bool,
    rounds: int,
    steps: int,
    flush: bool = True,
) -> tuple[float, float, float]:
    """Mean seconds per steady-state step (first step of each block not counted), library and
    naive blocks alternated; and the largest loss difference between the two at a block's first
    step (the same draws, so the same loss up to float rounding).

    :param flush: the library's ``WarmupConfig.flush_denormal`` (the naive code never flushes).
    """
    lib_t: list[float] = []
    naive_t: list[float] = []
    worst = 0.0
    for r in range(rounds):
        config = WarmupConfig(
            steps=steps,
            settle_start=200,
            settle_max=200,
            seed=100 + r,
            detach_prefix=detach,
            max_restarts=0,
            restart_threshold=1.0,
            flush_denormal=flush,
        )
        times: list[float] = []
        lib_losses = library_warmup(copy.deepcopy(base), seqs, config, times).loss_history
        lib_t += times[1:]
        times = []
        naive_losses = naive_warmup(copy.deepcopy(base), seqs, config, steps, times)
        naive_t += times[1:]
        worst = max(worst, abs(lib_losses[0] - naive_losses[0]))
    return statistics.mean(naive_t), statistics.mean(lib_t), worst


COLUMNS = ("configuration", "quantity", "naive s", "library s", "speedup", "target", "agree")
WIDTHS = (22, 36, 8, 9, 7, 6, 15)


def print_row(cells: tuple[str, ...]) -> None:
    print("  ".join(f"{c:<{w}}" for c, w in zip(cells, WIDTHS, strict=True)), flush=True)


def setup(cfg: BenchConfig, seed: int) -> tuple[RecurrentNetwork, list[Tensor]]:
    seqs = make_sequences(cfg, seed)
    pad_sequences(seqs, input_size=cfg.input_size)  # validate once
    base = RecurrentNetwork(
        "gru",
        cfg.input_size,
        cfg.hidden_size,
        cfg.num_layers,
        generator=torch.Generator().manual_seed(seed),
    )
    return base, seqs


def bench_timing(cfg: BenchConfig, seed: int, rounds: int, steps: int) -> None:
    """Print the timing rows of one configuration as they come."""
    base, seqs = setup(cfg, seed)
    for label, detach, flush in (
        ("faithful", False, True),
        ("faithful", False, False),
        ("detach_prefix", True, True),
    ):
        naive_s, lib_s, diff = step_times(base, seqs, detach, rounds, steps, flush)
        print_row(
            (
                cfg.name,
                f"warmup step, {label}" + ("" if flush else " (no FTZ)"),
                f"{naive_s:.3f}",
                f"{lib_s:.3f}",
                f"{naive_s / lib_s:.1f}x",
                f">={TARGETS[label]:.0f}x",
                f"|dloss| {diff:.0e}",
            )
        )

    # exact VAA, alternated, same draws; the first round is a warm-up and not counted
    naive_v, lib_v, agree = [], [], []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        res = measure_vaa(
            base, seqs, settle_steps=1000, n=100, generator=torch.Generator().manual_seed(200 + r)
        )
        t1 = time.perf_counter()
        value = naive_measure_vaa(base, seqs, 1000, 100, 200 + r)
        t2 = time.perf_counter()
        lib_v.append(t1 - t0)
        naive_v.append(t2 - t1)
        agree.append(abs(res.vaa - value))
    naive_s, lib_s = statistics.mean(naive_v[1:]), statistics.mean(lib_v[1:])
    print_row(
        (
            cfg.name,
            "exact VAA (n=100, M=1000)",
            f"{naive_s:.3f}",
            f"{lib_s:.3f}",
            f"{naive_s / lib_s:.1f}x",
            f">={TARGETS['exact VAA']:.0f}x",
            f"|dVAA| {max(agree):.0e}",
        )
    )


def bench_quality(cfg: BenchConfig, seed: int, warm_steps: int) -> None:
    """Exact VAA after a full warmup (curriculum from M* = 1) in each mode. The naive code has no
    restart rule, so neither has the library here; its final VAA* (settle_max steps) says whether
    the paper's rule (> 0.98) would have asked for a restart."""
    base, seqs = setup(cfg, seed)

    def final_vaa(net: RecurrentNetwork) -> str:
        m = measure_vaa(
            net, seqs, settle_steps=1000, n=100, generator=torch.Generator().manual_seed(7)
        )
        return f"{m.vaa:.2f}" + (f" ({m.n_nonfinite} diverged)" if m.n_nonfinite else "")

    before = final_vaa(base)
    for label, detach in (("faithful", False), ("detach_prefix", True)):
        config = WarmupConfig(
            steps=warm_steps, seed=seed, detach_prefix=detach, restart_threshold=1.0, max_restarts=0
        )
        lib_net, naive_net = copy.deepcopy(base), copy.deepcopy(base)
        t0 = time.perf_counter()
        result = library_warmup(lib_net, seqs, config)
        t1 = time.perf_counter()
        naive_warmup(naive_net, seqs, config, warm_steps)
        t2 = time.perf_counter()
        stars = " ".join(f"{v:.3f}" for v in result.final_vaa_star)
        print(
            f"  {cfg.name:<22} {label:<14} before {before}  naive {final_vaa(naive_net)} ({t2 - t1:.0f} s)"
            f"  library {final_vaa(lib_net)} ({t1 - t0:.0f} s; final VAA* {stars})",
            flush=True,
        )


# ------------------------------------------------------------------------------------------
# Against the authors' code (--official DIR)
# ------------------------------------------------------------------------------------------
def load_official(directory: str) -> types.ModuleType:
    """Import ``models_pytorch.models`` from a checkout of github.com/glambrechts/warmup.

    That code has no licence: it is imported from the user's checkout, never copied here. Its
    ``import wandb`` is answered by a stub when wandb is not installed (it only logs).
    """
    root = Path(directory).expanduser().resolve()
    if not (root / "models_pytorch" / "models.py").is_file():
        raise SystemExit(
            f"--official {directory}: no models_pytorch/models.py there; give a checkout of "
            "https://github.com/glambrechts/warmup"
        )
    if importlib.util.find_spec("wandb") is None:
        sys.modules.setdefault("wandb", types.SimpleNamespace(log=lambda *a, **k: None))  # type: ignore[arg-type]
    sys.path.insert(0, str(root))
    return importlib.import_module("models_pytorch.models")


def official_model(models: types.ModuleType, net: RecurrentNetwork, cell: str) -> torch.nn.Module:
    """The authors' ``Model`` with the weights of ``net`` (a stack of fused GRU/LSTM layers)."""
    model = models.Model(cell, net.input_size, net.layers[0].hidden_size, len(net.layers), 1)
    for theirs, ours in zip(model.cells, net.layers, strict=True):
        theirs.load_state_dict(ours.rnn.state_dict())
    return model.cpu()


@dataclass(frozen=True)
class OfficialDraws:
    """The draws the authors' ``Model.vaa(inputs, M, num_samples=n)`` makes after
    ``torch.manual_seed(seed)``, in its order: sequence indices, one truncation per state, ``u``."""

    idx: Tensor
    cuts: Tensor
    u: Tensor

    @staticmethod
    def replay(seed: int, num_sequences: int, length: int, n: int, input_size: int) -> OfficialDraws:
        torch.manual_seed(seed)
        idx = torch.randint(0, num_sequences, (n,))
        cuts = torch.stack([torch.randint(1, length + 1, ()) for _ in range(n)])
        u = torch.randn(1, 1, input_size)
        return OfficialDraws(idx, cuts, u)


def library_curve(net: RecurrentNetwork, batch: Tensor, draws: OfficialDraws, checkpoints: tuple[int, ...], active: bool):
    """The package's exact VAA on the authors' draws: one batched prefix pass, one settling pass."""
    with torch.no_grad():
        cuts = draws.cuts
        states = net(batch[draws.idx, : int(cuts.max())], lengths=cuts).states
        u = draws.u.reshape(1, -1).expand(cuts.numel(), -1)
        return settle_curve(net, states, u, checkpoints, view="state", active_set=active)


def official_vaa(model: torch.nn.Module, time_major: Tensor, seed: int, settle: int, n: int) -> float:
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        return float(model.vaa(time_major, settle, 1e-4, num_samples=n))


OFFICIAL_NETWORKS = ("fresh", "chaotic")


def official_network(cell: str, kind: str, seed: int, hidden: int = 256, layers: int = 2) -> RecurrentNetwork:
    """``fresh``: the package's initialisation (its states converge to one attractor);
    ``chaotic``: recurrent weights scaled by 4, states that never settle (the worst case of the
    active set: nothing to drop)."""
    net = RecurrentNetwork(cell, 1, hidden, layers, generator=torch.Generator().manual_seed(seed))
    if kind == "chaotic":
        with torch.no_grad():
            for layer in net.layers:
                layer.rnn.weight_hh_l0.mul_(4.0)
    return net


def bench_official(directory: str, cells: list[str], settles: list[int], rounds: int, seed: int, n: int = 100) -> None:
    """Exact VAA (n states, GRU/LSTM 2 x 256, paper inputs), the authors' ``Model.vaa`` against
    the package on identical weights and draws, interleaved; then the curve VAA(M) over
    ``DEFAULT_CHECKPOINTS`` in one pass against one ``Model.vaa`` call per M; then a warmup step."""
    models = load_official(directory)
    cfg = CONFIGS["paper"]
    seqs = make_sequences(cfg, seed)
    batch = torch.stack(seqs)  # (N, T, 1), all of length 300
    time_major = batch.transpose(0, 1).contiguous()
    header = ("network", "quantity", "authors s", "package s", "ratio", "VAA authors", "VAA package")
    widths = (16, 34, 10, 10, 7, 12, 12)

    def row(cells_: tuple[str, ...]) -> None:
        print("  ".join(f"{c:<{w}}" for c, w in zip(cells_, widths, strict=True)), flush=True)

    row(header)
    row(tuple("-" * w for w in widths))
    for cell in cells:
        for kind in OFFICIAL_NETWORKS:
            net = official_network(cell, kind, seed)
            model = official_model(models, net, cell)
            for settle in settles:
                theirs_t, ours_t, theirs_v, ours_v = [], [], [], []
                for r in range(rounds):
                    draws = OfficialDraws.replay(1000 + r, len(seqs), cfg.max_length, n, 1)
                    t0 = time.perf_counter()
                    curve = library_curve(net, batch, draws, (settle,), True)
                    t1 = time.perf_counter()
                    value = official_vaa(model, time_major, 1000 + r, settle, n)
                    t2 = time.perf_counter()
                    ours_t.append(t1 - t0)
                    theirs_t.append(t2 - t1)
                    ours_v.append(curve.vaa[-1])
                    theirs_v.append(value)
                label = f"exact VAA n={n} M={settle}"
                _official_row(row, f"{cell} {kind}", label, theirs_t, ours_t, theirs_v, ours_v)
            # the whole curve: one pass against one call per M
            cps = DEFAULT_CHECKPOINTS
            theirs_t, ours_t, theirs_v, ours_v = [], [], [], []
            for r in range(rounds):
                draws = OfficialDraws.replay(2000 + r, len(seqs), cfg.max_length, n, 1)
                t0 = time.perf_counter()
                curve = library_curve(net, batch, draws, cps, True)
                t1 = time.perf_counter()
                values = [official_vaa(model, time_major, 2000 + r, m, n) for m in cps]
                t2 = time.perf_counter()
                ours_t.append(t1 - t0)
                theirs_t.append(t2 - t1)
                ours_v.append(curve.vaa[-1])
                theirs_v.append(values[-1])
                worst = max(abs(a - b) for a, b in zip(values, curve.vaa, strict=True))
            _official_row(
                row, f"{cell} {kind}", f"curve M={cps[0]}..{cps[-1]} (|d| {worst:.0e})", theirs_t, ours_t, theirs_v, ours_v
            )
        _official_warmup_step(row, models, cell, seqs, batch, rounds, seed)


def _official_row(row, name, label, theirs_t, ours_t, theirs_v, ours_v) -> None:  # type: ignore[no-untyped-def]
    med_t, med_o = statistics.median(theirs_t), statistics.median(ours_t)
    row(
        (
            name,
            label,
            f"{min(theirs_t):.2f}/{med_t:.2f}",
            f"{min(ours_t):.2f}/{med_o:.2f}",
            f"{med_t / med_o:.1f}x",
            " ".join(f"{v:.2f}" for v in theirs_v),
            " ".join(f"{v:.2f}" for v in ours_v),
        )
    )


def _official_warmup_step(row, models, cell, seqs, batch, rounds, seed) -> None:  # type: ignore[no-untyped-def]
    """A warmup step at steady state (M ~ U{1..200}, batch 32), the authors' ``Model.warmup_step``
    against the package's ``warmup`` (per-step times of 4 steps, the first not counted), and
    VAA* of both on the same settled states."""
    net = official_network(cell, "fresh", seed)
    times_ours: list[float] = []
    times_theirs: list[float] = []
    for r in range(rounds):
        config = WarmupConfig(steps=4, settle_start=200, settle_max=200, seed=300 + r, max_restarts=0, restart_threshold=1.0)
        step_t: list[float] = []
        library_warmup(copy.deepcopy(net), seqs, config, step_t)
        times_ours += step_t[1:]
        model = official_model(models, net, cell)
        model.warmup_opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        model.num_warmup_step = 10_000  # past the curriculum: M ~ U{1..200}
        torch.manual_seed(300 + r)
        order = torch.randperm(len(seqs))
        for k in range(4):
            sub = batch[order[32 * k : 32 * (k + 1)]].transpose(0, 1)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                model.warmup_step(sub, 10, 200)
            if k:
                times_theirs.append(time.perf_counter() - t0)
    # VAA* of both on the same settled states
    settled = torch.randn(32, 2 * net.layers[0].hidden_size * (2 if cell == "lstm" else 1))
    ours = float(vaa_star(settled))
    theirs = float(models._vaa_star(settled, 1e-4))
    row(
        (
            f"{cell} fresh",
            f"warmup step (|dVAA*| {abs(ours - theirs):.0e})",
            f"{min(times_theirs):.2f}/{statistics.median(times_theirs):.2f}",
            f"{min(times_ours):.2f}/{statistics.median(times_ours):.2f}",
            f"{statistics.median(times_theirs) / statistics.median(times_ours):.1f}x",
            "",
            "",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="few steps and a short warmup (a smoke check)"
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternated lib/naive blocks (default 2, quick 1)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per block, the first not counted (default 4, quick 3)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="full warmup before the final VAA (default 100, quick 20)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--official",
        metavar="DIR",
        default=None,
        help="a checkout of github.com/glambrechts/warmup: time the authors' exact VAA, VAA curve and "
        "warmup step against the package on the same weights and draws (instead of the naive baseline)",
    )
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"], choices=["gru", "lstm"], help="with --official")
    parser.add_argument(
        "--settle", nargs="+", type=int, default=[1000, 10_000], help="with --official: settling lengths M"
    )
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    steps = args.steps or (3 if args.quick else 4)
    warm_steps = args.warmup_steps or (20 if args.quick else 100)
    torch.set_num_threads(args.threads)
    if args.official:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; authors' code from {args.official}; "
            f"{rounds} interleaved rounds, seconds min/median, ratio of medians (authors / package)"
        )
        bench_official(args.official, args.cells, args.settle, rounds, args.seed)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; steady-state steps (M* = 200): "
        f"{rounds} x {steps - 1} per implementation; exact VAA n=100, settle_steps=1000; "
        f"final VAA after {warm_steps} warmup steps"
    )
    print()
    print_row(COLUMNS)
    print_row(tuple("-" * w for w in WIDTHS))
    for key in args.configs:
        bench_timing(CONFIGS[key], args.seed, rounds, steps)
    print()
    print(
        f"exact VAA (n=100, M=1000, same draws) before and after {warm_steps} warmup steps, no restarts "
        "(wall time of the whole warmup; the library's final VAA* per layer at settle_max):"
    )
    for key in args.configs:
        bench_quality(CONFIGS[key], args.seed, warm_steps)


if __name__ == "__main__":
    main()
