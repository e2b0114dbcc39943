"""Strategy parameters of CMA-ES: recombination weights and learning rates.

The defaults of N. Hansen (2016), "The CMA Evolution Strategy: A Tutorial",
arXiv:1604.00772, Table 1 (equation numbers below are the tutorial's), in the
refinements that the reference implementation pycma (4.x, ``cma.CMAOptions``
defaults, ``cma.recombination_weights``, ``cma.sigma_adaptation``) makes, so that
:class:`~nondiff.optim.cmaes_torch.CMAESTorch` updates exactly as pycma does:

- ``c_sigma = (mu_eff + 2) / (n + mu_eff + 3)`` (the tutorial: ``+ 5``), at most 1/2;
- ``d_sigma = 1 + c_sigma + 2 max(0, k sqrt((mu_eff - 1) / (n + 1)) - 1)`` with
  ``k = max(1, 3 (1 - 2^(-n/9)))`` (the tutorial's Eq. (55) has ``k = 1``);
- ``c_1`` has the factor ``min(1, lambda / 6)`` (smaller for tiny populations);
- the stall of the rank-one path (``h_sigma``) compares the squared path length
  (``|p_sigma|^2 / (1 - (1 - c_sigma)^(2g)) / n - 1 < 1 + 4 / (n + 1)``).

The separable (diagonal) variant uses the learning rates of R. Ros and N. Hansen
(2008), "A simple modification in CMA-ES achieving linear time and space
complexity", PPSN X: ``c_1`` and ``c_mu`` multiplied by ``(n + 2) / 3``.

Example:
    >>> from nondiff.optim.cmaes_parameters import strategy_parameters
    >>> p = strategy_parameters(10, 10)
    >>> p.mu, round(p.mueff, 4), round(sum(p.weights[:p.mu]), 12)
    (5, 3.1673, 1.0)
    >>> p.weights[-1] < 0  # active CMA: the worst samples get negative weights
    True
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["StrategyParameters", "chi_n", "strategy_parameters"]


@dataclasses.dataclass(frozen=True)
class StrategyParameters:
    """Weights and learning rates of one CMA-ES run (see the module docstring).

    Attributes:
        weights: ``lambda`` recombination weights, best sample first: ``mu``
            positive ones summing to 1, then zero or negative ones (active update).
        mu, mueff: number of positive weights and their variance effective
            selection mass.
        cs, damps: cumulation and damping of the step-size path.
        cc, c1, cmu: cumulation of the rank-one path and the rank-one and
            rank-mu learning rates.
        eigen_gap: generations between two eigendecompositions (pycma's
            ``lazy_update_gap``: a decomposition is due once this many updates
            have happened since the last one).
        chin: ``E|N(0, I)|``.
    """

    weights: tuple[float, ...]
    mu: int
    mueff: float
    cs: float
    damps: float
    cc: float
    c1: float
    cmu: float
    eigen_gap: float
    chin: float


def chi_n(n: int) -> float:
    """``E|N(0, I_n)| = sqrt(2) Gamma((n + 1) / 2) / Gamma(n / 2)``, exact up to
    ``n = 100`` and ``sqrt(n) (1 - 1/(4n) + 1/(32 n^2))`` above, as pycma 4.x (the
    tutorial's approximation has 21 for 32)."""
    if n <= 100:
        return math.sqrt(2) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))
    return n**0.5 * (1 - 1 / (4 * n) + 1 / (32 * n**2))


def strategy_parameters(dim: int, popsize: int, *, diagonal: bool = False,
                        active: bool = True) -> StrategyParameters:
    """The default parameters for dimension ``dim`` and population ``popsize``.

    Args:
        dim: search space dimension ``n`` >= 1.
        popsize: ``lambda`` >= 2.
        diagonal: separable CMA-ES (Ros & Hansen 2008 learning rates).
        active: negative weights for the worst samples (active CMA, the tutorial's
            default); False sets them to zero.
    """
    if dim < 1 or popsize < 2:
        raise ValueError(f"need dim >= 1 and popsize >= 2, got dim={dim}, popsize={popsize}")
    n, lam = float(dim), popsize
    raw = [math.log((lam + 1) / 2) - math.log(i) for i in range(1, lam + 1)]  # Eq. (49)
    mu = sum(1 for w in raw if w > 0)
    positive = sum(raw[:mu])
    weights = [w / positive for w in raw[:mu]]  # Eq. (53), positive part: sum 1
    mueff = 1 / sum(w * w for w in weights)  # Eq. (8)
    negative = [w for w in raw[mu:]]
    neg_sum = -sum(negative)
    mueff_minus = neg_sum**2 / sum(w * w for w in negative) if neg_sum > 0 else 0.0
    cs = min(0.5, (mueff + 2) / (n + mueff + 3))  # Eq. (55), pycma's constant 3
    inner = max(1.0, 3 * (1 - 0.5 ** (n / 9)))  # pycma's damping inner factor
    damps = 1 + cs + 2 * max(0.0, inner * ((mueff - 1) / (n + 1)) ** 0.5 - 1)  # Eq. (55)
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)  # Eq. (56)
    c1 = min(1.0, lam / 6) * 2 / ((n + 1.3) ** 2 + mueff)  # Eq. (57)
    cmu_raw = 2 * (0.25 + mueff + 1 / mueff - 2) / ((n + 2) ** 2 + mueff)  # Eq. (58)
    cmu = min(1 - c1, cmu_raw)
    eigen_gap = 1 / (c1 + cmu + 1e-23) / n / 10  # pycma's lazy_update_gap
    if diagonal:  # Ros & Hansen (2008): learning rates (n + 2) / 3 times larger
        c1 = min(1.0, c1 * (n + 2) / 3)
        cmu = min(1 - c1, cmu_raw * (n + 2) / 3)
    if active and negative and neg_sum > 0 and cmu > 0:
        # Eq. (53): the sum of negative weights is min(alpha_mu, alpha_posdef, alpha_mueff)
        target = min(1 + c1 / cmu,  # alpha_mu^-: no decay of C (Eq. 50)
                     (1 - c1 - cmu) / cmu / n,  # alpha_posdef^- (Eq. 52)
                     1 + 2 * mueff_minus / (mueff + 2))  # alpha_mueff^- (Eq. 51)
        weights += [w * target / neg_sum for w in negative]
    else:
        weights += [0.0] * len(negative)
    return StrategyParameters(weights=tuple(weights), mu=mu, mueff=mueff, cs=cs, damps=damps,
                              cc=cc, c1=c1, cmu=cmu, eigen_gap=eigen_gap, chin=chi_n(dim))
