"""Timing helpers shared by the speed benchmarks: interleaved repetitions, medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def seconds_per_call(step: Callable[[], object], calls: int) -> float:
    """Wall time of ``calls`` consecutive calls of ``step``, divided by ``calls``."""
    began = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - began) / calls


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median over ``repeats`` of each run, alternating runs so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, measure in runs.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}
