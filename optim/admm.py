"""Nonconvex ADMM: minimize f(x) subject to x in C, C discrete or nonconvex.

Split ``x = z`` with ``g`` the indicator of ``C`` and alternate (Boyd et al. 2011,
§9.1, in scaled form; Takapoui, Moehle, Boyd and Bemporad 2017 for MIQPs):

    x <- argmin_x f(x) + rho/2 ||x - z + u||^2                          # Eq. (1)
    z <- Proj_C(x + u)                                                  # Eq. (2)
    u <- u + x - z                                                      # Eq. (3)

For a quadratic ``f = 1/2 x'Px + q'x + c`` Eq. (1) is the linear solve
``(P + rho I) x = rho (z - u) - q``, factored once per rho (the MIQP heuristic
of Takapoui et al.). Otherwise Eq. (1) takes ``inner_steps`` of a first-order step
(:mod:`nondiff.optim.steps`) on a user gradient or torch autograd, or ``inner_steps``
generations of any black-box optimizer of the registry on the augmented objective.
After each iteration the feasible ``z`` is evaluated and the best kept; rho grows by
``rho_growth`` per iteration up to ``rho_max`` (``u`` rescaled so ``rho u`` stays,
Boyd et al. §3.4.1). A restart stops when the residuals fall below their
tolerances (Boyd et al. §3.3.1):

    r = ||x - z||,  s = rho ||z - z_prev||                              # Eq. (4)
    eps_pri = sqrt(n) eps_abs + eps_rel max(||x||, ||z||)
    eps_dual = sqrt(n) eps_abs + eps_rel rho ||u||                      # Eq. (5)

or after ``max_iter`` iterations; then the next restart begins at a random member
of ``C``. Each restart's best point is polished: continuous entries of a quadratic
are re-solved with the discrete ones fixed, then a best-improvement local search over
the set's one-move neighbours (±1 on an integer, a sign flip, a swap).

How often restarts find the optimum: the method is a heuristic (Takapoui et al.
2017), so a restart may end in a local optimum; more restarts from random members
of ``C`` raise the chance of the global one. On 50 random box MIQPs
(:class:`nondiff.problems.miqp.MIQP`, seeds 0-49: 8 integers in [-2, 2] and 2 reals,
optimum by brute force; default settings, ``seed=0``; CPU time of one core):

    restarts            1        3        10        30
    optimum found     44/50    46/50    48/50     49/50
    ms per instance     7       16        43       146
    polish=False       0/50     0/50     1/50      3/50

The time grows linearly with the restarts, the failures fall far more slowly than
``(1 - p)^restarts`` with ``p = 44/50``: they concentrate on a few instances whose
optimum few random starts lead to. The polish does most of the work (last row). The
default stays ``restarts=1``; pass 3-10 where the optimum matters more than 2-6x the
time. Measured with::

    from nondiff.optim.admm import ADMM
    from nondiff.problems.miqp import MIQP
    ps = [MIQP(seed=s) for s in range(50)]
    for r in (1, 3, 10, 30):
        print(r, sum(ADMM(p.constraint_set, P=p.P, q=p.q, restarts=r, seed=0).solve().f
                     <= p.f_opt + 1e-9 for p in ps))

ADMM is not in the optimizer registry: it needs the set ``C`` (a projection) and,
for its fast paths, ``P, q`` or gradients, which the ask/tell protocol on a black-box
fitness does not carry. It has its own ``step``/``solve``/``stop``/``state_dict``.

Example:
    >>> import numpy as np
    >>> from nondiff.optim.admm import ADMM
    >>> from nondiff.optim.projections import IntegerBox
    >>> P, q = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([-3.1, 1.4])
    >>> res = ADMM(IntegerBox(-3, 3), P=P, q=q, restarts=3, seed=0).solve()
    >>> res.x.tolist(), round(res.f, 3), res.feasible
    ([2.0, -2.0], -5.0, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from . import registry
from .base import Result
from .checks import as_float64, check_bool, check_int, check_positive, check_real
from .projections import ConstraintSet, SetProduct
from .state import from_plain, plain_equal, to_plain
from .steps import make_step

__all__ = ["ADMM", "ADMMState"]

STATE_VERSION = 1


@dataclasses.dataclass
class ADMMState:
    """Dynamic state of an ADMM run (numpy float64 arrays and scalars)."""

    x: np.ndarray
    z: np.ndarray
    u: np.ndarray
    rho: float
    restart: int = 0
    iteration: int = 0  # within the current restart
    iterations: int = 0  # over all restarts
    evaluations: int = 0
    primal_residual: float = math.inf
    dual_residual: float = math.inf
    converged: int = 0  # restarts that met the residual tolerances
    restart_best_x: np.ndarray | None = None
    restart_best_f: float = math.inf
    best_x: np.ndarray | None = None
    best_f: float = math.inf
    done: bool = False
    history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2)))


class ADMM:
    """ADMM for ``min f(x) s.t. x in constraint_set``; see the module docstring.

    Args:
        constraint_set: a :class:`~nondiff.optim.projections.ConstraintSet`.
        objective: ``f`` on a numpy ``(dim,)`` point (or a torch tensor when
            ``x_update="gradient"`` without ``gradient``: autograd). Optional when
            ``P`` is given.
        P, q, c: quadratic ``f = 1/2 x'Px + q'x + c`` (P symmetric, ``(dim, dim)``).
        gradient: ``grad f`` on a numpy point, for ``x_update="gradient"``.
        x0: start of the first restart (default: a random member of the set).
        dim: problem dimension when neither ``P`` nor ``x0`` gives it.
        x_update: ``"auto"`` (quadratic if P, else gradient), ``"quadratic"``,
            ``"gradient"``, or an optimizer name of :mod:`nondiff.optim.registry`.
        inner_steps: first-order steps or black-box generations per Eq. (1).
        inner_step, inner_lr: the first-order step (``"adam"``, ``"sgd"``) and rate.
        inner_sigma, inner_popsize: the black-box optimizer's sigma0 and popsize.
        rho, rho_growth, rho_max: penalty, its factor per iteration, its cap.
        max_iter: iterations per restart; restarts: number of restarts (>= 1).
        eps_abs, eps_rel: residual tolerances of Eq. (5).
        polish: re-solve continuous entries and search one-move neighbours.
        polish_rounds: at most this many local-search moves per restart.
        seed: seed of the random starts (and of black-box inner optimizers).
    """

    name = "admm"

    def __init__(
        self, constraint_set: ConstraintSet, objective: Callable[[Any], Any] | None = None, *,
        P: Any = None, q: Any = None, c: float = 0.0,
        gradient: Callable[[np.ndarray], Any] | None = None, x0: Any = None,
        dim: int | None = None, x_update: str = "auto", inner_steps: int = 20,
        inner_step: str = "adam", inner_lr: float = 0.05, inner_sigma: float = 0.3,
        inner_popsize: int | None = None, rho: float = 1.0, rho_growth: float = 1.0,
        rho_max: float = 1e6, max_iter: int = 200, restarts: int = 1, eps_abs: float = 1e-6,
        eps_rel: float = 1e-4, polish: bool = True, polish_rounds: int = 100, seed: int = 0,
    ) -> None:
        if not isinstance(constraint_set, ConstraintSet):
            raise ValueError("constraint_set must be a nondiff.optim.projections.ConstraintSet, "
                             f"got {constraint_set!r}")
        self.set = constraint_set
        self.P = None if P is None else as_float64(P, "P")
        self.q = None if q is None else as_float64(q, "q")
        self.c = check_real("c", c)
        sizes = {"P": None if self.P is None else self.P.shape[0], "dim": dim,
                 "x0": None if x0 is None else np.asarray(as_float64(x0, "x0")).size}
        known = {k: v for k, v in sizes.items() if v is not None}
        if not known:
            raise ValueError("cannot tell the dimension: pass P, x0 or dim")
        if len(set(known.values())) > 1:
            raise ValueError(f"dimensions disagree: {known}")
        self.dim = int(next(iter(known.values())))
        check_int("dim", self.dim, 1)
        if self.P is not None:
            if self.P.shape != (self.dim, self.dim) or not np.allclose(self.P, self.P.T):
                raise ValueError(f"P must be a symmetric ({self.dim}, {self.dim}) matrix, "
                                 f"got shape {self.P.shape}")
            self.q = np.zeros(self.dim) if self.q is None else self.q
            if self.q.shape != (self.dim,):
                raise ValueError(f"q must have shape ({self.dim},), got {self.q.shape}")
        elif self.q is not None:
            raise ValueError("q was given without P; pass both for a quadratic objective")
        if objective is not None and not callable(objective):
            raise ValueError(f"objective must be callable, got {objective!r}")
        self.objective, self.gradient = objective, gradient
        if x_update == "auto":
            x_update = "quadratic" if self.P is not None else "gradient"
        if x_update == "quadratic" and self.P is None:
            raise ValueError("x_update='quadratic' needs P (and q)")
        if objective is None and self.P is None:
            raise ValueError("pass an objective or a quadratic (P, q)")
        if x_update not in ("quadratic", "gradient"):
            registry.get(x_update)  # a ValueError naming the known optimizers
        self.x_update = x_update
        self.inner_steps = check_int("inner_steps", inner_steps, 1)
        self._step = make_step(inner_step, lr=check_positive("inner_lr", inner_lr))
        self.inner_step, self.inner_lr = inner_step, float(inner_lr)
        self.inner_sigma = check_positive("inner_sigma", inner_sigma)
        self.inner_popsize = None if inner_popsize is None else check_int(
            "inner_popsize", inner_popsize, 2)
        self.rho0 = check_positive("rho", rho)
        self.rho_growth = check_real("rho_growth", rho_growth, low=1.0)
        self.rho_max = check_real("rho_max", rho_max, low=self.rho0)
        self.max_iter = check_int("max_iter", max_iter, 1)
        self.restarts = check_int("restarts", restarts, 1)
        self.eps_abs = check_real("eps_abs", eps_abs, low=0.0)
        self.eps_rel = check_real("eps_rel", eps_rel, low=0.0)
        self.polish = check_bool("polish", polish)
        self.polish_rounds = check_int("polish_rounds", polish_rounds, 0)
        self.seed = check_int("seed", seed, 0, 2**63 - 1)
        self._continuous = (self.set.continuous_mask() if isinstance(self.set, SetProduct)
                            else np.zeros(self.dim, dtype=bool))
        if self._continuous.size != self.dim:
            raise ValueError(f"the set has {self._continuous.size} entries, the problem {self.dim}")
        self._factor: tuple[float, Any] | None = None
        self._rng = np.random.default_rng(self.seed)
        start = (self.set.sample(self._rng, self.dim) if x0 is None
                 else np.asarray(as_float64(x0, "x0")).reshape(-1))
        if not np.all(np.isfinite(start)):
            raise ValueError("x0 contains NaN or inf; give a finite starting point")
        self.state = self._fresh(start)

    # ----- the iteration -------------------------------------------------------
    def _fresh(self, start: np.ndarray) -> ADMMState:
        z = np.asarray(self.set.project(start), dtype=np.float64)
        return ADMMState(x=start.copy(), z=z, u=np.zeros(self.dim), rho=self.rho0)

    def value(self, x: np.ndarray) -> float:
        """``f(x)`` (counted as an evaluation)."""
        self.state.evaluations += 1
        if self.P is not None:
            return float(0.5 * x @ self.P @ x + self.q @ x + self.c)
        arg = torch.as_tensor(x) if self.x_update == "gradient" and self.gradient is None else x
        return float(as_float64(self.objective(arg), "the objective's value"))

    def _x_update(self, s: ADMMState) -> np.ndarray:
        v = s.z - s.u
        if self.x_update == "quadratic":
            import scipy.linalg  # here: importing scipy takes 0.5 s a process may not need

            if self._factor is None or self._factor[0] != s.rho:
                self._factor = (s.rho, scipy.linalg.lu_factor(self.P + s.rho * np.eye(self.dim)))
            return scipy.linalg.lu_solve(self._factor[1], s.rho * v - self.q)  # Eq. (1)
        if self.x_update == "gradient":
            x = torch.as_tensor(s.x.copy())
            step_state = self._step.init(x)
            for _ in range(self.inner_steps):
                grad = self._grad_f(x) + s.rho * (x - torch.as_tensor(v))
                x = x + self._step.update(grad, step_state)
            return x.numpy()
        inner = registry.create(self.x_update, s.x.copy(), sigma0=self.inner_sigma,
                                popsize=self.inner_popsize,
                                seed=int(self._rng.integers(2**63)))
        for _ in range(self.inner_steps):
            cand = inner.ask()
            fit = [self.value(row) + 0.5 * s.rho * float(((row - v) ** 2).sum()) for row in cand]
            inner.tell(cand, np.asarray(fit))
        return np.asarray(inner.recommend(), dtype=np.float64)

    def _grad_f(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient is not None:
            return torch.as_tensor(as_float64(self.gradient(x.numpy()), "the gradient"))
        xg = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.objective(xg), xg)
        return g.detach()

    def step(self) -> dict[str, float]:
        """One ADMM iteration (Eqs. 1-3); ends, polishes and restarts as needed.

        Returns:
            metrics: iteration, rho, primal/dual residuals, f(z) and the best f.
        """
        s = self.state
        if s.done:
            raise ValueError("the run has finished (stop() is not empty); build a new ADMM")
        s.x = np.asarray(self._x_update(s), dtype=np.float64)
        z_prev = s.z
        s.z = np.asarray(self.set.project(s.x + s.u), dtype=np.float64)  # Eq. (2)
        s.u = s.u + s.x - s.z  # Eq. (3)
        s.primal_residual = float(np.linalg.norm(s.x - s.z))  # Eq. (4)
        s.dual_residual = float(s.rho * np.linalg.norm(s.z - z_prev))
        f_z = self.value(s.z)
        if f_z < s.restart_best_f:
            s.restart_best_f, s.restart_best_x = f_z, s.z.copy()
        s.iteration += 1
        s.iterations += 1
        root = math.sqrt(self.dim)
        eps_pri = root * self.eps_abs + self.eps_rel * max(np.linalg.norm(s.x),
                                                           np.linalg.norm(s.z))
        eps_dual = root * self.eps_abs + self.eps_rel * s.rho * np.linalg.norm(s.u)  # Eq. (5)
        converged = s.primal_residual <= eps_pri and s.dual_residual <= eps_dual
        metrics = {"iteration": float(s.iterations), "restart": float(s.restart),
                   "rho": s.rho, "primal_residual": s.primal_residual,
                   "dual_residual": s.dual_residual, "f_z": f_z}
        rho_new = min(s.rho * self.rho_growth, self.rho_max)
        s.u, s.rho = s.u * (s.rho / rho_new), rho_new  # keep rho * u (Boyd et al. 3.4.1)
        if converged or s.iteration >= self.max_iter:
            s.converged += int(converged)
            self._end_restart()
        metrics["best_f"] = min(s.best_f, s.restart_best_f)
        s.history = np.vstack([s.history, [s.evaluations, metrics["best_f"]]])
        return metrics

    def _end_restart(self) -> None:
        s = self.state
        x, f = s.restart_best_x, s.restart_best_f
        if self.polish and x is not None:
            x, f = self._polish(x, f)
        if x is not None and f < s.best_f:
            s.best_x, s.best_f = x.copy(), f
        if s.restart + 1 >= self.restarts:
            s.done = True
            return
        fresh = self._fresh(self.set.sample(self._rng, self.dim))
        for name in ("restart", "iterations", "evaluations", "converged", "best_x", "best_f",
                     "history", "primal_residual", "dual_residual"):
            setattr(fresh, name, getattr(s, name))
        fresh.restart += 1
        self.state = fresh

    # ----- polish ----------------------------------------------------------------
    def _complete(self, x: np.ndarray) -> np.ndarray:
        """Re-solve the continuous entries of a quadratic with the others fixed."""
        c = self._continuous
        if self.P is None or not c.any():
            return x
        d = ~c
        rhs = -(self.q[c] + self.P[np.ix_(c, d)] @ x[d])
        import scipy.linalg

        try:
            xc = scipy.linalg.solve(self.P[np.ix_(c, c)], rhs, assume_a="sym")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            return x
        y = x.copy()
        y[c] = xc
        return np.asarray(self.set.project(y), dtype=np.float64)  # clip bounded reals

    def _polish(self, x: np.ndarray, f: float) -> tuple[np.ndarray, float]:
        y = self._complete(x)
        fy = self.value(y)
        if fy < f:
            x, f = y, fy
        for _ in range(self.polish_rounds):  # best-improvement local search
            best = None
            for nb in self.set.neighbors(x):
                nb = self._complete(nb)
                f_nb = self.value(nb)
                if f_nb < f - 1e-12 * max(1.0, abs(f)):
                    best, f = nb, f_nb
            if best is None:
                break
            x = best
        return x, f

    # ----- the loop and the protocol-like face -----------------------------------
    def stop(self) -> dict[str, Any]:
        """Empty while running; at the end, the restarts run, how many converged
        (residuals under Eq. 5) and the last residuals."""
        s = self.state
        if not s.done:
            return {}
        return {"restarts": s.restart + 1, "converged": s.converged,
                "primal_residual": s.primal_residual, "dual_residual": s.dual_residual}

    def recommend(self) -> np.ndarray:
        """The best feasible point so far (the current z before any is evaluated)."""
        s = self.state
        candidates = [(s.best_f, s.best_x), (s.restart_best_f, s.restart_best_x)]
        _, x = min(((f, x) for f, x in candidates if x is not None), default=(0.0, s.z),
                   key=lambda t: t[0])
        return np.array(x, copy=True)

    def solve(self, callback: Callable[[dict[str, float]], Any] | None = None) -> Result:
        """Iterate until :meth:`stop` is not empty; ``callback(metrics)`` after each step
        may return True to end early."""
        while not self.stop():
            metrics = self.step()
            if callback is not None and callback(metrics):
                break
        s = self.state
        x = self.recommend()
        f = s.best_f if s.best_x is not None else s.restart_best_f
        return Result(x=x, f=float(f), evaluations=s.evaluations, iterations=s.iterations,
                      stop=self.stop() or {"callback": True}, history=s.history.copy(),
                      optimizer=self.name, feasible=self.set.contains(x), violation=0.0)

    # ----- state -------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"set": repr(self.set), "dim": self.dim, "x_update": self.x_update,
                "P": self.P, "q": self.q, "c": self.c, "inner_steps": self.inner_steps,
                "inner_step": self.inner_step, "inner_lr": self.inner_lr,
                "inner_sigma": self.inner_sigma, "inner_popsize": self.inner_popsize,
                "rho": self.rho0, "rho_growth": self.rho_growth, "rho_max": self.rho_max,
                "max_iter": self.max_iter, "restarts": self.restarts, "eps_abs": self.eps_abs,
                "eps_rel": self.eps_rel, "polish": self.polish,
                "polish_rounds": self.polish_rounds, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """A versioned plain dict (``torch.load(weights_only=True)``-able)."""
        return {"optimizer": self.name, "state_version": STATE_VERSION,
                "config": to_plain(self.config()), "rng": dict(self._rng.bit_generator.state),
                "state": to_plain(self.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the run continues bit for bit.

        Raises:
            ValueError: another optimizer, version or configuration, or unknown keys.
        """
        keys = {"optimizer", "state_version", "config", "rng", "state"}
        if not isinstance(state, Mapping) or set(state) != keys:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an ADMM state dict: expected keys {sorted(keys)}, got {got}")
        if state["optimizer"] != self.name or state["state_version"] > STATE_VERSION:
            raise ValueError(f"state dict is of {state['optimizer']!r} version "
                             f"{state['state_version']}, not admm <= {STATE_VERSION}")
        saved, current = dict(state["config"]), to_plain(self.config())
        differ = sorted(k for k in set(saved) | set(current)
                        if not plain_equal(saved.get(k), current.get(k)))
        if differ:
            raise ValueError(f"state dict was made with another configuration ({differ}); "
                             "construct ADMM with the same arguments before loading")
        template = dataclasses.replace(self.state, restart_best_x=np.zeros(0),
                                       best_x=np.zeros(0))
        plain = dict(state["state"])
        nones = [k for k in ("restart_best_x", "best_x") if k in plain and plain[k] is None]
        for name in nones:
            del plain[name]
        new = from_plain(template, plain)
        for name in nones:  # None stays None
            setattr(new, name, None)
        self._rng.bit_generator.state = dict(state["rng"])
        self.state = new
