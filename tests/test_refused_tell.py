"""A refused tell leaves the optimizer exactly as it was (issue 16.2).

Every check of :meth:`BaseOptimizer.tell` (shapes, finite candidates, the fitness,
the constraints, the optimizer's own minimum of rows) runs before a counter, the
best-so-far or the state changes; a valid tell afterwards works as if the refused one
had never been made.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import OPTIMIZER_NAMES, make, plain_equal, sphere


def _rows(x, n):
    return x[:n]


def _nan_row(x):
    bad = x.clone() if isinstance(x, torch.Tensor) else np.array(x, dtype=np.float64, copy=True)
    bad[-1, 0] = float("nan")
    return bad


def _fitness(x) -> np.ndarray:
    values = sphere(x)
    return values.double().numpy() if isinstance(values, torch.Tensor) else values


# name -> (candidates, fitness) built from a fresh batch x and its fitness f
REFUSED = {
    "too-few-rows": lambda opt, x, f: (_rows(x, opt.min_tell_rows() - 1),
                                       f[: opt.min_tell_rows() - 1]),
    "no-rows": lambda opt, x, f: (_rows(x, 0), f[:0]),
    "wrong-dim": lambda opt, x, f: (x[:, :-1], f),
    "nan-candidate": lambda opt, x, f: (_nan_row(x), f),
    "string-candidates": lambda opt, x, f: (np.full(tuple(x.shape), "1.0"), f),
    "fitness-too-short": lambda opt, x, f: (x, f[:-1]),
    "fitness-2d": lambda opt, x, f: (x, np.stack([f, f], axis=1)),
    "fitness-strings": lambda opt, x, f: (x, np.array(["abc"] * len(f))),
    "fitness-numeric-strings": lambda opt, x, f: (x, np.array([str(v) for v in f])),
    "fitness-none": lambda opt, x, f: (x, [None] * len(f)),
    "fitness-complex": lambda opt, x, f: (x, f + 1j),
    "constraints-wrong-length": lambda opt, x, f: (x, f, np.zeros(len(f) + 1)),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_refused_tell_changes_nothing(name, case):
    opt = make(name)
    x = opt.ask()
    opt.tell(x, _fitness(x))  # one generation done: counters and best-so-far are set
    x = opt.ask()
    f = _fitness(x)
    args = REFUSED[case](opt, x, f)
    if case == "too-few-rows" and opt.min_tell_rows() <= 1:
        pytest.skip(f"{name} learns from a single candidate")
    before = opt.state_dict()
    best = (opt.best_f, opt.best_violation)
    kwargs = {"constraints": args[2]} if len(args) == 3 else {}
    with pytest.raises(ValueError):
        opt.tell(args[0], args[1], **kwargs)
    assert plain_equal(before, opt.state_dict())
    assert (opt.best_f, opt.best_violation) == best
    metrics = opt.tell(x, f)  # the valid tell of the same batch works
    assert metrics["iteration"] == 2.0
