"""Evaluation against raters on a fixture whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate, format_table
from uncertainty_adapters.integrations.sam import UncertaintySamOutput


def _square(top, left, size, side=8):
    mask = torch.zeros(side, side)
    mask[top : top + size, left : left + size] = 1
    return mask


RATERS = torch.stack([_square(1, 1, 4), _square(1, 1, 5), _square(2, 2, 3)])  # (3, 8, 8)


class ReplaysTheRaters(nn.Module):
    """A stand-in model whose sample k is rater k mod 3 (so 3 samples are exactly the raters)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, images, prompts, masks=None, num_samples=1, generator=None):
        self.calls.append((images.shape[0], num_samples))
        order = [k % 3 for k in range(num_samples)]
        logits = (RATERS[order] * 20 - 10).expand(images.shape[0], -1, -1, -1)
        return UncertaintySamOutput(logits, None, None)


def _dataset(n=4):
    majority = (RATERS.sum(0, keepdim=True) >= 2).float()
    return [
        {"image": torch.rand(3, 8, 8), "masks": RATERS, "mask": RATERS[:1], "majority": majority, "case_id": f"c{i}"}
        for i in range(n)
    ]


def test_samples_equal_to_the_raters_score_perfectly():
    result = evaluate(ReplaysTheRaters(), _dataset(), num_samples=3, batch_size=2, ged_samples=3)
    summary = result.summary()
    assert summary["dice"] == pytest.approx(1.0)
    assert summary["ged"] == pytest.approx(0.0, abs=1e-6)
    assert summary["hm_iou"] == pytest.approx(1.0)
    assert summary["samples"] == 3 and summary["num_images"] == 4


def test_diversity_is_the_mean_pairwise_distance_of_the_raters():
    iou = lambda a, b: float((a * b).sum() / ((a + b) > 0).sum())  # noqa: E731
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(1 - iou(RATERS[i], RATERS[j]) for i, j in pairs) / 3
    result = evaluate(ReplaysTheRaters(), _dataset(1), num_samples=3, ged_samples=3)
    assert result.summary()["diversity"] == pytest.approx(expected)


def test_summary_has_the_pinned_keys_and_the_table_shows_them():
    summary = evaluate(ReplaysTheRaters(), _dataset(2), num_samples=2).summary()
    keys = ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece")
    assert {*keys, "samples", "ged_samples", "ci95"} <= set(summary)
    assert all(math.isfinite(summary[key]) for key in keys)
    table = format_table(summary)
    for label in ("Dice", "GED", "HM-IoU", "S_NCC", "Soft Dice", "ECE", "K = 2", "N = 16"):
        assert label in table


def test_examples_are_kept_for_the_figure():
    result = evaluate(ReplaysTheRaters(), _dataset(3), num_samples=2, keep_examples=2)
    assert [e["case_id"] for e in result.examples] == ["c0", "c1"]
    assert result.examples[0]["probabilities"].shape == (2, 8, 8)


def test_zero_samples_is_refused():
    with pytest.raises(ValueError, match="positive integer"):
        evaluate(ReplaysTheRaters(), _dataset(1), num_samples=0)


def test_zero_ged_samples_is_refused():
    with pytest.raises(ValueError, match="--ged-samples N must be a positive integer"):
        evaluate(ReplaysTheRaters(), _dataset(1), num_samples=3, ged_samples=0)


def test_ged_samples_default_to_sixteen():
    summary = evaluate(ReplaysTheRaters(), _dataset(1), num_samples=3).summary()
    assert summary["ged_samples"] == 16 and summary["samples"] == 3


def test_set_metrics_use_the_n_samples_not_the_votes_k():
    # K = 1: one sample (rater 0) votes; N = 3 samples are the raters themselves, so GED is 0.
    summary = evaluate(ReplaysTheRaters(), _dataset(1), num_samples=1, ged_samples=3).summary()
    assert summary["ged"] == pytest.approx(0.0, abs=1e-6)
    assert summary["hm_iou"] == pytest.approx(1.0)


def test_dice_votes_over_the_first_k_samples_only():
    # K = 1: the vote is rater 0 (a 4 x 4 square) against the raters' majority.
    majority = (RATERS.sum(0) >= 2).float()
    expected = float(2 * (RATERS[0] * majority).sum() / (RATERS[0].sum() + majority.sum()))
    summary = evaluate(ReplaysTheRaters(), _dataset(1), num_samples=1, ged_samples=3).summary()
    assert summary["dice"] == pytest.approx(expected)


def test_every_metric_has_a_95_percent_interval_around_its_mean():
    summary = evaluate(ReplaysTheRaters(), _dataset(3), num_samples=3, ged_samples=5).summary()
    for key in ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece"):
        lo, hi = summary["ci95"][key]
        assert lo <= summary[key] + 1e-9 and summary[key] <= hi + 1e-9


def test_one_forward_serves_all_n_samples_of_an_image():
    model = ReplaysTheRaters()
    evaluate(model, _dataset(4), num_samples=3, ged_samples=100, batch_size=4)
    assert model.calls == [(1, 100)] * 4  # 4 x 100 rows > 128: one image per forward, all N at once


def test_images_are_grouped_per_forward_up_to_max_rows():
    model = ReplaysTheRaters()
    evaluate(model, _dataset(4), num_samples=3, ged_samples=16, batch_size=4, max_rows=32)
    assert model.calls == [(2, 16), (2, 16)]


def test_n_above_max_rows_is_split_into_chunks():
    model = ReplaysTheRaters()
    evaluate(model, _dataset(1), num_samples=3, ged_samples=10, max_rows=4)
    assert model.calls == [(1, 4), (1, 4), (1, 2)]


class AlwaysTheSame(ReplaysTheRaters):
    """A deterministic stand-in: every sample is rater 0."""

    def forward(self, images, prompts, masks=None, num_samples=1, generator=None):
        logits = (RATERS[:1] * 20 - 10).expand(images.shape[0], num_samples, -1, -1)
        return UncertaintySamOutput(logits, None, None)


def test_s_ncc_of_a_deterministic_model_is_reported_undefined_not_zero():
    summary = evaluate(AlwaysTheSame(), _dataset(2), num_samples=3).summary()
    assert summary["s_ncc"] is None and summary["ci95"]["s_ncc"] is None and summary["s_ncc_images"] == 0
    assert "undefined on every image" in format_table(summary)


def test_saved_samples_hold_n_masks_probabilities_and_raters_per_case(tmp_path):
    evaluate(ReplaysTheRaters(), _dataset(2), num_samples=3, ged_samples=5, save_samples_to=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c0.npz", "c1.npz"]
    case = np.load(tmp_path / "c0.npz")
    assert case["samples"].dtype == np.bool_ and case["samples"].shape == (5, 8, 8)
    assert case["probs"].dtype == np.float16 and case["probs"].shape == (5, 8, 8)
    assert case["raters"].dtype == np.bool_ and case["raters"].shape == (3, 8, 8)
    np.testing.assert_array_equal(case["samples"][:3], RATERS.numpy() > 0.5)


def test_saved_samples_recompute_the_reported_metrics(tmp_path):
    from uncertainty_adapters import metrics

    summary = evaluate(ReplaysTheRaters(), _dataset(2), num_samples=3, ged_samples=5,
                       save_samples_to=tmp_path).summary()
    cases = [np.load(tmp_path / f"c{i}.npz") for i in range(2)]
    samples = torch.stack([torch.from_numpy(c["samples"]) for c in cases])
    raters = torch.stack([torch.from_numpy(c["raters"]) for c in cases])
    assert float(metrics.ged(samples, raters, reduction="mean")) == pytest.approx(summary["ged"], abs=1e-6)


def test_case_ids_that_map_to_one_file_are_refused(tmp_path):
    data = _dataset(2)
    data[0]["case_id"], data[1]["case_id"] = "a/b", "a_b"
    with pytest.raises(ValueError, match="both map to samples/a_b.npz"):
        evaluate(ReplaysTheRaters(), data, num_samples=3, save_samples_to=tmp_path)


def test_the_figure_shows_cases_where_raters_disagree_and_where_they_agree():
    from uncertainty_adapters.integrations.pipeline.commands import figure_cases

    def case(name, raters_agree):
        raters = torch.zeros(3, 8, 8, dtype=torch.bool)
        raters[:, 2:6, 2:6] = True
        if not raters_agree:
            raters[0, 1, 1] = True
        return {"case_id": name, "raters": raters}

    cases = [case(f"d{i}", False) for i in range(5)] + [case("a0", True), case("a1", True), case("a2", True)]
    chosen = figure_cases(cases, rows=4)
    assert [c["case_id"] for c in chosen] == ["d0\nraters disagree", "d1\nraters disagree", "a0\nraters agree", "a1\nraters agree"]
    only_disagree = figure_cases(cases[:5], rows=4)
    assert len(only_disagree) == 4 and all(c["case_id"].endswith("disagree") for c in only_disagree)
