"""Evolutionary search on discrete spaces: the (1+lambda) EA and a genetic algorithm.

Both search the encoding of a :class:`~nondiff.optim.spaces.Space` made of Binary, Integer,
Categorical and Permutation leaves (any :class:`~nondiff.optim.spaces.Product` of them),
with the operators of :mod:`nondiff.optim.ga_operators`:

(1+lambda) EA (Droste, Jansen, Wegener 2002 for lambda = 1; Doerr & Doerr for the
offspring population). With parent ``x`` and ``n = dim``:

    y_1 .. y_lambda = mutate(x)     every entry changes w.p. 1/n (flat entries to
                                    another value, permutations by 1 + Poisson(1)
                                    swaps), at least one entry ("shift",
                                    unless shift=False)                   # Eq. (1)
    x <- argmin_i f(y_i)  if  f(y_i) <= f(x)   (ties accepted)            # Eq. (2)

Accepting ties lets the parent drift across plateaus (LeadingOnes, the noop slots
of a sorting network). With plain standard bit mutation the (1+1) EA needs about
``e n ln n`` evaluations on OneMax and ``(e - 1) n^2 / 2 ~ 0.86 n^2`` on LeadingOnes;
the shift makes a lone improving flip twice as likely late in the run and roughly
halves both (``benchmarks/discrete_search.py``).

Genetic algorithm (Goldberg 1989; generational with elitism, De Jong 1975). With
population ``P`` of size ``mu`` (kept sorted best first):

    parents  = tournament(P, k) twice per pair                            # Eq. (3)
    children = crossover(parents) w.p. p_c (uniform / one-point on flat
               entries, OX1 on permutations), else copies; then mutate    # Eq. (4)
    P <- best mu of  (told candidates) + (best max(e, mu - told) of P)    # Eq. (5)

so the told batch (whatever it is: ``tell`` accepts any candidates) becomes the
parent pool of the next generation together with the ``e`` elites; ties prefer the
told candidates. Order of comparison everywhere: total constraint violation, then
fitness; NaN/inf fitness ranks after every evaluated point.

Re-evaluation (both): an elitist keeps the fitness its parent (elite) had when it was
evaluated. On a noisy objective — a structure scored on one mini-batch, or under
weights that keep training (:class:`~nondiff.hybrid.trainer.HybridTrainer`) — that
value is stale: a lucky draw holds the parent against every better child. Re-evaluating
the parent each generation is the standard remedy (Arnold & Beyer 2002; Qian, Yu, Zhou
2018). ``tell(x, f, incumbent=r, incumbent_fitness=g)`` with ``r`` the current
:meth:`recommend` and ``g`` its fitness now replaces the stored value before the
comparison (ignored when ``r`` is no longer the parent / best member);
``reevaluates_incumbent = True`` tells a caller it may send them.

Sources:
    - S. Droste, T. Jansen, I. Wegener, "On the analysis of the (1+1) evolutionary
      algorithm", Theoretical Computer Science 276(1-2):51-81, 2002.
    - T. Jansen, K. A. De Jong, I. Wegener, "On the choice of the offspring population
      size in evolutionary algorithms", Evolutionary Computation 13(4), 2005, and
      B. Doerr, C. Doerr, "Theory of parameter control for discrete black-box
      optimization", in Theory of Evolutionary Computation, Springer 2020 (the
      (1+lambda) EA).
    - E. Carvalho Pinto, C. Doerr, "Towards a more practice-aware runtime analysis of
      evolutionary algorithms", arXiv, 2018 (the "shift" mutation).
    - D. E. Goldberg, "Genetic Algorithms in Search, Optimization and Machine
      Learning", Addison-Wesley 1989; K. A. De Jong, PhD thesis, 1975 (elitism).
    - L. Davis, "Applying adaptive algorithms to epistatic domains", IJCAI 1985 (OX1).
    - Y. Jin, J. Branke, "Evolutionary optimization in uncertain environments — a
      survey", IEEE Trans. Evolutionary Computation 9(3), 2005 (implicit averaging:
      a population that holds copies re-evaluates them).
    - D. V. Arnold, H.-G. Beyer, "Local performance of the (1+1)-ES in a noisy
      environment", IEEE Trans. Evolutionary Computation 6(1), 2002; C. Qian, Y. Yu,
      Z.-H. Zhou, "Analyzing evolutionary optimization in noisy environments",
      Evolutionary Computation 26(1), 2018 (re-evaluating the parent).

Example:
    >>> import numpy as np
    >>> from nondiff.optim.ga import GeneticAlgorithm, OnePlusLambdaEA
    >>> from nondiff.optim.spaces import Binary
    >>> ea = OnePlusLambdaEA(Binary(30), seed=0)
    >>> while ea.best_f > -30:  # OneMax, maximized: minimize -|x|
    ...     x = ea.ask()
    ...     _ = ea.tell(x, -x.sum(axis=1))
    >>> ea.counters["evaluations"] < 1000, ea.recommend().tolist() == [1.0] * 30
    (True, True)
    >>> ga = GeneticAlgorithm(Binary(30), popsize=20, seed=0)
    >>> for _ in range(60):
    ...     x = ga.ask()
    ...     _ = ga.tell(x, -x.sum(axis=1))
    >>> ga.best_f
    -30.0
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from .base import Array, BaseOptimizer
from .ga_operators import (
    CROSSOVERS,
    Layout,
    crossover,
    mutate,
    rank_keys,
    repair,
    tournament,
)
from .hyperparameters import Hyperparameters, boolean, choice, hyperparameter, integer, real

__all__ = ["DiscreteEvolutionConfig", "GAConfig", "GAState", "GeneticAlgorithm",
           "OnePlusLambdaEA", "OnePlusLambdaState"]

DISCRETE_KINDS = frozenset({"binary", "integer", "categorical", "permutation"})


@dataclass(frozen=True)
class DiscreteEvolutionConfig(Hyperparameters):
    """Hyperparameters of :class:`OnePlusLambdaEA` (and the base of :class:`GAConfig`)."""

    mutation_rate: float = hyperparameter(1.0, real(low=0.0, low_open=True))
    shift: bool = hyperparameter(True, boolean())

    def resolve(self, dim: int, popsize: int) -> DiscreteEvolutionConfig:
        if self.mutation_rate > dim:
            raise ValueError(f"mutation_rate must be in (0, dim={dim}] (chi/dim is a "
                             f"probability), got {self.mutation_rate!r}")
        return self


@dataclass(frozen=True)
class GAConfig(DiscreteEvolutionConfig):
    """Hyperparameters of :class:`GeneticAlgorithm` (see its arguments)."""

    tournament_size: int = hyperparameter(3, integer(1))
    crossover: str = hyperparameter("uniform", choice(CROSSOVERS))
    crossover_rate: float = hyperparameter(0.9, real(low=0.0, high=1.0))
    elitism: int | None = hyperparameter(None, integer(0, optional=True))

    def resolve(self, dim: int, popsize: int) -> GAConfig:
        resolved = super().resolve(dim, popsize)
        if self.elitism is None:
            return replace(resolved, elitism=max(1, popsize // 4))
        if self.elitism > popsize:
            raise ValueError(f"elitism must be in [0, popsize={popsize}], got {self.elitism!r}; "
                             "pass a smaller elitism or a larger popsize")
        return resolved


class DiscreteEvolution(BaseOptimizer):
    """Shared parts of the discrete evolutionary algorithms (not registered itself).

    ``x0`` must be a :class:`~nondiff.optim.spaces.Space`; ``sigma0`` is accepted for the
    common signature and unused. ``mutation_rate`` is ``chi`` in the per-entry
    mutation probability ``chi / dim``, in ``(0, dim]``.
    """

    backend: ClassVar[str] = "numpy"
    handles_bounds: ClassVar[bool] = True  # the operators only produce encodings of the space
    supported_spaces: ClassVar[frozenset[str]] = DISCRETE_KINDS
    layout: Layout

    Hyperparameters = DiscreteEvolutionConfig
    config_space = True
    config_added: ClassVar[dict[str, Any]] = {"shift": True}  # states saved before shift=
    reevaluates_incumbent: ClassVar[bool] = True  # tell(..., incumbent=, incumbent_fitness=)

    def _start(self, x0: np.ndarray) -> None:
        assert self.space is not None  # the base rejected a plain x0 (no "real" support)
        self.layout = Layout.of(self.space)
        self._fallback = repair(x0[None], self.layout)[0]  # a valid point before any tell

    def _mutate(self, x: np.ndarray) -> np.ndarray:
        return mutate(x, self.layout, self._rng, self.hparams.mutation_rate,
                      shift=self.hparams.shift)

    def _fresh_incumbent(self, best: np.ndarray, extra: dict[str, Any]) -> float | None:
        """The re-evaluated fitness of ``best`` (the parent / best member) when the tell
        carries one for it (see the module docstring), NaN/inf as inf; else None."""
        if "incumbent_fitness" not in extra or "incumbent" not in extra:
            return None
        told = np.asarray(extra["incumbent"], dtype=np.float64).reshape(-1)
        if told.shape != best.shape or not np.array_equal(told, best):
            return None
        value = float(np.asarray(extra["incumbent_fitness"], dtype=np.float64).reshape(()))
        return value if np.isfinite(value) else np.inf

    @staticmethod
    def _told_keys(fitness: np.ndarray, extra: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(violation, fitness) as told: comparable with points of earlier batches."""
        if "raw_fitness" not in extra:  # _tell called directly: ranks as given
            return np.zeros(len(fitness)), fitness
        return extra["violation"], extra["raw_fitness"]


# ----- (1+lambda) EA -------------------------------------------------------------------
@dataclass
class OnePlusLambdaState:
    parent: np.ndarray
    parent_f: float = np.inf
    parent_violation: float = np.inf
    evaluated: bool = False
    accepted: int = 0  # generations in which the parent was replaced


class OnePlusLambdaEA(DiscreteEvolution):
    """The (1+lambda) EA with standard bit mutation, Eqs. (1)-(2).

    The initial parent is drawn uniformly from the space; the first ``ask`` returns
    its mutants (themselves uniform on Binary spaces), so no evaluation is spent on
    it. ``recommend()`` is the current parent (the best point, the latest among
    ties); ``best_x`` the first point that reached the best fitness.

    Args:
        x0: the search space (Binary, Integer, Categorical, Permutation, Products).
        sigma0: unused (common signature).
        popsize: lambda, offspring per generation (default 1: the (1+1) EA, the
            fastest on OneMax and LeadingOnes per evaluation; larger lambda
            parallelizes evaluations at a modest cost in evaluations).
        seed: seed of the generator.
        bounds: must be None (the space bounds the search).
        mutation_rate: chi, each entry mutates w.p. chi / dim (default 1).
        shift: True (default): a child that no entry mutated in gets one entry
            changed, Eq. (1). False: plain standard bit mutation, so about
            ``(1 - chi / dim)^dim`` of the children (0.30 at dim 3 and chi 1, about
            ``e^-chi`` for a large dim) are copies of the parent.
            :class:`~nondiff.hybrid.trainer.HybridTrainer` builds it with
            ``shift=False`` (as the GA): its weights train under the generation's
            children, so with the shift they never train under the parent once the
            fair share is gone, and forget it until a child beats its re-evaluation
            (issue 17, op-graph seed 1: the right graph held as parent from step 61 to
            179, its re-evaluated loss rising from 0.43 to 0.70, then lost); copies
            train and re-score it. Acceptance suite, 5 seeds, seeds recovered / gap
            points with and without the shift: relevant-inputs 3 / 6.7 -> 5 / 0.9,
            nonlinearity 5 / 1.9 -> 4 / 1.4, op-graph 4 / 3.4 -> 4 / 5.7 (10 seeds:
            8 / 7.7 -> 8 / 4.8), inputs-and-activation 5 / 0.6 -> 5 / 0.2; with the
            final selection of main at de96bdc also op-graph 4 -> 5, program 0 -> 1,
            but routing 3 -> 1 (gap 10.8 -> 13.8).

    Example:
        >>> from nondiff.optim.ga import OnePlusLambdaEA
        >>> from nondiff.optim.spaces import Permutation
        >>> ea = OnePlusLambdaEA(Permutation(6), popsize=4, seed=1)
        >>> for _ in range(200):  # sort: count the misplaced items
        ...     x = ea.ask()
        ...     _ = ea.tell(x, (x != range(6)).sum(axis=1))
        >>> ea.recommend().tolist()
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """

    name = "one-plus-lambda"

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return 1

    def _init_state(self, x0: np.ndarray) -> OnePlusLambdaState:
        self._start(x0)
        assert self.space is not None
        return OnePlusLambdaState(parent=self.space.sample(self._rng, 1)[0])

    def _ask(self, n: int) -> np.ndarray:
        return self._mutate(np.repeat(self.state.parent[None], n, axis=0))

    def _tell(self, x: np.ndarray, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st = self.state
        violation, f = self._told_keys(fitness, extra)
        fresh = self._fresh_incumbent(st.parent, extra) if st.evaluated else None
        if fresh is not None:
            st.parent_f = fresh  # re-evaluated now: a stale lucky value no longer blocks
        i = int(rank_keys(f, violation).argmin())  # the first among equal best children
        accept = not st.evaluated or (violation[i], f[i]) <= (st.parent_violation,
                                                                st.parent_f)  # Eq. (2)
        if accept:
            st.parent = repair(x[i:i + 1], self.layout)[0]
            st.parent_f, st.parent_violation = float(f[i]), float(violation[i])
            st.evaluated, st.accepted = True, st.accepted + 1
        return {"parent_f": st.parent_f, "accepted": float(accept)}

    def _recommend(self) -> Array:
        return self.state.parent.copy()


# ----- genetic algorithm ---------------------------------------------------------------
@dataclass
class GAState:
    population: np.ndarray  # (mu, dim), best first; (0, dim) before the first tell
    fitness: np.ndarray  # (mu,)
    violation: np.ndarray  # (mu,)
    generation: int = 0


class GeneticAlgorithm(DiscreteEvolution):
    """A generational GA with tournament selection, crossover, mutation and elitism,
    Eqs. (3)-(5).

    The first ``ask`` returns ``n`` uniform samples of the space (the initial
    population); each later ``ask(n)`` returns ``n`` offspring of the population.
    ``tell`` forms the next population from the told candidates and the elites,
    Eq. (5). ``recommend()`` is the best member of the population.

    Args:
        x0: the search space (Binary, Integer, Categorical, Permutation, Products).
        sigma0: unused (common signature).
        popsize: mu, population size and offspring per ``ask``, >= 2 (default
            ``max(10, 4 + floor(3 ln dim))``).
        seed: seed of the generator.
        bounds: must be None.
        tournament_size: k >= 1 entrants per tournament (default 3).
        crossover: ``"uniform"`` (default) or ``"one-point"`` on the flat entries;
            permutations always use OX1.
        crossover_rate: probability p_c that a pair is recombined (default 0.9).
        elitism: e, best members kept from the previous population, in
            [0, popsize] (default ``max(1, popsize // 4)``: more elites speed up
            OneMax/LeadingOnes, fewer keep the diversity that crossover needs).
        mutation_rate: chi, each entry of a child mutates w.p. chi / dim (default 1).
        shift: True (default): a child that no entry mutated in gets one entry
            changed (the (1+lambda) EA's "shift": no child equals its parents, no
            evaluation is spent on a copy: on exact objectives it needs fewer
            evaluations, e.g. Jump-30 and LeadingOnes-100 in
            ``benchmarks/discrete_search.py``). False: plain standard bit mutation,
            so about ``(1 - chi / dim)^dim`` (37 %) of the uncrossed children are
            copies. On a noisy objective the copies are what lets the population
            converge: the best genotypes are held several times and evaluated anew
            every generation (implicit averaging, Jin & Branke 2005); with the shift
            every child of a converged population is a neighbour of its best, and the
            best of each generation is whichever neighbour drew the luckiest batch.
            :class:`~nondiff.hybrid.trainer.HybridTrainer` (structures scored on
            mini-batches) builds its GA with ``shift=False``: on its acceptance suite
            (5 seeds, bounded search) the GA recovered the 3 relevant of 12 inputs on 2
            seeds with the shift and 4 without, inputs-and-activation 3 -> 5.

    Example:
        >>> from nondiff.optim.ga import GeneticAlgorithm
        >>> from nondiff.optim.spaces import Categorical, Product, Permutation
        >>> space = Product(op=Categorical(["a", "b", "c"], size=4), order=Permutation(5))
        >>> ga = GeneticAlgorithm(space, popsize=16, seed=2)
        >>> target = space.encode({"op": ["c", "a", "b", "c"], "order": [4, 3, 2, 1, 0]})
        >>> for _ in range(60):
        ...     x = ga.ask()
        ...     _ = ga.tell(x, (x != target).sum(axis=1))
        >>> space.decode(ga.recommend())["op"]
        ['c', 'a', 'b', 'c']
    """

    min_popsize = 2  # parents to select and cross
    name = "ga"

    Hyperparameters = GAConfig
    hparams: GAConfig

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return max(10, super().default_popsize(dim))

    def _init_state(self, x0: np.ndarray) -> GAState:
        self._start(x0)
        return GAState(population=np.zeros((0, self.dim)), fitness=np.zeros(0),
                       violation=np.zeros(0))

    def _ask(self, n: int) -> np.ndarray:
        st = self.state
        if len(st.population) == 0:  # the initial population
            assert self.space is not None
            return self.space.sample(self._rng, n)
        pairs = (n + 1) // 2
        ranks = np.arange(len(st.population))  # the population is kept sorted
        hp = self.hparams
        chosen = tournament(ranks, 2 * pairs, hp.tournament_size, self._rng)  # Eq. (3)
        a, b = st.population[chosen[:pairs]], st.population[chosen[pairs:]]
        c1, c2 = crossover(a, b, self.layout, self._rng, hp.crossover)  # Eq. (4)
        keep = self._rng.random(pairs) >= hp.crossover_rate  # pairs left uncrossed
        c1[keep], c2[keep] = a[keep], b[keep]
        children = np.concatenate([c1, c2])[:n]
        return self._mutate(children)

    def _tell(self, x: np.ndarray, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st = self.state
        violation, f = self._told_keys(fitness, extra)
        fresh = self._fresh_incumbent(st.population[0], extra) if len(st.population) else None
        if fresh is not None:  # the best member re-evaluated: re-rank with its value now
            st.fitness[0] = fresh
            order = np.argsort(rank_keys(st.fitness, st.violation), kind="stable")
            st.population, st.fitness = st.population[order], st.fitness[order]
            st.violation = st.violation[order]
        m = max(self.hparams.elitism, self.popsize - len(x))  # Eq. (5)
        pool = np.concatenate([repair(x, self.layout), st.population[:m]])
        pool_f = np.concatenate([f, st.fitness[:m]])
        pool_v = np.concatenate([violation, st.violation[:m]])
        best = np.argsort(rank_keys(pool_f, pool_v))[: self.popsize]  # told first on ties
        st.population, st.fitness, st.violation = pool[best], pool_f[best], pool_v[best]
        st.generation += 1
        diversity = float((st.population != st.population[0]).mean())
        return {"generation": float(st.generation), "diversity": diversity}

    def _recommend(self) -> Array:
        st = self.state
        return (st.population[0] if len(st.population) else self._fallback).copy()
