"""SQLite storage of a study: every trial, report and checkpoint as it happens.

One file holds any number of studies (by ``study_name``). The driver is the only
writer (one driver per study at a time: :mod:`~nondiff.hybrid.tune.lease`); each event
is one short transaction in WAL mode, and writes that belong together (a trial's end
and the optimizer's tell, a PBT copy and its checkpoint) share one
:meth:`Storage.transaction`, so a study killed at any moment (SIGKILL included) leaves
a consistent file and loses only what was in flight. A study opened again with the
same settings resumes from it.

Tables (every one keyed by ``study``):

    studies      name, settings (JSON: space, optimizer, scheduler, max_steps, mode, seed)
    trials       number, encoded config (JSON), readable config, optimizer batch and row,
                 parent (PBT), start_step, state, stop_reason, error, result,
                 resumed_step (the pause step a scheduler resumed it from), queued (when
                 it was last queued to run: a resumed study starts them in this order)
    reports      seq (arrival order), trial, step, metric, delta (steps it adds),
                 superseded (1: lost to a crash and redone), decision (the scheduler's
                 answer: continue, stop, pause) and reason (of a stop), written with it
    checkpoints  trial, step, data (``torch.save`` bytes of the user's state): the last
                 one of each trial a scheduler may still need (the driver deletes the
                 others, :mod:`~nondiff.hybrid.tune.driver`)
    batches      id, size, optimizer state before ``ask`` and after ``tell``
                 (``torch.save`` bytes, sealed by :mod:`nondiff.optim.checkpoint`)
    leases       the process running the study: pid, host, its start time

Example:
    >>> import os, tempfile
    >>> from nondiff.hybrid.tune.storage import Storage
    >>> path = os.path.join(tempfile.mkdtemp(), "study.sqlite")
    >>> with Storage(path, "demo") as store:
    ...     store.add_trial(0, [0.5], "{lr: 0.5}", batch=0, row=0)
    ...     store.add_report(0, 1, 0.25, delta=1)
    ...     store.put_checkpoint(0, 1, b"weights")
    >>> with Storage(path, "demo") as store:  # reopened: everything is there
    ...     [r["step"] for r in store.reports()], store.checkpoint(0)
    ([1], (1, b'weights'))
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from nondiff.optim import checkpoint as sealed

__all__ = ["SCHEMA_VERSION", "Storage"]

SCHEMA_VERSION = 3
"""2: reports keep the scheduler's decision, trials the step they were resumed from,
leases; 3: clones (optimizer rows told the fitness of an ended trial with the same
config). A file of an older schema is upgraded in place when opened."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (name TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    study TEXT NOT NULL, number INTEGER NOT NULL, encoded TEXT NOT NULL, config TEXT,
    batch INTEGER, row INTEGER, parent INTEGER, start_step INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, stop_reason TEXT, error TEXT, result REAL, resumed_step INTEGER,
    queued INTEGER, PRIMARY KEY (study, number)
);
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, study TEXT NOT NULL, trial INTEGER NOT NULL,
    step INTEGER NOT NULL, metric REAL, delta INTEGER NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0, decision TEXT, reason TEXT
);
CREATE TABLE IF NOT EXISTS checkpoints (
    study TEXT NOT NULL, trial INTEGER NOT NULL, step INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (study, trial)
);
CREATE TABLE IF NOT EXISTS batches (
    study TEXT NOT NULL, id INTEGER NOT NULL, size INTEGER NOT NULL,
    state_before BLOB NOT NULL, state_after BLOB,
    PRIMARY KEY (study, id)
);
CREATE TABLE IF NOT EXISTS clones (
    study TEXT NOT NULL, batch INTEGER NOT NULL, row INTEGER NOT NULL, trial INTEGER NOT NULL,
    after INTEGER NOT NULL, PRIMARY KEY (study, batch, row)
);
CREATE TABLE IF NOT EXISTS leases (
    study TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, started TEXT
);
"""
# columns schema 2 added to tables of schema 1: table -> (column, declaration)
_ADDED = {"trials": [("resumed_step", "INTEGER"), ("queued", "INTEGER")],
          "reports": [("decision", "TEXT"), ("reason", "TEXT")]}


def pack_state(state: dict[str, Any]) -> bytes:
    """An optimizer ``state_dict()`` as sealed ``torch.save`` bytes."""
    buffer = io.BytesIO()
    torch.save(sealed.seal(state), buffer)
    return buffer.getvalue()


def unpack_state(data: bytes, where: str) -> dict[str, Any]:
    """The state :func:`pack_state` wrote, checksum verified (ValueError naming ``where``)."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as error:
        raise ValueError(f"{where} is unreadable ({type(error).__name__}: {error}); the "
                         "storage file is damaged: use another study_name or file") from error
    return sealed.verify(payload, where)


class Storage:
    """A study's SQLite file (``None`` or ``":memory:"``: kept in memory only).

    Args:
        path: the file; its folder is created.
        study: the study's name inside the file.

    Raises:
        ValueError: the path cannot be written, or holds something else than a
            nondiff study file (or one of a newer schema).
    """

    def __init__(self, path: str | os.PathLike[str] | None, study: str) -> None:
        self.study = study
        self.path = ":memory:" if path is None or str(path) == ":memory:" else str(path)
        if self.path != ":memory:":
            sealed.check_writable(self.path, "storage")
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            if self.path != ":memory:":
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # safe against process crashes
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='tune_schema'").fetchone()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"storage={self.path!r} is not a nondiff study file ({error}); "
                             "point storage= at a new .sqlite file") from None
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise ValueError(f"storage={self.path!r} was written by a newer nondiff (schema "
                             f"{row[0]} > {SCHEMA_VERSION}); upgrade nondiff")
        self._depth = 0
        if row is None or int(row[0]) < SCHEMA_VERSION:
            try:
                with self.transaction():
                    self._upgrade()
            except sqlite3.DatabaseError as error:
                raise ValueError(f"storage={self.path!r} holds tables that are not a nondiff "
                                 f"study's ({error}); point storage= at a new .sqlite file"
                                 ) from None

    def _upgrade(self) -> None:
        """Add the columns of this schema to the tables of an older file."""
        for table, columns in _ADDED.items():
            present = {info[1] for info in self.db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns:
                if name not in present:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('tune_schema', ?)",
                        (str(SCHEMA_VERSION),))

    # ----- transactions ----------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside the block commit together or not at all (an exception rolls
        them back and propagates); a block inside another one joins it."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    # ----- settings ------------------------------------------------------------------
    def settings(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT settings FROM studies WHERE name=?",
                              (self.study,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save_settings(self, settings: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO studies VALUES (?, ?)",
                        (self.study, json.dumps(settings, sort_keys=True)))

    # ----- trials --------------------------------------------------------------------
    def add_trial(self, number: int, encoded: Any, config: str, *, batch: int | None = None,
                  row: int | None = None, parent: int | None = None, start_step: int = 0,
                  state: str = "running", queued: int | None = None) -> None:
        self.db.execute(
            "INSERT INTO trials (study, number, encoded, config, batch, row, parent, start_step,"
            " state, queued) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.study, number, json.dumps([float(v) for v in encoded]), config, batch, row,
             parent, start_step, state, queued))

    def update_trial(self, number: int, **fields: Any) -> None:
        allowed = {"state", "stop_reason", "error", "result", "resumed_step", "queued"}
        if not set(fields) <= allowed:
            raise ValueError(f"unknown trial fields {sorted(set(fields) - allowed)}")
        assignments = ", ".join(f"{key}=?" for key in fields)
        self.db.execute(f"UPDATE trials SET {assignments} WHERE study=? AND number=?",
                        (*fields.values(), self.study, number))

    def trials(self) -> list[dict[str, Any]]:
        cursor = self.db.execute(
            "SELECT number, encoded, config, batch, row, parent, start_step, state, stop_reason,"
            " error, result, resumed_step, queued FROM trials WHERE study=? ORDER BY number",
            (self.study,))
        keys = [d[0] for d in cursor.description]
        out = [dict(zip(keys, row, strict=True)) for row in cursor]
        for trial in out:
            trial["encoded"] = json.loads(trial["encoded"])
        return out

    # ----- reports -------------------------------------------------------------------
    def add_report(self, trial: int, step: int, metric: float, *, delta: int,
                   decision: str | None = None, reason: str | None = None) -> None:
        """One report and the scheduler's answer to it (one row: stored together)."""
        self.db.execute("INSERT INTO reports (study, trial, step, metric, delta, decision, "
                        "reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (self.study, trial, step, None if math.isnan(metric) else metric, delta,
                         decision, reason))

    def reports(self) -> list[dict[str, Any]]:
        """The standing reports in arrival order (NaN stored as NULL comes back NaN);
        ``decision`` is None in a file of schema 1."""
        cursor = self.db.execute(
            "SELECT trial, step, metric, delta, decision, reason FROM reports WHERE study=? "
            "AND superseded=0 ORDER BY seq", (self.study,))
        return [{"trial": t, "step": s, "metric": math.nan if m is None else m, "delta": d,
                 "decision": decision, "reason": reason}
                for t, s, m, d, decision, reason in cursor]

    def supersede(self, trial: int, after_step: int) -> int:
        """Mark the trial's reports after ``after_step`` as lost; the steps they held."""
        lost = self.db.execute(
            "SELECT COALESCE(SUM(delta), 0) FROM reports WHERE study=? AND trial=? AND step>? "
            "AND superseded=0", (self.study, trial, after_step)).fetchone()[0]
        self.db.execute("UPDATE reports SET superseded=1 WHERE study=? AND trial=? AND step>?",
                        (self.study, trial, after_step))
        return int(lost)

    def lost(self) -> int:
        """Steps trained, lost to a crash and redone."""
        return int(self.db.execute("SELECT COALESCE(SUM(delta), 0) FROM reports WHERE study=? "
                                   "AND superseded=1", (self.study,)).fetchone()[0])

    def count_reports(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM reports WHERE study=?",
                                   (self.study,)).fetchone()[0])

    # ----- checkpoints ---------------------------------------------------------------
    def put_checkpoint(self, trial: int, step: int, data: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                        (self.study, trial, step, sqlite3.Binary(data)))

    def delete_checkpoint(self, trial: int) -> None:
        self.db.execute("DELETE FROM checkpoints WHERE study=? AND trial=?", (self.study, trial))

    def checkpoint(self, trial: int) -> tuple[int, bytes] | None:
        row = self.db.execute("SELECT step, data FROM checkpoints WHERE study=? AND trial=?",
                              (self.study, trial)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # ----- optimizer batches ---------------------------------------------------------
    def add_batch(self, batch: int, size: int, state_before: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO batches (study, id, size, state_before) "
                        "VALUES (?, ?, ?, ?)", (self.study, batch, size, state_before))

    def tell_batch(self, batch: int, state_after: bytes) -> None:
        self.db.execute("UPDATE batches SET state_after=? WHERE study=? AND id=?",
                        (state_after, self.study, batch))

    def batches(self) -> list[dict[str, Any]]:
        cursor = self.db.execute("SELECT id, size, state_before, state_after FROM batches "
                                 "WHERE study=? ORDER BY id", (self.study,))
        return [{"id": i, "size": n, "state_before": bytes(b),
                 "state_after": None if a is None else bytes(a)} for i, n, b, a in cursor]

    # ----- clones --------------------------------------------------------------------
    def add_clone(self, batch: int, row: int, trial: int, after: int) -> None:
        """Row ``row`` of population ``batch`` was told the fitness of ended trial
        ``trial`` (the study had ``after`` trials then)."""
        self.db.execute("INSERT INTO clones (study, batch, row, trial, after) "
                        "VALUES (?, ?, ?, ?, ?)", (self.study, batch, row, trial, after))

    def clones(self) -> list[dict[str, int]]:
        cursor = self.db.execute("SELECT batch, row, trial, after FROM clones WHERE study=? "
                                 "ORDER BY batch, row", (self.study,))
        return [{"batch": b, "row": r, "trial": t, "after": a} for b, r, t, a in cursor]

    # ----- lifetime ------------------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def exists(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and str(path) != ":memory:" and Path(path).exists()
