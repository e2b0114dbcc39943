"""Policies over flat parameter vectors, evaluated as a stack, and observation normalization.

Neuroevolution searches the flat parameter vector of a policy network. A
population of ``n`` vectors is evaluated in one call: :class:`StackedPolicy`
reshapes the ``(n, dim)`` batch into stacked parameter tensors and applies the
module to every row at once with ``torch.func.functional_call`` under
``torch.func.vmap`` (any ``nn.Module``), or with batched matrix products for the
:class:`LinearPolicy` and :class:`MLPPolicy` of this module (the same numbers,
without vmap's fixed cost per call).

Observations are normalized with running statistics as in Salimans et al. (2017),
Sec. 2.4 / their code: count, sum and sum of squares over every observation seen,

    mean = sum / count,  std = sqrt(max(sumsq / count - mean^2, 1e-2))       # Eq. (1)
    o' = clip((o - mean) / std, -5, 5)                                       # Eq. (2)

frozen during a generation (every policy sees the same transform) and updated
from that generation's observations afterwards.

Source: T. Salimans, J. Ho, X. Chen, S. Sidor, I. Sutskever, "Evolution Strategies as
a Scalable Alternative to Reinforcement Learning", arXiv:1703.03864, 2017.

Example:
    >>> import torch
    >>> from nondiff.problems.policies import MLPPolicy, StackedPolicy
    >>> stack = StackedPolicy(MLPPolicy(4, 2, hidden=(8,)))
    >>> stack.dim  # 4*8 + 8 + 8*2 + 2
    58
    >>> flat = torch.randn(5, stack.dim, generator=torch.Generator().manual_seed(0))
    >>> params = stack.unflatten(flat)
    >>> stack(params, torch.zeros(5, 4)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["ACTIVATIONS", "LinearPolicy", "MLPPolicy", "RunningNorm", "StackedPolicy",
           "build_policy"]

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}
"""Hidden-layer activations of :class:`MLPPolicy`, by name."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class LinearPolicy(nn.Module):
    """``a = W o + b``: the linear policy of Mania et al. (2018) and Salimans et al."""

    def __init__(self, obs_dim: int, act_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.act_dim = _positive_int("act_dim", act_dim)
        self.linear = nn.Linear(obs_dim, act_dim, bias=bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.linear(obs)

    def spec(self) -> dict[str, Any]:
        """What :func:`build_policy` needs to rebuild this module."""
        return {"kind": "linear", "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "bias": self.linear.bias is not None}


class MLPPolicy(nn.Module):
    """A multilayer perceptron with ``hidden`` widths and one activation between layers."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (16,),
                 activation: str = "tanh", bias: bool = True) -> None:
        super().__init__()
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        self.act_dim = _positive_int("act_dim", act_dim)
        if isinstance(hidden, int):
            hidden = (hidden,)
        self.hidden = tuple(_positive_int("hidden width", h) for h in hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.activation = activation
        widths = (obs_dim, *self.hidden, act_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias)
                                    for a, b in itertools.pairwise(widths))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            obs = layer(obs) if i == 0 else layer(act(obs))
        return obs

    def spec(self) -> dict[str, Any]:
        return {"kind": "mlp", "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "hidden": list(self.hidden), "activation": self.activation,
                "bias": self.layers[0].bias is not None}


def build_policy(kind: str, obs_dim: int, act_dim: int, hidden: Sequence[int] = (16,),
                 activation: str = "tanh", bias: bool = True) -> nn.Module:
    """A :class:`LinearPolicy` (``kind="linear"``) or :class:`MLPPolicy` (``"mlp"``)."""
    if kind == "linear":
        return LinearPolicy(obs_dim, act_dim, bias=bias)
    if kind == "mlp":
        return MLPPolicy(obs_dim, act_dim, hidden=hidden, activation=activation, bias=bias)
    raise ValueError(f"policy kind must be 'linear' or 'mlp' (or pass an nn.Module), got {kind!r}")


class StackedPolicy:
    """The flat parameter vector of ``module`` and its stacked, batched evaluation.

    Args:
        module: any ``nn.Module`` mapping ``(batch, obs_dim)`` to ``(batch, out)``;
            its parameters (in ``named_parameters`` order) make up the flat vector,
            its buffers are shared by every row.
        use_vmap: force the generic ``vmap(functional_call)`` path even for the
            linear and MLP policies of this module.
    """

    def __init__(self, module: nn.Module, use_vmap: bool = False) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(f"policy must be an nn.Module, got {type(module).__name__}")
        self.module = module
        named = [(k, v) for k, v in module.named_parameters()]
        if not named:
            raise ValueError(f"policy {type(module).__name__} has no parameters to search")
        self.names = [k for k, _ in named]
        self.shapes = [tuple(v.shape) for _, v in named]
        self.sizes = [v.numel() for _, v in named]
        self.dim = sum(self.sizes)
        self.dtype = named[0][1].dtype
        fast = isinstance(module, (LinearPolicy, MLPPolicy)) and not use_vmap
        self._fast = fast
        self._vmapped: Any = None  # built on first use (not pickled)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_vmapped": None}

    def flatten(self, module: nn.Module | None = None) -> torch.Tensor:
        """The flat ``(dim,)`` vector of ``module``'s parameters (default: the template's)."""
        module = self.module if module is None else module
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).to(self.dtype)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(n, dim)`` -> ``{name: (n, *shape)}`` views (float dtype of the module)."""
        if flat.ndim != 2 or flat.shape[1] != self.dim:
            raise ValueError(f"policy parameters must have shape (n, {self.dim}), "
                             f"got {tuple(flat.shape)}")
        flat = flat.to(self.dtype)
        pieces = torch.split(flat, self.sizes, dim=1)
        return {k: p.reshape(flat.shape[0], *s) for k, p, s in zip(self.names, pieces,
                                                                   self.shapes, strict=True)}

    def state_dict_of(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The module's ``state_dict`` with parameters from one ``(dim,)`` vector."""
        module = self.module_of(flat)
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def module_of(self, flat: torch.Tensor) -> nn.Module:
        """A copy of the module holding the parameters of one ``(dim,)`` vector."""
        params = self.unflatten(torch.as_tensor(flat).reshape(1, -1))
        module = copy.deepcopy(self.module)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(params[name][0])
        return module

    def _one(self, params: Mapping[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, dict(params), (obs.unsqueeze(0),))[0]

    def __call__(self, params: Mapping[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
        """Outputs ``(rows, out)``: row ``i`` of ``obs`` through the parameters of row ``i``
        (no autograd graph)."""
        if torch.is_grad_enabled():  # rollouts call this under no_grad already
            with torch.no_grad():
                return self(params, obs)
        obs = obs.to(self.dtype)
        if not self._fast:
            if self._vmapped is None:
                self._vmapped = vmap(self._one, in_dims=(0, 0))
            return self._vmapped(dict(params), obs)
        return _batched_layers(self.module, params, obs)


def _batched_layers(module: nn.Module, params: Mapping[str, torch.Tensor],
                    obs: torch.Tensor) -> torch.Tensor:
    """Linear/MLP policies by batched matrix products: ``y_i = W_i x_i + b_i``."""
    if isinstance(module, LinearPolicy):
        layers, act = ["linear"], None
    else:
        layers, act = [f"layers.{i}" for i in range(len(module.layers))], \
            ACTIVATIONS[module.activation]
    h = obs.unsqueeze(2)
    for i, name in enumerate(layers):
        if i > 0:
            h = act(h)
        bias = params.get(f"{name}.bias")
        weight = params[f"{name}.weight"]
        h = torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, h)
    return h.squeeze(2)


class RunningNorm:
    """Running observation statistics (count, sum, sum of squares; float64), Eqs. (1)-(2).

    Args:
        obs_dim: observation size.
        clip: normalized observations are clipped into ``[-clip, clip]`` (paper: 5).
        min_var: floor of the variance (paper's code: 1e-2).
    """

    def __init__(self, obs_dim: int, clip: float = 5.0, min_var: float = 1e-2) -> None:
        self.obs_dim = _positive_int("obs_dim", obs_dim)
        if not (isinstance(clip, (int, float)) and clip > 0 and math.isfinite(clip)):
            raise ValueError(f"clip must be a positive number, got {clip!r}")
        if not (isinstance(min_var, (int, float)) and min_var > 0):
            raise ValueError(f"min_var must be a positive number, got {min_var!r}")
        self.clip, self.min_var = float(clip), float(min_var)
        self.count = 0.0
        self.sum = torch.zeros(obs_dim, dtype=torch.float64)
        self.sumsq = torch.zeros(obs_dim, dtype=torch.float64)

    @property
    def mean(self) -> torch.Tensor:
        if self.count == 0:
            return torch.zeros(self.obs_dim, dtype=torch.float64)
        return self.sum / self.count

    @property
    def std(self) -> torch.Tensor:
        if self.count == 0:
            return torch.ones(self.obs_dim, dtype=torch.float64)
        var = self.sumsq / self.count - self.mean.square()
        return var.clamp(min=self.min_var).sqrt()  # Eq. (1)

    def transform(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The frozen ``(mean, std, clip)`` a generation normalizes with (float32)."""
        return self.mean.to(torch.float32), self.std.to(torch.float32), self.clip

    @staticmethod
    def apply(obs: torch.Tensor, transform: tuple[torch.Tensor, torch.Tensor, float]
              ) -> torch.Tensor:
        mean, std, clip = transform
        return ((obs - mean) / std).clamp(-clip, clip)  # Eq. (2)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """``clip((obs - mean) / std)`` with the current statistics."""
        return self.apply(obs.to(torch.float32), self.transform())

    @staticmethod
    def stats(obs: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """``(count, sum, sumsq)`` of a ``(k, obs_dim)`` batch, for :meth:`merge`."""
        obs = obs.to(torch.float64)
        return float(obs.shape[0]), obs.sum(dim=0), obs.square().sum(dim=0)

    def merge(self, stats: tuple[float, torch.Tensor, torch.Tensor]) -> None:
        count, total, sq = stats
        self.count += float(count)
        self.sum += total
        self.sumsq += sq

    def update(self, obs: torch.Tensor) -> None:
        """Add a ``(k, obs_dim)`` batch of observations to the statistics."""
        self.merge(self.stats(obs.reshape(-1, self.obs_dim)))

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum.clone(), "sumsq": self.sumsq.clone(),
                "clip": self.clip, "min_var": self.min_var}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> RunningNorm:
        keys = {"count", "sum", "sumsq", "clip", "min_var"}
        if set(state) != keys:
            raise ValueError(f"observation statistics need keys {sorted(keys)}, "
                             f"got {sorted(state)}")
        norm = cls(int(state["sum"].numel()), clip=float(state["clip"]),
                   min_var=float(state["min_var"]))
        norm.count = float(state["count"])
        norm.sum = state["sum"].to(torch.float64).clone()
        norm.sumsq = state["sumsq"].to(torch.float64).clone()
        return norm
