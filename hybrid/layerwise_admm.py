"""Gradient-free training of a ReLU MLP by layer-wise ADMM (Taylor et al. 2016).

The net ``z_l = W_l a_{l-1} + b_l``, ``a_l = relu(z_l)``, ``z_L`` the scores, is
trained as the constrained problem ``min loss(z_L, y)`` with the activations
``a_l`` and pre-activations ``z_l`` as variables, the equalities relaxed to
penalties ``gamma ||a_l - h(z_l)||^2 + beta ||z_l - W_l a_{l-1}||^2`` and a Lagrange
multiplier ``lam`` on the output layer only. Each iteration, for l = 1..L-1:

    W_l <- z_l a_{l-1}^+          (least squares, bias as a column of ones)    # Eq. (1)
    a_l <- (beta W'^T W' + gamma I)^-1 (beta W'^T (z_{l+1} - b') + gamma h(z_l))  # Eq. (2)
    z_l <- argmin_z gamma (a_l - h(z))^2 + beta (z - W_l a_{l-1})^2  (per entry)  # Eq. (3)

with ``W', b'`` the next layer's weights and bias; then for the output layer

    W_L <- z_L a_{L-1}^+
    z_L <- argmin_z loss(z, y) + lam z + beta (z - W_L a_{L-1})^2  (per entry)  # Eq. (4)
    lam <- lam + beta (z_L - W_L a_{L-1})                                      # Eq. (5)

Every update is closed form: no gradient is ever computed. ``loss`` is the
one-vs-all hinge ``max(0, 1 - y z)`` with ``y in {-1, +1}`` (Taylor et al. use the
binary hinge) or the squared error ``(z - y)^2``. The first ``warm_start`` iterations
skip Eq. (5), as in the paper.

Source:
    G. Taylor, R. Burmeister, Z. Xu, B. Singh, A. Patel, T. Goldstein, "Training
    Neural Networks Without Gradients: A Scalable ADMM Approach", ICML 2016.

Example:
    >>> import torch
    >>> from nondiff.hybrid.layerwise_admm import LayerwiseADMM
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(400, 5, generator=g)
    >>> y = (x[:, 0] * x[:, 1] > 0).long()  # XOR-like: not linearly separable
    >>> net = LayerwiseADMM([5, 64, 2], loss="square", seed=0).fit(x, y, iterations=30)
    >>> bool((net.predict(x) == y).float().mean() > 0.8)
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from nondiff.optim.checks import check_int, check_positive, check_real

__all__ = ["LayerwiseADMM"]

STATE_VERSION = 1


def _relu_z_update(a: torch.Tensor, m: torch.Tensor, gamma: float, beta: float) -> torch.Tensor:
    """Per entry ``argmin_z gamma (a - relu(z))^2 + beta (z - m)^2`` (Eq. 3)."""
    z_pos = ((gamma * a + beta * m) / (gamma + beta)).clamp(min=0.0)
    z_neg = m.clamp(max=0.0)
    f_pos = gamma * (a - z_pos) ** 2 + beta * (z_pos - m) ** 2
    f_neg = gamma * a**2 + beta * (z_neg - m) ** 2
    return torch.where(f_pos <= f_neg, z_pos, z_neg)


def _hinge_z_update(y: torch.Tensor, lam: torch.Tensor, m: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """Per entry ``argmin_z max(0, 1 - y z) + lam z + beta (z - m)^2``, y = ±1 (Eq. 4):
    the best of the stationary points of the two pieces (where valid) and the kink."""
    def phi(z: torch.Tensor) -> torch.Tensor:
        return (1 - y * z).clamp(min=0.0) + lam * z + beta * (z - m) ** 2

    z_a = m + (y - lam) / (2 * beta)  # piece 1 - y z > 0
    z_b = m - lam / (2 * beta)  # piece y z >= 1
    c_a = torch.where(y * z_a < 1, z_a, y)
    c_b = torch.where(y * z_b >= 1, z_b, y)
    return torch.where(phi(c_a) <= phi(c_b), c_a, c_b)


class LayerwiseADMM:
    """A ReLU MLP trained by layer-wise ADMM; see the module docstring.

    Args:
        sizes: layer widths ``[inputs, hidden..., outputs]`` (at least one hidden).
        beta, gamma: penalty weights of the linear and activation constraints
            (Taylor et al. use beta = 1, gamma = 10).
        loss: ``"hinge"`` (one-vs-all) or ``"square"``.
        warm_start: iterations without the multiplier update.
        ridge: Tikhonov term added to ``a a^T`` in the least squares of Eq. (1).
        seed: seed of the initial weights.
    """

    def __init__(self, sizes: Sequence[int], beta: float = 1.0, gamma: float = 10.0,
                 loss: str = "hinge", warm_start: int = 5, ridge: float = 1e-4,
                 seed: int = 0) -> None:
        sizes = [check_int("layer size", s, 1) for s in sizes]
        if len(sizes) < 3:
            raise ValueError(f"sizes needs inputs, >= 1 hidden layer and outputs, got {sizes}")
        if loss not in ("hinge", "square"):
            raise ValueError(f"loss must be 'hinge' or 'square', got {loss!r}")
        self.sizes, self.loss = sizes, loss
        self.beta, self.gamma = check_positive("beta", beta), check_positive("gamma", gamma)
        self.warm_start = check_int("warm_start", warm_start, 0)
        self.ridge = check_real("ridge", ridge, low=0.0)
        self.seed = check_int("seed", seed, 0)
        g = torch.Generator().manual_seed(self.seed)
        self.weights = [torch.randn(n_out, n_in + 1, generator=g, dtype=torch.float64)
                        / math.sqrt(n_in) for n_in, n_out in itertools.pairwise(sizes)]
        for w in self.weights:
            w[:, -1] = 0.0
        self.iterations = 0
        self.a: list[torch.Tensor] = []
        self.z: list[torch.Tensor] = []
        self.lam: torch.Tensor | None = None

    # ----- the network ---------------------------------------------------------------
    @staticmethod
    def _ones(a: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, torch.ones(1, a.shape[1], dtype=a.dtype)], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``(n, outputs)`` of inputs ``(n, inputs)``."""
        a = torch.as_tensor(x, dtype=torch.float64).T
        for i, w in enumerate(self.weights):
            a = w @ self._ones(a)
            if i < len(self.weights) - 1:
                a = a.clamp(min=0.0)
        return a.T

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class labels (argmax of the scores)."""
        return self.forward(x).argmax(dim=1)

    # ----- training ---------------------------------------------------------------------
    def _targets(self, y: torch.Tensor) -> torch.Tensor:
        y = torch.as_tensor(y)
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise ValueError(f"y must be a 1-D tensor of integer labels, got {y.dtype} {y.shape}")
        if int(y.min()) < 0 or int(y.max()) >= self.sizes[-1]:
            raise ValueError(f"labels must lie in [0, {self.sizes[-1]}), got "
                             f"[{int(y.min())}, {int(y.max())}]")
        t = -torch.ones(self.sizes[-1], y.numel(), dtype=torch.float64)
        t[y.long(), torch.arange(y.numel())] = 1.0
        return t if self.loss == "hinge" else (t + 1) / 2

    def init(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set the data and start activations from a forward pass of the initial weights."""
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"x must have shape (n, {self.sizes[0]}), got {tuple(x.shape)}")
        self._y = self._targets(y)
        if self._y.shape[1] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y {self._y.shape[1]} labels")
        self.a, self.z = [x.T.contiguous()], []
        a = self.a[0]
        for i, w in enumerate(self.weights):
            z = w @ self._ones(a)
            self.z.append(z)
            if i < len(self.weights) - 1:
                a = z.clamp(min=0.0)
                self.a.append(a)
        self.lam = torch.zeros_like(self.z[-1])
        self.iterations = 0

    def _least_squares(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``W = z a1^T (a1 a1^T + ridge I)^-1`` with a1 = [a; 1] (Eq. 1)."""
        a1 = self._ones(a)
        gram = a1 @ a1.T + self.ridge * torch.eye(a1.shape[0], dtype=a1.dtype)
        return torch.linalg.solve(gram, a1 @ z.T).T

    def step(self) -> dict[str, float]:
        """One ADMM sweep over the layers (Eqs. 1-5); returns the output-layer residual."""
        if self.lam is None:
            raise ValueError("call init(x, y) (or fit) before step()")
        beta, gamma, n_layers = self.beta, self.gamma, len(self.weights)
        for i in range(n_layers - 1):
            self.weights[i] = self._least_squares(self.z[i], self.a[i])  # Eq. (1)
            nxt = self.weights[i + 1]
            w_next, b_next = nxt[:, :-1], nxt[:, -1:]
            lhs = beta * w_next.T @ w_next + gamma * torch.eye(w_next.shape[1],
                                                                dtype=torch.float64)
            rhs = beta * w_next.T @ (self.z[i + 1] - b_next) + gamma * self.z[i].clamp(min=0.0)
            self.a[i + 1] = torch.linalg.solve(lhs, rhs)  # Eq. (2)
            m = self.weights[i] @ self._ones(self.a[i])
            self.z[i] = _relu_z_update(self.a[i + 1], m, gamma, beta)  # Eq. (3)
        self.weights[-1] = self._least_squares(self.z[-1], self.a[-1])
        m = self.weights[-1] @ self._ones(self.a[-1])
        if self.loss == "hinge":  # Eq. (4)
            self.z[-1] = _hinge_z_update(self._y, self.lam, m, beta)
        else:  # argmin (z - y)^2 + lam z + beta (z - m)^2
            self.z[-1] = (2 * self._y - self.lam + 2 * beta * m) / (2 + 2 * beta)
        residual = self.z[-1] - m
        if self.iterations >= self.warm_start:
            self.lam = self.lam + beta * residual  # Eq. (5)
        self.iterations += 1
        return {"iteration": float(self.iterations),
                "residual": float(residual.norm() / math.sqrt(residual.numel()))}

    def fit(self, x: torch.Tensor, y: torch.Tensor, iterations: int = 50,
            callback: Callable[[dict[str, float], LayerwiseADMM], Any] | None = None
            ) -> LayerwiseADMM:
        """``init(x, y)`` then ``iterations`` steps; ``callback(metrics, self)`` after each
        may return True to stop early. Returns self."""
        check_int("iterations", iterations, 1)
        self.init(x, y)
        for _ in range(iterations):
            metrics = self.step()
            if callback is not None and callback(metrics, self):
                break
        return self

    # ----- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Weights, activations, multipliers and the iteration count (plain tensors)."""
        return {"state_version": STATE_VERSION, "sizes": list(self.sizes),
                "iterations": self.iterations,
                "weights": [w.clone() for w in self.weights],
                "a": [a.clone() for a in self.a], "z": [z.clone() for z in self.z],
                "lam": None if self.lam is None else self.lam.clone(),
                "y": None if self.lam is None else self._y.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (same ``sizes``); training continues bit for bit."""
        keys = {"state_version", "sizes", "iterations", "weights", "a", "z", "lam", "y"}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"not a LayerwiseADMM state dict: expected keys {sorted(keys)}")
        if list(state["sizes"]) != self.sizes:
            raise ValueError(f"state dict is for sizes {state['sizes']}, not {self.sizes}")
        self.weights = [w.clone() for w in state["weights"]]
        self.a, self.z = [a.clone() for a in state["a"]], [z.clone() for z in state["z"]]
        self.lam = None if state["lam"] is None else state["lam"].clone()
        if state["y"] is not None:
            self._y = state["y"].clone()
        self.iterations = int(state["iterations"])
