"""95% bootstrap intervals of a mean over test images (the ``ci95`` of metrics.json).

The test images are resampled with replacement (``resamples`` times, numpy's default generator
seeded with ``seed``), the metric's mean is taken on every resample, and the interval is the
2.5th and 97.5th percentiles of those means (the percentile bootstrap). Images where a metric is
undefined (NaN, e.g. S_NCC of identical samples) are left out before resampling.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_interval(
    values: torch.Tensor | Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> list[float] | None:
    """[lo, hi] of the percentile bootstrap of the mean of ``values``.

    Args:
        values: one value per test image; NaN entries are dropped first.
        resamples: number of resamples with replacement.
        seed: seeds the resampling (the same seed gives the same interval).
        confidence: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).

    Returns:
        [lo, hi] as floats (lo == hi for a single value), or None when no value is defined.
    """
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    data = np.asarray(torch.as_tensor(values, dtype=torch.float64).flatten().cpu(), dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)] if math.isfinite(lo) and math.isfinite(hi) else None
