"""A counter of the ways a tensor's value reaches Python, for tests that check a loop
runs without a host read (a device sync on a GPU) per step."""

from __future__ import annotations

import torch

READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


def count_host_reads(monkeypatch, also: tuple[str, ...] = ()) -> list[int]:
    """Patch ``torch.Tensor`` so every call of :data:`READS` (and of ``also``, e.g.
    ``nonzero``, whose result's shape depends on values) adds one to the returned
    one-element list."""
    reads = [0]
    for name in (*READS, *also):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return reads
