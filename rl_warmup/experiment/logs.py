"""The run's CSV logs: reading them, appending rows, and cutting them back to a checkpoint.

``progress.csv`` (SB3's logger), ``evaluations.csv`` and ``vaa.csv`` of a run directory are
written here; :mod:`rl_warmup.experiment.checkpoint` keeps a copy of them with every checkpoint,
which is what a resumed run starts its logs from.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import CSVOutputFormat, KVWriter, Logger, make_output_format

from rl_warmup.experiment.config import TrainConfig


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings (empty list if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def cut_back_csv(path: Path, key: str, max_timesteps: int) -> None:
    """Keep the header and the rows whose ``key`` is at most ``max_timesteps`` (or empty)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        reader = csv.reader(f)
        rows = list(reader)
    if not rows:
        return
    header, body = rows[0], rows[1:]
    if key not in header:
        return
    i = header.index(key)
    kept = [r for r in body if i >= len(r) or r[i] == "" or number(r[i]) <= max_timesteps]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(kept)
    os.replace(tmp, path)


class CSVAppender:
    """Append rows to a CSV file whose header may grow (rewritten when new keys appear)."""

    def __init__(self, path: Path, columns: tuple[str, ...] = ()) -> None:
        self.path = path
        self.columns = list(columns)
        if path.exists():
            with path.open(newline="") as f:
                header = next(csv.reader(f), [])
            self.columns = header + [c for c in self.columns if c not in header]

    def append(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            old = read_csv(self.path)
            self.columns += new
            with self.path.open("w", newline="") as f:
                writer = csv.DictWriter(f, self.columns)
                writer.writeheader()
                writer.writerows(old)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow({k: csv_value(v) for k, v in row.items()})


def csv_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return value


class ResumableCSVOutputFormat(CSVOutputFormat):
    """SB3's CSV writer that keeps an existing file's rows (a resumed run appends to its log)."""

    def __init__(self, filename: str) -> None:
        old = Path(filename).read_text() if Path(filename).exists() else ""
        super().__init__(filename)  # opens with "w+": truncates
        lines = old.splitlines(keepends=True)
        if lines:
            self.file.write(old if old.endswith("\n") else old + "\n")
            self.file.flush()
            self.keys = next(csv.reader([lines[0]]))


def make_logger(config: TrainConfig, run_dir: Path) -> Logger:
    """SB3 logger writing ``progress.csv`` (appending), TensorBoard and optionally stdout."""
    formats: list[KVWriter] = [ResumableCSVOutputFormat(str(run_dir / "progress.csv"))]
    if config.tensorboard:
        try:
            formats.append(make_output_format("tensorboard", str(run_dir / "tensorboard")))
        except (ImportError, AssertionError) as e:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package: pip install tensorboard "
                "(or the project's [tensorboard] extra), or pass tensorboard=False (--no-tensorboard)"
            ) from e
    if config.verbose >= 1:
        formats.append(make_output_format("stdout", str(run_dir)))
    return Logger(folder=str(run_dir), output_formats=formats)
