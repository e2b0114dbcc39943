"""A counter of the ways a tensor's value reaches Python, for tests that check a loop
runs without a host read (a device sync on a GPU) per step."""

from __future__ import annotations

import torch

READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy", "equal")
FUNCTIONS = ("equal",)  # torch.equal(a, b): a Python bool of the compared values


def count_host_reads(monkeypatch, also: tuple[str, ...] = ()) -> list[int]:
    """Patch ``torch.Tensor`` so every call of :data:`READS` (and of ``also``, e.g.
    ``nonzero``, whose result's shape depends on values), and the torch functions of
    :data:`FUNCTIONS`, adds one to the returned one-element list."""
    reads = [0]

    def counter(original):
        def counted(*args, **kwargs):
            reads[0] += 1
            return original(*args, **kwargs)

        return counted

    for name in (*READS, *also):
        monkeypatch.setattr(torch.Tensor, name, counter(getattr(torch.Tensor, name)))
    for name in FUNCTIONS:
        monkeypatch.setattr(torch, name, counter(getattr(torch, name)))
    return reads
