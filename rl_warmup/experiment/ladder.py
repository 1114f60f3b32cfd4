"""The memory-length ladder: success against memory length per condition, over several
comparisons (``scripts/compare.py`` output directories), in the shape of Ni et al. (2023)'s
figure, with the memory horizon of each run's actor after warmup and cold/warmed speed-ups.

A comparison directory is one invocation of ``scripts/compare.py`` (its ``results.csv`` and
``runs/``). Several directories are merged because the ladder's conditions differ in settings that
``--set`` applies to a whole invocation (``lstm_forget_bias=1``, budgets per length): a ``TAG``
given with a directory (``DIR:TAG``) names its rows, e.g. ``cold lstm (fb1)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_warmup.experiment.grid import memory_length
from rl_warmup.experiment.logs import read_csv
from rl_warmup.experiment.report import _family, _figure, _num


@dataclass(frozen=True)
class LadderRun:
    """One finished run of the ladder."""

    label: str
    """``<condition> <cell>``, with `` (<tag>)`` when its comparison was tagged."""
    env_id: str
    family: str
    memory_length: float
    seed: int
    reached: bool
    timesteps_to_threshold: float
    """NaN when not reached."""
    num_timesteps: float
    final_success: float
    vaa_after_warmup: float
    vaa_final: float
    horizon: float
    """Memory horizon of the actor before training (after warmup): the first settling length M at
    which its exact VAA fell below half its value at the smallest M; ``inf`` when it never did up
    to ``horizon_max``; NaN when not measured."""
    horizon_max: float
    """The largest M of that measure."""
    wall_seconds: float
    warmup_failed: bool = False
    """The warmup ran out of restarts (``WarmupError``) and the agent never trained: counted as a
    run that did not reach the threshold within its budget, left out of the means."""


def _memory_length(env_id: str, value: str) -> float:
    """The ``memory_length`` column, or the environment's registration where it is empty."""
    length = _num(value)
    return length if math.isfinite(length) else memory_length(env_id)


def _horizon(run_dir: Path) -> tuple[float, float]:
    """The actor's memory horizon before training and the largest M it was measured at: from
    ``warmup.json`` (the warmup's own curve, up to its largest checkpoint) when there is one,
    else from the first row of ``vaa.csv`` (the VAA logger's curve)."""
    warmup = run_dir / "warmup.json"
    if warmup.exists():
        actor = json.loads(warmup.read_text()).get("networks", {}).get("actor", {})
        curve = {int(k): v for k, v in (actor.get("vaa_curve") or {}).items()}
        if curve:
            horizon = actor.get("vaa_horizon")
            return (math.inf if horizon is None else float(horizon)), float(max(curve))
    rows = read_csv(run_dir / "vaa.csv") if (run_dir / "vaa.csv").exists() else []
    if rows and "vaa/actor_horizon" in rows[0]:
        ms = [int(k.rsplit("_M", 1)[1]) for k in rows[0] if k.startswith("vaa/actor_M")]
        return _num(rows[0]["vaa/actor_horizon"]), float(max(ms, default=math.nan))
    return math.nan, math.nan


def load_runs(sources: Sequence[str]) -> list[LadderRun]:
    """The finished runs of comparison directories given as ``DIR`` or ``DIR:TAG``, and those
    whose warmup failed (``WarmupError``; see :attr:`LadderRun.warmup_failed`).

    :raises FileNotFoundError: when a directory has no ``results.csv`` (run ``scripts/compare.py``
        with ``--output-dir DIR`` first, or ``--report-only`` to rebuild it).
    """
    runs: list[LadderRun] = []
    for source in sources:
        directory, _, tag = source.partition(":")
        path = Path(directory) / "results.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: give the --output-dir of a scripts/compare.py run")
        for row in read_csv(path):
            error = row.get("error", "").split(":", 1)[0]
            failed_warmup = row.get("status") == "failed" and error.rsplit(".", 1)[-1] == "WarmupError"
            if row.get("status") != "finished" and not failed_warmup:
                continue
            identity = {
                "label": f"{row['condition']} {row['cell']}" + (f" ({tag})" if tag else ""),
                "env_id": row["env_id"],
                "family": _family(row["env_id"]),
                "memory_length": _memory_length(row["env_id"], row.get("memory_length", "")),
                "seed": int(row["seed"]),
            }
            if failed_warmup:
                # never trained: not reached, censored at its budget, nothing measured
                nan = math.nan
                runs.append(LadderRun(**identity, reached=False, timesteps_to_threshold=nan,
                                      num_timesteps=_num(row.get("total_timesteps")), final_success=nan,
                                      vaa_after_warmup=nan, vaa_final=nan, horizon=nan, horizon_max=nan,
                                      wall_seconds=nan, warmup_failed=True))
                continue
            steps = _num(row["timesteps_to_threshold"])
            run_dir = Path(row["run_dir"])
            if not run_dir.is_absolute() and not run_dir.exists():
                run_dir = Path(directory) / "runs" / run_dir.name
            horizon, horizon_max = _horizon(run_dir) if run_dir.exists() else (math.nan, math.nan)
            runs.append(
                LadderRun(
                    **identity,
                    reached=math.isfinite(steps),
                    timesteps_to_threshold=steps,
                    num_timesteps=_num(row["num_timesteps"]),
                    final_success=_num(row["final_success_rate"]),
                    vaa_after_warmup=_num(row.get("vaa_after_warmup_actor")),
                    vaa_final=_num(row.get("vaa_final_actor")),
                    horizon=horizon,
                    horizon_max=horizon_max,
                    wall_seconds=_num(row["wall_seconds"]),
                )
            )
    return runs


def speedup(
    cold: Sequence[LadderRun], warmed: Sequence[LadderRun], *, confidence: float = 0.95, n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float, bool]:
    """Mean timesteps to threshold of the cold runs over that of the warmed runs, with a
    percentile bootstrap interval (seeds resampled within each condition). A run that did not
    reach the threshold counts with the timesteps it ran (its budget), so the ratio is then a
    lower bound if only cold runs failed (``censored`` True), an upper bound if only warmed ones
    did.

    :return: ``(ratio, low, high, censored)``; NaNs when either side is empty.
    """
    def steps(runs: Sequence[LadderRun]) -> np.ndarray:
        return np.asarray([r.timesteps_to_threshold if r.reached else r.num_timesteps for r in runs], dtype=float)

    a, b = steps(cold), steps(warmed)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan, False
    rng = np.random.default_rng(seed)
    ratios = a[rng.integers(0, a.size, (n_resamples, a.size))].mean(1) / b[rng.integers(0, b.size, (n_resamples, b.size))].mean(1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    censored = any(not r.reached for r in cold)
    return float(a.mean() / b.mean()), float(low), float(high), censored


def _ordered_labels(items: Sequence[LadderRun] | Sequence[LadderPoint]) -> list[str]:
    """The condition labels of runs or points, grouped by cell (and tag), cold before warmed."""
    return sorted({r.label for r in items}, key=lambda label: (label.partition(" ")[2], label.partition(" ")[0]))


def _skip_nan(reduce: Any, values: Sequence[float]) -> float:
    """``reduce`` (np.mean, np.median) over the values that are not NaN; NaN when none is."""
    finite = [v for v in values if not math.isnan(v)]
    return float(reduce(finite)) if finite else math.nan


def _mean(values: Sequence[float]) -> float:
    return _skip_nan(np.mean, values)


def _median(values: Sequence[float]) -> float:
    return _skip_nan(np.median, values)


def _steps(value: float) -> str:
    return "-" if math.isnan(value) else f"{value / 1000:,.0f}k"


def _horizon_text(runs: Sequence[LadderRun]) -> str:
    values = [r.horizon for r in runs if not math.isnan(r.horizon)]
    if not values:
        return "-"
    top = max(r.horizon_max for r in runs if not math.isnan(r.horizon))
    median = float(np.median(values))
    return f"> {top:,.0f}" if math.isinf(median) else f"{median:,.0f}"


def ladder_markdown(runs: Sequence[LadderRun], *, threshold: float = 0.95) -> str:
    """A table per environment family: one row per condition label and memory length."""
    lines: list[str] = []
    families = dict.fromkeys(r.family for r in sorted(runs, key=lambda r: (r.family, r.memory_length)))
    for family in families:
        members = [r for r in runs if r.family == family]
        lines += [
            f"### {family}",
            "",
            f"| condition | L | runs | reached {100 * threshold:g} % | final success (mean) | timesteps to "
            f"{100 * threshold:g} % (median of those that reached) | budget | VAA after warmup | VAA at end | "
            "memory horizon after warmup (median) | wall per run (median) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        labels = _ordered_labels(members)
        for label in labels:
            for length in sorted({r.memory_length for r in members if r.label == label}):
                group = [r for r in members if r.label == label and r.memory_length == length]
                reached = [r for r in group if r.reached]
                failed = sum(r.warmup_failed for r in group)
                lines.append(
                    f"| {label} | {length:g} | {len(group)}{f' ({failed} warmup failed)' if failed else ''} | "
                    f"{len(reached)}/{len(group)} | {_mean([r.final_success for r in group]):.2f} | "
                    f"{_steps(_median([r.timesteps_to_threshold for r in reached]))} | "
                    f"{_steps(max(r.num_timesteps for r in group))} | "
                    f"{_median([r.vaa_after_warmup for r in group]):.2f} | {_median([r.vaa_final for r in group]):.2f} | "
                    f"{_horizon_text(group)} | {_median([r.wall_seconds for r in group]) / 60:.1f} min |"
                )
        if any(r.warmup_failed for r in members):
            lines += ["", "A run whose warmup failed (`WarmupError`: out of restarts) never trained: it counts as "
                      "not reaching the threshold within its budget and is left out of the means."]
        lines.append("")
    pairs = []
    for family in families:
        members = [r for r in runs if r.family == family]
        for length in sorted({r.memory_length for r in members}):
            at = [r for r in members if r.memory_length == length]
            for label in dict.fromkeys(r.label for r in at):
                if not label.startswith("warmed "):
                    continue
                cold_label = "cold " + label.removeprefix("warmed ")
                cold = [r for r in at if r.label == cold_label]
                warmed = [r for r in at if r.label == label]
                if cold:
                    pairs.append((family, length, label, cold, warmed))
    if pairs:
        lines += [
            f"### Speed-up: timesteps to {100 * threshold:g} %, cold / warmed",
            "",
            "Runs that did not reach it count with their budget: `>=` marks a lower bound (some cold "
            "runs never reached it).",
            "",
            "| environment | L | condition | cold reached | warmed reached | ratio [95 % bootstrap CI] |",
            "|---|---|---|---|---|---|",
        ]
        for family, length, label, cold, warmed in pairs:
            ratio, low, high, censored = speedup(cold, warmed)
            mark = ">= " if censored else ""
            lines.append(
                f"| {family} | {length:g} | {label.removeprefix('warmed ')} | {sum(r.reached for r in cold)}/{len(cold)} | "
                f"{sum(r.reached for r in warmed)}/{len(warmed)} | {mark}{ratio:.1f} [{low:.1f}, {high:.1f}] |"
            )
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class LadderPoint:
    """One condition at one memory length: what the ladder's plot draws (a row of its table)."""

    family: str
    label: str
    memory_length: float
    runs: int
    reached: int
    """Runs that reached the threshold."""
    final_success: float
    """Mean final success rate (NaN when no run trained)."""
    source: str = ""
    """Where the numbers come from (a report, its command or date), for points read from a CSV."""

    @property
    def reached_fraction(self) -> float:
        return self.reached / self.runs if self.runs else math.nan


POINT_FIELDS = ("family", "memory_length", "label", "runs", "reached", "final_success", "source")
"""The columns of a points CSV (:func:`write_points`, :func:`read_points`)."""


def ladder_points(runs: Sequence[LadderRun]) -> list[LadderPoint]:
    """The runs aggregated per environment family, condition label and memory length."""
    points = []
    for family in dict.fromkeys(r.family for r in sorted(runs, key=lambda r: r.family)):
        members = [r for r in runs if r.family == family]
        for label in _ordered_labels(members):
            for length in sorted({r.memory_length for r in members if r.label == label}):
                group = [r for r in members if r.label == label and r.memory_length == length]
                points.append(LadderPoint(family, label, length, len(group), sum(r.reached for r in group),
                                          _mean([r.final_success for r in group])))
    return points


def write_points(points: Sequence[LadderPoint], path: str | Path) -> None:
    """``points`` as CSV (:data:`POINT_FIELDS`), to merge with other sessions' (:func:`read_points`)."""
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(POINT_FIELDS)
        for pt in points:
            writer.writerow([pt.family, f"{pt.memory_length:g}", pt.label, pt.runs, pt.reached,
                             f"{pt.final_success:.4f}", pt.source])


def read_points(path: str | Path) -> list[LadderPoint]:
    """The points of a CSV written by :func:`write_points` (or by hand from reports, with the
    same columns: ``family``, ``memory_length``, ``label``, ``runs``, ``reached``,
    ``final_success`` and optionally ``source``; lines starting with ``#`` are comments).

    :raises ValueError: a missing column, or ``reached`` outside ``0 .. runs``.
    """
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    missing = [c for c in POINT_FIELDS[:-1] if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(POINT_FIELDS)}")
    points = []
    for i, row in enumerate(rows, start=2):
        pt = LadderPoint(row["family"], row["label"], float(row["memory_length"]), int(row["runs"]),
                         int(row["reached"]), _num(row["final_success"]), row.get("source") or "")
        if not 0 <= pt.reached <= pt.runs:
            raise ValueError(f"{path}, line {i}: reached = {pt.reached} is not within 0 .. runs = {pt.runs}")
        points.append(pt)
    return points


def merge_points(*groups: Sequence[LadderPoint]) -> list[LadderPoint]:
    """Points of several sources; where two give the same family, label and memory length, the
    later group's point replaces the earlier one's."""
    merged: dict[tuple[str, str, float], LadderPoint] = {}
    for group in groups:
        for pt in group:
            merged[(pt.family, pt.label, pt.memory_length)] = pt
    return list(merged.values())


def _bars(ax: Any, members: Sequence[LadderPoint], labels: Sequence[str], colors: dict[str, str], threshold: float) -> None:
    """A family measured at one memory length: a line over one point would stack every condition
    that scored the same on one marker, so each condition gets a pair of bars instead."""
    present = [label for label in labels if any(p.label == label for p in members)]
    x = np.arange(len(present))
    for i, label in enumerate(present):
        pt = next(p for p in members if p.label == label)
        ax.bar(x[i] - 0.2, pt.reached_fraction, 0.4, color=colors[label], label=f"{label}: reached {100 * threshold:g} %")
        ax.bar(x[i] + 0.2, pt.final_success, 0.4, color=colors[label], alpha=0.35, hatch="//",
               label=f"{label}: final success")
        ax.text(x[i] - 0.2, pt.reached_fraction + 0.01, f"{pt.reached}/{pt.runs}", ha="center",
                va="bottom", fontsize=7)
    ax.set_xticks(x, present, rotation=35, ha="right", fontsize=8)
    ax.set_xlabel(f"condition (memory length L = {members[0].memory_length:g})")
    ax.set_title(members[0].family, fontsize=11)
    ax.set_ylim(0, 1.08)
    ax.grid(alpha=0.3, axis="y")


def plot_ladder(
    runs: Sequence[LadderRun] | Sequence[LadderPoint], path: str | Path, *, threshold: float = 0.95
) -> Any:
    """Success against memory length (log scale), one panel per environment family: the
    fraction of seeds that reached the threshold (solid) and the mean final success (dashed),
    one colour per condition label. A family measured at a single length gets bars per condition
    (reached: solid, with the count; final success: hatched). Takes runs or, to draw results
    merged over sessions, :class:`LadderPoint`s. Returns the matplotlib figure."""
    points = [r for r in runs if isinstance(r, LadderPoint)] or ladder_points(runs)  # type: ignore[arg-type]
    families = list(dict.fromkeys(p.family for p in sorted(points, key=lambda p: p.family)))
    fig = _figure(4.6 * max(len(families), 1) + 2.8, 4.4)
    axes = np.atleast_1d(fig.subplots(1, max(len(families), 1), sharey=True, squeeze=False)[0])
    labels = _ordered_labels(points)
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    markers = "os^Dv<>ph*"
    for ax, family in zip(axes, families, strict=False):
        members = [p for p in points if p.family == family]
        if len({p.memory_length for p in members}) == 1:
            _bars(ax, members, labels, colors, threshold)
            continue
        for i, label in enumerate(labels):
            line = sorted((p for p in members if p.label == label), key=lambda p: p.memory_length)
            if not line:
                continue
            lengths = [p.memory_length for p in line]
            # a marker per condition, smaller for later ones, so that conditions on the same
            # point (several at 0 or 1) stay visible
            ax.plot(lengths, [p.reached_fraction for p in line], "-" + markers[i % len(markers)], color=colors[label],
                    markersize=max(9.0 - 0.5 * i, 3.0), label=f"{label}: reached {100 * threshold:g} %")
            ax.plot(lengths, [p.final_success for p in line], "--", color=colors[label], alpha=0.6,
                    label=f"{label}: final success")
        ax.set_xscale("log")
        ticks = sorted({p.memory_length for p in members})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("memory length L")
        ax.set_title(family, fontsize=11)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of seeds / success rate")
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        axes[-1].legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
