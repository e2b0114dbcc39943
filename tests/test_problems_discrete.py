"""Tests for the discrete problems: optima, references, batching, instances, validation."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from nondiff.optim.spaces import Binary, Categorical, Product
from nondiff.problems.discrete import LABS_OPTIMAL_ENERGY, Knapsack, MaxCut, NKLandscape
from nondiff.problems.sorting_networks import KNOWN_NETWORKS, OPTIMAL_SIZE, SortingNetwork

from nondiff import problems

DISCRETE = problems.names("discrete")
EXPECTED = {"onemax", "leadingones", "jump", "trap", "nk", "maxcut", "labs", "knapsack",
            "sorting-network", "mixed-sphere"}
MAXIMIZED = {"onemax", "leadingones", "jump", "trap", "nk", "maxcut", "knapsack"}
SMALL = {"onemax": 10, "leadingones": 10, "jump": 10, "trap": 10, "nk": 10, "maxcut": 10,
         "labs": 10, "knapsack": 10, "sorting-network": 4,
         "mixed-sphere": 3}  # registry dim of a small case


def _all_bits(n: int) -> np.ndarray:
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def _sample(p: problems.Problem, count: int, seed: int = 0) -> np.ndarray:
    return p.space.sample(np.random.default_rng(seed), count)


# Straightforward references, one bit string at a time, from the definitions.
def _ref(p: problems.Problem, x: np.ndarray) -> float:
    bits = [int(v) for v in x]
    n, ones = len(bits), sum(bits)
    if p.name == "onemax":
        return ones
    if p.name == "leadingones":
        return next((i for i, b in enumerate(bits) if b == 0), n)
    if p.name == "jump":
        return p.k + ones if ones <= n - p.k or ones == n else n - ones
    if p.name == "trap":
        blocks = [sum(bits[i:i + p.k]) for i in range(0, n, p.k)]
        return sum(p.k if u == p.k else p.k - 1 - u for u in blocks)
    if p.name == "nk":
        nb, tables = p.neighbours.numpy(), p.tables.numpy()
        rows = [int("".join(str(bits[j]) for j in reversed(nb[i])), 2) for i in range(n)]
        return float(np.mean([tables[i, rows[i]] for i in range(n)]))
    if p.name == "maxcut":
        w = p.weights.numpy()
        return sum(w[i, j] for i in range(n) for j in range(i + 1, n) if bits[i] != bits[j])
    if p.name == "labs":
        s = [2 * b - 1 for b in bits]
        return sum(sum(s[i] * s[i + k] for i in range(n - k)) ** 2 for k in range(1, n))
    if p.name == "knapsack":
        return sum(v for v, b in zip(p.values.tolist(), bits, strict=True) if b)
    raise KeyError(p.name)  # a new bit-string problem needs a reference here


def _ref_errors(n: int, comparators: list[tuple[int, int]]) -> int:
    wrong = 0
    for code in range(2**n):
        v = [(code >> i) & 1 for i in range(n)]
        for i, j in comparators:
            if v[i] > v[j]:
                v[i], v[j] = v[j], v[i]
        wrong += v != sorted(v)
    return wrong


def test_registry_lists_the_discrete_problems() -> None:
    assert set(DISCRETE) == EXPECTED
    assert not EXPECTED & set(problems.names("continuous"))
    p = problems.get("onemax", dim=100)
    assert isinstance(p, problems.discrete.OneMax) and p.dim == p.n == 100
    assert float(p(np.ones(100))) == p.f_opt == 100.0
    assert isinstance(problems.get("Sorting_Network", dim=5), SortingNetwork)


@pytest.mark.parametrize("name", DISCRETE)
def test_space_sense_and_bounds(name: str) -> None:
    p = problems.get(name, dim=SMALL[name], instance=1)
    assert isinstance(p, problems.DiscreteProblem) and p.instance == 1
    assert p.space.size == p.dim and p.maximize == (name in MAXIMIZED)
    kinds = {"sorting-network": Categorical, "mixed-sphere": Product}
    assert isinstance(p.space, kinds.get(name, Binary))
    np.testing.assert_array_equal(p.lower, p.space.bounds()[0])
    np.testing.assert_array_equal(p.upper, p.space.bounds()[1])
    assert p.f_opt is not None
    assert p.x_opt is None if name == "labs" else p.x_opt.shape == (p.dim,)
    assert repr(p).startswith(f"{type(p).__name__}({SMALL[name]}")


BIT_STRINGS = sorted(EXPECTED - {"mixed-sphere"})  # mixed-sphere: tests/test_mixed_spaces.py


@pytest.mark.parametrize("name", BIT_STRINGS)
def test_batch_equals_rows_numpy_and_torch(name: str) -> None:
    p = problems.get(name, dim=SMALL[name], instance=2)
    x = _sample(p, 64, seed=1)
    batch = p(x)
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float64 and batch.shape == (64,)
    rows = np.array([p(row) for row in x])
    assert all(np.ndim(p(row)) == 0 for row in x[:2])
    np.testing.assert_array_equal(batch, rows)
    out = p(torch.from_numpy(x))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), batch)
    out32 = p(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.double().numpy(), batch, rtol=1e-6)
    np.testing.assert_array_equal(p(x.astype(np.int64)), batch)  # integer input is fine
    assert np.ptp(batch) > 0  # not a constant function


@pytest.mark.parametrize("name", sorted(EXPECTED - {"sorting-network", "mixed-sphere"}))
def test_matches_reference_definition(name: str) -> None:
    p = problems.get(name, dim=10, instance=3)
    x = np.concatenate([_sample(p, 40, seed=2), np.ones((1, 10)), np.zeros((1, 10))])
    expected = np.array([_ref(p, row) for row in x], dtype=np.float64)
    np.testing.assert_allclose(p(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED - {"sorting-network", "mixed-sphere"}))
def test_optimum_is_exhaustive_best(name: str) -> None:
    n = 10
    p = problems.get(name, dim=n, instance=4)
    values = p(_all_bits(n))
    if name == "knapsack":  # the best *feasible* selection; all-ones is infeasible
        feasible = p.constraints(_all_bits(n)) <= 0
        assert values[feasible].max() == p.f_opt < values.max()
    else:
        best = values.max() if p.maximize else values.min()
        assert best == pytest.approx(p.f_opt, rel=1e-12, abs=0)
    if p.x_opt is not None:
        assert float(p(p.x_opt)) == pytest.approx(p.f_opt, rel=1e-12, abs=0)


@pytest.mark.parametrize("name", ["onemax", "leadingones", "jump", "trap"])
@pytest.mark.parametrize("n", [1, 5, 20, 200])
def test_all_ones_is_optimal(name: str, n: int) -> None:
    k = {"trap": 1 if n % 5 else 5, "jump": min(3, n)}.get(name)
    p = problems.get(name, dim=n, **({} if k is None else {"k": k}))
    np.testing.assert_array_equal(p.x_opt, np.ones(n))
    assert float(p(np.ones(n))) == p.f_opt == (n + k if name == "jump" else n)
    assert p(_sample(p, 256)).max() <= p.f_opt


def test_jump_and_trap_values() -> None:
    jump = problems.get("jump", dim=8, k=3)
    x = np.array([[1] * m + [0] * (8 - m) for m in range(9)])
    np.testing.assert_array_equal(jump(x), [3, 4, 5, 6, 7, 8, 2, 1, 11])  # gap at |x| = 6, 7
    trap = problems.get("trap", dim=8, k=4)
    np.testing.assert_array_equal(trap(x), [6, 5, 4, 3, 7, 6, 5, 4, 8])  # 3-u per block, 4 at u=4


def test_labs_table_by_brute_force() -> None:
    for n in range(1, 17):
        p = problems.get("labs", dim=n)
        assert p(_all_bits(n)).min() == LABS_OPTIMAL_ENERGY[n] == p.f_opt
    assert problems.get("labs", dim=13)(np.array([1] * 5 + [0] * 2 + [1] * 2 + [0, 1, 0, 1])) == 6
    assert problems.get("labs", dim=max(LABS_OPTIMAL_ENERGY) + 1).f_opt is None


def test_exhaustive_optimum_spans_several_chunks_and_is_lazy() -> None:
    p = NKLandscape(17, k=3, instance=5)
    assert p._solver is not None  # not solved at construction
    values = p(_all_bits(17))
    assert p.f_opt == values.max() and float(p(p.x_opt)) == p.f_opt
    cut = MaxCut(18, p=0.3, weighted=True, instance=2)
    assert cut.f_opt == cut(_all_bits(18)).max() and cut.x_opt[-1] == 0
    assert NKLandscape(21).f_opt is None and NKLandscape(21).x_opt is None
    assert MaxCut(21).f_opt is None


def test_maxcut_graphs() -> None:
    plain, weighted = MaxCut(12, p=0.4, instance=1), MaxCut(12, p=0.4, weighted=True, instance=1)
    w, ww = plain.weights.numpy(), weighted.weights.numpy()
    assert np.array_equal(w, w.T) and np.all(np.diag(w) == 0) and set(np.unique(w)) <= {0, 1}
    np.testing.assert_array_equal(ww > 0, w > 0)  # same edges
    assert ww.max() > 1 and ww.max() <= 10
    assert 0 < w.sum() / 2 < 66
    assert MaxCut(7, p=0.0).f_opt == 0.0
    assert MaxCut(7, p=1.0).f_opt == 12.0  # complete graph: floor(n^2 / 4)


@pytest.mark.parametrize("instance", range(6))
def test_knapsack_dp_matches_brute_force(instance: int) -> None:
    n = 12
    p = Knapsack(n, instance=instance)
    weights, values = p.weights.numpy(), p.values.numpy()
    assert p.capacity == int(weights.sum()) // 2
    assert np.all((1 <= weights) & (weights <= 100)) and np.all(weights == np.round(weights))
    best = max(values[list(s)].sum() for r in range(n + 1)
               for s in itertools.combinations(range(n), r) if weights[list(s)].sum() <= p.capacity)
    assert p.f_opt == best
    assert float(p(p.x_opt)) == best and float(p.constraints(p.x_opt)) <= 0


def test_knapsack_constraint_is_exact() -> None:
    p = Knapsack(14, instance=7)
    x = _all_bits(14)
    g = p.constraints(x)
    assert isinstance(g, np.ndarray) and g.shape == (2**14,) and g.dtype == np.float64
    load = [sum(int(w) for w, b in zip(p.weights.tolist(), row, strict=True) if b) for row in x]
    np.testing.assert_array_equal(g, np.array(load) - p.capacity)
    assert np.any(g == 0) and np.any(g == 1)  # the boundary is exercised
    np.testing.assert_array_equal(g <= 0, np.array(load) <= p.capacity)
    gt = p.constraints(torch.from_numpy(x[:5]))
    assert isinstance(gt, torch.Tensor) and gt.shape == (5,)
    assert np.ndim(p.constraints(x[3])) == 0 and p.evaluations == 0


def test_knapsack_large_instance() -> None:
    p = Knapsack(300, instance=1)
    assert float(p.constraints(p.x_opt)) <= 0 and float(p(p.x_opt)) == p.f_opt
    order = np.argsort(-(p.values / p.weights).numpy())  # greedy by ratio: a lower bound
    greedy, load = np.zeros(300), 0.0
    for i in order:
        if load + p.weights[i] <= p.capacity:
            greedy[i], load = 1.0, load + float(p.weights[i])
    assert float(p(greedy)) <= p.f_opt <= float(p.values.sum())


def test_known_sorting_network_n4_and_removed_comparators() -> None:
    p = problems.get("sorting-network", dim=4)
    assert (p.n, p.L, p.dim, p.f_opt) == (4, 10, 10, 5.0)
    network = [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)]
    row = p.encode_network(network)
    assert p.sorts(row) and float(p(row)) == p.f_opt and p.decode_network(row) == network
    for drop in range(len(network)):
        broken = p.encode_network(network[:drop] + network[drop + 1:])
        errors = float(p.errors(broken))
        assert errors > 0 and not p.sorts(broken)
        assert float(p(broken)) == errors * (p.L + 1) + 4 > p.f_opt


@pytest.mark.parametrize("n", sorted(OPTIMAL_SIZE))
def test_known_networks_are_optimal_size_and_sort(n: int) -> None:
    p = SortingNetwork(n)
    assert p.L == 2 * OPTIMAL_SIZE[n] and len(KNOWN_NETWORKS[n]) == OPTIMAL_SIZE[n]
    assert p.sorts(p.x_opt) and float(p(p.x_opt)) == p.f_opt == OPTIMAL_SIZE[n]
    assert _ref_errors(n, p.decode_network(p.x_opt)) == 0
    if n > 2:
        assert SortingNetwork(n, L=OPTIMAL_SIZE[n] - 1).f_opt is None


@pytest.mark.parametrize(("n", "L"), [(3, 3), (4, 5), (4, 4)])
def test_sorting_network_exhaustive(n: int, L: int) -> None:
    p = SortingNetwork(n, L=L)
    k = len(p.pairs) + 1
    rows = ((np.arange(k**L)[:, None] // k ** np.arange(L)) % k).astype(np.float64)
    best = p(rows).min()
    if L >= OPTIMAL_SIZE[n]:
        assert best == OPTIMAL_SIZE[n] == p.f_opt  # no smaller network sorts
    else:
        assert best > L and p.f_opt is None  # nothing with L comparators sorts


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_sorting_network_matches_python_reference(n: int) -> None:
    p = SortingNetwork(n, L=12)
    x = _sample(p, 50, seed=n)
    x[:10, :] = p.noop  # some empty networks
    x[10:20, ::2] = p.noop
    expected_errors = np.array([_ref_errors(n, p.decode_network(row)) for row in x])
    np.testing.assert_array_equal(p.errors(x), expected_errors)
    sizes = np.array([len(p.decode_network(row)) for row in x])
    np.testing.assert_array_equal(p(x), expected_errors * 13 + sizes)
    assert expected_errors[:10].tolist() == [2**n - n - 1] * 10  # all but sorted inputs
    assert [p.sorts(row) for row in x] == list(expected_errors == 0)


def test_sorting_network_encoding_helpers() -> None:
    p = SortingNetwork(5, L=1)
    assert p.decode_network(p.encode_network([(1, 4)])) == [(1, 4)]
    assert p.decode_network(p.encode_network([])) == []
    assert SortingNetwork(9).L == 36 and SortingNetwork(9).f_opt is None
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        SortingNetwork(4).encode_network([(2, 1)])
    with pytest.raises(ValueError, match="L=1"):
        p.encode_network([(0, 1), (1, 2)])
    with pytest.raises(ValueError, match=r"\(1,\)"):
        p.sorts(np.zeros(3))


def test_instances_are_deterministic_and_distinct() -> None:
    a, b, c = (NKLandscape(12, k=3, instance=i) for i in (3, 3, 4))
    assert torch.equal(a.tables, b.tables) and torch.equal(a.neighbours, b.neighbours)
    assert not torch.equal(a.tables, c.tables)
    assert all(len(set(row)) == 4 and row[0] == i for i, row in enumerate(a.neighbours.tolist()))
    assert torch.equal(MaxCut(12, instance=2).weights, MaxCut(12, instance=2).weights)
    assert not torch.equal(MaxCut(12, instance=2).weights, MaxCut(12, instance=3).weights)
    k1, k2 = Knapsack(30, instance=1), Knapsack(30, instance=1)
    assert torch.equal(k1.weights, k2.weights) and k1.f_opt == k2.f_opt
    assert not torch.equal(k1.values, Knapsack(30, instance=2).values)


def test_instances_do_not_depend_on_python_hash_seed() -> None:
    code = ("import json, problems; p = problems.get('nk', dim=6, instance=5); "
            "q = problems.get('knapsack', dim=6, instance=5); "
            "print(json.dumps([p.tables.tolist(), q.weights.tolist()]))")
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    tables, weights = json.loads(out)
    np.testing.assert_array_equal(np.array(tables), problems.get("nk", dim=6, instance=5).tables)
    np.testing.assert_array_equal(np.array(weights),
                                  problems.get("knapsack", dim=6, instance=5).weights)


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("onemax", {"dim": 0}, "got 0"),
    ("labs", {"dim": -2}, "got -2"),
    ("leadingones", {"dim": 2.5}, "got 2.5"),
    ("knapsack", {"dim": True}, "got True"),
    ("jump", {"dim": 5, "k": 6}, r"k must be an integer in \[1, 5\], got 6"),
    ("jump", {"dim": 5, "k": 0}, "got 0"),
    ("trap", {"dim": 10, "k": 11}, "got 11"),
    ("trap", {"dim": 10, "k": 3}, "multiple of k=3, got n=10"),
    ("nk", {"dim": 5, "k": 5}, r"k must be an integer in \[0, 4\], got 5"),
    ("maxcut", {"dim": 5, "p": 1.5}, "got 1.5"),
    ("maxcut", {"dim": 5, "p": -0.1}, "got -0.1"),
    ("maxcut", {"dim": 5, "p": math.nan}, "got nan"),
    ("maxcut", {"dim": 5, "weighted": "yes"}, "got 'yes'"),
    ("onemax", {"dim": 5, "instance": -1}, "instance .* got -1"),
    ("sorting-network", {"dim": 1}, r"n must be an integer in \[2, 16\], got 1"),
    ("sorting-network", {"dim": 17}, "got 17"),
    ("sorting-network", {"dim": 4, "L": 0}, "L must .* got 0"),
])  # fmt: skip
def test_invalid_parameters_name_the_value(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        problems.get(name, **kwargs)


@pytest.mark.parametrize("name", BIT_STRINGS)
def test_invalid_encodings_raise(name: str) -> None:
    p = problems.get(name, dim=SMALL[name])
    x = _sample(p, 4)
    for bad in (p.upper[0] + 1, -1.0, math.nan):
        y = x.copy()
        y[2, 1] = bad
        with pytest.raises(ValueError, match=name.split("-")[0]):
            p(y)
    with pytest.raises(ValueError, match=rf"\(n, {p.dim}\)"):
        p(np.zeros((2, p.dim + 1)))
    np.testing.assert_array_equal(p(x + 0.3), p(x))  # entries round to the nearest encoding
