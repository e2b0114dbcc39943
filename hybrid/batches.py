"""Mini-batches from a torch ``Dataset`` of rows, for the trainers' ``fit``.

``HybridTrainer.fit`` and ``Decoupled.fit`` read batches from a
:class:`~nondiff.problems.learning.Dataset` (its ``batches(batch_size, seed, epoch)``) or
from a re-iterable of ``(x, y)`` batches (a list, a ``DataLoader``). A map-style
``torch.utils.data.Dataset`` — a ``TensorDataset(x, y)`` above all — is neither: iterating
it yields single rows, which a trainer would take for batches of one row without a batch
dimension. :func:`as_batches` wraps such a dataset in :class:`RowBatches`, which shuffles
its rows by ``(seed, epoch)`` as ``Dataset.batches`` does (so a resumed ``fit`` sees the
same batches) and collates them with ``torch.utils.data.default_collate``.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from nondiff.hybrid.batches import as_batches
    >>> data = as_batches(TensorDataset(torch.randn(10, 3), torch.arange(10)))
    >>> [tuple(x.shape) for x, _ in data.batches(4, seed=0, epoch=0)]
    [(4, 3), (4, 3), (2, 3)]
    >>> data.num_batches(4), len(data)
    (3, 10)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset, default_collate

__all__ = ["RowBatches", "as_batches", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffling seed of ``epoch`` under ``seed`` (a ValueError for a seed that is not
    a non-negative integer): one stream per ``(seed, epoch)``, the same in every process,
    for :class:`RowBatches` and :meth:`nondiff.problems.learning.Dataset.batches`."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class RowBatches:
    """Shuffled mini-batches of a map-style torch ``Dataset`` whose items are ``(x, y)``
    rows; the order depends only on ``(seed, epoch)``."""

    def __init__(self, rows: Dataset, name: str = "data") -> None:
        what = f"{name} (a {type(rows).__name__})"
        if not hasattr(rows, "__len__"):
            raise ValueError(f"{what} has no length, so its rows cannot be shuffled into "
                             f"batches; pass a DataLoader over it instead")
        if isinstance(rows, TensorDataset) and len(rows.tensors) != 2:
            raise ValueError(f"{what} holds {len(rows.tensors)} tensors; a trainer reads "
                             f"(x, y) rows: pass TensorDataset(x, y), or a DataLoader that "
                             f"yields (x, y) batches")
        if len(rows) > 0:  # the first row's shape, checked before fit changes anything
            first = rows[0]
            if not (isinstance(first, (tuple, list)) and len(first) == 2):
                got = f"a {type(first).__name__}" + (
                    f" of {len(first)} items" if isinstance(first, (tuple, list)) else "")
                raise ValueError(f"the items of {what} must be (x, y) rows, got {got}; pass "
                                 f"a DataLoader that yields (x, y) batches instead")
        self.rows, self.name = rows, name
        # the fast path reads the tensors only where indexing would do just that
        plain = isinstance(rows, TensorDataset) and \
            type(rows).__getitem__ is TensorDataset.__getitem__
        self._tensors = rows.tensors if plain else None

    def __len__(self) -> int:
        return len(self.rows)

    def num_batches(self, batch_size: int) -> int:
        """How many batches :meth:`batches` yields per epoch."""
        return -(-len(self) // batch_size)

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0
                ) -> Iterator[tuple[Any, Any]]:
        """One epoch of ``(x, y)`` batches of ``batch_size`` rows (the last one smaller),
        in an order drawn from ``(seed, epoch)``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(
            epoch_seed(seed, epoch)))
        tensors = self._tensors
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            if tensors is not None:
                yield tensors[0][index.to(tensors[0].device)], \
                    tensors[1][index.to(tensors[1].device)]
                continue
            items = [self.rows[int(i)] for i in index]
            bad = next((item for item in items
                        if not (isinstance(item, (tuple, list)) and len(item) == 2)), None)
            if bad is not None:
                raise ValueError(f"the items of {self.name} (a {type(self.rows).__name__}) "
                                 f"must be (x, y) rows, got a {type(bad).__name__}; pass a "
                                 f"DataLoader that yields (x, y) batches instead")
            x, y = default_collate(items)
            yield x, y

    def __repr__(self) -> str:
        return f"RowBatches({type(self.rows).__name__} of {len(self)} rows)"


def as_batches(data: Any, name: str = "data") -> Any:
    """``data`` as the trainers read it: a map-style torch ``Dataset`` (not a
    ``DataLoader``, not an ``IterableDataset``, nothing with its own ``batches``) wrapped
    in :class:`RowBatches` (its first row checked; ``name``: the argument, for the
    error); anything else unchanged."""
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and \
            not hasattr(data, "batches"):
        return RowBatches(data, name)
    return data
