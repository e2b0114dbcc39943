"""Small mixed-integer quadratic programs with brute-force optima.

:class:`MIQP` is ``min 1/2 x'Px + q'x`` over ``n_int`` integers in ``[lower, upper]``
followed by ``n_cont`` free reals, with P positive definite; :class:`IntegerLeastSquares`
is ``min ||Ax - b||^2`` over integers in a box (the box-constrained integer least
squares of Takapoui et al. 2017, §5). Both are small enough to enumerate: for each
integer assignment the reals are eliminated in closed form (a Schur complement),

    f*(x_I) = 1/2 x_I' S x_I + t' x_I + c0,   S = P_II - P_IC P_CC^-1 P_CI,
    t = q_I - P_IC P_CC^-1 q_C,  c0 = c - 1/2 q_C' P_CC^-1 q_C,          # Eq. (1)

so ``f_opt``/``x_opt`` are exact. :func:`round_relaxation` is the usual baseline:
solve the box relaxation, round the integers, re-solve the reals.

Sources:
    - R. Takapoui, N. Moehle, S. Boyd, A. Bemporad, "A simple effective heuristic
      for embedded mixed-integer quadratic programming", Int. J. Control 2017.

Example:
    >>> from nondiff.problems.miqp import MIQP
    >>> p = MIQP(n_int=4, n_cont=2, seed=0)
    >>> bool(abs(float(p(p.x_opt)) - p.f_opt) < 1e-9), p.constraint_set.contains(p.x_opt)
    (True, True)
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch
from nondiff.optim.checks import check_int, check_positive
from nondiff.optim.projections import IntegerBox, Reals, SetProduct
from nondiff.problems.base import Problem

__all__ = ["MIQP", "IntegerLeastSquares", "QuadraticProblem", "round_relaxation"]

MAX_ASSIGNMENTS = 2_000_000


class QuadraticProblem(Problem):
    """``f(x) = 1/2 x'Px + q'x + c`` over integers ``[lower, upper]^n_int`` x ``R^n_cont``."""

    def __init__(self, P: np.ndarray, q: np.ndarray, c: float, n_int: int, lower: int,
                 upper: int) -> None:
        super().__init__(P.shape[0])
        self.P, self.q, self.c = P, q, float(c)
        self.n_int, self.n_cont = n_int, self.dim - n_int
        self.int_lower, self.int_upper = lower, upper
        blocks = [(n_int, IntegerBox(lower, upper))]
        if self.n_cont:
            blocks.append((self.n_cont, Reals()))
        self.constraint_set = SetProduct(blocks)
        count = (upper - lower + 1) ** n_int
        if count > MAX_ASSIGNMENTS:
            raise ValueError(f"{count} integer assignments are too many to enumerate (max "
                             f"{MAX_ASSIGNMENTS}); use fewer integers or a smaller box")
        self.x_opt, self.f_opt = self._brute_force()

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        P = torch.as_tensor(self.P, dtype=x.dtype)
        q = torch.as_tensor(self.q, dtype=x.dtype)
        return 0.5 * ((x @ P) * x).sum(dim=1) + x @ q + self.c

    def complete(self, x_int: np.ndarray) -> np.ndarray:
        """The best full point with the given integer part (reals re-solved)."""
        i, c = slice(0, self.n_int), slice(self.n_int, self.dim)
        x = np.concatenate([np.asarray(x_int, dtype=np.float64), np.zeros(self.n_cont)])
        if self.n_cont:
            x[c] = np.linalg.solve(self.P[c, c], -(self.q[c] + self.P[c, i] @ x[i]))
        return x

    def _brute_force(self) -> tuple[np.ndarray, float]:
        i, c = slice(0, self.n_int), slice(self.n_int, self.dim)
        S, t, c0 = self.P[i, i], self.q[i], self.c
        if self.n_cont:
            solve = np.linalg.solve(self.P[c, c], np.column_stack([self.P[c, i], self.q[c]]))
            S = S - self.P[i, c] @ solve[:, :-1]  # Eq. (1)
            t = t - self.P[i, c] @ solve[:, -1]
            c0 = c0 - 0.5 * self.q[c] @ solve[:, -1]
        base, n = self.int_upper - self.int_lower + 1, self.n_int
        powers = base ** np.arange(n - 1, -1, -1)
        best_f, best_x = np.inf, None
        for start in range(0, base**n, 200_000):  # every assignment, as base-`base` digits
            index = np.arange(start, min(start + 200_000, base**n))
            chunk = (index[:, None] // powers % base + self.int_lower).astype(np.float64)
            f = 0.5 * ((chunk @ S) * chunk).sum(axis=1) + chunk @ t + c0
            k = int(np.argmin(f))
            if f[k] < best_f:
                best_f, best_x = float(f[k]), chunk[k].copy()
        x = self.complete(best_x)
        return x, float(0.5 * x @ self.P @ x + self.q @ x + self.c)


class MIQP(QuadraticProblem):
    """A random strictly convex MIQP: ``P = M M' / n + 0.1 I`` with M Gaussian, and q
    ``scale``-times Gaussian, so that the unconstrained optimum lies near the box edge.

    Args:
        n_int, n_cont: number of integer and continuous variables.
        lower, upper: the integer box.
        scale: size of q relative to P.
        seed: instance seed.
    """

    name = "miqp"

    def __init__(self, n_int: int = 8, n_cont: int = 2, lower: int = -2, upper: int = 2,
                 scale: float = 2.0, seed: int = 0) -> None:
        n_int, n_cont = check_int("n_int", n_int, 1), check_int("n_cont", n_cont, 0)
        lower, upper = check_int("lower", lower, -100), check_int("upper", upper, lower)
        check_positive("scale", scale)
        n = n_int + n_cont
        rng = np.random.default_rng(check_int("seed", seed, 0))
        M = rng.standard_normal((n, n))
        P = M @ M.T / n + 0.1 * np.eye(n)
        q = scale * rng.standard_normal(n)
        super().__init__(P, q, 0.0, n_int, lower, upper)


class IntegerLeastSquares(QuadraticProblem):
    """``min ||Ax - b||^2`` over integers in ``[lower, upper]^n``: A is ``(m, n)``
    Gaussian, ``b = A x_true + noise * N(0, 1)`` for a random integer ``x_true``."""

    name = "integer-least-squares"

    def __init__(self, m: int = 12, n: int = 8, lower: int = -2, upper: int = 2,
                 noise: float = 2.0, seed: int = 0) -> None:
        m, n = check_int("m", m, 1), check_int("n", n, 1)
        lower, upper = check_int("lower", lower, -100), check_int("upper", upper, lower)
        check_positive("noise", noise)
        rng = np.random.default_rng(check_int("seed", seed, 0))
        A = rng.standard_normal((m, n))
        self.x_true = rng.integers(lower, upper + 1, size=n).astype(np.float64)
        b = A @ self.x_true + noise * rng.standard_normal(m)
        self.A, self.b = A, b
        super().__init__(2 * A.T @ A, -2 * A.T @ b, float(b @ b), n, lower, upper)


def round_relaxation(problem: QuadraticProblem) -> tuple[np.ndarray, float]:
    """The relax-and-round baseline: the box-relaxed QP (L-BFGS-B), integers rounded,
    reals re-solved. Returns ``(x, f(x))``."""
    lower = np.r_[np.full(problem.n_int, problem.int_lower), np.full(problem.n_cont, -np.inf)]
    upper = np.r_[np.full(problem.n_int, problem.int_upper), np.full(problem.n_cont, np.inf)]
    res = scipy.optimize.minimize(
        lambda x: (0.5 * x @ problem.P @ x + problem.q @ x, problem.P @ x + problem.q),
        np.zeros(problem.dim), jac=True, method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)), options={"ftol": 1e-12, "gtol": 1e-10})
    x = problem.complete(np.round(res.x[: problem.n_int]))
    return x, float(0.5 * x @ problem.P @ x + problem.q @ x + problem.c)
