"""scripts/bench_cuda.py: the prepared GPU benchmark runs end to end (here on the CPU only)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from conftest import load_script


def test_bench_cuda_times_every_operation_and_skips_a_missing_gpu(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_script("bench_cuda")
    out = tmp_path / "bench.csv"
    assert bench.main(["--devices", "cpu", "cuda", "--quick", "--repeats", "1", "--warmup-steps", "1",
                       "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    devices = {"cpu", "cuda"} if torch.cuda.is_available() else {"cpu"}
    assert {r["device"] for r in rows} == devices
    assert len(rows) == 8 * len(devices)  # GRU and LSTM: warmup step, exact VAA twice, training
    assert all(float(r["best"]) > 0 and float(r["median"]) > 0 for r in rows)
    captured = capsys.readouterr()
    assert "| operation | device |" in captured.out
    if not torch.cuda.is_available():
        assert "no CUDA device here" in captured.err
    assert bench.main(["--devices", "cuda", "--quick"]) == (0 if torch.cuda.is_available() else 1)
