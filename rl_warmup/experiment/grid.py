"""Run a comparison grid: conditions (cold, warmed, double-warmed) × cells × environments × seeds.

Every run is one :func:`~rl_warmup.experiment.train.train` call in its own run directory
``<output_dir>/runs/<env>__<cell>__<condition>__s<seed>``, executed

* ``backend="local"``: in worker processes of this machine (``spawn``, one torch thread each);
* ``backend="ray"``: as Ray tasks on a cluster (``pip install 'rl-warmup[ray]'``), a local one
  by default or an existing one at ``address``. The run's small result files come back with the
  task's return value and are written into the local run directory, so the report is built the
  same way whether or not the cluster shares a filesystem with the driver. Run directories are
  absolute paths; without a shared filesystem a failed run restarts from scratch on whichever
  node picks it up (its checkpoint stayed on the node where it failed).

A run that raises is recorded as ``failed`` with its error (and ``error.txt`` in its directory)
and the others go on. Finished runs (``result.json`` present, same settings) are skipped when the
same grid is run again; interrupted or failed runs resume from their last checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_warmup.experiment.config import CELLS, TrainConfig, check_env_id, resolve_config, safe_name

CONDITIONS: dict[str, str] = {"cold": "none", "warmed": "full", "double-warmed": "double", "warmed-reg": "full"}
"""Condition name -> warmup mode of :class:`TrainConfig` (``none``, ``full``, ``double``)."""

CONDITION_SETTINGS: dict[str, dict[str, Any]] = {"warmed-reg": {"reg_coef": 1.0, "reg_settle_max": 1000}}
"""Settings a condition adds to its runs (``--set`` overrides them). ``warmed-reg``: warmup, then
the VAA* regulariser during training with a 1 000-step settling, the setting of
``docs/regularizer.md`` (warmed LSTMs at L = 250 kept their attractors through training)."""


def condition_settings(condition: str) -> dict[str, Any]:
    """The :class:`TrainConfig` settings a condition stands for: its warmup mode and its
    ``CONDITION_SETTINGS`` (shared by ``compare.py``'s grid and ``train.py --condition``)."""
    return {**CONDITION_SETTINGS.get(condition, {}), "warmup": CONDITIONS[condition]}

BACKENDS: tuple[str, ...] = ("local", "ray")

DEFAULT_ENVS: tuple[str, ...] = ("rl_warmup/PassiveTMaze-v0", "rl_warmup/PassiveTMaze-L50-v0")

RESULT_COLUMNS: tuple[str, ...] = (
    "condition",
    "warmup",
    "cell",
    "env_id",
    "memory_length",
    "seed",
    "status",
    "reused",
    "error",
    "num_timesteps",
    "total_timesteps",
    "final_success_rate",
    "final_mean_reward",
    "best_success_rate",
    "timesteps_to_threshold",
    "success_threshold",
    "return_threshold",
    "vaa_after_warmup_actor",
    "vaa_after_warmup_critic",
    "vaa_final_actor",
    "vaa_final_critic",
    "warmup_vaa_star_actor",
    "warmup_vaa_star_critic",
    "warmup_restarts",
    "wall_seconds",
    "resumed_from",
    "run_dir",
)
"""Columns of ``results.csv`` (one row per run). ``timesteps_to_threshold`` is empty when the
run never reached the threshold; ``warmup_vaa_star_*`` is the mean over layers right after
warmup; ``reused`` is true for runs finished by an earlier invocation."""

RESULT_FILES: tuple[str, ...] = ("config.yaml", "result.json", "evaluations.csv", "vaa.csv", "warmup.json", "error.txt")
"""Small files of a run directory that a (Ray) task sends back to the driver."""


@dataclass(frozen=True)
class CompareConfig:
    """A comparison of warmed and cold-start agents over a grid, and where its report goes."""

    conditions: tuple[str, ...] = ("cold", "warmed")
    """Conditions to compare: cold (no warmup), warmed (whole network), warmed-reg (warmed, then the
    VAA* regulariser while training, ``CONDITION_SETTINGS``), double-warmed (double
    layers, first halves warmed)."""
    cells: tuple[str, ...] = ("lstm", "gru")
    """Recurrent cells: lstm, gru, mgu, brc, nbrc, chrono_lstm."""
    envs: tuple[str, ...] = DEFAULT_ENVS
    """Environment ids (see envs.ENVIRONMENTS, or any gymnasium id)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds; every condition/cell/environment is run once per seed."""
    total_timesteps: int | None = None
    """Timesteps of every run; none: each environment's preset."""
    set: tuple[str, ...] = ()
    """TrainConfig overrides for every run, as field=value (e.g. hidden_size=32 vaa_every=0)."""
    presets: str = ""
    """YAML presets file; empty: the package's presets.yaml."""
    output_dir: str = "results/compare"
    """Report directory: results.csv, summary.md, plots, and runs/ with one directory per run."""
    workers: int = 2
    """Runs in parallel (local backend: worker processes, one torch thread each)."""
    backend: str = "local"
    """Where runs execute: local (processes on this machine) or ray (needs the ray extra)."""
    address: str | None = None
    """Ray cluster address (ray backend; e.g. auto or ray://host:10001); none: a local Ray cluster."""
    cpus_per_run: float = 1.0
    """CPUs Ray reserves for each run (ray backend)."""
    threshold: float = 0.95
    """Success rate that counts as solved (timesteps to threshold)."""
    confidence: float = 0.95
    """Level of the bootstrap confidence intervals."""
    bootstrap_samples: int = 10_000
    """Bootstrap resamples of the confidence intervals."""
    report_seed: int = 0
    """Seed of the bootstrap resampling."""
    report_only: bool = False
    """Build the report from the runs already in output_dir, without training."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions:
            raise ValueError(f"unknown condition(s) {unknown}; choose among {', '.join(CONDITIONS)}")
        bad_cells = [c for c in self.cells if c not in CELLS]
        if bad_cells or not self.cells:
            raise ValueError(f"unknown cell(s) {bad_cells}; choose among {', '.join(CELLS)}")
        if not self.envs or not self.seeds:
            raise ValueError("give at least one environment and one seed")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose local or ray")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1], got {self.threshold}")
        for item in self.set:
            if "=" not in item:
                raise ValueError(f"set: expected field=value, got {item!r}")

    def overrides(self) -> dict[str, str]:
        """The ``set`` items as ``{field: value}``."""
        return dict(item.split("=", 1) for item in self.set)


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its coordinates and its complete configuration."""

    condition: str
    cell: str
    env_id: str
    seed: int
    config: TrainConfig


@dataclass
class GridOutcome:
    """Rows of the runs of a grid, in grid order, and how long it took."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return failed_rows(self.rows)

    @property
    def missing(self) -> list[dict[str, Any]]:
        return missing_rows(self.rows)


def failed_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs that raised (``status == "failed"``)."""
    return [r for r in rows if r["status"] == "failed"]


def missing_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs with no result and no error: never started (``report_only``) or cut off."""
    return [r for r in rows if r["status"] not in ("finished", "failed")]


def runs_dir(config: CompareConfig) -> Path:
    return Path(config.output_dir) / "runs"


def expand_grid(config: CompareConfig) -> list[GridRun]:
    """Every run of the grid with its resolved :class:`TrainConfig` (presets and overrides
    applied); checks every environment id first.

    :raises ValueError: unknown environment id, or an invalid override.
    """
    for env_id in config.envs:
        check_env_id(env_id)
    extra = config.overrides()
    forbidden = {"env_id", "cell", "warmup", "seed", "output_dir", "run_name", "resume"} & set(extra)
    if forbidden:
        raise ValueError(f"set: {sorted(forbidden)} are the grid's coordinates; use the compare options instead")
    out = runs_dir(config).resolve()
    repeated = {
        name: [v for v in dict.fromkeys(values) if values.count(v) > 1]
        for name, values in (
            ("envs", list(config.envs)),
            ("cells", list(config.cells)),
            ("conditions", list(config.conditions)),
            ("seeds", list(config.seeds)),
        )
    }
    repeated = {k: v for k, v in repeated.items() if v}
    if repeated:
        listed = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in repeated.items())
        warnings.warn(f"repeated grid entries run once ({listed})", UserWarning, stacklevel=2)
    runs = []
    for env_id in dict.fromkeys(config.envs):
        for cell in dict.fromkeys(config.cells):
            for condition in dict.fromkeys(config.conditions):
                for seed in dict.fromkeys(config.seeds):
                    overrides: dict[str, Any] = {
                        **condition_settings(condition),
                        **extra,
                        "env_id": env_id,
                        "cell": cell,
                        "seed": seed,
                        "output_dir": str(out),
                        "run_name": f"{safe_name(env_id)}__{cell}__{condition}__s{seed}",
                        "success_threshold": config.threshold,
                        "progress_bar": False,
                        "verbose": 0,
                        "threads": 1,
                        "resume": True,
                    }
                    if config.presets:
                        overrides["presets"] = config.presets
                    if config.total_timesteps is not None:
                        overrides["total_timesteps"] = config.total_timesteps
                    runs.append(GridRun(condition, cell, env_id, seed, resolve_config(overrides)))
    return runs


def memory_length(env_id: str) -> float:
    """The memory length of an environment (``length`` or ``memory_length`` of its registration
    kwargs), NaN when it has none."""
    import gymnasium as gym

    name = env_id.split(":", 1)[-1]
    try:
        kwargs = gym.spec(name).kwargs
    except gym.error.Error:
        return math.nan
    for key in ("length", "memory_length"):
        if isinstance(kwargs.get(key), int | float):
            return float(kwargs[key])
    return math.nan


def run_row(run: GridRun, *, status: str | None = None, error: str = "", reused: bool = False) -> dict[str, Any]:
    """The ``results.csv`` row of a run, read from its directory."""
    from rl_warmup.experiment.train import RunResult, load_saved_config

    run_dir = run.config.run_dir
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(
        condition=run.condition,
        warmup=run.config.warmup,
        cell=run.cell,
        env_id=run.env_id,
        memory_length=memory_length(run.env_id),
        seed=run.seed,
        total_timesteps=run.config.total_timesteps,
        success_threshold=run.config.success_threshold,
        return_threshold="" if run.config.return_threshold is None else run.config.return_threshold,
        run_dir=str(run_dir),
        reused=reused,
        error=error,
    )
    result_path = run_dir / "result.json"
    if status is None:
        status = "finished" if result_path.exists() else ("failed" if (run_dir / "error.txt").exists() else "missing")
        if status == "failed" and not error:
            lines = (run_dir / "error.txt").read_text().strip().splitlines()
            row["error"] = lines[-1] if lines else "failed"
    row["status"] = status
    if status == "finished" and result_path.exists():
        try:
            r = RunResult.load(result_path)
        except ValueError as e:  # a damaged result.json fails this run only
            row.update(status="failed", error=str(e))
            return row

        saved = run_dir / "config.yaml"
        # the budget the run was given (a --report-only or a later invocation may name another);
        # a damaged config.yaml keeps the grid's budget, the run's own files say the rest
        if saved.exists():
            with contextlib.suppress(ValueError):
                row["total_timesteps"] = load_saved_config(saved).total_timesteps

        def mean(values: list[float] | None) -> float:
            return sum(values) / len(values) if values else math.nan

        row.update(
            num_timesteps=r.num_timesteps,
            final_success_rate=r.final_success_rate,
            final_mean_reward=r.final_mean_reward,
            best_success_rate=r.best_success_rate,
            timesteps_to_threshold=r.timesteps_to_threshold,
            vaa_after_warmup_actor=r.vaa_after_warmup.get("actor", math.nan),
            vaa_after_warmup_critic=r.vaa_after_warmup.get("critic", math.nan),
            vaa_final_actor=r.vaa_final.get("actor", math.nan),
            vaa_final_critic=r.vaa_final.get("critic", math.nan),
            warmup_vaa_star_actor=mean(r.warmup_vaa_star.get("actor")),
            warmup_vaa_star_critic=mean(r.warmup_vaa_star.get("critic")),
            warmup_restarts=sum(r.warmup_restarts.values()) if r.warmup_restarts else "",
            wall_seconds=r.wall_seconds,
            resumed_from=" ".join(str(t) for t in r.resumed_from),
        )
    return row


def run_one(run: GridRun) -> dict[str, Any]:
    """Run (or skip, or resume) one grid run; never raises for a failure of the run itself.

    :return: its ``results.csv`` row, plus ``"files"``: the text of its small result files.
    """
    from rl_warmup.experiment.train import is_finished, train

    if run.config.threads > 0:
        import torch

        torch.set_num_threads(run.config.threads)
    reused = is_finished(run.config)
    try:
        train(run.config)
    except Exception as e:
        run_dir = run.config.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        error_file = run_dir / "error.txt"
        if not error_file.exists():
            error_file.write_text("".join(traceback.format_exception(e)))
        row = run_row(run, status="failed", error=f"{type(e).__name__}: {e}")
    else:
        row = run_row(run, status="finished", reused=reused)
    run_dir = run.config.run_dir
    row["files"] = {name: (run_dir / name).read_text() for name in RESULT_FILES if (run_dir / name).exists()}
    return row


def _store_files(row: dict[str, Any]) -> dict[str, Any]:
    """Write the files a task sent back into the local run directory (when they differ)."""
    files = row.pop("files", {}) or {}
    run_dir = Path(row["run_dir"])
    for name, text in files.items():
        path = run_dir / name
        if path.exists() and path.read_text() == text:
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return row


def _failed_row(run: GridRun, message: str) -> dict[str, Any]:
    return run_row(run, status="failed", error=message)


_ACTIVE_RUN = False


def _on_sigterm(signum: int, frame: Any) -> None:
    """In a worker: stop the current run as Ctrl-C would (it keeps a checkpoint), or exit."""
    if _ACTIVE_RUN:
        raise KeyboardInterrupt
    raise SystemExit(0)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    # Ctrl-C in a terminal reaches every process of the group; workers leave it to the driver,
    # which stops them with SIGTERM (see _run_local), so each run saves its checkpoint once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="watch-parent", daemon=True).start()


ORPHAN_GRACE_SECONDS = 60.0
"""How long a worker whose driver died may take to checkpoint its run before it exits."""


def _watch_parent(parent: int, poll: float = 0.5) -> None:
    """In a worker: when the driver process dies (SIGKILL, the OOM killer), stop the running run
    as SIGTERM does (it keeps its checkpoint) and exit, instead of finishing the queue and then
    blocking forever on the dead driver's pipe."""
    while os.getppid() == parent:
        time.sleep(poll)
    os.kill(os.getpid(), signal.SIGTERM)
    # The pool's call queue never reaches end-of-file (the worker holds its write end too), so
    # the worker exits itself once the run has saved its checkpoint.
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while _ACTIVE_RUN and time.monotonic() < deadline:
        time.sleep(poll)
    os._exit(1)


def _worker_run(run: GridRun) -> dict[str, Any]:
    global _ACTIVE_RUN
    _ACTIVE_RUN = True
    try:
        return run_one(run)
    finally:
        _ACTIVE_RUN = False


def _new_executor(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    )


STOP_GRACE_SECONDS = 60.0
"""How long the driver waits for its stopped workers to checkpoint and exit before killing them."""


def _stop_workers(executor: cf.ProcessPoolExecutor, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to every worker process (a running run saves its checkpoint and stops), then shut
    the pool down. Workers still alive after ``grace`` seconds are killed, so that the driver
    never waits forever."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    closing = threading.Thread(
        target=executor.shutdown, kwargs={"wait": True, "cancel_futures": True}, name="stop-pool", daemon=True
    )
    closing.start()
    closing.join(grace)
    if closing.is_alive():
        for process in processes:
            if process.is_alive():
                process.kill()
        closing.join(5.0)


def _run_local(runs: list[GridRun], workers: int, on_result: Callable[[dict[str, Any]], None]) -> dict[int, dict[str, Any]]:
    """At most ``workers`` runs are submitted at a time, so that nothing is queued inside the
    executor: on Ctrl-C only the running runs need stopping, and they keep their checkpoints."""
    rows: dict[int, dict[str, Any]] = {}
    queue = deque(enumerate(runs))
    workers = min(workers, len(runs))
    executor = _new_executor(workers)
    in_flight: dict[cf.Future[dict[str, Any]], int] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                i, run = queue.popleft()
                try:
                    in_flight[executor.submit(_worker_run, run)] = i
                except cf.process.BrokenProcessPool:  # a worker died: start a fresh pool
                    queue.appendleft((i, run))
                    executor.shutdown(wait=False)
                    executor = _new_executor(workers)
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                i = in_flight.pop(future)
                try:
                    row = _store_files(future.result())
                except Exception as e:  # the worker process died (e.g. out of memory)
                    row = _failed_row(runs[i], f"worker process failed: {type(e).__name__}: {e}")
                rows[i] = row
                on_result(row)
    except BaseException:
        _stop_workers(executor)
        raise
    executor.shutdown(wait=True)
    return rows


def _run_ray(
    runs: list[GridRun],
    address: str | None,
    workers: int,
    cpus_per_run: float,
    on_result: Callable[[dict[str, Any]], None],
) -> dict[int, dict[str, Any]]:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "the ray backend needs Ray: pip install 'rl-warmup[ray]' (or pip install 'ray[default]')"
        ) from e
    import envs
    import rl_warmup

    started_here = not ray.is_initialized()
    if started_here:
        init_kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            # An existing cluster: ship this checkout's packages to its nodes.
            init_kwargs.update(address=address, runtime_env={"py_modules": [rl_warmup, envs]})
        else:
            # A local cluster sized for `workers` runs at a time.
            init_kwargs["num_cpus"] = max(1, math.ceil(workers * cpus_per_run))
        ray.init(**init_kwargs)
    try:
        task = ray.remote(num_cpus=cpus_per_run, max_retries=0)(run_one)
        refs = {task.remote(run): i for i, run in enumerate(runs)}
        pending = list(refs)
        rows: dict[int, dict[str, Any]] = {}
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                i = refs[done[0]]
                try:
                    row = _store_files(ray.get(done[0]))
                except Exception as e:  # the task or its worker died
                    row = _failed_row(runs[i], f"ray task failed: {type(e).__name__}: {e}")
                rows[i] = row
                on_result(row)
        except KeyboardInterrupt:
            for ref in pending:  # raises KeyboardInterrupt in running tasks: they keep a checkpoint
                ray.cancel(ref)
            raise
        return rows
    finally:
        if started_here:
            ray.shutdown()


def run_grid(
    runs: Iterable[GridRun],
    *,
    backend: str = "local",
    workers: int = 2,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> GridOutcome:
    """Execute the runs (finished ones are skipped, interrupted ones resumed).

    :param runs: from :func:`expand_grid`.
    :param backend: ``"local"`` or ``"ray"``.
    :param workers: parallel worker processes (local backend).
    :param address: Ray cluster address; ``None`` starts a local Ray cluster with
        ``workers`` CPUs.
    :param cpus_per_run: CPUs Ray reserves per run.
    :param on_result: called with each run's row as soon as it completes (progress reporting).
    :return: the rows in grid order.
    """
    from rl_warmup.experiment.train import is_finished

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
    runs = list(runs)
    start = time.perf_counter()
    callback = on_result or (lambda row: None)
    rows: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, run in enumerate(runs):
        if is_finished(run.config):  # done by an earlier invocation: no worker needed
            rows[i] = run_row(run, status="finished", reused=True)
            callback(rows[i])
        else:
            todo.append(i)
    if todo:
        pending = [runs[i] for i in todo]
        if backend == "local":
            done = _run_local(pending, workers, callback)
        else:
            done = _run_ray(pending, address, workers, cpus_per_run, callback)
        rows.update({todo[j]: row for j, row in done.items()})
    return GridOutcome([rows[i] for i in range(len(runs))], time.perf_counter() - start)


def collect_rows(runs: Iterable[GridRun]) -> list[dict[str, Any]]:
    """Rows of runs already in their directories (for ``report_only``)."""
    return [run_row(run) for run in runs]
