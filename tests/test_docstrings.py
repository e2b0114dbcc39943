"""Every module's docstring examples run (the style guide asks for runnable examples)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import nondiff.benchmarks
import pytest

import nondiff

MODULES = sorted(
    [info.name
     for info in pkgutil.walk_packages(nondiff.__path__, prefix="nondiff.")
     if not info.name.endswith("__main__")]
    + [f"nondiff.{package}" for package in ("optim", "problems", "hybrid", "benchmarks")]
    + [info.name
       for package in (nondiff.optim, nondiff.problems, nondiff.hybrid, nondiff.benchmarks)
       for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
       if not info.name.endswith("__main__")]
    + ["nondiff"]
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_every_module_has_an_example() -> None:
    finder = doctest.DocTestFinder()
    without = [name for name in MODULES
               if not any(t.examples for t in finder.find(importlib.import_module(name)))
               and name not in ("nondiff.optim.backends",)
               and not name.startswith("nondiff.benchmarks.")]
    assert without == [], f"modules without a runnable docstring example: {without}"
