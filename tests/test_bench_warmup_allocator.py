"""scripts/bench_warmup_allocator.py: the table, and one real warmup per allocator setting (slow)."""

from __future__ import annotations

import pytest
from conftest import load_script


def test_table_reports_min_median_and_flags_different_weights(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_script("bench_warmup_allocator")
    calls = []

    def fake(setting: str, steps: int, seed: int) -> dict[str, float | str]:
        calls.append(setting)
        n = len(calls)
        return {"wall": float(n), "user": 1.0, "sys": 0.5, "faults": 10.0 * n, "peak_mib": 100.0,
                "checksum": "2.0" if setting == "heap" else "1.0"}

    monkeypatch.setattr(bench, "run", fake)
    bench.main(["--steps", "2", "--rounds", "3"])
    assert calls == list(bench.SETTINGS) * 3  # interleaved rounds
    out = capsys.readouterr().out
    assert "| default | 1.0 / 4.0 |" in out  # walls 1, 4, 7: min 1, median 4
    assert out.splitlines()[-1].endswith("| NO |")  # heap's weights differ from the first run's
    assert "| hugetlb |" in out and "yes |" in out
    with pytest.raises(SystemExit):
        bench.main(["--rounds", "0"])


@pytest.mark.slow
def test_one_warmup_step_per_setting_gives_the_same_weights(capsys) -> None:  # type: ignore[no-untyped-def]
    bench = load_script("bench_warmup_allocator")
    bench.main(["--steps", "1", "--rounds", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "allocator" not in line]
    assert len(rows) == 3 and all(row.endswith("| yes |") for row in rows)
