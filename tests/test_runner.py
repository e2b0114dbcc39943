"""The benchmark runner: suites as data, resumable SQLite results, failures, Ray, CLI."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    kill_leader_and_expect_session_gone,
    kill_session,
    session_processes,
    wait_until,
)
from nondiff.benchmarks import baselines, suites
from nondiff.benchmarks.runner import run_suite
from nondiff.benchmarks.store import ResultStore
from nondiff.benchmarks.suites import OptimizerSpec, ProblemSpec, Suite

from nondiff.cli import main

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = {"id", "seconds", "host", "run_id", "finished_at", "git_commit"}


def tiny(name: str = "tiny", **changes) -> Suite:
    fields = dict(problems=[ProblemSpec("sphere", 3), ProblemSpec("onemax", 12, budget=300)],
                  optimizers=[OptimizerSpec("ours:cmaes"), OptimizerSpec("random")],
                  seeds=[0, 1], budget=240, targets=[1e-1, 1e-8])
    return Suite(name, **{**fields, **changes})


def key_counts(db: Path) -> dict[tuple, int]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT suite, problem, optimizer, seed, COUNT(*) FROM units "
            "GROUP BY suite, problem, optimizer, seed").fetchall()
    return {tuple(r[:4]): r[4] for r in rows}


# -- suites ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", suites.names())
def test_builtin_suites_expand_to_known_runners(name: str) -> None:
    suite = suites.get(name)
    skipped: list[str] = []
    units = suite.units(skipped=skipped)
    assert units, f"suite {name} has no runnable unit"
    for spec in suite.optimizers:
        assert spec.runner in baselines.names()
    keys = {(u["problem"], u["optimizer"], u["seed"]) for u in units}
    assert len(keys) == len(units)
    # every pair left out is explained
    pairs = len(suite.problems) * len(suite.optimizers) * len(suite.seeds)
    assert len(units) + len(skipped) * len(suite.seeds) == pairs


def test_quick_suite_mixes_ours_and_every_kind_of_baseline() -> None:
    runners = {o.runner.split(":")[0] for o in suites.get("quick").optimizers}
    assert {"ours", "pycma", "evotorch", "scipy", "random"} <= runners


def test_toml_and_python_suites(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(textwrap.dedent("""
        name = "mine"
        seeds = [3, 4]
        budget_per_dim = 50
        targets = [1e-2]
        [[problems]]
        name = "rastrigin"
        dims = [2, 5]
        [[problems]]
        name = "jump"
        dim = 12
        k = 2
        budget = 100
        [[optimizers]]
        runner = "ours:pgpe"
        label = "pgpe-fast"
        options = { center_lr = 0.3 }
    """))
    suite = suites.get(str(toml))
    assert suite.name == "mine" and suite.seeds == (3, 4)
    assert [p.label for p in suite.problems] == ["rastrigin-2d-i1", "rastrigin-5d-i1",
                                                 "jump-12d-i1-k2"]
    assert [suite.budget_of(p) for p in suite.problems] == [100, 250, 100]
    assert suite.optimizers[0].options == {"center_lr": 0.3}
    units = suite.units()
    # pgpe: the reals, and jump through the relaxation (nondiff.optim.relaxed)
    assert {u["optimizer"] for u in units} == {"pgpe-fast"} and len(units) == 6

    script = tmp_path / "mine.py"
    script.write_text("from nondiff.benchmarks.suites import *\n"
                      "SUITE = Suite('py', [ProblemSpec('sphere', 2)], "
                      "[OptimizerSpec('pycma')], seeds=[0], budget=10)\n")
    assert suites.get(str(script)).name == "py"


@pytest.mark.parametrize("text, message", [
    ("name = 'x'\n[[problems]]\nname = 'spere'\n", "Did you mean 'sphere'"),
    ("name = 'x'\nbudget = 5\ncolour = 1\n", "unknown keys ['colour']"),
    ("name = = 'x'", "not valid TOML"),
    ("name = 'x'\nbudget = 5\n[[problems]]\nname = 'sphere'\n[[optimizers]]\nlabel = 'a'\n",
     "needs a runner"),
])
def test_bad_suite_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        suites.get(str(path))


def test_suite_validation_and_selection() -> None:
    with pytest.raises(ValueError, match="twice"):
        tiny(optimizers=[OptimizerSpec("random"), OptimizerSpec("random")])
    with pytest.raises(ValueError, match="budget"):
        Suite("b", [ProblemSpec("sphere", 2)], [OptimizerSpec("random")])
    with pytest.raises(ValueError, match=r"(?i)did you mean 'ours:cmaes'"):
        tiny().select(optimizers=["ours:cmaez"])
    with pytest.raises(ValueError, match=r"(?i)did you mean 'quick'"):
        suites.get("quik")
    assert [o.name for o in tiny().select(optimizers=["random"]).optimizers] == ["random"]


# -- runner -----------------------------------------------------------------------------

def test_process_pool_stores_each_unit_once_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    first = run_suite(tiny(), db, executor="process", workers=2, progress=False)
    assert (first.total, first.done, first.failed, first.skipped) == (8, 8, 0, 0)
    again = run_suite(tiny(), db, executor="process", workers=2, progress=False)
    assert (again.done, again.skipped) == (0, 8)
    assert set(key_counts(db).values()) == {1} and len(key_counts(db)) == 8
    with ResultStore(db) as store:
        units = store.units("tiny")
        assert {u["run_id"] for u in units} == {first.run_id}
        assert [r["run_id"] for r in store.runs("tiny")] == [first.run_id, again.run_id]
    for unit in units:
        assert unit["status"] == "done" and unit["evaluations"] <= unit["budget"]
        assert unit["versions"]["torch"] and unit["versions"]["cma"]
        trace = unit["trace"]
        assert trace[-1][0] == unit["evaluations"] and trace[-1][1] == unit["precision"]
        assert all(b[1] <= a[1] for a, b in itertools.pairwise(trace))  # best so far
        hit = unit["targets"]["0.1"]
        assert hit is None or next(e for e, p in trace if p <= 0.1) == hit
    onemax = [u for u in units if u["problem"] == "onemax-12d-i1" and u["optimizer"] ==
              "ours:cmaes"]
    assert all(u["precision"] == 0 for u in onemax)  # 12 bits within 300 evaluations


def test_a_failing_unit_is_recorded_with_its_traceback(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    suite = tiny(optimizers=[OptimizerSpec("ours:cmaes"),
                             OptimizerSpec("ours:ga", {"popsize": -3}, label="broken")])
    summary = run_suite(suite, db, executor="process", workers=2, progress=False)
    assert (summary.done, summary.failed) == (4, 2)  # ga: bits only; sphere not applicable
    assert any("broken on sphere" in line for line in summary.not_applicable)
    with ResultStore(db) as store:
        failed = store.units("tiny", status="failed")
    assert {u["optimizer"] for u in failed} == {"broken"}
    for unit in failed:
        assert "Traceback" in unit["error"] and "popsize" in unit["error"]
    # failed units are not re-run unless asked; then their rows are replaced, not added
    assert run_suite(suite, db, executor="serial", progress=False).done == 0
    retry = run_suite(suite, db, executor="serial", progress=False, retry_failed=True)
    assert (retry.done, retry.failed) == (0, 2)
    assert set(key_counts(db).values()) == {1}


def test_sigkill_mid_run_loses_only_units_in_flight(tmp_path: Path) -> None:
    db, suite_file = tmp_path / "r.sqlite", tmp_path / "slow.toml"
    suite_file.write_text(textwrap.dedent("""
        name = "slow"
        seeds = [0, 1, 2, 3, 4, 5]
        budget = 2000
        [[problems]]
        name = "rastrigin"
        dim = 10
        [[optimizers]]
        runner = "ours:cmaes"
        [[optimizers]]
        runner = "ours:snes"
    """))
    command = [sys.executable, "-m", "nondiff", "bench", "run", "--suite",
               str(suite_file), "--db", str(db), "--workers", "2", "--no-report",
               "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db) as connection:
                try:
                    stored = connection.execute("SELECT COUNT(*) FROM units").fetchone()[0]
                except sqlite3.OperationalError:  # the runner is still creating the schema
                    continue
            if stored >= 3:
                break
    assert process.poll() is None, "the run ended before it could be killed: " + \
        process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)  # the runner and its workers, as kill -9 would
    process.wait(timeout=30)
    with ResultStore(db) as store:
        before = {(u["problem"], u["optimizer"], u["seed"]): u for u in store.units("slow")}
    assert 3 <= len(before) < 12

    summary = run_suite(suites.get(str(suite_file)), db, executor="process", workers=2,
                        progress=False)
    assert summary.skipped == len(before) and summary.done == 12 - len(before)
    counts = key_counts(db)
    assert len(counts) == 12 and set(counts.values()) == {1}
    with ResultStore(db) as store:
        after = {(u["problem"], u["optimizer"], u["seed"]): u for u in store.units("slow")}
    for key, unit in before.items():  # finished units were not re-run
        assert after[key]["run_id"] == unit["run_id"] != summary.run_id
        assert after[key]["finished_at"] == unit["finished_at"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_runner_kills_its_workers(tmp_path: Path) -> None:
    """SIGKILL of the runner alone (not its process group): the pool workers, and the
    forkserver and resource tracker multiprocessing started for them, die with it."""
    suite_file = tmp_path / "slow.toml"
    suite_file.write_text(textwrap.dedent("""
        name = "slow"
        seeds = [0, 1, 2, 3, 4, 5, 6, 7]
        budget = 20000
        [[problems]]
        name = "rastrigin"
        dim = 10
        [[optimizers]]
        runner = "ours:cmaes"
    """))
    command = [sys.executable, "-m", "nondiff", "bench", "run", "--suite", str(suite_file),
               "--db", str(tmp_path / "r.sqlite"), "--workers", "2", "--no-report",
               "--no-progress"]
    process = subprocess.Popen(command, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def workers() -> dict[int, str]:  # the pool's processes (forked or spawned)
            found = {pid: c for pid, c in session_processes(process.pid).items()
                     if pid != process.pid and "resource_tracker" not in c}
            return found if len(found) >= 2 else {}

        started = wait_until(workers, timeout=120)
        assert started and process.poll() is None, "the runner ended or started no workers"
        kill_leader_and_expect_session_gone(process, leader="the runner")
    finally:
        kill_session(process.pid)


def test_ray_gives_the_same_results_as_the_process_pool(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    suite = tiny()
    run_suite(suite, tmp_path / "pool.sqlite", executor="process", workers=2, progress=False)
    summary = run_suite(suite, tmp_path / "ray.sqlite", executor="ray", workers=2,
                        progress=False)
    assert (summary.done, summary.failed) == (8, 0)

    def rows(name: str) -> dict[tuple, dict]:
        with ResultStore(tmp_path / name) as store:
            return {(u["problem"], u["optimizer"], u["seed"]):
                    {k: v for k, v in u.items() if k not in VOLATILE}
                    for u in store.units("tiny")}

    pool, ray_rows = rows("pool.sqlite"), rows("ray.sqlite")
    assert pool.keys() == ray_rows.keys()
    for key in pool:
        assert pool[key] == ray_rows[key], key


def test_store_refuses_a_file_that_is_not_a_results_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("not a database " * 100)
    with pytest.raises(ValueError, match="not a nondiff results database"):
        ResultStore(path)


# -- CLI --------------------------------------------------------------------------------

def test_cli_runs_a_tiny_suite_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    suite_file = tmp_path / "t.toml"
    suite_file.write_text(textwrap.dedent("""
        name = "t"
        seeds = [0]
        budget = 200
        [[problems]]
        name = "sphere"
        dim = 2
        [[optimizers]]
        runner = "ours:cmaes"
        [[optimizers]]
        runner = "pycma"
    """))
    assert main(["bench", "run", "--suite", str(suite_file), "--executor", "serial",
                 "--out", "rep"]) == 0
    out = capsys.readouterr().out
    assert "2 units run" in out and "ours:cmaes" in out and "pycma" in out
    assert (tmp_path / "nondiff-results.sqlite").exists()
    assert (tmp_path / "rep" / "index.html").exists()
    assert list((tmp_path / "rep").glob("*.png"))

    assert main(["bench", "report", "--db", "nondiff-results.sqlite", "--out", "rep2"]) == 0
    assert "ours:cmaes" in capsys.readouterr().out
    assert (tmp_path / "rep2" / "index.html").exists()

    assert main(["bench", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("quick", "continuous", "discrete"))


@pytest.mark.parametrize("argv, hint", [
    (["optimize", "--problem", "sphere", "--optimizer", "cmaez"], "'cmaes'"),
    (["optimize", "--problem", "rastrign", "--optimizer", "cmaes"], "'rastrigin'"),
    (["bench", "run", "--suite", "quick", "--optimizers", "ours:cmaez"], "'ours:cmaes'"),
    (["bench", "run", "--suite", "discrte"], "'discrete'"),
])
def test_cli_misspelled_names_suggest_the_closest(argv: list[str], hint: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert hint in capsys.readouterr().err


def test_cli_optimize_prints_the_result(capsys: pytest.CaptureFixture) -> None:
    assert main(["optimize", "--problem", "sphere", "--dim", "3", "--optimizer", "cmaes",
                 "--budget", "1500"]) == 0
    out = capsys.readouterr().out
    f = float(out.split("f           ")[1].split()[0])
    assert f < 1e-6
    assert main(["optimize", "--problem", "onemax", "--dim", "20", "--optimizer", "ga",
                 "--budget", "3000"]) == 0
    assert "f           20" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["bench", "--help"], ["bench", "run", "--help"],
                                  ["bench", "report", "--help"], ["optimize", "--help"]])
def test_cli_help(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: nondiff" in capsys.readouterr().out
