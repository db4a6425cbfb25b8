"""Mean and spread over seeds, and the Markdown tables."""

from __future__ import annotations

import pytest

from uncertainty_adapters.integrations.pipeline.tables import markdown_table, mean_and_std, summarize


def record(seed: int, dice: float, ged: float) -> dict:
    return {"seed": seed, "dice": dice, "ged": ged, "hm_iou": 0.5, "diversity": 0.1,
            "trainable_parameters": 50_100, "train_seconds": 12.0}


def test_spread_is_the_sample_standard_deviation():
    assert mean_and_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_and_std([4.0]) == (4.0, 0.0)


def test_summary_covers_every_seed_and_number():
    summary = summarize([record(0, 0.8, 0.3), record(1, 0.6, 0.5)])
    assert summary["seeds"] == [0, 1]
    assert summary["mean"]["dice"] == pytest.approx(0.7) and summary["std"]["ged"] == pytest.approx(0.1414, abs=1e-4)


def test_the_best_mean_is_bold_lower_for_ged_and_higher_for_dice():
    text = markdown_table("T", [
        ("a", summarize([record(0, 0.8, 0.5)]), None),
        ("b", summarize([record(0, 0.6, 0.3)]), (0.9, 0.8)),
    ])
    line_a = next(line for line in text.splitlines() if line.startswith("| a |"))
    line_b = next(line for line in text.splitlines() if line.startswith("| b |"))
    assert "**0.800 ± 0.000**" in line_a and "**0.300 ± 0.000**" in line_b
    assert "50.1 k" in line_a and "0.900 / 0.800" in line_b


def test_a_row_without_results_says_so():
    text = markdown_table("T", [("a", summarize([]), None)])
    assert "not run yet" in text
