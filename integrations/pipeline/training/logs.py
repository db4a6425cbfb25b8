"""The training logs: train_log.csv, and TensorBoard's when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

#: train_log.csv's columns. ``val_rater_spread``: the raters' posterior means on the validation
#: part, in prior sigmas (`loop.Validation`); 0 while the latent has not taken hold.
FIELDS = ("step", "epoch", "loss", "kl", "beta", "lr", "images_per_s", "peak_memory_gib", "val_loss",
          "val_rater_spread", "prior_fit_epoch", "prior_kl", "val_prior_kl", "mixture_fit_epoch", "mixture_nll",
          "val_mixture_nll")


class CsvLog:
    """Append rows to a CSV file (the run's train_log.csv) with the columns `FIELDS`; ``enabled``
    False (processes other than the main one) writes nothing. A run resumed from a log written
    with other columns goes on with that file's columns (values for columns it lacks are left
    out), so every row stays under its header."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled
        self.fields = list(FIELDS)
        if path.exists():
            with open(path, newline="") as handle:
                header = next(csv.reader(handle), None)
            if header:
                self.fields = header

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
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
