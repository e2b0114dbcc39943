"""A static HTML report of stored benchmark results: one folder to open or publish.

``write_html`` writes ``index.html`` beside the PNG plots of
:mod:`nondiff.benchmarks.report_plots` and a ``summary.md`` (the Markdown table), as COCO's
post-processing writes a folder of HTML and figures (Hansen et al., "COCO: A platform
for comparing continuous optimizers in a black-box setting", Optimization Methods and
Software 36(1), 2021). The page is self-contained: inline CSS, images by relative
path, no external resource. A few lines of inline script record on ``<body>``
whether the images loaded (``data-images-loaded`` / ``data-images-total``, read by
the tests in headless Chromium); the page renders the same without it.

Example:
    >>> import tempfile
    >>> from nondiff.benchmarks.report_html import write_html
    >>> unit = {"suite": "s", "problem": "sphere-2d-i1", "dim": 2, "optimizer": "random",
    ...         "seed": 0, "status": "done", "f_opt_known": True, "evaluations": 40,
    ...         "precision": 0.25, "seconds": 0.1, "trace": [[20, 1.0], [40, 0.25]]}
    >>> index = write_html([unit], tempfile.mkdtemp(), title="demo")
    >>> index.name, ">random</td>" in index.read_text()
    ('index.html', True)
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nondiff.benchmarks.report_plots import plot_convergence, plot_ecdf
from nondiff.benchmarks.report_stats import (
    COLUMNS,
    comparison_cells,
    display_cells,
    format_markdown,
    prepare,
    problem_title,
    summarize,
)
from nondiff.benchmarks.store import now

Unit = Mapping[str, Any]

CSS = """
:root { --fg: #1d232b; --muted: #5b6572; --line: #d5dae1; --band: #f3f5f8; --accent: #1f5fa8; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 1.5rem 1.25rem 3rem; color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
     border-bottom: 2px solid var(--line); }
nav a { margin-right: 1rem; color: var(--accent); }
.muted { color: var(--muted); }
table { border-collapse: collapse; margin: .4rem 0 1.4rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { padding: .28rem .7rem; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th { background: var(--band); white-space: normal; vertical-align: bottom; }
td.text, th.text { text-align: left; }
.scroll { overflow-x: auto; }
tr.best td { font-weight: 600; background: #eaf3ea; }
tr.failed td { color: #a12b2b; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
         gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem;
         background: #fff; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: .85rem; color: var(--muted); padding-top: .3rem; }
details { border: 1px solid var(--line); border-radius: 6px; margin: .4rem 0;
          padding: .3rem .7rem; }
summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: .88rem; }
pre { overflow-x: auto; background: var(--band); padding: .6rem; font-size: .8rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
"""

SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.dataset.imagesTotal = String(images.length);
  document.body.dataset.imagesLoaded = String(loaded.length);
});
"""


def _commit(value: Any) -> str:
    text = str(value or "")
    return text[:12] + ("+dirty" if text.endswith("+dirty") else "")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: Sequence[str], body: Iterable[Sequence[str]], *, text_columns: int = 1,
           caption: str | None = None, row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; the first ``text_columns`` columns left-aligned. Cells are escaped."""
    def cell(tag: str, i: int, value: str) -> str:
        kind = ' class="text"' if i < text_columns else ""
        return f"<{tag}{kind}>{_e(value)}</{tag}>"

    rows = list(body)
    classes = row_classes or [""] * len(rows)
    out = ['<div class="scroll"><table>']
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    out.append("<thead><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head))
               + "</tr></thead><tbody>")
    for row, klass in zip(rows, classes, strict=True):
        attr = f' class="{klass}"' if klass else ""
        out.append(f"<tr{attr}>" + "".join(cell("td", i, v) for i, v in enumerate(row))
                   + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _summary_tables(rows: Sequence[Mapping[str, Any]]) -> str:
    several = len({r["suite"] for r in rows}) > 1
    out = []
    for key in dict.fromkeys((r["suite"], r["problem"]) for r in rows):
        group = [r for r in rows if (r["suite"], r["problem"]) == key]
        classes = ["best" if r["rank"] == 1 and r["runs"] else
                   "failed" if not r["runs"] else "" for r in group]
        out.append(_table([t for _, t in COLUMNS],
                          [[display_cells(r)[k] for k, _ in COLUMNS] for r in group],
                          text_columns=1, caption=problem_title(group[0], several),
                          row_classes=classes))
    return "\n".join(out)


def _comparison_table(comparison: tuple[str, str, list[dict[str, Any]]]) -> str:
    label_a, label_b, rows = comparison
    head, body, note = comparison_cells(rows, label_a, label_b)
    return _table(head, body, text_columns=2) + f'<p class="muted">{_e(note)}</p>'


def _figures(paths: Sequence[Path], caption: str) -> str:
    if not paths:
        return '<p class="muted">No plot: no completed unit with a known optimum.</p>'
    items = [f'<figure><img src="{_e(p.name)}" alt="{_e(caption)}: {_e(p.stem)}" '
             f'width="750" height="460"><figcaption>{_e(p.stem)}</figcaption></figure>'
             for p in paths]
    return '<div class="plots">\n' + "\n".join(items) + "\n</div>"


def _runs_table(units: Sequence[Unit], runs: Sequence[Mapping[str, Any]] | None) -> str:
    if runs:
        head = ["run id", "suite", "started", "finished", "executor", "workers", "units",
                "skipped", "done", "failed", "commit", "host"]
        body = [[r.get("run_id"), r.get("suite"), r.get("started_at"), r.get("finished_at"),
                 r.get("executor"), r.get("workers"), r.get("units_total"),
                 r.get("units_skipped"), r.get("units_done"), r.get("units_failed"),
                 _commit(r.get("git_commit")), r.get("host")] for r in runs]
        body = [["" if v is None else str(v) for v in row] for row in body]
        return _table(head, body, text_columns=5)
    groups: dict[Any, list[Unit]] = {}
    for unit in units:
        groups.setdefault(unit.get("run_id"), []).append(unit)
    head = ["run id", "suite", "first unit finished", "last unit finished", "units", "commit",
            "host"]
    body = []
    for run_id, members in groups.items():
        times = sorted(str(u.get("finished_at") or "") for u in members)
        body.append([str(run_id or "-"), ", ".join(sorted({str(u["suite"]) for u in members})),
                     times[0], times[-1], str(len(members)),
                     _commit(members[0].get("git_commit")),
                     str(members[0].get("host") or "")])
    return _table(head, body, text_columns=4)


def _versions_table(units: Sequence[Unit], runs: Sequence[Mapping[str, Any]] | None) -> str:
    seen: dict[str, set[str]] = {}
    for source in [*units, *(runs or [])]:
        for library, version in (source.get("versions") or {}).items():
            seen.setdefault(str(library), set()).add(str(version))
    if not seen:
        return '<p class="muted">No library versions recorded.</p>'
    return _table(["library", "version"],
                  [[k, ", ".join(sorted(v))] for k, v in sorted(seen.items())])


def _failures(units: Sequence[Unit]) -> str:
    failed = [u for u in units if u.get("status") == "failed"]
    if not failed:
        return '<p class="muted">No unit failed.</p>'
    out = []
    for unit in failed:
        error = str(unit.get("error") or "no traceback recorded")
        last = error.strip().splitlines()[-1] if error.strip() else ""
        out.append(f"<details><summary>{_e(unit['suite'])} / {_e(unit['problem'])} / "
                   f"{_e(unit['optimizer'])} / seed {_e(unit['seed'])}: {_e(last)}</summary>"
                   f"<pre>{_e(error)}</pre></details>")
    return "\n".join(out)


def write_html(units: Iterable[Unit], out_dir: str | os.PathLike[str], *,
               runs: Sequence[Mapping[str, Any]] | None = None,
               title: str = "nondiff benchmark report",
               comparison: tuple[str, str, list[dict[str, Any]]] | None = None,
               targets: Sequence[float] | None = None) -> Path:
    """Write ``out_dir/index.html`` with the summary tables, plots and run metadata.

    Args:
        units: result rows (see :func:`nondiff.benchmarks.report_stats.summarize`).
        out_dir: the report folder (created); plots and ``summary.md`` go beside.
            Plots (``convergence-*.png``, ``ecdf-*.png``) of an earlier report in
            the folder that this one does not draw are removed.
        runs: rows of ``ResultStore.runs()``; without them the invocations are
            reconstructed from the units' ``run_id``.
        title: the page's title.
        comparison: ``(label_a, label_b, nondiff.benchmarks.report_stats.compare_rows(...))`` to add
            a comparison table.
        targets: success targets for the tables (default: the stored ones).

    Returns:
        The path of ``index.html``.

    Raises:
        ValueError: no units.
    """
    units = prepare(units)
    if not units:
        raise ValueError("no units to report; run a suite first (`nondiff bench run`)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(units, targets)
    (out / "summary.md").write_text(format_markdown(rows) + "\n", encoding="utf-8")
    stale = {*out.glob("convergence-*.png"), *out.glob("ecdf-*.png")}
    ecdf = plot_ecdf(units, out)
    convergence = plot_convergence(units, out)
    for path in stale - {*ecdf, *convergence}:  # plots of an earlier report in this folder
        path.unlink()
    done = sum(1 for u in units if u.get("status", "done") == "done")
    suites = sorted({str(u["suite"]) for u in units})
    commits = sorted({str(u["git_commit"]) for u in units if u.get("git_commit")})
    hosts = sorted({str(u.get("host")) for u in units if u.get("host")})
    finished = sorted(str(u.get("finished_at")) for u in units if u.get("finished_at"))
    meta = {
        "suites": ", ".join(suites),
        "units": f"{len(units)} ({done} done, {len(units) - done} failed)",
        "problems": str(len({(u["suite"], u["problem"]) for u in units})),
        "optimizers": ", ".join(sorted({str(u["optimizer"]) for u in units})),
        "git commits": ", ".join(commits) or "-",
        "hosts": ", ".join(hosts) or "-",
        "units finished": f"{finished[0]} .. {finished[-1]}" if finished else "-",
        "report written": now(),
    }
    sections = [
        ("summary", "Summary", _summary_tables(rows) + (
            '<p class="muted">precision: best f - f_opt (the best loss where the optimum is '
            "unknown), median over completed seeds with quartiles; success: runs that "
            "reached the target; evals to target: median evaluations to the target over "
            "successful runs; ERT: evaluations of all runs / successes (COCO's average runtime); "
            "best optimizer of each problem in bold (success, then ERT, then precision)."
            "</p>")),
    ]
    if comparison is not None:  # the point of a comparison report: first
        sections.insert(0, ("comparison", f"Comparison: {comparison[0]} vs {comparison[1]}",
                         _comparison_table(comparison)))
    sections += [
        ("ecdf", "Runtime distributions (ECDF)", _figures(ecdf, "runtime ECDF")),
        ("convergence", "Convergence", _figures(convergence, "convergence")),
        ("runs", "Runs", _runs_table(units, runs)),
        ("versions", "Library versions", _versions_table(units, runs)),
        ("failures", f"Failed units ({len(units) - done})", _failures(units)),
    ]
    nav = "".join(f'<a href="#{key}">{_e(name.split(" (")[0])}</a>' for key, name, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{_e(name)}</h2>\n{content}\n</section>'
                     for key, name, content in sections)
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta.items())
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{_e(title)}</h1>
<dl class="meta">{dl}</dl>
<nav>{nav}</nav>
</header>
<main>
{body}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
