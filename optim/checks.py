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

__all__ = ["as_float64", "check_bool", "check_int", "check_positive", "check_real",
           "check_real_dtype"]


def as_float64(value: Any, what: str = "value") -> np.ndarray:
    """``value`` (numpy, torch on any device, list or number) as a new float64 numpy
    array; a ValueError naming ``what`` when it is not real numbers (strings, even
    numeric ones, None, complex values: numpy would turn them into floats, NaN or
    drop the imaginary part without a word)."""
    if hasattr(value, "detach"):  # a torch tensor (without importing torch here)
        if value.is_complex():
            raise ValueError(f"{what} must be numeric (real numbers), got a complex tensor; "
                             "the imaginary part would be dropped: pass .real if that is meant")
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numeric (real numbers), got "
                         f"{type(value).__name__} {_short(value)}") from None
    check_real_dtype(array, what)
    return np.array(array, dtype=np.float64)


def check_real_dtype(array: np.ndarray, what: str) -> None:
    """A ValueError naming ``what`` unless ``array`` holds real numbers (bool, int,
    float, or objects that are all real numbers)."""
    kind, need = array.dtype.kind, f"{what} must be numeric (real numbers)"
    if kind in "biuf":
        return
    if kind == "c":
        raise ValueError(f"{need}, got complex values ({_short(array)}); the imaginary "
                         "part would be dropped: pass np.real(...) if that is meant")
    if kind == "O":
        bad = [v for v in array.reshape(-1) if not isinstance(v, (numbers.Real, np.bool_))]
        if not bad:
            return
        raise ValueError(f"{need}, got {bad[0]!r} ({type(bad[0]).__name__}); give a float "
                         "for every entry")
    if kind in "US":
        raise ValueError(f"{need}, got strings ({_short(array)}); convert them with "
                         "float() if they are meant as numbers")
    raise ValueError(f"{need}, got dtype {array.dtype} ({_short(array)})")


def _short(value: Any) -> str:
    text = repr(value.reshape(-1)[:3].tolist()) if isinstance(value, np.ndarray) \
        else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
