"""Synthetic-gradient modules (DNI, cDNI) and local auxiliary heads (DGL).

A :class:`SyntheticGradient` predicts the gradient of the loss with respect to an
activation ``h`` from ``h`` alone (DNI) or from ``h`` and a context such as the
one-hot label (cDNI). Its last layer starts at zero, so a freshly decoupled block
first receives a zero gradient and does not move in a random direction. It is
trained by regression onto the gradient that arrives later from above: the true
gradient when the block above computes the loss, otherwise the gradient the block
above obtains by back-propagating *its own* synthetic gradient (bootstrapping, like a
TD target). It works on flat ``(batch, features)`` activations (an MLP) and on
convolutional ``(batch, channels, *spatial)`` ones (same-padded convolutions), and
across truncation boundaries of a recurrent core (:class:`TruncatedDNI`).

Predictions are *per example*: for a batch-mean loss ``L = mean_b l_b`` the module
predicts ``dl_b/dh_b = B * dL/dh_b``, so its scale does not depend on the batch size.

:class:`AuxiliaryHead` is the local classifier of Decoupled Greedy Learning: a block
trains on ``cross_entropy(head(h), y)`` and needs no gradient from above at all.

Sources:
    - M. Jaderberg, W. M. Czarnecki, S. Osindero, O. Vinyals, A. Graves, D. Silver,
      K. Kavukcuoglu, "Decoupled neural interfaces using synthetic gradients",
      ICML 2017 (arXiv:1608.05343): Eq. (1)-(2), zero-initialised output layer, cDNI,
      DNI for truncated BPTT (Sec. 3.1).
    - W. M. Czarnecki, G. Świrszcz, M. Jaderberg, S. Osindero, O. Vinyals,
      K. Kavukcuoglu, "Understanding synthetic gradients and decoupled neural
      interfaces", ICML 2017.
    - E. Belilovsky, M. Eickenberg, E. Oyallon, "Decoupled greedy learning of CNNs",
      ICML 2020 (auxiliary heads).

Example:
    >>> import torch
    >>> from nondiff.hybrid.synthetic import SyntheticGradient
    >>> sg = SyntheticGradient(8, context_dim=3, hidden=16)
    >>> h, c = torch.randn(5, 8), torch.eye(3)[torch.tensor([0, 1, 2, 0, 1])]
    >>> sg(h, c).abs().max().item()        # zero-initialised output layer
    0.0
    >>> SyntheticGradient((4, 6, 6), conv=True)(torch.randn(2, 4, 6, 6)).shape
    torch.Size([2, 4, 6, 6])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .devices import device_of, to_device

__all__ = ["AuxiliaryHead", "SyntheticGradient", "TruncatedDNI", "activation_shape"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def activation_shape(shape_or_features: int | Sequence[int]) -> tuple[int, ...]:
    """The per-example shape as a tuple of positive ints (``8`` → ``(8,)``)."""
    if isinstance(shape_or_features, int) and not isinstance(shape_or_features, bool):
        shape: tuple[int, ...] = (shape_or_features,)
    elif isinstance(shape_or_features, Sequence) or isinstance(shape_or_features, torch.Size):
        shape = tuple(shape_or_features)
    else:
        raise ValueError(
            f"shape_or_features must be an int or a tuple of ints, got {shape_or_features!r}")
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(
            f"activation shape must be positive ints (per example, no batch), got {shape!r}")
    return shape


def _check_positive(name: str, value: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


class SyntheticGradient(nn.Module):
    """Predicts ``dl/dh`` per example from an activation ``h`` (and a context, cDNI).

    Args:
        shape_or_features: per-example activation shape, or the feature count of a
            flat activation.
        context_dim: size of the context vector (the number of classes for a one-hot
            label, cDNI); None for unconditioned DNI.
        hidden: hidden units (flat, default 256) or channels (conv, default: the
            activation's channels) of the inner layers.
        layers: number of hidden layers; 0 (default) makes the predictor linear
            (affine), which Czarnecki et al. found sufficient and trains most reliably.
        conv: use same-padded convolutions over ``shape[1:]`` (default: True when the
            activation has spatial dimensions).

    Example:
        >>> import torch
        >>> sg = SyntheticGradient(4, hidden=8, layers=1)
        >>> h, target = torch.randn(3, 4), torch.randn(3, 4)
        >>> round(sg.regression_loss(h, target).item(), 4) == round((target ** 2).mean().item(), 4)
        True
    """

    def __init__(
        self, shape_or_features: int | Sequence[int], context_dim: int | None = None,
        hidden: int | None = None, layers: int = 0, conv: bool | None = None,
    ) -> None:
        super().__init__()
        self.shape = activation_shape(shape_or_features)
        if context_dim is not None:
            _check_positive("context_dim", context_dim)
        self.conv = len(self.shape) > 1 if conv is None else bool(conv)
        if hidden is None:
            hidden = self.shape[0] if self.conv else 256
        _check_positive("hidden", hidden)
        _check_positive("layers", layers, allow_zero=True)
        self.context_dim = context_dim
        if self.conv and not 2 <= len(self.shape) <= 4:
            raise ValueError(
                f"conv=True needs a (channels, *spatial) shape with 1-3 spatial dims, "
                f"got {self.shape}; pass conv=False to flatten")
        extra = context_dim or 0
        if self.conv:
            conv_cls = _CONV[len(self.shape) - 1]
            width_in, width_out = self.shape[0] + extra, self.shape[0]
            make = lambda i, o: conv_cls(i, o, 3, padding=1)  # noqa: E731
        else:
            features = 1
            for s in self.shape:
                features *= s
            width_in, width_out = features + extra, features
            make = nn.Linear
        modules: list[nn.Module] = []
        for _ in range(layers):
            modules += [make(width_in, hidden), nn.ReLU()]
            width_in = hidden
        last = make(width_in, width_out)
        nn.init.zeros_(last.weight)  # the paper's zero-initialised output layer
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*modules, last)

    def forward(self, h: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted per-example gradient, shaped like ``h``."""
        if tuple(h.shape[1:]) != self.shape:
            raise ValueError(
                f"activation shape {tuple(h.shape[1:])} does not match the synthesizer's "
                f"{self.shape}")
        if (context is None) != (self.context_dim is None):
            raise ValueError(
                "context must be given exactly when context_dim is set "
                f"(context_dim={self.context_dim}, context given: {context is not None})")
        z = h if self.conv else h.reshape(len(h), -1)
        if context is not None:
            context = context.to(z.dtype)
            if self.conv:
                context = context.view(*context.shape, *([1] * (h.ndim - 2)))
                context = context.expand(-1, -1, *h.shape[2:])
            z = torch.cat([z, context], dim=1)
        return self.net(z).view_as(h)  # Eq. (1): g_hat = M(h, c)

    def regression_loss(
        self, h: torch.Tensor, target: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean squared error to the gradient that arrived from above."""
        return (self(h, context) - target).pow(2).mean()  # Eq. (2): ||g_hat - g||^2


class AuxiliaryHead(nn.Module):
    """A small local classifier on an activation (Decoupled Greedy Learning).

    Flat activations: ``Linear(features, hidden) → ReLU → Linear(hidden, classes)``
    (``hidden=0``: a single linear layer). Spatial activations are first average-pooled
    to 2 per spatial dimension, then flattened, as in Belilovsky et al.

    Example:
        >>> import torch
        >>> AuxiliaryHead((8, 10), 5)(torch.randn(3, 8, 10)).shape
        torch.Size([3, 5])
    """

    def __init__(
        self, shape_or_features: int | Sequence[int], num_classes: int, hidden: int = 128
    ) -> None:
        super().__init__()
        self.shape = activation_shape(shape_or_features)
        _check_positive("num_classes", num_classes)
        _check_positive("hidden", hidden, allow_zero=True)
        modules: list[nn.Module] = []
        if len(self.shape) > 1:
            pool = {2: nn.AdaptiveAvgPool1d, 3: nn.AdaptiveAvgPool2d, 4: nn.AdaptiveAvgPool3d}
            if len(self.shape) not in pool:
                raise ValueError(f"spatial activations need 1-3 spatial dims, got {self.shape}")
            size = 2 ** (len(self.shape) - 1)
            modules += [pool[len(self.shape)](2), nn.Flatten()]
            features = self.shape[0] * size
        else:
            modules.append(nn.Flatten())
            features = self.shape[0]
        if hidden:
            modules += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        modules.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*modules)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class TruncatedDNI:
    """Truncated BPTT of a recurrent core with a synthetic gradient at every boundary.

    The sequence is cut into chunks of ``truncation`` steps. Inside a chunk the core
    trains by ordinary backprop; at the chunk's last state ``s_T`` the synthetic
    gradient ``M(s_T)`` stands in for the gradient of all future losses (the paper's
    Sec. 3.1), and ``M`` regresses onto the gradient that reaches the *previous* chunk
    boundary ``s_0``: ``dL_chunk/ds_0 + (ds_T/ds_0)^T M(s_T)`` (bootstrapped).
    ``synthesizer=None`` is plain truncated BPTT.

    Args:
        core: ``core(x_t, s) -> s'`` (e.g. an ``nn.GRUCell``).
        readout: ``readout(s) -> prediction`` at every step.
        loss: ``loss(prediction, target) -> scalar`` (mean over the batch).
        synthesizer: a :class:`SyntheticGradient` over the state, or None.
        optimizer: factory from a parameter list to a ``torch.optim`` optimizer.
        truncation: chunk length in steps.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> core, out = nn.GRUCell(1, 8), nn.Linear(8, 1)
        >>> dni = TruncatedDNI(core, out, nn.functional.mse_loss, SyntheticGradient(8),
        ...                    truncation=3)
        >>> x = torch.randn(4, 9, 1)
        >>> round(dni.train_sequence(x, x, torch.zeros(4, 8)), 1) >= 0
        True
    """

    def __init__(
        self, core: nn.Module, readout: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        synthesizer: SyntheticGradient | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        truncation: int = 5,
    ) -> None:
        _check_positive("truncation", truncation)
        optimizer = optimizer or (lambda params: torch.optim.Adam(params, 1e-3))
        self.core, self.readout, self.loss = core, readout, loss
        self.synthesizer, self.truncation = synthesizer, truncation
        self.optimizer = optimizer(list(core.parameters()) + list(readout.parameters()))
        self.synth_optimizer = optimizer(list(synthesizer.parameters())) if synthesizer else None

    def train_sequence(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: torch.Tensor
    ) -> float:
        """One pass over ``(batch, time, ...)`` inputs and targets; returns the mean loss.

        Runs on the device of the core's parameters; the tensors are moved there."""
        inputs, targets, state = to_device((inputs, targets, state), device_of(self.core))
        if inputs.shape[:2] != targets.shape[:2]:
            raise ValueError(
                f"inputs and targets must share (batch, time), got {tuple(inputs.shape[:2])} "
                f"and {tuple(targets.shape[:2])}")
        batch, steps = inputs.shape[:2]
        total = torch.zeros((), dtype=torch.float64, device=inputs.device)  # one sync, at the end
        previous: torch.Tensor | None = None  # the state at the last boundary, detached
        for start in range(0, steps, self.truncation):
            s0 = state.detach().requires_grad_(self.synthesizer is not None)
            s = s0
            chunk_loss = torch.zeros((), device=inputs.device)
            stop = min(start + self.truncation, steps)
            for t in range(start, stop):
                s = self.core(inputs[:, t], s)
                chunk_loss = chunk_loss + self.loss(self.readout(s), targets[:, t])
            objective = chunk_loss / steps
            if self.synthesizer is not None and stop < steps:
                future = self.synthesizer(s.detach()).detach() / (batch * steps)
                objective = objective + (s * future).sum()  # bootstrap the future loss
            self.optimizer.zero_grad()
            objective.backward()
            self.optimizer.step()
            if self.synthesizer is not None and previous is not None:
                target = s0.grad * (batch * steps)  # per-example gradient at the boundary
                self.synth_optimizer.zero_grad()
                self.synthesizer.regression_loss(previous, target).backward()
                self.synth_optimizer.step()
            previous = s.detach()
            state = s.detach()
            total = total + chunk_loss.detach().double()
        return float(total) / steps
