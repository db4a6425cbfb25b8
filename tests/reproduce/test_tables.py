"""Mean and spread over seeds, and the Markdown tables."""

from __future__ import annotations

import pytest

from uncertainty_adapters.integrations.pipeline.reproduce.tables import markdown_table, mean_and_std, summarize


def record(seed: int, dice: float, ged: float, s_ncc: float | None = 0.4) -> dict:
    return {"seed": seed, "dice": dice, "ged": ged, "hm_iou": 0.5, "diversity": 0.1, "s_ncc": s_ncc,
            "soft_dice": 0.7, "ece": 0.05, "trainable_parameters": 50_100, "train_seconds": 12.0,
            "per_image": {"dice": [dice - 0.1, dice + 0.1], "ged": [ged, ged], "s_ncc": [s_ncc, None]}}


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
    assert "**0.800 ± 0.000" in line_a and "**0.300 ± 0.000" in line_b
    assert "50.1 k" in line_a and "0.900 / 0.800" in line_b


def test_a_row_without_results_says_so():
    text = markdown_table("T", [("a", summarize([]), None)])
    assert "not run yet" in text


def test_the_interval_pools_the_test_images_of_every_seed():
    summary = summarize([record(0, 0.8, 0.3), record(1, 0.6, 0.5)])
    lo, hi = summary["ci95"]["dice"]
    assert 0.5 <= lo < summary["mean"]["dice"] < hi <= 0.9
    assert summary["ci95"]["ged"][0] >= 0.3 and summary["ci95"]["ged"][1] <= 0.5


def test_the_interval_is_shown_under_the_mean():
    text = markdown_table("T", [("a", summarize([record(0, 0.8, 0.3)]), None)])
    line = next(line for line in text.splitlines() if line.startswith("| a |"))
    assert "0.300 ± 0.000<br>[0.300, 0.300]" in line


def test_undefined_s_ncc_is_left_out_of_the_mean_and_shown_as_undefined():
    assert summarize([record(0, 0.8, 0.3, None), record(1, 0.8, 0.3, 0.2)])["mean"]["s_ncc"] == pytest.approx(0.2)
    text = markdown_table("T", [("a", summarize([record(0, 0.8, 0.3, None)]), None)])
    assert "undefined" in next(line for line in text.splitlines() if line.startswith("| a |"))


def test_the_headers_name_k_and_n():
    text = markdown_table("T", [("a", summarize([record(0, 0.8, 0.3)]), None)], samples=4, ged_samples=16)
    assert "Dice (K = 4) ↑" in text and "GED (N = 16) ↓" in text


def test_records_without_per_image_values_have_no_interval():
    old = {k: v for k, v in record(0, 0.8, 0.3).items() if k != "per_image"}
    assert summarize([old])["ci95"]["dice"] is None
