"""Gradient-based evolution strategies in torch: OpenAI-ES and PGPE.

Both estimate the gradient of the expected utility of a Gaussian search
distribution by the score function (see :mod:`nondiff.optim.distributions.base`) from ranked
fitness (:mod:`nondiff.optim.shaping`) and follow it with a first-order step
(:mod:`nondiff.optim.steps`). With utilities ``u_i`` (higher is better, summing to 0),
candidates ``x_i = m + sigma * z_i`` and ``n`` samples:

OpenAI-ES (Salimans et al. 2017), isotropic, mirrored samples, Adam on the mean:

    g = (1/n) sum_i u_i z_i                                              # Eq. (1)
        (not divided by sigma, as in the authors' code: Adam is invariant to
        the scale of g up to eps and the weight decay)
    m <- m + Adam(-g + lambda m)   (lambda: L2 weight decay)             # Eq. (2)
    sigma <- max(sigma * sigma_decay, sigma_min); lr likewise            # Eq. (3)

PGPE (Sehnke et al. 2010) with symmetric sampling and ClipUp (Toklu et al. 2020),
with ``eps_i = x_i - m`` and ``s`` the per-coordinate standard deviation:

    grad_m = (1/n) sum_i u_i eps_i                                      # Eq. (4)
    grad_s = (1/n) sum_i u_i (eps_i^2 - s^2) / s                        # Eq. (5)
    m <- m - alpha grad_m   (SGD, default; or ClipUp / Adam on -grad_m)  # Eq. (6)
    s <- s + clamp(eta_s grad_s, -c s, c s)   (c: stdev_max_change)     # Eq. (7)

For a mirrored pair ``(x+, x-)`` Eqs. (4)-(5) equal Sehnke's symmetric estimates
``(u+ - u-)/2 eps`` and ``((u+ + u-)/2 - b)(eps^2 - s^2)/s`` averaged over pairs;
written over all rows they stay correct for any candidates told. The standard
noise drawn by ask is kept in a reused workspace; when the candidates told are
that ask's samples, unedited, the sums read it (for mirrored pairs only its first
half: ``(u+ - u-) . z`` and ``(u+ + u-) . z^2``), otherwise the noise is
recomputed from the candidates (as in evotorch) in the same workspace.

Defaults and convergence. From ranked utilities, ``grad_m`` of Eq. (4) is
proportional to the stdev ``s``, so Sehnke's plain gradient step (SGD) moves the
center by a multiple of the search radius: as Eq. (7) shrinks ``s``, the steps
shrink with it and PGPE converges linearly on a sphere (f <= 1e-8 on sphere-10D
after about 10,000 evaluations from x0 = 2, s = 1). PGPE's default center step is
therefore SGD (``center_lr`` 0.15, momentum 0.9). ClipUp (``optimizer="clipup"``)
and Adam normalize the gradient: their steps have an absolute length (about
``center_lr``) that does not follow ``s``, which suits policies of a known scale
(Toklu et al. choose the step size relative to the initial radius) but leaves the
center jittering at that length (sphere-10D stalls near f = 0.01); add ``lr_decay``
with them for precision.

OpenAI-ES keeps sigma fixed, as in Salimans et al.: it is the documented exception
to "defaults converge". With a fixed sigma the samples stay about ``sigma sqrt(d)``
from the mean, so the best *evaluated* f stalls at a floor of order ``sigma^2``
(0.44 on sphere-10D with sigma = 1 after 200,000 evaluations) while the mean, the
recommendation, reaches about the Adam step (``lr``). The schedule of Eq. (3) gives
precision when wanted: ``sigma_decay = lr_decay = 0.999`` reaches f <= 1e-8 on
sphere-10D in about 96,000 evaluations; it depends on the budget, so it is not the
default.

Sources:
    - T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
      a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017.
    - F. Sehnke, C. Osendorfer, T. Rueckstiess, A. Graves, J. Peters, J. Schmidhuber,
      "Parameter-exploring policy gradients", Neural Networks 23(4):551-559, 2010.
    - N. E. Toklu, P. Liskowski, R. K. Srivastava, "ClipUp: A Simple and Powerful
      Optimizer for Distribution-based Policy Evolution", PPSN 2020 (ClipUp,
      stdev_max_change = 0.2, max_speed = 2 * center_lr).
    - tests/test_defaults.py checks the convergence claims above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from nondiff.optim.base import Array, BaseOptimizer, _same_tensor, default_popsize
from nondiff.optim.distributions import IsotropicGaussian, SeparableGaussian
from nondiff.optim.hyperparameters import (
    Hyperparameters,
    boolean,
    choice,
    hyperparameter,
    pair,
    real,
    shaping_method,
)
from nondiff.optim.shaping import shape as shape_fitness
from nondiff.optim.steps import Adam, AdamState, ClipUpState, SGDState, Step, make_step

__all__ = ["PGPE", "OpenAIES", "OpenAIESConfig", "OpenAIESState", "PGPEConfig", "PGPEState"]


class GaussianES(BaseOptimizer):
    """Shared parts of the torch ES of this package (not registered itself).

    Subclasses keep ``mean`` in their state and implement :meth:`_stdev`. The
    recommendation is the distribution mean: the ES' own estimate of the optimum,
    less noisy than any single sample (the best evaluated point stays available as
    :attr:`best_x`). One ``(n, dim)`` scratch tensor is kept between generations
    (not part of the state): :meth:`_sample` draws the standard noise into it and
    :meth:`_noise_sums` reads it back when the very samples are told, else it is
    the workspace that recomputes the noise from the candidates; so a generation
    allocates only the candidates it returns.
    """

    backend = "torch"
    min_popsize = 2  # ranks need two samples
    _workspace_buffer: torch.Tensor | None = None
    _noise_for: tuple[torch.Tensor, bool] | None = None  # (samples, antithetic) of last ask

    def _stdev(self) -> torch.Tensor:
        """Per-coordinate standard deviation of the search distribution, ``(dim,)``."""
        raise NotImplementedError

    def _workspace(self, like: torch.Tensor) -> torch.Tensor:
        """A scratch tensor shaped like ``like`` ``(n, dim)``, reused across generations
        (not state)."""
        return self._scratch(like.shape[0], like)

    def _sample(self, dist: IsotropicGaussian | SeparableGaussian, n: int,
                antithetic: bool = False) -> torch.Tensor:
        """``n`` candidates of ``dist`` (as ``dist.sample``), their noise kept in the
        workspace for :meth:`_noise_sums`."""
        m = n // 2 if antithetic else n
        self._noise_for = None
        buf = self._scratch(n, dist.mean)
        x, _ = dist.sample_with_noise(n, self._rng, antithetic, noise=buf[:m])
        self._noise_for = (x, antithetic)
        return x

    def _scratch(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """The workspace as ``(n, dim)`` of ``like``'s dtype and device."""
        buf = self._workspace_buffer
        if buf is None or buf.shape != (n, self.dim) or buf.dtype != like.dtype or (
                buf.device != like.device):
            buf = self._workspace_buffer = torch.empty(n, self.dim, dtype=like.dtype,
                                                       device=like.device)
        return buf

    def _noise_sums(self, dist: IsotropicGaussian | SeparableGaussian, x: torch.Tensor,
                    u: torch.Tensor, second: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(sum_i u_i z_i, sum_i u_i z_i^2)``: from the noise kept by :meth:`_sample`
        when ``x`` is that ask's samples, unedited (``z`` read once, half of it for
        mirrored samples); else recomputed from ``x`` (``z = (x - m) / s``).

        Only off the CPU: there the version counter sees every edit of the candidates,
        while a CPU tensor can be written through a numpy view (``np.asarray(x)[:] = ...``)
        that does not bump it; so on the CPU the noise is always recomputed from ``x``
        (``x.data`` edits are not seen on any device: edit the tensor ask returned)."""
        kept, self._noise_for = self._noise_for, None
        if kept is not None and self._told_asked and x.device.type != "cpu" \
                and _same_tensor(kept[0], x):
            m = x.shape[0] // 2 if kept[1] else x.shape[0]
            return dist.noise_sums_of(self._workspace_buffer[:m], u, kept[1], second)
        return dist.noise_sums(x, u, self._workspace(x), second=second)

    def _utilities(self, fitness: np.ndarray, method: str, like: torch.Tensor) -> torch.Tensor:
        u = shape_fitness(fitness, method)
        return torch.as_tensor(u, dtype=like.dtype, device=like.device)

    def _recommend(self) -> Array:
        return self.state.mean.clone()

    def _stop(self) -> dict[str, Any]:
        mean, stdev = self.state.mean, self._stdev()
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(stdev).all())):
            return {"nonfinite_state": True}
        if bool((mean + 0.2 * stdev == mean).any()):  # pycma's noeffectcoord: a
            # coordinate that a 0.2-stdev step no longer moves (any, as pycma: a collapsed
            # coordinate beside wide ones, e.g. a real leaf beside the flat discrete
            # latents of nondiff.optim.relaxed, ends in overflowing steps otherwise)
            return {"noeffectcoord": float(stdev.min())}
        return {}


def _default_popsize_even(dim: int) -> int:
    """``4 + 3 ln d`` rounded up to even: OpenAI-ES and PGPE draw pairs by default and
    keep that size with mirroring off too (so their checkpoints keep their config)."""
    p = default_popsize(dim)
    return p + p % 2


POSITIVE = real(low=0.0, low_open=True)
NONNEGATIVE = real(low=0.0)
DECAY = real(low=0.0, high=1.0, low_open=True)  # a factor in (0, 1]
UNIT = real(low=0.0, high=1.0, high_open=True)  # [0, 1)


@dataclass(frozen=True)
class OpenAIESConfig(Hyperparameters):
    """Hyperparameters of :class:`OpenAIES` (see its arguments)."""

    mirrored = "antithetic"

    lr: float = hyperparameter(0.01, POSITIVE)
    betas: tuple[float, float] = hyperparameter((0.9, 0.999), pair(UNIT))
    eps: float = hyperparameter(1e-8, POSITIVE)
    weight_decay: float = hyperparameter(0.0, NONNEGATIVE)
    sigma_decay: float = hyperparameter(1.0, DECAY)
    sigma_min: float = hyperparameter(0.0, NONNEGATIVE)
    lr_decay: float = hyperparameter(1.0, DECAY)
    lr_min: float = hyperparameter(0.0, NONNEGATIVE)
    antithetic: bool = hyperparameter(True, boolean())
    shaping: str = hyperparameter("centered_ranks", shaping_method())


@dataclass
class OpenAIESState:
    mean: torch.Tensor
    sigma: float
    lr: float
    adam: AdamState


class OpenAIES(GaussianES):
    """OpenAI-ES (Salimans et al. 2017): isotropic Gaussian, centered ranks, Adam.

    Args:
        x0: initial mean ``(dim,)``, numpy or torch.
        sigma0: noise standard deviation (fixed unless ``sigma_decay < 1``; a
            fixed sigma leaves a noise floor, see the module docstring).
        popsize: samples per generation; even when ``antithetic`` (default
            ``4 + 3 ln d`` rounded up to even).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        lr: Adam step size (the paper's 0.01).
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon.
        weight_decay: L2 coefficient ``lambda`` on the mean, Eq. (2) (the paper used
            0.005 for networks; 0 here as it moves the optimum of a plain function).
        sigma_decay: multiplies sigma after each generation, in (0, 1]; Eq. (3).
        sigma_min: lower limit of the decayed sigma, >= 0.
        lr_decay: multiplies lr after each generation, in (0, 1].
        lr_min: lower limit of the decayed lr, >= 0.
        antithetic: mirrored sampling (row ``i + n/2`` mirrors row ``i``).
        shaping: a method of :mod:`nondiff.optim.shaping`.

    Example:
        >>> import torch
        >>> from nondiff.optim.es import OpenAIES
        >>> opt = OpenAIES(torch.ones(5), sigma0=0.3, lr=0.1, seed=0,
        ...                sigma_decay=0.98, lr_decay=0.98)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-4)
        True
    """

    name = "openai-es"
    relaxed_width: ClassVar[float] = 2.0  # see nondiff.optim.relaxed (its "Width")
    Hyperparameters = OpenAIESConfig
    hparams: OpenAIESConfig

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return _default_popsize_even(dim)

    @classmethod
    def relaxed_options(cls, h: float) -> dict[str, Any]:
        """Defaults through :mod:`nondiff.optim.relaxed`, whose decisions lie within the
        latent half-width ``h``: Adam's step has an absolute length of about ``lr`` per
        generation, so the paper's 0.01 (for network weights of scale 0.02) moves the
        mean about 0.1 ``h`` in the 20-30 generations of a bounded structure search and
        its samples stay uniform; ``lr = 0.1 h`` crosses ``h`` in about ten (op-graph of
        the acceptance suite, 5 seeds: 0.05 h 3/5, 0.1 h 4/5, 0.2 h 3/5 recovered)."""
        return {"lr": 0.1 * h}

    def _configure(self) -> None:
        hp = self.hparams
        self.adam = Adam(lr=hp.lr, betas=hp.betas, eps=hp.eps)

    def _init_state(self, x0: torch.Tensor) -> OpenAIESState:
        mean = x0.clone()
        return OpenAIESState(mean=mean, sigma=self.sigma0, lr=self.hparams.lr,
                             adam=self.adam.init(mean))

    def _stdev(self) -> torch.Tensor:
        return torch.full_like(self.state.mean, self.state.sigma)

    def _ask(self, n: int) -> torch.Tensor:
        dist = IsotropicGaussian(self.state.mean, self.state.sigma)
        return self._sample(dist, n, antithetic=self.hparams.antithetic)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        u = self._utilities(fitness, hp.shaping, x)
        dist = IsotropicGaussian(st.mean, st.sigma)
        noise_sum, _ = self._noise_sums(dist, x, u, second=False)
        g = noise_sum / x.shape[0]  # Eq. (1)
        loss_grad = g.neg_().add_(st.mean, alpha=hp.weight_decay)
        st.mean += self.adam.update(loss_grad, st.adam, lr=st.lr)  # Eq. (2)
        metrics = {"sigma": st.sigma, "lr": st.lr, "grad_norm": float(loss_grad.norm())}
        st.sigma = max(st.sigma * hp.sigma_decay, hp.sigma_min)  # Eq. (3)
        st.lr = max(st.lr * hp.lr_decay, hp.lr_min)
        return metrics


@dataclass
class PGPEState:
    mean: torch.Tensor
    stdev: torch.Tensor
    lr: float
    step: ClipUpState | AdamState | SGDState


@dataclass(frozen=True)
class PGPEConfig(Hyperparameters):
    """Hyperparameters of :class:`PGPE` (see its arguments). The center step's own
    entries (``center_lr`` and momentum / max_speed / betas, as the step has them)
    enter ``config()`` from the step itself."""

    mirrored = "symmetric"

    center_lr: float = hyperparameter(0.15, POSITIVE, config=False)
    stdev_lr: float = hyperparameter(0.1, POSITIVE)
    stdev_max_change: float | None = hyperparameter(
        0.2, real(low=0.0, high=1.0, low_open=True, optional=True))
    stdev_min: float = hyperparameter(0.0, NONNEGATIVE)
    optimizer: str = hyperparameter("sgd", choice(("clipup", "adam", "sgd"), lower=True))
    momentum: float = hyperparameter(0.9, UNIT, config=False)
    max_speed: float | None = hyperparameter(
        None, real(low=0.0, low_open=True, optional=True), config=False)
    lr_decay: float = hyperparameter(1.0, DECAY)
    symmetric: bool = hyperparameter(True, boolean())
    shaping: str = hyperparameter("centered_ranks", shaping_method())

    def check(self) -> None:
        if self.max_speed is not None and self.optimizer != "clipup":
            raise ValueError(f"max_speed applies to optimizer='clipup' only, not "
                             f"{self.optimizer!r}; leave max_speed=None")
        if self.optimizer == "adam" and self.momentum != 0.9:  # the default
            raise ValueError(f"momentum applies to optimizer='clipup' or 'sgd', not 'adam' "
                             f"(got momentum={self.momentum!r}); Adam has betas instead")

    def make_step(self) -> Step:
        """The center step (ClipUp, Adam or SGD) these hyperparameters describe."""
        if self.optimizer == "clipup":
            return make_step("clipup", lr=self.center_lr, momentum=self.momentum,
                             max_speed=self.max_speed)
        if self.optimizer == "sgd":
            return make_step("sgd", lr=self.center_lr, momentum=self.momentum)
        return make_step("adam", lr=self.center_lr)

    def derived_config(self) -> dict[str, Any]:
        return {f"center_{k}" if k == "lr" else k: v for k, v in self.make_step().config().items()}


class PGPE(GaussianES):
    """PGPE (Sehnke et al. 2010), SGD or ClipUp (Toklu et al. 2020) steps; separable Gaussian.

    Args:
        x0: initial center ``(dim,)``, numpy or torch.
        sigma0: initial standard deviation of every coordinate.
        popsize: samples per generation; even when ``symmetric`` (default
            ``4 + 3 ln d`` rounded up to even).
        seed: seed of the generator.
        bounds: candidates are clipped into ``(lower, upper)``.
        center_lr: step size of the center optimizer: SGD's ``alpha`` of Eq. (6)
            (relative to the stdev through ``grad_m``), or ClipUp's ``alpha`` (an
            absolute length per generation: choose it for the problem's scale).
        stdev_lr: learning rate ``eta_s`` of the standard deviation, Eq. (7).
        stdev_max_change: largest relative change of a stdev per generation, ``c``
            in Eq. (7), in (0, 1] (Toklu et al. / evotorch: 0.2); None: unclamped.
        stdev_min: lower limit of every stdev, >= 0.
        optimizer: center step, ``"sgd"`` (default: Sehnke's gradient step, which
            converges as the stdev shrinks), ``"clipup"`` or ``"adam"``.
        momentum: momentum of ClipUp / SGD (0.9 as in Toklu et al.).
        max_speed: ClipUp's speed limit; default ``2 * center_lr``.
        lr_decay: multiplies center_lr (and ClipUp's max speed) after each
            generation, in (0, 1]; < 1 lets the center converge to high precision.
        symmetric: mirrored sampling (row ``i + n/2`` mirrors row ``i``).
        shaping: a method of :mod:`nondiff.optim.shaping`.

    Example:
        >>> import torch
        >>> from nondiff.optim.es import PGPE
        >>> opt = PGPE(torch.ones(5), sigma0=0.5, center_lr=0.1, lr_decay=0.98, seed=0)
        >>> for _ in range(300):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, (x**2).sum(1))
        >>> bool((opt.recommend() ** 2).sum() < 1e-4)
        True
    """

    name = "pgpe"
    relaxed_width: ClassVar[float] = 2.0  # see nondiff.optim.relaxed (its "Width")
    Hyperparameters = PGPEConfig
    hparams: PGPEConfig

    @classmethod
    def default_popsize(cls, dim: int) -> int:
        return _default_popsize_even(dim)

    def _configure(self) -> None:
        self.step = self.hparams.make_step()

    def _init_state(self, x0: torch.Tensor) -> PGPEState:
        mean = x0.clone()
        stdev = torch.full_like(mean, max(self.sigma0, self.hparams.stdev_min))
        return PGPEState(mean=mean, stdev=stdev, lr=self.step.lr, step=self.step.init(mean))

    def _stdev(self) -> torch.Tensor:
        return self.state.stdev

    def _ask(self, n: int) -> torch.Tensor:
        dist = SeparableGaussian(self.state.mean, self.state.stdev)
        return self._sample(dist, n, antithetic=self.hparams.symmetric)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        n = x.shape[0]
        u = self._utilities(fitness, hp.shaping, x)
        u -= u.mean()  # baseline b = mean utility (0 already for ranks)
        dist = SeparableGaussian(st.mean, st.stdev)
        noise_sum, sq_sum = self._noise_sums(dist, x, u)
        grad_mean = noise_sum.mul_(st.stdev).div_(n)  # Eq. (4): sum u (x - m) / n
        grad_stdev = sq_sum.sub_(u.sum()).mul_(st.stdev).div_(n)  # Eq. (5)
        st.mean += self.step.update(grad_mean.neg_(), st.step, lr=st.lr)  # Eq. (6)
        change = grad_stdev.mul_(hp.stdev_lr)  # Eq. (7)
        if hp.stdev_max_change is not None:
            limit = st.stdev * hp.stdev_max_change
            change = torch.minimum(torch.maximum(change, -limit), limit)
        st.stdev.add_(change).clamp_(min=max(hp.stdev_min, torch.finfo(x.dtype).tiny))
        metrics = {"sigma": float(st.stdev.mean()), "lr": st.lr}
        st.lr *= hp.lr_decay
        return metrics
