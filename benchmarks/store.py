"""SQLite store of benchmark results: one row per (suite, problem, optimizer, seed) unit.

The runner is the only writer (workers return results to it), so every unit is
inserted in one short transaction and the table's unique key guarantees a unit is
never stored twice: killing the runner loses only the units in flight. Rows keep
everything a report needs — the unit's configuration, the best-so-far trace by
evaluation count, target hits, the stop reason, wall time — and where it came from:
library versions, git commit, host and the invocation (``run_id``) that produced it.

Schema (``units``; JSON columns hold plain JSON):

    suite, problem (label, e.g. ``rastrigin-10d-i1``), optimizer (label), seed
                      the unit's key (UNIQUE)
    problem_name, dim, instance, runner, budget, config (JSON: the whole unit)
    status            ``done`` or ``failed``
    evaluations, precision, best_f, f_opt_known, seconds, stop
    trace             JSON [[evaluations, best precision so far], ...]
    targets           JSON {target: evaluations to reach it, or null}
    error             the worker's traceback when ``failed``
    versions, git_commit, host, run_id, finished_at

``runs`` has one row per invocation (suite, argv, executor, start/end, versions).

Example:
    >>> import tempfile, os
    >>> from nondiff.benchmarks.store import ResultStore
    >>> path = os.path.join(tempfile.mkdtemp(), "r.sqlite")
    >>> with ResultStore(path) as store:
    ...     key = {"suite": "s", "problem": "sphere-2d-i1", "optimizer": "ours:cmaes", "seed": 0}
    ...     store.add_unit({**key, "problem_name": "sphere", "dim": 2, "instance": 1,
    ...                     "runner": "ours:cmaes", "budget": 10, "config": {}, "status": "done",
    ...                     "evaluations": 10, "precision": 0.5, "trace": [[10, 0.5]]})
    ...     store.add_unit({**key, "status": "done"})  # the same unit again: ignored
    ...     [(u["optimizer"], u["trace"]) for u in store.units("s")]
    True
    False
    [('ours:cmaes', [[10, 0.5]])]
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

SCHEMA_VERSION = 1
DEFAULT_PATH = "nondiff-results.sqlite"
KEY = ("suite", "problem", "optimizer", "seed")
JSON_COLUMNS = ("config", "trace", "targets", "versions")
COLUMNS = (
    "suite", "problem", "optimizer", "seed", "problem_name", "dim", "instance", "runner",
    "budget", "config", "status", "evaluations", "precision", "best_f", "f_opt_known",
    "seconds", "stop", "trace", "targets", "error", "versions", "git_commit", "host",
    "run_id", "finished_at",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    id INTEGER PRIMARY KEY,
    suite TEXT NOT NULL, problem TEXT NOT NULL, optimizer TEXT NOT NULL, seed INTEGER NOT NULL,
    problem_name TEXT, dim INTEGER, instance INTEGER, runner TEXT, budget INTEGER,
    config TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    evaluations INTEGER, precision REAL, best_f REAL, f_opt_known INTEGER, seconds REAL,
    stop TEXT, trace TEXT NOT NULL DEFAULT '[]', targets TEXT NOT NULL DEFAULT '{}', error TEXT,
    versions TEXT NOT NULL DEFAULT '{}', git_commit TEXT, host TEXT, run_id TEXT,
    finished_at TEXT,
    UNIQUE (suite, problem, optimizer, seed)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT NOT NULL, argv TEXT, executor TEXT, workers INTEGER,
    started_at TEXT NOT NULL, finished_at TEXT, units_total INTEGER, units_skipped INTEGER,
    units_done INTEGER, units_failed INTEGER, versions TEXT, git_commit TEXT, host TEXT
);
"""


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A unique id of one runner invocation."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} {value!r} as JSON")


def _dump(value: Any) -> str:
    # inf/nan are not JSON: stored as strings and read back as floats
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "tolist"):
            return clean(v.tolist())
        return v

    return json.dumps(clean(value), default=_json_default, sort_keys=True)


def _load(text: str | None) -> Any:
    def restore(v: Any) -> Any:
        if v in ("inf", "-inf", "nan"):
            return float(v)
        if isinstance(v, dict):
            return {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v

    return None if text is None else restore(json.loads(text))


class ResultStore:
    """A results database (created on first use).

    Args:
        path: SQLite file; ``":memory:"`` for a throw-away store.
        timeout: seconds to wait for a lock held by another process.

    Raises:
        ValueError: the file exists but is not a nondiff results database (or is
            from a newer schema); the message names the path.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._refuse_foreign()
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            version = self._db.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
            elif int(version[0]) > SCHEMA_VERSION:
                raise ValueError(f"schema version {version[0]} is newer than this nondiff's "
                                 f"({SCHEMA_VERSION}); upgrade nondiff")
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path} is not a nondiff results database ({error}); "
                             "pass another --db path or move the file away") from error

    def _refuse_foreign(self) -> None:
        """A SQLite file of another application: refused before our schema is written
        into it (its tables would be left holding ours)."""
        tables = {row[0] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return  # a new, empty database
        ours = "meta" in tables and self._db.execute(
            "SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is not None
        if not ours:
            self._db.close()
            raise ValueError(
                f"{self.path} is a SQLite database of another application (tables "
                f"{sorted(tables)[:5]}), not a nondiff results database; pass another --db "
                "path (a new file is created) or move the file away")

    # -- context manager -------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- units -----------------------------------------------------------------------
    def add_unit(self, row: Mapping[str, Any], *, replace: bool = False) -> bool:
        """Store one unit; returns False (and changes nothing) if its key is already
        stored, unless ``replace`` (used to retry failed units)."""
        missing = [k for k in KEY if k not in row]
        if missing:
            raise ValueError(f"a unit row needs {list(KEY)}; missing {missing}")
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown unit columns {unknown}; known: {list(COLUMNS)}")
        values = {k: (_dump(v) if k in JSON_COLUMNS else v) for k, v in row.items()}
        values.setdefault("finished_at", now())
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cursor = self._db.execute(f"{verb} INTO units ({names}) VALUES ({marks})",
                                  tuple(values.values()))
        return cursor.rowcount == 1

    def finished_keys(self, suite: str, *, include_failed: bool = True) -> set[tuple]:
        """Keys ``(problem, optimizer, seed)`` of the suite's stored units."""
        status = "" if include_failed else " AND status = 'done'"
        rows = self._db.execute(
            f"SELECT problem, optimizer, seed FROM units WHERE suite = ?{status}", (suite,))
        return {tuple(r) for r in rows}

    def units(self, suite: str | None = None, *, status: str | None = None,
              run_id: str | None = None) -> list[dict[str, Any]]:
        """Stored units as dicts (JSON columns decoded), in insertion order."""
        where, args = [], []
        for column, value in (("suite", suite), ("status", status), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM units" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        out = []
        for row in rows:
            unit = dict(row)
            for column in JSON_COLUMNS:
                unit[column] = _load(unit[column])
            if unit.get("f_opt_known") is not None:
                unit["f_opt_known"] = bool(unit["f_opt_known"])
            out.append(unit)
        return out

    def suites(self) -> list[str]:
        """Names of the suites with stored units."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT suite FROM units ORDER BY suite")]

    # -- invocations -----------------------------------------------------------------
    def start_run(self, run_id: str, suite: str, **fields: Any) -> None:
        """Record the start of a runner invocation."""
        fields = {k: (_dump(v) if k in ("argv", "versions") else v) for k, v in fields.items()}
        names = ", ".join(["run_id", "suite", "started_at", *fields])
        marks = ", ".join("?" for _ in range(3 + len(fields)))
        self._db.execute(f"INSERT INTO runs ({names}) VALUES ({marks})",
                         (run_id, suite, now(), *fields.values()))

    def finish_run(self, run_id: str, **counts: int) -> None:
        """Record the end of an invocation with its unit counts."""
        sets = ", ".join(f"{k} = ?" for k in ["finished_at", *counts])
        self._db.execute(f"UPDATE runs SET {sets} WHERE run_id = ?",
                         (now(), *counts.values(), run_id))

    def runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        """Invocations, oldest first."""
        sql, args = "SELECT * FROM runs", ()
        if suite is not None:
            sql, args = sql + " WHERE suite = ?", (suite,)
        out = []
        for row in self._db.execute(sql + " ORDER BY started_at, run_id", args):
            run = dict(row)
            run["argv"], run["versions"] = _load(run["argv"]), _load(run["versions"])
            out.append(run)
        return out

    def add_units(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store many unit rows in one transaction; returns how many were new."""
        added = 0
        self._db.execute("BEGIN")
        try:
            for row in rows:
                added += self.add_unit(row)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return added
