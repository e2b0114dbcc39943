"""nevergrad (optional extra): NGOpt and DiscreteOnePlusOne.

``nevergrad:NGOpt`` is nevergrad's algorithm selector (Meunier et al. 2021,
"Black-box optimization revisited: improving algorithm selection wizards through
massive benchmarking", IEEE TEVC 26); ``nevergrad:DiscreteOnePlusOne`` its (1+1)
evolutionary algorithm with standard mutation (Droste, Jansen & Wegener 2002), for
problems with a discrete space. Parametrizations: a continuous problem is an
unbounded ``ng.p.Array`` at the shared start point with mutation scale sigma0 (as for
pycma); a space becomes a ``ng.p.Tuple`` of one parameter per leaf, each holding the
leaf's encoding -- bits and integers an ``ng.p.Array`` between the leaf's bounds with
integer casting, categories a *deterministic* ``ng.p.Choice`` of the category indices
(the default ``Choice`` draws its value at random from softmax weights, so the same
candidate can evaluate differently: that is why DiscreteOnePlusOne stalled near 68 of
100 on OneMax), reals a bounded ``ng.p.Array``. The parametrization's ``random_state``
is ``RandomState(seed)``; candidates are asked and told one at a time
(``num_workers=1``). Options go to the optimizer's constructor. Permutations are not
handled. A problem's constraints (the knapsack's) are told as nevergrad's
``constraint_violation`` (the total violation ``sum max(0, g)``).

Example:
    >>> from nondiff import problems
    >>> from nondiff.benchmarks.baselines import available, run
    >>> available("nevergrad:DiscreteOnePlusOne") is None  # the extra is installed here
    True
    >>> record = run("nevergrad:DiscreteOnePlusOne", problems.get("onemax", dim=20),
    ...              budget=2000, seed=0)
    >>> record.stop, record.best_f
    ('target', 20.0)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from nondiff.optim.spaces import Space, leaf_kinds
from nondiff.problems.base import Problem

from .record import Tracker, start

ALGORITHMS = ("NGOpt", "DiscreteOnePlusOne")
_KINDS = {"NGOpt": frozenset({"real", "integer", "categorical", "binary"}),
          "DiscreteOnePlusOne": frozenset({"integer", "categorical", "binary"})}
REQUIRES = "nevergrad"


def handles(algorithm: str, problem: Problem) -> bool:
    """NGOpt: continuous problems and spaces of reals/integers/categories/bits;
    DiscreteOnePlusOne: spaces of integers/categories/bits."""
    if problem.space is None:
        return algorithm == "NGOpt"
    return leaf_kinds(problem.space) <= _KINDS[algorithm]


def describe(algorithm: str) -> str:
    """The problem kinds handled, for error messages."""
    leaves = "/".join(sorted(_KINDS[algorithm]))
    return ("continuous problems and " if algorithm == "NGOpt" else "") + \
        f"spaces whose leaves are {leaves}"


def _space_parameter(space: Space) -> Any:
    import nevergrad as ng

    parts = []
    for _, leaf, _ in space.leaves():
        lower, upper = leaf.bounds()
        if leaf.kind == "categorical":
            parts.append(ng.p.Choice(list(range(leaf.cardinality)), repetitions=leaf.size,
                                     deterministic=True))
        elif leaf.kind in ("binary", "integer"):
            parts.append(ng.p.Array(shape=(leaf.size,), lower=lower, upper=upper)
                         .set_integer_casting())
        elif np.all(np.isfinite(lower)) and np.all(np.isfinite(upper)):
            parts.append(ng.p.Array(shape=(leaf.size,), lower=lower, upper=upper))
        else:
            parts.append(ng.p.Array(init=leaf.initial()))
    return ng.p.Tuple(*parts)


def _encode(value: Any) -> np.ndarray:
    return np.concatenate([np.asarray(part, dtype=np.float64).reshape(-1) for part in value])


def body(algorithm: str, tracker: Tracker, seed: int, options: dict[str, Any]) -> str:
    """Ask and tell one candidate at a time until the tracker stops the run; an error
    inside nevergrad ends the run as ``error:<type>`` (e.g. NGOpt's surrogate-model
    step with NumPy >= 2.4, ``float()`` of a 1-element array: a TypeError)."""
    import nevergrad as ng

    problem = tracker.problem
    if problem.space is None:
        x0, sigma0 = start(problem, seed)
        parameter = ng.p.Array(init=x0).set_mutation(sigma=sigma0)
        encode = np.asarray
    else:
        parameter, encode = _space_parameter(problem.space), _encode
    parameter.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.registry[algorithm](
        parametrization=parameter, budget=tracker.budget, num_workers=1, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nevergrad's notes on bounds and budgets
        while True:
            try:
                candidate = optimizer.ask()
                loss = tracker(encode(candidate.value))
                if tracker.constraints is None:
                    optimizer.tell(candidate, loss)
                else:  # nevergrad's own handling of violations (> 0 violated)
                    optimizer.tell(candidate, loss,
                                   constraint_violation=[float(tracker.last_violation[0])])
            except Exception as error:
                if tracker.reason is not None:
                    raise
                return f"error:{type(error).__name__}"
