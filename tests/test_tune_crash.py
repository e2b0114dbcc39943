"""A study that dies between two writes resumes as the study that never died.

The crash is a real exception raised by a subclass of the study's Storage at a chosen
write (the driver stops there, as after a SIGKILL: the file holds what was committed);
then the same ``tune`` call on the file resumes it. Also: checkpoints of ended trials
are deleted.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import ClassVar

import pytest
from nondiff.hybrid.tune import api
from nondiff.hybrid.tune.storage import Storage

from nondiff.tune import PBT, MedianStopping, tune
from tests.tune_helpers import SPACE, train


class Killed(Exception):
    """Stands for the SIGKILL at the write where it is raised."""


class CrashingStorage(Storage):
    """A Storage that raises :class:`Killed` once, at the first write ``crash`` picks."""

    crash: tuple[str, object] = ("", None)  # (method, predicate of its arguments)
    fired = False

    def _maybe_crash(self, method: str, *args: object, **kwargs: object) -> None:
        name, predicate = type(self).crash
        if name == method and not type(self).fired and predicate(self, *args, **kwargs):
            type(self).fired = True
            raise Killed(f"killed at {method}{args}{kwargs}")

    def update_trial(self, number, **fields):
        self._maybe_crash("update_trial", number, **fields)
        super().update_trial(number, **fields)

    def add_report(self, trial, step, metric, **kwargs):
        self._maybe_crash("add_report", trial, step)
        super().add_report(trial, step, metric, **kwargs)

    def tell_batch(self, batch, state_after):
        self._maybe_crash("tell_batch", batch)
        super().tell_batch(batch, state_after)

    def add_trial(self, number, encoded, config, **kwargs):
        super().add_trial(number, encoded, config, **kwargs)
        if kwargs.get("parent") is not None:
            self.copies = {*getattr(self, "copies", ()), number}

    def put_checkpoint(self, trial, step, data):
        self._maybe_crash("put_checkpoint", trial, step)
        super().put_checkpoint(trial, step, data)


def _crashes_at(monkeypatch, method: str, predicate) -> type[CrashingStorage]:
    storage = type("Crashing", (CrashingStorage,), {"crash": (method, predicate)})
    monkeypatch.setattr(api, "Storage", storage)
    return storage


def _calls(path: Path) -> Counter:
    return Counter(tuple(map(int, line.split())) for line in path.read_text().splitlines())


def _outline(study):
    return [(t.number, t.state, t.stop_reason, t.parent, t.start_step, t.curve, t.config)
            for t in study.trials]


SETTINGS = {"optimizer": "cmaes", "max_steps": 6, "executor": "inline", "seed": 4}
PBT_SETTINGS = {**SETTINGS, "scheduler": PBT(interval=2, population=4, resample_probability=0.5),
                "budget": 60}


def _ended(state: str, reason: str | None = None):
    return "update_trial", lambda store, number, **fields: fields.get("state") == state and \
        fields.get("stop_reason", reason) == reason


def _first_report_after_a_resume(store, trial, step):
    """A PBT member (not a copy) reports the step after a pause at step 2 or 4."""
    return step in (3, 5) and trial not in getattr(store, "copies", ())


@pytest.mark.parametrize(("settings", "crash", "redone"), [
    pytest.param({"scheduler": None, "budget": 30}, _ended("complete"), 0, id="max_steps"),
    pytest.param({"scheduler": "asha", "budget": 40}, _ended("pruned", "scheduler"), 0,
                 id="asha-stop"),
    pytest.param({"scheduler": MedianStopping(min_trials=2), "budget": 40},
                 _ended("pruned", "scheduler"), 0, id="median-stop"),
    pytest.param({"scheduler": PBT(interval=2, population=4), "budget": 60}, _ended("paused"),
                 0, id="pbt-pause"),
    pytest.param({"scheduler": PBT(interval=2, population=4), "budget": 60},
                 ("add_report", _first_report_after_a_resume), 1, id="pbt-resumed"),
])
def test_a_trial_killed_after_its_last_decision_ends_as_it_would_have(
        tmp_path, monkeypatch, settings, crash, redone) -> None:
    """Killed after the report that ended the trial (and its checkpoint) but before the
    trial's end was written: the resumed study ends it there, runs nothing again. Killed
    after PBT resumed a paused member, before its next report: it runs on (not paused
    again)."""
    settings = {**SETTINGS, **settings}
    monkeypatch.setenv("TUNE_TEST_LOG", str(tmp_path / "reference.log"))
    reference = tune(train, SPACE, **settings)
    monkeypatch.setenv("TUNE_TEST_LOG", str(tmp_path / "crashed.log"))
    path = tmp_path / "study.sqlite"
    storage = _crashes_at(monkeypatch, *crash)
    with pytest.raises(Killed):
        tune(train, SPACE, storage=path, **settings)
    assert storage.fired
    monkeypatch.setattr(api, "Storage", Storage)
    resumed = tune(train, SPACE, storage=path, **settings)
    assert _outline(resumed) == _outline(reference)
    assert resumed.compute == reference.compute and resumed.lost == 0
    assert resumed.best_curve() == reference.best_curve()  # reports in the same order
    # every train call of the reference, once; again only the one in flight at the kill
    # (the resumed PBT member, from its checkpoint): a trial that had ended did not run
    calls, expected = _calls(tmp_path / "crashed.log"), _calls(tmp_path / "reference.log")
    assert calls >= expected and (calls - expected).total() == redone


@pytest.mark.parametrize(("settings", "method", "predicate"), [
    pytest.param({"scheduler": "asha", "budget": 40}, "tell_batch", lambda store, batch: True,
                 id="end-then-tell"),
    pytest.param(PBT_SETTINGS, "put_checkpoint",
                 lambda store, trial, step: trial in getattr(store, "copies", ()),
                 id="pbt-copy-then-checkpoint"),
])
def test_a_kill_between_two_writes_of_one_event_leaves_no_half_state(
        tmp_path, monkeypatch, settings, method, predicate) -> None:
    """A trial's end and the optimizer's tell, a PBT copy and its checkpoint: both or
    neither are stored, so the resumed study is the one that never died."""
    settings = {**SETTINGS, **settings}
    reference = tune(train, SPACE, **settings)
    path = tmp_path / "study.sqlite"
    storage = _crashes_at(monkeypatch, method, predicate)
    with pytest.raises(Killed):
        tune(train, SPACE, storage=path, **settings)
    assert storage.fired
    monkeypatch.setattr(api, "Storage", Storage)
    resumed = tune(train, SPACE, storage=path, **settings)
    assert _outline(resumed) == _outline(reference)
    assert resumed.compute == reference.compute
    assert resumed.best_curve() == reference.best_curve()


class CountingStorage(Storage):
    """Records the number of stored checkpoints after every checkpoint written."""

    counts: ClassVar[list[int]] = []

    def put_checkpoint(self, trial, step, data):
        super().put_checkpoint(trial, step, data)
        type(self).counts.append(self.db.execute("SELECT COUNT(*) FROM checkpoints")
                                 .fetchone()[0])


@pytest.mark.parametrize(("scheduler", "bound"), [
    ("asha", 2), (MedianStopping(min_trials=2), 2),
    (PBT(interval=2, population=4), 4),
])
def test_checkpoints_of_ended_trials_are_deleted(tmp_path, monkeypatch, scheduler,
                                                  bound) -> None:
    """ASHA, median: only running trials (``parallel`` of them) hold a checkpoint; PBT:
    only the live members of the population; none once the study is over."""
    CountingStorage.counts = []
    monkeypatch.setattr(api, "Storage", CountingStorage)
    path = tmp_path / "study.sqlite"
    study = tune(train, SPACE, **{**SETTINGS, "scheduler": scheduler, "budget": 60,
                                  "parallel": 2}, storage=path)
    assert len(study.trials) > 2 * bound
    assert 1 <= max(CountingStorage.counts) <= bound
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0] == 0


SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (name TEXT PRIMARY KEY, settings TEXT NOT NULL);
CREATE TABLE trials (
    study TEXT NOT NULL, number INTEGER NOT NULL, encoded TEXT NOT NULL, config TEXT,
    batch INTEGER, row INTEGER, parent INTEGER, start_step INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL, stop_reason TEXT, error TEXT, result REAL,
    PRIMARY KEY (study, number)
);
CREATE TABLE reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, study TEXT NOT NULL, trial INTEGER NOT NULL,
    step INTEGER NOT NULL, metric REAL, delta INTEGER NOT NULL,
    superseded INTEGER NOT NULL DEFAULT 0
);
INSERT INTO meta VALUES ('tune_schema', '1');
INSERT INTO trials (study, number, encoded, config, state) VALUES ('s', 0, '[0.5]', 'x', 'running');
INSERT INTO reports (study, trial, step, metric, delta) VALUES ('s', 0, 1, 0.25, 1);
"""


def test_a_file_of_schema_1_is_upgraded_in_place(tmp_path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
    with Storage(path, "s") as store:
        assert store.reports() == [{"trial": 0, "step": 1, "metric": 0.25, "delta": 1,
                                    "decision": None, "reason": None}]
        assert store.trials()[0]["resumed_step"] is None and store.trials()[0]["queued"] is None
        store.add_report(0, 2, 0.5, delta=1, decision="stop", reason="scheduler")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchall() == [("3",)]
        assert db.execute("SELECT COUNT(*) FROM clones").fetchall() == [(0,)]
        assert db.execute("SELECT decision FROM reports ORDER BY seq").fetchall() == \
            [(None,), ("stop",)]
