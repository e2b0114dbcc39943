"""IPOP / BIPOP restarts: one wrapper for every distribution-based optimizer.

:class:`Restarts` runs an inner optimizer — CMA-ES (full or separable), SNES,
XNES, PGPE, OpenAI-ES or CEM — until it stops, then starts a fresh one from a
new random mean, with a larger population (IPOP) or, in turns, a larger one and
a small one with a small step size (BIPOP). It is itself an optimizer of the
protocol (ask/tell/recommend/stop/state_dict), so ``minimize`` and the
benchmarks drive it like any other.

- IPOP: Auger & Hansen (2005), "A restart CMA evolution strategy with
  increasing population size", CEC: popsize ``p0 * 2**k`` at the k-th restart.
- BIPOP: Hansen (2009), "Benchmarking a BI-population CMA-ES on the BBOB-2009
  function testbed", GECCO workshop, as pycma's ``fmin2`` reads it. The first
  run counts toward the small regime. At each restart, if the small regime has
  used at least as many evaluations as the large one, a large run follows
  (popsize ``p0 * 2**k`` at the k-th large restart, step size ``sigma0``);
  otherwise a small run with popsize ``floor(p0 * (p_large / (2 p0))**(u**2))``
  and step size ``sigma0 * 10**(-2 v)`` (u, v uniform in [0, 1), ``p_large``
  the last large popsize), given at most half the evaluations the large
  regime has used so far (the wrapper ends it there: stop reason
  ``small_budget``). ``restarts`` counts the large restarts.
- Restart point: uniform in the box — the bounds where finite, else
  ``x0 ± 2 sigma0`` (the BBOB setup of Hansen 2009: x0 in [-4, 4]^d with
  sigma0 = 2). The first run starts at ``x0`` with the wrapper's seed, so
  before its first restart ``ipop-snes`` is ``snes``, candidate for candidate;
  restart ``k`` seeds its run with ``SeedSequence([seed, k])``.

When a run ends: CMA-ES has pycma's own criteria (tolfun, tolx,
tolstagnation, ...); its ``ftarget``/``maxfevals``/``callback`` end the whole
sequence, as in ``cma.fmin`` (each run is a fresh ``CMAES``, so pycma options
such as ``maxiter`` and ``maxfevals`` count per run). SNES, XNES, PGPE,
OpenAI-ES and CEM have none, so the wrapper applies a generic test after
every generation (``stagnation=None`` means: only for those), modelled on
pycma's criteria of the same names, on the told fitness (finite values;
NaN/inf count as +inf):

- ``{"tolfun": tolfun}``: the generation-best values of the last
  ``10 + ceil(30 d / popsize)`` generations (pycma's tolfun history) and the
  current generation's values all lie within ``tolfun`` of each other (a
  flat, converged run; also a run that sees only NaN);
- ``{"tolx": tolx}``: every coordinate's standard deviation in the told
  population is below ``tolx``;
- ``{"tolstagnation": patience}``: over the last ``patience`` generations
  (default ``100 + 100 d**1.5 / popsize``, pycma's tolstagnation) the median
  of the newest 20 % of the generation-best values and that of the
  generation medians are no better than those of the oldest 20 %.

The best-so-far is deliberately not the test: a run whose large early step
size found a lucky point keeps improving its distribution long before it
beats that point.

The restart is decided in ``tell``, after the generation that ended the run, so
``popsize`` already holds the next run's population size when ``minimize``
checks the remaining budget: ``minimize`` never exceeds its budget because of
a restart (restarting inside ``ask`` did: the population grew after the check).

Registry: the variants are registered names, ``ipop-<name>`` and
``bipop-<name>`` for every distribution-based optimizer (``ipop-snes``,
``bipop-cmaes``, ...), rather than one ``restarts=`` option of
``registry.create``: CMA-ES's name space already had ``ipop-cmaes`` /
``bipop-cmaes``, the contract tests run over the registry (so every variant
passes them), and no optimizer's own arguments change meaning. Their
hyperparameters are the wrapper's (``restarts``, ``strategy``, ``tolfun``,
``tolx``, ``patience``, ``stagnation``) plus the inner optimizer's, passed on
to every run. :func:`restarted` makes the class for another optimizer.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import minimize
    >>> res = minimize(lambda x: float(10 * x.size + (x**2 - 10 * np.cos(2 * np.pi * x)).sum()),
    ...                np.full(4, 3.0), optimizer="ipop-snes", budget=6000, sigma0=2.0,
    ...                seed=0, options={"restarts": 5})
    >>> res.evaluations <= 6000, bool(res.f < 3.0)
    (True, True)
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from .arrays import Array
from .base import BaseOptimizer, UnsupportedSpaceError
from .cem import CEM
from .checks import as_float64
from .cmaes import CMAES, SepCMAES
from .cmaes_torch import CMAESTorch, SepCMAESTorch
from .es import PGPE, OpenAIES
from .hyperparameters import Hyperparameters, hyperparameter, integer, real
from .nes import SNES, XNES
from .spaces import Space
from .state import from_plain, to_plain

__all__ = ["BIPOPCMAES", "DISTRIBUTION_BASED", "IPOPCMAES", "STRATEGIES", "VARIANTS",
           "Restarts", "restarted"]

STRATEGIES = ("ipop", "bipop")
DISTRIBUTION_BASED: tuple[type[BaseOptimizer], ...] = (CMAES, SNES, XNES, PGPE, OpenAIES, CEM,
                                                       CMAESTorch)
REGIMES = {"first": 0.0, "large": 1.0, "small": 2.0}  # the ``regime`` metric


def _strategy(name: str, value: Any) -> str | None:
    if value is not None and value not in STRATEGIES:
        raise ValueError(f"{name} must be 'ipop' or 'bipop', got {value!r}")
    return value


def _optional_bool(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True, False or None, got {value!r}")
    return None if value is None else bool(value)


@dataclasses.dataclass(frozen=True)
class RestartsConfig(Hyperparameters):
    """The wrapper's own hyperparameters (the inner optimizer's pass through to every
    run); ``strategy`` None is the variant's default, ``stagnation`` None is resolved
    by the inner class (module docstring)."""

    strategy: str | None = hyperparameter(None, _strategy)
    restarts: int = hyperparameter(9, integer(0))
    tolfun: float = hyperparameter(1e-11, real(low=0.0))
    tolx: float = hyperparameter(1e-11, real(low=0.0))
    patience: int | None = hyperparameter(None, integer(1, optional=True))
    stagnation: bool | None = hyperparameter(None, _optional_bool)


@dataclasses.dataclass
class RestartState:
    """Bookkeeping of the restart sequence (part of the checkpoint)."""

    run: int = 0  # restarts so far (all regimes); the current run is number run + 1
    counted: int = 0  # restarts that count against ``restarts`` (BIPOP: the large ones)
    regime: str = "first"  # first | large | small
    budget_large: int = 0  # evaluations of BIPOP's large / small regime (first run: small)
    budget_small: int = 0
    run_evaluations: int = 0  # evaluations of the current run
    run_limit: int = 0  # BIPOP small run: most evaluations it may use (0: no limit)
    run_x0: np.ndarray | None = None  # start of the current run (None: the wrapper's x0)
    run_sigma: float = 0.0
    run_popsize: int = 0
    run_seed: int = 0
    run_best: list = dataclasses.field(default_factory=list)  # generation-best f (recent)
    run_median: list = dataclasses.field(default_factory=list)  # generation-median f (recent)
    stopped: dict = dataclasses.field(default_factory=dict)  # final reasons (sequence over)
    history: list = dataclasses.field(default_factory=list)  # finished runs


class Restarts(BaseOptimizer):
    """Restart a distribution-based optimizer with IPOP or BIPOP (module docstring).

    Args:
        x0, sigma0, popsize, seed, bounds: as in
            :class:`~nondiff.optim.base.BaseOptimizer`; ``popsize`` (default: the
            inner optimizer's) is that of the first run. ``x0`` may be a space
            the inner optimizer supports.
        inner: the optimizer to restart, a registry name or class, distribution-based
            (a subclass of CMAES, SNES, XNES, PGPE, OpenAIES or CEM).
        strategy: ``"ipop"`` or ``"bipop"``.
        restarts: how many restarts may follow the first run (BIPOP: how many
            large-regime restarts; small runs come in between).
        tolfun, tolx, patience: the generic stop test (module docstring).
        stagnation: apply that test (None: only for inner optimizers without
            stop criteria of their own, i.e. all but CMA-ES).
        **options: hyperparameters of the inner optimizer, for every run.

    ``stop()`` is empty until the last run stopped; then it holds that run's
    reasons and ``"restarts"``, the number of restarts made. ``tell`` adds the
    metrics ``restarts``, ``popsize`` and ``regime`` (0 first run, 1 large,
    2 small) to the inner optimizer's; ``iteration``, ``evaluations`` and
    ``best_f`` count over all runs. ``recommend()`` is the inner optimizer's
    recommendation while the current run holds the best value so far, else the
    best point so far. ``state_dict()`` holds the bookkeeping and the current
    run's own state dict; loading rebuilds that run and continues bit for bit.
    """

    name: ClassVar[str] = "restarts"
    backend: ClassVar[str] = "numpy"
    handles_bounds: ClassVar[bool] = True  # every inner run gets the bounds
    inner_class: ClassVar[type[BaseOptimizer] | None] = None
    default_strategy: ClassVar[str] = "ipop"
    Hyperparameters = RestartsConfig
    hparams: RestartsConfig

    def __init__(
        self,
        x0: Array | Space,
        sigma0: float = 1.0,
        popsize: int | None = None,
        seed: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        *,
        inner: str | type[BaseOptimizer] | None = None,
        strategy: str | None = None,
        restarts: int = 9,
        tolfun: float = 1e-11,
        tolx: float = 1e-11,
        patience: int | None = None,
        stagnation: bool | None = None,
        **options: Any,
    ) -> None:
        cls = _inner_class(inner if inner is not None else self.inner_class)
        if self.inner_class is not None and strategy in STRATEGIES \
                and strategy != self.default_strategy:
            raise ValueError(
                f"strategy={strategy!r} contradicts the registered variant {self.name!r}; "
                f"create '{strategy}-{cls.name}' instead, or Restarts(inner={cls.name!r}, "
                f"strategy={strategy!r})")
        hparams = RestartsConfig(strategy=strategy, restarts=restarts, tolfun=tolfun,
                                 tolx=tolx, patience=patience, stagnation=stagnation)
        hparams = dataclasses.replace(
            hparams, strategy=hparams.strategy or self.default_strategy,
            stagnation=(not getattr(cls, "has_stop_criteria", False))
            if hparams.stagnation is None else hparams.stagnation)
        # The first run, built first: it checks x0, sigma0, popsize, seed, bounds and its
        # own options before the wrapper builds anything; its seed is the wrapper's.
        try:
            first = cls(x0, sigma0=sigma0, popsize=popsize, seed=seed, bounds=bounds, **options)
        except UnsupportedSpaceError as error:  # named as asked: "bipop-cem", not "cem"
            name = self.name if self.inner_class is not None else \
                f"{hparams.strategy}-{cls.name}"
            raise UnsupportedSpaceError(error.problem.replace(
                f"{cls.name} searches", f"{name} searches", 1).replace(
                f"create({cls.name!r}", f"create({name!r}"), error.kinds) from None
        self.inner = first
        self.inner_class_used = cls
        self.options = dict(options)
        if self.inner_class is None:  # Restarts itself; a registered variant keeps its name
            self.name = f"{hparams.strategy}-{cls.name}"
        self.handles_constraints = cls.handles_constraints
        self._bounds_arg = None if isinstance(x0, Space) else bounds
        super().__init__(x0, sigma0, popsize, first.seed, bounds,
                         **dataclasses.asdict(hparams))

    def _check_space(self, space: Space | None) -> None:  # the inner optimizer's spaces
        self.inner_class_used._check_space(space)

    # ----- configuration -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        bounds = None if self.bounds is None else [b.tolist() for b in self.bounds]
        return {**super().config(), "popsize": self._popsize0, "bounds": bounds,
                "inner": self.inner_class_used.name, **self.hparams.config(),
                "inner_config": self._inner_config}

    def _init_state(self, x0: np.ndarray) -> RestartState:
        self._x0 = x0.copy()
        lower, upper = self.bounds if self.bounds is not None else (
            np.full(self.dim, -np.inf), np.full(self.dim, np.inf))
        self._box = (np.maximum(np.where(np.isfinite(lower), lower, x0 - 2 * self.sigma0), lower),
                     np.minimum(np.where(np.isfinite(upper), upper, x0 + 2 * self.sigma0), upper))
        state = RestartState(run_sigma=self.sigma0, run_seed=self.seed)
        self._popsize0 = state.run_popsize = self.popsize = self.inner.popsize
        per_run = {"dim", "sigma0", "popsize", "seed", "bounds"}  # the wrapper's or per run
        self._inner_config = {k: v for k, v in self.inner.config().items() if k not in per_run}
        return state

    def _build(self, state: RestartState, popsize: int | None) -> BaseOptimizer:
        """A fresh inner optimizer for the run described by ``state``."""
        if state.run_x0 is None:
            x0: Any = self.space if self.space is not None else self.format.to_user(self._x0)
        elif self.space is not None:
            x0 = _StartAt(self.space, state.run_x0)
        else:
            x0 = self.format.to_user(state.run_x0)
        return self.inner_class_used(x0, sigma0=state.run_sigma, popsize=popsize,
                                     seed=state.run_seed, bounds=self._bounds_arg,
                                     **self.options)

    # ----- ask / tell / stop ---------------------------------------------------------
    def ask(self, n: int | None = None) -> Array:
        """The current run's candidates (``n`` defaults to its popsize)."""
        return self.inner.ask(n)

    def tell(self, candidates: Array, fitness: Array, **extra: Any) -> dict[str, float]:
        """Tell the current run; restart it here if it stopped (module docstring)."""
        inner, st = self.inner, self.state
        metrics = inner.tell(candidates, fitness, **extra)  # validates before any change
        n = int(np.shape(candidates)[0])
        key = (inner._best_violation, inner._best_f)
        if key < (self._best_violation, self._best_f):
            self._best_violation, self._best_f = key
            self._best_x = self._internal(inner.best_x)
        counters = self.counters
        counters["iterations"] += 1
        counters["evaluations"] += n
        counters["nonfinite"] += int(metrics.get("nonfinite", 0))
        st.run_evaluations += n
        reasons = dict(inner.stop()) or self._generic_stop(candidates, fitness)
        if not reasons and st.run_limit and st.run_evaluations >= st.run_limit:
            reasons = {"small_budget": st.run_limit}
        metrics.update(iteration=float(counters["iterations"]),
                       evaluations=float(counters["evaluations"]), best_f=self._best_f)
        if reasons:
            final = set(reasons) & getattr(inner, "final_stops", frozenset())
            if final or st.counted >= self.restarts:
                st.stopped = {str(k): _scalar(v) for k, v in reasons.items()}
            else:
                self._restart(reasons)
        metrics.update(restarts=float(st.run), popsize=float(self.popsize),
                       regime=REGIMES[st.regime])
        return metrics

    def _ask(self, n: int) -> Array:  # ask() delegates whole; the template's hooks are unused
        return self._internal(self.inner.ask(n))

    def _tell(self, x: Array, fitness: np.ndarray, **extra: Any) -> None:
        raise NotImplementedError("Restarts.tell delegates to the current run")

    def _generic_stop(self, candidates: Array, fitness: Array) -> dict[str, float]:
        if not self.stagnation:
            return {}
        st = self.state
        f = as_float64(fitness, "fitness").reshape(-1)  # validated by the inner tell
        f = np.where(np.isfinite(f), f, np.inf)
        best, median = float(f.min()), float(np.median(f))
        patience = self.patience or int(100 + 100 * self.dim**1.5 / self.popsize)
        flat = 10 + math.ceil(30 * self.dim / self.popsize)
        st.run_best.append(best)
        st.run_median.append(median)
        keep = max(patience, flat)
        del st.run_best[:-keep], st.run_median[:-keep]
        x = self.format.to_numpy(candidates)
        if len(x) > 1 and float(np.std(x, axis=0).max()) < self.tolx:
            return {"tolx": self.tolx}
        if len(st.run_best) >= flat:
            recent = np.concatenate([st.run_best[-flat:], f])
            hi, lo = float(recent.max()), float(recent.min())
            if lo == math.inf or (hi < math.inf and hi - lo <= self.tolfun):  # all-inf: flat
                return {"tolfun": self.tolfun}
        if len(st.run_best) >= patience:
            k = max(1, math.ceil(0.2 * patience))
            if all(np.median(h[-k:]) >= np.median(h[-patience:][:k])
                   for h in (st.run_best, st.run_median)):
                return {"tolstagnation": patience}
        return {}

    def _restart(self, reasons: Mapping[str, Any]) -> None:
        st, p0 = self.state, self._popsize0
        st.history.append({"regime": st.regime, "popsize": self.popsize,
                           "evaluations": st.run_evaluations,
                           "stop": sorted(str(k) for k in reasons)})
        if st.regime == "large":
            st.budget_large += st.run_evaluations
        else:
            st.budget_small += st.run_evaluations
        rng = self._rng
        mean = rng.uniform(*self._box)
        sigma, limit = self.sigma0, 0
        if self.strategy == "ipop" or st.budget_small >= max(1, st.budget_large):
            st.regime, st.counted = "large", st.counted + 1
            popsize = p0 * 2**st.counted
        else:  # BIPOP's small regime (Hansen 2009)
            u, v = rng.random(2)
            popsize = max(int(p0 * (0.5 * 2**st.counted) ** (u**2)), p0)
            sigma = self.sigma0 * 10 ** (-2 * v)
            limit = max(int(0.5 * st.budget_large), 1)
            st.regime = "small"
        if popsize % 2 and _mirrored(self.inner):
            popsize += 1  # mirrored sampling needs an even population
        previous = self.inner
        st.run += 1
        st.run_x0, st.run_sigma, st.run_popsize = mean, float(sigma), int(popsize)
        st.run_seed = _run_seed(self.seed, st.run)
        st.run_evaluations, st.run_limit, st.run_best, st.run_median = 0, limit, [], []
        self.inner = self._build(st, popsize)
        if hasattr(self.inner, "continue_from"):  # CMA-ES: the augmented Lagrangian goes on
            self.inner.continue_from(previous)
        self.popsize = int(popsize)

    def stop(self) -> dict[str, Any]:
        """Empty while a run is going or a restart is left; else the last run's
        reasons and ``"restarts"``."""
        if not self.state.stopped:
            return {}
        return {**self.state.stopped, "restarts": self.state.run}

    def _recommend(self) -> Array:
        inner = self.inner
        if (inner._best_violation, inner._best_f) == (self._best_violation, self._best_f):
            return self._internal(inner.recommend())
        return super()._recommend()

    @property
    def mean(self) -> Array:
        """The current run's mean, where the inner optimizer exposes one."""
        return self.inner.mean

    # ----- checkpoints ---------------------------------------------------------------
    def _state_to_plain(self) -> dict[str, Any]:
        return {"runs": to_plain(self.state), "inner": self.inner.state_dict()}

    def _state_from_plain(self, plain: Any) -> None:
        if not isinstance(plain, Mapping) or set(plain) != {"runs", "inner"}:
            raise ValueError(f"not a {self.name} state: expected keys ['inner', 'runs']")
        try:
            state = from_plain(RestartState(), dict(plain["runs"]))
            if state.run_x0 is not None:
                state.run_x0 = from_plain(np.zeros(0), state.run_x0)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"corrupted {self.name} state: {err}") from None
        inner = self._build(state, state.run_popsize)
        inner.load_state_dict(plain["inner"])
        self.state, self.inner, self.popsize = state, inner, int(state.run_popsize)


class _StartAt(Space):
    """``space`` with another starting encoding: a restart of an optimizer of a space."""

    def __init__(self, space: Space, start: np.ndarray) -> None:
        self._space, self._start = space, np.asarray(start, dtype=np.float64).copy()
        self.kind, self.size = space.kind, space.size

    def encode(self, value: Any) -> np.ndarray:
        return self._space.encode(value)

    def decode(self, encoded: Any) -> Any:
        return self._space.decode(encoded)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._space.sample(rng, n)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._space.bounds()

    def leaves(self, prefix: str = "") -> Iterator[tuple[str, Space, slice]]:
        return self._space.leaves(prefix)

    def initial(self) -> np.ndarray:
        return self._start.copy()


def _mirrored(inner: BaseOptimizer) -> bool:
    """Whether ``inner`` samples mirrored pairs (OpenAI-ES ``antithetic``, PGPE
    ``symmetric``): its population size must be even."""
    return any(getattr(inner, name, False) is True for name in ("antithetic", "symmetric"))


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _run_seed(seed: int, run: int) -> int:
    """The seed of restart ``run`` (run 0 uses ``seed`` itself)."""
    return int(np.random.SeedSequence([seed, run]).generate_state(1, np.uint64)[0])


def _inner_class(inner: Any) -> type[BaseOptimizer]:
    from . import registry

    cls = registry.get(inner) if isinstance(inner, str) else inner
    if not (isinstance(cls, type) and issubclass(cls, DISTRIBUTION_BASED)) \
            or issubclass(cls, Restarts):
        allowed = ", ".join(c.__name__ for c in DISTRIBUTION_BASED)
        raise ValueError(
            f"inner must be a distribution-based optimizer ({allowed} or a subclass, by "
            f"class or registry name) to be restarted, got {inner!r}; population-less "
            "or elitist searches (GA, REINFORCE, ADMM) restart differently or not at all")
    return cls


def restarted(optimizer: type[BaseOptimizer], strategy: str) -> type[Restarts]:
    """The registrable class ``<strategy>-<optimizer.name>`` (e.g. ``bipop-snes``).

    Its constructor takes the wrapper's arguments and the inner optimizer's
    hyperparameters as keywords (so ``registry.create`` checks their names).
    """
    cls = _inner_class(optimizer)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'ipop' or 'bipop', got {strategy!r}")

    def __init__(self: Restarts, x0: Array | Space, *args: Any, **kwargs: Any) -> None:
        Restarts.__init__(self, x0, *args, inner=cls, **kwargs)

    own = [p for p in inspect.signature(Restarts.__init__).parameters.values()
           if p.name not in ("inner", "options")]
    taken = {p.name for p in own}
    from .registry import _hyperparameters

    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
             for k in sorted(_hyperparameters(cls) - taken)]
    __init__.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    title = f"{strategy.upper()}{cls.__name__}"
    doc = (f"{cls.__name__} restarted with {strategy.upper()} (up to 9 restarts by default); "
           "see :class:`~nondiff.optim.restarts.Restarts`.")
    relaxation = {"relaxed_width": cls.relaxed_width} if hasattr(cls, "relaxed_width") else {}
    if hasattr(cls, "relaxed_options"):  # the base's defaults through the relaxation
        relaxation["relaxed_options"] = classmethod(lambda klass, h: cls.relaxed_options(h))
    return type(title, (Restarts,), {
        "__init__": __init__, "__doc__": doc, "__module__": __name__,
        "name": f"{strategy}-{cls.name}", "inner_class": cls, "default_strategy": strategy,
        "handles_constraints": cls.handles_constraints, "supported_spaces": cls.supported_spaces,
        "relaxed_kinds": cls.relaxed_kinds, **relaxation,
        "default_popsize": classmethod(lambda klass, dim: cls.default_popsize(dim)),
    })


IPOPCMAES = restarted(CMAES, "ipop")
BIPOPCMAES = restarted(CMAES, "bipop")
VARIANTS: tuple[type[Restarts], ...] = (IPOPCMAES, BIPOPCMAES, *(
    restarted(cls, strategy) for cls in (SepCMAES, SNES, XNES, PGPE, OpenAIES, CEM)
    for strategy in STRATEGIES), *(
    restarted(cls, strategy) for cls in (CMAESTorch, SepCMAESTorch) for strategy in STRATEGIES))
