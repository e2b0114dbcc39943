"""Rows told back through a wrapper that searches another encoding.

:class:`~nondiff.optim.relaxed.Relaxed` (real latents) and
:class:`~nondiff.optim.binary_code.BinaryCoded` (bit strings) let an inner optimizer
search a space in its own encoding: ``ask`` decodes the inner rows, and ``tell`` must
hand the inner optimizer the inner rows of the candidates it is told. :func:`inner_rows`
finds them: the inner optimizer's very array when the told rows are the asked ones;
else each told row matched to an asked row that decodes to it (equal decoded rows —
common on discrete spaces — matched in order, each asked row once); rows never asked
(a user's own) encoded afresh.

Example:
    >>> import numpy as np
    >>> asked = np.array([[0.0], [1.0], [0.0]])        # decoded rows of the last ask
    >>> inner = np.array([[-0.3], [0.8], [-0.9]])      # the inner rows they came from
    >>> bounds = (np.zeros(1), np.ones(1))
    >>> inner_rows(np.array([[0.0], [0.0], [1.0]]), bounds, asked, inner, None,
    ...            encode=lambda rows, where: rows * 2 - 1)
    array([[-0.3],
           [-0.9],
           [ 0.8]])
    >>> inner_rows(np.array([[1.0], [1.0]]), bounds, asked, inner, None,
    ...            encode=lambda rows, where: rows * 2 - 1)  # the second 1.0: never asked
    array([[0.8],
           [1. ]])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .checks import as_float64

__all__ = ["INNER_OWN_METRICS", "inner_rows"]

INNER_OWN_METRICS = ("iteration", "evaluations", "best_f", "pop_best_f", "pop_median_f",
                     "nonfinite")
"""Metrics of the inner optimizer's tell that the wrapper's own base reports itself."""


def inner_rows(candidates: Any, bounds: tuple[np.ndarray, np.ndarray], asked: np.ndarray,
               inner: np.ndarray, inner_array: Any,
               encode: Callable[[np.ndarray, list[int]], np.ndarray]) -> Any:
    """The inner rows to tell for ``candidates`` (decoded rows), or None where the
    base's checks of shape and values will refuse them (not a finite ``(n, dim)``
    array inside ``bounds``). ``asked``/``inner``: the decoded rows of the last ask and
    their inner rows; ``inner_array``: the array the inner optimizer returned for them
    (told back as is, or None); ``encode(rows, positions)``: inner rows of rows never
    asked."""
    try:
        rows = np.asarray(candidates.detach().cpu() if hasattr(candidates, "detach")
                          else candidates, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    lower, upper = bounds
    if rows.ndim != 2 or rows.shape[1] != len(lower) or not np.isfinite(rows).all():
        return None
    slack = 1e-9 * np.maximum(1.0, np.maximum(np.abs(lower), np.abs(upper)))
    with np.errstate(invalid="ignore"):
        if ((rows < lower - slack) | (rows > upper + slack)).any():
            return None  # the base names the rows outside the box
    if rows.shape == asked.shape and np.array_equal(rows, asked):
        if inner_array is not None and np.array_equal(as_float64(inner_array), inner):
            return inner_array  # the inner optimizer's own array: it knows its samples
        return inner.copy()
    out = np.empty((len(rows), inner.shape[1]))
    index: dict[bytes, list[int]] = {}
    for i, row in enumerate(asked):
        index.setdefault(row.tobytes(), []).append(i)
    fresh = []
    for i, row in enumerate(rows):
        left = index.get(row.tobytes())
        if not left:
            fresh.append(i)
        else:
            out[i] = inner[left.pop(0)]
    if fresh:
        out[fresh] = encode(rows[fresh], fresh)
    return out
