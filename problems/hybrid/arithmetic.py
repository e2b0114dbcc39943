"""Digit arithmetic through a hard argmax: learn to read digits from their sums alone.

Two 8x8 digit images (scikit-learn's digits, :func:`nondiff.problems.learning.digits`) pass
through one perception network; each gives a hard digit ``argmax``; the model's answer
is the exact integer sum. Only the sum is labeled (the MNIST-addition task of
DeepProbLog, Manhaeve et al. 2018). The downstream loss of a pair with decoded digits
``a, b`` and labeled sum ``s`` is the error of the exact sum,

    L(a, b, s) = 1[a + b != s]                                                  # Eq. (1)

and nothing differentiable connects it to the perception weights. On one-hot vectors
``u, v`` it reads ``1 - sum_a u_a v_{s-a}``, which relaxed one-hots (straight-through,
Gumbel-softmax) differentiate:

    L(u, v, s) = 1 - sum_{a} u_a v_{s - a}                                      # Eq. (2)

The methods that train the perception from sums alone (REINFORCE, a learned critic,
straight-through, Gumbel-softmax, ES) and compare on this task are the experiment of
``python -m nondiff.benchmarks.hybrid_tasks arithmetic``
(:mod:`nondiff.benchmarks.hybrid_tasks.arithmetic`).

Held-out pairs come from the test split; :meth:`DigitArithmetic.evaluate` reports the
sum accuracy and the accuracy of the digits themselves (labels used only for
evaluation).

Source:
    R. Manhaeve et al., "DeepProbLog: neural probabilistic logic programming",
    NeurIPS 2018 (the addition task).

Example:
    >>> from nondiff.problems.hybrid.arithmetic import DigitArithmetic, perception_net
    >>> task = DigitArithmetic(seed=0)
    >>> xa, xb, s = next(task.batches(4, epoch=0))
    >>> tuple(xa.shape), s.dtype, int(s.max()) <= 18
    ((4, 64), torch.int64, True)
    >>> sorted(task.evaluate(perception_net()))
    ['digit_accuracy', 'sum_accuracy']
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from nondiff.hybrid.devices import device_of, to_device
from nondiff.problems.learning import digits
from torch import nn

__all__ = ["DigitArithmetic", "pair_loss", "perception_net", "relaxed_pair_loss"]


def perception_net(hidden: int = 128) -> nn.Module:
    """The perception network: an MLP from the 64 pixels to 10 digit logits."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def pair_loss(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (1) per pair of integer digits (float 0/1)."""
    return (a + b != s).float()


def relaxed_pair_loss(u: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. (2) per pair of (relaxed) one-hots ``(k, 10)``."""
    partner = s[:, None] - torch.arange(10, device=s.device)[None]  # b = s - a for each a
    valid = (partner >= 0) & (partner <= 9)
    return 1 - (u * v.gather(1, partner.clamp(0, 9)) * valid).sum(1)


class DigitArithmetic:
    """Pairs of digit images labeled with their sum; fixed held-out pairs.

    Args:
        seed: seeds the train/test split and the pairing.
        test_pairs: number of held-out pairs (from test images only).
        device: where the images live (put them on the model's device); pairs are
            drawn on the CPU, the same on every device.
    """

    def __init__(self, seed: int = 0, test_pairs: int = 2000, *,
                 device: torch.device | str = "cpu") -> None:
        self.seed = int(seed)
        self.data = digits(seed=seed, device=device)
        g = torch.Generator().manual_seed(self.seed + 7)
        n = len(self.data.y_test)
        self.test_index = torch.randint(0, n, (2, test_pairs), generator=g).to(device)

    def batches(self, batch_size: int, epoch: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(xa, xb, sum)`` batches: each training image appears twice per epoch."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n = len(self.data.y_train)
        first, second = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
        x, y = self.data.x_train, self.data.y_train
        first, second = first.to(x.device), second.to(x.device)
        for start in range(0, n, batch_size):
            i, j = first[start:start + batch_size], second[start:start + batch_size]
            yield x[i], x[j], y[i] + y[j]

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The held-out ``(xa, xb, sum)``."""
        i, j = self.test_index
        x, y = self.data.x_test, self.data.y_test
        return x[i], x[j], y[i] + y[j]

    @torch.no_grad()
    def evaluate(self, net: nn.Module) -> dict[str, float]:
        """Sum accuracy on held-out pairs and digit accuracy on the test images, on the
        device of ``net``'s parameters."""
        device = device_of(net)
        xa, xb, s = to_device(self.test_set(), device)
        a, b = net(xa).argmax(1), net(xb).argmax(1)
        x_test, y_test = to_device((self.data.x_test, self.data.y_test), device)
        digit = (net(x_test).argmax(1) == y_test).float().mean()
        return {"sum_accuracy": float(((a + b) == s).float().mean()),
                "digit_accuracy": float(digit)}
