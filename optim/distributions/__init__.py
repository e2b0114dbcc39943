"""Search distributions: sample, log-density, score, natural gradient and entropy.

One interface (:class:`SearchDistribution`, in :mod:`.base`) and its families, one a
module:

- :mod:`.gaussian`: ``IsotropicGaussian``, ``SeparableGaussian``, ``FullGaussian``
  (the evolution strategies' distributions, with natural gradients);
- :mod:`.discrete`: ``Bernoulli`` (bits), ``Categorical`` (choices),
  ``PlackettLuce`` (permutations);
- :mod:`.product`: ``ProductDistribution``, one distribution per leaf of a mixed
  space, built by ``distribution_for(space)``, with ``LogStdGaussian`` for reals.

Example:
    >>> import torch
    >>> from nondiff.optim.distributions import Bernoulli, SeparableGaussian
    >>> gen = torch.Generator().manual_seed(0)
    >>> x = SeparableGaussian(torch.zeros(3), torch.ones(3)).sample(4, gen, antithetic=True)
    >>> bool(torch.equal(x[:2], -x[2:])), tuple(Bernoulli(torch.zeros(5)).sample(2, gen).shape)
    (True, (2, 5))
"""

from .base import SearchDistribution
from .discrete import Bernoulli, Categorical, PlackettLuce
from .gaussian import FullGaussian, IsotropicGaussian, SeparableGaussian
from .product import LogStdGaussian, ProductDistribution, distribution_for

__all__ = [
    "Bernoulli",
    "Categorical",
    "FullGaussian",
    "IsotropicGaussian",
    "LogStdGaussian",
    "PlackettLuce",
    "ProductDistribution",
    "SearchDistribution",
    "SeparableGaussian",
    "distribution_for",
]
