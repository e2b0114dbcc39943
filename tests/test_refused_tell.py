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
from nondiff.optim import base, registry
from nondiff.optim.spaces import Categorical, Integer, Product, Real


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


def _is_real(x) -> bool:
    return x.is_floating_point() if isinstance(x, torch.Tensor) else \
        np.asarray(x).dtype.kind == "f"


def _copy(row):
    return row.clone() if isinstance(row, torch.Tensor) else row.copy()


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_nan_written_into_the_asked_array_is_refused(name):
    """The very array ask() returned, edited in place, is checked like any other one: a
    numpy array keeps no version counter, and a CPU tensor can be edited unseen."""
    opt = make(name)
    x = opt.ask()
    opt.tell(x, _fitness(x))
    x = opt.ask()
    if not _is_real(x):
        pytest.skip(f"{name} asks for integers: NaN cannot be written into them")
    f = _fitness(x)
    before, best = opt.state_dict(), (opt.best_f, opt.best_violation)
    kept = _copy(x[-1])
    x[-1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.tell(x, f)
    assert plain_equal(before, opt.state_dict())
    assert (opt.best_f, opt.best_violation) == best
    x[-1] = kept
    assert opt.tell(x, f)["iteration"] == 2.0


MIXED = Product({"a": Real(-1.0, 1.0), "i": Integer(0, 5), "c": Categorical(["x", "y", "z"])})


@pytest.mark.parametrize("name", ["reinforce", "cmaes", "sep-cmaes"])
def test_asked_array_moved_out_of_the_space_in_place_is_refused(name):
    opt = registry.create(name, MIXED, seed=0)
    x = opt.ask()
    f = np.arange(len(x), dtype=float)
    before = opt.state_dict()
    kept = _copy(x[0])
    x[0, :] = 50.0  # in place: outside the encoded box, it decodes to no value
    with pytest.raises(ValueError, match="outside the encoded box"):
        opt.tell(x, f)
    assert plain_equal(before, opt.state_dict())
    x[0] = kept
    opt.tell(x, f)
    MIXED.decode(opt.best_x)


@pytest.mark.parametrize("bounds", [None, (-1.0, 1.0)], ids=["unbounded", "bounded"])
def test_device_tensor_edited_in_place_is_refused(monkeypatch, device, bounds):
    """Off the CPU the unedited asked tensor is told without a check (no host read): its
    version counter shows an in-place edit, and then the checks run."""
    monkeypatch.setattr(base, "_edits_seen", lambda x: True)  # the path off the CPU
    opt = registry.create("snes", torch.zeros(4, dtype=torch.float64, device=device),
                          sigma0=1.0, seed=0, bounds=bounds)
    x = opt.ask()
    f = sphere(x)
    before = opt.state_dict()
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.tell(x, f)
    assert plain_equal(before, opt.state_dict())
    assert opt.best_f == float("inf")


@pytest.mark.filterwarnings(r"ignore:\s*tell. \d+ solution\(s\) of round int archive")
@pytest.mark.parametrize("name", ["cmaes", "sep-cmaes"])
@pytest.mark.parametrize("delta", [0.0, 1e-10], ids=["on", "rounding-outside"])
def test_rows_within_rounding_of_the_box_are_told_on_it(name, delta):
    """pycma inverts its box transform and raised on rows a rounding outside (after
    changing its state): they are clipped onto the box before it sees them."""
    space = Product({"r": Real(0.0, 5.0), "c": Categorical(["x", "y", "z"])})
    upper = space.bounds()[1]
    opt = registry.create(name, space, seed=0)
    x = opt.ask()
    rows = np.tile(upper, (len(x), 1)) + delta
    told = rows.copy()
    opt.tell(rows, np.arange(len(x), dtype=float))
    assert np.array_equal(rows, told)  # the caller's array is left as it was
    assert space.decode(opt.best_x)["r"] == 5.0
    for _ in range(3):  # the run goes on
        x = opt.ask()
        opt.tell(x, ((x - 1.3) ** 2).sum(axis=1))
    assert opt.counters["iterations"] == 4


@pytest.mark.parametrize("name", ["cmaes", "sep-cmaes", "ipop-cmaes"])
def test_pycma_with_plain_bounds_takes_rows_on_the_box_and_refuses_rows_outside(name):
    """pycma inverts its box transform: with bounds (no space) rows outside were handed
    to it and raised from inside its tell, leaving it broken for the next ask."""
    opt = registry.create(name, np.full(3, 0.5), sigma0=0.3, seed=0, bounds=(0.0, 1.0))
    x = opt.ask()
    before = opt.state_dict()
    with pytest.raises(ValueError, match="outside the bounds"):
        opt.tell(np.full_like(x, 3.0), np.arange(len(x), dtype=float))
    assert plain_equal(before, opt.state_dict())
    opt.tell(np.full_like(x, 1.0 + 1e-10), np.arange(len(x), dtype=float))  # rounding
    for _ in range(3):  # the run goes on
        x = opt.ask()
        opt.tell(x, ((x - 0.3) ** 2).sum(axis=1))
    assert opt.counters["iterations"] == 4
