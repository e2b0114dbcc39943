"""Benchmark suites as data: problems x optimizer configurations x budgets x seeds x targets.

A :class:`Suite` expands into *units*, one per (problem, optimizer, seed), each a
plain dict the runner can send to a worker process or a Ray node and store as is.
Built-in suites:

    quick       10-D continuous functions and small bit strings, 3 seeds; about
                3 minutes on 2 cores (the README's main job)
    continuous  BBOB-style functions in 10-D and 40-D, every continuous baseline
    discrete    pseudo-Boolean benchmarks (OneMax to LABS), every discrete baseline

Later work registers more (``nondiff.hybrid``, ``control``) with :func:`register`. Users
define their own in a Python file (a module-level ``SUITE``, or ``suite()``
returning one) or a TOML file, and pass its path where a suite name goes::

    name = "mine"                  # TOML suite
    seeds = [0, 1, 2]
    budget_per_dim = 500           # or: budget = 5000
    targets = [1e-2, 1e-8]         # precision f - f_opt; default 1e1 .. 1e-8
    [[problems]]
    name = "rastrigin"
    dims = [10, 20]                # or: dim = 10
    instance = 1                   # extra keys go to problems.get (e.g. k = 3)
    [[optimizers]]
    runner = "ours:pgpe"           # see `nondiff bench list --runners`
    label = "pgpe-fast"            # optional; defaults to the runner name
    options = { center_lr = 0.3 }

Example:
    >>> from nondiff.benchmarks.suites import Suite, ProblemSpec, OptimizerSpec
    >>> s = Suite("tiny", problems=[ProblemSpec("sphere", dim=2)],
    ...           optimizers=[OptimizerSpec("ours:cmaes"), OptimizerSpec("random")],
    ...           seeds=[0, 1], budget=100)
    >>> for u in s.units()[:3]:
    ...     print(u["problem"], u["optimizer"], u["seed"], u["budget"])
    sphere-2d-i1 ours:cmaes 0 100
    sphere-2d-i1 ours:cmaes 1 100
    sphere-2d-i1 random 0 100
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nondiff.optim import registry

from nondiff import problems

DEFAULT_TARGETS: tuple[float, ...] = (1e1, 1e0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-8)


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """One problem of a suite: a registry name with its dimension, instance and
    keyword arguments; ``budget`` overrides the suite's for this problem."""

    name: str
    dim: int
    instance: int = 1
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    budget: int | None = None

    @property
    def label(self) -> str:
        extra = "".join(f"-{k}{v}" for k, v in sorted(self.kwargs.items()))
        return f"{problems.canonical_name(self.name)}-{self.dim}d-i{self.instance}{extra}"

    def build(self) -> problems.Problem:
        return problems.get(self.name, dim=self.dim, instance=self.instance, **self.kwargs)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer configuration: a runner name (``ours:<optimizer>``, ``pycma``,
    ``scipy:de``, ...), its options, and the label it is stored and reported under."""

    runner: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.runner


@dataclasses.dataclass(frozen=True)
class Suite:
    """Problems x optimizers x seeds at a budget, with precision targets.

    Args:
        name: the suite's name (the results database keys units by it).
        problems: the problems.
        optimizers: the optimizer configurations.
        seeds: one unit per seed for every (problem, optimizer).
        budget: evaluations per unit; or ``budget_per_dim`` x the problem's dim.
        targets: precisions f - f_opt whose first hitting time each unit records.
        description: one line for ``nondiff bench list``.

    Raises:
        ValueError: an empty suite, duplicate labels, no budget, or a bad target.
    """

    name: str
    problems: Sequence[ProblemSpec]
    optimizers: Sequence[OptimizerSpec]
    seeds: Sequence[int] = (0, 1, 2)
    budget: int | None = None
    budget_per_dim: int | None = None
    targets: Sequence[float] = DEFAULT_TARGETS
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", tuple(self.problems))
        object.__setattr__(self, "optimizers", tuple(self.optimizers))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "targets", tuple(float(t) for t in self.targets))
        where = f"suite {self.name!r}"
        if not self.problems or not self.optimizers or not self.seeds:
            raise ValueError(f"{where} needs at least one problem, optimizer and seed")
        for kind, labels in (("problem", [p.label for p in self.problems]),
                             ("optimizer", [o.name for o in self.optimizers])):
            twice = sorted({x for x in labels if labels.count(x) > 1})
            if twice:
                raise ValueError(f"{where} lists the {kind} label(s) {twice} twice; give "
                                 "each configuration its own label")
        if self.budget is None and self.budget_per_dim is None and any(
                p.budget is None for p in self.problems):
            raise ValueError(f"{where} needs budget or budget_per_dim (evaluations per unit)")
        if any(not t > 0 for t in self.targets):
            raise ValueError(f"{where}: targets must be positive precisions, got "
                             f"{list(self.targets)}")

    def budget_of(self, spec: ProblemSpec) -> int:
        if spec.budget is not None:
            return int(spec.budget)
        if self.budget is not None:
            return int(self.budget)
        return int(self.budget_per_dim) * spec.dim  # type: ignore[arg-type]

    def with_seeds(self, seeds: Iterable[int]) -> Suite:
        """The same suite with other seeds (``--seeds``)."""
        return dataclasses.replace(self, seeds=tuple(seeds))

    def select(self, problems: Iterable[str] | None = None,
               optimizers: Iterable[str] | None = None) -> Suite:
        """The sub-suite of the named problem labels / names and optimizer labels."""
        problem_specs, optimizer_specs = self.problems, self.optimizers
        if problems is not None:
            wanted = list(problems)
            known = sorted({p.label for p in self.problems} | {p.name for p in self.problems})
            for name in wanted:
                if name not in known:
                    raise registry.unknown_name_error(f"problem of suite {self.name!r}",
                                                      name, known)
            problem_specs = [p for p in self.problems if p.label in wanted or p.name in wanted]
        if optimizers is not None:
            wanted = list(optimizers)
            known = [o.name for o in self.optimizers]
            for name in wanted:
                if name not in known:
                    raise registry.unknown_name_error(f"optimizer of suite {self.name!r}",
                                                      name, known)
            optimizer_specs = [o for o in self.optimizers if o.name in wanted]
        return dataclasses.replace(self, problems=problem_specs, optimizers=optimizer_specs)

    def units(self, skipped: list[str] | None = None) -> list[dict[str, Any]]:
        """The suite's units; pairs a runner cannot do (a continuous method on bit
        strings, nevergrad not installed) are left out and described in ``skipped``."""
        from nondiff.benchmarks import baselines

        out = []
        for spec in self.problems:
            problem = spec.build()
            for opt in self.optimizers:
                reason = baselines.available(opt.runner)
                if reason is None and not baselines.handles(opt.runner, problem):
                    reason = f"{opt.runner} does not handle {spec.label}"
                if reason is not None:
                    if skipped is not None:
                        skipped.append(f"{opt.name} on {spec.label}: {reason}")
                    continue
                for seed in self.seeds:
                    out.append({
                        "suite": self.name, "problem": spec.label, "optimizer": opt.name,
                        "seed": seed, "problem_name": spec.name, "dim": spec.dim,
                        "instance": spec.instance, "problem_kwargs": dict(spec.kwargs),
                        "runner": opt.runner, "options": dict(opt.options),
                        "budget": self.budget_of(spec), "targets": list(self.targets),
                    })
        return out


# -- built-in suites --------------------------------------------------------------------

_SUITES: dict[str, Suite] = {}


def register(suite: Suite, *, overwrite: bool = False) -> Suite:
    """Make ``suite`` available by name (``nondiff bench run --suite NAME``)."""
    if suite.name in _SUITES and not overwrite:
        raise ValueError(f"suite {suite.name!r} is already registered; pass overwrite=True")
    _SUITES[suite.name] = suite
    return suite


def names() -> list[str]:
    """Names of the registered suites."""
    return sorted(_SUITES)


def get(name_or_path: str | os.PathLike[str]) -> Suite:
    """A registered suite by name, or the suite defined in a ``.py`` / ``.toml`` file."""
    text = os.fspath(name_or_path)
    if text.endswith((".py", ".toml")) or os.sep in text:
        return load(text)
    if text not in _SUITES:
        raise registry.unknown_name_error("suite", text, names())
    return _SUITES[text]


def load(path: str | os.PathLike[str]) -> Suite:
    """Read a user suite from a Python file (``SUITE`` or ``suite()``) or a TOML file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"suite file {path!r} does not exist; pass a suite name "
                         f"({', '.join(names())}) or the path of a .py or .toml file")
    if path.endswith(".toml"):
        return _from_toml(path)
    if not path.endswith(".py"):
        raise ValueError(f"suite file {path!r}: expected a .py or .toml file")
    spec = importlib.util.spec_from_file_location(f"nondiff_user_suite_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    suite = getattr(module, "SUITE", None)
    if suite is None and callable(getattr(module, "suite", None)):
        suite = module.suite()
    if not isinstance(suite, Suite):
        raise ValueError(f"{path} must define SUITE = nondiff.benchmarks.suites.Suite(...) or a "
                         f"function suite() returning one; found {type(suite).__name__}")
    return suite


def from_dict(data: Mapping[str, Any], where: str = "suite") -> Suite:
    """A suite from plain data (the TOML layout of the module docstring)."""
    data = dict(data)
    known = {"name", "description", "seeds", "budget", "budget_per_dim", "targets",
             "problems", "optimizers"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    problem_specs = []
    for entry in data.get("problems", []):
        entry = dict(entry)
        if "name" not in entry:
            raise ValueError(f"{where}: every [[problems]] entry needs a name, got {entry}")
        name = entry.pop("name")
        dims = entry.pop("dims", None) or [entry.pop("dim", 10)]
        instance, budget = int(entry.pop("instance", 1)), entry.pop("budget", None)
        problems.get(name, dim=int(dims[0]), instance=instance, **entry)  # fail early
        problem_specs += [ProblemSpec(name, int(d), instance, entry, budget) for d in dims]
    optimizer_specs = []
    for entry in data.get("optimizers", []):
        entry = dict(entry)
        if "runner" not in entry:
            raise ValueError(f"{where}: every [[optimizers]] entry needs a runner, got {entry}")
        optimizer_specs.append(OptimizerSpec(entry.pop("runner"), entry.pop("options", {}),
                                             entry.pop("label", None)))
        if entry:
            raise ValueError(f"{where}: unknown optimizer keys {sorted(entry)}; expected "
                             "runner, options, label")
    return Suite(
        name=data.get("name", os.path.splitext(os.path.basename(where))[0]),
        problems=problem_specs, optimizers=optimizer_specs,
        seeds=data.get("seeds", (0, 1, 2)), budget=data.get("budget"),
        budget_per_dim=data.get("budget_per_dim"),
        targets=data.get("targets", DEFAULT_TARGETS), description=data.get("description", ""),
    )


def _from_toml(path: str) -> Suite:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML: {error}") from error
    return from_dict(data, where=path)


def _specs(runners: Iterable[str]) -> list[OptimizerSpec]:
    return [OptimizerSpec(r) for r in runners]


# nevergrad 1.0.12's NGOpt stops with a TypeError in its surrogate model under NumPy >= 2.4
# on continuous problems, so it is left out here (add it to your own suite if it works
# with your NumPy); it runs in the discrete suite.
CONTINUOUS_BASELINES = ["pycma", "pycma-bipop", "evotorch:SNES", "evotorch:XNES",
                        "evotorch:PGPE", "evotorch:CEM", "evotorch:CMAES", "scipy:de",
                        "scipy:nelder-mead", "scipy:powell", "random"]
DISCRETE_BASELINES = ["evotorch:GA", "random", "nevergrad:DiscreteOnePlusOne",
                      "nevergrad:NGOpt"]

register(Suite(
    "quick",
    description="10-D functions and 50-bit strings, 3 seeds: the README's main job (~3 min)",
    problems=[ProblemSpec(n, 10) for n in ("sphere", "ellipsoid", "rosenbrock", "rastrigin")]
    + [ProblemSpec("onemax", 50, budget=5000), ProblemSpec("leadingones", 50, budget=10_000)],
    optimizers=_specs(["ours:cmaes", "ours:bipop-cmaes", "ours:snes", "ours:pgpe",
                       "ours:ga", "ours:one-plus-lambda", "pycma", "evotorch:SNES",
                       "evotorch:GA", "scipy:de", "scipy:nelder-mead", "random"]),
    seeds=(0, 1, 2), budget_per_dim=500,
))
register(Suite(
    "continuous",
    description="BBOB-style functions in 10-D and 40-D, ours and every continuous baseline",
    problems=[ProblemSpec(n, d) for d in (10, 40)
              for n in ("sphere", "ellipsoid", "rosenbrock", "rastrigin", "bent-cigar",
                        "different-powers")],
    optimizers=_specs(["ours:cmaes", "ours:sep-cmaes", "ours:bipop-cmaes", "ours:openai-es",
                       "ours:snes", "ours:xnes", "ours:pgpe", "ours:cem",
                       *CONTINUOUS_BASELINES]),
    seeds=(0, 1, 2, 3, 4), budget_per_dim=1000,
))
register(Suite(
    "discrete",
    description="OneMax, LeadingOnes, Jump, Trap, LABS, NK, MaxCut; every discrete baseline",
    problems=[ProblemSpec("onemax", 100, budget=20_000),
              ProblemSpec("leadingones", 100, budget=50_000),
              ProblemSpec("jump", 30, kwargs={"k": 3}, budget=50_000),
              ProblemSpec("trap", 30, kwargs={"k": 5}, budget=50_000),
              ProblemSpec("labs", 20, budget=50_000),
              ProblemSpec("nk", 20, budget=20_000),
              ProblemSpec("maxcut", 20, budget=20_000)],
    optimizers=_specs(["ours:ga", "ours:one-plus-lambda", "ours:cga", "ours:reinforce",
                       "ours:cmaes", *DISCRETE_BASELINES]),
    seeds=(0, 1, 2, 3, 4),
))
