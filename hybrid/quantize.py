"""Quantized weights: network-level ADMM and the straight-through estimator (Leng et al. 2018).

Everything that puts the weights of a network on discrete sets, in one place:

- :class:`ADMMQuantizer`, torch.optim-like ADMM on the weights. Each quantized weight
  tensor W gets an auxiliary copy Z on its set C (binary ``{-a, +a}``, ternary
  ``{-a, 0, +a}`` or k-bit integers times a, with a per-tensor fitted scale a, see
  :func:`level_set`) and a scaled dual U. Training minimizes the augmented Lagrangian

      L(W) + rho/2 ||W - Z + U||^2                                        # Eq. (1)

  by the usual gradient steps on W (add :meth:`ADMMQuantizer.penalty` to the loss);
  every ``every`` steps :meth:`ADMMQuantizer.step` runs

      Z <- Proj_C(W + U)      (scale refitted, exactly for binary/ternary)  # Eq. (2)
      U <- U + W - Z                                                      # Eq. (3)
      rho <- min(rho * rho_growth, rho_max),  U <- U * rho_old / rho_new  # Eq. (4)

  and :meth:`ADMMQuantizer.finalize` puts each W exactly on its set, ``W <- Proj_C(W)``.
- :class:`STEQuantize`, the straight-through parametrization (Bengio et al. 2013, as
  in BinaryConnect and ternary weight networks): the forward pass uses ``Proj_C(W)``,
  the backward pass copies its gradient to W (:func:`apply_ste`).
- :class:`ScaledCodes`, the polish parametrization ``W = s * Q``: integer codes frozen,
  the per-tensor scale trains (:func:`freeze_codes`).
- :func:`quantized_layers` / :func:`quantized_weights` pick the linear and
  convolutional layers to quantize; :func:`quantize_in_place` ends a run with every
  weight exactly on its set, whichever of the above trained it.

The vector ADMM for f(x) + g(z) with g the indicator of a discrete set is
:class:`nondiff.optim.ADMM`; the exact projections are :mod:`nondiff.optim.projections`.

Sources:
    - C. Leng, H. Li, S. Zhu, R. Jin, "Extremely Low Bit Neural Network: Squeeze the
      Last Bit Out with ADMM", AAAI 2018 (Eqs. 1-3; ternary ResNet-18 on ImageNet:
      67.0 % top-1 vs 70.3 % in float).
    - Y. Bengio, N. Leonard, A. Courville, "Estimating or propagating gradients
      through stochastic neurons for conditional computation", arXiv:1308.3432, 2013.
    - F. Li, B. Zhang, B. Liu, "Ternary weight networks", arXiv:1605.04711, 2016.

Example:
    >>> import torch
    >>> from nondiff.hybrid.quantize import ADMMQuantizer
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> w = torch.nn.Parameter(torch.randn(20))
    >>> target = torch.randn(20)
    >>> quant = ADMMQuantizer([w], levels="ternary", rho=0.1, rho_growth=1.05, rho_max=5.0)
    >>> sgd = torch.optim.SGD([w], lr=0.1)
    >>> for _ in range(200):
    ...     sgd.zero_grad()
    ...     loss = ((w - target) ** 2).sum() + quant.penalty()
    ...     loss.backward()
    ...     sgd.step()
    ...     _ = quant.step()
    >>> scales = quant.finalize()
    >>> len(set(w.detach().abs().tolist())) <= 2 and quant.on_levels()
    True

    The straight-through estimator on the layers of a network, then the weights put
    on their set for good:

    >>> from torch import nn
    >>> from nondiff.hybrid.quantize import (
    ...     apply_ste, level_set, quantize_in_place, quantized_layers)
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> layers = quantized_layers(net)
    >>> apply_ste(layers, level_set("binary"))
    >>> net(torch.randn(3, 4)).sum().backward()
    >>> quantize_in_place(layers)
    >>> [torch.unique(m.weight.detach().abs()).numel() for m in layers]
    [1, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from nondiff.optim.checks import check_int, check_positive, check_real
from nondiff.optim.projections import Binary, ConstraintSet, Levels, Ternary
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["ADMMQuantizer", "STEQuantize", "ScaledCodes", "apply_ste", "freeze_codes",
           "level_set", "quantize_in_place", "quantized_layers", "quantized_weights"]

STATE_VERSION = 1


def level_set(levels: str | int | ConstraintSet) -> ConstraintSet:
    """The set for ``levels``: ``"binary"``, ``"ternary"`` (fitted scales), an integer
    k >= 2 (k-bit symmetric integers times a fitted scale) or a ConstraintSet."""
    if isinstance(levels, ConstraintSet):
        return levels
    if levels == "binary":
        return Binary("fit")
    if levels == "ternary":
        return Ternary("fit")
    if isinstance(levels, int) and not isinstance(levels, bool) and 2 <= levels <= 16:
        return Ternary("fit") if levels == 2 else Levels.bits(levels)
    raise ValueError(f"levels must be 'binary', 'ternary', a bit width in [2, 16] or a "
                     f"ConstraintSet, got {levels!r}")


class ADMMQuantizer:
    """torch.optim-like ADMM for quantized weights, Eqs. (1)-(4) of the module docstring.

    Args:
        params: tensors to quantize, or param groups (dicts with ``"params"`` and
            optionally ``"levels"``, ``"rho"``), as in ``torch.optim``.
        levels: default level set (see :func:`level_set`).
        rho: default initial penalty, > 0.
        every: run the Z/U updates every this many :meth:`step` calls.
        rho_growth: factor on rho per Z/U update (>= 1).
        rho_max: cap on rho.

    Runs on the device of each quantized tensor (Z and U live next to their W).
    """

    def __init__(self, params: Iterable[Any], levels: str | int | ConstraintSet = "ternary",
                 rho: float = 1e-3, every: int = 1, rho_growth: float = 1.0,
                 rho_max: float = 1e3) -> None:
        self.defaults = {"levels": levels, "rho": check_positive("rho", rho)}
        level_set(levels)
        self.every = check_int("every", every, 1)
        self.rho_growth = check_real("rho_growth", rho_growth, low=1.0)
        self.rho_max = check_positive("rho_max", rho_max)
        groups = list(params)
        if not groups:
            raise ValueError("ADMMQuantizer got an empty parameter list")
        if not isinstance(groups[0], Mapping):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            unknown = set(group) - {"params", "levels", "rho"}
            if unknown:
                raise ValueError(f"unknown param group keys {sorted(unknown)}; "
                                 "known: params, levels, rho")
            tensors = group["params"]
            tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
            for t in tensors:
                if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                    raise ValueError(f"params must be floating-point tensors, got {type(t)}")
            entry = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
            entry["rho"] = check_positive("rho", entry["rho"])
            entry["set"] = level_set(entry["levels"])
            entry["params"] = tensors
            self.param_groups.append(entry)
        self.steps = 0
        self.state: list[dict[str, Any]] = []
        for group in self.param_groups:
            for p in group["params"]:
                z, scale = self._project(group, p.detach())
                self.state.append({"z": z, "u": torch.zeros_like(p.detach()), "scale": scale})

    @staticmethod
    def _project(group: Mapping[str, Any], v: torch.Tensor) -> tuple[torch.Tensor, float]:
        return group["set"].fit(v)

    def _pairs(self) -> Iterable[tuple[dict[str, Any], torch.Tensor, dict[str, Any]]]:
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield group, p, self.state[i]
                i += 1

    def penalty(self) -> torch.Tensor:
        """``sum rho/2 ||W - Z + U||^2`` over the quantized tensors (Eq. 1): add it to the
        loss before ``backward()``."""
        total = None
        for group, p, st in self._pairs():
            term = 0.5 * group["rho"] * ((p - st["z"] + st["u"]) ** 2).sum()
            total = term if total is None else total + term
        return total

    @torch.no_grad()
    def step(self) -> dict[str, float]:
        """Count a training step; every ``every`` steps update Z, U and rho (Eqs. 2-4).

        Returns:
            metrics: ``primal_residual`` ``sqrt(sum ||W - Z||^2)`` (after an update) and
            ``rho`` of the first group; empty between updates.
        """
        self.steps += 1
        if self.steps % self.every:
            return {}
        squares = []
        for group, p, st in self._pairs():
            w = p.detach()
            st["z"], st["scale"] = self._project(group, w + st["u"])  # Eq. (2)
            st["u"] = st["u"] + w - st["z"]  # Eq. (3)
            squares.append(((w - st["z"]) ** 2).sum().double())
        if len({sq.device for sq in squares}) == 1:  # one host copy, not one per tensor
            host = torch.stack(squares).tolist()
        else:
            host = [float(sq) for sq in squares]
        residual = 0.0
        for square in host:  # in order, in double: the same sum as one float() each
            residual += square
        for group in self.param_groups:  # Eq. (4)
            rho_new = min(group["rho"] * self.rho_growth, self.rho_max)
            ratio = group["rho"] / rho_new
            group["rho"] = rho_new
            if ratio != 1.0:
                for p in group["params"]:
                    st = self.state[self._index(p)]
                    st["u"] = st["u"] * ratio
        return {"primal_residual": residual**0.5, "rho": self.param_groups[0]["rho"]}

    def _index(self, tensor: torch.Tensor) -> int:
        for i, (_, p, _) in enumerate(self._pairs()):
            if p is tensor:
                return i
        raise ValueError("tensor is not managed by this quantizer")

    @torch.no_grad()
    def finalize(self) -> list[float]:
        """Put every quantized tensor exactly on its set, ``W <- Proj_C(W)``; returns the
        per-tensor scales (1.0 for sets without one)."""
        scales = []
        for group, p, st in self._pairs():
            q, scale = self._project(group, p.detach())
            p.copy_(q)
            st["z"], st["scale"] = q.clone(), scale
            scales.append(scale)
        return scales

    @torch.no_grad()
    def on_levels(self, atol: float = 0.0) -> bool:
        """Whether every quantized tensor lies on its set (to ``atol``)."""
        return all(group["set"].contains(p.detach(), atol=atol) for group, p, _ in self._pairs())

    def state_dict(self) -> dict[str, Any]:
        """Duals, auxiliary Z, scales, penalties and the step count (plain tensors)."""
        return {
            "state_version": STATE_VERSION,
            "steps": self.steps,
            "state": {i: {"z": st["z"].clone(), "u": st["u"].clone(), "scale": st["scale"]}
                      for i, st in enumerate(self.state)},
            "param_groups": [{"rho": g["rho"], "levels": repr(g["set"]),
                              "sizes": [tuple(p.shape) for p in g["params"]]}
                             for g in self.param_groups],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into a quantizer over the same parameters.

        Raises:
            ValueError: another layout (groups, shapes, level sets) or unknown keys.
        """
        keys = {"state_version", "steps", "state", "param_groups"}
        if not isinstance(state, Mapping) or set(state) != keys:
            got = sorted(state) if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"not an ADMMQuantizer state dict: expected keys {sorted(keys)}, "
                             f"got {got}")
        if state["state_version"] > STATE_VERSION:
            raise ValueError(f"state version {state['state_version']} is newer than "
                             f"{STATE_VERSION}; upgrade nondiff")
        groups = state["param_groups"]
        mine = [{"levels": repr(g["set"]), "sizes": [tuple(p.shape) for p in g["params"]]}
                for g in self.param_groups]
        theirs = [{"levels": g["levels"], "sizes": [tuple(s) for s in g["sizes"]]} for g in groups]
        if mine != theirs or len(state["state"]) != len(self.state):
            raise ValueError(f"state dict is for another layout: saved {theirs}, here {mine}")
        new_state = []
        for i, st in enumerate(self.state):
            saved = state["state"][i]
            new_state.append({"z": saved["z"].to(st["z"]).clone(),
                              "u": saved["u"].to(st["u"]).clone(),
                              "scale": float(saved["scale"])})
        for group, saved in zip(self.param_groups, groups, strict=True):
            group["rho"] = float(saved["rho"])
        self.state, self.steps = new_state, int(state["steps"])


def quantized_layers(model: nn.Module, keep_float: Sequence[int] = ()) -> list[nn.Module]:
    """The linear and convolutional layers whose weights are quantized: all of them in
    order, except those at the indices ``keep_float`` (e.g. ``(0,)``: the first layer
    stays in float, as in most low-bit work since XNOR-Net).

    Raises:
        ValueError: an index of ``keep_float`` outside the layers.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    kept = set()
    for i in keep_float:
        if isinstance(i, bool) or not isinstance(i, int) or not -len(layers) <= i < len(layers):
            raise ValueError(f"keep_float holds layer indices in [-{len(layers)}, "
                             f"{len(layers)}), got {i!r}")
        kept.add(i % len(layers))
    return [m for i, m in enumerate(layers) if i not in kept]


def quantized_weights(model: nn.Module, keep_float: Sequence[int] = ()) -> list[nn.Parameter]:
    """The weight tensors of :func:`quantized_layers` (biases excluded)."""
    return [m.weight for m in quantized_layers(model, keep_float)]


class ScaledCodes(nn.Module):
    """Parametrization ``W = s * Q`` for the polish phase: the integer codes ``Q`` of a
    weight already on its set stay fixed, the per-tensor scale ``s`` trains (so ``W``
    stays on the set: any positive scale is a member of a fitted-scale set).

    ``s`` is stored as ``t = s ||Q||``, so that a gradient step on ``t`` moves ``s`` by
    ``lr <dL/dW, Q> / ||Q||^2``: the scale a step on every weight followed by a
    least-squares refit on the same codes would give (a step on ``s`` itself would be
    ``||Q||^2`` times larger: thousands of weights pulling on one number)."""

    def __init__(self, weight: torch.Tensor, constraint_set: ConstraintSet) -> None:
        super().__init__()
        w = weight.detach()
        _, scale = constraint_set.fit(w)
        codes = torch.round(w / scale) if scale > 0 else torch.zeros_like(w)
        if not torch.allclose(scale * codes, w, rtol=1e-6, atol=1e-9):
            raise ValueError(f"polishing needs levels that are integers times a scale; "
                             f"{constraint_set!r} is not; skip the polish phase for it")
        self.register_buffer("codes", codes)
        self.raw_scale = nn.Parameter(torch.tensor(scale * float(self.norm), dtype=w.dtype,
                                                   device=w.device))

    @property
    def norm(self) -> torch.Tensor:
        """``max(||Q||, 1)``, derived from the codes (so a loaded state dict is consistent)."""
        return self.codes.square().sum().sqrt().clamp_min(1.0)

    @property
    def scale(self) -> torch.Tensor:
        return self.raw_scale / self.norm

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.scale * self.codes


class STEQuantize(nn.Module):
    """Parametrization ``W -> W + (Proj_C(W) - W).detach()``: forward on the set,
    gradient straight through to the float W."""

    def __init__(self, constraint_set: ConstraintSet) -> None:
        super().__init__()
        self.constraint_set = constraint_set

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (self.constraint_set.project(w.detach()) - w).detach()


def apply_ste(layers: Iterable[nn.Module], constraint_set: ConstraintSet) -> None:
    """Train the weights of ``layers`` by the straight-through estimator onto
    ``constraint_set`` (registers :class:`STEQuantize` on each ``weight``)."""
    for m in layers:
        parametrize.register_parametrization(m, "weight", STEQuantize(constraint_set))


def freeze_codes(layers: Iterable[nn.Module], constraint_set: ConstraintSet) -> None:
    """Start the polish phase: the weights of ``layers``, already on ``constraint_set``
    (after :func:`quantize_in_place`), keep their integer codes and only their scales
    train (registers :class:`ScaledCodes`; the float weight stops requiring grad)."""
    layers = list(layers)
    codes = [ScaledCodes(m.weight, constraint_set) for m in layers]  # may refuse: first
    for m, scaled in zip(layers, codes, strict=True):
        m.weight.requires_grad_(False)
        parametrize.register_parametrization(m, "weight", scaled)


def quantize_in_place(layers: Iterable[nn.Module], quant: ADMMQuantizer | None = None) -> None:
    """Put the weights of ``layers`` on their sets for good: ADMM's final projection
    (:meth:`ADMMQuantizer.finalize` of ``quant``), or bake in the straight-through or
    polish parametrization, leaving a plain ``weight`` parameter."""
    if quant is not None:
        quant.finalize()
    for m in layers:
        if not parametrize.is_parametrized(m, "weight"):
            continue
        rule = m.parametrizations.weight[0]
        if isinstance(rule, STEQuantize):  # W + (P(W) - W) is P(W) only to rounding
            exact = rule.constraint_set.project(m.parametrizations.weight.original.detach())
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(exact)
        else:  # ScaledCodes: scale * codes, exact
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
