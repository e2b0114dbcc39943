"""Continuous benchmark functions, torch-vectorized, with seeded shifted/rotated instances.

Each function evaluates a whole ``(n, dim)`` batch in one torch call, in the dtype and
on the device of the input (float64 for numpy input, see :class:`nondiff.problems.Problem`).
``instance=0`` is the canonical function f with optimum x* = c * ones(dim). An
instance ``>= 1`` moves the optimum to s and rotates the landscape around it:

    f_inst(x) = f(R (x - s) + x*),    x_opt = s,    f_opt = f(x*)       # Eq. (1)

R is a random orthogonal matrix (QR of a Gaussian matrix, signs fixed so R is Haar
distributed; the identity when ``rotate=False``, which keeps separable functions
separable) and s is uniform in the central 80% of the domain. Both come from
``numpy.random.default_rng(SeedSequence([crc32(name), dim, instance]))``, so they
are the same in every process, platform and Python run (unlike ``hash()``).

Sources:
    - N. Hansen, S. Finck, R. Ros, A. Auger, "Real-Parameter Black-Box Optimization
      Benchmarking 2009: Noiseless Functions Definitions", INRIA RR-6829, 2009:
      sphere (f1), ellipsoid (f2), rastrigin (f3/f15), rosenbrock (f8), discus (f11),
      bent cigar (f12), different powers (f14), the rotation scheme and the boundary
      penalty idea (f_pen). The BBOB oscillation/asymmetry transforms (T_osz, T_asy,
      Lambda) are not applied: these are the plain functions, shifted and rotated.
    - S. Surjanovic, D. Bingham, "Virtual Library of Simulation Experiments: Test
      Functions and Datasets", https://www.sfu.ca/~ssurjano/: ackley, schwefel,
      griewank, levy, styblinski-tang (formulas and domains), rastrigin's domain.

Example:
    >>> import numpy as np
    >>> from nondiff.problems.continuous import Rastrigin
    >>> f = Rastrigin(dim=4, instance=3)
    >>> values = f(np.stack([f.x_opt, np.zeros(4)]))
    >>> values.shape, values.dtype
    ((2,), dtype('float64'))
    >>> bool(values[0] == f.f_opt), bool(values[1] > f.f_opt)
    (True, True)
"""

from __future__ import annotations

import math
import zlib
from abc import abstractmethod

import numpy as np
import torch
from nondiff.problems.base import Problem

__all__ = [
    "FUNCTIONS",
    "Ackley",
    "BentCigar",
    "ContinuousProblem",
    "DifferentPowers",
    "Discus",
    "Ellipsoid",
    "Griewank",
    "Levy",
    "Rastrigin",
    "Rosenbrock",
    "Schwefel",
    "Sphere",
    "StyblinskiTang",
    "instance_transform",
]


def instance_transform(
    name: str, dim: int, instance: int, lower: np.ndarray, upper: np.ndarray, rotate: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Deterministic optimum location ``s`` and rotation ``R`` of an instance.

    Args:
        name: registry name of the function (part of the seed).
        dim: dimension (part of the seed).
        instance: instance number >= 1 (part of the seed).
        lower, upper: domain bounds; ``s`` is uniform in their central 80%.
        rotate: if False, ``R`` is None (shift only). ``s`` does not depend on it.

    Returns:
        ``(s, R)``: float64 arrays of shape ``(dim,)`` and ``(dim, dim)`` (or None).
    """
    seed = np.random.SeedSequence([zlib.crc32(name.encode("utf-8")), dim, instance])
    rng = np.random.default_rng(seed)
    shift = lower + (upper - lower) * (0.1 + 0.8 * rng.random(dim))
    if not rotate:
        return shift, None
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return shift, q * np.where(np.diag(r) < 0, -1.0, 1.0)  # sign fix: Haar measure


def _ramp(z: torch.Tensor) -> torch.Tensor:
    """``(i - 1) / (d - 1)`` for i = 1..d (zeros when d = 1), in z's dtype and device."""
    d = z.shape[-1]
    return torch.arange(d, dtype=z.dtype, device=z.device) / max(d - 1, 1)


class ContinuousProblem(Problem):
    """A box-bounded continuous function with seeded shifted/rotated instances, Eq. (1).

    Subclasses set ``name``, ``bounds_1d`` (the domain of every coordinate), the
    canonical optimum coordinate ``x_star`` (x* = x_star * ones), ``min_dim`` if
    needed, and ``_f``, the canonical function on a batch ``z`` of shape ``(n, dim)``.

    Args:
        dim: search-space dimension (at least ``min_dim``).
        instance: 0 for the canonical function, >= 1 for a seeded instance.
        rotate: rotate instances >= 1 (False gives shifted-only instances).

    Attributes:
        rotation: the ``(dim, dim)`` float64 tensor R, or None.
        shift: the ``(dim,)`` float64 tensor s, or None for instance 0.
    """

    bounds_1d: tuple[float, float] = (-5.0, 5.0)
    x_star: float = 0.0
    min_dim: int = 1

    def __init__(self, dim: int, instance: int = 0, rotate: bool = True) -> None:
        super().__init__(dim)
        if self.dim < self.min_dim:
            raise ValueError(f"{self.name} needs dim >= {self.min_dim}, got {dim!r}")
        is_int = isinstance(instance, (int, np.integer)) and not isinstance(instance, bool)
        if not is_int or instance < 0:
            raise ValueError(f"instance must be a non-negative integer, got {instance!r}")
        if not isinstance(rotate, bool):
            raise ValueError(f"rotate must be a bool, got {rotate!r}")
        self.instance = int(instance)
        self.rotate = rotate
        self.lower = np.full(self.dim, self.bounds_1d[0], dtype=np.float64)
        self.upper = np.full(self.dim, self.bounds_1d[1], dtype=np.float64)
        self._x_star = torch.full((self.dim,), self.x_star, dtype=torch.float64)
        self.shift: torch.Tensor | None = None
        self.rotation: torch.Tensor | None = None
        if self.instance == 0:
            self.x_opt = self._x_star.numpy().copy()
        else:
            s, r = instance_transform(
                self.name, self.dim, self.instance, self.lower, self.upper, rotate
            )
            self.shift = torch.from_numpy(s)
            self.rotation = None if r is None else torch.from_numpy(r)
            self.x_opt = s.copy()
        # Evaluated, not hard-coded: f(x_opt) reproduces it bit for bit (Eq. (1), R 0 = 0).
        self.f_opt = float(self._f(self._x_star[None])[0])

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """Fitness of a ``(n, dim)`` batch, computed in ``x.dtype`` on ``x.device``."""
        if self.shift is None:
            return self._f(x)
        like = {"dtype": x.dtype, "device": x.device}
        z = x - self.shift.to(**like)
        if self.rotation is not None:
            z = z @ self.rotation.to(**like).T  # row-wise R (x - s)
        return self._f(z + self._x_star.to(**like))

    @abstractmethod
    def _f(self, z: torch.Tensor) -> torch.Tensor:
        """The canonical function on an ``(n, dim)`` batch, returning ``(n,)``."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, instance={self.instance}, rotate={self.rotate})"
        )


class Sphere(ContinuousProblem):
    """BBOB f1: f(z) = sum z_i^2, domain [-5, 5]^d."""

    name = "sphere"

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return z.square().sum(-1)


class Ellipsoid(ContinuousProblem):
    """BBOB f2 (without T_osz): f(z) = sum 10^(6 (i-1)/(d-1)) z_i^2, condition 1e6."""

    name = "ellipsoid"

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return (10.0 ** (6.0 * _ramp(z)) * z.square()).sum(-1)


class Rosenbrock(ContinuousProblem):
    """BBOB f8 (unscaled): f(z) = sum_{i<d} 100 (z_{i+1} - z_i^2)^2 + (z_i - 1)^2, x* = 1."""

    name = "rosenbrock"
    x_star = 1.0
    min_dim = 2

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        head, tail = z[:, :-1], z[:, 1:]
        return (100.0 * (tail - head.square()).square() + (head - 1.0).square()).sum(-1)


class Rastrigin(ContinuousProblem):
    """BBOB f3/f15 (plain): f(z) = 10 d + sum z_i^2 - 10 cos(2 pi z_i), [-5.12, 5.12]^d."""

    name = "rastrigin"
    bounds_1d = (-5.12, 5.12)

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return 10.0 * z.shape[-1] + (z.square() - 10.0 * torch.cos(2 * math.pi * z)).sum(-1)


class Ackley(ContinuousProblem):
    """f(z) = -20 exp(-0.2 sqrt(mean z_i^2)) - exp(mean cos(2 pi z_i)) + 20 + e."""

    name = "ackley"
    bounds_1d = (-32.768, 32.768)

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        rms = z.square().mean(-1).sqrt()
        wave = torch.cos(2 * math.pi * z).mean(-1)
        return -20.0 * torch.exp(-0.2 * rms) - torch.exp(wave) + 20.0 + math.e


class Schwefel(ContinuousProblem):
    """f(z) = 418.9828872724339 d - sum z_i sin(sqrt|z_i|) + sum max(0, |z_i| - 500)^2.

    The quadratic penalty (zero on the domain [-500, 500]^d, like BBOB's f_pen) keeps
    x* the global minimum on R^d: without it the function dives below f_opt outside
    the box, which shifted/rotated instances would expose. x* = 420.96874635998...,
    the root of d/dz [z sin sqrt z] (computed to double precision).
    """

    name = "schwefel"
    bounds_1d = (-500.0, 500.0)
    x_star = 420.96874635998205

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        penalty = (z.abs() - 500.0).clamp(min=0).square().sum(-1)
        wave = (z * torch.sin(z.abs().sqrt())).sum(-1)
        return 418.9828872724339 * z.shape[-1] - wave + penalty


class Griewank(ContinuousProblem):
    """f(z) = sum z_i^2 / 4000 - prod cos(z_i / sqrt(i)) + 1, domain [-600, 600]^d."""

    name = "griewank"
    bounds_1d = (-600.0, 600.0)

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        index = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
        return z.square().sum(-1) / 4000.0 - torch.cos(z / index.sqrt()).prod(-1) + 1.0


class Levy(ContinuousProblem):
    """w = 1 + (z - 1) / 4; f(z) = sin^2(pi w_1) + sum_{i<d} (w_i - 1)^2 (1 + 10 sin^2(pi w_i
    + 1)) + (w_d - 1)^2 (1 + sin^2(2 pi w_d)), domain [-10, 10]^d, x* = 1."""

    name = "levy"
    bounds_1d = (-10.0, 10.0)
    x_star = 1.0

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        w = 1.0 + (z - 1.0) / 4.0
        head, last = w[:, :-1], w[:, -1]
        middle = (head - 1.0).square() * (1.0 + 10.0 * torch.sin(math.pi * head + 1).square())
        tail = (last - 1.0).square() * (1.0 + torch.sin(2 * math.pi * last).square())
        return torch.sin(math.pi * w[:, 0]).square() + middle.sum(-1) + tail


class StyblinskiTang(ContinuousProblem):
    """f(z) = 0.5 sum z_i^4 - 16 z_i^2 + 5 z_i, domain [-5, 5]^d, x* = -2.903534...

    x* is the root of 4 z^3 - 32 z + 5 (double precision); f_opt = d f_1(x*) ~ -39.166 d.
    """

    name = "styblinski-tang"
    x_star = -2.903534027771177

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (z.pow(4) - 16.0 * z.square() + 5.0 * z).sum(-1)


class BentCigar(ContinuousProblem):
    """BBOB f12 (without T_asy): f(z) = z_1^2 + 1e6 sum_{i>1} z_i^2."""

    name = "bent-cigar"

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, 0].square() + 1e6 * z[:, 1:].square().sum(-1)


class Discus(ContinuousProblem):
    """BBOB f11 (without T_osz): f(z) = 1e6 z_1^2 + sum_{i>1} z_i^2."""

    name = "discus"

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return 1e6 * z[:, 0].square() + z[:, 1:].square().sum(-1)


class DifferentPowers(ContinuousProblem):
    """BBOB f14: f(z) = sqrt(sum |z_i|^(2 + 4 (i-1)/(d-1)))."""

    name = "different-powers"

    def _f(self, z: torch.Tensor) -> torch.Tensor:
        return z.abs().pow(2.0 + 4.0 * _ramp(z)).sum(-1).sqrt()


FUNCTIONS: dict[str, type[ContinuousProblem]] = {
    cls.name: cls
    for cls in (
        Sphere,
        Ellipsoid,
        Rosenbrock,
        Rastrigin,
        Ackley,
        Schwefel,
        Griewank,
        Levy,
        StyblinskiTang,
        BentCigar,
        Discus,
        DifferentPowers,
    )
}
"""Registry name -> class of every continuous function (registered by ``nondiff.problems``)."""
