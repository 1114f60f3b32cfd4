"""Why LSTM warmups collapse: trace each warmup step, and compare warmup variants over seeds.

For every input source x network x warmup variant x seed, this script builds the recurrent
network (the actor of a ``RecurrentPPO`` policy, ``RecurrentCellPolicy(cell="lstm")`` or stock
``MlpLstmPolicy``, or a bare :class:`~rl_warmup.cells.RecurrentNetwork` for the copy task),
collects its input sequences (features of 64 random-policy episodes; copy-first-input sequences),
warms it up and records, every ``--trace-every`` steps:

- each layer's VAA* at the settling length drawn for that step, the loss and the gradient norm;
- the exact VAA of the outputs ``h`` after ``--trace-settle`` steps, and of ``(h, c)``;
- statistics of the cell state ``|c|`` of the settled states and the share of saturated units
  (``|c| > 9``, where ``tanh(c)`` is 1 in float32) and the outputs' per-step movement.

After warmup: the final VAA* (collapse: ``<= 2/n``), and on draws of its own (other initial
states and perturbation than the warmup's checks, which restart rules select on) the exact VAA
curve of ``h`` over ``M = 100 .. 10 000`` in one pass, its memory horizon and the movement of
``h`` at ``M = 1000``.

Results go to ``--out`` (``trace.csv``, ``final.csv``, ``summary.md``, plots, and each warmed
network's ``state_dict`` in ``networks/``, to be measured again later); finished
(source, network, variant, seed) cells are read back from ``final.csv`` and skipped, so an
interrupted run resumes with the same command. Seeds split over processes (one per core, each
with its own ``--out``) are gathered with ``--merge DIR ...``: their finished warmups are copied
into ``--out`` and the summary and plots cover them all. On Linux with glibc 2.35 or later the script
starts itself again with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (huge pages for the warmup's
large buffers: 28 % less CPU time, the same results; ``RL_WARMUP_MALLOC=0`` or a
``GLIBC_TUNABLES`` of your own leaves it as started).

Example (the study of ``docs/lstm_warmup.md``)::

    python scripts/lstm_warmup_diagnosis.py --variants paper fixed --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_warmup import gru_ext
from rl_warmup.cells import RecurrentNetwork
from rl_warmup.vaa import (
    DEFAULT_CHECKPOINTS,
    initial_states,
    measure_vaa,
    pad_sequences,
    stars_and_movement,
)
from rl_warmup.warmup import WarmupConfig, WarmupError, warmup
from rl_warmup.warmup import _loss as _warmup_loss

SOURCES: dict[str, str] = {
    "tmaze": "rl_warmup/TMaze-L25-v0",
    "passive": "rl_warmup/PassiveTMaze-L50-v0",
    "minigrid": "rl_warmup/MiniGrid-MemoryS7-v0",
    "copy": "copy-first-input T = 300",
}
"""Input sources: RL environments (random-policy features of the policy) and the copy task."""

NETWORKS: dict[str, tuple[int, int]] = {"1x32": (1, 32), "2x32": (2, 32), "1x64": (1, 64)}
"""Network sizes: (layers, units)."""

POLICIES: tuple[str, ...] = ("cell", "stock", "gru")
"""``cell``: ``RecurrentCellPolicy(cell="lstm")``; ``stock``: sb3-contrib's ``MlpLstmPolicy``;
``gru``: ``RecurrentCellPolicy(cell="gru")``, the reference that warms up well."""

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "output": {"state_view": "output"},
    "best": {"keep_best": True},
    "output-fb1": {"state_view": "output", "lstm_forget_bias": 1.0},
    "output-best": {"state_view": "output", "keep_best": True},
    "output-clip": {"state_view": "output", "grad_clip": 1.0},
    "lr3e-3": {"lr": 3e-3},
    "clip": {"grad_clip": 1.0},
    "fb1": {"lstm_forget_bias": 1.0},
    "fb3": {"lstm_forget_bias": 3.0},
    "m1000": {"settle_max": 1000},
    "oc": {"state_view": "output", "grad_clip": 1.0},
    "oc-r": {"state_view": "output", "grad_clip": 1.0, "restart_below": 0.07, "restart_moving": 1e-2},
    "oc-r1000": {"state_view": "output", "grad_clip": 1.0, "restart_below": 0.07, "restart_moving": 1e-2,
                 "check_settle_steps": 1000},
    "ocb-r": {"state_view": "output", "grad_clip": 1.0, "keep_best": True, "restart_below": 0.07,
              "restart_moving": 1e-2},
    "ocfb1-r": {"state_view": "output", "grad_clip": 1.0, "lstm_forget_bias": 1.0, "restart_below": 0.07,
                "restart_moving": 1e-2},
    "a": {"adaptive_settle": True},
    "ao": {"adaptive_settle": True, "state_view": "output"},
    "aoc": {"adaptive_settle": True, "state_view": "output", "grad_clip": 1.0},
    "aoc-r": {"adaptive_settle": True, "state_view": "output", "grad_clip": 1.0, "restart_below": 0.07,
              "restart_moving": 1e-2},
    "afb1": {"adaptive_settle": True, "lstm_forget_bias": 1.0},
    "ac": {"adaptive_settle": True, "grad_clip": 1.0},
    "ortho": {"lstm_init": "orthogonal"},
    "chrono": {"lstm_init": "chrono"},
    "chrono-c": {"lstm_init": "chrono", "grad_clip": 1.0},
    "chrono200": {"lstm_init": "chrono", "chrono_t_max": 200},
    "chrono500": {"lstm_init": "chrono", "chrono_t_max": 500},
    "chrono-noop": {"lstm_init": "chrono", "steps": 1, "lr": 1e-12},
    "chrono-ck8": {"lstm_init": "chrono", "grad_clip": 1.0, "perturbations": 8},
    "ck8-m500": {"grad_clip": 1.0, "perturbations": 8, "settle_max": 500},
    "ack8": {"adaptive_settle": True, "grad_clip": 1.0, "perturbations": 8},
    "ack8-m500": {"adaptive_settle": True, "grad_clip": 1.0, "perturbations": 8, "settle_max": 500},
    "ck8-r": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07},
    "ck8-h": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07,
              "restart_horizon": 2000, "max_restarts": 10},
    "ck8-hm1000": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07,
                   "restart_horizon": 2000, "max_restarts": 10, "settle_max": 1000},
    "ck8-m1000": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07,
                  "settle_max": 1000},
    "ck8-h3": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-3, "restart_below": 0.07,
               "restart_horizon": 2000, "max_restarts": 10},
    "s03-ck8-r": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07,
                  "input_scale": 0.3},
    "s03-ck8-h": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-2, "restart_below": 0.07,
                  "restart_horizon": 2000, "max_restarts": 10, "input_scale": 0.3},
    "s03-ck8-h3": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-3, "restart_below": 0.07,
                   "restart_horizon": 2000, "max_restarts": 10, "input_scale": 0.3},
    # the lasting-separation target as the restart rule: the outputs of the check's three draws
    # must not halve before M = 1 000 and must move less than 1e-3 per step there
    "ck8-t": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-3, "restart_below": 0.07,
              "restart_horizon": 1000, "vaa_checkpoints": (100, 200, 500, 1000), "max_restarts": 10},
    "s03-ck8-t": {"grad_clip": 1.0, "perturbations": 8, "restart_moving": 1e-3, "restart_below": 0.07,
                  "restart_horizon": 1000, "vaa_checkpoints": (100, 200, 500, 1000), "max_restarts": 10,
                  "input_scale": 0.3},
    "k8": {"perturbations": 8},
    "ck8": {"grad_clip": 1.0, "perturbations": 8},
    "ortho-c": {"lstm_init": "orthogonal", "grad_clip": 1.0},
    "ortho-ck8": {"lstm_init": "orthogonal", "grad_clip": 1.0, "perturbations": 8},
    "ao-m1000": {"adaptive_settle": True, "state_view": "output", "settle_max": 1000},
    "a-m1000": {"adaptive_settle": True, "settle_max": 1000},
    "aoc-m1000": {"adaptive_settle": True, "state_view": "output", "grad_clip": 1.0, "settle_max": 1000},
    "oc-h": {"state_view": "output", "grad_clip": 1.0, "restart_horizon": 2000, "restart_moving": 1e-2,
             "max_restarts": 10},
    "p-h": {"restart_horizon": 2000, "restart_moving": 1e-2, "max_restarts": 10},
    "c-h": {"grad_clip": 1.0, "restart_horizon": 2000, "restart_moving": 1e-2, "max_restarts": 10},
    "fixed": {"state_view": "output", "keep_best": True},
}
"""Warmup variants: ``WarmupConfig`` fields over the paper's defaults."""

# The levers against the direction dependence of an LSTM's lasting separation, on top of ck8-t:
# certify on eight draws (more restarts allowed), or scale the input weights by 0.1 instead of 0.3;
# then read the horizon past the target (ck8-t lets through outputs whose VAA halves exactly at
# M = 1 000: the rule restarts only on a horizon *shorter* than 1 000), and the movement at it.
_EIGHT_DRAWS = {"max_restarts": 20, "check_draws": 8}
_PAST_TARGET = {"restart_horizon": 2000, "vaa_checkpoints": (100, 200, 500, 1000, 2000)}
VARIANTS["ck8-t8"] = {**VARIANTS["ck8-t"], **_EIGHT_DRAWS}
VARIANTS["s03-ck8-t8"] = {**VARIANTS["s03-ck8-t"], **_EIGHT_DRAWS}
VARIANTS["s01-ck8-t"] = {**VARIANTS["s03-ck8-t"], "input_scale": 0.1}
VARIANTS["ck8-h8"] = {**VARIANTS["ck8-t8"], **_PAST_TARGET}
VARIANTS["s03-ck8-h8"] = {**VARIANTS["ck8-h8"], "input_scale": 0.3}
VARIANTS["ck8-h8m"] = {**VARIANTS["ck8-h8"], "restart_moving_at": 1000}
VARIANTS["s03-ck8-h8m"] = {**VARIANTS["ck8-h8m"], "input_scale": 0.3}
# a margin under the target: certify movement below 3e-4 per step so that a ninth draw (the
# measure's own perturbation) stays below the target's 1e-3
VARIANTS["ck8-h8m3"] = {**VARIANTS["ck8-h8m"], "restart_moving": 3e-4}
VARIANTS["s03-ck8-h8m3"] = {**VARIANTS["ck8-h8m3"], "input_scale": 0.3}
# more draws: if a network fails under a fraction p of perturbations, one that passed k draws
# fails the next with probability about 1 / (k + 2) under a uniform prior on p (Laplace's rule):
# ~10 % after 8 draws, ~3 % after 32. A draw of a 1 x 32 LSTM costs ~0.3 s; the restarts cost more.
VARIANTS["ck8-h32m"] = {**VARIANTS["ck8-h8m"], "check_draws": 32}
VARIANTS["ck8-h32m-r60"] = {**VARIANTS["ck8-h32m"], "max_restarts": 60}  # where 20 restarts ran out
# MiniGrid Memory features: the stop-at-target rule with input scaling (s03-ck8-t8, the best there)
# certified on 32 draws, 60 restarts
VARIANTS["s03-ck8-t32-r60"] = {**VARIANTS["s03-ck8-t8"], "check_draws": 32, "max_restarts": 60}
# ... or a loss that sees the target: VAA* settled up to 1 000 steps (the target's M) during warmup
VARIANTS["s03-ck8-t8-m1000"] = {**VARIANTS["s03-ck8-t8"], "settle_max": 1000}
# ... and both: the loss settled to the target, certified on 32 draws (a network failing under a
# fraction p of constant inputs passes 8 draws with probability (1 - p)^8: 6 % at p = 0.3, as a
# stock 1 x 32 network with no restart did, which then failed the measure's own draw)
VARIANTS["s03-ck8-t32-m1000"] = {**VARIANTS["s03-ck8-t8-m1000"], "check_draws": 32, "max_restarts": 60}
# ... or with the target's VAA floor as a rule too (restart_vaa_below): the horizon rule passes
# outputs merged before the first checkpoint (no horizon) or halving exactly at M = 1 000; a
# certified 32-draw network (stock 1 x 32, seed 9) merged by M = 200 under the measure's draw
VARIANTS["s03-ck8-t8f-m1000"] = {**VARIANTS["s03-ck8-t8-m1000"], "restart_vaa_below": 0.1}
VARIANTS["s03-ck8-t32f-m1000"] = {**VARIANTS["s03-ck8-t32-m1000"], "restart_vaa_below": 0.1}
# ... or a loss that sees more directions: VAA* averaged over 32 constant inputs per step instead of
# 8 (the misses on MiniGrid features are networks that keep their states apart under most constant
# inputs and not under some; the check can only refuse them, the loss can train against it)
VARIANTS["s03-ck32-t8f-m1000"] = {**VARIANTS["s03-ck8-t8f-m1000"], "perturbations": 32}
# ... and certified on 32 draws: the 32-input loss's misses (stock 1 x 32) passed eight calm draws and
# moved more than 1e-3 per step under the measure's own; the first eight of the 32 draws are the same
# eight, so a network that passes the other 24 is the one the eight-draw check kept
VARIANTS["s03-ck32-t32f-m1000"] = {**VARIANTS["s03-ck32-t8f-m1000"], "check_draws": 32, "max_restarts": 60}
# ... or certified on the same eight draws with a movement margin (3e-4 per step against the
# target's 1e-3), the cheaper way to refuse the slowly moving misses
VARIANTS["s03-ck32-t8fm3-m1000"] = {**VARIANTS["s03-ck32-t8f-m1000"], "restart_moving": 3e-4}
# ... or a loss that asks the outputs to stay put: VAA* counts drifting states as distinct, so its
# descent need not settle them (--gradient-probe 60 on stock 1 x 32 MiniGrid networks: cosine of the
# loss's gradient with the movement's -0.08 to -1.00 for seeds 1 and 16, -0.00 to +0.80 for 0 and 2);
# the movement's gradient is as large as the loss's at movements of ~1e-3 and far smaller at 1e-5,
# so a weight of 10 acts on moving outputs and hardly on settled ones
VARIANTS["s03-ck32-t8f-m1000-mp10"] = {**VARIANTS["s03-ck32-t8f-m1000"], "movement_penalty": 10.0}

SATURATED = 9.0
"""``|c|`` above which ``tanh(c)`` rounds to +-1 in float32."""


def build(source: str, policy: str, network: str, seed: int) -> tuple[RecurrentNetwork, list[torch.Tensor]]:
    """The actor's recurrent network (fresh, seeded) and its warmup input sequences."""
    layers, units = NETWORKS[network]
    if source == "copy":
        from envs.supervised import copy_first_input

        net = RecurrentNetwork("lstm", 1, units, layers, generator=torch.Generator().manual_seed(seed))
        batch = copy_first_input(256, np.random.default_rng(seed), length=300)
        return net, [torch.as_tensor(x, dtype=torch.float32) for x in batch.inputs]
    from sb3_contrib import RecurrentPPO

    from rl_warmup.experiment.config import resolve_config
    from rl_warmup.experiment.train import make_env
    from rl_warmup.sb3.policies import RecurrentCellPolicy
    from rl_warmup.sb3.warmup import collect_policy_sequences, recurrent_networks

    config = resolve_config({"env_id": SOURCES[source], "seed": seed})
    env = make_env(config)
    if policy in ("cell", "gru"):
        model = RecurrentPPO(
            RecurrentCellPolicy, env, seed=seed, device="cpu",
            policy_kwargs=dict(cell="gru" if policy == "gru" else "lstm", lstm_hidden_size=units, n_lstm_layers=layers),
        )
    else:
        model = RecurrentPPO(
            "MlpLstmPolicy", env, seed=seed, device="cpu",
            policy_kwargs=dict(lstm_hidden_size=units, n_lstm_layers=layers),
        )
    sequences = collect_policy_sequences(model, seed=seed)["actor"]
    net = recurrent_networks(model.policy)["actor"]
    env.close()
    return net, sequences


def trace_point(net: RecurrentNetwork, sequences: list[torch.Tensor], settle: int) -> dict[str, float]:
    """Exact VAA of ``h`` and of ``(h, c)`` after ``settle`` steps, and statistics of the settled ``c``."""
    gen = torch.Generator().manual_seed(12345)
    out = measure_vaa(net, sequences, settle_steps=settle, n=100, generator=gen, view="output")
    gen = torch.Generator().manual_seed(12345)
    full = measure_vaa(net, sequences, settle_steps=settle, n=100, generator=gen, view="state")
    gen = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        states = initial_states(net, sequences, gen, n=100)
        u = torch.randn(net.input_size, generator=gen).expand(100, -1)
        settled = net.settle(u, states, settle)
        c = torch.cat([s[:, layer.hidden_size :] for layer, s in zip(net.layers, settled, strict=True)], dim=1)
        c = c[torch.isfinite(c).all(dim=1)]  # empty for a GRU, whose state is h alone
    return {
        "vaa_h": out.vaa,
        "vaa_hc": full.vaa,
        "move_h": out.movement,
        "nonfinite": float(out.n_nonfinite),
        "c_abs_max": float(c.abs().max()) if c.numel() else math.nan,
        "c_abs_mean": float(c.abs().mean()) if c.numel() else math.nan,
        "c_saturated": float((c.abs() > SATURATED).float().mean()) if c.numel() else math.nan,
    }


def spreads(net: RecurrentNetwork, sequences: list[torch.Tensor], seed: int) -> tuple[float, float]:
    """Median pairwise distance of the outputs ``h`` at the initial states and after 1 000 settling
    steps, with the draws of the exact measure of the same seed (``measure_vaa`` draws the states,
    then the perturbation). VAA counts two states as distinct once they are ε = 1e-4 apart, so it
    says nothing about how far apart they stay; this does."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        states = initial_states(net, sequences, gen, n=100)
        u = torch.randn(net.input_size, generator=gen).expand(100, -1)
        settled = net.settle(u, states, 1000)

        def outputs(xs: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat([layer.output_of(x) for layer, x in zip(net.layers, xs, strict=True)], dim=1)

        return tuple(float(torch.cdist(h, h).median()) for h in (outputs(states), outputs(settled)))  # type: ignore[return-value]


def forget_gate_mean(net: RecurrentNetwork) -> float:
    """Mean forget-gate bias (``bias_ih + bias_hh``) over the LSTM layers."""
    values = []
    if net.cell != "lstm":
        return math.nan
    for layer in net.layers:
        rnn = layer.warm_part.rnn  # type: ignore[attr-defined]
        h = layer.warm_part.hidden_size
        values.append((rnn.bias_ih_l0[h : 2 * h] + rnn.bias_hh_l0[h : 2 * h]).detach())
    return float(torch.cat(values).mean())


def run_one(
    source: str, policy: str, network: str, variant: str, seed: int, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    net, sequences = build(source, policy, network, seed)
    config = dataclasses.replace(WarmupConfig(seed=seed), **VARIANTS[variant])
    key = {"source": source, "policy": policy, "network": network, "variant": variant, "seed": seed}
    trace: list[dict[str, Any]] = []

    def callback(step: int, loss: float, stars: list[float]) -> None:
        if step % args.trace_every and step != config.steps - 1:
            return
        row = {**key, "step": step, "loss": loss, "vaa_star": float(np.mean(stars)), "vaa_star_min": min(stars)}
        if args.trace_settle > 0:
            row.update(trace_point(net, sequences, args.trace_settle))
        row["forget_bias"] = forget_gate_mean(net)
        trace.append(row)

    start = time.perf_counter()
    try:
        result = warmup(net, sequences, config, callback=callback)
    except WarmupError as e:  # every attempt was refused by a restart rule: the user gets no network
        failed = {**key, "vaa_star": math.nan, "collapsed": "error", "vaa_h_1000": math.nan, "move_h_1000": math.nan,
                  "nonfinite_1000": 0, "horizon": math.nan, "curve": "", "best_step": -1, "restarts": config.max_restarts,
                  "seconds": time.perf_counter() - start, "error": str(e)}
        return trace, failed
    seconds = time.perf_counter() - start
    if getattr(args, "out", None):  # the warmed weights, to measure again later (e.g. under more perturbations)
        saved = _network_path(Path(args.out), tuple(key.values()))
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), saved)
    # the result's histories are the last attempt's: after a restart, steps count from 0 again and
    # the earlier attempts' rows keep no settling length or gradient norm (they are not known here)
    last = max((k for k, r in enumerate(trace) if r["step"] == 0), default=0)
    for row in trace[last:]:
        row["settle"] = result.settle_history[row["step"]]
        row["grad_norm"] = result.grad_norm_history[row["step"]]
    # measured on draws of its own (not the warmup's check, which restart rules select on), to M = 10 000
    measured = measure_vaa(net, sequences, settle_steps=DEFAULT_CHECKPOINTS[-1], n=100,
                           generator=torch.Generator().manual_seed(10_000 + seed), checkpoints=DEFAULT_CHECKPOINTS)
    assert measured.curve is not None
    curve = measured.curve
    spread_0, spread_1000 = spreads(net, sequences, 10_000 + seed)
    at1000 = curve.settle_steps.index(1000)
    final = {
        **key,
        "vaa_star": min(result.final_vaa_star),
        "collapsed": bool(result.collapsed_layers),
        "vaa_h_1000": curve.vaa[at1000],
        "move_h_1000": curve.movement[at1000],
        "nonfinite_1000": curve.n_nonfinite[at1000],
        "horizon": curve.horizon if curve.horizon is not None else math.inf,
        "curve": " ".join(f"{v:.3f}" for v in curve.vaa),
        "spread_0": spread_0,
        "spread_1000": spread_1000,
        "best_step": -1 if result.best_step is None else result.best_step,
        "restarts": result.restarts,
        "seconds": seconds,
    }
    return trace, final


FINAL_FIELDS = ["source", "policy", "network", "variant", "seed", "vaa_star", "collapsed", "vaa_h_1000",
                "move_h_1000", "nonfinite_1000", "horizon", "curve", "spread_0", "spread_1000", "best_step", "restarts", "seconds", "error"]
TRACE_FIELDS = ["source", "policy", "network", "variant", "seed", "step", "settle", "loss", "vaa_star",
                "vaa_star_min", "grad_norm", "vaa_h", "vaa_hc", "move_h", "nonfinite", "c_abs_max", "c_abs_mean",
                "c_saturated", "forget_bias"]


def _check_header(path: Path, fields: list[str]) -> None:
    """Refuse a results file written with other columns (another version of this script): appending
    to it would put values under the wrong names."""
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            raise SystemExit(f"{path} has the columns {header}, not those this script writes ({fields}): "
                             "write to a new --out")


def _append(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    _check_header(path, fields)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["source"], row["policy"], row["network"], row["variant"], row["seed"])


def _network_path(out: Path, cell: tuple[Any, ...]) -> Path:
    """Where the study in ``out`` keeps the warmed network of ``cell`` (source, policy, network, variant, seed)."""
    return out / "networks" / "{}_{}_{}_{}_s{}.pt".format(*cell)


def merge(source: Path, out: Path, cells: set[tuple[str, ...]]) -> int:
    """Copy the finished warmups of ``cells`` (their final and trace rows) from the study directory
    ``source`` into ``out``, skipping those ``out`` already has; returns how many were copied."""
    have = {_key(r) for r in _read(out / "final.csv")}
    finals = [r for r in _read(source / "final.csv") if _key(r) in cells and _key(r) not in have]
    new = {_key(r) for r in finals}
    _append(out / "trace.csv", TRACE_FIELDS, [r for r in _read(source / "trace.csv") if _key(r) in new])
    _append(out / "final.csv", FINAL_FIELDS, finals)
    for key in new:  # and the warmed weights, where that study kept them
        if _network_path(source, key).exists():
            (out / "networks").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_network_path(source, key), _network_path(out, key))
    return len(finals)


def gradient_probe(cell: tuple[str, ...], steps: int, settles: tuple[int, ...] = (500, 1000)) -> list[dict[str, Any]]:
    """Warm the cell's network for ``steps`` steps of its variant with no restart rule, then, at each
    settling length of ``settles`` (one batch of the variant's size, its perturbations), the warmup
    loss's gradient against that of the outputs' mean last-step movement: their norms and cosine.
    A negative cosine: descending the loss makes the outputs move more (VAA* counts drifting states
    as distinct), the reason for ``WarmupConfig.movement_penalty``."""
    source, policy, network, variant, seed = cell
    net, sequences = build(source, policy, network, int(seed))
    config = dataclasses.replace(WarmupConfig(seed=int(seed)), **VARIANTS[variant])
    config = dataclasses.replace(config, steps=steps, vaa_checkpoints=None, restart_horizon=None, restart_moving=None,
                                 restart_moving_at=None, restart_vaa_below=None, restart_below=0.0,
                                 restart_threshold=1.0, max_restarts=0)
    try:
        warmup(net, sequences, config)
    except WarmupError as e:  # a non-finite loss: nothing to compare
        print(f"{' '.join(cell)}: the probe's warmup failed ({e})", flush=True)
        return []
    padded, lengths = pad_sequences(sequences)
    params = [q for q in net.parameters() if q.requires_grad]
    gen = torch.Generator().manual_seed(30_000 + int(seed))
    rows = []
    for m in settles:
        states = initial_states(net, padded, gen, n=config.batch_size, lengths=lengths)
        stars, moves = stars_and_movement(net, states, m, generator=gen, epsilon=config.epsilon, view=config.state_view,
                                          perturbations=config.perturbations)
        assert moves is not None
        loss = _warmup_loss(stars, config)
        g_loss = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        g_move = torch.autograd.grad(moves.mean(), params, allow_unused=True)
        flat_loss, flat_move = (torch.cat([(torch.zeros_like(q) if g is None else g).flatten() for q, g in zip(params, gs, strict=True)])
                                for gs in (g_loss, g_move))  # a parameter one term does not reach: zeros
        norms = float(flat_loss.norm()), float(flat_move.norm())
        rows.append({"source": source, "policy": policy, "network": network, "variant": variant, "seed": seed,
                     "steps": steps, "settle": m, "vaa_star": float(stars.detach().mean()), "movement": float(moves.detach().mean()),
                     "grad_loss": norms[0], "grad_movement": norms[1],
                     "cosine": float(flat_loss @ flat_move) / (norms[0] * norms[1]) if min(norms) > 0 else math.nan})
    return rows


PROBE_FIELDS = ["source", "policy", "network", "variant", "seed", "steps", "settle", "vaa_star", "movement",
                "grad_loss", "grad_movement", "cosine"]
REMEASURE_FIELDS = ["source", "policy", "network", "variant", "seed", "draw", "vaa_h_1000", "move_h_1000"]


REMEASURE_MAX = 1000
"""Draws per network of ``--remeasure``: seed ``s``'s draws are ``20 000 + 1 000 s + k``, ``k < 1 000``."""


def remeasure(cell: tuple[str, ...], out: Path, draws: list[int]) -> list[dict[str, Any]]:
    """The saved warmed network of ``cell`` measured again under the fresh draws ``draws`` (initial
    states and constant perturbation; generator seeds ``20 000 + 1 000 * seed + k``, none of the
    warmup's or of the final measure's): per draw, the exact VAA of ``h`` at M = 1 000 and its
    movement. Which share of constant inputs a network fails under, where one draw only says
    pass or fail."""
    source, policy, network, variant, seed = cell
    net, sequences = build(source, policy, network, int(seed))
    net.load_state_dict(torch.load(_network_path(out, cell)))
    rows = []
    for k in draws:
        gen = torch.Generator().manual_seed(20_000 + 1_000 * int(seed) + k)
        m = measure_vaa(net, sequences, settle_steps=1000, n=100, generator=gen)
        rows.append({"source": source, "policy": policy, "network": network, "variant": variant, "seed": seed,
                     "draw": k, "vaa_h_1000": m.vaa, "move_h_1000": m.movement})
    return rows


def good(row: dict[str, str], *, vaa_min: float = 0.1, move_max: float = 1e-3) -> bool:
    """The target for one warmup: VAA of ``h`` at M = 1000 >= 0.1 with ``h`` moving < 1e-3 per step
    (a failed warmup, ``WarmupError``, is not good)."""
    return row["collapsed"] != "error" and float(row["vaa_h_1000"]) >= vaa_min and float(row["move_h_1000"]) < move_max


def _median(rows: list[dict[str, str]], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return float(np.nanmedian(values)) if values else math.nan


def summary(rows: list[dict[str, str]]) -> str:
    """Markdown table: per (source, policy, network, variant), collapses and good warmups over seeds."""
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["policy"], row["network"], row["variant"]), []).append(row)
    lines = [
        "| source | policy | network | variant | seeds | collapsed (VAA* <= 2/n) | VAA(h, M=1000) >= 0.1 and moving < 1e-3 "
        "| median VAA(h, M=1000) | median horizon | median spread of h at M=0 -> 1000 | median VAA* | restarts "
        "| failed (WarmupError) | s per warmup |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (source, policy, network, variant), group in sorted(groups.items()):
        n = len(group)
        collapsed = sum(r["collapsed"] in ("True", "error") for r in group)
        ok = sum(good(r) for r in group)
        horizons = [float(r["horizon"]) for r in group]
        lines.append(
            f"| {source} | {policy if source != 'copy' else '-'} | {network} | {variant} | {n} | {collapsed}/{n} | {ok}/{n} "
            f"| {np.nanmedian([float(r['vaa_h_1000']) for r in group]):.2f} | {np.nanmedian(horizons):.0f} "
            f"| {_median(group, 'spread_0'):.3f} -> {_median(group, 'spread_1000'):.4f} "
            f"| {np.nanmedian([float(r['vaa_star']) for r in group]):.2f} | {sum(int(r.get('restarts') or 0) for r in group)} "
            f"| {sum(r['collapsed'] == 'error' for r in group)} | {np.mean([float(r['seconds']) for r in group]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(trace: list[dict[str, str]], final: list[dict[str, str]], out: Path) -> None:
    """``trace.png``: VAA*, exact VAA of h, saturation and gradient norm per warmup step;
    ``curves.png``: VAA(M) after warmup, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({r["variant"] for r in trace})
    colors = {v: plt.get_cmap("tab10")(i % 10) for i, v in enumerate(variants)}
    keys = [("vaa_star", "VAA* (at the drawn M)"), ("vaa_h", "exact VAA of h"), ("c_saturated", "share of |c| > 9"),
            ("grad_norm", "gradient norm")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    runs: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for r in trace:
        runs.setdefault((r["source"], r["policy"], r["network"], r["variant"], r["seed"]), []).append(r)
    for (_, _, _, variant, _), rows in runs.items():
        steps = [int(r["step"]) for r in rows]
        for ax, (k, _) in zip(axes, keys, strict=True):
            values = [float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows]
            ax.plot(steps, values, color=colors[variant], alpha=0.25, lw=0.8)
    for ax, (_, title) in zip(axes, keys, strict=True):
        ax.set_title(title)
        ax.set_xlabel("warmup step")
    axes[-1].set_yscale("log")
    axes[0].legend(handles=[plt.Line2D([], [], color=colors[v], label=v) for v in variants], fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "trace.png", dpi=110)
    plt.close(fig)

    checkpoints = DEFAULT_CHECKPOINTS
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in final:
        values = [float(v) for v in r["curve"].split()]
        ax.plot(checkpoints[: len(values)], values, color=colors.get(r["variant"], "k"), alpha=0.3, lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("settling steps M")
    ax.set_ylabel("exact VAA of h")
    ax.legend(handles=[plt.Line2D([], [], color=colors[v], label=v) for v in variants], fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def _remeasure_all(cells: list[tuple[str, ...]], out: Path, draws: int) -> int:
    """``--remeasure``: measure each saved network under draws ``0 .. draws - 1``, those not yet in
    ``remeasure.csv``; print a line per network, over those draws."""
    saved = [c for c in cells if _network_path(out, c).exists()]
    for cell in cells:
        if cell not in saved:
            print(f"{' '.join(cell)}: no saved network in {out / 'networks'}, skipped", flush=True)
    if not saved:
        raise SystemExit(f"--remeasure: no saved network of the cells asked for in {out / 'networks'}")
    have: dict[tuple[str, ...], set[int]] = {}
    for r in _read(out / "remeasure.csv"):
        have.setdefault(_key(r), set()).add(int(r["draw"]))
    for cell in saved:
        todo = [k for k in range(draws) if k not in have.get(cell, set())]
        if todo:
            _append(out / "remeasure.csv", REMEASURE_FIELDS, remeasure(cell, out, todo))
    rows = _read(out / "remeasure.csv")
    for cell in saved:
        mine = [{**r, "collapsed": "False"} for r in rows if _key(r) == cell and int(r["draw"]) < draws]
        print(f"{' '.join(cell)}: lasting under {sum(good(r) for r in mine)}/{len(mine)} draws "
              f"(moving >= 1e-3: {sum(float(r['move_h_1000']) >= 1e-3 for r in mine)}, "
              f"VAA < 0.1: {sum(float(r['vaa_h_1000']) < 0.1 for r in mine)})", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES), help="input sources (default: all)")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES),
                        help="policies of the RL sources (default: both)")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS), help="sizes (default: all)")
    parser.add_argument("--variants", nargs="+", default=["paper", "fixed"], choices=list(VARIANTS),
                        help="warmup variants (default: %(default)s)")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(range(10)), help="seeds (default: 0..9)")
    parser.add_argument("--trace-every", type=int, default=10, help="steps between trace points (default: %(default)s)")
    parser.add_argument("--trace-settle", type=int, default=1000,
                        help="settling steps of the exact VAA in the trace; 0: no exact VAA in the trace (default: %(default)s)")
    parser.add_argument("--out", default="results/lstm_diagnosis", help="output directory (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--merge", nargs="+", default=[], metavar="DIR",
                        help="output directories of the same study run as separate processes: their finished "
                             "warmups of the cells asked for are copied into --out (first directory wins) "
                             "and not run again")
    parser.add_argument("--remeasure", type=int, default=0, metavar="DRAWS",
                        help="instead of warming: measure the saved warmed networks of the cells asked for under "
                             "DRAWS fresh draws each (remeasure.csv; the share of draws each passes the target)")
    parser.add_argument("--gradient-probe", type=int, default=0, metavar="STEPS",
                        help="instead of the study: warm each cell STEPS steps with no restart rule and compare the "
                             "loss's gradient with that of the outputs' movement at M = 500 and 1 000 (probe.csv)")
    args = parser.parse_args(argv)
    if args.remeasure < 0 or args.gradient_probe < 0:
        parser.error("--remeasure and --gradient-probe must be >= 0")
    if args.remeasure and args.gradient_probe:
        parser.error("--remeasure and --gradient-probe are two different runs: ask for one")
    if args.remeasure > REMEASURE_MAX:
        parser.error(f"--remeasure takes at most {REMEASURE_MAX} draws (each seed has that many of its own)")
    if args.trace_every < 1:
        parser.error("--trace-every must be >= 1")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [
        (source, policy if source != "copy" else "-", network, variant, seed)
        for source in args.sources
        for policy in (args.policies if source != "copy" else ["-"])
        for network in args.networks
        for variant in args.variants
        for seed in args.seeds
    ]
    for name, fields in (("final.csv", FINAL_FIELDS), ("trace.csv", TRACE_FIELDS), ("probe.csv", PROBE_FIELDS),
                         ("remeasure.csv", REMEASURE_FIELDS)):
        _check_header(out / name, fields)
    cells = [(*cell[:4], str(cell[4])) for cell in todo]
    missing = [other for other in args.merge if not (Path(other) / "final.csv").exists()]
    if missing:  # before copying anything
        raise SystemExit(f"--merge: no final.csv in {', '.join(missing)}")
    for other in args.merge:
        merge(Path(other), out, set(cells))
    done = {_key(r) for r in _read(out / "final.csv")}
    if args.gradient_probe:
        probed = {(*_key(r), r["steps"]) for r in _read(out / "probe.csv")}
        for cell in cells:
            if (*cell, str(args.gradient_probe)) in probed:
                continue
            rows = gradient_probe(cell, args.gradient_probe)
            _append(out / "probe.csv", PROBE_FIELDS, rows)
            for r in rows:
                print(f"{' '.join(cell[:4])} s{cell[4]} after {r['steps']} steps, M = {r['settle']}: VAA* {r['vaa_star']:.3f} "
                      f"movement {r['movement']:.1e} |grad loss| {r['grad_loss']:.3g} |grad movement| "
                      f"{r['grad_movement']:.3g} cosine {r['cosine']:+.2f}", flush=True)
        return 0
    if args.remeasure:
        return _remeasure_all(cells, out, args.remeasure)
    for i, (source, policy, network, variant, seed) in enumerate(todo):
        if (source, policy, network, variant, str(seed)) in done:
            continue
        trace, final = run_one(source, policy, network, variant, seed, args)
        _append(out / "trace.csv", TRACE_FIELDS, trace)
        _append(out / "final.csv", FINAL_FIELDS, [final])
        print(
            f"[{i + 1}/{len(todo)}] {source} {policy} {network} {variant} s{seed}: VAA* {final['vaa_star']:.3f} "
            f"VAA(h,1000) {final['vaa_h_1000']:.3f} move {final['move_h_1000']:.1e} horizon {final['horizon']} "
            f"({final['seconds']:.1f} s)",
            flush=True,
        )
    final_rows = _read(out / "final.csv")
    (out / "summary.md").write_text(summary(final_rows))
    plot(_read(out / "trace.csv"), final_rows, out)
    print(summary(final_rows))
    return 0


if __name__ == "__main__":
    gru_ext.reexec_with_huge_pages()  # a third less CPU time in long LSTM warmups, the same results
    sys.exit(main())
