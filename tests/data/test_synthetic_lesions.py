"""The embedded ``synthetic`` data: deterministic, with raters who disagree systematically."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from uncertainty_adapters.integrations.data import SyntheticLesions, rater_levels

CASES = 120


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _pairwise_ious(masks: np.ndarray) -> list[float]:
    return [_iou(masks[i], masks[j]) for i, j in itertools.combinations(range(len(masks)), 2)]


@pytest.fixture(scope="module")
def cases():
    dataset = SyntheticLesions(image_size=128, split="all", length=CASES)
    return [dataset.render_case(i) for i in range(len(dataset))]


def test_same_seed_gives_identical_items() -> None:
    one = SyntheticLesions(image_size=64, seed=7, length=30)
    two = SyntheticLesions(image_size=64, seed=7, length=30)
    for index in (0, 5, len(one) - 1):
        assert torch.equal(one[index]["image"], two[index]["image"])
        assert torch.equal(one[index]["masks"], two[index]["masks"])


def test_different_seeds_give_different_cases() -> None:
    one = SyntheticLesions(image_size=64, seed=0, length=30)[0]
    two = SyntheticLesions(image_size=64, seed=1, length=30)[0]
    assert not torch.equal(one["image"], two["image"])


def test_a_case_is_the_same_in_its_split_and_in_all() -> None:
    train = SyntheticLesions(split="train", length=30)
    everything = SyntheticLesions(split="all", length=30)
    position = everything.case_ids.index(train.case_ids[3])
    assert np.array_equal(train.render_case(3).image, everything.render_case(position).image)


def test_splits_are_disjoint_and_cover_the_cases() -> None:
    train = set(SyntheticLesions(split="train", length=50).case_ids)
    test = set(SyntheticLesions(split="test", length=50).case_ids)
    assert not train & test
    assert train | test == set(SyntheticLesions(split="all", length=50).case_ids)


def test_both_ambiguous_and_unambiguous_cases_occur(cases) -> None:
    kinds = [case.ambiguous for case in cases]
    assert 0.5 < np.mean(kinds) < 0.9


def test_raters_disagree_on_ambiguous_cases(cases) -> None:
    ious = [np.mean(_pairwise_ious(case.masks)) for case in cases if case.ambiguous]
    assert np.mean(ious) < 0.75
    assert max(ious) < 0.9


def test_raters_agree_on_unambiguous_cases(cases) -> None:
    ious = [min(_pairwise_ious(case.masks)) for case in cases if not case.ambiguous]
    assert min(ious) > 0.99


def test_generous_raters_mark_more_than_conservative_ones(cases) -> None:
    for case in cases:
        if case.ambiguous:
            assert case.masks[0].sum() > case.masks[-1].sum()


def test_rater_levels_run_from_generous_to_conservative() -> None:
    levels = rater_levels(4)
    assert levels[0] == pytest.approx(0.2) and levels[-1] == pytest.approx(0.8)
    assert np.all(np.diff(levels) > 0)


def test_faint_lesion_is_marked_by_some_raters_and_missed_by_others(cases) -> None:
    faint_cases = [case for case in cases if case.faint is not None]
    assert len(faint_cases) >= 10
    for case in faint_cases:
        covered = [(mask & case.faint).sum() / case.faint.sum() > 0.5 for mask in case.masks]
        assert 1 <= sum(covered) < len(covered)
        assert covered[0] and not covered[-1]


def test_satellite_is_included_only_by_even_numbered_raters(cases) -> None:
    satellite_cases = [case for case in cases if case.satellite is not None]
    assert len(satellite_cases) >= 10
    for case in satellite_cases:
        core = case.satellite & ~case.masks[-1]  # the part the conservative rater 3 leaves out
        assert (case.masks[0] & core).sum() > (case.masks[1] & core).sum()


def test_unambiguous_cases_have_no_faint_lesion_or_satellite(cases) -> None:
    for case in cases:
        if not case.ambiguous:
            assert case.faint is None and case.satellite is None


def test_number_of_raters_is_configurable() -> None:
    item = SyntheticLesions(image_size=32, num_raters=7, length=10)[0]
    assert item["masks"].shape == (7, 32, 32)


def test_a_single_rater_is_supported() -> None:
    item = SyntheticLesions(image_size=32, num_raters=1, length=10)[0]
    assert torch.equal(item["mask"], item["masks"])


def test_image_is_grayscale_replicated_to_three_channels() -> None:
    image = SyntheticLesions(image_size=32, length=10)[0]["image"]
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
