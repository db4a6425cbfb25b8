"""The 95% bootstrap interval of a mean over test images (metrics.json's ``ci95``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uncertainty_adapters.integrations.pipeline.evaluation.bootstrap import bootstrap_interval


def test_interval_holds_the_mean():
    values = torch.rand(50, generator=torch.Generator().manual_seed(0))
    lo, hi = bootstrap_interval(values)
    assert lo < float(values.mean()) < hi


def test_interval_is_the_percentiles_of_the_resampled_means():
    values = np.random.default_rng(1).random(20)
    rng = np.random.default_rng(7)
    means = values[rng.integers(0, 20, size=(1000, 20))].mean(axis=1)
    expected = np.percentile(means, [2.5, 97.5])
    assert bootstrap_interval(values.tolist(), seed=7) == pytest.approx(list(expected))


def test_same_seed_gives_the_same_interval_and_another_seed_another():
    values = torch.rand(30, generator=torch.Generator().manual_seed(2))
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    assert bootstrap_interval(values, seed=3) != bootstrap_interval(values, seed=4)


def test_interval_of_equal_values_is_that_value():
    assert bootstrap_interval([0.25] * 10) == [0.25, 0.25]


def test_nan_values_are_left_out():
    assert bootstrap_interval([0.5, math.nan, 0.5]) == [0.5, 0.5]


def test_no_defined_value_gives_none():
    assert bootstrap_interval([math.nan, math.nan]) is None


def test_interval_narrows_with_more_images():
    rng = np.random.default_rng(5)
    small, large = rng.random(20), rng.random(2000)
    width = lambda v: np.diff(bootstrap_interval(v.tolist()))[0]  # noqa: E731
    assert width(large) < width(small) / 3


def test_zero_resamples_are_refused():
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        bootstrap_interval([1.0], resamples=0)
