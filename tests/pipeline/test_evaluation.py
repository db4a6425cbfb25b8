"""Evaluation against raters on a fixture whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from uncertainty_adapters.integrations.pipeline.evaluation import evaluate, format_table
from uncertainty_adapters.integrations.sam import UncertaintySamOutput


def _square(top, left, size, side=8):
    mask = torch.zeros(side, side)
    mask[top : top + size, left : left + size] = 1
    return mask


RATERS = torch.stack([_square(1, 1, 4), _square(1, 1, 5), _square(2, 2, 3)])  # (3, 8, 8)


class ReplaysTheRaters(nn.Module):
    """A stand-in model whose K = 3 samples are exactly the three rater masks."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images, prompts, masks=None, num_samples=1, generator=None):
        logits = (RATERS * 20 - 10).expand(images.shape[0], -1, -1, -1)
        return UncertaintySamOutput(logits[:, :num_samples], None, None)


def _dataset(n=4):
    majority = (RATERS.sum(0, keepdim=True) >= 2).float()
    return [
        {"image": torch.rand(3, 8, 8), "masks": RATERS, "mask": RATERS[:1], "majority": majority, "case_id": f"c{i}"}
        for i in range(n)
    ]


def test_samples_equal_to_the_raters_score_perfectly():
    result = evaluate(ReplaysTheRaters(), _dataset(), num_samples=3, batch_size=2)
    summary = result.summary()
    assert summary["dice"] == pytest.approx(1.0)
    assert summary["ged"] == pytest.approx(0.0, abs=1e-6)
    assert summary["hm_iou"] == pytest.approx(1.0)
    assert summary["samples"] == 3 and summary["num_images"] == 4


def test_diversity_is_the_mean_pairwise_distance_of_the_raters():
    iou = lambda a, b: float((a * b).sum() / ((a + b) > 0).sum())  # noqa: E731
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = sum(1 - iou(RATERS[i], RATERS[j]) for i, j in pairs) / 3
    result = evaluate(ReplaysTheRaters(), _dataset(1), num_samples=3)
    assert result.summary()["diversity"] == pytest.approx(expected)


def test_summary_has_the_pinned_keys_and_the_table_shows_them():
    summary = evaluate(ReplaysTheRaters(), _dataset(2), num_samples=2).summary()
    assert {"dice", "ged", "hm_iou", "diversity", "samples"} <= set(summary)
    assert all(math.isfinite(summary[key]) for key in ("dice", "ged", "hm_iou", "diversity"))
    table = format_table(summary)
    assert "Dice" in table and "GED" in table and "HM-IoU" in table and "K = 2" in table


def test_examples_are_kept_for_the_figure():
    result = evaluate(ReplaysTheRaters(), _dataset(3), num_samples=2, keep_examples=2)
    assert [e["case_id"] for e in result.examples] == ["c0", "c1"]
    assert result.examples[0]["probabilities"].shape == (2, 8, 8)


def test_zero_samples_is_refused():
    with pytest.raises(ValueError, match="positive integer"):
        evaluate(ReplaysTheRaters(), _dataset(1), num_samples=0)


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
