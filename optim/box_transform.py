"""A box ``[lower, upper]`` as a smooth periodic map of the whole real line, in torch.

The bound handling of pycma (``cma.BoundTransform``, the default
``BoundaryHandler``): the search distribution lives on the unbounded real line
(the genotype); each candidate is mapped into the box by a transformation that is
the identity inside ``[lower + a_l, upper - a_u]``, quadratic next to the bounds
and periodic beyond (pycma's ``BoxConstraintsLinQuadTransformation``), with margins
``a = min((upper - lower) / 2, 0.05 max(|bound|, 1))``. Infinite sides stay
unbounded. Reference: N. Hansen, pycma, ``cma/transformations.py``; the method is
described in N. Hansen, A. Auger, "Principled design of continuous stochastic
search", Theory and Principled Methods for the Design of Metaheuristics, 2014.

Example:
    >>> import torch
    >>> from nondiff.optim.box_transform import BoxTransform
    >>> box = BoxTransform(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    >>> box.transform(torch.tensor([[0.5, 1.2], [-0.02, 0.99]], dtype=torch.float64))
    tensor([[0.5000, 0.9000],
            [0.0045, 0.9820]], dtype=torch.float64)
    >>> box.inverse(torch.tensor([[0.5, 0.982]], dtype=torch.float64))
    tensor([[0.5000, 0.9900]], dtype=torch.float64)
"""

from __future__ import annotations

import torch

__all__ = ["BoxTransform"]


class BoxTransform:
    """pycma's linear-quadratic periodic box transformation (module docstring).

    Args:
        lower, upper: ``(dim,)`` bounds (``-inf``/``inf`` for open sides), on the
            device and in the dtype the transformation is applied in.
    """

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor) -> None:
        self.lower, self.upper = lower, upper
        finite_lower, finite_upper = torch.isfinite(lower), torch.isfinite(upper)
        half = (upper - lower) / 2
        one = torch.ones_like(lower)

        def margin(bound: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
            width = 0.05 * torch.maximum(bound.abs(), one)
            return torch.where(finite, torch.minimum(half, width), one)

        self.al, self.au = margin(lower, finite_lower), margin(upper, finite_upper)
        self.periodic = finite_lower & finite_upper
        self.period = torch.where(self.periodic, 2 * (upper - lower + self.al + self.au), one)
        self.start = torch.where(self.periodic, lower - 2 * self.al - half, -one)
        self.finite_lower, self.finite_upper = finite_lower, finite_upper

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Map genotypes ``(..., dim)`` into the box (a new tensor)."""
        lb, ub, al, au = self.lower, self.upper, self.al, self.au
        y = torch.where(self.periodic,  # shift into one period [start, start + period)
                        x - self.period * torch.floor((x - self.start) / self.period), x)
        y = torch.where(self.finite_upper & (y > ub + au), y - 2 * (y - ub - au), y)  # reflect
        y = torch.where(self.finite_lower & (y < lb - al), y + 2 * (lb - al - y), y)
        y = torch.where(self.finite_lower & (y < lb + al),
                        lb + (y - (lb - al)) ** 2 / 4 / al, y)  # quadratic next to lower
        y = torch.where(self.finite_upper & (y > ub - au),
                        ub - (y - (ub + au)) ** 2 / 4 / au, y)  # quadratic next to upper
        return y

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """A genotype for each point of the box (points outside are first clipped),
        inside ``[lower - a_l, upper + a_u]``: ``transform(inverse(y)) == y`` up to
        rounding."""
        lb, ub, al, au = self.lower, self.upper, self.al, self.au
        y = torch.minimum(torch.maximum(y, lb), ub)
        near_lower = self.finite_lower & (y < lb + al)
        near_upper = self.finite_upper & (y > ub - au)
        x = torch.where(near_lower, lb - al + 2 * (al * (y - lb)).clamp(min=0).sqrt(), y)
        return torch.where(near_upper, ub + au - 2 * (au * (ub - y)).clamp(min=0).sqrt(), x)
