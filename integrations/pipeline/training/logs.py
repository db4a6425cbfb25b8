"""The training logs: train_log.csv, and TensorBoard's when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
    """Append rows to a CSV file (the run's train_log.csv) with the columns below; ``enabled``
    False (processes other than the main one) writes nothing."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.fields = ["step", "epoch", "loss", "kl", "beta", "lr", "images_per_s", "peak_memory_gib", "val_loss",
                       "prior_fit_epoch", "prior_kl", "val_prior_kl"]

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow(row)


def tensorboard_writer(out: Path, enabled: bool) -> Any:
    """A TensorBoard ``SummaryWriter`` logging to ``out/tensorboard`` when ``enabled`` and
    TensorBoard is installed, else None."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))
