"""REINFORCE: score-function gradient descent on a search distribution over any space.

The search distribution ``p_theta`` is a :class:`~nondiff.optim.distributions.product.
ProductDistribution` over the leaves of the space (Bernoulli bits, categorical
choices and integers, Plackett-Luce permutations, Gaussians with learnable mean and
log-std for reals); a plain real ``x0`` gives a diagonal Gaussian around ``x0``.
REINFORCE (Williams 1992) follows the gradient of the expected loss

    grad_theta E[f(x)] = E[(f(x) - b) grad_theta log p_theta(x)]                 # Eq. (1)

for any baseline ``b`` that does not depend on ``x``, estimated from ``n`` samples by

    none:           g = (1/n) sum_i f_i grad log p(x_i)                         # Eq. (2)
    moving-average: g = (1/n) sum_i (f_i - b_t) grad log p(x_i),
                    b_{t+1} = beta b_t + (1 - beta) mean_i f_i, used with
                    Adam's bias correction b_t / (1 - beta^t) (none at t = 0)    # Eq. (3)
    rloo:           g = (1/n) sum_i (f_i - (1/(n-1)) sum_{j != i} f_j) grad log p(x_i)
                      = (1/(n-1)) sum_i (f_i - mean_j f_j) grad log p(x_i)       # Eq. (4)

RLOO (Kool, van Hoof & Welling 2019) is unbiased because each sample's baseline
uses only the other, independent samples. An entropy bonus ``beta_H`` (Williams &
Peng 1991) keeps the distribution from collapsing early; the objective becomes
``E[f] - beta_H H(p_theta)``:

    g <- g - beta_H grad_theta H(p_theta)                                       # Eq. (5)
    theta <- theta + step(g)    (Adam or SGD of :mod:`nondiff.optim.steps`)     # Eq. (6)

``f`` are the raw losses (``shaping=None``) or the negated utilities ``-u`` of a
method of :mod:`nondiff.optim.shaping`. The default ``shaping="auto"`` takes centered
ranks when every leaf of the space is Real (a Gaussian search distribution: an ES,
scale-free like the other ES of this package) and the raw losses otherwise: with a
discrete leaf, samples of (nearly) equal loss then give (nearly) no gradient, where
ranks would turn their noise into full-size steps (a structure search of
:mod:`nondiff.hybrid` picked a worse operation with ranks).

The mean ``m`` of a Gaussian with stdev ``s`` is stepped in units of ``s``
(``mean_units="stdev"``, default): the step sees the mean as ``m = s v`` and

    m <- m + s step(s g_m)                                                      # Eq. (7)

With SGD this is the natural gradient of the mean (its Fisher information is
``1/s^2``; Amari 1998, Wierstra et al. 2014), with Adam a step of about ``mean_lr s``.
``mean_units="absolute"`` applies Eq. (6) to ``m`` as to every other parameter.

Why these defaults. Adam moves every parameter by about ``lr`` per step whatever
the gradient's scale. For the log-std that is a relative change, but on the mean
it is an absolute length: once ``s`` is much smaller than ``lr``, an absolute step
keeps the mean jittering far outside the distribution, which then cannot locate
the optimum (sphere-10D stalled at f = 9e-6 after 200,000 evaluations). With raw
losses, moreover, the gradients shrink with f while Adam's second moment remembers
about ``1 / (1 - beta2) = 1000`` steps of larger ones, so its steps shrink too and
the convergence rate is capped (the root of that stall); Adam's ``eps`` would then
damp the log-std steps once the loss differences fall to about ``1e-8``. Ranked
losses (Wierstra et al.'s fitness shaping) keep the gradient scale fixed, Eq. (7)
keeps the mean's step inside the distribution, and the Gaussian's own step sizes
let the mean move faster than the spread shrinks (``mean_lr = 0.15`` stdevs and
``log_std_lr = 0.05``, the ordering of SNES's ``eta_mu = 1 > eta_sigma``; with 0.1
for both, some coordinates' stdev fell to 1e-8 while the mean was still at f = 0.1).
Defaults now reach f <= 1e-8 on
sphere-10D in about 3,500 evaluations (tests/test_defaults.py).

The price of Eq. (7): on an ill-conditioned rotated function the diagonal stdev
shrinks to the steep directions' scale and the mean's steps with it, so progress
along the flat ones slows, as for SNES. On the rotated ellipsoid (BBOB f2, instance
1, x0 = 0, sigma0 = 2, 3 seeds) the median gap is 1,250 after 50,000 evaluations in
10-D (SNES: 540-710) and 18,800 after 100,000 in 30-D, against 166 and 2,400 with
the settings before (``shaping=None, mean_units="absolute", mean_lr=0.1,
log_std_lr=0.1``); rosenbrock (10-D 9.8 -> 8.1, 30-D 34 -> 28) and rastrigin
improve. Pass those settings where absolute steps suit the problem better.

Sources:
    - R. J. Williams, "Simple statistical gradient-following algorithms for
      connectionist reinforcement learning", Machine Learning 8:229-256, 1992.
    - R. J. Williams, J. Peng, "Function optimization using connectionist
      reinforcement learning algorithms", Connection Science 3(3):241-268, 1991.
    - W. Kool, H. van Hoof, M. Welling, "Buy 4 REINFORCE samples, get a baseline
      for free!", ICLR 2019 Deep RL Meets Structured Prediction workshop.
    - S. Amari, "Natural gradient works efficiently in learning", Neural Computation
      10(2):251-276, 1998; D. Wierstra, T. Schaul, T. Glasmachers, Y. Sun, J. Peters,
      J. Schmidhuber, "Natural Evolution Strategies", JMLR 15:949-980, 2014
      (natural gradient of a Gaussian's mean; fitness shaping by ranks).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from nondiff.optim.base import Array, BaseOptimizer
from nondiff.optim.checks import check_real
from nondiff.optim.distributions import ProductDistribution, SearchDistribution, distribution_for
from nondiff.optim.distributions.discrete import EXACT_ENTROPY_GRAD_MAX_N, PlackettLuce
from nondiff.optim.distributions.product import LogStdGaussian, _key
from nondiff.optim.hyperparameters import (
    Hyperparameters,
    choice,
    hyperparameter,
    pair,
    real,
    shaping_method,
)
from nondiff.optim.shaping import shape as shape_fitness
from nondiff.optim.spaces import KINDS, Real
from nondiff.optim.steps import AdamState, SGDState, Step, make_step

__all__ = ["BASELINES", "REINFORCE", "REINFORCEConfig", "REINFORCEState",
           "score_function_gradient"]

BASELINES = ("none", "moving-average", "rloo")
MEAN_UNITS = ("stdev", "absolute")
_shaping = shaping_method(optional=True)


def _shaping_or_auto(name: str, value: Any) -> str | None:
    """``"auto"``, None (raw losses) or a method of :mod:`nondiff.optim.shaping`."""
    return "auto" if value == "auto" else _shaping(name, value)
UNIT = real(low=0.0, high=1.0, high_open=True)  # [0, 1)


def score_function_gradient(
    distribution: SearchDistribution,
    samples: torch.Tensor,
    losses: Array,
    baseline: str | float = "rloo",
    entropy_bonus: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Estimate the gradient of ``E[loss] - entropy_bonus * H`` w.r.t. each parameter.

    Args:
        distribution: the distribution the samples were drawn from.
        samples: ``(n, dim)`` samples (as ``distribution.sample`` returned them).
        losses: ``(n,)`` finite losses (lower is better), numpy or torch.
        baseline: ``"none"`` (Eq. 2), ``"rloo"`` (Eq. 4, needs n >= 2), or a number
            ``b`` fixed before seeing these samples, e.g. a moving average (Eq. 3).
        entropy_bonus: coefficient ``beta_H >= 0`` of Eq. (5); needs a distribution
            with ``entropy_grad`` (those of :mod:`nondiff.optim.distributions.discrete`
            and :mod:`nondiff.optim.distributions.product`).

    Returns:
        ``{name: gradient}`` shaped like ``distribution.parameters()``: a descent
        direction for a step of :mod:`nondiff.optim.steps`.

    Example:
        >>> import torch
        >>> from nondiff.optim.distributions import Bernoulli
        >>> dist = Bernoulli(torch.zeros(3))
        >>> x = dist.sample(64, torch.Generator().manual_seed(0))
        >>> g = score_function_gradient(dist, x, -x.sum(1))  # loss: minus the ones
        >>> bool((g["logits"] < 0).all())  # raising the logits lowers the loss
        True
    """
    params = distribution.parameters()
    like = next(iter(params.values()))
    n = samples.shape[0]
    if hasattr(losses, "detach"):
        losses = losses.detach()
    f = torch.as_tensor(np.asarray(losses, dtype=np.float64) if not isinstance(
        losses, torch.Tensor) else losses).to(dtype=like.dtype, device=like.device)
    if f.shape != (n,):
        raise ValueError(f"losses must have shape ({n},), one per sample, got {tuple(f.shape)}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("losses contain NaN or inf; replace them before estimating")
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        if not math.isfinite(baseline):
            raise ValueError(f"a numeric baseline must be finite, got {baseline!r}")
        w = (f - float(baseline)) / n  # Eqs. (1), (3)
    elif baseline == "none":
        w = f / n  # Eq. (2)
    elif baseline == "rloo":
        if n < 2:
            raise ValueError(f"baseline='rloo' needs at least 2 samples, got {n}")
        w = (f - f.mean()) / (n - 1)  # Eq. (4)
    else:
        raise ValueError(f"baseline must be 'none', 'rloo' or a number, got {baseline!r}")
    bonus = check_real("entropy_bonus", entropy_bonus, low=0.0)
    grads = distribution.grad(samples, w)
    if bonus:
        if not hasattr(distribution, "entropy_grad"):
            raise ValueError(f"entropy_bonus needs a distribution with entropy_grad(); "
                             f"{type(distribution).__name__} has none")
        entropy_grads = distribution.entropy_grad(samples)
        grads = {k: g - bonus * entropy_grads[k] for k, g in grads.items()}  # Eq. (5)
    return grads


@dataclass
class REINFORCEState:
    params: dict[str, torch.Tensor]
    steps: dict[str, AdamState | SGDState]
    baseline: float = 0.0  # exponential moving average of the mean loss, Eq. (3)
    baseline_steps: int = 0


@dataclass(frozen=True)
class REINFORCEConfig(Hyperparameters):
    """Hyperparameters of :class:`REINFORCE` (see its arguments). The step's own
    entries (lr and betas/eps or momentum/nesterov) enter ``config()`` from the step."""

    lr: float = hyperparameter(0.1, real(low=0.0, low_open=True), config=False)
    mean_lr: float = hyperparameter(0.15, real(low=0.0, low_open=True))
    log_std_lr: float = hyperparameter(0.05, real(low=0.0, low_open=True))
    optimizer: str = hyperparameter("adam", choice(("adam", "sgd")))
    betas: tuple[float, float] = hyperparameter((0.9, 0.999), pair(UNIT), config=False)
    momentum: float = hyperparameter(0.0, UNIT, config=False)
    baseline: str = hyperparameter("rloo", choice(BASELINES))
    baseline_decay: float = hyperparameter(0.9, UNIT)
    entropy_bonus: float = hyperparameter(0.0, real(low=0.0))
    shaping: str | None = hyperparameter("auto", _shaping_or_auto)
    mean_units: str = hyperparameter("stdev", choice(MEAN_UNITS))

    def check(self) -> None:
        if self.optimizer == "adam" and self.momentum != 0.0:
            raise ValueError(f"momentum applies to optimizer='sgd' only, got "
                             f"momentum={self.momentum!r}; Adam has betas instead")
        if self.optimizer == "sgd" and self.betas != (0.9, 0.999):
            raise ValueError(f"betas apply to optimizer='adam' only, got betas={self.betas!r}; "
                             "SGD has momentum instead")

    def make_step(self) -> Step:
        """The parameter step (Adam or SGD) these hyperparameters describe."""
        if self.optimizer == "adam":
            return make_step("adam", lr=self.lr, betas=self.betas)
        return make_step("sgd", lr=self.lr, momentum=self.momentum)

    def derived_config(self) -> dict[str, Any]:
        return self.make_step().config()


class REINFORCE(BaseOptimizer):
    """REINFORCE (Williams 1992) with RLOO / moving-average baselines and an entropy bonus.

    Learns every parameter of the search distribution (logits, Plackett-Luce
    scores, Gaussian mean and log-std) with Adam or SGD on the score-function
    gradient of :func:`score_function_gradient`. :meth:`recommend` is the mode
    of the distribution (argmax logits, mean, permutation sorted by score);
    :attr:`best_x` stays the best candidate evaluated.

    :meth:`stop` reports ``collapsed`` once sampling is deterministic: every
    discrete leaf gives its mode probability >= 1 - 1e-12 and every Gaussian
    stdev is <= 1e-12 * max(1, |mean|) (and ``nonfinite_state`` on NaN/inf).
    :meth:`tell` adds the metrics ``grad_norm``, ``entropy`` (left out with
    Plackett-Luce leaves of more than 6 items, where it costs n! or sampling),
    ``sigma`` (mean Gaussian stdev, with real coordinates) and ``baseline``.

    Args:
        x0: a :class:`~nondiff.optim.spaces.Space` (any of its five leaf kinds), or a real
            ``(dim,)`` vector: the mean of a Gaussian over R^dim.
        sigma0: initial standard deviation of the Gaussian (Real) coordinates.
        popsize: samples per generation (default ``4 + 3 ln d``; >= 2 for rloo).
        seed: seed of the generator.
        bounds: for a vector ``x0``: candidates are clipped into the box and the
            Gaussian is censored there (exact log-probabilities of clipped samples).
        lr: step size of the parameter update of the discrete leaves, Eq. (6).
        mean_lr: step size of the Gaussian (Real) leaves' mean, Eq. (7) (in units
            of the stdev unless ``mean_units="absolute"``).
        log_std_lr: step size of the Gaussian leaves' log-std, Eq. (6).
        optimizer: ``"adam"`` or ``"sgd"`` (:mod:`nondiff.optim.steps`).
        betas: Adam's ``(beta1, beta2)``.
        momentum: SGD momentum in [0, 1) (``optimizer="sgd"`` only).
        baseline: ``"rloo"`` (default), ``"moving-average"`` or ``"none"``.
        baseline_decay: ``beta`` of the moving average, in [0, 1).
        entropy_bonus: ``beta_H >= 0``, Eq. (5).
        shaping: ``"auto"`` (default: centered ranks when every leaf is Real, else
            None), None (raw losses) or a method of :mod:`nondiff.optim.shaping`.
        mean_units: ``"stdev"`` (default): Gaussian means step in units of their
            stdev, Eq. (7); ``"absolute"``: like every other parameter, Eq. (6).

    Example:
        >>> import numpy as np
        >>> from nondiff.optim.reinforce import REINFORCE
        >>> from nondiff.optim.spaces import Binary
        >>> opt = REINFORCE(Binary(20), popsize=16, lr=0.2, seed=0)
        >>> for _ in range(60):
        ...     x = opt.ask()
        ...     _ = opt.tell(x, -x.sum(axis=1))  # OneMax: maximize the ones
        >>> int(opt.recommend().sum())
        20
    """

    name = "reinforce"
    backend = "torch"
    handles_bounds = True  # the censored Gaussian samples inside the box itself
    supported_spaces = frozenset(KINDS)
    config_space = True
    collapse_tol = 1e-12
    Hyperparameters = REINFORCEConfig
    hparams: REINFORCEConfig
    _view: ProductDistribution | None = None

    @property
    def min_popsize(self) -> int:  # type: ignore[override]
        return 2 if self.hparams.baseline == "rloo" else 1  # leave-one-out needs two

    def _min_popsize_reason(self) -> str:
        return "baseline='rloo' leaves one sample out"

    def _configure(self) -> None:
        self.step = self.hparams.make_step()

    @property
    def _shaping_method(self) -> str | None:
        """The shaping in use: ``"auto"`` is centered ranks when every leaf is Real
        (the distribution is a Gaussian: an ES), else None (raw losses)."""
        method = self.hparams.shaping
        if method != "auto":
            return method
        space = self._search_space
        return "centered_ranks" if all(leaf.kind == "real" for _, leaf, _ in space.leaves()) \
            else None

    # ----- the distribution -------------------------------------------------------
    def _init_state(self, x0: torch.Tensor) -> REINFORCEState:
        self._search_space = self.space if self.space is not None else Real(size=self.dim)
        self._search_bounds = self.bounds
        dist = distribution_for(self._search_space, mean=x0, sigma0=self.sigma0,
                                bounds=self.bounds, dtype=x0.dtype, device=x0.device)
        params = dist.parameters()
        return REINFORCEState(params=params,
                              steps={k: self.step.init(v) for k, v in params.items()})

    @property
    def distribution(self) -> ProductDistribution:
        """The current search distribution (a view over the state's parameters)."""
        params, cached = self.state.params, self._view
        if cached is None or cached.params.keys() != params.keys() or any(
                cached.params[k] is not v for k, v in params.items()):  # e.g. after loading
            cached = self._view = ProductDistribution(self._search_space, params,
                                                      self._search_bounds)
        return cached

    def _state_from_plain(self, plain: Any) -> None:
        before = {k: v.shape for k, v in self.state.params.items()}
        super()._state_from_plain(plain)
        after = {k: v.shape for k, v in self.state.params.items()}
        if before != after or set(self.state.steps) != set(before):
            raise ValueError(f"state dict holds parameters {after}, this optimizer {before}")

    # ----- ask / tell -----------------------------------------------------------
    def _check_tell(self, n: int, constraints: Array | None) -> None:
        if self.hparams.baseline == "rloo" and n < 2:
            raise ValueError("baseline='rloo' needs at least 2 candidates per tell; "
                             "use baseline='moving-average' to tell one at a time")

    def _ask(self, n: int) -> torch.Tensor:
        return self.distribution.sample(n, self._rng)

    def _tell(self, x: torch.Tensor, fitness: np.ndarray, **extra: Any) -> dict[str, float]:
        st, hp = self.state, self.hparams
        method = self._shaping_method
        losses = fitness if method is None else -shape_fitness(fitness, method)
        baseline: str | float = hp.baseline
        if hp.baseline == "moving-average":  # Eq. (3): from earlier batches only
            baseline = "none" if st.baseline_steps == 0 else (
                st.baseline / (1 - hp.baseline_decay ** st.baseline_steps))
        dist = self.distribution
        grads = score_function_gradient(dist, x, losses, baseline, hp.entropy_bonus)
        stdevs = self._gaussian_stdevs(dist)
        for key, g in grads.items():
            lr = None if key not in stdevs else hp.log_std_lr if stdevs[key] is None \
                else hp.mean_lr
            sigma = stdevs.get(key) if hp.mean_units == "stdev" else None
            if sigma is None:  # Eq. (6), in place
                st.params[key].add_(self.step.update(g, st.steps[key], lr=lr))
            else:  # Eq. (7): the step on u = m / sigma, mapped back to the mean
                st.params[key].add_(self.step.update(g * sigma, st.steps[key], lr=lr).mul_(sigma))
        metrics = {"grad_norm": math.sqrt(sum(float(g.square().sum()) for g in grads.values()))}
        if hp.baseline == "moving-average":
            metrics["baseline"] = baseline if isinstance(baseline, float) else math.nan
            st.baseline = hp.baseline_decay * st.baseline + (
                1 - hp.baseline_decay) * float(np.mean(losses))
            st.baseline_steps += 1
        if all(not isinstance(d, PlackettLuce) or d.dim <= EXACT_ENTROPY_GRAD_MAX_N
               for _, d, _, _ in dist.leaves):  # else the entropy costs n! or sampling
            metrics["entropy"] = float(dist.entropy())
        _, stdev = dist.gaussians()
        if stdev.numel():
            metrics["sigma"] = float(stdev.mean())
        return metrics

    @staticmethod
    def _gaussian_stdevs(dist: ProductDistribution) -> dict[str, torch.Tensor | None]:
        """``{key of a Gaussian mean: its current stdev (a copy), key of a log-std: None}``."""
        out: dict[str, torch.Tensor | None] = {}
        for name, d, _, _ in dist.leaves:
            if isinstance(d, LogStdGaussian):
                out[_key(name, "mean")], out[_key(name, "log_std")] = d.log_std.exp(), None
        return out

    def _recommend(self) -> torch.Tensor:
        return self.distribution.mode()

    def _stop(self) -> dict[str, Any]:
        if not all(bool(torch.isfinite(v).all()) for v in self.state.params.values()):
            return {"nonfinite_state": True}
        dist = self.distribution
        worst = min(dist.mode_log_probs().values(), default=0.0)
        mean, stdev = dist.gaussians()
        if worst >= -self.collapse_tol and bool(
                (stdev <= self.collapse_tol * mean.abs().clamp_min(1.0)).all()):
            return {"collapsed": {"mode_prob": math.exp(worst),
                                  "max_stdev": float(stdev.max()) if stdev.numel() else 0.0}}
        return {}
