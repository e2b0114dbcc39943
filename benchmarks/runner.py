"""Run a suite's units in a process pool or on Ray and store every result in SQLite.

Each (problem, optimizer, seed) is a unit (:meth:`nondiff.benchmarks.suites.Suite.units`).
Units already in the database are skipped, so running a suite again resumes it;
the runner is the only writer and stores each unit the moment it arrives, so
killing it loses only the units in flight and never duplicates a row. A unit that
raises is stored as ``failed`` with its traceback (``--retry-failed`` runs it
again) and the suite goes on. Executors:

    process   a local pool of worker processes (default; one thread each)
    ray       Ray tasks on a local instance, or on the cluster at ``address``
    serial    in this process, one unit after another (debugging)

Example:
    >>> import os, tempfile
    >>> from nondiff.benchmarks.runner import run_suite
    >>> from nondiff.benchmarks.suites import OptimizerSpec, ProblemSpec, Suite
    >>> suite = Suite("doc", [ProblemSpec("sphere", 3)], [OptimizerSpec("ours:cmaes")],
    ...               seeds=[0], budget=300)
    >>> db = os.path.join(tempfile.mkdtemp(), "r.sqlite")
    >>> first = run_suite(suite, db, executor="serial", progress=False)
    >>> again = run_suite(suite, db, executor="serial", progress=False)
    >>> (first.done, first.skipped), (again.done, again.skipped)
    ((1, 0), (0, 1))
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import dataclasses
import functools
import importlib.metadata
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nondiff.benchmarks.report_stats import compact_trace
from nondiff.benchmarks.store import DEFAULT_PATH, ResultStore, new_run_id
from nondiff.benchmarks.suites import Suite
from nondiff.optim.lifetime import die_with

EXECUTORS = ("process", "ray", "serial")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LIBRARIES = ("nondiff", "numpy", "scipy", "torch", "cma", "evotorch", "nevergrad", "ray")


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on (those installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


@functools.cache
def git_commit() -> str | None:
    """The commit of the code being benchmarked (with ``+dirty`` if modified), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


def run_unit(unit: dict[str, Any]) -> dict[str, Any]:
    """Run one unit and return its database row; never raises (a failure is a row)."""
    import torch
    from nondiff.benchmarks import baselines

    torch.set_num_threads(1)
    key = {k: unit[k] for k in ("suite", "problem", "optimizer", "seed")}
    row: dict[str, Any] = {
        **key, "problem_name": unit["problem_name"], "dim": unit["dim"],
        "instance": unit["instance"], "runner": unit["runner"], "budget": unit["budget"],
        "config": unit, "versions": library_versions(), "host": platform.node(),
    }
    began = time.perf_counter()
    try:
        from nondiff import problems
        problem = problems.get(unit["problem_name"], dim=unit["dim"],
                               instance=unit["instance"], **unit["problem_kwargs"])
        record = baselines.runner(unit["runner"], **unit["options"])(
            problem, unit["budget"], unit["seed"], target=min(unit["targets"]))
    except Exception:
        row.update(status="failed", error=traceback.format_exc(),
                   seconds=time.perf_counter() - began)
        return row
    hits = {str(float(t)): record.evaluations_to(t) for t in unit["targets"]}
    row.update(
        status="done", evaluations=record.evaluations, precision=record.precision,
        best_f=getattr(record, "best_f", None), f_opt_known=getattr(record, "f_opt_known", True),
        seconds=record.seconds, stop=record.stop, trace=compact_trace(record.trace).tolist(),
        targets={t: (None if e == float("inf") else int(e)) for t, e in hits.items()},
    )
    return row


@dataclasses.dataclass
class RunSummary:
    """What one invocation did."""

    run_id: str
    suite: str
    total: int
    skipped: int
    done: int
    failed: int
    seconds: float
    not_applicable: list[str]


def _failure(unit: dict[str, Any], message: str) -> dict[str, Any]:
    """The row of a unit whose worker died without returning."""
    key = ("suite", "problem", "optimizer", "seed", "problem_name", "dim", "instance",
           "runner", "budget")
    return {**{k: unit[k] for k in key}, "config": unit, "status": "failed", "error": message,
            "versions": library_versions()}


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Worker processes inherit one BLAS/OpenMP thread each (set before they import)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _process_pool(units: Sequence[dict[str, Any]], workers: int) -> Iterator[tuple[dict, dict]]:
    # Workers fork from a clean server process that imported the libraries once: cheap to
    # start, and safe (forking this process could copy a locked OpenMP/torch thread pool,
    # or CUDA state after autograd ran). Each worker dies with this process (die_with),
    # even under SIGKILL; the forkserver and resource tracker then see end-of-file and exit.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["nondiff.benchmarks.runner", "nondiff.benchmarks.baselines",
                                    "nondiff.problems"])
    with _single_threaded_children(), futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=die_with,
            initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(run_unit, unit): unit for unit in units}
        try:
            for future in futures.as_completed(pending):
                unit = pending[future]
                try:
                    yield unit, future.result()
                except Exception as error:  # the worker process died (killed, segfault, OOM)
                    yield unit, _failure(unit, f"worker lost: {type(error).__name__}: {error}")
        finally:
            for future in pending:
                future.cancel()


def _ray(units: Sequence[dict[str, Any]], workers: int,
         address: str | None) -> Iterator[tuple[dict, dict]]:
    try:
        import ray
    except ModuleNotFoundError as error:
        raise ValueError("--ray needs Ray: pip install -e '.[dist]'") from error
    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {name: "1" for name in THREAD_VARIABLES}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, runtime_env=env,
                     log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=1)(run_unit)
    try:
        pending = {remote.remote(unit): unit for unit in units}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(ready[0])
            try:
                yield unit, ray.get(ready[0])
            except Exception as error:  # a node or worker lost for good
                yield unit, _failure(unit, f"ray task lost: {type(error).__name__}: {error}")
    finally:
        if started_here:
            ray.shutdown()


def _serial(units: Sequence[dict[str, Any]]) -> Iterator[tuple[dict, dict]]:
    for unit in units:
        yield unit, run_unit(unit)


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="unit", disable=not enabled, dynamic_ncols=True,
                desc="units", file=sys.stderr)


def run_suite(
    suite: Suite,
    db: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    executor: str = "process",
    workers: int | None = None,
    address: str | None = None,
    retry_failed: bool = False,
    progress: bool | None = None,
    argv: Sequence[str] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run the units of ``suite`` not yet in ``db``.

    Args:
        suite: the suite (:func:`nondiff.benchmarks.suites.get`).
        db: the SQLite results file (created if missing).
        executor: ``"process"`` (default), ``"ray"`` or ``"serial"``.
        workers: processes / Ray CPUs (default: the machine's cores).
        address: an existing Ray cluster (``"auto"`` or ``host:port``); implies Ray.
        retry_failed: run units stored as failed again (their rows are replaced).
        progress: show a progress bar (default: when stderr is a terminal).
        argv: the command line, stored with the invocation.
        on_result: called with each stored row (as it arrives).

    Returns:
        A :class:`RunSummary` (units run, skipped, failed, wall time).

    Raises:
        ValueError: unknown executor, bad ``workers``, or a database that is not ours.
    """
    if address is not None:
        executor = "ray"
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    not_applicable: list[str] = []
    units = suite.units(skipped=not_applicable)
    began = time.perf_counter()
    run_id = new_run_id()
    with ResultStore(db) as store:
        finished = store.finished_keys(suite.name, include_failed=not retry_failed)
        todo = [u for u in units if (u["problem"], u["optimizer"], u["seed"]) not in finished]
        commit = git_commit()
        store.start_run(run_id, suite.name, argv=list(argv or []), executor=executor,
                        workers=workers, units_total=len(units),
                        units_skipped=len(units) - len(todo), versions=library_versions(),
                        git_commit=commit, host=platform.node())
        done = failed = 0
        if todo:
            if executor == "process":
                results = _process_pool(todo, min(workers, len(todo)))
            elif executor == "ray":
                results = _ray(todo, workers, address)
            else:
                results = _serial(todo)
            show = sys.stderr.isatty() if progress is None else progress
            with _progress_bar(len(todo), show) as bar:
                for _, row in results:
                    row.update(run_id=run_id, git_commit=commit)
                    store.add_unit(row, replace=retry_failed)
                    done += row["status"] == "done"
                    failed += row["status"] == "failed"
                    bar.update(1)
                    in_flight = min(workers, len(todo) - done - failed)
                    bar.set_postfix(running=in_flight, failed=failed, refresh=False)
                    if on_result is not None:
                        on_result(row)
        store.finish_run(run_id, units_done=done, units_failed=failed)
    return RunSummary(run_id, suite.name, len(units), len(units) - len(todo), done, failed,
                      time.perf_counter() - began, not_applicable)
