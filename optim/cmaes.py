"""CMA-ES (pycma) behind the nondiff ask/tell protocol.

The algorithm is pycma's ``cma.CMAEvolutionStrategy`` — the reference
implementation — driven generation by generation; this module adds what the
protocol needs: our own seeded random generator, bounds, integer variables,
stop reasons and pickle-free, bit-exact checkpoints. IPOP/BIPOP restarts
(``ipop-cmaes``, ``bipop-cmaes``) are the generic wrapper of
:mod:`nondiff.optim.restarts` around a fresh :class:`CMAES` per run.

- CMA-ES: Hansen & Ostermeier (2001), "Completely derandomized self-adaptation
  in evolution strategies", Evolutionary Computation 9(2); Hansen (2016), "The
  CMA Evolution Strategy: A Tutorial", arXiv:1604.00772.
- ``covariance="diagonal"`` (sep-CMA-ES, linear time and space per sample):
  Ros & Hansen (2008), "A simple modification in CMA-ES achieving linear time
  and space complexity", PPSN X (pycma option ``CMA_diagonal=True``).
- ``integer_variables``: pycma's handling — a lower bound on the standard
  deviation of integer coordinates (Hansen 2011, "A CMA-ES for mixed-integer
  nonlinear optimization", INRIA RR-7751) plus integer centering (Marty et al.
  2024, "LB+IC-CMA-ES", PPSN XVIII); not the margin of Hamano et al. (2022).
  pycma (>= 4.3) rounds those coordinates in ``ask``, so candidates hold
  integral values there (floats such as ``3.0``).
- Constraints ``g(x) <= 0`` (``tell(..., constraints=g)``): pycma's augmented
  Lagrangian, ``cma.ConstrainedFitnessAL`` with find-feasible-first (Atamna,
  Auger, Hansen 2016, "Augmented Lagrangian constraint handling for CMA-ES —
  case of a single linear constraint", PPSN XIV; Atamna, Auger, Hansen 2017,
  "Linearly convergent evolution strategies via augmented Lagrangian
  constraint handling", FOGA; Dufossé & Hansen 2021, "Augmented Lagrangian,
  penalty techniques and surrogate modeling for constrained optimization with
  CMA-ES", GECCO). The fitness pycma sees is, per candidate,
  ``f + sum_i (lam_i g_i + mu_i g_i^2 / 2)`` (with ``g_i`` floored at
  ``-lam_i / mu_i``); while no feasible candidate has been seen it is
  ``sum_i max(0, g_i)^2`` for infeasible ones. See :class:`CMAES`.

Example:
    >>> import numpy as np
    >>> from nondiff.optim.cmaes import CMAES
    >>> opt = CMAES(np.full(6, 3.0), sigma0=2.0, seed=1)
    >>> while not opt.stop():
    ...     x = opt.ask()
    ...     _ = opt.tell(x, (x**2).sum(axis=1))
    >>> bool(opt.best_f < 1e-10), sorted(opt.stop())
    (True, ['tolfun'])
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .backends import pycma_options  # its QuietTPA and QuietAL import pycma on first use
from .backends.pycma_options import (
    FINAL_STOPS,
    FIXED_OPTIONS,
    GLOBAL_RNG_OPTIONS,
    check_indices,
    check_options,
    plain_options,
)
from .backends.pycma_state import restore, snapshot
from .base import Array, BaseOptimizer
from .checks import as_float64
from .hyperparameters import Hyperparameters, boolean, hyperparameter
from .shaping import rank_safe_fitness
from .state import from_plain, to_plain

__all__ = ["CMAES", "CMAESConfig", "SepCMAES", "SepCMAESConfig"]

COVARIANCES = ("full", "diagonal")
_SKIP = frozenset({"timer", "logger"})  # wall-clock timer and (inactive) data logger


def _covariance(name: str, value: Any) -> str:
    if value not in COVARIANCES:
        raise ValueError(f"{name} must be 'full' or 'diagonal', got {value!r}")
    return value


def _indices(name: str, value: Any) -> tuple[int, ...]:
    return check_indices(value)  # its messages name integer_variables


def _options(name: str, value: Any) -> dict[str, Any]:
    return check_options(value)  # unknown or reserved pycma options, by name


@dataclasses.dataclass(frozen=True)
class CMAESConfig(Hyperparameters):
    """Hyperparameters of :class:`CMAES` (see its arguments).

    ``config()`` keeps the entries of earlier versions, so their checkpoints load:
    ``integer_variables`` as a list, ``options`` as plain data (callables by name),
    ``find_feasible_first`` only when it is off.
    """

    covariance: str = hyperparameter("full", _covariance)
    integer_variables: Sequence[int] = hyperparameter((), _indices, config=False)
    options: Mapping[str, Any] | None = hyperparameter(None, _options, config=False)
    find_feasible_first: bool = hyperparameter(True, boolean(), config=False)

    def resolve(self, dim: int, popsize: int) -> CMAESConfig:
        bad = [i for i in self.integer_variables if i >= dim]
        if bad:
            raise ValueError(f"integer_variables {bad} out of range for dimension {dim}; "
                             f"give indices in [0, {dim - 1}]")
        return self

    def derived_config(self) -> dict[str, Any]:
        config = {"integer_variables": list(self.integer_variables),
                  "options": plain_options(self.options)}
        if not self.find_feasible_first:  # only when off: earlier checkpoints stay loadable
            config["find_feasible_first"] = False
        return config


@dataclasses.dataclass(frozen=True)
class SepCMAESConfig(CMAESConfig):
    """Hyperparameters of :class:`SepCMAES`: those of CMA-ES, diagonal by default."""

    covariance: str = hyperparameter("diagonal", _covariance)


@dataclasses.dataclass
class CMAState:
    es: Any  # the cma.CMAEvolutionStrategy
    legacy: np.random.RandomState | None = None  # stands in for the global np.random (_call)
    asked: np.ndarray | None = None  # last ask in float64, kept when the user dtype is lossy
    constraints: int | None = None  # None before the first tell; 0 unconstrained; else m
    al: Any = None  # the cma.ConstrainedFitnessAL of a constrained run (kept over restarts)
    dummy: np.ndarray | None = None  # dimension 1: the last ask's padding coordinate


FITNESS_STOPS = frozenset({"tolfun", "tolfunhist", "tolfunrel", "tolflatfitness",
                           "tolstagnation"})
"""pycma's stop tests that read the told fitness values (the others read the
distribution: tolx, tolupsigma, conditioncov, ...)."""


class CMAES(BaseOptimizer):
    """CMA-ES through pycma (one run; restarts: :mod:`nondiff.optim.restarts`).

    Args:
        x0, sigma0, popsize, seed, bounds: as in :class:`~nondiff.optim.base.BaseOptimizer`;
            ``popsize`` defaults to ``4 + floor(3 ln d)`` and must be at least 2.
            Bounds go to pycma's ``BoundTransform``: every candidate lies in the box.
        covariance: ``"full"`` or ``"diagonal"`` (sep-CMA-ES).
        integer_variables: indices (< dim) of integer coordinates; returned candidates
            are integral there. Finite bounds of these coordinates must be
            multiples of 0.5 so that rounding cannot leave the box. With a
            :class:`~nondiff.optim.spaces.Space` as ``x0``, its ``Integer``,
            ``Categorical`` (index 0..k-1) and ``Binary`` (0/1) leaves are
            added to them (pycma's integer handling, Hansen 2011). By name
            (``registry.create``, ``minimize``, ``HybridTrainer``, ``tune``) the
            categorical leaves of a space without real leaves (a model's structure)
            go through :mod:`nondiff.optim.relaxed` instead (``relaxed_kinds``:
            argmax of scores; ``relax=[]`` keeps the index).
        options: further pycma options (``cma.CMAOptions()``), e.g. ``{"tolfun":
            1e-12, "CMA_active": False}``.
        find_feasible_first: with constraints, minimize only the violation
            ``sum max(0, g)^2`` until the first feasible candidate is seen
            (pycma's ``find_feasible_first``). Turn it off when the feasible
            set has no volume (an equality ``h = 0`` written as ``[h, -h]``):
            the search would never leave that phase.

    ``stop()`` reports pycma's reasons (``{"tolfun": 1e-11}``). ``tell`` adds the
    metrics ``sigma``, ``popsize`` and ``condition`` (of the
    covariance matrix, exact unless pycma's diagonal decoding is switched on).

    Constraints (``handles_constraints``): ``tell(x, f, constraints=g)`` with
    ``g`` of shape ``(n,)`` or ``(n, m)``, ``g <= 0`` feasible, goes through
    pycma's augmented Lagrangian — one ``cma.ConstrainedFitnessAL`` per run,
    called row by row on the told ``(f_i, g_i)`` (pycma's own code computes the
    penalized values and the find-feasible phase), then ``es.tell(x, values)``
    and ``cfun.update(es)``, the ask-and-tell loop of pycma's
    ``ConstrainedFitnessAL.find_feasible``. As there, the coefficients are
    updated from the best (f, g) of the generation (``which="best"``: no extra
    evaluation at the mean) and the per-generation lists are cleared while
    still looking for a feasible point. Further choices:

    - Restarts (:mod:`nondiff.optim.restarts`) hand the same
      ``ConstrainedFitnessAL`` (its ``lam``, ``mu``, ``g`` histories and
      find-feasible flag) to the next run (:meth:`continue_from`), as
      ``cma.fmin_con2`` does: it passes one objective object to ``fmin2``,
      whose restart loop never resets it. Like ``fmin_con2``, stagnation termination is off
      (``tolstagnation=0``) in constrained runs unless set in ``options``:
      the penalized values move with the coefficients.
    - A run is constrained or not from its first ``tell``: telling a run
      without constraints after it was told some (or with constraints after
      it was told none, or with another number ``m``) raises ValueError, and
      the optimizer is left unchanged.
    - NaN or ±inf among a candidate's constraint values ranks it worst (like
      non-finite fitness) and keeps it away from the Lagrangian, whose
      coefficients would become NaN; it is still infeasible for the best-so-far.
    - pycma's biobjective (f, violation) archives are not kept (they need the
      optional ``moarchiving`` and do not steer the search); the best-so-far
      is kept feasibility-first by the base class. pycma's constraint loggers
      are off (no files).
    - The whole ``ConstrainedFitnessAL`` graph — coefficients, ``g``
      histories, best solutions, find-feasible flag — is part of
      ``state_dict()``: resuming continues bit for bit.

    With constraints ``tell`` also reports ``al_lambda`` and ``al_mu`` (the
    largest Lagrange coefficient and penalty factor over the constraints, 0
    until pycma initializes them) and ``feasible_found`` (1 once a feasible
    candidate was told).
    """

    name: ClassVar[str] = "cmaes"
    backend: ClassVar[str] = "numpy"
    min_popsize: ClassVar[int] = 2  # pycma ranks and recombines samples
    Hyperparameters = CMAESConfig
    hparams: CMAESConfig
    handles_bounds: ClassVar[bool] = True
    inverts_box: ClassVar[bool] = True  # pycma's BoxTransform: told rows inside the bounds
    handles_constraints: ClassVar[bool] = True
    supported_spaces: ClassVar[frozenset[str]] = frozenset(
        {"real", "integer", "categorical", "binary"})
    # Categorical leaves of spaces without reals go through the relaxation by default
    # (argmax of scores, not pycma's rounded index: an order the choices do not have).
    # Measured by benchmarks/studies/relaxation.py: op-graph structure 0/5 -> 5/5 seeds, random
    # 5x5x5 lookup tables solved 8/25 -> 19/25 (module docstring of nondiff.optim.relaxed).
    relaxed_kinds: ClassVar[frozenset[str]] = frozenset({"categorical"})
    state_version: ClassVar[int] = 1
    has_stop_criteria: ClassVar[bool] = True  # pycma's tolfun, tolx, ...: restarts use them
    final_stops: ClassVar[frozenset[str]] = FINAL_STOPS  # end a restart sequence (cma.fmin)

    # ----- configuration -------------------------------------------------------------
    def _min_popsize_reason(self) -> str:
        return "CMA-ES needs popsize >= 2 to rank and recombine samples"

    def config(self) -> dict[str, Any]:
        bounds = None if self.bounds is None else [b.tolist() for b in self.bounds]
        return {**super().config(), "bounds": bounds}  # pycma's box is part of the search

    def _configure(self) -> None:
        """Add the discrete leaves of a space to ``integer_variables`` (checked again for
        the dimension) and check their bounds, before any state or generator is built."""
        hp = self.hparams
        if self.space is not None:  # discrete leaves of a space are integer variables
            ints = {i for _, leaf, part in self.space.leaves()
                    if leaf.kind in ("integer", "categorical", "binary")
                    for i in range(part.start, part.stop)}
            merged = tuple(sorted(ints | set(hp.integer_variables)))
            hp = self.hparams = dataclasses.replace(hp, integer_variables=merged).resolve(
                self.dim, self.popsize)
        if self.bounds is None:
            return
        for i in hp.integer_variables:
            for b in (self.bounds[0][i], self.bounds[1][i]):
                if np.isfinite(b) and b * 2 != np.round(b * 2):
                    raise ValueError(
                        f"integer variable {i} has bound {b}; use integer (or .5) bounds so "
                        "rounded candidates stay inside the box")

    def _init_state(self, x0: np.ndarray) -> CMAState:
        lower, upper = self.bounds if self.bounds is not None else (
            np.full(self.dim, -np.inf), np.full(self.dim, np.inf))
        self._x0 = x0.copy()
        self._al_row: list[Any] = [0.0, None]  # (f, g) of the row the AL is evaluating
        rng = self._rng

        def randn(*shape: int) -> np.ndarray:  # pycma calls randn(lam, N) and randn(N)
            return rng.standard_normal(shape)

        import cma  # here, not at the top: a process that runs no CMA-ES skips its import
        from cma.sigma_adaptation import CMAAdaptSigmaTPA

        adapt = self.options.get("AdaptSigma", True)
        tpa = adapt is CMAAdaptSigmaTPA or (
            adapt is True and self.dim >= cma.evolution_strategy.TPA_dimension)
        opts = {**self.options, **FIXED_OPTIONS, "randn": randn,
                "CMA_diagonal": self.covariance == "diagonal"}
        if tpa:
            opts["AdaptSigma"] = pycma_options.QuietTPA
        if self.bounds is not None:
            opts["bounds"] = [_pad(lower).tolist(), _pad(upper).tolist()]
        if self.integer_variables:
            opts["integer_variables"] = list(self.integer_variables)
        self._run_options = opts
        guard = bool(self.integer_variables) or bool(GLOBAL_RNG_OPTIONS & set(self.options)) \
            or not (adapt is True or adapt is False or tpa
                    or adapt is cma.sigma_adaptation.CMAAdaptSigmaCSA)
        legacy = np.random.RandomState(np.random.MT19937(
            np.random.SeedSequence([self.seed, 1]))) if guard else None
        self._lossy = self.format.torch_dtype != torch.float64
        try:
            es = self._new_es(x0.copy())
        except Exception as err:
            raise ValueError(f"pycma rejected the configuration: {err}") from err
        return CMAState(es=es, legacy=legacy)

    def _new_es(self, x0: np.ndarray) -> Any:
        """A ``cma.CMAEvolutionStrategy`` from ``x0``; in dimension 1 (which pycma 4.x
        refuses with bounds or an integer variable) it searches a second, free
        coordinate that no fitness reads (see :func:`_pad`)."""
        opts = copy.deepcopy({k: v for k, v in self._run_options.items() if k != "randn"})
        opts.update(randn=self._run_options["randn"], popsize=self.popsize)
        import cma

        return cma.CMAEvolutionStrategy(_pad(x0), self.sigma0, opts)

    def continue_from(self, previous: CMAES) -> None:
        """Take over the constraint handling of an earlier run (restarts call this on
        the fresh run before its first ask): the same ``ConstrainedFitnessAL`` goes on,
        as in ``cma.fmin_con2``, and stagnation termination stays off."""
        if not isinstance(previous, CMAES):
            raise ValueError(f"previous must be a CMAES run, got {type(previous).__name__}")
        st, before = self.state, previous.state
        st.constraints, st.al = before.constraints, before.al
        self._al_row = previous._al_row  # the row that AL's functions read
        if st.al is not None and "tolstagnation" not in self.options:
            st.es.opts["tolstagnation"] = 0  # as cma.fmin_con2

    def _new_al(self) -> Any:
        """A ``cma.ConstrainedFitnessAL`` reading the told values of the current row."""
        import cma

        row = self._al_row
        cfun = cma.ConstrainedFitnessAL(
            lambda x: row[0], lambda x: row[1], dimension=max(self.dim, 2),
            find_feasible_first=self.find_feasible_first, archives=False, logging=0)
        # what cfun.al would build, minus the loggers
        cfun._al = pycma_options.QuietAL(max(self.dim, 2))
        return cfun

    # ----- ask / tell / stop ---------------------------------------------------------
    @property
    def es(self) -> Any:
        """The current ``cma.CMAEvolutionStrategy`` (read it, do not drive it)."""
        return self.state.es

    @property
    def mean(self) -> Array:
        """pycma's ``xfavorite``: the distribution mean, in bounds."""
        favorite = np.asarray(self.state.es.result.xfavorite, dtype=np.float64)
        return self.format.to_user(favorite[:self.dim])

    def _ask(self, n: int) -> np.ndarray:
        if n != self.popsize:
            raise ValueError(
                f"{type(self).__name__}.ask(n) needs n == popsize ({self.popsize}), got n={n}: "
                "pycma's weights and learning rates are set for that population size and "
                f"tell() needs at least mu={self.state.es.sp.weights.mu} of the candidates; "
                "construct the optimizer with popsize=n instead")
        x = np.asarray(self._call(self.state.es.ask))
        if self.dim == 1:  # the padding coordinate stays here for tell
            self.state.dummy, x = x[:, 1].copy(), x[:, :1]
        self.state.asked = x if self._lossy else None
        return x

    def min_tell_rows(self) -> int:  # pycma's tell needs the mu parents
        return int(self.state.es.sp.weights.mu)

    def _check_tell(self, n: int, constraints: Array | None) -> None:
        """Besides the base's checks: a run told constraints must keep being told the
        same number of them, and a run told none must not start (see the class
        docstring: the augmented Lagrangian's state depends on it)."""
        m = _constraint_count(constraints)
        if constraints is not None and m == 0:
            raise ValueError("constraints have shape (n, 0), no value per candidate; pass "
                             "constraints=None for an unconstrained run")
        told = self.state.constraints
        if told is not None and m is not None and m != told:
            raise ValueError(
                "this CMA-ES run was told " + (f"{told} constraint value(s) per candidate"
                                               if told else "no constraints")
                + ", now " + (f"{m}" if m else "none") + "; a run is constrained (with a "
                "fixed number m of constraints) or not from its first tell, as its "
                "augmented Lagrangian state depends on it; start a new optimizer instead")

    def _tell(self, x: np.ndarray, fitness: np.ndarray, *, constraints: Array | None = None,
              **extra: Any) -> dict[str, float]:
        st = self.state
        if st.asked is not None:  # hand pycma its own float64 samples, not their rounding
            if x.shape == st.asked.shape and np.array_equal(
                    self._internal(self.format.to_user(st.asked)), x):
                x = st.asked
            st.asked = None
        if self.dim == 1:  # the padding coordinate of the asked rows, else (injected) 0
            dummy = st.dummy if st.dummy is not None and len(st.dummy) == len(x) \
                else np.zeros(len(x))
            x, st.dummy = np.column_stack([x, dummy]), None
        es = st.es
        metrics: dict[str, float] = {}
        if constraints is None:
            st.constraints = 0
            self._call(es.tell, x, fitness)
        else:
            if st.al is None:
                st.constraints, st.al = _constraint_count(constraints), self._new_al()
                if "tolstagnation" not in self.options:
                    es.opts["tolstagnation"] = 0  # as cma.fmin_con2
            values = self._al_values(x, fitness, constraints)
            self._call(es.tell, x, values)
            cfun = st.al
            cfun.update(es)  # pycma's loop (ConstrainedFitnessAL.find_feasible): tell, update
            if cfun.finding_feasible:
                cfun._reset_arrays()
            al = cfun.al
            metrics = {"al_lambda": 0.0 if al.lam is None else float(np.max(al.lam)),
                       "al_mu": 0.0 if al.mu is None else float(np.max(al.mu)),
                       "feasible_found": float(cfun.best_feas.x is not None)}
        es.stop()  # evaluated once per generation: some criteria count generations
        scaling = es.sigma_vec.scaling  # a vector for sep-CMA, else usually the scalar 1
        d = es.D if np.ndim(scaling) == 0 else es.D * scaling
        return {"sigma": es.sigma, "popsize": self.popsize,
                "condition": (d.max() / d.min()) ** 2, **metrics}

    def _al_values(self, x: np.ndarray, fitness: np.ndarray, constraints: Array) -> np.ndarray:
        """pycma's augmented-Lagrangian fitness of each told (f_i, g_i)."""
        g = as_float64(constraints, "constraints").reshape(len(fitness), -1)
        usable = np.isfinite(g).all(axis=1)
        values = np.full(len(fitness), np.nan)
        cfun, row = self.state.al, self._al_row
        for i in np.flatnonzero(usable):
            row[0], row[1] = float(fitness[i]), g[i].copy()
            values[i] = cfun(x[i].copy())  # the copy: pycma keeps x in its best solutions
        row[0], row[1] = 0.0, None
        return rank_safe_fitness(values)

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run a pycma method; with a legacy stand-in, swap it for the global np.random.

        pycma's integer centering (``cma.integer_centering``) and some options draw
        from the global ``np.random``; there the draws come from our own seeded,
        checkpointed ``RandomState`` and the caller's global state is put back.
        """
        legacy = self.state.legacy
        if legacy is None:
            return fn(*args)
        outside = np.random.get_state()  # noqa: NPY002 (the legacy global is the point)
        np.random.set_state(legacy.get_state())  # noqa: NPY002
        try:
            return fn(*args)
        finally:
            legacy.set_state(np.random.get_state())  # noqa: NPY002
            np.random.set_state(outside)  # noqa: NPY002

    def _stop(self) -> dict[str, Any]:
        reasons = self.state.es.stop()
        # Until a finite value is told, pycma has seen only the equal stand-ins of NaN/inf
        # (rank_safe_fitness): its fitness tests would call that flat run converged.
        uninformed = not math.isfinite(self._best_f)
        return {str(k): (v.item() if isinstance(v, np.generic) else v)
                for k, v in reasons.items() if not (uninformed and k in FITNESS_STOPS)}

    # ----- checkpoints ---------------------------------------------------------------
    def _state_to_plain(self) -> dict[str, Any]:
        st = self.state
        legacy = None
        if st.legacy is not None:
            _, key, pos, has_gauss, gauss = st.legacy.get_state()
            legacy = {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)}
        return {"es": snapshot(st.es, skip=_SKIP, extra_classes=(pycma_options.QuietTPA,)),
                "legacy_rng": legacy,
                "asked": None if st.asked is None else to_plain(st.asked),
                "constraints": st.constraints,
                "al": None if st.al is None else snapshot(
                    st.al, extra_classes=(pycma_options.QuietAL,)),
                "dummy": None if st.dummy is None else to_plain(st.dummy)}

    def _state_from_plain(self, plain: Any) -> None:
        keys = {"es", "legacy_rng", "asked"}
        added = {"constraints", "al", "dummy"}  # None for earlier checkpoints
        if not isinstance(plain, Mapping) or not keys <= set(plain) <= keys | added:
            raise ValueError(f"not a CMAES state: expected keys {sorted(keys | added)}")
        try:
            self._load_plain(plain)
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise ValueError(f"corrupted CMAES state: {type(err).__name__}: {err}") from None

    def _load_plain(self, plain: Mapping[str, Any]) -> None:
        if (plain["legacy_rng"] is None) != (self.state.legacy is None):
            raise ValueError("CMAES state does not match this configuration (legacy RNG)")
        rng_state = self._rng_state()
        es = self._new_es(self._x0.copy())  # shell to fill
        restore(plain["es"], es, extra_classes=(pycma_options.QuietTPA,))
        self._set_rng_state(rng_state)  # building the shell must not consume randomness
        if not hasattr(es, "timer"):  # pycma times generations for display only
            from cma.utilities.utils import ElapsedWCTime

            es.timer = ElapsedWCTime().pause()
        legacy, g = None, plain["legacy_rng"]
        if g is not None:
            legacy = np.random.RandomState()
            legacy.set_state(("MT19937", np.asarray(g["key"], dtype=np.int64).astype(np.uint32),
                              int(g["pos"]), int(g["has_gauss"]), float(g["gauss"])))
        told, al = plain.get("constraints"), plain.get("al")
        if not ((al is None and told in (None, 0)) or (
                al is not None and type(told) is int and told > 0)):
            raise ValueError("corrupted CMAES state: constraints and al disagree")
        if al is not None:
            al = restore(al, self._new_al(), extra_classes=(pycma_options.QuietAL,))
        asked, dummy = plain["asked"], plain.get("dummy")
        self.state = CMAState(es=es, legacy=legacy,
                              asked=None if asked is None else from_plain(np.zeros(0), asked),
                              constraints=told, al=al,
                              dummy=None if dummy is None else from_plain(np.zeros(0), dummy))

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        backup, rng = dict(vars(self)), self._rng_state()
        try:
            super().load_state_dict(state)
        except Exception:  # leave the optimizer as it was (the base assigns, never mutates)
            vars(self).clear()
            vars(self).update(backup)
            self._set_rng_state(rng)
            raise


class SepCMAES(CMAES):
    """Separable CMA-ES (diagonal covariance; Ros & Hansen 2008): :class:`CMAES` with
    ``covariance="diagonal"`` by default."""

    name: ClassVar[str] = "sep-cmaes"
    Hyperparameters = SepCMAESConfig
    hparams: SepCMAESConfig


def _pad(x: np.ndarray) -> np.ndarray:
    """``x`` with its one entry repeated: pycma 4.x fails in dimension 1 with bounds ("not
    yet initialized") or an integer variable (``_stds_into_limits``), so a one-variable
    search runs in dimension 2 with a copy of the variable's start and bounds as a free
    coordinate no fitness reads (it only adds a step-size path component of noise, on
    the variable's own scale)."""
    x = np.asarray(x, dtype=np.float64)
    return np.append(x, x[0]) if x.shape == (1,) else x


# ----- validation helpers ---------------------------------------------------------------
def _constraint_count(constraints: Any) -> int | None:
    """m for ``(n,)`` / ``(n, m)`` constraint values, 0 for None, else None (the base's
    shape check then names the problem)."""
    if constraints is None:
        return 0
    try:
        shape = np.shape(constraints)
    except ValueError:  # ragged
        return None
    return 1 if len(shape) == 1 else int(shape[1]) if len(shape) == 2 else None
