"""CMA-ES in torch: full or separable covariance, on the device and dtype of ``x0``.

The same algorithm as :class:`~nondiff.optim.cmaes.CMAES` (pycma) — the
(mu/mu_w, lambda)-CMA-ES with active covariance update and cumulative step-size
adaptation of N. Hansen (2016), "The CMA Evolution Strategy: A Tutorial",
arXiv:1604.00772 (``# Eq. (n)`` below are its equations), with the parameters
and details of pycma 4.x (:mod:`nondiff.optim.cmaes_parameters`), written for
torch so that sampling, the update and the eigendecomposition run on the GPU
when ``x0`` lives there. Given the same samples and fitness, one update gives
pycma's mean, step size and covariance matrix (tests/test_cmaes_torch.py).

- Sampling: ``x_k = m + sigma B (D * z_k)``, ``z_k ~ N(0, I)``, ``C = B D^2 B^T``.
- The eigendecomposition of ``C`` (``torch.linalg.eigh`` on a GPU, numpy's LAPACK on
  the CPU: faster than torch's MKL build there, see ``_eigh``) is lazy,
  as in pycma: done before sampling once ``1 / (10 n (c_1 + c_mu))`` updates
  have accumulated since the last one (every generation at small dimension and
  large population, less often otherwise). ``C`` is symmetrized first, in place.
- ``covariance="diagonal"``: sep-CMA-ES (R. Ros, N. Hansen (2008), "A simple
  modification in CMA-ES achieving linear time and space complexity", PPSN X):
  ``C`` is diagonal, learning rates ``(n + 2) / 3`` times larger, no
  eigendecomposition. (pycma's ``CMA_diagonal`` updates a diagonal decoding
  multiplicatively instead: the two sep variants agree to first order only.)
- Step size: CSA in every dimension (pycma switches to TPA from 300-D on).
- Bounds: pycma's default ``BoundTransform`` (:mod:`nondiff.optim.box_transform`):
  the distribution lives on the unbounded genotype, every candidate is mapped into
  the box; told candidates are mapped back to the genotypes they came from.
  ``mean`` is the mapped mean, as pycma's ``xfavorite``.
- Stop criteria, after pycma's defaults: ``tolfun`` (1e-11: the generation's
  values and the recent generation-best values lie within it), ``tolx`` (1e-11:
  ``sigma max(sqrt(C_ii), |p_c,i|)`` below it in every coordinate),
  ``tolconditioncov`` (condition of ``C`` above 1e14), ``tolflatfitness`` (the
  best and the quarter-rank value are equal in two generations in a row), and
  ``nonfinite_state`` (a NaN/inf in the state: the run stops rather than spread it).
  IPOP/BIPOP restarts: ``ipop-cmaes-torch``, ``bipop-cmaes-torch`` (and ``sep-``).

Per generation the host reads the told fitness (for the ranking) and one small
tensor of scalars (step size, condition, stop tests): no other synchronisation, with
bounds too (off the CPU a tell of the tensor ask returned, unedited, is recognized by
its version counter; on the CPU, where a read is free and a numpy view can edit a
tensor unseen, by comparing values). A generation that decomposes ``C`` reads once
more when it does (the smallest eigenvalue and a finiteness flag, for pycma's repair
of a ``C`` that is not positive definite); on a GPU, torch's ``eigh`` also waits for
its own error flag then.
Memory for full covariance: ``C`` and ``B`` (``n x n`` each), plus the workspace of
the eigendecomposition; the previous ``B`` is released before it.

Example:
    >>> import torch
    >>> from nondiff.optim.cmaes_torch import CMAESTorch
    >>> opt = CMAESTorch(torch.full((6,), 3.0, dtype=torch.float64), sigma0=2.0, seed=1)
    >>> while not opt.stop():
    ...     x = opt.ask()
    ...     _ = opt.tell(x, (x**2).sum(dim=1))
    >>> bool(opt.best_f < 1e-10), sorted(opt.stop())
    (True, ['tolfun'])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from .arrays import Array
from .base import BaseOptimizer, _edits_seen, _same_tensor
from .box_transform import BoxTransform
from .cmaes_parameters import StrategyParameters, strategy_parameters
from .hyperparameters import Hyperparameters, boolean, choice, hyperparameter
from .state import from_plain, to_plain

__all__ = ["CMAESTorch", "CMAESTorchConfig", "CMATorchState", "SepCMAESTorch"]

TOLFUN, TOLX, TOLCONDITION = 1e-11, 1e-11, 1e14  # pycma's defaults
SYMMETRIZE_BLOCK = 2048  # symmetrize C in blocks of this size (no n x n temporary)


@dataclasses.dataclass(frozen=True)
class CMAESTorchConfig(Hyperparameters):
    """Hyperparameters of :class:`CMAESTorch` (see its arguments)."""

    covariance: str = hyperparameter("full", choice(("full", "diagonal")))
    active: bool = hyperparameter(True, boolean())


@dataclasses.dataclass(frozen=True)
class SepCMAESTorchConfig(CMAESTorchConfig):
    """Hyperparameters of :class:`SepCMAESTorch`: diagonal by default."""

    covariance: str = hyperparameter("diagonal", choice(("full", "diagonal")))


@dataclasses.dataclass
class CMATorchState:
    """Dynamic state; tensors on the device and in the dtype of ``x0``."""

    mean: torch.Tensor  # m, the genotype mean
    sigma: torch.Tensor  # step size (0-dim: no host read per generation)
    cov: torch.Tensor  # C: (n, n), or its diagonal (n,) for sep-CMA
    eigvecs: torch.Tensor  # B (n, n) of the last decomposition; (0,) for sep-CMA
    axes: torch.Tensor  # D: square roots of the eigenvalues (sep-CMA: of diag C)
    pc: torch.Tensor  # rank-one evolution path
    ps: torch.Tensor  # step-size (conjugate) evolution path
    generation: int = 0  # tells so far (pycma's countiter)
    since_eigen: int = 0  # covariance updates since the last decomposition
    decompositions: int = 0  # eigendecompositions so far
    best_history: list = dataclasses.field(default_factory=list)  # generation-best f
    flat: int = 0  # generations in a row with flat fitness
    asked: torch.Tensor | None = None  # genotypes of the last ask (with bounds), else empty
    stopped: dict = dataclasses.field(default_factory=dict)


class CMAESTorch(BaseOptimizer):
    """CMA-ES in torch (module docstring): full or separable covariance.

    Args:
        x0: initial mean ``(dim,)``; numpy (computed in float64 on the CPU) or a
            torch tensor (computed in its dtype, float64 or float32, on its device).
        sigma0: initial step size.
        popsize: ``lambda``; default ``4 + floor(3 ln n)``. ``ask`` and ``tell``
            take exactly ``popsize`` candidates (the weights are set for it).
        seed: seed of the torch generator (on the device of ``x0``).
        bounds: ``(lower, upper)``; candidates are mapped into the box by pycma's
            periodic linear-quadratic transformation (module docstring).
        covariance: ``"full"`` or ``"diagonal"`` (sep-CMA-ES).
        active: negative weights for the worst samples (active CMA, the default of
            the tutorial and pycma); False gives the plain rank-mu update.

    ``tell`` adds the metrics ``sigma``, ``popsize`` and ``condition`` (of ``C``,
    from the last decomposition).
    """

    name: ClassVar[str] = "cmaes-torch"
    backend: ClassVar[str] = "torch"
    min_popsize: ClassVar[int] = 2
    handles_bounds: ClassVar[bool] = True
    has_stop_criteria: ClassVar[bool] = True  # restarts use them
    Hyperparameters = CMAESTorchConfig
    hparams: CMAESTorchConfig
    _mapped: torch.Tensor | None = None  # the candidates of the last bounded ask

    def _min_popsize_reason(self) -> str:
        return "CMA-ES needs popsize >= 2 to rank and recombine samples"

    def config(self) -> dict[str, Any]:
        bounds = None if self.bounds is None else [b.tolist() for b in self.bounds]
        return {**super().config(), "bounds": bounds}  # the box changes the search

    @property
    def diagonal(self) -> bool:
        return self.hparams.covariance == "diagonal"

    def _configure(self) -> None:
        """Refuse half precision before anything is built: the eigendecomposition (LAPACK,
        cuSOLVER) has no float16/bfloat16 kernels."""
        dtype = self.format.torch_dtype
        if dtype in (torch.float16, torch.bfloat16):
            raise ValueError(f"x0 has dtype {dtype}, which {self.name} cannot search in "
                             "(no half-precision eigendecomposition); pass x0 as float32 "
                             "or float64")

    def _init_state(self, x0: torch.Tensor) -> CMATorchState:
        self.params: StrategyParameters = strategy_parameters(
            self.dim, self.popsize, diagonal=self.diagonal, active=self.hparams.active)
        like = {"dtype": x0.dtype, "device": x0.device}
        self._weights = torch.tensor(self.params.weights, **like)
        self._box = None if self.bounds is None else BoxTransform(
            torch.as_tensor(self.bounds[0], **like), torch.as_tensor(self.bounds[1], **like))
        n = self.dim
        if self.diagonal:
            cov, eigvecs = torch.ones(n, **like), torch.zeros(0, **like)
        else:
            cov, eigvecs = torch.eye(n, **like), torch.eye(n, **like)
        return CMATorchState(
            mean=x0.clone(), sigma=torch.tensor(self.sigma0, **like), cov=cov,
            eigvecs=eigvecs, axes=torch.ones(n, **like), pc=torch.zeros(n, **like),
            ps=torch.zeros(n, **like), asked=torch.zeros(0, n, **like))

    # ----- ask ----------------------------------------------------------------------
    @property
    def mean(self) -> Array:
        """The distribution mean, mapped into the bounds (pycma's ``xfavorite``)."""
        m = self.state.mean
        return self.format.to_user(m if self._box is None else self._box.transform(m))

    def _ask(self, n: int) -> torch.Tensor:
        if n != self.popsize:
            raise ValueError(
                f"{type(self).__name__}.ask(n) needs n == popsize ({self.popsize}), got n={n}: "
                "the recombination weights and learning rates are set for that population "
                "size; construct the optimizer with popsize=n instead")
        st = self.state
        if not self.diagonal and st.since_eigen > 0 and st.since_eigen >= self.params.eigen_gap \
                and "nonfinite_state" not in st.stopped:
            self._decompose()
        if "nonfinite_state" in st.stopped:
            raise ValueError(
                f"{self.name}: the distribution holds NaN/inf or lost positive definiteness "
                "(stop() reports 'nonfinite_state'), so no candidates can be drawn; start a "
                "new optimizer (the ipop-/bipop- variants restart by themselves)")
        z = torch.randn(n, self.dim, generator=self._rng, dtype=st.mean.dtype,
                        device=st.mean.device)
        z.mul_(st.axes)  # D z
        y = z if self.diagonal else z @ st.eigvecs.T  # B D z
        x = y.mul_(st.sigma).add_(st.mean)  # m + sigma B D z
        if self._box is None:
            return x
        st.asked = x
        mapped = self._box.transform(x)
        self._mapped = mapped  # what ask returns: a tell of it unedited skips the check
        return mapped

    def _decompose(self) -> None:
        """``C = B diag(D^2) B^T`` on the device; C symmetrized first (as pycma)."""
        st = self.state
        _symmetrize_(st.cov)
        old_axes = st.axes
        st.eigvecs = torch.zeros(0, dtype=st.cov.dtype, device=st.cov.device)  # free old B
        st.stopped = {**st.stopped, "nonfinite_state": True}  # until a decomposition succeeds
        for _ in range(3):
            try:
                values, vectors = _eigh(st.cov)
            except (RuntimeError, ValueError):  # LinAlgError: NaN/inf entries
                break
            low, finite = torch.stack(
                [values.min(), torch.isfinite(values).all().to(values.dtype)]).tolist()
            if not finite:
                break
            if low > 0:
                st.eigvecs, st.axes, st.since_eigen = vectors, values.sqrt(), 0
                st.decompositions += 1
                del st.stopped["nonfinite_state"]
                return
            # pycma: not positive definite: add the smallest old eigenvalue to the diagonal
            st.cov.diagonal().add_(old_axes.min().square())
            del values, vectors

    # ----- tell ---------------------------------------------------------------------
    def min_tell_rows(self) -> int:
        return self.popsize

    def _check_tell(self, n: int, constraints: Array | None) -> None:
        if n != self.popsize:
            raise ValueError(
                f"{self.name} needs the popsize={self.popsize} candidates per tell, got {n}: "
                "tell the whole batch ask() returned")

    def _genotypes(self, x: torch.Tensor) -> torch.Tensor:
        """The unbounded samples behind the told candidates: those of the last ask
        when ``x`` is what it returned, else the inverse of the box transformation.

        Off the CPU a tell of the very tensor ask returned, not edited since (its
        version counter tells), is recognized without a host read; on the CPU, where
        a numpy view can edit a tensor unseen, the values are compared (free there)."""
        st, box = self.state, self._box
        if box is None:
            return x
        asked, mapped, self._mapped = st.asked, self._mapped, None
        st.asked = torch.zeros(0, self.dim, dtype=x.dtype, device=x.device)
        if asked is None or asked.shape != x.shape:
            return box.inverse(x)
        if self._told_asked and mapped is not None and _edits_seen(x) \
                and _same_tensor(mapped, x):
            return asked
        if torch.equal(box.transform(asked), x):
            return asked
        return box.inverse(x)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, p, n = self.state, self.params, self.dim
        x = self._genotypes(x)
        order = np.argsort(fitness, kind="stable")
        xs = x[torch.as_tensor(order, device=x.device)]  # best first
        w, sigma, mold = self._weights, st.sigma, st.mean
        mean = w[:p.mu] @ xs[:p.mu]  # Eq. (41), c_m = 1: m = sum_i w_i x_i:lambda
        shift = mean - mold
        st.generation += 1
        g = st.generation
        whitened = self._inverse_sqrt(shift.unsqueeze(0)).squeeze(0)  # C^(-1/2) (m - m_old)
        cs, cc = p.cs, p.cc
        st.ps.mul_(1 - cs).add_(whitened / sigma, alpha=math.sqrt(cs * (2 - cs) * p.mueff))  # (43)
        hsig = (st.ps.square().sum() / (1 - (1 - cs) ** (2 * g)) / n - 1
                < 1 + 4 / (n + 1)).to(mold.dtype)  # h_sigma, pycma's squared form of (45)
        st.pc.mul_(1 - cc).add_(hsig * math.sqrt(cc * (2 - cc) * p.mueff) * shift / sigma)  # (45)
        c1a = p.c1 * (1 - (1 - hsig) * cc * (2 - cc))  # c_1 (1 - delta(h_sigma)), Eq. (47)
        y = (xs - mold) / sigma  # y_i:lambda, Eq. (39)
        wc = w * p.cmu
        if p.weights[-1] < 0:  # Eq. (46): w_i * n / |C^(-1/2) y_i|^2 for negative w_i
            neg = slice(p.mu, None)
            norms = self._whitened_norms(y[neg])
            wc[neg] *= n / (norms + 1e-9).square()  # + 1e-9 as pycma
        decay = 1 - c1a - p.cmu * sum(p.weights)
        if self.diagonal:  # Eq. (47) on the diagonal (Ros & Hansen 2008)
            st.cov.mul_(decay).add_(st.pc.square(), alpha=p.c1).add_(wc @ y.square())
            st.axes = st.cov.sqrt()
        else:  # Eq. (47): C <- decay C + c_1 p_c p_c^T + sum_i c_mu w_i y_i y_i^T
            st.cov.mul_(decay).addr_(st.pc, st.pc, alpha=p.c1).addmm_(y.T * wc, y)
            st.since_eigen += 1
        s = (st.ps.square().sum().sqrt() / p.chin - 1) * (cs / p.damps)
        st.sigma = sigma * s.clamp(-1.0, 1.0).exp()  # Eq. (44), change clipped as pycma
        st.mean = mean
        raw = np.asarray(extra.get("raw_fitness", fitness), dtype=np.float64)
        return self._after_update(raw, order)

    def _inverse_sqrt(self, v: torch.Tensor) -> torch.Tensor:
        """``C^(-1/2) v`` for rows ``v`` with the last decomposition: ``B D^-1 B^T v``."""
        st = self.state
        if self.diagonal:
            return v / st.axes
        return ((v @ st.eigvecs) / st.axes) @ st.eigvecs.T

    def _whitened_norms(self, v: torch.Tensor) -> torch.Tensor:
        """``|C^(-1/2) v|`` for rows ``v``: ``|D^-1 B^T v|`` (B orthogonal: one product)."""
        st = self.state
        z = v / st.axes if self.diagonal else (v @ st.eigvecs) / st.axes
        return z.square().sum(dim=1).sqrt()

    def _after_update(self, fitness: np.ndarray, order: np.ndarray) -> dict[str, float]:
        """Stop tests and metrics from one host read of a few scalars."""
        st = self.state
        std = st.cov.sqrt() if self.diagonal else st.cov.diagonal().sqrt()
        reach = (st.sigma * torch.maximum(std, st.pc.abs())).max()
        finite = torch.isfinite(st.sigma) & torch.isfinite(st.mean).all() \
            & torch.isfinite(std).all()  # a NaN off the diagonal: eigh reports it
        condition = (st.axes.max() / st.axes.min()).square()
        sigma, reach, finite, condition = torch.stack(
            [st.sigma, reach, finite.to(st.sigma.dtype), condition]).tolist()
        # The fitness tests read the told values (NaN/inf as +inf, ranked last): stand-ins
        # of a generation without a finite value would look flat, i.e. converged.
        history, informative = st.best_history, bool(np.isfinite(fitness[order[0]]))
        if informative:
            history.append(float(fitness[order[0]]))
            del history[:-(10 + math.ceil(30 * self.dim / self.popsize))]  # pycma's length
            quarter = fitness[order[min(self.popsize - 1, math.ceil(0.1 + self.popsize / 4))]]
            st.flat = st.flat + 1 if fitness[order[0]] == quarter else 0
        reasons: dict[str, Any] = dict(st.stopped)
        if not finite or not math.isfinite(condition):
            reasons["nonfinite_state"] = True
        if informative and st.generation > 1 and fitness[order[-1]] - fitness[order[0]] < TOLFUN \
                and max(history) - min(history) < TOLFUN:
            reasons["tolfun"] = TOLFUN
        if reach < TOLX:
            reasons["tolx"] = TOLX
        if condition > TOLCONDITION:
            reasons["tolconditioncov"] = TOLCONDITION
        if st.flat > 1:
            reasons["tolflatfitness"] = 1
        st.stopped = reasons
        return {"sigma": sigma, "popsize": self.popsize, "condition": condition}

    def _stop(self) -> dict[str, Any]:
        return dict(self.state.stopped)

    # ----- checkpoints --------------------------------------------------------------
    def _state_to_plain(self) -> dict[str, Any]:
        return to_plain(self.state)

    def _state_from_plain(self, plain: Any) -> None:
        if not isinstance(plain, Mapping):
            raise ValueError(f"not a {self.name} state: expected a dict, got "
                             f"{type(plain).__name__}")
        empty = torch.zeros(0, dtype=self.state.mean.dtype, device=self.state.mean.device)
        template = CMATorchState(mean=empty, sigma=empty, cov=empty, eigvecs=empty, axes=empty,
                                 pc=empty, ps=empty, asked=empty)  # dtype and device only
        try:
            state = from_plain(template, dict(plain))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"corrupted {self.name} state: {err}") from None
        n = self.dim
        want = {"mean": (n,), "sigma": (), "cov": (n,) if self.diagonal else (n, n),
                "eigvecs": (0,) if self.diagonal else (n, n), "axes": (n,), "pc": (n,),
                "ps": (n,)}
        for key, shape in want.items():
            got = tuple(getattr(state, key).shape)
            if got != shape and not (key == "eigvecs" and got == (0,)):  # (0,): mid-failure
                raise ValueError(f"{self.name} state: {key} has shape {got}, want {shape}; the "
                                 "state was edited or is of another problem")
        self.state = state


class SepCMAESTorch(CMAESTorch):
    """Separable CMA-ES in torch (Ros & Hansen 2008): :class:`CMAESTorch` with
    ``covariance="diagonal"`` by default."""

    name: ClassVar[str] = "sep-cmaes-torch"
    Hyperparameters = SepCMAESTorchConfig
    hparams: SepCMAESTorchConfig


def _eigh(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of the symmetric ``c``, on its device.

    On the CPU through numpy's LAPACK (``syevd``; OpenBLAS in numpy's wheels, the
    library pycma uses too): torch's CPU builds link MKL, whose ``syevd`` ran 1.5x
    slower on an AMD EPYC at n = 2000 (6.3 s against 9.6 s, one thread). The choice
    is fixed per device, so runs and resumed runs stay bit-identical.
    """
    if c.device.type == "cpu":
        values, vectors = np.linalg.eigh(c.numpy())
        return torch.from_numpy(values), torch.from_numpy(vectors)
    return torch.linalg.eigh(c)


def _symmetrize_(c: torch.Tensor) -> None:
    """``C <- (C + C^T) / 2`` in place, block by block (no ``n x n`` temporary)."""
    n, b = c.shape[0], SYMMETRIZE_BLOCK
    if n <= b:
        c.copy_((c + c.T) / 2)
        return
    for i in range(0, n, b):
        for j in range(i, n, b):
            upper, lower = c[i:i + b, j:j + b], c[j:j + b, i:i + b]
            mean = (upper + lower.T) / 2
            upper.copy_(mean)
            lower.copy_(mean.T)
