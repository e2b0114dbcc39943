"""Splitting a network into decoupled stages of balanced cost (hybrid.split)."""

from __future__ import annotations

import itertools

import pytest
import torch
from nondiff.hybrid import Decoupled, Group, balanced_split, mlp_blocks


def _brute_force(costs: list[int], groups: int) -> int:
    """The smallest max part cost over every split into ``groups`` contiguous parts."""
    n = len(costs)
    best = None
    for cuts in itertools.combinations(range(1, n), groups - 1):
        bounds = [0, *cuts, n]
        worst = max(sum(costs[a:b]) for a, b in itertools.pairwise(bounds))
        best = worst if best is None else min(best, worst)
    return best


@pytest.mark.parametrize("seed", range(20))
def test_balanced_split_is_optimal_against_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 9, (1,), generator=g))
    costs = torch.randint(1, 50, (n,), generator=g).tolist()
    for groups in range(1, n + 1):
        bounds = balanced_split(costs, groups)
        assert bounds[0] == 0 and bounds[-1] == n and len(bounds) == groups + 1
        assert all(a < b for a, b in itertools.pairwise(bounds))  # non-empty parts
        worst = max(sum(costs[a:b]) for a, b in itertools.pairwise(bounds))
        assert worst == _brute_force(costs, groups)


@pytest.mark.parametrize("groups", [0, 7, True, 2.0])
def test_balanced_split_names_a_bad_group_count(groups) -> None:
    with pytest.raises(ValueError, match="groups"):
        balanced_split([1, 2, 3, 4, 5, 6], groups)


def test_mlp_blocks_groups_balance_parameters_and_train_decoupled() -> None:
    layers = mlp_blocks(40, 10, width=32, depth=5)
    assert len(layers) == 5 and isinstance(layers[-1], torch.nn.Linear)
    blocks = mlp_blocks(40, 10, width=32, depth=5, groups=2)
    assert all(isinstance(b, Group) for b in blocks)
    sizes = [sum(p.numel() for p in b.parameters()) for b in blocks]
    costs = [40 * 32 + 32, 32 * 32 + 32, 32 * 32 + 32, 32 * 32 + 32, 32 * 10 + 10]
    assert max(sizes) == _brute_force(costs, 2)
    assert [len(b) for b in mlp_blocks(40, 10, width=32, depth=5, cut=3)] == [3, 2]
    torch.manual_seed(0)
    model = Decoupled(blocks, signal="local")
    assert model(torch.randn(4, 40)).shape == (4, 10)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"depth": 0}, "depth"), ({"width": 0}, "width"), ({"cut": 5}, "cut"),
    ({"groups": 2, "cut": 1}, "not both"), ({"groups": 6}, "groups"),
])
def test_mlp_blocks_names_bad_arguments(kwargs, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        mlp_blocks(40, 10, **{"depth": 5, **kwargs})
