"""Timing on a shared machine: interleaved rounds, medians, ratios, and what the machine was.

A ratio of two timings taken minutes apart on a busy machine measures the load, not the code.
`interleaved` runs the cases of a comparison one after another in every round (in alternating
order, so a drift in load hits both sides alike), and ratios are taken of the medians.
On a CPU both the wall time and the thread's CPU time are kept: with one torch thread, the CPU
time leaves out the time the process waited for a core, the main noise on a loaded machine.
"""

from __future__ import annotations

import datetime
import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch


@dataclass
class Timings:
    """Seconds per call of each case, round by round: ``wall[name]``, ``cpu[name]``."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str, clock: str = "wall") -> float:
        return statistics.median(getattr(self, clock)[name])

    def ratio(self, numerator: str, denominator: str, clock: str = "wall") -> float:
        """median(numerator) / median(denominator)."""
        return self.median(numerator, clock) / self.median(denominator, clock)


def interleaved(cases: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1) -> Timings:
    """Time every case once per round, the order reversed every other round.

    Args:
        cases: name -> zero-argument callable (that finishes its device work before returning).
        rounds: measured rounds. warmup: unmeasured rounds first.
    """
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    timings = Timings({n: [] for n in names}, {n: [] for n in names})
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            start_wall, start_cpu = time.perf_counter(), time.thread_time()
            cases[name]()
            timings.cpu[name].append(time.thread_time() - start_cpu)
            timings.wall[name].append(time.perf_counter() - start_wall)
    return timings


def machine() -> dict[str, object]:
    """What the numbers were measured on, and how busy it was."""
    info: dict[str, object] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Budget:
    """Seconds left for a benchmark run; each item asks before it starts."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def budget_lines(results: Mapping[str, object]) -> list[str]:
    """The summary lines a budgeted benchmark ends with: what the `Budget` skipped
    (``results["skipped"]``) and what failed (``results["errors"]``, name -> message)."""
    lines = [f"skipped (time budget): {', '.join(results['skipped'])}"] if results.get("skipped") else []
    return lines + [f"FAILED {name}: {error}" for name, error in (results.get("errors") or {}).items()]


def release_device_memory(device: torch.device) -> None:
    """Give the memory of the last trial back to the CUDA allocator (nothing to do on a CPU)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
