"""Train recurrent networks on a supervised long-memory benchmark, warmed up or not.

Runs every combination of ``--cells`` x ``--modes`` x ``--seeds`` (in ``--workers`` parallel
processes), each in ``OUT/<task>_<cell>_<mode>_s<seed>/``, then writes ``OUT/summary.md`` (test
loss mean ± std per cell and warmup mode, the paper's format), ``OUT/summary.csv`` (one row per
run) and ``OUT/curves.png`` (validation loss and VAA per epoch, warmed vs cold).

Example (copy-first-input, T = 300, the paper's Table 1 row at full scale)::

    rl-warmup supervised --task copy --length 300 --cells gru lstm \\
        --modes none full double --seeds 0 1 2 --workers 2 --out runs/copy300

(``python scripts/supervised.py`` in a clone is the same.) Ctrl-C saves every run's state; the
same command with ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import sys
import types
import typing
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rl_warmup.experiment.cli import parse_as
from rl_warmup.supervised import (
    WARMUP_MODES,
    SupervisedConfig,
    TrainingInterrupted,
    field_docs,
    read_log,
)

SWEPT = ("cell", "warmup", "seed", "out_dir")
MODE_LABELS = {"none": "no warmup", "full": "warmup", "double": "DLWU"}


def _arg_type(hint: Any) -> tuple[Any, list[str] | None]:
    """argparse type and choices of a (possibly optional / Literal) field type."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return str, [str(a) for a in typing.get_args(hint)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _arg_type(args[0])
    return hint, None


def _none_or(kind: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    # Each help text states its own default: ArgumentDefaultsHelpFormatter would print the
    # sentinel ``None`` that the config fields use to mean "not given" a second time.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    docs = field_docs(SupervisedConfig)
    hints = typing.get_type_hints(SupervisedConfig)
    cfg = parser.add_argument_group("run settings (SupervisedConfig)")
    for f in dataclasses.fields(SupervisedConfig):
        if f.name in SWEPT:
            continue
        kind, choices = _arg_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            cfg.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{docs.get(f.name, '')} (default: {f.default})",
            )
            continue
        optional = type(None) in typing.get_args(hints[f.name])
        aliases = ["--mnist-dir"] if f.name == "data_dir" else []
        cfg.add_argument(
            flag,
            *aliases,
            type=_none_or(kind) if optional else kind,
            choices=choices,
            default=None,
            metavar=None if choices else f.name.upper(),
            help=f"{docs.get(f.name, '')} (default: {f.default})",
        )
    parser.add_argument("--config", type=Path, help="a saved config.yaml to start from (flags override it)")
    parser.add_argument("--cells", nargs="+", default=None, help="cells to run (default: the config's cell)")
    parser.add_argument("--modes", nargs="+", choices=WARMUP_MODES, default=None,
                        help="warmup modes to run (default: the config's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds to run (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/supervised"), help="output directory (default: runs/supervised)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs, skip finished ones")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def configs_from_args(args: argparse.Namespace) -> list[SupervisedConfig]:
    """One config per (cell, mode, seed), each with its own run directory."""
    base = SupervisedConfig.load(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(SupervisedConfig):
        value = getattr(args, f.name, None)
        if f.name not in SWEPT and value is not None:
            base[f.name] = value
    defaults = SupervisedConfig(**{k: v for k, v in base.items() if k != "out_dir"})
    cells = args.cells or [base.get("cell", defaults.cell)]
    modes = args.modes or [base.get("warmup", "none")]
    seeds = args.seeds if args.seeds is not None else [base.get("seed", 0)]
    configs = []
    for cell in cells:
        for mode in modes:
            for seed in seeds:
                length = f"_T{defaults.length}" if defaults.length is not None else ""
                name = f"{defaults.task}{length}_{cell}_{mode}_s{seed}"
                values = {**base, "cell": cell, "warmup": mode, "seed": seed, "out_dir": str(args.out / name)}
                configs.append(SupervisedConfig(**values))
    return configs


def run_one(config: SupervisedConfig, resume: bool, threads: int, position: int, progress: bool) -> dict[str, Any]:
    """Worker: train one configuration (in its own process when ``--workers > 1``)."""
    import torch

    from rl_warmup.supervised import train_supervised

    torch.set_num_threads(threads)
    assert config.out_dir is not None
    result_file = Path(config.out_dir) / "result.json"
    if resume and result_file.exists():
        import json

        done = json.loads(result_file.read_text())
        if done["config"]["epochs"] == config.epochs:
            return done
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger = logging.getLogger(Path(config.out_dir).name)
    if progress:
        logger.setLevel(logging.WARNING)
    try:
        return train_supervised(
            config, resume=resume, progress=progress, progress_position=position, logger=logger
        ).to_dict()
    except TrainingInterrupted as err:
        return {"interrupted": str(err), "config": dataclasses.asdict(config)}


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return f"{mean:.3f} ± {std:.3f}"


def write_summary(results: list[dict[str, Any]], out: Path) -> str:
    """``summary.md`` (table in the paper's format) and ``summary.csv``; returns the markdown."""
    rows = []
    for r in results:
        c = r["config"]
        rows.append({
            "cell": c["cell"], "mode": c["warmup"], "seed": c["seed"], "task": c["task"],
            "length": c["length"], "test_loss": r["test_loss"], "test_accuracy": r["test_accuracy"],
            "best_epoch": r["best_epoch"], "vaa_after_warmup": r["vaa_after_warmup"],
            "final_vaa": r["history"][-1]["vaa"], "warmup_restarts": r["warmup_restarts"],
            "seconds": r["seconds"],
        })
    rows.sort(key=lambda x: (x["cell"], WARMUP_MODES.index(x["mode"]), x["seed"]))
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cells = sorted({x["cell"] for x in rows})
    modes = [m for m in WARMUP_MODES if any(x["mode"] == m for x in rows)]
    classification = rows[0]["test_accuracy"] is not None
    metric = "test accuracy" if classification else "test MSE"
    c0 = results[0]["config"]
    lines = [
        f"Task `{c0['task']}`" + (f", T = {c0['length']}" if c0["length"] else "")
        + (f", N = {c0['free_steps']}" if c0["free_steps"] is not None else "")
        + f"; {c0['num_layers']} layer(s) x {c0['hidden_size']}, {c0['n_train']} train / "
        f"{c0['n_test']} test sequences, {c0['epochs']} epochs, batch {c0['batch_size']}, "
        f"lr {c0['lr']}. {metric} of the best validation epoch, mean ± std over seeds "
        f"{sorted({x['seed'] for x in rows})}.",
        "",
        "| cell | " + " | ".join(MODE_LABELS[m] for m in modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for cell in cells:
        cells_row = []
        for m in modes:
            key = "test_accuracy" if classification else "test_loss"
            cells_row.append(_mean_std([x[key] for x in rows if x["cell"] == cell and x["mode"] == m]))
        lines.append(f"| {cell.upper()} | " + " | ".join(cells_row) + " |")
    lines += ["", "| cell | mode | VAA after warmup | VAA at the end | warmup restarts | minutes per run |",
              "|---|---|---|---|---|---|"]
    for cell in cells:
        for m in modes:
            sel = [x for x in rows if x["cell"] == cell and x["mode"] == m]
            lines.append(
                f"| {cell.upper()} | {MODE_LABELS[m]} | {_mean_std([x['vaa_after_warmup'] for x in sel])} | "
                f"{_mean_std([x['final_vaa'] for x in sel])} | {sum(x['warmup_restarts'] for x in sel)} | "
                f"{sum(x['seconds'] for x in sel) / len(sel) / 60:.1f} |"
            )
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text, encoding="utf-8")
    return text


def plot_curves(results: list[dict[str, Any]], out: Path) -> Path:
    """``curves.png``: per cell, validation loss and VAA per epoch; mean over seeds (line) and
    min–max (band), one colour per warmup mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {"none": "tab:red", "full": "tab:blue", "double": "tab:green"}
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in results:
        c = r["config"]
        groups.setdefault((c["cell"], c["warmup"]), []).append(read_log(Path(c["out_dir"]) / "log.csv"))
    cells = sorted({k[0] for k in groups})
    c0 = results[0]["config"]
    fig, axes = plt.subplots(2, len(cells), figsize=(5 * len(cells), 6.5), squeeze=False, sharex=True)
    for (cell, mode), logs in sorted(groups.items(), key=lambda kv: WARMUP_MODES.index(kv[0][1])):
        col = cells.index(cell)
        n = min(len(log) for log in logs)
        epochs = np.array([rec.epoch for rec in logs[0][:n]])
        for row, key in enumerate(("val_loss", "vaa")):
            values = np.array([[getattr(rec, key) for rec in log[:n]] for log in logs], dtype=float)
            ax = axes[row, col]
            ax.plot(epochs, values.mean(axis=0), color=colors[mode], marker=".",
                    label=f"{MODE_LABELS[mode]} ({len(logs)} seeds)")
            if len(logs) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=colors[mode], alpha=0.15)
    for col, cell in enumerate(cells):
        title = f"{cell.upper()}, {c0['task']}" + (f" T = {c0['length']}" if c0["length"] else "")
        axes[0, col].set(title=title, ylabel="validation loss", yscale="log")
        axes[1, col].set(xlabel="epoch (0: before training, after warmup)",
                         ylabel=f"exact VAA (M = {c0['vaa_settle_steps']}, n = {c0['vaa_n']})", ylim=(0, 1.05))
        axes[0, col].legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_as(build_parser(), argv, prog)
    try:
        configs = configs_from_args(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    results: list[dict[str, Any]] = []
    try:
        if args.workers <= 1:
            for config in configs:
                results.append(run_one(config, args.resume, args.threads, 0, progress))
                if "interrupted" in results[-1]:
                    break
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
                futures = [
                    pool.submit(run_one, c, args.resume, args.threads, i % args.workers, progress)
                    for i, c in enumerate(configs)
                ]
                for fut in as_completed(futures):
                    results.append(fut.result())
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command and --resume (runs in {args.out})", file=sys.stderr)
        return 130
    except Exception as err:  # a run failed: say which, keep the others' files
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    interrupted = [r for r in results if "interrupted" in r]
    if interrupted:
        for r in interrupted:
            print(r["interrupted"], file=sys.stderr)
        print(f"interrupted; continue with the same command and --resume (runs in {args.out})", file=sys.stderr)
        return 130
    print(write_summary(results, args.out))
    print(f"plot: {plot_curves(results, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
