"""Timing helpers shared by the speed benchmarks: interleaved repetitions, medians."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


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


def synchronize(device: str | torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing to wait for on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: str | torch.device) -> str:
    """One line naming the machine a benchmark ran on: CPU, cores, torch, the device."""
    line = (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    dev = torch.device(device)
    if dev.type == "cuda":
        line += f", device {dev} = {torch.cuda.get_device_name(dev)}"
    else:
        line += f", device {dev}"
    return line
