"""The package's layout: no import cycles, and a wheel that installs only ``nondiff``.

The import graph is read from the source (each file's AST), not from ``sys.modules``:
every ``import`` / ``from ... import`` of a ``nondiff`` module, at module level and
inside functions alike (a lazy import hides a cycle, it does not remove it), except
under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nondiff

ROOT = Path(__file__).resolve().parents[1]
TOP = ("nondiff.optim", "nondiff.hybrid", "nondiff.problems", "nondiff.benchmarks")


# ----- the import graph ---------------------------------------------------------------
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


class _Modules:
    """The modules of the ``nondiff`` package by name, found as the graph is walked.

    A package's modules are the files in its folder. The top-level packages live in
    folders of their own (the ``package-dir`` mapping, as an editable install sees
    it), so they are listed; a package elsewhere joins when an import reaches it.
    """

    def __init__(self) -> None:
        self.files: dict[str, Path] = {}
        self.packages: set[str] = set()
        self._not_modules: set[str] = set()
        for name in ("nondiff", *TOP):
            self._add_package(name)

    def _add_package(self, name: str) -> bool:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            return False
        if spec is None or spec.origin is None or not spec.submodule_search_locations:
            return False
        self.packages.add(name)
        self.files[name] = Path(spec.origin)
        for folder in spec.submodule_search_locations:
            for child in sorted(Path(folder).iterdir()):
                if child.suffix == ".py" and child.name != "__init__.py":
                    self.files[f"{name}.{child.stem}"] = child
                elif (child / "__init__.py").is_file():
                    self._add_package(f"{name}.{child.name}")
        return True

    def known(self, name: str) -> bool:
        """Whether ``name`` is a module of ours (a mapped package is added on the way)."""
        if name in self.files:
            return True
        if name in self._not_modules or name.rpartition(".")[0] not in self.packages:
            return False
        if self._add_package(name):
            return True
        self._not_modules.add(name)
        return False


def _package_of(module: str, modules: _Modules) -> str:
    return module if module in modules.packages else module.rpartition(".")[0]


def _source(module: str, node: ast.ImportFrom, modules: _Modules) -> str:
    """The absolute name of the module that ``node`` (in ``module``) imports from."""
    if not node.level:
        return node.module or ""
    base = _package_of(module, modules).split(".")
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _edges(module: str, modules: _Modules) -> set[str]:
    tree = ast.parse(modules.files[module].read_text(), filename=str(modules.files[module]))
    targets: set[str] = set()
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        source = _source(module, node, modules)
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            targets.add(sub if modules.known(sub) else source)
    return {t for t in targets if (t == "nondiff" or t.startswith("nondiff.")) and t != module
            and modules.known(t)}


@functools.cache
def _graph() -> tuple[dict[str, set[str]], _Modules]:
    modules = _Modules()
    graph: dict[str, set[str]] = {}
    todo = list(modules.files)
    while todo:
        name = todo.pop()
        if name in graph:
            continue
        graph[name] = _edges(name, modules)
        todo.extend(t for t in graph[name] | set(modules.files) if t not in graph)
    return graph, modules


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_import_graph_reaches_every_package() -> None:
    graph, modules = _graph()
    assert set(TOP) <= modules.packages
    assert {"nondiff.optim.base", "nondiff.optim.distributions.gaussian",
            "nondiff.benchmarks.cli"} <= set(graph)
    # relative imports resolve; `from package import submodule` points at the submodule
    assert "nondiff.optim.distributions.base" in graph["nondiff.optim.distributions.discrete"]
    assert "nondiff.optim.registry" in graph["nondiff.optim"]


def test_find_cycle_reports_the_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


def test_no_import_cycles() -> None:
    graph, _ = _graph()
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _top_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_private_name_is_imported_across_packages() -> None:
    """``nondiff.hybrid`` may not import ``_private`` names of ``nondiff.optim`` (etc.)."""
    _, modules = _graph()
    found = []
    for module, path in sorted(modules.files.items()):
        for node in _imports(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _source(module, node, modules)
            if not source.startswith("nondiff"):
                continue
            found += [f"{module}: from {source} import {alias.name}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")
                      and _top_package(source) != _top_package(module)]
    assert found == [], "private names imported across packages (make them public):\n" + \
        "\n".join(found)


def test_lazy_and_type_checking_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import nondiff.hidden\n"
        "def f():\n    from nondiff import lazy\n"
    )
    names = [n.module or n.names[0].name for n in _imports(tree)]
    assert sorted(names) == ["nondiff", "typing"]


# ----- the wheel ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the checkout (building in place would write ``build/``)."""
    src = tmp_path_factory.mktemp("src") / "nondiff-src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".*", "__pycache__", "build", "dist", "*.egg-info", "tests", "*.sqlite*",
        "nondiff-report", "bench-out", "*.ckpt"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (path,) = out.glob("nondiff-*.whl")
    return path


def test_the_wheel_holds_only_nondiff(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"nondiff"} and len(dist_info) == 1, sorted(top)
    for path in ("nondiff/py.typed", "nondiff/optim/base.py", "nondiff/benchmarks/cli.py"):
        assert path in names
    # every package of the source tree made it (a new one must be listed in pyproject.toml)
    _, modules = _graph()
    missing = [p for p in sorted(modules.packages)
               if p.replace(".", "/") + "/__init__.py" not in names]
    assert missing == [], f"packages missing from the wheel: {missing}"


def test_the_installed_wheel_imports_from_itself(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    script = (
        "import importlib, pathlib, sys\n"
        "import nondiff, nondiff.optim, nondiff.hybrid, nondiff.problems, nondiff.benchmarks\n"
        f"target = pathlib.Path({str(target)!r}).resolve()\n"
        "assert target in pathlib.Path(nondiff.optim.__file__).resolve().parents, "
        "nondiff.optim.__file__\n"
        "for name in ('optim', 'hybrid', 'problems', 'benchmarks'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    sys.exit(f'import {name} should fail outside the checkout')\n"
        "print('ok')\n"
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_version_command(tmp_path: Path) -> None:
    """``nondiff --version`` answers; ``import nondiff`` before it imports neither pycma,
    matplotlib nor scipy (2.2 s of every worker's start: CMA-ES imports pycma, ADMM and
    the permutation projection scipy, on first use)."""
    script = ("import runpy, sys, nondiff\n"
              "print(sorted(m for m in ('cma', 'matplotlib', 'scipy') if m in sys.modules))\n"
              "sys.argv = ['nondiff', '--version']\n"
              "runpy.run_module('nondiff', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["[]", f"nondiff {nondiff.__version__}"]
