"""Reports of stored results: summary numbers, tables, comparisons, PNG plots, the HTML
report rendered by headless Chromium, and the ``nondiff bench report`` entry."""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.image import imread
from nondiff.benchmarks.report import (
    add_arguments,
    compare,
    compare_rows,
    evaluations_to,
    format_markdown,
    format_table,
    plot_convergence,
    plot_ecdf,
    report_after_run,
    run_from_args,
    select_units,
    summarize,
    write_html,
)
from nondiff.benchmarks.report_plots import COCO_TARGETS, runtimes
from nondiff.benchmarks.report_stats import compact_trace, hitting_times
from nondiff.benchmarks.store import ResultStore

from nondiff import problems

CHROMIUM = "/usr/bin/chromium"
TARGETS = (1e-2, 1e-8)
OPTIMIZERS = {"ours:cmaes": 0.93, "pycma-bipop": 0.95, "random": 0.995}  # decay per eval


def trace_of(rate: float, start: float, budget: int, step: int, floor: float = 0.0):
    """A best-so-far trace decaying geometrically to ``floor`` (then stopping)."""
    trace = []
    for evaluations in range(step, budget + 1, step):
        value = max(start * rate**evaluations, floor)
        if value < 1e-9:  # the runner stops at the final target
            trace.append([evaluations, 0.0])
            break
        trace.append([evaluations, value])
    return trace


def unit_row(suite, problem, name, dim, optimizer, seed, trace, *, known=True,
             commit="abc1234", run_id="run-1", **extra):
    hits = {str(float(t)): next((int(e) for e, p in trace if p <= t), None) for t in TARGETS}
    return {
        "suite": suite, "problem": problem, "problem_name": name, "dim": dim, "instance": 1,
        "optimizer": optimizer, "seed": seed, "runner": optimizer, "budget": 600,
        "config": {"optimizer": optimizer}, "status": "done", "evaluations": int(trace[-1][0]),
        "precision": float(trace[-1][1]), "best_f": float(trace[-1][1]), "f_opt_known": known,
        "seconds": 0.1 + 0.01 * seed, "stop": "budget", "trace": trace,
        "targets": hits if known else {}, "versions": {"numpy": np.__version__, "cma": "4.5"},
        "git_commit": commit, "host": "testhost", "run_id": run_id, **extra,
    }


def synthetic_units(suite="quick", commit="abc1234", slow=1.0):
    """3 optimizers x 2 problems (one without known optimum) x 3 seeds, one failed unit."""
    rows = []
    for optimizer, rate in OPTIMIZERS.items():
        for seed in range(3):
            start = 50.0 * (1 + seed)
            rows.append(unit_row(suite, "sphere-4d-i1", "sphere", 4, optimizer, seed,
                                 trace_of(rate**slow, start, 600, 10), commit=commit))
            if optimizer == "random" and seed == 2:
                rows.append({**unit_row(suite, "policy-8d-i1", "policy", 8, optimizer, seed,
                                        [[10, 1.0]], known=False, commit=commit),
                             "status": "failed", "trace": [], "precision": None,
                             "evaluations": None, "error": "Traceback (most recent call "
                             "last):\n  File \"x.py\", line 1\nRuntimeError: boom <&>"})
                continue
            rows.append(unit_row(suite, "policy-8d-i1", "policy", 8, optimizer, seed,
                                 trace_of(rate**slow, start, 600, 20, floor=5.0 - seed),
                                 known=False, commit=commit))
    return rows


def make_db(path, units, runs=("run-1",)):
    with ResultStore(path) as store:
        for run_id in runs:
            store.start_run(run_id, units[0]["suite"], argv=["bench", "run"],
                            executor="process", workers=2, versions={"numpy": np.__version__},
                            git_commit=units[0]["git_commit"], host="testhost")
        assert store.add_units(units) == len(units)
        for run_id in runs:
            store.finish_run(run_id, units_total=len(units), units_done=len(units) - 1,
                             units_failed=1, units_skipped=0)
    return path


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "synthetic.sqlite"
    return make_db(path, synthetic_units())


def real_units(suite="real"):
    """A small end-to-end result set from real optimizer runs (about 3 s)."""
    from nondiff.benchmarks.baselines import run

    rows = []
    for name in ("sphere", "rastrigin"):
        problem = problems.get(name, dim=4, instance=1)
        for optimizer in ("pycma", "ours:cmaes", "ours:snes"):
            for seed in (0, 1):
                record = run(optimizer, problem, 400, seed)
                rows.append({
                    "suite": suite, "problem": f"{name}-4d-i1", "problem_name": name, "dim": 4,
                    "instance": 1, "optimizer": record.optimizer, "seed": seed,
                    "runner": record.optimizer, "budget": 400, "config": {"budget": 400},
                    "status": "done", "evaluations": record.evaluations,
                    "precision": record.precision, "best_f": record.precision + problem.f_opt,
                    "f_opt_known": True, "seconds": record.seconds, "stop": record.stop,
                    "trace": record.trace.tolist(),
                    "targets": {str(t): (None if math.isinf(e := record.evaluations_to(t))
                                         else int(e)) for t in (1e-1, 1e-8)},
                    "versions": {"numpy": np.__version__}, "git_commit": "feedbeef",
                    "host": "testhost", "run_id": "real-run",
                })
    return rows


@pytest.fixture(scope="module")
def real_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "real.sqlite"
    return make_db(path, real_units(), runs=("real-run",))


# -- summary numbers -----------------------------------------------------------------
def hand_made_units():
    base = {"suite": "s", "problem": "p-2d-i1", "problem_name": "p", "dim": 2,
            "optimizer": "a", "status": "done", "f_opt_known": True}
    return [
        {**base, "seed": 0, "evaluations": 500, "precision": 0.0, "seconds": 1.0,
         "trace": [[60, 1e-3], [100, 0.0]], "targets": {"1e-08": 100}},
        {**base, "seed": 1, "evaluations": 500, "precision": 1e-9, "seconds": 3.0,
         "trace": [[100, 1.0], [300, 1e-9]], "targets": {"1e-08": 300}},
        {**base, "seed": 2, "evaluations": 500, "precision": 0.5, "seconds": 2.0,
         "trace": [[100, 2.0], [500, 0.5]], "targets": {"1e-08": None}},
        {**base, "seed": 3, "status": "failed", "error": "Traceback\nValueError: x",
         "trace": []},
        {**base, "optimizer": "b", "seed": 0, "evaluations": 50, "precision": 1e-10,
         "seconds": 9.0, "trace": [[50, 1e-10]], "targets": {"1e-08": 50}},
        {**base, "optimizer": "c", "seed": 0, "status": "failed", "error": "boom"},
    ]


def test_summary_numbers_on_a_hand_made_result_set():
    rows = summarize(hand_made_units())
    assert [r["optimizer"] for r in rows] == ["b", "a", "c"]  # success, then ERT; c failed
    a = rows[1]
    assert (a["runs"], a["failures"], a["successes"]) == (3, 1, 2)
    assert a["success_rate"] == pytest.approx(2 / 3)
    assert a["target"] == 1e-8
    assert a["evals_median"] == 200.0  # median of 100 and 300
    assert a["ert"] == pytest.approx((100 + 300 + 500) / 2)  # Eq. (1)
    assert a["precision_median"] == 1e-9
    assert a["precision_q1"] == pytest.approx(0.5e-9)
    assert a["precision_q3"] == pytest.approx(0.25 + 0.5e-9)
    assert a["seconds_median"] == 2.0 and a["rank"] == 2
    c = rows[2]
    assert (c["runs"], c["failures"], c["precision_median"], c["ert"]) == (0, 1, None, None)
    # a coarser target from the caller, read from the traces: every run of a reaches it
    coarse = summarize(hand_made_units(), targets=[0.6, 2.0])
    assert coarse[1]["target"] == 0.6 and coarse[1]["success_rate"] == 1.0
    assert coarse[1]["ert"] == pytest.approx((60 + 300 + 500) / 3)
    with pytest.raises(ValueError, match="positive"):
        summarize(hand_made_units(), targets=[0.0])


def test_evaluations_to_reads_recorded_hits_then_the_trace():
    unit = {"trace": [[10, 5.0], [20, 0.5], [30, 0.01]], "targets": {"0.5": 17}}
    assert evaluations_to(unit, 0.5) == 17.0  # the runner's (finer) record wins
    assert evaluations_to(unit, 0.1) == 30.0
    assert evaluations_to(unit, 1e-3) == math.inf
    assert evaluations_to({"targets": {"1e-08": None}, "trace": [[5, 0.0]]}, 1e-8) == math.inf


def test_compact_traces_keep_the_step_function():
    rng = np.random.default_rng(0)
    values = 100 * np.exp(-np.arange(1, 5001) / 400) * rng.choice([1.0, 50.0], 5000, p=[0.05, 0.95])
    trace = np.column_stack([np.arange(1, 5001), np.minimum.accumulate(values)]).tolist()
    compact = compact_trace(trace)
    assert 10 < len(compact) < 600 and compact[-1].tolist() == trace[-1]
    targets = list(COCO_TARGETS)
    slow = [next((e for e, p in trace if p <= t), math.inf) for t in targets]
    assert hitting_times({"trace": compact}, targets).tolist() == slow
    assert compact_trace([]).shape == (0, 2) and compact_trace(None).shape == (0, 2)


def test_unknown_optimum_has_no_success_rate_and_ranks_by_loss(synthetic_db):
    units = select_units(ResultStore(synthetic_db), "quick")
    rows = [r for r in summarize(units) if r["problem"] == "policy-8d-i1"]
    assert all(r["success_rate"] is None and r["ert"] is None for r in rows)
    medians = [r["precision_median"] for r in rows]
    assert medians == sorted(medians)
    random = next(r for r in rows if r["optimizer"] == "random")
    assert (random["runs"], random["failures"]) == (2, 1)


# -- tables --------------------------------------------------------------------------
def test_tables_list_every_optimizer_best_first(synthetic_db):
    units = select_units(ResultStore(synthetic_db), "quick")
    units.append({**units[0], "optimizer": "scipy:de", "status": "failed", "trace": [],
                  "error": "ImportError"})
    rows = summarize(units)
    markdown = format_markdown(rows)
    lines = markdown.splitlines()
    assert lines[1].startswith("|---|") and all(line.startswith("| ") for line in lines[2:])
    assert all(line.count(" | ") == lines[0].count(" | ") for line in lines[2:])
    for optimizer in [*OPTIMIZERS, "scipy:de"]:
        assert optimizer in markdown
    assert "| sphere-4d-i1 | scipy:de | 0 | 1 | all failed |" in markdown
    sphere = [line for line in lines if line.startswith("| sphere")]
    assert "**ours:cmaes**" in sphere[0] and "3/3" in sphere[0]  # fastest decay ranks first
    text = format_table(rows)
    assert text.count("sphere-4d-i1  (budget 600, target 1e-08") == 1
    assert "optimum unknown" in text
    block = text.split("\n\n")[0].splitlines()
    assert [line.split()[0] for line in block[2:]] == [
        "ours:cmaes", "pycma-bipop", "random", "scipy:de"]
    assert len({line.index("median precision") for line in text.splitlines()
                if "median precision" in line}) == 1  # aligned


# -- plots ---------------------------------------------------------------------------
def colour_fraction(image: np.ndarray, rgb, tol: float = 0.06) -> float:
    return float(np.mean(np.all(np.abs(image[..., :3] - np.asarray(rgb)) < tol, axis=-1)))


def assert_real_png(path: Path, colours) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 500
    assert np.ptp(image[..., :3]) > 0.5  # not one colour
    for colour in colours:  # every optimizer's line is drawn
        assert colour_fraction(image, colour) > 1e-4, (path.name, colour)


def test_plots_are_valid_images_with_a_line_per_optimizer(synthetic_db, tmp_path):
    units = select_units(ResultStore(synthetic_db), "quick")
    palette = colormaps["tab10"].colors
    colours = [palette[i] for i in range(len(OPTIMIZERS))]  # sorted optimizer names
    paths = plot_convergence(units, tmp_path)
    assert [p.name for p in paths] == ["convergence-quick-sphere-4d-i1.png",
                                       "convergence-quick-policy-8d-i1.png"]
    for path in paths:
        assert_real_png(path, colours)
    ecdf = plot_ecdf(units, tmp_path)
    assert [p.name for p in ecdf] == ["ecdf-quick-4d.png"]  # policy: optimum unknown
    assert_real_png(ecdf[0], colours)
    data = runtimes(units)
    times, failed, _ = data["ours:cmaes"]
    assert times.size == 3 * len(COCO_TARGETS) and failed == 0
    assert np.isfinite(times).all()  # every target reached
    assert np.isfinite(data["random"][0]).mean() < 0.5


# -- comparisons ---------------------------------------------------------------------
def test_compare_two_databases_and_two_commits(tmp_path):
    fast = make_db(tmp_path / "a.sqlite", synthetic_units(commit="aaa111"))
    slow = make_db(tmp_path / "b.sqlite", synthetic_units(commit="bbb222", slow=0.6))
    units_a = select_units(ResultStore(fast), "quick")
    units_b = select_units(ResultStore(slow), "quick")
    rows = {(r["problem"], r["optimizer"]): r for r in compare_rows(units_a, units_b)}
    cmaes = rows[("sphere-4d-i1", "ours:cmaes")]
    assert cmaes["ert_ratio"] == pytest.approx(cmaes["b"]["ert"] / cmaes["a"]["ert"])
    assert 1.4 < cmaes["ert_ratio"] < 2.0  # 0.6 x the decay rate: about 1/0.6 the runtime
    assert cmaes["precision_ratio"] == 1.0  # both reached the target
    table = compare(units_a, units_b, "old", "new")
    assert "| problem | optimizer | precision old | precision new | ratio |" in table
    assert all(o in table for o in OPTIMIZERS) and "absent" not in table
    text = compare(units_a, units_b, "old", "new", fmt="text")
    assert "ratio = new / old" in text and "|" not in text.splitlines()[0]
    # two commits of one database (as two suites)
    both = tmp_path / "both.sqlite"
    make_db(both, synthetic_units(commit="aaa111"))
    with ResultStore(both) as store:
        store.add_units(synthetic_units(suite="quick-b", commit="bbb222", slow=0.6))
        a = select_units(store, commit="aaa")
        b = select_units(store, commit="bbb")
        assert {u["suite"] for u in a} == {"quick"} and {u["suite"] for u in b} == {"quick-b"}
        assert compare(a, b) == compare(units_a, units_b)
        with pytest.raises(ValueError, match="matches no stored commits"):
            select_units(store, commit="ccc")
    out = tmp_path / "out"
    assert run_from_args(parse("--db", str(both), "--out", str(out),
                               "--compare-commit", "aaa", "bbb")) == 0
    page = (out / "index.html").read_text()
    assert "quick vs quick-b / sphere-4d-i1" not in page  # one suite: not repeated per row
    assert "<h2>Comparison: aaa vs bbb</h2>" in page and ">ours:cmaes [bbb]</td>" in page
    assert (out / "convergence-quick_vs_quick-b-sphere-4d-i1.png").is_file()
    with pytest.raises(ValueError, match="'nope'"):
        compare(units_a, units_b, fmt="nope")


# -- HTML in a real browser ----------------------------------------------------------
def chromium(*args: str, profile: Path) -> str:
    """Run headless Chromium with a 120 s limit (its whole process group killed after;
    generous: `make test` runs another test file beside it on 2 cores)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    try:
        out, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("chromium did not finish within 120 s")
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return out


class _Tags(HTMLParser):
    VOID = frozenset({"meta", "img", "br", "hr", "link", "input", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [v for k, v in attrs if k in ("src", "href") and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_report_renders_in_headless_chromium(real_db, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed (Debian package `chromium`; .ci/run installs it)")
    with ResultStore(real_db) as store:
        units = select_units(store, "real")
        units.append({**units[0], "optimizer": "scipy:de", "status": "failed", "trace": [],
                      "error": "Traceback (most recent call last):\nRuntimeError: <boom>"})
        index = write_html(units, tmp_path / "report", runs=store.runs("real"), title="real")
    source = index.read_text()
    assert source.startswith("<!DOCTYPE html>")
    tags = _Tags()
    tags.feed(source)
    assert tags.errors == [] and tags.stack == []  # balanced
    assert all(not re.match(r"[a-z]+://", s) for s in tags.sources)  # nothing external
    assert (tmp_path / "report" / "summary.md").read_text().count("scipy:de") == 1
    dom = chromium("--dump-dom", index.as_uri(), profile=tmp_path / "profile")
    images = re.findall(r"<img [^>]*src=\"([^\"]+)\"", dom)
    assert sorted(images) == sorted(p.name for p in index.parent.glob("*.png"))
    assert len(images) == 3  # ECDF 4-D, convergence sphere and rastrigin
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images-total="3"' in body, "the page's script did not run"
    assert 'data-images-loaded="3"' in body, f"images did not load in the browser: {body}"
    summary = dom.split('id="summary"')[1].split("</section>")[0]
    for optimizer in ("pycma", "ours:cmaes", "ours:snes", "scipy:de"):
        assert len(re.findall(rf"<tr[^>]*><td class=\"text\">{optimizer}</td>", summary)) >= 1
    assert summary.count("<table>") == 2 and summary.count('class="best"') == 2
    assert "RuntimeError: &lt;boom&gt;</summary>" in dom and "<details>" in dom
    assert "real-run" in dom and "feedbeef" in dom
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2000", index.as_uri(),
             profile=tmp_path / "profile")
    image = imread(shot)
    assert image.shape[:2] == (2000, 1200)
    assert np.mean(np.all(image[..., :3] > 0.97, axis=-1)) < 0.97  # not blank
    assert colour_fraction(image, (0xEA / 255, 0xF3 / 255, 0xEA / 255), 0.01) > 1e-3  # best row
    palette = colormaps["tab10"].colors
    drawn = [colour_fraction(image, palette[i]) > 2e-5 for i in range(3)]
    assert all(drawn), "the plots' optimizer colours are not on the screenshot"


# -- the command ---------------------------------------------------------------------
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nondiff bench report")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_command_writes_the_report_and_prints_the_table(real_db, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_from_args(parse("--db", str(real_db), "--out", str(out))) == 0
    printed = capsys.readouterr().out
    assert "sphere-4d-i1  (budget 400" in printed and f"report: {out / 'index.html'}" in printed
    assert {p.name for p in out.iterdir()} >= {"index.html", "summary.md",
                                               "convergence-real-sphere-4d-i1.png"}
    assert run_from_args(parse("--db", str(real_db), "--out", str(out), "--suite", "real",
                               "--format", "markdown", "--compare-db", str(real_db))) == 0
    printed = capsys.readouterr().out
    assert "| sphere-4d-i1 | pycma |" in printed and "A:real.sqlite" in printed
    assert (out / "compare.md").is_file()
    assert "pycma [A:real.sqlite]" in (out / "index.html").read_text()
    assert "<h2>Comparison: A:real.sqlite vs B:real.sqlite</h2>" in (
        out / "index.html").read_text()


def test_command_errors_name_the_fix(real_db, tmp_path):
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(ValueError, match=r"no results database at .*nope\.sqlite.*bench run"):
        run_from_args(parse("--db", str(missing), "--out", str(tmp_path)))
    assert not missing.exists()  # not created by the attempt
    with pytest.raises(ValueError, match="unknown suite 'reel'; did you mean 'real'"):
        run_from_args(parse("--db", str(real_db), "--out", str(tmp_path), "--suite", "reel"))
    ResultStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ValueError, match="holds no results yet"):
        run_from_args(parse("--db", str(tmp_path / "empty.sqlite"), "--out", str(tmp_path)))
    with pytest.raises(ValueError, match="--compare-suite other needs --suite"):
        run_from_args(parse("--db", str(real_db), "--out", str(tmp_path),
                            "--compare-suite", "other"))
    with pytest.raises(ValueError, match="unknown run id 'real-rn'; did you mean 'real-run'"):
        run_from_args(parse("--db", str(real_db), "--out", str(tmp_path),
                            "--compare-runs", "real-rn", "x"))


def test_report_after_run(synthetic_db, tmp_path):
    (tmp_path / "convergence-quick-gone-2d-i1.png").write_bytes(b"stale")
    (tmp_path / "notes.png").write_bytes(b"the user's")
    with ResultStore(synthetic_db) as store:
        text = report_after_run(store, "quick", tmp_path)
        assert report_after_run(store, "absent", tmp_path / "x").startswith("suite 'absent'")
    assert text.startswith("sphere-4d-i1")
    assert text.endswith(f"report: {tmp_path / 'index.html'}")
    html = (tmp_path / "index.html").read_text()
    assert "RuntimeError: boom &lt;&amp;&gt;" in html and "testhost" in html
    assert len(list(tmp_path.glob("*.png"))) == 4  # 3 plots, the stale one removed
    assert (tmp_path / "notes.png").is_file()
