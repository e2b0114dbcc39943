"""A mixed-variable benchmark: reals, integers, categories and bits in one space.

``MixedSphere(n)`` searches ``Product(x=Real(-5, 5, size=n), k=Integer(-10, 10,
size=n), c=Categorical(["a", "b", "c", "d", "e"], size=n), bits=Binary(n))`` and
sums one separable distance per part to a seeded target ``t``:

    f = sum_i (x_i - t^x_i)^2 + sum_i |k_i - t^k_i| + sum_i [c_i != t^c_i]
        + sum_i [b_i != t^b_i]                                          # Eq. (1)

so every kind of variable matters, the optimum (f = 0) is known and every part
rewards partial progress. ``reals=False`` drops the real part (a purely discrete
mixed space, for optimizers of discrete spaces only). It is the kind of space a
hybrid model's structure lives in (a learning rate, a width, an op, a mask), in
the spirit of the mixed-integer benchmarks of Tušar et al. 2019 ("Mixed-integer
benchmark problems for single- and bi-objective optimization", bbob-mixint),
simplified to a separable sum.

Example:
    >>> import numpy as np
    >>> from nondiff.problems.mixed import MixedSphere
    >>> p = MixedSphere(3, instance=1)
    >>> float(p(p.x_opt)), p.f_opt, p.dim
    (0.0, 0.0, 12)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from nondiff.optim.checks import check_int
from nondiff.optim.spaces import Binary, Categorical, Integer, Product, Real
from nondiff.problems.discrete import DiscreteProblem, instance_rng

__all__ = ["CATEGORIES", "MixedSphere"]

CATEGORIES = ("a", "b", "c", "d", "e")


class MixedSphere(DiscreteProblem):
    """Eq. (1) over a Product of Real, Integer, Categorical and Binary parts of size n."""

    name = "mixed-sphere"

    def __init__(self, n: int, instance: int = 0, reals: bool = True) -> None:
        n = check_int("n", n, 1)
        parts = {"x": Real(-5.0, 5.0, size=n)} if reals else {}
        space = Product(**parts, k=Integer(-10, 10, size=n),
                        c=Categorical(list(CATEGORIES), size=n), bits=Binary(n))
        self.n, self.reals = n, bool(reals)
        super().__init__(space, instance)
        rng = instance_rng(self.name, n, instance)
        target = {
            "x": rng.uniform(-4.0, 4.0, n) if instance else np.zeros(n),
            "k": rng.integers(-8, 9, n) if instance else np.zeros(n, dtype=np.int64),
            "c": [CATEGORIES[i] for i in (rng.integers(0, 5, n) if instance else [0] * n)],
            "bits": rng.integers(0, 2, n).astype(bool) if instance else np.ones(n, bool),
        }
        if not reals:
            del target["x"]
        self.target = target
        self.x_opt = space.encode(target)
        self.f_opt = 0.0
        self._target = torch.as_tensor(self.x_opt)
        self._slices = {name: part for name, _, part in space.leaves()}

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        start = self.n if self.reals else 0  # the discrete entries follow the reals
        discrete = torch.round(x[:, start:])
        low = torch.as_tensor(self.lower[start:], dtype=x.dtype, device=x.device)
        high = torch.as_tensor(self.upper[start:], dtype=x.dtype, device=x.device)
        if not bool(((discrete >= low) & (discrete <= high)).all()):  # NaN fails too
            raise ValueError(
                f"{self.name}: integer, category or bit entries outside the space "
                f"{self.space!r}; pass encodings from the space"
            )
        target = self._target.to(dtype=x.dtype, device=x.device)
        diff = x - target
        parts = self._slices
        real = (diff[:, parts["x"]] ** 2).sum(dim=1) if self.reals else 0.0
        integer = torch.round(diff[:, parts["k"]]).abs().sum(dim=1)
        categorical = (torch.round(diff[:, parts["c"]]) != 0).sum(dim=1)
        bits = (torch.round(diff[:, parts["bits"]]) != 0).sum(dim=1)
        return real + integer + categorical.to(x.dtype) + bits.to(x.dtype)  # Eq. (1)

    @classmethod
    def create(cls, dim: int, instance: int = 0, **kwargs: Any) -> MixedSphere:
        return cls(dim, instance=instance, **kwargs)
