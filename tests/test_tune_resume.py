"""A study killed with SIGKILL resumes with the same command and loses only the steps in
flight; finished trials are not run again."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from nondiff.hybrid.tune.lease import release
from nondiff.hybrid.tune.storage import Storage

from nondiff.tune import tune
from tests.conftest import kill_session, wait_until
from tests.tune_helpers import SPACE, train

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"optimizer": "cmaes", "scheduler": "asha", "budget": 60, "max_steps": 9, "seed": 3}
SCRIPT = f"""
import sys
from nondiff.tune import tune
from tests.tune_helpers import SPACE, train
tune(train, SPACE, executor=sys.argv[2], storage=sys.argv[1], **{SETTINGS!r})
"""


def _reports(path: Path, trial: int, step: int) -> bool:
    if not path.exists():
        return False
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM reports WHERE trial=? AND step=?",
                              (trial, step)).fetchone()[0] > 0
        except sqlite3.OperationalError:  # tables not made yet
            return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of a session")
def test_sigkill_then_the_same_command_resumes(tmp_path: Path, monkeypatch) -> None:
    reference = tune(train, SPACE, executor="inline", **SETTINGS)
    # hold a trial that trains past its first rung, after its report at step 2 and
    # before its checkpoint of step 2: that step is in flight when the study is killed
    held = next(t for t in reference.trials if t.number >= 3 and len(t.curve) >= 3)
    storage, log = tmp_path / "study.sqlite", tmp_path / "calls.log"
    env = {**os.environ, "TUNE_TEST_LOG": str(log), "PYTHONPATH": str(ROOT)}
    gated = {**env, "TUNE_TEST_GATE": f"{held.number} 2 {tmp_path / 'never'}"}
    command = [sys.executable, "-c", SCRIPT, str(storage), "process"]
    process = subprocess.Popen(command, env=gated, cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: _reports(storage, held.number, 2), timeout=240), \
            process.stderr.read().decode() if process.poll() is not None else "no report"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        kill_session(process.pid)
    with sqlite3.connect(storage) as db:
        finished = {n for n, s in db.execute("SELECT number, state FROM trials")
                    if s in ("complete", "pruned")}
    assert finished == set(range(held.number))

    # the same call again (here in this process, on threads: the executor is not part of
    # a study's settings)
    monkeypatch.setenv("TUNE_TEST_LOG", str(log))
    resumed = tune(train, SPACE, executor="inline", storage=storage, **SETTINGS)
    # the resumed study is the study that was never killed ...
    assert [(t.number, t.state, t.curve, t.config) for t in resumed.trials] == \
        [(t.number, t.state, t.curve, t.config) for t in reference.trials]
    assert resumed.compute == reference.compute
    assert resumed.lost == 1  # ... less the step in flight, redone from the checkpoint of 1
    calls = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    assert sorted(calls) == sorted([(t.number, 0) for t in reference.trials]
                                   + [(held.number, 1)])  # finished trials never ran again


LEASED = """
import sys
from nondiff.tune import tune
from tests.tune_helpers import SPACE, train
tune(train, SPACE, executor="inline", storage=sys.argv[1], scheduler=None, budget=8,
     max_steps=4)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL of a session")
def test_a_second_runner_is_refused_and_a_killed_runners_lease_taken_over(tmp_path) -> None:
    storage = tmp_path / "study.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TUNE_TEST_GATE", None)
    command = [sys.executable, "-c", LEASED, str(storage)]
    first = subprocess.Popen(command, cwd=ROOT, start_new_session=True,
                             env={**env, "TUNE_TEST_GATE": f"0 1 {tmp_path / 'never'}"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:  # the first runner holds trial 0 after its report of step 1
        assert wait_until(lambda: _reports(storage, 0, 1), timeout=240), \
            first.stderr.read().decode() if first.poll() is not None else "no report"
        with sqlite3.connect(storage) as db:
            assert db.execute("SELECT study, pid, host FROM leases").fetchall() == \
                [("default", first.pid, socket.gethostname())]
        second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=240)
        error = second.stderr.decode()
        assert second.returncode == 1 and "RuntimeError: study 'default' in storage=" in error
        assert str(storage) in error and f"run by process {first.pid} on host" in error
        assert "wait for it to finish or stop it" in error
        # another study of the same file is not held up
        other = tune(train, SPACE, executor="inline", storage=storage, study_name="other",
                     scheduler=None, budget=4, max_steps=4)
        assert [t.state for t in other.trials] == ["complete"]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill_session(first.pid)
    # the killed runner's lease is stale (its pid is gone): the same call takes it over
    resumed = tune(train, SPACE, executor="inline", storage=storage, scheduler=None, budget=8,
                   max_steps=4)
    assert [t.state for t in resumed.trials] == ["complete", "complete"]
    assert resumed.lost == 1  # step 1 of trial 0 was in flight (reported, not checkpointed)
    with sqlite3.connect(storage) as db:  # given back at the end
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0


def _lease(path: Path, pid: int, host: str, started: str | None) -> None:
    with Storage(path, "default") as store:
        store.db.execute("INSERT INTO leases VALUES ('default', ?, ?, ?)", (pid, host, started))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times")
def test_a_lease_whose_pid_now_runs_another_process_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite"
    _lease(path, os.getpid(), socket.gethostname(), "1")  # this pid, started at another time
    study = tune(train, SPACE, executor="inline", storage=path, scheduler=None, budget=4,
                 max_steps=4)
    assert [t.state for t in study.trials] == ["complete"]


def test_a_lease_from_another_host_is_refused_until_released(tmp_path: Path) -> None:
    path = tmp_path / "study.sqlite"
    _lease(path, 1, "elsewhere", None)
    with pytest.raises(RuntimeError, match=r"study 'default' in storage=.* is run by process 1 "
                                           r"on host 'elsewhere' already; .*force=True"):
        tune(train, SPACE, executor="inline", storage=path, scheduler=None, budget=4,
             max_steps=4)
    with Storage(path, "default") as store:
        assert store.trials() == []  # refused before any work
        release(store, force=True)
    study = tune(train, SPACE, executor="inline", storage=path, scheduler=None, budget=4,
                 max_steps=4)
    assert [t.state for t in study.trials] == ["complete"]
