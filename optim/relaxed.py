"""A real-valued optimizer searching any space through a continuous relaxation.

:class:`Relaxed` wraps an optimizer of real vectors (SNES, XNES, CEM, PGPE,
OpenAI-ES, the torch CMA-ES, their IPOP/BIPOP restarts, ...) so that it searches
spaces with integer, categorical, binary and permutation leaves. The inner
optimizer searches a latent real vector; every :meth:`~Relaxed.ask` decodes its
latent rows into the space's ordinary encoding (the rows ``space.decode`` reads,
as every other optimizer returns them). ``registry.create(name, space)`` (and so
``minimize``, ``HybridTrainer`` and ``tune``) wraps a real-only optimizer
automatically when the space has leaves it does not search; the class itself is
``Relaxed(space, inner=SNES)``.

Latent encoding of each leaf, with ``h = width * sigma0`` (``width``: the inner
optimizer's ``relaxed_width``, 1 unless its family sets one; see "Width" below):

==============  =====================  ==========================================
leaf            latent coordinates     decoded by
==============  =====================  ==========================================
Real            the leaf's own          itself (its bounds, log scale as encoded)
Integer(a, b)   1 per entry             one real on ``[a - 0.5, b + 0.5]``, i.e.
                                        ``r(z)`` in ``[-h, h]`` cut into ``b-a+1``
                                        equal bins
Categorical(k)  k scores per entry      argmax of the ``r(z)`` (unordered: no
                                        choice is "between" two others); for
                                        k = 2 one real per entry, its sign
Binary(n)       n                       the sign of ``r(z)``
Permutation(n)  n random keys           argsort of the ``r(z)`` (Bean 1994)
==============  =====================  ==========================================

``r`` reflects the real line into ``[-h, h]`` (a triangle wave of period ``4h``,
``r(z) = z`` on ``[-h, h]``, as pycma's and Hansen's periodic/mirror boundary
handling). Why reflection and ``h = sigma0``:

- *First generations uniform.* The inner optimizer starts at latent 0 with step
  size ``sigma0``; signs, argmaxes of i.i.d. scores and argsorts of i.i.d. keys
  of a symmetric distribution are exactly uniform, and ``N(0, sigma0^2)``
  reflected into ``[-sigma0, sigma0]`` has a density within 3 % of flat
  (``phi(0) + 2 phi(2) = 0.507`` vs ``2 phi(1) + 2 phi(3) = 0.492``), so the
  bins of an Integer are drawn about uniformly too. ``h`` follows ``sigma0``, so
  this holds whatever scale ``sigma0`` has for the real leaves of a mixed space.
- *Late flips.* An unbounded latent that drifts to +50 never flips again, and a
  latent clipped to a box piles samples onto its faces (ties of several scores
  at the upper face make the argmax pick the first choice). Reflected, every
  latent point lies within ``h`` of a decision boundary, wherever the search
  distribution has drifted, and there are no ties; the inner optimizer sees
  its own samples unclipped. What is left is the step size: once it has shrunk
  far below ``h`` a flip needs a many-sigma sample. CMA-ES with margin (Hamano,
  Saito, Nomura, Shirakawa, GECCO 2022, "CMA-ES with margin: lower-bounding
  marginal probability for mixed-integer black-box optimization") keeps a floor
  on that probability by moving the mean; this generic wrapper does not see the
  inner distribution and imposes no floor.

Width. At ``h = sigma0`` a population whose step size has not shrunk cannot
concentrate: with its mean at the best point of a bit's interval (``h``) a sample
still falls on the wrong side about every third time (``P(|z| > 1)``), a categorical
entry as often. CMA-ES (its cumulative step-size adaptation) and CEM (an elite refit)
shrink their step size within a few generations; SNES, XNES, PGPE and OpenAI-ES do
not in the 20-30 generations of a bounded structure search
(:class:`~nondiff.hybrid.trainer.HybridTrainer`'s default ``search_compute=1.0``):
XNES's rate is ``3 (3 + ln d) / (5 d sqrt d)`` (0.06 at d = 15), PGPE's stdev moves
by at most 20 % a generation at rate 0.1, OpenAI-ES keeps its sigma. So their
population stayed near uniform and their decoded mean near chance (issue 17,
op-graph: xnes 0, openai-es 1, pgpe 2 of 5 seeds). A family sets its own default in
the class attribute ``relaxed_width`` (2 for XNES, PGPE and OpenAI-ES: a sample on
the wrong side at a mean at ``h`` then ``P(|z| > 2)`` = 5 %; 1.5 for SNES, whose
per-coordinate rate ``(3 + ln d) / (5 sqrt d)`` is the fastest of the four) and, in
a classmethod ``relaxed_options(h)``, defaults of its own hyperparameters in the
latent (OpenAI-ES: Adam's absolute step ``lr = 0.1 h``). Options given win. Measured
(5 seeds, ``python -m nondiff.benchmarks.hybrid_tasks.acceptance``, trainer
defaults), seeds recovered before -> after on relevant-inputs, nonlinearity, op-graph,
inputs-and-activation: openai-es 1 -> 1, 4 -> 5, 1 -> 3, 3 -> 5; pgpe 2 -> 2, 3 -> 5,
2 -> 5, 3 -> 5; xnes 1 -> 5, 5 -> 5, 0 -> 5, 2 -> 4; snes 3 -> 5, 5 -> 5, 4 -> 5,
4 -> 4; the rows meeting all three issue-17 targets 2 -> 11 of 16 (with the
final selection of main at de96bdc, its seven tasks, these four and one-plus-lambda
without the shift: 12 -> 22 of 35). On
inputs-and-activation (10 seeds) SNES recovered 8 at width 1 (gap 0.6 points), 9 at
1.5 (5.0: one seed closed every gate) and 7 at 2 (14.4: three seeds), on op-graph 7,
10 and 10; PGPE and OpenAI-ES at width 1.5 recovered op-graph on 6 and 4 of 10.
The integer bins are only about uniform at width 1 (0.107 off at 2).

Measured (``python -m nondiff.benchmarks.studies.relaxation``, 5 seeds): the first
generation's choice frequencies are within 0.006 of uniform for every kind at width 1
(integer bins: 0.107 off at width 2); on a moving target (30 bits, 10 flip halfway
through 6000 evaluations) the final best Hamming distance to the new target is
reflected (width 1) / unbounded latent: snes 2.0 / 5.8, xnes 1.8 / 3.4, cem 1.4 / 2.2,
pgpe 0.0 / 6.8, openai-es 5.4 / 13.2, cmaes-torch 3.0 / 5.2, sep-cmaes-torch 6.6 / 8.4
(the CMA-ES runs stop on the flat fitness of the first half: a floor or a restart
would be needed there); at the families' default widths snes 2.6, xnes 0.0, pgpe 1.6,
openai-es 0.0. Two choices as one real with a sign test rather than two
scores (width 1, 30 entries, budget 1000, mean wrong entries, sign vs scores): snes 0.0 vs 1.8,
xnes 2.8 vs 4.2, pgpe 2.0 vs 2.6, cmaes-torch 0.0 vs 1.0, sep-cmaes-torch 0.0 vs 0.0.

Continuous relaxations of discrete variables for continuous optimizers follow
nevergrad's transforms (argmax of scores for unordered choices, a rounded real
for ordered ones: Rapin & Teytaud 2018, "Nevergrad - A gradient-free
optimization platform"); random keys for permutations are Bean (1994), "Genetic
algorithms and random keys for sequencing and optimization", ORSA J. Computing.

Leaves the inner optimizer searches itself stay its own (pycma's CMA-ES keeps its
integer handling of integers, bits and categories, and searches a permutation through
random keys) unless ``relax`` names their kind: ``registry.create("cmaes", space,
relax=["categorical"])`` searches categorical leaves by argmax of scores rather than
as a rounded index 0..k-1, an order the choices do not have (measured in
``benchmarks/studies/relaxation.py``).

Telling rows: the rows of the last ``ask`` (the array itself, a copy, or a
subset of its rows) are told to the inner optimizer as the latent rows they were
decoded from, exactly. Other valid rows (a user's own candidates) are *lifted*
to a latent point that decodes to them: a real is itself, a bit is ``±h/2``, a
categorical entry one-hot scores (``+h/2`` for the choice, ``-h/2`` for the
others), an integer the middle of its bin, a permutation evenly spaced keys in
its order. Rows that decode to no value of the space get the base class's
ValueError before anything changes.

Example:
    >>> import numpy as np
    >>> from nondiff.optim import minimize
    >>> from nondiff.optim.spaces import Binary
    >>> res = minimize(lambda x: -float(np.sum(x)), Binary(12), optimizer="snes",
    ...                budget=1500, seed=0)
    >>> res.x.tolist() == [True] * 12
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from .arrays import Array
from .base import BaseOptimizer, _validate_positive
from .checks import as_float64
from .hyperparameters import Hyperparameters, hyperparameter, real
from .inner_rows import INNER_OWN_METRICS, inner_rows
from .spaces import KINDS, Product, Real, Space, own_start
from .state import from_plain, to_plain

__all__ = ["Relaxed", "RelaxedConfig", "reflect"]


def reflect(z: np.ndarray, h: float) -> np.ndarray:
    """``z`` reflected into ``[-h, h]``: a triangle wave of period ``4h`` that is the
    identity on ``[-h, h]`` (and ``reflect(z + 2h) = -reflect(z)``).

    Example:
        >>> from nondiff.optim.relaxed import reflect
        >>> reflect(np.array([0.5, 1.5, -2.5, 4.0]), 1.0).tolist()
        [0.5, 0.5, 0.5, 0.0]
    """
    return h - np.abs(np.mod(z + h, 4 * h) - 2 * h)


DISCRETE = tuple(k for k in KINDS if k != "real")


def _kinds(name: str, value: Any) -> tuple[str, ...]:
    kinds = (value,) if isinstance(value, str) else value
    try:
        kinds = tuple(sorted(set(kinds)))
    except TypeError:
        kinds = None
    if kinds is None or not set(kinds) <= set(DISCRETE):
        raise ValueError(f"{name} must be a list of leaf kinds among {list(DISCRETE)} (to "
                         f"search through the relaxation even where the optimizer has its "
                         f"own handling, e.g. relax=['categorical'] for CMA-ES), got {value!r}")
    return kinds


@dataclasses.dataclass(frozen=True)
class RelaxedConfig(Hyperparameters):
    """The wrapper's own hyperparameters: ``width``, the half-width ``h`` of the latent
    interval of a discrete coordinate in units of ``sigma0`` (module docstring);
    ``relax``, leaf kinds to relax even if the inner optimizer searches them itself
    (the kinds it does not search are always relaxed)."""

    width: float = hyperparameter(1.0, real(low=0.0, high=1e6, low_open=True))
    relax: tuple[str, ...] = hyperparameter((), _kinds)


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """One leaf's place: its slice of the encoding and of the latent vector."""

    kind: str  # the leaf's kind, or "native": passed to the inner optimizer as it is
    space: Space
    encoded: slice
    latent: slice
    count: int  # entries (or permutation length)
    cardinality: int  # choices per entry (1 for reals and permutations)
    offset: int = 0


def _layout(space: Space, native: frozenset[str]) -> list[_Leaf]:
    leaves, start = [], 0
    for _, leaf, where in space.leaves():
        size = where.stop - where.start
        k = int(getattr(leaf, "cardinality", 1)) if leaf.kind in ("categorical", "integer") else 1
        kind = "native" if leaf.kind in native else leaf.kind
        width = size * k if kind == "categorical" and k > 2 else size  # k = 2: one sign
        leaves.append(_Leaf(kind, leaf, where, slice(start, start + width), size, k,
                            int(getattr(leaf, "offset", 0))))
        start += width
    return leaves


def _inner_class(inner: Any) -> type[BaseOptimizer]:
    """The inner optimizer's class (by class: names go through ``registry.create``, which
    imports this module, so this module does not look names up)."""
    if not (isinstance(inner, type) and issubclass(inner, BaseOptimizer)) \
            or issubclass(inner, Relaxed) or "real" not in inner.supported_spaces:
        raise ValueError(
            f"inner must be an optimizer class of real vectors (e.g. nondiff.optim.SNES) to "
            f"search a relaxation, got {inner!r}; by name, registry.create(name, space) "
            "relaxes where needed")
    return inner


class Relaxed(BaseOptimizer):
    """An optimizer of real vectors searching any space (module docstring).

    Args:
        x0: the space to search (a :class:`~nondiff.optim.spaces.Space`).
        sigma0: the inner optimizer's initial step size; the real leaves see it as
            it is, the discrete ones in units of ``h = width * sigma0``.
        popsize, seed: the inner optimizer's (default: its own default popsize
            for the latent dimension).
        bounds: must be None (bounds come from the space).
        inner: the optimizer class of the latent vector, one that handles real
            vectors (by name: ``registry.create(name, space)``).
        width: latent half-width of a discrete coordinate, in units of ``sigma0``
            (default: the inner class's ``relaxed_width``, else 1; module docstring).
        relax: leaf kinds to relax even where the inner optimizer searches them
            itself (e.g. ``["categorical"]`` for CMA-ES); the others stay its own.
        **options: hyperparameters of the inner optimizer (over the defaults of
            its ``relaxed_options(h)``, where the class has one).

    ``name`` is the inner optimizer's (``"snes"``): results and checkpoints carry
    the name asked for. ``state_dict()`` holds the inner optimizer's state dict and
    the latent and decoded rows of the last ask; loading continues bit for bit.
    """

    name: ClassVar[str] = "relaxed"
    backend: ClassVar[str] = "numpy"
    handles_bounds: ClassVar[bool] = True  # decoded rows always lie in the space
    supported_spaces: ClassVar[frozenset[str]] = frozenset(KINDS)
    config_space: ClassVar[bool] = True
    Hyperparameters = RelaxedConfig
    hparams: RelaxedConfig

    def __init__(self, x0: Space, sigma0: float = 1.0, popsize: int | None = None,
                 seed: int | None = None, bounds: tuple[Any, Any] | None = None, *,
                 inner: type[BaseOptimizer], width: float | None = None,
                 relax: Any = (), **options: Any) -> None:
        cls = _inner_class(inner)
        if width is None:  # the family's own (module docstring, "Width")
            width = getattr(cls, "relaxed_width", 1.0)
        hparams = RelaxedConfig(width=width, relax=relax)
        if not isinstance(x0, Space):
            raise ValueError(f"{cls.name} relaxed searches a space (Binary, Categorical, ...); "
                             f"got x0 of type {type(x0).__name__}: pass a Space, or create "
                             f"{cls.name!r} on the real vector itself")
        if bounds is not None:
            raise ValueError("bounds come from the space; pass either bounds or a space")
        Relaxed._check_space(x0)  # a constant space: nothing to search
        _validate_positive("sigma0", sigma0)
        self.h = hparams.width * float(sigma0)
        native = cls.supported_spaces - {"real"} - set(hparams.relax)
        self.layout = _layout(x0, frozenset(native))
        z0, lower, upper = self._latent_start(x0)
        self.latent_bounds = (lower, upper)
        # No bounds for the inner optimizer: it sees its own samples, never clipped ones
        # (a clip it cannot redo after a resume); the wrapper clips the real leaves and
        # penalizes leaving their box (_latent_penalty). Leaves it searches itself (e.g.
        # CMA-ES's integers with relax=["categorical"]) reach it as they are, in a space.
        start: Any = z0
        self._native = any(leaf.kind == "native" for leaf in self.layout)
        if self._native:
            start = _Latent({f"x{i}": leaf.space if leaf.kind == "native" else
                             Real(size=leaf.latent.stop - leaf.latent.start)
                             for i, leaf in enumerate(self.layout)}, z0)
        hook = getattr(cls, "relaxed_options", None)  # the family's defaults in the latent
        defaults = hook(self.h) if callable(hook) else {}
        with self._quiet():
            self.inner = cls(start, sigma0=sigma0, popsize=popsize, seed=seed,
                             **{**defaults, **options})
        self.inner_class_used = cls
        self.options = dict(options)
        self.name = cls.name
        self.handles_constraints = cls.handles_constraints
        self.latent_dim = int(z0.size)
        self._popsize0 = int(self.inner.popsize)
        super().__init__(x0, sigma0, self.inner.popsize, self.inner.seed, None, width=width,
                         relax=relax)

    def _quiet(self) -> Any:
        """pycma's integer handling computes ``inf mod 1`` for the open latent bounds
        beside its integer variables (a NaN it then compares, harmlessly): silenced."""
        return np.errstate(invalid="ignore") if self._native else contextlib.nullcontext()

    def _latent_start(self, space: Space) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The inner optimizer's x0 and bounds: reals as the space has them, 0 and
        an open interval for every discrete coordinate (a uniform first generation), or,
        where the space names its own start (an ``initial()`` other than the middle
        of its box, e.g. a warm start), that start's lifted latent point (its choice
        ahead by ``h/2``)."""
        start, (low, high) = space.initial(), space.bounds()
        size = sum(leaf.latent.stop - leaf.latent.start for leaf in self.layout)
        z0, lower, upper = np.zeros(size), np.full(size, -np.inf), np.full(size, np.inf)
        self.latent_dim = size
        lifted = self.lift(start[None])[0] if own_start(space) else None
        for leaf in self.layout:
            if leaf.kind in ("real", "native"):
                z0[leaf.latent] = start[leaf.encoded]
            elif lifted is not None:
                z0[leaf.latent] = lifted[leaf.latent]
            if leaf.kind == "real":
                lower[leaf.latent], upper[leaf.latent] = low[leaf.encoded], high[leaf.encoded]
        return z0, lower, upper

    def config(self) -> dict[str, Any]:
        per_run = {"dim", "sigma0", "popsize", "seed", "bounds"}
        inner = {k: v for k, v in self.inner.config().items() if k not in per_run}
        # the popsize it was built with: an IPOP/BIPOP inner optimizer changes popsize
        # at its restarts, and a fresh optimizer built alike must still load the state
        return {**super().config(), "popsize": self._popsize0,
                "inner": self.inner_class_used.name, "latent_dim": self.latent_dim,
                "inner_config": inner}

    def min_tell_rows(self) -> int:
        return self.inner.min_tell_rows()

    def _min_popsize_reason(self) -> str:
        return self.inner._min_popsize_reason()

    # ----- the encoding --------------------------------------------------------------
    def decode_latent(self, z: np.ndarray) -> np.ndarray:
        """``(n, dim)`` rows of the space's encoding from ``(n, latent_dim)`` latent rows."""
        z = np.asarray(z, dtype=np.float64)
        out = np.empty((z.shape[0], self.dim))
        h = self.h
        for leaf in self.layout:
            part = z[:, leaf.latent]
            if leaf.kind == "real":
                low, high = leaf.space.bounds()
                out[:, leaf.encoded] = np.clip(part, low, high)
                continue
            if leaf.kind == "native":
                out[:, leaf.encoded] = part
                continue
            r = reflect(part, h)
            if leaf.kind == "binary":
                values = (r > 0).astype(np.float64)
            elif leaf.kind == "categorical" and leaf.cardinality == 2:
                values = (r > 0).astype(np.float64)  # two choices: one real, its sign
            elif leaf.kind == "categorical":
                values = r.reshape(len(z), leaf.count, leaf.cardinality).argmax(axis=2)
            elif leaf.kind == "integer":
                bins = np.floor((r + h) / (2 * h) * leaf.cardinality)
                values = leaf.offset + np.clip(bins, 0, leaf.cardinality - 1)
            else:  # permutation: random keys
                values = np.argsort(r, axis=1, kind="stable")
            out[:, leaf.encoded] = values
        return out

    def lift(self, x: np.ndarray, rows: Any = None) -> np.ndarray:
        """A latent row for each encoded row of ``x`` that decodes to it (module
        docstring); ValueError for a row that decodes to no value of the space
        (named by its index in ``rows``, default ``range(len(x))``)."""
        x = np.asarray(x, dtype=np.float64)
        z = np.empty((x.shape[0], self.latent_dim))
        h = self.h
        names = range(len(x)) if rows is None else rows
        for j, (i, row) in enumerate(zip(names, x, strict=True)):
            for leaf in self.layout:
                part = row[leaf.encoded]
                try:
                    leaf.space.decode(part)
                except ValueError as error:
                    raise ValueError(f"candidate row {i} is no value of the space: {error}; "
                                     "tell rows as ask() returned them or "
                                     "space.encode(value)") from None
                values = np.rint(part)
                if leaf.kind == "native":
                    z[j, leaf.latent] = values if leaf.space.kind != "real" else part
                elif leaf.kind == "real":
                    z[j, leaf.latent] = part
                elif leaf.kind == "binary" or (leaf.kind == "categorical"
                                               and leaf.cardinality == 2):
                    z[j, leaf.latent] = np.where(values > 0.5, h / 2, -h / 2)
                elif leaf.kind == "categorical":
                    scores = np.full((leaf.count, leaf.cardinality), -h / 2)
                    scores[np.arange(leaf.count), values.astype(np.int64)] = h / 2
                    z[j, leaf.latent] = scores.ravel()
                elif leaf.kind == "integer":
                    z[j, leaf.latent] = -h + (values - leaf.offset + 0.5) * 2 * h / leaf.cardinality
                else:
                    keys = np.empty(leaf.count)
                    keys[values.astype(np.int64)] = -h + (np.arange(leaf.count) + 0.5) \
                        * 2 * h / leaf.count
                    z[j, leaf.latent] = keys
        return z

    # ----- ask / tell ---------------------------------------------------------------
    def _init_state(self, x0: np.ndarray) -> dict[str, np.ndarray]:
        return {"latent": np.zeros((0, self.latent_dim)), "asked": np.zeros((0, self.dim))}

    def _ask(self, n: int) -> np.ndarray:
        with self._quiet():
            latent = self.inner.ask(n)
        decoded = self.decode_latent(as_float64(latent))
        self._latent_asked = latent  # the very array the inner returned: told back as is
        self.state = {"latent": as_float64(latent).copy(), "asked": decoded.copy()}
        return decoded

    def tell(self, candidates: Array, fitness: Array, **extra: Any) -> dict[str, float]:
        """Tell the inner optimizer the latent rows of ``candidates`` (module docstring)."""
        self._told_latent = self._latent_of(candidates)
        try:
            metrics = super().tell(candidates, fitness, **extra)
        finally:
            self._told_latent = None
        self.popsize = int(self.inner.popsize)  # restarts change it
        return metrics

    def _latent_of(self, candidates: Array) -> Any:
        """The latent rows to tell for ``candidates`` (:func:`~nondiff.optim.inner_rows.
        inner_rows`); None where the base's checks will refuse them."""
        return inner_rows(candidates, self.bounds, self.state["asked"], self.state["latent"],
                          getattr(self, "_latent_asked", None), self.lift)

    def _tell(self, x: np.ndarray, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        latent = self._told_latent
        if latent is None:  # pragma: no cover - the base refused such rows already
            latent = self.lift(x)
        forward = {k: v for k, v in extra.items() if k not in ("raw_fitness", "violation")}
        with self._quiet():
            metrics = self.inner.tell(latent, self._latent_penalty(fitness, as_float64(latent)),
                                      **forward)
        self.state = {"latent": np.zeros((0, self.latent_dim)), "asked": np.zeros((0, self.dim))}
        self._latent_asked = None
        return {k: v for k, v in metrics.items() if k not in INNER_OWN_METRICS}

    def _latent_penalty(self, fitness: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``f + spread(f) * sum(((z - clip(z)) / width)^2)`` over the real leaves'
        coordinates: the base class's bound penalty (after pycma's BoundPenalty), so the
        inner search does not drift out of a box where clipping makes it flat."""
        lower, upper = self.latent_bounds
        gap = z - np.clip(z, lower, upper)
        if not np.any(gap):
            return fitness
        width = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
        spread = float(np.std(fitness))
        return fitness + (spread if spread > 0 else 1.0) * ((gap / width) ** 2).sum(axis=1)

    def stop(self) -> dict[str, Any]:
        """The inner optimizer's reasons to stop."""
        return self.inner.stop()

    def _recommend(self) -> np.ndarray:
        """The inner optimizer's recommendation (e.g. its mean), decoded."""
        return self.decode_latent(as_float64(self.inner.recommend())[None, :])[0]

    # ----- checkpoints ---------------------------------------------------------------
    def _state_to_plain(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "latent": to_plain(self.state["latent"]),
                "asked": to_plain(self.state["asked"])}

    def _state_from_plain(self, plain: Any) -> None:
        if not isinstance(plain, Mapping) or set(plain) != {"inner", "latent", "asked"}:
            raise ValueError(f"not a relaxed {self.name} state: expected keys "
                             "['asked', 'inner', 'latent']")
        latent = from_plain(np.zeros(0), plain["latent"]).reshape(-1, self.latent_dim)
        asked = from_plain(np.zeros(0), plain["asked"]).reshape(-1, self.dim)
        if len(latent) != len(asked) or not np.isfinite(latent).all():
            raise ValueError(f"corrupted relaxed {self.name} state: latent rows "
                             f"{latent.shape} and asked rows {asked.shape}")
        with self._quiet():
            self.inner.load_state_dict(plain["inner"])
        self.state = {"latent": latent, "asked": asked}
        self._latent_asked = None
        self.popsize = int(self.inner.popsize)


class _Latent(Product):
    """The inner optimizer's space when some leaves stay its own: unbounded reals for
    the relaxed and real leaves, the native leaves as they are; starts at ``start``."""

    def __init__(self, spaces: Mapping[str, Space], start: np.ndarray) -> None:
        super().__init__(spaces)
        self._start = np.asarray(start, dtype=np.float64).copy()

    def initial(self) -> np.ndarray:
        return self._start.copy()


def relaxation_needed(cls: type[BaseOptimizer], space: Any) -> bool:
    """Whether ``registry.create`` wraps ``cls`` in :class:`Relaxed` for ``space``: a
    space with leaves ``cls`` does not search, and ``cls`` searches real vectors."""
    from .spaces import leaf_kinds

    return isinstance(space, Space) and not space.is_constant and "real" in cls.supported_spaces \
        and not leaf_kinds(space) <= cls.supported_spaces

