"""The optimizer protocol and the template every optimizer fills in.

Every optimizer minimizes. It proposes candidates with :meth:`ask`, learns from
their fitness with :meth:`tell`, and can be saved and resumed with
:meth:`state_dict` / :meth:`load_state_dict` so that a resumed run continues the
same trajectory bit for bit.

:class:`BaseOptimizer` is a template method (as in evosax's ``base.py`` and
nevergrad's ``optimization/base.py``): the public methods check input, convert
between the user's array library and the optimizer's own, keep the best-so-far,
count evaluations and non-finite fitness, and own the seeded random generator;
subclasses implement small ``_ask`` / ``_tell`` over a typed state object.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import SNES
    >>> opt = SNES(np.zeros(5), sigma0=1.0, seed=0)
    >>> for _ in range(300):
    ...     x = opt.ask()
    ...     _ = opt.tell(x, (x**2).sum(axis=1))
    >>> bool((opt.recommend() ** 2).sum() < 1e-6)
    True
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from .arrays import Array, ArrayFormat, copy_array
from .checkpoint import check_counters, check_state_values
from .checks import as_float64, check_real_dtype
from .hyperparameters import Hyperparameters
from .shaping import constraint_violation, feasibility_first, rank_safe_fitness
from .spaces import Space, leaf_kinds
from .state import from_plain, plain_equal, to_plain

STATE_FORMAT_VERSION = 1


@runtime_checkable
class Optimizer(Protocol):
    """What every optimizer of this package offers (minimization)."""

    def ask(self, n: int | None = None) -> Array: ...

    def tell(self, candidates: Array, fitness: Array, **extra: Any) -> dict[str, float]: ...

    def recommend(self) -> Array: ...

    def stop(self) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class UnsupportedSpaceError(ValueError):
    """A space with kinds of variables that the optimizer does not search.

    The message says which optimizers do: :func:`nondiff.optim.registry.create`
    names them, a class constructed directly points to
    :func:`~nondiff.optim.registry.names_supporting`.

    Args:
        problem: what the optimizer searches and what it was given.
        kinds: the kinds of the space's leaves (``"real"``, ``"binary"``, ...).
        able: the registered optimizers that handle all of ``kinds``, when known.
    """

    def __init__(self, problem: str, kinds: set[str] | frozenset[str],
                 able: list[str] | None = None) -> None:
        self.problem, self.kinds = problem, frozenset(kinds)
        wanted = "{" + ", ".join(repr(k) for k in sorted(self.kinds)) + "}"
        if able is None:
            fix = (f"nondiff.optim.registry.names_supporting({wanted}) lists the optimizers "
                   "that handle it")
        else:
            fix = (f"Optimizers that handle {sorted(self.kinds)}: "
                   f"{', '.join(able) if able else 'none registered'}")
        super().__init__(f"{problem}. {fix}")


@dataclasses.dataclass
class Result:
    """Outcome of :func:`nondiff.optim.minimize`.

    Attributes:
        x: best point found, in the array library of ``x0`` (or decoded values).
        f: its objective value (in the user's sense: maximized if ``maximize``).
        evaluations: objective evaluations used.
        iterations: ask/tell generations.
        stop: why the run ended, e.g. ``{"budget": 1000}`` or pycma's reasons.
        history: ``(k, 2)`` float array of (evaluations, best-so-far f) after
            each generation.
        nonfinite: number of NaN/inf fitness values seen (ranked worst).
        optimizer: registry name of the optimizer.
        feasible: whether ``x`` satisfies the constraints (True without any).
        violation: its total constraint violation ``sum max(0, g)``.
    """

    x: Array
    f: float
    evaluations: int
    iterations: int
    stop: dict[str, Any]
    history: np.ndarray
    nonfinite: int = 0
    optimizer: str = ""
    feasible: bool = True
    violation: float = 0.0


def _validate_positive(name: str, value: Any, *, integer: bool = False) -> None:
    kind = "a positive integer" if integer else "a positive finite number"
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad:
        bad = (integer and int(value) != value) or not math.isfinite(value) or value <= 0
    if bad:
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_x0_dtype(x0: Any) -> None:
    """Refuse an x0 whose dtype would lose information silently or fail late."""
    if isinstance(x0, torch.Tensor):
        if x0.is_complex():
            raise ValueError(f"x0 must be real, got a complex tensor ({x0.dtype}); the "
                             "imaginary part would be dropped: pass x0.real, or split real "
                             "and imaginary parts into a real vector twice as long")
        if x0.dtype == torch.bfloat16:
            raise ValueError("x0 has dtype torch.bfloat16, which numpy cannot hold and whose "
                             "8-bit mantissa rounds most steps away; pass x0.float() and "
                             "cast to bfloat16 inside the objective")
        return
    dtype = np.asarray(x0).dtype
    if dtype.kind == "c":
        raise ValueError(f"x0 must be real, got complex values (dtype {dtype}); the imaginary "
                         "part would be dropped: pass x0.real, or split real and imaginary "
                         "parts into a real vector twice as long")
    if dtype.kind not in "biuf":
        raise ValueError(f"x0 must be an array of real numbers, got dtype {dtype} "
                         f"({np.asarray(x0).ravel()[:3].tolist()!r}...)")


def default_popsize(dim: int) -> int:
    """The usual population size 4 + floor(3 ln d) (Hansen 2016, CMA-ES tutorial)."""
    return 4 + int(3 * math.log(max(dim, 1)))


class BaseOptimizer(ABC):
    """Template for ask/tell optimizers; see the module docstring.

    Subclasses set ``name`` (the registry name), ``backend`` (``"torch"`` or
    ``"numpy"``: the array library ``_ask``/``_tell`` work in), and
    ``Hyperparameters`` (a frozen dataclass of :mod:`nondiff.optim.hyperparameters`:
    their keyword-only options, validated there and stored resolved as
    ``self.hparams``; ``config()`` derives from it); they implement
    ``_init_state``, ``_ask`` and ``_tell``; optionally ``_configure`` (objects
    built from the hyperparameters, e.g. a step), ``_stop``, ``_recommend``.
    A subclass that declares ``Hyperparameters`` and no ``__init__`` gets the
    signature ``(x0, sigma0, popsize, seed, bounds, *, <its fields>)``.

    Args:
        x0: initial mean / starting point, shape ``(dim,)``, numpy or torch
            (candidates come back in its library, dtype and device); or a
            :class:`~nondiff.optim.spaces.Space`, whose encoding the optimizer then
            searches (numpy float64; bounds from the space). Each optimizer
            declares the leaf kinds it handles in ``supported_spaces``.
        sigma0: initial step size, > 0.
        popsize: default number of candidates per :meth:`ask`.
        seed: seed of the optimizer's own random generator (None: fresh entropy,
            readable afterwards as ``.seed``).
        bounds: ``(lower, upper)`` scalars or ``(dim,)`` arrays. Optimizers
            without their own bound handling clip candidates into the box.
        **hyperparameters: the fields of the subclass's ``Hyperparameters``.
    """

    name: ClassVar[str] = "base"
    backend: ClassVar[str] = "torch"
    handles_bounds: ClassVar[bool] = False
    inverts_box: ClassVar[bool] = False  # told rows must lie in the bounds (e.g. pycma)
    handles_constraints: ClassVar[bool] = False
    supported_spaces: ClassVar[frozenset[str]] = frozenset({"real"})
    config_added: ClassVar[dict[str, Any]] = {}  # config keys added in a later version ->
    # the value that reproduces the behaviour of states saved before them (loading)
    relaxed_kinds: ClassVar[frozenset[str]] = frozenset()  # kinds registry.create relaxes
    # by default on spaces without real leaves, though the class searches them itself
    min_popsize: ClassVar[int] = 1  # e.g. 2 for optimizers that compare samples
    _told_asked: bool = False  # see _tell
    _asked_version: int | None = None
    _bounds_on: tuple[torch.Tensor, torch.Tensor] | None = None  # see _bound_tensors
    state_version: ClassVar[int] = 1
    Hyperparameters: ClassVar[type[Hyperparameters]] = Hyperparameters
    config_space: ClassVar[bool] = False  # config() records repr(space) (spaces of any kind)
    hparams: Hyperparameters

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # inspect.signature(cls) and help() list the hyperparameters as keyword-only
        # arguments; a subclass with its own __init__ keeps that one.
        cls.__signature__ = _signature(cls) if cls.__init__ is BaseOptimizer.__init__ else None

    def __init__(
        self,
        x0: Array | Space,
        sigma0: float = 1.0,
        popsize: int | None = None,
        seed: int | None = None,
        bounds: tuple[Any, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        hparams = self.Hyperparameters.build(  # checked first
            self.name, hyperparameters, common=("x0", "sigma0", "popsize", "seed", "bounds"))
        self.hparams = hparams
        self.space: Space | None = None
        if isinstance(x0, Space):
            self._check_space(x0)
            if bounds is not None:
                raise ValueError("bounds come from the space; pass either bounds or a space")
            self.space, bounds, x0 = x0, x0.bounds(), x0.initial()
        else:
            self._check_space(None)
        _check_x0_dtype(x0)
        x0_array = x0.detach().cpu().numpy() if isinstance(x0, torch.Tensor) else np.asarray(x0)
        if x0_array.ndim != 1 or x0_array.size == 0:
            raise ValueError(
                f"x0 must be a non-empty 1-D array of shape (dim,), got shape {x0_array.shape}"
            )
        if not np.all(np.isfinite(x0_array.astype(np.float64))):
            raise ValueError("x0 contains NaN or inf; give a finite starting point")
        _validate_positive("sigma0", sigma0)
        if popsize is not None:
            _validate_positive("popsize", popsize, integer=True)
            if popsize < self.min_popsize:
                raise ValueError(f"popsize must be at least {self.min_popsize} for "
                                 f"{self.name} ({self._min_popsize_reason()}), got {popsize!r}")
            self._check_multiple("popsize", int(popsize))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= seed < 2**64):
            raise ValueError(f"seed must be an integer in [0, 2**64) or None, got {seed!r}")
        self.format = ArrayFormat.of(x0)
        self.dim = int(x0_array.size)
        self.sigma0 = float(sigma0)
        if popsize is None:
            popsize = self.default_popsize(self.dim)
            popsize += -popsize % hparams.popsize_multiple  # mirrored pairs: round up to even
        self.popsize = int(popsize)
        self.seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self.bounds = self._check_bounds(bounds, x0_array)
        self.hparams = hparams.resolve(dim=self.dim, popsize=self.popsize)
        self._configure()
        self.counters = {"iterations": 0, "evaluations": 0, "nonfinite": 0}
        self._best_f = math.inf
        self._best_violation = math.inf
        self._best_x = copy_array(self._internal(x0))  # never an alias of the user's x0
        # (returned, unclipped, off the CPU: whether any sample left the box) of the last ask
        self._unclipped: tuple[Array, Array, torch.Tensor | None] | None = None
        self._asked: Array | None = None  # the array the last ask() returned
        self._init_rng()
        self.state = self._init_state(self._internal(x0))

    # ----- configuration helpers -------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """Hyperparameters read as attributes: ``opt.eta_sigma`` is ``opt.hparams.eta_sigma``
        (only called when ordinary lookup fails)."""
        hparams = self.__dict__.get("hparams")
        if hparams is not None and name in hparams.names():
            return getattr(hparams, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _configure(self) -> None:  # noqa: B027 (a hook)
        """Build what derives from ``self.hparams`` (resolved), before ``_init_state``."""

    def _min_popsize_reason(self) -> str:
        return "to compare samples"

    def _check_multiple(self, what: str, n: int) -> None:
        """Mirrored sampling draws pairs: ``n`` candidates must be even."""
        if n % self.hparams.popsize_multiple:
            flag = self.hparams.mirrored
            raise ValueError(
                f"{what} must be even with mirrored sampling ({flag}=True: {self.name} draws "
                f"pairs x, 2m - x), got {what}={n}; pass an even {what} or {flag}=False")

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return default_popsize(dim)

    def config(self) -> dict[str, Any]:
        """Static configuration, saved beside the state and compared on load: the
        common arguments and ``self.hparams.config()``."""
        config = {"dim": self.dim, "sigma0": self.sigma0, "popsize": self.popsize,
                  "seed": self.seed}
        if self.config_space:  # without object addresses (functions among the choices),
            # which differ in the process that resumes
            config["space"] = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(self.space))
        return {**config, **self.hparams.config()}

    @classmethod
    def _check_space(cls, space: Space | None) -> None:
        if space is not None and space.is_constant:
            raise ValueError(
                f"nothing to search: every leaf of the space {space!r} is a constant (one "
                "allowed value); call fn(space.decode([])) directly")
        kinds = leaf_kinds(space) if space is not None else {"real"}
        unsupported = kinds - cls.supported_spaces
        if not unsupported:
            return
        given = f"a {'/'.join(sorted(kinds))} space" if space is not None else "a real vector x0"
        hint = "; pass a space, e.g. Binary(n)" if space is None else ""
        if space is not None and "real" in cls.supported_spaces:
            hint = (f"; nondiff.optim.registry.create({cls.name!r}, space) (as minimize, "
                    "HybridTrainer and tune call it) searches it through a continuous "
                    "relaxation (nondiff.optim.relaxed)")
        raise UnsupportedSpaceError(
            f"{cls.name} searches {'/'.join(sorted(cls.supported_spaces))} spaces, not "
            f"{given}{hint}", kinds
        )

    def _check_bounds(self, bounds: Any, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if bounds is None:
            return None
        try:
            lower, upper = bounds
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be a pair (lower, upper), got {bounds!r}") from None
        try:
            lower, upper = (np.broadcast_to(np.asarray(
                side.detach().cpu() if isinstance(side, torch.Tensor) else side,
                dtype=np.float64), (self.dim,)).copy() for side in (lower, upper))
        except (TypeError, ValueError):
            raise ValueError(
                f"bounds must be a pair (lower, upper) of scalars or ({self.dim},) arrays for "
                f"x0 of {self.dim} entries, got shapes {_shape(lower)} and {_shape(upper)}"
            ) from None
        if np.any(np.isnan(lower)) or np.any(np.isnan(upper)):
            raise ValueError("bounds contain NaN; give numbers (or -inf/inf for an open side)")
        if np.any(lower >= upper):
            i = int(np.argmax(lower >= upper))
            raise ValueError(
                f"bounds need lower < upper in every coordinate; coordinate {i} has "
                f"lower={lower[i]} and upper={upper[i]}"
            )
        if np.any(x0 < lower) or np.any(x0 > upper):
            raise ValueError("x0 lies outside bounds; start inside the box (lower <= x0 <= upper)")
        return lower, upper

    # ----- array conversion ------------------------------------------------------
    def _internal(self, x: Array) -> Array:
        if self.backend == "torch":
            return self.format.to_torch(x)
        return self.format.to_numpy(x)

    def _init_rng(self) -> None:
        if self.backend == "torch":
            self._rng = torch.Generator(device=self.format.device)
            self._rng.manual_seed(self.seed)
        else:
            self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def _clip(self, x: Array) -> Array:
        if self.bounds is None or self.handles_bounds:
            return x
        lower, upper = self.bounds
        if isinstance(x, torch.Tensor):
            low, high = self._bound_tensors(x)
            if not _edits_seen(x):  # the CPU: the check is free, and x stays x when inside
                if bool(((x >= low) & (x <= high)).all()):
                    return x  # nothing to clip: ask() then learns from x itself
            return torch.maximum(torch.minimum(x, high), low)  # no host read (ask tells later)
        if np.all((x >= lower) & (x <= upper)):
            return x
        return np.clip(x, lower, upper)

    def _bound_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` as tensors of ``like``'s dtype and device, made once (a host
        to device copy per ask would wait for the device)."""
        cached = self._bounds_on
        if cached is None or cached[0].dtype != like.dtype or cached[0].device != like.device:
            cached = self._bounds_on = tuple(
                torch.as_tensor(b, dtype=like.dtype, device=like.device) for b in self.bounds)
        return cached

    # ----- the protocol ----------------------------------------------------------
    def ask(self, n: int | None = None) -> Array:
        """Return ``(n, dim)`` candidates (``n`` defaults to ``popsize``).

        With bounds that the optimizer does not handle itself, the candidates are
        clipped into the box; when the very array returned here is told back, the
        optimizer learns from its unclipped samples (the clipped point is only
        where the objective is evaluated), so clipping never distorts its update.
        Off the CPU, ask clips without reading anything back; whether a sample left
        the box (one value) is read by tell, which waits for the fitness anyway.
        """
        if n is None:
            n = self.popsize
        _validate_positive("n", n, integer=True)
        self._check_multiple("n", int(n))
        samples = self._ask(int(n))
        clipped = self._clip(samples)
        out = self.format.to_user(clipped)
        self._unclipped = None
        if clipped is not samples:  # off the CPU every sample is clipped, the check deferred
            moved = None
            if isinstance(samples, torch.Tensor) and _edits_seen(samples):
                low, high = self._bound_tensors(samples)
                moved = ~((samples >= low) & (samples <= high)).all()  # the CPU's check, lazy
            self._unclipped = (out, samples, moved)
        self._asked = out
        self._asked_version = _version_of(out)
        return out

    def tell(self, candidates: Array, fitness: Array, *, constraints: Array | None = None,
             **extra: Any) -> dict[str, float]:
        """Learn from the fitness (to minimize) of ``candidates``.

        NaN and ±inf fitness never raise: they rank worst and are counted in
        ``metrics["nonfinite"]``. Keyword data an optimizer does not use is
        accepted and ignored.

        Args:
            candidates: ``(n, dim)``, as :meth:`ask` returned them.
            fitness: ``(n,)`` values to minimize.
            constraints: optional ``(n,)`` or ``(n, m)`` values ``g`` with
                ``g <= 0`` feasible. Optimizers with their own handling
                (``handles_constraints``, e.g. CMA-ES's augmented Lagrangian)
                receive them; for the others the fitness is replaced by the
                rank under Deb's feasibility-first rules (feasible first, by
                fitness; then infeasible, by total violation). The best-so-far
                follows the same rules.

        Returns:
            metrics: iteration, evaluations, best_f, population best/median,
            non-finite count (and feasible count with constraints), plus the
            optimizer's own (e.g. ``sigma``).
        """
        if not isinstance(candidates, torch.Tensor):
            check_real_dtype(np.asarray(candidates), "candidates")
        elif candidates.is_complex():
            raise ValueError("candidates must be real numbers, got a complex tensor; "
                             "pass what ask() returned")
        unclipped = self._unclipped
        unedited = self._provably_asked(candidates)
        if unclipped is not None and candidates is unclipped[0] and unclipped[2] is not None \
                and not bool(unclipped[2]):  # the one read of the deferred check: none moved
            if unedited:  # the samples: the same values (what ask made, e.g. ES noise)
                x = best_rows = unclipped[1]
                told_asked = True
            else:
                x = best_rows = self._internal(candidates)
                told_asked = False
        elif unclipped is not None and (unedited or self._equals_clipped(candidates,
                                                                        unclipped[1])):
            x, best_rows = unclipped[1], self._internal(candidates)
            told_asked = True  # x: the samples of the last ask themselves
        else:
            x = best_rows = self._internal(candidates)
            told_asked = (candidates is self._asked and self._asked_version is not None
                          and _version_of(candidates) == self._asked_version)  # not edited
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"candidates must have shape (n, {self.dim}), got {tuple(x.shape)}; "
                "pass what ask() returned"
            )
        n = x.shape[0]
        need = self.min_tell_rows()
        if n < need:
            why = self._min_popsize_reason() if need == self.min_popsize else \
                "its update needs them"
            raise ValueError(
                f"{self.name} needs at least {need} candidates per tell ({why}), got {n}; "
                "tell the whole batch ask() returned (or more of it)")
        if not unedited:  # what ask() made is finite and inside: check everything else
            bad = ~(torch.isfinite(best_rows).all(dim=1).cpu().numpy()
                    if isinstance(best_rows, torch.Tensor) else np.isfinite(best_rows).all(axis=1))
            if bad.any():
                raise ValueError(
                    f"candidates in rows {np.flatnonzero(bad)[:10].tolist()} contain NaN or inf; "
                    "tell finite candidates (as ask() returned them)")
            if self.space is not None or (self.inverts_box and self.bounds is not None):
                inside = self._check_in_space(best_rows)
                x = inside if x is best_rows else x  # else x: the samples, best_rows their clip
                best_rows = inside
        f = self._fitness_array(fitness, n)
        violation = None if constraints is None else constraint_violation(constraints, n)
        self._check_tell(n, constraints)
        self._unclipped = self._asked = None  # the input is valid: the tell takes effect
        finite = np.isfinite(f)
        n_bad = n - int(np.count_nonzero(finite))
        pop = f if n_bad == 0 else f[finite]
        best_before = (self._best_f, self._best_violation, self._best_x)
        if pop.size:
            self._update_best(f, finite, violation, best_rows, all_finite=n_bad == 0)
        ranked = rank_safe_fitness(f) if n_bad else f
        if x is not best_rows:  # learning from unclipped samples: penalize leaving the box
            ranked = self._bound_penalty(ranked, x, best_rows)
        if violation is not None and self.handles_constraints:
            extra["constraints"] = constraints
        elif violation is not None:
            ranked = feasibility_first(ranked, violation)
        counters = self.counters
        counters["iterations"] += 1
        counters["evaluations"] += int(n)
        counters["nonfinite"] += n_bad
        metrics = {
            "iteration": float(counters["iterations"]),
            "evaluations": float(counters["evaluations"]),
            "best_f": self._best_f,
            "pop_best_f": float(pop.min()) if pop.size else math.nan,
            "pop_median_f": _median(pop),
            "nonfinite": float(n_bad),
        }
        if violation is not None:
            metrics["feasible"] = float(np.count_nonzero(violation == 0))
        # Elitist optimizers compare across batches: they need the told values, not ranks.
        extra["raw_fitness"] = f if n_bad == 0 else np.where(finite, f, np.inf)
        extra["violation"] = (np.zeros(n) if violation is None else violation) if n_bad == 0 \
            else np.where(finite, 0.0 if violation is None else violation, np.inf)
        self._told_asked = told_asked
        try:
            learned = self._tell(x, ranked, **extra) or {}
        except BaseException:  # the base's bookkeeping follows a failed update back
            counters["iterations"] -= 1
            counters["evaluations"] -= int(n)
            counters["nonfinite"] -= n_bad
            self._best_f, self._best_violation, self._best_x = best_before
            raise
        for key, value in learned.items():
            metrics[key] = float(value)
        return metrics

    def _provably_asked(self, candidates: Array) -> bool:
        """Whether ``candidates`` are the array the last ask returned, unedited: only a
        tensor off the CPU can show it without reading values (its version counter moves
        with every in-place edit). A numpy array keeps no counter and a CPU tensor can be
        written through a numpy view unseen; checking their values is cheap."""
        return (candidates is self._asked and isinstance(candidates, torch.Tensor)
                and _edits_seen(candidates) and self._asked_version is not None
                and _version_of(candidates) == self._asked_version)

    def _equals_clipped(self, candidates: Array, samples: Array) -> bool:
        """Whether ``candidates`` hold the clipped samples of the last ask (the returned
        array unedited, or a copy of it), so tell learns from the samples themselves: a
        copy of clipped points is no sample of the search distribution (e.g. all on one
        face of the box), and learning from it degenerates the update (XNES' step size
        overflowed). Off the CPU this reads one value, only when other than the very
        array ask returned is told."""
        rows, clipped = self._internal(candidates), self._clip(samples)
        if isinstance(rows, torch.Tensor):
            return rows.shape == clipped.shape and rows.dtype == clipped.dtype \
                and rows.device == clipped.device and torch.equal(rows, clipped)
        return rows.shape == clipped.shape and bool(np.array_equal(rows, clipped))

    def _check_in_space(self, x: Array) -> Array:
        """Refuse told rows outside the encoded box of the space: they decode to no value
        (``best_x`` would hold one, and ``Result.x`` fail to decode). Rows outside by no
        more than rounding (``1e-9`` relative) are returned clipped onto the box, so an
        optimizer that inverts a box transform (pycma) never sees them. Optimizers that
        invert one (``inverts_box``) get the same check against plain bounds."""
        rows = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        lower, upper = self.bounds
        slack = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lower), np.abs(upper)))
        with np.errstate(invalid="ignore"):  # inf - inf in the slack of an open side
            outside = ((rows < lower - slack) | (rows > upper + slack)).any(axis=1)
        if outside.any() and self.space is None:
            raise ValueError(
                f"candidates in rows {np.flatnonzero(outside)[:10].tolist()} lie outside the "
                f"bounds, which {self.name} maps its search onto and cannot map back from "
                "(lower <= x <= upper in every coordinate); tell points inside the bounds, "
                "e.g. as ask() returned them")
        if outside.any():
            raise ValueError(
                f"candidates in rows {np.flatnonzero(outside)[:10].tolist()} lie outside the "
                f"encoded box of the space {self.space!r} (each entry in [lower, upper] of "
                "space.bounds()); tell encodings of values of the space, e.g. as ask() "
                "returned them or space.encode(value)")
        if not ((rows < lower) | (rows > upper)).any():
            return x
        if isinstance(x, torch.Tensor):  # a new tensor: the caller's stays as it was
            low, high = self._bound_tensors(x)
            return torch.maximum(torch.minimum(x, high), low)
        return np.clip(x, lower, upper)

    def min_tell_rows(self) -> int:
        """The fewest candidates a :meth:`tell` accepts (``min_popsize`` unless the
        optimizer needs more, e.g. CMA-ES its ``mu`` parents); fewer are refused
        before anything changes."""
        return max(1, int(self.min_popsize))

    def _bound_penalty(self, fitness: np.ndarray, samples: Array, clipped: Array) -> np.ndarray:
        """``f + spread(f) * sum(((x - clip(x)) / width)^2)``: a sample outside the
        box ranks as its clipped point plus a penalty that grows with the squared
        distance in box widths, scaled by the population's fitness spread (in the
        spirit of pycma's BoundPenalty, Hansen et al. 2009). Keeps the search
        distribution from drifting out of the box (clipping alone rewards it)."""
        lower, upper = self.bounds
        width = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
        gap = self.format.to_numpy(samples) - self.format.to_numpy(clipped)
        distance = ((gap / width) ** 2).sum(axis=1)
        if not np.any(distance > 0):
            return fitness
        spread = float(np.std(fitness))
        return fitness + (spread if spread > 0 else 1.0) * distance

    def _update_best(self, f: np.ndarray, finite: np.ndarray, violation: np.ndarray | None,
                     rows: Array, all_finite: bool) -> None:
        """Keep the best-so-far under feasibility-first order: (violation, f)."""
        if violation is None:
            i = int(np.argmin(f)) if all_finite else int(np.argmin(np.where(finite, f, np.inf)))
            key = (0.0, float(f[i]))
        else:
            candidates = np.flatnonzero(finite)
            i = int(candidates[np.lexsort((f[candidates], violation[candidates]))[0]])
            key = (float(violation[i]), float(f[i]))
        if key < (self._best_violation, self._best_f):
            self._best_violation, self._best_f = key
            row = rows[i]
            self._best_x = row.clone() if isinstance(row, torch.Tensor) else row.copy()

    def _fitness_array(self, fitness: Array, n: int) -> np.ndarray:
        f = as_float64(fitness, "fitness")  # a copy: subclasses may work in place
        if f.ndim == 2 and f.shape[1] == 1:
            f = f[:, 0]
        if f.shape != (n,):
            raise ValueError(
                f"fitness must have shape ({n},), one value per candidate, got {f.shape}"
            )
        return f

    def recommend(self) -> Array:
        """The current best guess: best-so-far point unless the subclass knows better
        (e.g. a distribution mean, clipped into the bounds like every candidate)."""
        return self.format.to_user(self._clip(self._recommend()))

    def _recommend(self) -> Array:
        return copy_array(self._best_x)

    @property
    def best_f(self) -> float:
        """Lowest finite fitness told so far (inf before the first tell)."""
        return self._best_f

    @property
    def best_violation(self) -> float:
        """Total constraint violation of the best-so-far (0: feasible)."""
        return self._best_violation if math.isfinite(self._best_f) else math.inf

    @property
    def best_x(self) -> Array:
        """The candidate with the lowest fitness told so far (a copy)."""
        return self.format.to_user(copy_array(self._best_x))

    def stop(self) -> dict[str, Any]:
        """Why the optimizer would stop; empty while it should go on."""
        return self._stop()

    def _stop(self) -> dict[str, Any]:
        return {}

    # ----- state -----------------------------------------------------------------
    def _rng_state(self) -> Any:
        if isinstance(self._rng, torch.Generator):
            return self._rng.get_state()
        return dict(self._rng.bit_generator.state)

    def _set_rng_state(self, state: Any) -> None:
        if isinstance(self._rng, torch.Generator):
            self._rng.set_state(torch.as_tensor(state, dtype=torch.uint8))
        else:
            self._rng.bit_generator.state = dict(state)

    def state_dict(self) -> dict[str, Any]:
        """A versioned plain dict (tensors, scalars, strings): ``torch.save``-able
        and loadable with ``torch.load(weights_only=True)``."""
        return {
            "format_version": STATE_FORMAT_VERSION,
            "optimizer": self.name,
            "state_version": self.state_version,
            "config": to_plain(self.config()),
            "counters": dict(self.counters),
            "best_f": self._best_f,
            "best_x": to_plain(self._best_x),
            "best_violation": self._best_violation,
            "rng": self._rng_state(),
            "state": self._state_to_plain(),
        }

    def _state_to_plain(self) -> Any:
        return to_plain(self.state)

    def _state_from_plain(self, plain: Any) -> None:
        self.state = from_plain(self.state, plain)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the run then continues exactly as before.

        Raises:
            ValueError: the dict is of another optimizer, version or
                configuration, or has unknown keys.
        """
        required = {"format_version", "optimizer", "state_version", "config", "counters",
                    "best_f", "best_x", "rng", "state"}
        optional = {"best_violation": 0.0}  # keys added later are back-filled
        if not isinstance(state, Mapping):
            raise ValueError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        unknown, missing = set(state) - required - set(optional), required - set(state)
        if unknown or missing:
            raise ValueError(
                f"not a {self.name} state dict: unknown keys {sorted(unknown)}, "
                f"missing keys {sorted(missing)}"
            )
        if state["format_version"] > STATE_FORMAT_VERSION:
            raise ValueError(
                f"state format version {state['format_version']} is newer than this "
                f"nondiff ({STATE_FORMAT_VERSION}); upgrade nondiff to load it"
            )
        if state["optimizer"] != self.name:
            raise ValueError(
                f"state dict is of optimizer {state['optimizer']!r}, not {self.name!r}"
            )
        saved, current = dict(state["config"]), to_plain(self.config())
        for key, value in self.config_added.items():  # saved before the key existed
            if key in current:
                saved.setdefault(key, value)
        differ = sorted(k for k in set(saved) | set(current)
                        if not plain_equal(saved.get(k), current.get(k)))
        if differ:
            detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs {current.get(k)!r}" for k in differ)
            hint = ("; a state saved without the relaxation (nondiff.optim.relaxed) loads into "
                    "registry.create(name, space, relax=[])"
                    if "relax" in current and "relax" not in saved else "")
            raise ValueError(
                f"state dict was made with another configuration ({detail}); construct the "
                f"optimizer with the same arguments before loading{hint}"
            )
        # Build everything first and assign at the end: a failed load changes nothing.
        where = f"{self.name} state dict"
        counters = check_counters(state["counters"], set(self.counters), where)
        if counters["nonfinite"] > counters["evaluations"]:
            raise ValueError(f"{where}: {counters['nonfinite']} non-finite values counted in "
                             f"{counters['evaluations']} evaluations; the state was edited")
        best_f = float(state["best_f"])
        best_violation = float(state.get("best_violation", optional["best_violation"]))
        if math.isnan(best_f) or not best_violation >= 0:
            raise ValueError(f"{where}: best_f={best_f!r} / best_violation={best_violation!r} "
                             "(want a number, and a violation >= 0); the state was edited")
        check_state_values({"best_x": state["best_x"], "state": state["state"]},
                           {"best_x": to_plain(self._best_x), "state": self._state_to_plain()},
                           where, "")
        best_x = from_plain(self._best_x, state["best_x"])
        if tuple(best_x.shape) != (self.dim,):
            raise ValueError(f"{where}: best_x has shape {tuple(best_x.shape)}, want "
                             f"({self.dim},); the state was edited")
        rng_before, state_before = self._rng_state(), self.state
        try:
            self._set_rng_state(state["rng"])
            self._state_from_plain(state["state"])
        except Exception:
            self._set_rng_state(rng_before)
            self.state = state_before
            raise
        self.counters, self._best_f, self._best_violation = counters, best_f, best_violation
        self._best_x = best_x
        self._unclipped = self._asked = None

    # ----- what subclasses implement --------------------------------------------
    def _check_tell(self, n: int, constraints: Array | None) -> None:  # noqa: B027 (a hook)
        """Optimizer-specific checks of a tell of ``n`` candidates, run after the
        base's and before anything changes; raise ValueError to refuse it."""

    @abstractmethod
    def _init_state(self, x0: Array) -> Any:
        """Build the dynamic state (a dataclass of arrays/scalars) from ``x0``."""

    @abstractmethod
    def _ask(self, n: int) -> Array:
        """Sample ``n`` candidates as an internal ``(n, dim)`` array."""

    @abstractmethod
    def _tell(self, x: Array, fitness: np.ndarray, **extra: Any) -> dict[str, float] | None:
        """Update from candidates and float64 fitness with non-finite values
        already replaced by values ranked worst (and, with constraints but no
        own handling, by feasibility-first ranks); return extra metrics.

        ``extra`` holds the keyword data of the tell, plus ``raw_fitness`` and
        ``violation`` (``(n,)``; both ``inf`` for non-finite fitness): the told
        values themselves, for optimizers that compare them across batches.

        ``self._told_asked`` is True when ``x`` holds the samples of the last
        ``_ask`` unchanged (a torch user telling the tensor ask() returned, not
        edited in place since: its version counter tells): an optimizer may then
        reuse what it kept from that ask (e.g. the ES' standard noise) instead of
        recomputing it from ``x``.
        """


def _signature(cls: type[BaseOptimizer]) -> inspect.Signature:
    """``(x0, sigma0, popsize, seed, bounds, *, <fields of cls.Hyperparameters>)``."""
    common = list(inspect.signature(BaseOptimizer.__init__).parameters.values())[1:-1]
    keyword = inspect.Parameter.KEYWORD_ONLY
    fields = [inspect.Parameter(f.name, keyword, default=f.default, annotation=f.type)
              for f in dataclasses.fields(cls.Hyperparameters)]
    return inspect.Signature(common + fields, return_annotation=None)


def _edits_seen(x: torch.Tensor) -> bool:
    """Whether every in-place edit of ``x`` bumps its version counter: off the CPU. A CPU
    tensor can be written through a numpy view (``np.asarray(x)[:] = ...``) unseen, and
    reading a CPU value back costs nothing, so there the optimizers check values instead."""
    return x.device.type != "cpu"


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` are the same numbers in the same memory (``b`` may be a detached
    view of ``a``); ``a`` is kept alive by the caller, so its address is not reused."""
    return a is b or (a.data_ptr() == b.data_ptr() and a.shape == b.shape
                      and a.stride() == b.stride() and a.dtype == b.dtype
                      and a.device == b.device)


def _version_of(x: Array) -> int | None:
    """The in-place version counter of a tensor (bumped by every in-place edit); None
    for numpy arrays and inference-mode tensors, which keep none."""
    if not isinstance(x, torch.Tensor) or x.is_inference():
        return None
    return x._version


def _shape(value: Any) -> Any:
    """The shape of an array-like for an error message ("ragged" when it has none)."""
    try:
        return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)
    except ValueError:
        return "ragged"


def _median(values: np.ndarray) -> float:
    """Median by partition (np.median costs ~30 us per call: too much per generation)."""
    n = values.size
    if n == 0:
        return math.nan
    middle = np.partition(values, [(n - 1) // 2, n // 2])
    return float(0.5 * (middle[(n - 1) // 2] + middle[n // 2]))
