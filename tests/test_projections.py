"""Each projection of optim.projections is exact: checked against brute force on small sets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from nondiff.optim.projections import (
    Binary,
    IntegerBox,
    Levels,
    Permutations,
    Reals,
    SetProduct,
    Sparse,
    Ternary,
)

VECTORS = [np.random.default_rng(seed).normal(0, 1.5, size=5) for seed in range(40)]


def _dist(x, v):
    return float(((np.asarray(x) - v) ** 2).sum())


def _best_fitted(v, codes):
    """min over codes b and a >= 0 of ||a b - v||^2 (a* = max(0, <v, b> / <b, b>))."""
    best = np.inf
    for b in codes:
        b = np.asarray(b, dtype=float)
        nb = b @ b
        a = max(0.0, v @ b / nb) if nb else 0.0
        best = min(best, _dist(a * b, v))
    return best


@pytest.mark.parametrize("v", VECTORS[:10])
def test_integer_box_is_nearest_integer_point(v):
    box = IntegerBox(-2, 1)
    x = box.project(v)
    brute = min(_dist(p, v) for p in itertools.product(range(-2, 2), repeat=5))
    assert box.contains(x) and _dist(x, v) == pytest.approx(brute)


@pytest.mark.parametrize("v", VECTORS[:10])
def test_binary_fixed_and_fitted(v):
    x = Binary(0.7).project(v)
    assert _dist(x, v) == pytest.approx(
        min(_dist(0.7 * np.array(b), v) for b in itertools.product([-1, 1], repeat=5)))
    x, a = Binary("fit").fit(v)
    assert _dist(x, v) == pytest.approx(_best_fitted(v, itertools.product([-1, 1], repeat=5)))
    assert set(np.round(np.abs(x), 12)) == {round(a, 12)}


@pytest.mark.parametrize("v", VECTORS)
def test_ternary_fitted_scale_is_optimal(v):
    x, a = Ternary().fit(v)
    brute = _best_fitted(v, itertools.product([-1, 0, 1], repeat=5))
    assert _dist(x, v) == pytest.approx(brute, abs=1e-12)
    assert set(np.abs(x)) <= {0.0, a}
    # the scale is optimal for the returned code: a = <v, b> / <b, b>
    b = np.sign(x)
    assert a == pytest.approx(v @ b / (b @ b))


def test_ternary_fixed_scale_and_ties():
    v = VECTORS[3]
    x = Ternary(0.8).project(v)
    brute = min(_dist(0.8 * np.array(b), v) for b in itertools.product([-1, 0, 1], repeat=5))
    assert _dist(x, v) == pytest.approx(brute)
    assert Ternary().fit(np.zeros(4))[1] == 0.0
    x, a = Ternary().fit(np.array([1.0, 1.0, 1.0, -1.0]))
    assert a == 1.0 and x.tolist() == [1.0, 1.0, 1.0, -1.0]


@pytest.mark.parametrize("v", VECTORS[:10])
def test_levels_given_and_uniform(v):
    levels = Levels([-1.0, 0.25, 0.5, 2.0])
    x = levels.project(v)
    assert _dist(x, v) == pytest.approx(
        min(_dist(p, v) for p in itertools.product(levels.levels, repeat=5)))
    grid = Levels.uniform(5, -2.0, 2.0)
    assert np.allclose(grid.levels, [-2, -1, 0, 1, 2])
    assert _dist(grid.project(v), v) == pytest.approx(_dist(IntegerBox(-2, 2).project(v), v))


def test_levels_bits_with_fitted_scale():
    v = np.random.default_rng(0).normal(size=200)
    q = Levels.bits(3)  # {-3..3} * a
    x, a = q.fit(v)
    assert a > 0 and np.allclose(x / a, np.round(x / a)) and np.abs(x / a).max() <= 3
    # the fitted scale is no worse than the starting scale max|v| / 3
    a0 = np.abs(v).max() / 3
    assert _dist(x, v) <= _dist(np.clip(np.round(v / a0), -3, 3) * a0, v) + 1e-12
    # and within 1 % of the best scale on a fine grid
    grid = min(_dist(np.clip(np.round(v / s), -3, 3) * s, v) for s in np.linspace(0.05, 2, 4000))
    assert _dist(x, v) <= 1.01 * grid


@pytest.mark.parametrize("k", [0, 1, 2, 5, 7])
def test_sparse_keeps_largest(k):
    v = VECTORS[5]
    x = Sparse(k).project(v)
    best = min(_dist(np.where(np.isin(np.arange(5), s), v, 0.0), v)
               for r in range(min(k, 5) + 1) for s in itertools.combinations(range(5), r))
    assert np.count_nonzero(x) <= k and _dist(x, v) == pytest.approx(best)


@pytest.mark.parametrize("seed", range(5))
def test_permutation_projection_by_assignment(seed):
    v = np.random.default_rng(seed).normal(size=16)
    perm = Permutations(4)
    x = perm.project(v)
    brute = min(_dist(np.eye(4)[list(p)].reshape(-1), v) for p in itertools.permutations(range(4)))
    assert perm.contains(x) and _dist(x, v) == pytest.approx(brute)
    assert all(perm.contains(nb) for nb in perm.neighbors(x)) and len(perm.neighbors(x)) == 6


def test_product_is_blockwise_and_torch_stays_torch():
    s = SetProduct([(2, IntegerBox(0, 3)), (2, Reals(-1, 1)), (1, Binary())])
    v = np.array([1.6, 7.0, -3.0, 0.2, -0.1])
    assert s.project(v).tolist() == [2.0, 3.0, -1.0, 0.2, -1.0]
    assert s.continuous_mask().tolist() == [False, False, True, True, False]
    t = torch.tensor(v, dtype=torch.float32)
    out = s.project(t)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert all(s.contains(nb) for nb in s.neighbors(s.project(v)))
    rng = np.random.default_rng(0)
    assert s.contains(s.sample(rng, 5))


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda: IntegerBox(0.5, 3), "lower"),
    (lambda: IntegerBox(3, 1), "lower <= upper"),
    (lambda: Binary(-1.0), "scale"),
    (lambda: Ternary("best"), "scale"),
    (lambda: Levels([1.0]), "levels"),
    (lambda: Levels([1.0, 1.0]), "distinct"),
    (lambda: Sparse(-1), "k"),
    (lambda: Permutations(3).project(np.zeros(8)), "9"),
    (lambda: SetProduct([]), "block"),
])
def test_bad_arguments_are_named(make, fragment):
    with pytest.raises(ValueError, match=fragment):
        make()
