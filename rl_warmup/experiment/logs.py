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


LOG_KEYS: dict[str, str] = {
    "progress.csv": "time/total_timesteps",
    "evaluations.csv": "timesteps",
    "vaa.csv": "timesteps",
}
"""The CSV logs of a run directory and the column that says at which timestep each row was written."""


def parse_log(text: str, key: str, max_timesteps: int | None = None) -> tuple[list[str], list[list[str]], int]:
    """Header, rows and number of torn rows of a log's text, cut back to ``max_timesteps``.

    A torn row (the process was killed while writing it, or the file was cut) is dropped: a row
    with another number of fields than the header, a last line without its newline, or a
    ``key`` that is not a number. Rows with an empty ``key`` are kept.
    """
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], [], 0
    torn = 0
    if not lines[-1].endswith("\n"):
        lines, torn = lines[:-1], 1
    rows = list(csv.reader(lines))
    if not rows:
        return [], [], torn
    header, body = rows[0], rows[1:]
    i = header.index(key) if key in header else None
    kept = []
    for row in body:
        if len(row) != len(header) or (i is not None and row[i] != "" and math.isnan(number(row[i]))):
            torn += 1
            continue
        if max_timesteps is None or i is None or row[i] == "" or number(row[i]) <= max_timesteps:
            kept.append(row)
    return header, kept, torn


def write_log(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a log atomically (header and rows)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)


def _content(header: list[str], rows: list[list[str]]) -> list[dict[str, str]]:
    """Rows as dicts of their non-empty cells (a header grown later pads old rows with blanks)."""
    return [{k: v for k, v in zip(header, row, strict=True) if v != ""} for row in rows]


def restore_logs(run_dir: Path, saved_dir: Path, max_timesteps: int) -> list[str]:
    """Cut the logs of ``run_dir`` back to a checkpoint taken at ``max_timesteps``.

    ``saved_dir`` holds the copies of the logs saved with that checkpoint (older checkpoints have
    none). A log whose rows up to the checkpoint differ from the copy (a torn row, rows lost when
    the file was cut, an edited file) is replaced by the copy, cut back in the same way; without a
    copy, torn rows are dropped. Either way the resumed run ends with the logs of an
    uninterrupted one.

    :return: one line per log that was damaged, saying what was done (for a warning).
    """
    notes = []
    for name, key in LOG_KEYS.items():
        path, saved = run_dir / name, saved_dir / name
        live = parse_log(path.read_text(), key, max_timesteps) if path.exists() else ([], [], 0)
        copy = parse_log(saved.read_text(), key, max_timesteps) if saved.exists() else None
        header, rows, torn = live
        if copy is not None and _content(copy[0], copy[1]) != _content(header, rows):
            header, rows = copy[0], copy[1]
            lost = "missing" if not path.exists() else f"{torn} torn row(s), rows missing or changed"
            notes.append(f"{path}: {lost} before the checkpoint at {max_timesteps} timesteps; "
                         "restored from the checkpoint's copy")
        elif torn:
            notes.append(f"{path}: dropped {torn} torn row(s)")
        if header:
            write_log(path, header, rows)
    return notes


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
