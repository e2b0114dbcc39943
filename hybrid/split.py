"""Split a network into decoupled stages of balanced cost.

A pipeline of decoupled stages (:class:`~nondiff.hybrid.decoupled.Decoupled`,
:func:`~nondiff.hybrid.parallel.fit_parallel`) runs at the pace of its slowest stage,
so the layers are cut into contiguous groups whose largest cost is as small as
possible (:func:`balanced_split`, the linear partition problem solved exactly by
dynamic programming over prefix sums); :func:`mlp_blocks` builds a ReLU MLP as such
blocks, the cost of a layer being its parameter count (proportional to the compute of
a dense layer).

Example:
    >>> import torch
    >>> from nondiff.hybrid import Decoupled, balanced_split, mlp_blocks
    >>> balanced_split([1, 100, 100, 100, 100, 1], 2)
    [0, 3, 6]
    >>> blocks = mlp_blocks(40, 10, width=32, depth=5, groups=2)
    >>> [len(block) for block in blocks]
    [2, 3]
    >>> model = Decoupled(blocks, signal="local")
    >>> model(torch.randn(8, 40)).shape
    torch.Size([8, 10])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from nondiff.hybrid.decoupled import Group
from nondiff.optim.checks import check_int
from torch import nn

__all__ = ["balanced_split", "mlp_blocks"]


def balanced_split(costs: Sequence[int], groups: int) -> list[int]:
    """Boundaries of ``groups`` contiguous, non-empty parts of ``costs`` with the
    smallest maximum part cost (the first such split in lexicographic order).

    Args:
        costs: cost of each layer, in order (e.g. its parameter count).
        groups: number of parts, in ``[1, len(costs)]``.

    Returns:
        ``groups + 1`` increasing boundaries from 0 to ``len(costs)``: part ``k`` is
        ``costs[bounds[k]:bounds[k + 1]]``.

    Raises:
        ValueError: ``groups`` outside ``[1, len(costs)]``.

    Example:
        >>> balanced_split([1, 100, 100, 100, 100, 1], 2)
        [0, 3, 6]
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= len(costs):
        raise ValueError(f"groups must be in [1, {len(costs)}] (one layer each at least), "
                         f"got {groups!r}")
    n = len(costs)
    prefix = [0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    # best[g, i]: (max part cost, boundaries) splitting costs[:i] into g parts
    best: dict[tuple[int, int], tuple[int, list[int]]] = {(0, 0): (0, [0])}
    for g in range(1, groups + 1):
        for i in range(g, n - (groups - g) + 1):
            options = [(max(best[g - 1, j][0], prefix[i] - prefix[j]), best[g - 1, j][1] + [i])
                       for j in range(g - 1, i) if (g - 1, j) in best]
            best[g, i] = min(options)
    return best[groups, n][1]


def mlp_blocks(features: int, classes: int, width: int = 256, depth: int = 5,
               groups: int | None = None, cut: int | None = None) -> list[nn.Module]:
    """A ``depth``-layer ReLU MLP as blocks of a decoupled stack.

    Args:
        features, classes: input and output widths.
        width: hidden width; depth: number of linear layers (>= 1).
        groups: if given, the layers in that many :class:`~nondiff.hybrid.decoupled.Group`
            s of balanced parameter count (:func:`balanced_split`).
        cut: if given (instead of ``groups``), two Groups split after layer ``cut``.

    Returns:
        one block per layer (``Group([Linear, ReLU])``, the last a plain ``Linear``),
        or the Groups.

    Example:
        >>> [len(block) for block in mlp_blocks(40, 10, width=32, depth=4, cut=1)]
        [1, 3]
    """
    check_int("features", features, 1)
    check_int("classes", classes, 1)
    check_int("width", width, 1)
    depth = check_int("depth", depth, 1)
    if groups is not None and cut is not None:
        raise ValueError(f"give groups or cut, not both (got groups={groups!r}, cut={cut!r})")
    if cut is not None:
        check_int("cut", cut, 1, depth - 1)
    layers: list[nn.Module] = []
    width_in = features
    for _ in range(depth - 1):
        layers.append(Group([nn.Linear(width_in, width), nn.ReLU()]))
        width_in = width
    layers.append(nn.Linear(width_in, classes))
    if cut is not None:
        return [Group(layers[:cut]), Group(layers[cut:])]
    if groups is None:
        return layers
    costs = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    bounds = balanced_split(costs, groups)
    return [Group(layers[a:b]) for a, b in itertools.pairwise(bounds)]
