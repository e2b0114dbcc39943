"""Exact Euclidean projections onto discrete and nonconvex sets, for ADMM's z-update.

Each set ``C`` offers ``project(v) = argmin_{x in C} ||x - v||^2`` (numpy in, numpy
out; torch in, torch out), ``contains(x)``, ``sample(rng)`` (a random member, for
random restarts) and ``neighbors(x)`` (members one move away, for a local-search
polish). Sets with a fitted scale also offer ``fit(v) -> (x, a)``.

    integers in a box    x = clip(round(v), l, u)                           # Eq. (1)
    {-a, +a} (a fitted)  b = sign(v), a = mean |v|                          # Eq. (2)
    {-a, 0, +a}          support = k largest |v|, a = mean of those |v|,
                         k* = argmax_k (sum of k largest |v|)^2 / k         # Eq. (3)
    levels {c_1..c_m}    nearest level per entry (fitted scale: alternate
                         x = round(v / a), a = <v, x> / <x, x>)             # Eq. (4)
    k-sparse             keep the k entries of largest |v|                  # Eq. (5)
    permutations         P = argmax_P <P, V> by linear assignment           # Eq. (6)

Eq. (3) is exact: for a fixed support S of size k the best scale is the mean of
|v_S| and the error is ``||v||^2 - (sum_S |v|)^2 / k``, which for each k is
smallest on the k largest entries, so trying every k (after one sort) is the
global optimum (Hou and Kwok 2018, "Loss-aware weight quantization", Prop. 3.2;
Leng et al. 2018 fit the same scales). Eq. (4) with a fitted scale is the
alternating scheme of Leng et al. 2018 (a local optimum, not exact).

Sources:
    - R. Takapoui, N. Moehle, S. Boyd, A. Bemporad, "A simple effective heuristic
      for embedded mixed-integer quadratic programming", Int. J. Control 2017.
    - C. Leng, H. Li, S. Zhu, R. Jin, "Extremely Low Bit Neural Network: Squeeze
      the Last Bit Out with ADMM", AAAI 2018.
    - H. W. Kuhn, "The Hungarian method for the assignment problem", 1955
      (scipy.optimize.linear_sum_assignment).

Example:
    >>> import numpy as np
    >>> from nondiff.optim.projections import IntegerBox, Ternary
    >>> IntegerBox(0, 3).project(np.array([-0.7, 1.4, 2.6, 9.0]))
    array([0., 1., 3., 3.])
    >>> x, a = Ternary().fit(np.array([0.9, -1.1, 0.1, 1.0]))
    >>> x.tolist(), round(a, 6)
    ([1.0, -1.0, 0.0, 1.0], 1.0)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from .arrays import Array
from .checks import check_int, check_positive

__all__ = [
    "Binary", "ConstraintSet", "IntegerBox", "Levels", "Permutations", "Reals", "SetProduct",
    "Sparse", "Ternary",
]  # fmt: skip


def _to_torch(v: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(v, torch.Tensor):
        return v.detach(), False
    return torch.as_tensor(np.asarray(v, dtype=np.float64)), True


def _back(x: torch.Tensor, was_numpy: bool) -> Array:
    return x.numpy().copy() if was_numpy else x


def _scale_arg(scale: float | str | None, name: str) -> float | str | None:
    if scale is None or scale == "fit":
        return scale
    if isinstance(scale, str):
        raise ValueError(f"{name} scale must be a positive number, 'fit' or None, got {scale!r}")
    return check_positive(f"{name} scale", scale)


class ConstraintSet(ABC):
    """A closed set with an exact (or, where documented, alternating) projection."""

    #: whether ``project`` picks a scale per call (then ``fit`` returns it).
    fitted: bool = False

    def project(self, v: Array) -> Array:
        """The nearest member of the set to ``v`` (same shape, library and dtype)."""
        t, was_numpy = _to_torch(v)
        return _back(self._project(t)[0], was_numpy)

    def fit(self, v: Array) -> tuple[Array, float]:
        """``(project(v), scale)``; the scale is 1.0 for sets without one."""
        t, was_numpy = _to_torch(v)
        x, scale = self._project(t)
        return _back(x, was_numpy), float(scale)

    @abstractmethod
    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Projection of a tensor; returns the point and its scale."""

    def contains(self, x: Array, atol: float = 1e-9) -> bool:
        """Whether ``x`` lies in the set (to ``atol``; a fitted scale is refitted, so
        those sets also allow a relative 1e-6 for its rounding)."""
        t, _ = _to_torch(x)
        rtol = 1e-6 if self.fitted else 0.0
        return bool(torch.allclose(self._project(t)[0].to(t.dtype), t, rtol=rtol, atol=atol))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random member of dimension ``size`` (the projection of a N(0, 1) draw)."""
        return self.project(rng.standard_normal(size))

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        """Members one move away from ``x`` (empty: no local search for this set)."""
        return []

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class Reals(ConstraintSet):
    """The box ``[lower, upper]`` (default all of R^n): the continuous part of a product."""

    def __init__(self, lower: float = -math.inf, upper: float = math.inf) -> None:
        if not lower <= upper:
            raise ValueError(f"Reals needs lower <= upper, got lower={lower!r}, upper={upper!r}")
        self.lower, self.upper = float(lower), float(upper)

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        return v.clamp(self.lower, self.upper), 1.0


class IntegerBox(ConstraintSet):
    """Integers in ``[lower, upper]`` per entry (Eq. 1); bounds may be infinite."""

    def __init__(self, lower: float = -math.inf, upper: float = math.inf) -> None:
        for name, b in (("lower", lower), ("upper", upper)):
            if math.isfinite(b) and b != round(b):
                raise ValueError(f"IntegerBox {name} must be an integer or inf, got {b!r}")
        if not lower <= upper:
            raise ValueError(f"IntegerBox needs lower <= upper, got {lower!r} > {upper!r}")
        self.lower, self.upper = float(lower), float(upper)

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        return torch.round(v).clamp(self.lower, self.upper), 1.0  # Eq. (1)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        low = self.lower if math.isfinite(self.lower) else -3.0
        high = self.upper if math.isfinite(self.upper) else low + 6.0
        return rng.integers(int(low), int(high) + 1, size=size).astype(np.float64)

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        out = []
        for i in range(x.size):
            for d in (-1.0, 1.0):
                if self.lower <= x[i] + d <= self.upper:
                    y = x.copy()
                    y[i] += d
                    out.append(y)
        return out


class Binary(ConstraintSet):
    """``{-a, +a}^n``: ``scale`` a number (fixed a, default 1) or ``"fit"`` (Eq. 2)."""

    def __init__(self, scale: float | str = 1.0) -> None:
        self.scale = _scale_arg(scale, "Binary")
        if self.scale is None:
            raise ValueError("Binary scale must be a positive number or 'fit', got None")
        self.fitted = self.scale == "fit"

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        sign = torch.where(v >= 0, 1.0, -1.0).to(v.dtype)
        a = float(v.abs().mean()) if self.fitted else float(self.scale)  # Eq. (2)
        return sign * a, a

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        if self.fitted:
            return []
        out = []
        for i in range(x.size):
            y = x.copy()
            y[i] = -y[i]
            out.append(y)
        return out


def ternary_fit(v: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Exact projection onto ``{-a, 0, +a}^n`` over x and a >= 0 jointly (Eq. 3)."""
    flat = v.reshape(-1)
    if flat.numel() == 0:
        return v.clone(), 0.0
    mags, order = torch.sort(flat.abs(), descending=True)
    sums = torch.cumsum(mags, 0)
    k = torch.arange(1, flat.numel() + 1, dtype=sums.dtype, device=sums.device)
    gain = sums**2 / k  # error = ||v||^2 - gain                           # Eq. (3)
    best = int(torch.argmax(gain))  # first maximum: the smallest best support
    a = float(sums[best] / (best + 1))
    x = torch.zeros_like(flat)
    support = order[: best + 1]
    x[support] = torch.sign(flat[support]) * a
    return x.reshape(v.shape), a


class Ternary(ConstraintSet):
    """``{-a, 0, +a}^n``: ``scale="fit"`` (default; exact joint fit, Eq. 3) or a fixed a
    (then entries round to the nearest of -a, 0, a: threshold a/2)."""

    def __init__(self, scale: float | str = "fit") -> None:
        self.scale = _scale_arg(scale, "Ternary")
        if self.scale is None:
            raise ValueError("Ternary scale must be a positive number or 'fit', got None")
        self.fitted = self.scale == "fit"

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        if self.fitted:
            return ternary_fit(v)
        a = float(self.scale)
        x = torch.where(v.abs() > a / 2, torch.sign(v) * a, torch.zeros_like(v))
        return x, a

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        return [] if self.fitted else Levels([-self.scale, 0.0, self.scale]).neighbors(x)


class Levels(ConstraintSet):
    """Each entry one of the given ``levels`` (sorted, distinct), times a scale.

    ``scale=None`` uses the levels as given (exact, Eq. 4); ``"fit"`` fits a common
    scale a > 0 by alternating minimization from a = max|v| / max|level| (Leng et
    al. 2018; a local optimum). :meth:`uniform` and :meth:`bits` build the usual
    grids.
    """

    def __init__(self, levels: Sequence[float], scale: float | str | None = None,
                 fit_iterations: int = 10) -> None:
        values = np.asarray(levels, dtype=np.float64)
        if values.ndim != 1 or values.size < 2 or not np.all(np.isfinite(values)):
            raise ValueError(f"levels must be >= 2 finite numbers, got {levels!r}")
        if np.any(np.diff(np.sort(values)) == 0):
            raise ValueError(f"levels must be distinct, got {levels!r}")
        self.levels = np.sort(values)
        self.scale = _scale_arg(scale, "Levels")
        self.fitted = self.scale == "fit"
        if self.fitted and not np.any(self.levels != 0):
            raise ValueError("a fitted scale needs a non-zero level")
        self.fit_iterations = check_int("fit_iterations", fit_iterations, 1)

    @classmethod
    def uniform(cls, k: int, low: float = -1.0, high: float = 1.0) -> Levels:
        """``k >= 2`` evenly spaced levels from ``low`` to ``high``."""
        check_int("k", k, 2)
        return cls(np.linspace(low, high, k))

    @classmethod
    def bits(cls, bits: int, scale: float | str = "fit") -> Levels:
        """Symmetric ``bits``-bit integers ``{-(2^(b-1) - 1), ..., 2^(b-1) - 1}`` times a
        scale (``"fit"`` by default); ``bits >= 2`` (2 bits is ternary)."""
        check_int("bits", bits, 2, 16)
        m = 2 ** (bits - 1) - 1
        return cls(np.arange(-m, m + 1, dtype=np.float64), scale=scale)

    def _nearest(self, v: torch.Tensor) -> torch.Tensor:
        levels = torch.as_tensor(self.levels, dtype=v.dtype, device=v.device)
        mids = (levels[1:] + levels[:-1]) / 2
        return levels[torch.bucketize(v, mids)]  # Eq. (4); ties go to the lower level

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        if not self.fitted:
            a = 1.0 if self.scale is None else float(self.scale)
            return self._nearest(v / a) * a, a
        a = float(v.abs().max()) / float(np.abs(self.levels).max())
        if a == 0.0:
            return self._nearest(torch.zeros_like(v)), 0.0
        for _ in range(self.fit_iterations):  # alternate code and scale      # Eq. (4)
            code = self._nearest(v / a)
            norm = float((code * code).sum())
            if norm == 0.0:
                break
            a_new = float((v * code).sum()) / norm
            if a_new <= 0 or a_new == a:
                break
            a = a_new
        return self._nearest(v / a) * a, a

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        a = 1.0 if self.scale in (None, "fit") else float(self.scale)
        return rng.choice(self.levels, size=size) * a

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        if self.fitted:
            return []
        a = 1.0 if self.scale is None else float(self.scale)
        index = np.searchsorted(self.levels, x / a - 1e-9)
        out = []
        for i in range(x.size):
            for j in (index[i] - 1, index[i] + 1):
                if 0 <= j < self.levels.size:
                    y = x.copy()
                    y[i] = self.levels[j] * a
                    out.append(y)
        return out


class Sparse(ConstraintSet):
    """Vectors with at most ``k`` non-zero entries (Eq. 5)."""

    def __init__(self, k: int) -> None:
        self.k = check_int("k", k, 0)

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        flat = v.reshape(-1)
        x = torch.zeros_like(flat)
        k = min(self.k, flat.numel())
        if k:
            keep = torch.topk(flat.abs(), k).indices  # Eq. (5)
            x[keep] = flat[keep]
        return x.reshape(v.shape), 1.0


class Permutations(ConstraintSet):
    """``n x n`` permutation matrices, flattened row-major to ``n * n`` entries (Eq. 6).

    ``||P - V||^2 = n - 2 <P, V> + ||V||^2``, so the nearest permutation matrix
    maximizes ``<P, V>``: a linear assignment problem.
    """

    def __init__(self, n: int) -> None:
        self.n = check_int("n", n, 1)

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        if v.numel() != self.n * self.n:
            raise ValueError(f"Permutations({self.n}) projects vectors of {self.n * self.n} "
                             f"entries (a flattened n x n matrix), got {v.numel()}")
        from scipy.optimize import linear_sum_assignment  # here: scipy takes 0.5 s to import

        matrix = v.reshape(self.n, self.n).cpu().double().numpy()
        rows, cols = linear_sum_assignment(matrix, maximize=True)  # Eq. (6)
        x = torch.zeros(self.n, self.n, dtype=v.dtype, device=v.device)
        x[torch.as_tensor(rows), torch.as_tensor(cols)] = 1.0
        return x.reshape(v.shape), 1.0

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        x = np.zeros((self.n, self.n))
        x[np.arange(self.n), rng.permutation(self.n)] = 1.0
        return x.reshape(-1)

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        matrix = x.reshape(self.n, self.n)
        out = []
        for i in range(self.n):
            for j in range(i + 1, self.n):
                y = matrix.copy()
                y[[i, j]] = y[[j, i]]
                out.append(y.reshape(-1))
        return out


class SetProduct(ConstraintSet):
    """A product of sets over consecutive blocks: ``SetProduct([(3, IntegerBox(0, 4)),
    (2, Reals())])`` is 3 integers followed by 2 reals. Projection is blockwise."""

    def __init__(self, blocks: Sequence[tuple[int, ConstraintSet]]) -> None:
        if not blocks:
            raise ValueError("SetProduct needs at least one (size, set) block")
        for size, part in blocks:
            check_int("block size", size, 1)
            if not isinstance(part, ConstraintSet):
                raise ValueError(f"each block needs a ConstraintSet, got {part!r}")
        self.blocks = [(int(size), part) for size, part in blocks]
        self.size = sum(size for size, _ in self.blocks)

    def _slices(self) -> list[tuple[slice, ConstraintSet]]:
        out, start = [], 0
        for size, part in self.blocks:
            out.append((slice(start, start + size), part))
            start += size
        return out

    def continuous_mask(self) -> np.ndarray:
        """True on the entries of :class:`Reals` blocks."""
        mask = np.zeros(self.size, dtype=bool)
        for s, part in self._slices():
            mask[s] = isinstance(part, Reals)
        return mask

    def _project(self, v: torch.Tensor) -> tuple[torch.Tensor, float]:
        if v.numel() != self.size:
            raise ValueError(f"SetProduct has {self.size} entries, got a vector of {v.numel()}")
        x = v.clone()
        for s, part in self._slices():
            x[s] = part._project(v[s])[0]
        return x, 1.0

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.concatenate([part.sample(rng, s.stop - s.start) for s, part in self._slices()])

    def neighbors(self, x: np.ndarray) -> list[np.ndarray]:
        out = []
        for s, part in self._slices():
            for y in part.neighbors(x[s]):
                full = x.copy()
                full[s] = y
                out.append(full)
        return out
