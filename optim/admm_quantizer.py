"""ADMMQuantizer: train a network whose weights must end on discrete sets (Leng et al. 2018).

Each quantized weight tensor W gets an auxiliary copy Z on its set C (binary
``{-a, +a}``, ternary ``{-a, 0, +a}`` or k-bit integers times a, with a per-tensor
fitted scale a) and a scaled dual U. Training minimizes the augmented Lagrangian

    L(W) + rho/2 ||W - Z + U||^2                                        # Eq. (1)

by the usual gradient steps on W (add :meth:`ADMMQuantizer.penalty` to the loss);
every ``every`` steps :meth:`ADMMQuantizer.step` runs

    Z <- Proj_C(W + U)      (scale refitted, exactly for binary/ternary)  # Eq. (2)
    U <- U + W - Z                                                      # Eq. (3)
    rho <- min(rho * rho_growth, rho_max),  U <- U * rho_old / rho_new  # Eq. (4)

and :meth:`ADMMQuantizer.finalize` puts each W exactly on its set, ``W <- Proj_C(W)``.

Source:
    C. Leng, H. Li, S. Zhu, R. Jin, "Extremely Low Bit Neural Network: Squeeze the Last
    Bit Out with ADMM", AAAI 2018 (Eqs. 1-3; ternary ResNet-18 on ImageNet: 67.0 %
    top-1 vs 70.3 % in float).

Example:
    >>> import torch
    >>> from nondiff.optim.admm_quantizer import ADMMQuantizer
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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .checks import check_int, check_positive, check_real
from .projections import Binary, ConstraintSet, Levels, Ternary

__all__ = ["ADMMQuantizer", "level_set"]

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
    """torch.optim-like ADMM for quantized weights; see the module docstring.

    Args:
        params: tensors to quantize, or param groups (dicts with ``"params"`` and
            optionally ``"levels"``, ``"rho"``), as in ``torch.optim``.
        levels: default level set (see :func:`level_set`).
        rho: default initial penalty, > 0.
        every: run the Z/U updates every this many :meth:`step` calls.
        rho_growth: factor on rho per Z/U update (>= 1).
        rho_max: cap on rho.
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
        residual = 0.0
        for group, p, st in self._pairs():
            w = p.detach()
            st["z"], st["scale"] = self._project(group, w + st["u"])  # Eq. (2)
            st["u"] = st["u"] + w - st["z"]  # Eq. (3)
            residual += float(((w - st["z"]) ** 2).sum())
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
