"""Validation of hyperparameters: each check returns the clean value or raises a
ValueError that names the argument, the value and what was expected.

Example:
    >>> from nondiff.optim.checks import check_real
    >>> check_real("lr", 0.1, low=0.0, low_open=True)
    0.1
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["as_float64", "check_bool", "check_int", "check_positive", "check_real"]


def as_float64(value: Any, what: str = "value") -> np.ndarray:
    """``value`` (numpy, torch on any device, list or number) as a new float64 numpy
    array; a ValueError naming ``what`` when it is not numeric."""
    if hasattr(value, "detach"):  # a torch tensor (without importing torch here)
        value = value.detach().cpu().double().numpy()
    try:
        return np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric, got {type(value).__name__}") from None


def check_real(
    name: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
    low_open: bool = False, high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it is a finite real in the interval, else ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``int(value)`` if it is an integer in ``[low, high]``, else a ValueError naming it."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite number > 0, else a ValueError naming it."""
    return check_real(name, value, low=0.0, low_open=True)
