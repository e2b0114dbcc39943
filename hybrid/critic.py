"""A learned critic of the downstream loss: synthetic gradients across a hard op.

Where a network's output ``z`` passes through something gradients cannot cross — an
argmax, a sample, a rounding, a symbolic program — the critic ``c_phi(a, context)``
regresses the loss observed downstream of the hard op on the op's input ``a``
(and, as in cDNI, on a context such as the label):

    phi <- phi - lr grad_phi (c_phi(a, context) - L(hard(a), y))^2              # Eq. (1)

Training inputs ``a`` are the hard outputs actually fed forward (e.g. one-hots of
sampled classes: exploration gives the critic the loss of neighbouring decisions).
The network is then trained with the critic's input-gradient at its soft output ``z``
(e.g. the class probabilities) as a synthetic gradient, exactly as a DNI module's
output replaces ``dL/dh`` (Jaderberg et al. 2017):

    dL/dz ~= grad_z c_phi(z, context)                                           # Eq. (2)

For categorical decisions the critic is trained on the one-hot outcomes actually
taken and differentiated through its multilinear extension at the probabilities,

    c(p, context) = sum_a prod_j p_j(a_j) c_phi(onehot(a), context)              # Eq. (3)

whose gradient is the gradient of the expected loss when the critic is exact.

Exploration (:meth:`LossCritic.explore`): the critic only learns the loss of outputs it
sees. Sampled from the current policy ``p``, a policy that has collapsed onto one output
(as an untrained softmax often does, and as any policy does under a sparse 0/1 loss
that rewards nothing yet) shows the critic that output alone: its table is flat
elsewhere and its gradient points nowhere, so the policy never leaves that output.
The default is class-balanced: each row's output is drawn from

    q(a | row) ~ (p(a | row) + eps) / (f(a) + eps),   f(a) = mean_rows p(a | row)     # Eq. (4)

— the policy divided by the batch's marginal frequency of each output (a prior
correction as in logit adjustment, Menon et al. 2021; class-balanced sampling, Kang
et al. 2020). Summed over rows ``p(a | row) / f(a)`` is the batch size for every
``a``, so every output is explored about equally often; where the policy already uses
all outputs equally, ``q = p`` (on-policy). The regression target
``E[loss | a, context]`` does not depend on how ``a`` is drawn, so no importance
weights are needed. ``exploration="policy"`` samples ``p`` itself (the old behaviour).

In the limit of a perfect critic on the simplex this is the gradient of the expected
loss of the relaxed decision, a low-variance but biased estimate (cf. the learned
control variates of REBAR/RELAX, Tucker et al. 2017, Grathwohl et al. 2018, which use
such a critic only as a baseline).

Sources:
    - M. Jaderberg et al., "Decoupled neural interfaces using synthetic gradients",
      ICML 2017 (arXiv:1608.05343).
    - W. Grathwohl, D. Choi, Y. Wu, G. Roeder, D. Duvenaud, "Backpropagation through
      the void: optimizing control variates for black-box gradient estimation",
      ICLR 2018.
    - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021.
    - B. Kang et al., "Decoupling representation and classifier for long-tailed
      recognition", ICLR 2020 (class-balanced sampling).

Example:
    >>> import torch
    >>> from nondiff.hybrid.critic import LossCritic
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> critic = LossCritic(1, hidden=32, lr=1e-2)
    >>> for _ in range(300):  # hard op: round; loss |round(a) - 2|
    ...     a = 4 * torch.rand(64, 1)
    ...     _ = critic.update(a, (a.round() - 2).abs().squeeze(1))
    >>> g = critic.gradient(torch.tensor([[0.4], [3.6]]))
    >>> bool(g[0, 0] < 0 < g[1, 0])  # downhill is towards 2 from either side
    True
    >>> collapsed = torch.tensor([[0.97, 0.01, 0.01, 0.01]]).repeat(400, 1)
    >>> draws = critic.explore(collapsed, generator=torch.Generator().manual_seed(0))
    >>> counts = torch.bincount(draws.flatten(), minlength=4)  # the policy: ~388 zeros
    >>> bool(counts.min() > 60), int(counts.sum())  # balanced: about 100 each
    (True, 400)
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .devices import device_of, draw_on

__all__ = ["EXPLORATIONS", "LossCritic"]

EXPLORATIONS = ("balanced", "policy")


class LossCritic(nn.Module):
    """An MLP ``c(a, context) -> predicted loss`` trained by regression, Eq. (1).

    Args:
        features: width of the hard op's input ``a`` (flattened per example).
        context: width of the optional context (0: none), e.g. a one-hot label.
        hidden: hidden width; layers: number of hidden layers (>= 1).
        lr: Adam step size of the critic's own optimizer.
        exploration: how :meth:`explore` draws the outputs the critic learns from:
            ``"balanced"`` (default, Eq. 4: every output about equally often, so a
            collapsed policy cannot hide the other outputs' losses) or ``"policy"``
            (the current probabilities themselves).

    Runs on the device of its parameters (``critic.to("cuda")`` before the first
    update moves it with its optimizer's parameters); inputs, contexts and losses
    are moved there.
    """

    def __init__(self, features: int, context: int = 0, hidden: int = 64, layers: int = 2,
                 lr: float = 1e-3, exploration: str = "balanced") -> None:
        super().__init__()
        if exploration not in EXPLORATIONS:
            raise ValueError(f"exploration must be one of {EXPLORATIONS}, got {exploration!r}; "
                             "'balanced' explores every output, 'policy' samples the policy")
        for name, value, low in (("features", features, 1), ("context", context, 0),
                                 ("hidden", hidden, 1), ("layers", layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.features, self.context, self.exploration = features, context, exploration
        widths = [features + context] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            mods += [nn.Linear(a, b), nn.SiLU()]  # smooth: its input-gradient is informative
        mods.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*mods)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)

    def _input(self, a: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        a = a.to(device_of(self)).reshape(a.shape[0], -1)
        if a.shape[1] != self.features:
            raise ValueError(f"LossCritic({self.features}) got inputs of {a.shape[1]} features")
        if self.context:
            if context is None or context.shape[0] != a.shape[0]:
                raise ValueError(f"this critic needs a context of {self.context} features "
                                 "per example")
            return torch.cat([a, context.reshape(a.shape[0], -1).to(a.device, a.dtype)], dim=1)
        return a

    def explore(self, probs: torch.Tensor, samples: int = 1,
                generator: torch.Generator | None = None, eps: float = 1e-8) -> torch.Tensor:
        """Outputs to explore: ``samples`` draws per row of ``probs`` ``(batch, k)``.

        Returns indices ``(samples, batch)``, drawn from Eq. (4) (``exploration=
        "balanced"``) or from ``probs`` (``"policy"``). Rows are the decisions of one
        categorical output (stack several of the same size to balance them together).
        """
        if probs.dim() != 2 or probs.shape[0] < 1 or probs.shape[1] < 1:
            raise ValueError(f"probs must be (batch, k) probabilities, got shape "
                             f"{tuple(probs.shape)}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        p = probs.detach().double()
        if not (torch.isfinite(p).all() and (p >= 0).all() and (p.sum(1) > 0).all()):
            raise ValueError("probs must be finite, non-negative, with a positive sum in "
                             "every row; pass softmax probabilities")
        p = p / p.sum(1, keepdim=True)
        if self.exploration == "balanced":
            p = (p + eps) / (p.mean(0, keepdim=True) + eps)  # Eq. (4)
        return draw_on(p.device, generator, lambda d: torch.multinomial(  # a CPU generator
            p.to(d), samples, replacement=True, generator=generator)).T  # for CUDA probs

    def forward(self, a: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted loss per example, ``(batch,)``."""
        return self.net(self._input(a, context)).squeeze(1)

    def update(self, a: torch.Tensor, loss: torch.Tensor,
               context: torch.Tensor | None = None) -> float:
        """One regression step towards the observed per-example ``loss``, Eq. (1)."""
        prediction = self(a.detach(), None if context is None else context.detach())
        error = (prediction - loss.detach().to(prediction.device, prediction.dtype)
                 ).square().mean()
        self.optimizer.zero_grad()
        error.backward()
        self.optimizer.step()
        return float(error.detach())

    def gradient(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``grad_z c(z, context)`` per example, shaped like ``z``: Eq. (2)."""
        z_in = z.detach().requires_grad_(True)
        with torch.enable_grad():
            predicted = self(z_in, None if context is None else context.detach()).sum()
            (grad,) = torch.autograd.grad(predicted, z_in)
        return grad

    def expected(self, probs: list[torch.Tensor], context: torch.Tensor | None = None,
                 max_outcomes: int = 4096) -> torch.Tensor:
        """The critic's expectation over independent categorical decisions, Eq. (3).

        ``probs`` are ``(batch, k_j)`` distributions whose one-hot outcomes, side by
        side, form the critic's input. The multilinear extension
        ``E_{a ~ p}[c(onehot(a), context)]`` is differentiable in ``probs``; its
        input-gradient is the synthetic gradient (exact for a perfect critic:
        the gradient of the expected downstream loss). Enumerates all
        ``prod_j k_j`` outcomes (at most ``max_outcomes``).
        """
        sizes = [p.shape[1] for p in probs]
        if sum(sizes) != self.features:
            raise ValueError(f"the blocks have {sum(sizes)} features, the critic {self.features}")
        outcomes = math.prod(sizes)
        if outcomes > max_outcomes:
            raise ValueError(f"{outcomes} joint outcomes exceed max_outcomes={max_outcomes}; "
                             "use gradient() at sampled points instead")
        batch, device = probs[0].shape[0], probs[0].device
        grids = torch.cartesian_prod(*[torch.arange(k, device=device)
                                       for k in sizes]).reshape(outcomes, -1)
        hot = torch.cat([nn.functional.one_hot(grids[:, j], k).to(probs[0].dtype)
                         for j, k in enumerate(sizes)], dim=1)  # (outcomes, features)
        weight = torch.ones(batch, outcomes, dtype=probs[0].dtype, device=device)
        for j, p in enumerate(probs):
            weight = weight * p[:, grids[:, j]]  # Eq. (3): prod_j p_j(a_j)
        with torch.no_grad():
            if context is None:
                values = self(hot).expand(batch, outcomes)
            else:  # the critic's table over outcomes, once per distinct context
                flat = context.reshape(batch, -1)
                unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
                table = self(hot.repeat(len(unique), 1),
                             unique.repeat_interleave(outcomes, 0)).reshape(-1, outcomes)
                values = table[inverse]
        return (weight * values).sum(1)

    def backward(self, z: torch.Tensor, context: torch.Tensor | None = None,
                 scale: float | None = None) -> torch.Tensor:
        """Send the synthetic gradient into ``z``'s graph: ``z.backward(g * scale)``.

        ``scale`` defaults to ``1 / batch`` (the gradient of a batch-mean loss).
        Returns the predicted loss per example (detached).
        """
        grad = self.gradient(z, context)
        z.backward(grad * (1.0 / z.shape[0] if scale is None else scale))
        with torch.no_grad():
            return self(z.detach(), context)
