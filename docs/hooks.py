"""MkDocs hooks of nondiff's site: stage the package for griffe, generate the API reference.

``pyproject.toml`` maps the repository's top-level folders into one installed name
(``optim/`` is ``nondiff.optim``, ...), so griffe, which reads source files and does not
import them, would find ``nondiff/`` without its subpackages. :func:`stage` lays out
``docs/.build/src/nondiff/`` from symlinks, one per file of ``nondiff/`` and one per
mapped subpackage, built from the mapping in ``pyproject.toml`` at every build.

The reference is one page per module, found by walking that tree (so a moved, added or
removed module needs no edit of the docs). A package page shows its docstring and
links its modules; a script (a module with a ``__main__`` block, e.g. the benchmark
drivers) shows its docstring only; ``__main__`` and private modules are skipped.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
STAGE = DOCS / ".build" / "src"
REFERENCE = "reference"
SCRIPT = re.compile(r"^if __name__ == ['\"]__main__['\"]:", re.MULTILINE)

_modules: list[tuple[str, Path, bool]] = []  # (dotted name, source file, is a package)


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """The source folder of every top-level or mapped package, from ``pyproject.toml``."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    listed = setuptools.get("packages", [])
    names = [*mapping, *(listed if isinstance(listed, list) else [])]
    tops = {name.split(".")[0] for name in names if name}
    dirs = {name: root / mapping.get(name, name) for name in tops}
    dirs.update({name: root / src for name, src in mapping.items() if name})
    return dirs


def stage(dirs: dict[str, Path], dest: Path = STAGE) -> None:
    """Lay out the packages as Python imports them: a real folder per mapped package
    holding a symlink to each of its entries (deeper mapped packages replace theirs)."""
    shutil.rmtree(dest, ignore_errors=True)
    for name in sorted(dirs, key=lambda n: n.count(".")):
        target = dest.joinpath(*name.split("."))
        if target.is_symlink():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(dirs[name].iterdir()):
            link = target / entry.name
            if entry.name != "__pycache__" and not link.exists():
                link.symlink_to(entry)


def walk(dest: Path = STAGE) -> list[tuple[str, Path, bool]]:
    """Every public module under ``dest``, as (dotted name, file, is a package), sorted."""
    found = []
    for folder, subdirs, files in os.walk(dest, followlinks=True):
        here = Path(folder)
        subdirs[:] = sorted(d for d in subdirs if (here / d / "__init__.py").exists()
                            and not d.startswith("_"))
        package = ".".join(here.relative_to(dest).parts)
        for name in sorted(files):
            if name == "__init__.py":
                found.append((package, here / name, True))
            elif name.endswith(".py") and not name.startswith("_"):
                found.append((f"{package}.{name[:-3]}", here / name, False))
    return sorted(found)


def is_script(path: Path) -> bool:
    """Whether a module is a program (it has a ``__main__`` block)."""
    return bool(SCRIPT.search(path.read_text(encoding="utf-8")))


def own_names(init: Path) -> list[str]:
    """The public names a package's ``__init__`` defines itself (not its re-exports)."""
    names = []
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def exports(init: Path) -> list[str]:
    """The names in a package's literal ``__all__`` (empty without one)."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                return [str(n) for n in ast.literal_eval(node.value)]
            except ValueError:
                return []
    return []


def page_path(module: str, package: bool) -> str:
    parts = module.split(".")
    return "/".join([REFERENCE, *parts, "index.md"] if package else
                    [REFERENCE, *parts[:-1], f"{parts[-1]}.md"])


def page(module: str, path: Path, package: bool) -> str:
    """The Markdown of one reference page."""
    if package:
        children = [(m, p) for m, _, p in _modules
                    if m.rpartition(".")[0] == module]
        members = own_names(path)
        lines = [f"::: {module}", "    options:",
                 f"      members: {members if members else 'false'}", "",
                 "## Modules", ""]
        here = page_path(module, True).rsplit("/", 1)[0]
        for child, child_package in children:
            target = os.path.relpath(page_path(child, child_package), here)
            lines.append(f"- [`{child}`]({target})")
        imported = [n for n in exports(path) if n not in members and not n.startswith("_")]
        if imported:  # re-exported names, each a cross-reference to where it is defined
            lines += ["", "## Exported names", "",
                      ", ".join(f"[`{n}`][{module}.{n}]" for n in imported)]
        return "\n".join(lines) + "\n"
    if is_script(path):
        return (f"::: {module}\n    options:\n      members: false\n\n"
                f"Run it: `python -m {module} --help`.\n")
    return f"::: {module}\n"


def nav(prefix: str = "") -> list[Any]:
    """The nested navigation of the reference below package ``prefix``."""
    entries: list[Any] = []
    for module, _, package in _modules:
        if module.rpartition(".")[0] != prefix:
            continue
        short = module.rpartition(".")[2]
        if package:
            entries.append({short: [page_path(module, True), *nav(module)]})
        else:
            entries.append({short: page_path(module, False)})
    return entries


@event_priority(100)  # before mkdocstrings looks for the staged tree
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    stage(package_dirs())
    _modules[:] = walk()
    config.nav = [*(config.nav or []), {"API reference": nav()}]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for module, path, package in _modules:
        files.append(File.generated(config, page_path(module, package),
                                    content=page(module, path, package)))
    return files
