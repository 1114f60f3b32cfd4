"""How much of a long LSTM warmup goes to page faults, under three settings of glibc's allocator.

A warmup step with ``settle_max=1000`` and 32 perturbations backpropagates through up to 1 000
settling steps of ``32 x batch_size`` states: hundreds of megabytes of buffers per step, each
larger than glibc's largest ``mmap`` threshold (32 MiB), so each is mapped when allocated and
unmapped when freed, and the next step faults every page in again, zeroed. This script warms the
same network (the actor of a stock ``MlpLstmPolicy`` 1 x 32 on MiniGrid Memory random-policy
features, variant *s03-ck32-t8f-m1000* of ``docs/lstm_warmup.md``, no restart) in a fresh
subprocess per run under

* ``default``: glibc as the process starts (the package leaves it alone during warmup);
* ``hugetlb``: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the environment (glibc >= 2.35):
  ``mmap``-ed chunks are advised to use transparent huge pages, one fault per 2 MiB;
* ``heap``: ``mallopt(M_MMAP_MAX, 0)`` and no trimming before the warmup: every buffer from the
  heap, freed memory kept;

interleaved over ``--rounds``, and prints wall, user and system seconds, minor page faults and the
peak resident memory, min and median per setting, and a checksum of the warmed weights (the
allocator must not change what is computed).

Run: ``python scripts/bench_warmup_allocator.py --steps 40 --rounds 2`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rl_warmup import gru_ext

SETTINGS = ("default", "hugetlb", "heap")

_CHILD = r"""
import ctypes, dataclasses, json, resource, sys, time
import torch
sys.path.insert(0, {scripts!r})
import lstm_warmup_diagnosis as D
from rl_warmup.warmup import WarmupConfig, WarmupError, warmup

torch.set_num_threads(1)
net, sequences = D.build("minigrid", "stock", "1x32", {seed})
config = dataclasses.replace(WarmupConfig(seed={seed}), **D.VARIANTS["s03-ck32-t8f-m1000"])
config = dataclasses.replace(config, steps={steps}, max_restarts=0)
if {heap}:
    libc = ctypes.CDLL(None)
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    assert libc.mallopt(-4, 0) and libc.mallopt(-1, 2**31 - 1)  # M_MMAP_MAX = 0, M_TRIM_THRESHOLD = max
before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
try:
    warmup(net, sequences, config)
except WarmupError:  # refused by a restart rule: the time is what is measured
    pass
wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{
    "wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
    "faults": after.ru_minflt - before.ru_minflt, "peak_mib": after.ru_maxrss / 1024,
    "checksum": repr(sum(float(p.detach().double().sum()) for p in net.parameters())),
}}))
"""


def run(setting: str, steps: int, seed: int) -> dict[str, float | str]:
    """One warmup in a fresh process under ``setting``."""
    env = {**os.environ}
    env.pop("GLIBC_TUNABLES", None)
    if setting == "hugetlb":
        env["GLIBC_TUNABLES"] = gru_ext.HUGETLB_TUNABLE
    code = _CHILD.format(scripts=str(Path(__file__).parent), seed=seed, steps=steps, heap=setting == "heap")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the {setting} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cell(rows: list[dict[str, float | str]], key: str, fmt: str) -> str:
    """``min / median`` of ``key`` over ``rows``."""
    values = [float(row[key]) for row in rows]
    return f"{min(values):{fmt}} / {statistics.median(values):{fmt}}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="warmup steps per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs per setting (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the network and features (default: %(default)s)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1")
    runs: dict[str, list[dict[str, float | str]]] = {s: [] for s in args.settings}
    for r in range(args.rounds):
        for setting in args.settings:
            runs[setting].append(run(setting, args.steps, args.seed))
            print(f"round {r + 1} {setting}: {runs[setting][-1]}", flush=True)
    print(f"\n{args.steps} warmup steps, stock MlpLstmPolicy 1 x 32, MiniGrid Memory features, seed {args.seed}, "
          f"{args.rounds} interleaved rounds (min / median)\n")
    print("| allocator | wall s | user s | system s | minor faults | peak MiB | same weights |")
    print("|---|---|---|---|---|---|---|")
    reference = runs[args.settings[0]][0]["checksum"]
    for setting, rows in runs.items():
        same = all(row["checksum"] == reference for row in rows)
        print(f"| {setting} | {_cell(rows, 'wall', '.1f')} | {_cell(rows, 'user', '.1f')} | {_cell(rows, 'sys', '.1f')} | "
              f"{_cell(rows, 'faults', '.0f')} | {_cell(rows, 'peak_mib', '.0f')} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
