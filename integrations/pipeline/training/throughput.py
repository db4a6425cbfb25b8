"""Training throughput and peak accelerator memory, as the training log and run.json report them.

Only the training loop is timed: validation and checkpoint writing run inside ``paused()``.
Rates are read at log steps, which already wait for the device (the loss is fetched), so the
wall-clock time between two reads covers the GPU work queued in between.

    meter = Throughput(accelerator.device, processes=accelerator.num_processes)
    meter.add(batch["image"].shape[0])      # after each batch: images on this process
    meter.window()   # {"images_per_s": ..., "peak_memory_gib": ...} since the previous window
    meter.summary()  # the same over the whole run, plus "images" and "seconds"
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch


class Throughput:
    """Images per second of the training loop (all processes together) and peak memory."""

    def __init__(self, device: torch.device, processes: int = 1) -> None:
        self.device, self.processes = device, processes
        self.images = self.window_images = 0
        self.started = self.window_started = time.perf_counter()
        self.excluded = self.window_excluded = 0.0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def add(self, images: int) -> None:
        """Count ``images`` trained on this process (every process trains as many)."""
        self.images += images * self.processes
        self.window_images += images * self.processes

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time spent inside (validation, checkpoints) out of the rates."""
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            self.excluded += spent
            self.window_excluded += spent

    def peak_memory_gib(self) -> float | None:
        """The most memory PyTorch held on the device so far (GiB); None off CUDA."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**30

    def window(self) -> dict[str, Any]:
        """Rate since the previous call (or the start), then start a new window."""
        now = time.perf_counter()
        rate = _rate(self.window_images, now - self.window_started - self.window_excluded)
        self.window_images, self.window_started, self.window_excluded = 0, now, 0.0
        return {"images_per_s": rate, "peak_memory_gib": _round(self.peak_memory_gib())}

    def summary(self) -> dict[str, Any]:
        """Images, training seconds, images per second and peak memory of the whole run."""
        seconds = time.perf_counter() - self.started - self.excluded
        return {"images": self.images, "seconds": round(seconds, 4),
                "images_per_s": _rate(self.images, seconds), "peak_memory_gib": _round(self.peak_memory_gib())}


def _rate(images: int, seconds: float) -> float | None:
    return round(images / seconds, 3) if images and seconds > 0 else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
