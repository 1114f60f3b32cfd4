"""The report of a comparison: ``results.csv``, ``summary.md`` and PNG plots.

Statistics are over seeds: the mean of each group (environment × cell × condition) with a
percentile bootstrap confidence interval (numpy, seeded). "Timesteps to threshold" of a run is
the first evaluation whose success rate reached the threshold; runs that never reached it are
*not reached*: the summary gives the mean over the runs that reached it and how many did
(``k/n``), and the plot draws them at the training budget with an open marker.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_warmup.experiment.grid import CONDITIONS, RESULT_COLUMNS, CompareConfig
from rl_warmup.experiment.logs import read_csv

SUMMARY_FILE = "summary.md"
RESULTS_FILE = "results.csv"
PLOT_FILES: tuple[str, ...] = ("learning_curves.png", "vaa.png", "time_to_threshold.png")

_COLORS = {"cold": "#1f77b4", "warmed": "#d62728", "double-warmed": "#2ca02c", "warmed-reg": "#9467bd"}
_MARKERS = {"lstm": "o", "gru": "s", "mgu": "^", "brc": "D", "nbrc": "v", "chrono_lstm": "P"}
_LINESTYLES = ["-", "--", ":", "-."]


# -- statistics ----------------------------------------------------------------------------------
def bootstrap_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of the finite ``values`` and its percentile bootstrap confidence interval.

    :return: ``(mean, low, high)``; all NaN without values, ``(v, v, v)`` for a single value.
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(low), float(high)


def bootstrap_band(
    curves: np.ndarray, *, confidence: float = 0.95, n_resamples: int = 2_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and bootstrap band of curves ``(n_runs, n_points)`` (NaN where a run has no value).

    :return: mean, low, high, each ``(n_points,)``.
    """
    n = curves.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        mean = np.nanmean(curves, axis=0)
        if n < 2:
            return mean, mean.copy(), mean.copy()
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_resamples, n))
        means = np.nanmean(curves[idx], axis=1)  # (n_resamples, n_points)
        alpha = (1 - confidence) / 2
        low = np.nanquantile(means, alpha, axis=0)
        high = np.nanquantile(means, 1 - alpha, axis=0)
    return mean, low, high


# -- results.csv ---------------------------------------------------------------------------------
def _num(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def write_results_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """One row per run, columns :data:`~rl_warmup.experiment.grid.RESULT_COLUMNS`; NaN as empty."""
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
            )


def read_results_csv(path: str | Path) -> list[dict[str, str]]:
    return read_csv(path)


# -- summary -------------------------------------------------------------------------------------
@dataclass
class GroupSummary:
    """Statistics of one environment × cell × condition group (means with bootstrap CIs)."""

    env_id: str
    cell: str
    condition: str
    runs: int
    finished: int
    success: tuple[float, float, float]
    final_return: tuple[float, float, float]
    reached: int
    time_to_threshold: tuple[float, float, float]
    vaa_after_warmup: tuple[float, float, float]
    vaa_final: tuple[float, float, float]
    warmup_vaa_star: tuple[float, float, float]
    budget: float


def _groups(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env_id"], row["cell"], row["condition"]), []).append(row)
    return groups


def summarize(
    rows: Sequence[dict[str, Any]], *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> list[GroupSummary]:
    """Per environment × cell × condition, over the finished runs (seeds)."""

    def ci(values: list[float]) -> tuple[float, float, float]:
        return bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)

    out = []
    for (env_id, cell, condition), group in _groups(rows).items():
        done = [r for r in group if r["status"] == "finished"]
        times = [_num(r["timesteps_to_threshold"]) for r in done]
        reached = [t for t in times if math.isfinite(t)]
        out.append(
            GroupSummary(
                env_id=env_id,
                cell=cell,
                condition=condition,
                runs=len(group),
                finished=len(done),
                success=ci([_num(r["final_success_rate"]) for r in done]),
                final_return=ci([_num(r["final_mean_reward"]) for r in done]),
                reached=len(reached),
                time_to_threshold=ci(reached),
                vaa_after_warmup=ci([_num(r["vaa_after_warmup_actor"]) for r in done]),
                vaa_final=ci([_num(r["vaa_final_actor"]) for r in done]),
                warmup_vaa_star=ci([_num(r["warmup_vaa_star_actor"]) for r in done]),
                budget=max((_num(r["total_timesteps"]) for r in group), default=math.nan),
            )
        )
    return out


def _fmt(stat: tuple[float, float, float], digits: int = 2, *, integer: bool = False) -> str:
    mean, low, high = stat
    if math.isnan(mean):
        return "n/a"

    def f(v: float) -> str:
        return f"{v:,.0f}" if integer else f"{v:.{digits}f}"

    if math.isnan(low) or low == high:
        return f(mean)
    return f"{f(mean)} [{f(low)}, {f(high)}]"


def _env_label(env_id: str, length: float) -> str:
    name = env_id.split(":", 1)[-1].split("/", 1)[-1]
    return f"{name} (L = {length:g})" if math.isfinite(length) else name


def summary_markdown(
    rows: Sequence[dict[str, Any]],
    summaries: Sequence[GroupSummary],
    *,
    config: CompareConfig | None = None,
    seconds: float | None = None,
    plots: Sequence[str] = PLOT_FILES,
) -> str:
    """The text of ``summary.md``."""
    confidence = config.confidence if config else 0.95
    threshold = config.threshold if config else 0.95
    pct = f"{100 * confidence:g}%"
    thr = f"{100 * threshold:g}%"
    finished = sum(r["status"] == "finished" for r in rows)
    failed = [r for r in rows if r["status"] != "finished"]
    reused = sum(str(r.get("reused")) in ("True", "true") for r in rows)
    lengths = {r["env_id"]: _num(r["memory_length"]) for r in rows}
    lines = ["# Warmed vs cold-start recurrent PPO agents", ""]
    lines.append(
        f"{len(rows)} runs: {finished} finished ({reused} reused from an earlier invocation), "
        f"{len(failed)} failed." + (f" Wall time of this invocation: {seconds / 60:.1f} min." if seconds is not None else "")
    )
    lines += [
        "",
        f"Each cell of the tables: mean over seeds [{pct} percentile bootstrap CI"
        + (f", {config.bootstrap_samples} resamples" if config else "")
        + "]. *Final success* is the success rate of the last evaluation (deterministic policy). "
        f"*Timesteps to {thr}* is the first evaluation reaching a {thr} success rate, averaged over "
        "the runs that reached it (where the environment defines no success, the first reaching a mean "
        "return of `return_threshold`, when one is set); *k/n* says how many did, *not reached* means none did within "
        "the budget. *VAA* is the exact variability amongst attractors of the actor's recurrent "
        "network (1/n: a single attractor; 1: every state its own attractor), after warmup "
        "(before training for cold runs) and at the end of training.",
        "",
    ]
    by_env: dict[str, list[GroupSummary]] = {}
    for s in summaries:
        by_env.setdefault(s.env_id, []).append(s)
    order = {c: i for i, c in enumerate(CONDITIONS)}
    for env_id, group in by_env.items():
        group.sort(key=lambda s: (s.cell, order.get(s.condition, 99)))
        budget = max(s.budget for s in group)
        lines += [f"## {_env_label(env_id, lengths.get(env_id, math.nan))}", ""]
        lines.append(f"Budget: {budget:,.0f} timesteps per run." if math.isfinite(budget) else "")
        target = f"timesteps to {thr}"
        if all(math.isnan(s.success[0]) for s in group):  # no success defined: a return threshold?
            values = {_num(r.get("return_threshold")) for r in rows if r["env_id"] == env_id}
            finite = sorted(v for v in values if math.isfinite(v))
            if finite:
                target = "timesteps to return >= " + ", ".join(f"{v:g}" for v in finite)
        lines += [
            "",
            f"| cell | condition | runs | final success | final return | {target} | reached | VAA after warmup | VAA at end | VAA* after warmup |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in group:
            time_text = _fmt(s.time_to_threshold, integer=True) if s.reached else "not reached"
            lines.append(
                f"| {s.cell} | {s.condition} | {s.finished}/{s.runs} | {_fmt(s.success)} | {_fmt(s.final_return)} | {time_text} | "
                f"{s.reached}/{s.finished} | {_fmt(s.vaa_after_warmup)} | {_fmt(s.vaa_final)} | "
                f"{_fmt(s.warmup_vaa_star) if s.condition != 'cold' else '-'} |"
            )
        lines.append("")
    if failed:
        lines += ["## Failed runs", "", "| run | error |", "|---|---|"]
        for r in failed:
            error = str(r.get("error", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{Path(r['run_dir']).name}` | {error} |")
        lines += ["", "Run the same command again to resume them (finished runs are skipped).", ""]
    if plots:
        lines += ["## Plots", ""]
        titles = {
            "learning_curves.png": "Learning curves",
            "vaa.png": "VAA over training",
            "time_to_threshold.png": f"Timesteps to {thr} success by memory length",
        }
        for name in plots:
            lines += [f"![{titles.get(name, name)}]({name})", ""]
    lines += ["Per-run numbers: `results.csv`; run directories: `runs/`.", ""]
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------------------
def _curves(rows: Sequence[dict[str, Any]], file: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Curves of the runs on a common timestep grid: ``(timesteps, values (n_runs, n_points))``."""
    series = []
    for row in rows:
        data = read_csv(Path(row["run_dir"]) / file)
        t = np.array([_num(d.get("timesteps")) for d in data])
        v = np.array([_num(d.get(column)) for d in data])
        keep = np.isfinite(t) & np.isfinite(v)
        if keep.any():
            series.append((t[keep], v[keep]))
    if not series:
        return np.zeros(0), np.zeros((0, 0))
    grid = np.unique(np.concatenate([t for t, _ in series]))
    values = np.full((len(series), grid.size), np.nan)
    for i, (t, v) in enumerate(series):
        inside = (grid >= t.min()) & (grid <= t.max())
        values[i, inside] = np.interp(grid[inside], t, v)
    return grid, values


def _figure(width: float, height: float) -> Any:
    """A matplotlib figure that does not go through pyplot (no global backend or state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _panel_grid(envs: list[str], cells: list[str]) -> tuple[Any, np.ndarray]:
    fig = _figure(5.2 * max(len(cells), 1), 3.6 * max(len(envs), 1))
    axes = fig.subplots(max(len(envs), 1), max(len(cells), 1), squeeze=False)
    return fig, axes


def _steps_formatter() -> Any:
    """Tick labels for timesteps: 0, 500, 10k, 1.5M."""
    from matplotlib.ticker import FuncFormatter

    def fmt(value: float, _pos: int) -> str:
        if abs(value) >= 1e6:
            return f"{value / 1e6:g}M"
        if abs(value) >= 1e3:
            return f"{value / 1e3:g}k"
        return f"{value:g}"

    return FuncFormatter(fmt)


def _empty_plot(path: Path, title: str) -> None:
    fig = _figure(6, 3)
    ax = fig.subplots()
    ax.text(0.5, 0.5, "no finished runs to plot", ha="center", va="center", fontsize=12)
    ax.set_axis_off()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)


def _ordered(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[str], list[str]]:
    envs = list(dict.fromkeys(r["env_id"] for r in rows))
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    order = {c: i for i, c in enumerate(CONDITIONS)}
    conditions = sorted(dict.fromkeys(r["condition"] for r in rows), key=lambda c: order.get(c, 99))
    return envs, cells, conditions


def _plot_curves(
    rows: Sequence[dict[str, Any]],
    path: Path,
    *,
    file: str,
    column: str,
    ylabel: str,
    title: str,
    confidence: float,
    seed: int,
    ylim: tuple[float, float] | None = None,
    hline: tuple[float, str] | None = None,
) -> bool:
    done = [r for r in rows if r["status"] == "finished"]
    if not done:
        _empty_plot(path, title)
        return False
    envs, cells, conditions = _ordered(done)
    lengths = {r["env_id"]: _num(r["memory_length"]) for r in done}
    fig, axes = _panel_grid(envs, cells)
    pct = f"{100 * confidence:g}%"
    drawn = False
    for i, env_id in enumerate(envs):
        for j, cell in enumerate(cells):
            ax = axes[i, j]
            for condition in conditions:
                group = [r for r in done if (r["env_id"], r["cell"], r["condition"]) == (env_id, cell, condition)]
                t, values = _curves(group, file, column)
                if t.size == 0:
                    continue
                mean, low, high = bootstrap_band(values, confidence=confidence, seed=seed)
                color = _COLORS.get(condition)
                ax.plot(t, mean, color=color, lw=2, label=f"{condition} (n = {values.shape[0]})")
                ax.fill_between(t, low, high, color=color, alpha=0.2, lw=0)
                drawn = True
            if hline is not None:
                ax.axhline(hline[0], color="0.4", ls=":", lw=1, label=hline[1])
            ax.set_title(f"{_env_label(env_id, lengths[env_id])}, {cell.upper()}", fontsize=11)
            ax.set_xlabel("environment steps (timesteps)")
            ax.set_ylabel(ylabel)
            if ylim:
                ax.set_ylim(*ylim)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_formatter(_steps_formatter())
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best", title=f"mean, {pct} CI band", title_fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=110)
    return drawn


def plot_learning_curves(rows: Sequence[dict[str, Any]], path: str | Path, *, threshold: float = 0.95,
                         confidence: float = 0.95, seed: int = 0) -> None:
    """Evaluation success rate (or mean return if the env reports no success) over training,
    one panel per environment × cell, mean over seeds with a bootstrap band per condition."""
    done = [r for r in rows if r["status"] == "finished"]
    has_success = any(math.isfinite(_num(r["final_success_rate"])) for r in done)
    if has_success:
        _plot_curves(rows, Path(path), file="evaluations.csv", column="success_rate",
                     ylabel="evaluation success rate (fraction)", title="Learning curves: warmed vs cold start",
                     confidence=confidence, seed=seed, ylim=(-0.03, 1.03),
                     hline=(threshold, f"threshold {threshold:g}"))
    else:
        _plot_curves(rows, Path(path), file="evaluations.csv", column="mean_reward",
                     ylabel="evaluation mean return", title="Learning curves: warmed vs cold start",
                     confidence=confidence, seed=seed)


def plot_vaa(rows: Sequence[dict[str, Any]], path: str | Path, *, confidence: float = 0.95, seed: int = 0) -> None:
    """VAA of the actor's recurrent network over training (timestep 0: after warmup)."""
    _plot_curves(rows, Path(path), file="vaa.csv", column="vaa/actor",
                 ylabel="VAA of the actor's RNN (1/n to 1)",
                 title="Multistability over training (VAA; timestep 0 = after warmup)",
                 confidence=confidence, seed=seed, ylim=(0, 1.03))


def _family(env_id: str) -> str:
    """The environment's name without version and memory-length suffix: ``PassiveTMaze``."""
    name = env_id.split(":", 1)[-1].split("/", 1)[-1]
    return re.sub(r"(-L\d+)?(-v\d+)?$", "", name)


def plot_time_to_threshold(rows: Sequence[dict[str, Any]], path: str | Path, *, threshold: float = 0.95) -> Any:
    """Timesteps to reach the threshold against memory length, one panel per environment family
    (``PassiveTMaze``, ``TMaze``, ...): one small marker per run (open markers at the
    environment's budget: not reached), a line through the median over seeds (not reached counted
    at the budget; an open median marker when most runs did not reach it), one series per
    condition × cell. Returns the matplotlib figure."""
    done = [r for r in rows if r["status"] == "finished"]
    envs, cells, conditions = _ordered(done) if done else ([], [], [])
    families: dict[str, list[str]] = {}
    for e in envs:
        families.setdefault(_family(e), []).append(e)
    n_panels = max(len(families), 1)
    fig = _figure(4.2 * n_panels + 2.6, 4.8)
    axes = np.atleast_1d(fig.subplots(1, n_panels, sharey=True, squeeze=False)[0])
    budget = max((_num(r["total_timesteps"]) for r in done), default=math.nan)
    for ax, (family, members) in zip(axes, families.items(), strict=False):
        _time_panel(ax, done, members, cells, conditions, legend_budget=ax is axes[0])
        ax.set_title(family, fontsize=11)
    axes[0].set_ylabel(f"timesteps to {100 * threshold:g}% success")
    axes[0].set_ylim(0, budget * 1.1 if math.isfinite(budget) else None)
    axes[0].yaxis.set_major_formatter(_steps_formatter())
    fig.suptitle(f"Time to {100 * threshold:g}% evaluation success (small markers: one per seed)", fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.savefig(path, dpi=110)
    return fig


def _time_panel(
    ax: Any,
    done: list[dict[str, Any]],
    envs: list[str],
    cells: list[str],
    conditions: list[str],
    *,
    legend_budget: bool,
) -> None:
    """One panel of :func:`plot_time_to_threshold`: the environments ``envs`` of one family."""
    lengths = {e: _num(next(r["memory_length"] for r in done if r["env_id"] == e)) for e in envs}
    envs = sorted(envs, key=lambda e: (not math.isfinite(lengths[e]), lengths[e]))
    numeric = (
        len(envs) > 1
        and all(math.isfinite(v) for v in lengths.values())
        and len(set(lengths.values())) == len(envs)
    )
    xpos = {e: (lengths[e] if numeric else float(i)) for i, e in enumerate(envs)}
    n_series = max(len(conditions) * len(cells), 1)

    def place(e: str, offset: float) -> float:
        return xpos[e] * 2 ** (offset * 0.3) if numeric else xpos[e] + offset * 0.5

    for n, e in enumerate(envs):  # each environment's own budget, across its cluster of series
        env_budget = max(_num(r["total_timesteps"]) for r in done if r["env_id"] == e)
        ax.plot([place(e, -0.75), place(e, 0.75)], [env_budget] * 2, color="0.35", ls=":", lw=1.2,
                label="budget (open markers: not reached)" if n == 0 and legend_budget else None)
    k = 0
    for ci_, cell in enumerate(cells):
        for condition in conditions:
            xs, meds, filled = [], [], []
            offset = (k - (n_series - 1) / 2) / max(n_series, 2)  # spread the series apart
            k += 1
            color = _COLORS.get(condition)
            marker = _MARKERS.get(cell, "o")
            for e in envs:
                group = [r for r in done if (r["env_id"], r["cell"], r["condition"]) == (e, cell, condition)]
                if not group:
                    continue
                x = place(e, offset)
                times = [_num(r["timesteps_to_threshold"]) for r in group]
                own_budget = [_num(r["total_timesteps"]) for r in group]
                reached = [t for t in times if math.isfinite(t)]
                missed = [b for t, b in zip(times, own_budget, strict=True) if not math.isfinite(t)]
                ax.scatter([x] * len(reached), reached, color=color, marker=marker, s=18, alpha=0.6, zorder=3)
                ax.scatter([x] * len(missed), missed, facecolors="none", edgecolors=color, marker=marker,
                           s=18, alpha=0.6, zorder=3)
                xs.append(x)
                meds.append(float(np.median([t if math.isfinite(t) else b for t, b in zip(times, own_budget, strict=True)])))
                filled.append(2 * len(reached) > len(group))  # the median is a reached time
            if xs:
                ax.plot(xs, meds, color=color, ls=_LINESTYLES[ci_ % len(_LINESTYLES)], lw=1.8, zorder=2,
                        label=f"{condition}, {cell.upper()}: median over seeds" if legend_budget else None)
                ax.scatter(xs, meds, s=70, marker=marker, zorder=4, edgecolors=color, linewidths=1.5,
                           facecolors=[color if f else "white" for f in filled])
    if numeric:
        from matplotlib.ticker import NullFormatter

        values = sorted(lengths.values())
        ax.set_xscale("log")
        ax.set_xticks(values)
        ax.set_xticklabels([f"{v:g}" for v in values])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(values[0] / 1.5, values[-1] * 1.5)
        ax.set_xlabel("memory length L (log scale)")
    else:
        ax.set_xticks([xpos[e] for e in envs])
        ax.set_xticklabels([
            f"L = {lengths[e]:g}" if math.isfinite(lengths[e]) else _env_label(e, lengths[e]) for e in envs
        ])
        ax.set_xlim(-0.8, max(len(envs), 1) - 0.2)
        ax.set_xlabel("memory length")
    ax.grid(alpha=0.3)


def write_report(
    rows: Sequence[dict[str, Any]],
    output_dir: str | Path,
    *,
    config: CompareConfig | None = None,
    seconds: float | None = None,
) -> dict[str, Path]:
    """Write ``results.csv``, ``summary.md`` and the PNG plots into ``output_dir``.

    :return: file name -> path of everything written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    confidence = config.confidence if config else 0.95
    threshold = config.threshold if config else 0.95
    seed = config.report_seed if config else 0
    samples = config.bootstrap_samples if config else 10_000
    written = {RESULTS_FILE: out / RESULTS_FILE}
    write_results_csv(rows, written[RESULTS_FILE])
    plot_learning_curves(rows, out / PLOT_FILES[0], threshold=threshold, confidence=confidence, seed=seed)
    plot_vaa(rows, out / PLOT_FILES[1], confidence=confidence, seed=seed)
    plot_time_to_threshold(rows, out / PLOT_FILES[2], threshold=threshold)
    for name in PLOT_FILES:
        written[name] = out / name
    summaries = summarize(rows, confidence=confidence, n_resamples=samples, seed=seed)
    written[SUMMARY_FILE] = out / SUMMARY_FILE
    written[SUMMARY_FILE].write_text(summary_markdown(rows, summaries, config=config, seconds=seconds))
    return written
