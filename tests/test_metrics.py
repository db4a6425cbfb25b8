"""Specification of the evaluation metrics (DESIGN.md section 7)."""

import itertools

import pytest
import torch

from uncertainty_adapters import metrics
from uncertainty_adapters.metrics import dice, diversity, ged, hungarian_iou, iou_matrix

A = [[1, 1], [0, 0]]  # top row
B = [[1, 0], [0, 0]]  # top-left pixel
C = [[0, 0], [1, 1]]  # bottom row, disjoint from A and B
E = [[0, 0], [0, 0]]  # empty


def masks(*sets):
    """Build a (len(sets), K, 2, 2) float tensor from lists of 2x2 masks, one list per image."""
    return torch.tensor([list(s) for s in sets], dtype=torch.float32)


# iou_matrix


def test_iou_matrix_hand_computed_values():
    out = iou_matrix(masks([A, C]), masks([B, A, E]))
    expected = torch.tensor([[[0.5, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(out, expected)


def test_iou_of_two_empty_masks_is_one():
    assert iou_matrix(masks([E]), masks([E])).item() == 1.0


def test_iou_of_empty_and_nonempty_is_zero():
    assert iou_matrix(masks([E]), masks([A])).item() == 0.0


def test_iou_matrix_shape_is_batch_by_n_by_m():
    a = torch.rand(3, 4, 5, 6) > 0.5
    b = torch.rand(3, 2, 5, 6) > 0.5
    assert iou_matrix(a, b).shape == (3, 4, 2)


# dice


def test_dice_compares_majority_votes_hand_computed():
    samples = masks([A, A, B])  # vote A
    raters = masks([B, B, C])  # vote B
    torch.testing.assert_close(dice(samples, raters), torch.tensor([2 * 1 / (2 + 1)]))


def test_dice_of_all_empty_samples_and_raters_is_one():
    assert dice(masks([E, E]), masks([E, E, E])).item() == 1.0


def test_dice_of_empty_vote_against_nonempty_vote_is_zero():
    assert dice(masks([E]), masks([A])).item() == 0.0


def test_dice_uses_strict_majority_so_a_tie_is_background():
    samples = masks([A, E])  # 1-1 tie: empty vote
    assert dice(samples, masks([E])).item() == 1.0


# ged


def test_ged_hand_computed_value():
    samples = masks([A])
    raters = masks([A, B])
    # E d(S,Y) = (0 + 0.5) / 2; E d(S,S') = 0; E d(Y,Y') = (0 + 0.5 + 0.5 + 0) / 4
    torch.testing.assert_close(ged(samples, raters), torch.tensor([2 * 0.25 - 0 - 0.25]))


def test_ged_averages_full_pairwise_matrices_including_the_diagonal():
    samples = masks([A, C])
    raters = masks([A])
    # cross: (0 + 1) / 2; samples: (0 + 1 + 1 + 0) / 4; raters: 0
    torch.testing.assert_close(ged(samples, raters), torch.tensor([2 * 0.5 - 0.5 - 0.0]))


def test_ged_of_all_empty_samples_and_raters_is_zero():
    assert ged(masks([E, E]), masks([E, E, E])).item() == 0.0


def test_ged_of_identical_sets_is_zero():
    sets = masks([A, B, C])
    assert ged(sets, sets.clone()).item() == 0.0


def test_ged_is_non_negative_on_random_masks():
    samples = torch.rand(4, 5, 8, 8) > 0.5
    raters = torch.rand(4, 3, 8, 8) > 0.5
    assert bool((ged(samples, raters) >= -1e-6).all())


# hungarian_iou


def test_hungarian_iou_of_identical_sets_in_another_order_is_one():
    assert hungarian_iou(masks([A, B, C]), masks([C, A, B])).item() == 1.0


def test_hungarian_iou_of_all_empty_samples_and_raters_is_one():
    assert hungarian_iou(masks([E, E]), masks([E])).item() == 1.0


def test_hungarian_iou_matches_best_permutation_found_by_brute_force():
    torch.manual_seed(1)
    samples = torch.rand(1, 4, 5, 5) > 0.5
    raters = torch.rand(1, 4, 5, 5) > 0.5
    iou = iou_matrix(samples, raters)[0]
    best = max(
        sum(iou[i, j] for i, j in enumerate(perm)) / 4 for perm in itertools.permutations(range(4))
    )
    torch.testing.assert_close(hungarian_iou(samples, raters), best.reshape(1))


def test_hungarian_iou_repeats_both_sets_to_lcm_when_k_differs_from_r():
    samples = masks([A, C])  # K = 2, each repeated 3 times
    raters = masks([A, B, C])  # R = 3, each repeated 2 times; lcm = 6
    # best: A copies -> A, A, B (1 + 1 + 0.5); C copies -> C, C, B (1 + 1 + 0): 4.5 / 6
    torch.testing.assert_close(hungarian_iou(samples, raters), torch.tensor([0.75]))


def test_hungarian_iou_single_sample_against_many_raters_averages_over_raters():
    samples = masks([A])
    raters = masks([A, B])  # lcm 2: A matched with A and with B
    torch.testing.assert_close(hungarian_iou(samples, raters), torch.tensor([0.75]))


# diversity


def test_diversity_of_identical_samples_is_zero():
    assert diversity(masks([A, A, A])).item() == 0.0


def test_diversity_of_disjoint_samples_is_one():
    assert diversity(masks([A, C])).item() == 1.0


def test_diversity_of_a_single_sample_is_zero():
    assert diversity(masks([A])).item() == 0.0


def test_diversity_averages_distinct_pairs_only():
    # pairs A-B 0.5, A-C 1, B-C 1 -> mean 2.5 / 3
    torch.testing.assert_close(diversity(masks([A, B, C])), torch.tensor([2.5 / 3]))


def test_samples_that_are_the_raters_masks_in_equal_shares_reach_r_minus_1_over_r_of_their_diversity():
    # the raters' diversity averages pairs of different raters; samples repeat them, so some of their
    # pairs are one rater's mask twice: each of R raters m times gives m (R - 1) / (m R - 1) of it,
    # (R - 1) / R as m grows (a sampler drawing the raters' masks at random, docs/guide.md, Metrics)
    raters = masks([A, B, C])
    for m in (1, 2, 5, 40):
        samples = raters.repeat_interleave(m, dim=1)
        torch.testing.assert_close(diversity(samples), diversity(raters) * m * 2 / (3 * m - 1))
    assert abs(diversity(raters.repeat_interleave(40, dim=1)).item() / diversity(raters).item() - 2 / 3) < 0.01


def test_diversity_of_empty_samples_is_zero():
    assert diversity(masks([E, E])).item() == 0.0


# shared conventions


PAIR_METRICS = [dice, ged, hungarian_iou]


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_batch_result_equals_per_image_results(metric):
    torch.manual_seed(0)
    samples = torch.rand(3, 4, 6, 6) > 0.5
    raters = torch.rand(3, 2, 6, 6) > 0.5
    batched = metric(samples, raters)
    singles = torch.cat([metric(samples[i : i + 1], raters[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles)


def test_diversity_batch_result_equals_per_image_results():
    torch.manual_seed(0)
    samples = torch.rand(3, 4, 6, 6) > 0.5
    singles = torch.cat([diversity(samples[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(diversity(samples), singles)


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_results_are_float32_of_shape_batch(metric):
    out = metric(torch.rand(5, 3, 4, 4) > 0.5, torch.rand(5, 2, 4, 4) > 0.5)
    assert out.shape == (5,)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_bool_int_and_float_masks_give_the_same_result(metric):
    samples = torch.rand(2, 3, 4, 4) > 0.5
    raters = torch.rand(2, 2, 4, 4) > 0.5
    expected = metric(samples, raters)
    torch.testing.assert_close(metric(samples.long(), raters.int()), expected)
    torch.testing.assert_close(metric(samples.float(), raters.double()), expected)


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_reduction_mean_and_sum_reduce_the_per_image_values(metric):
    samples = torch.rand(4, 3, 4, 4) > 0.5
    raters = torch.rand(4, 2, 4, 4) > 0.5
    per_image = metric(samples, raters)
    torch.testing.assert_close(metric(samples, raters, reduction="mean"), per_image.mean())
    torch.testing.assert_close(metric(samples, raters, reduction="sum"), per_image.sum())


def test_diversity_reduction_mean_reduces_the_per_image_values():
    samples = torch.rand(4, 3, 4, 4) > 0.5
    torch.testing.assert_close(diversity(samples, reduction="mean"), diversity(samples).mean())


def test_unknown_reduction_raises():
    with pytest.raises(ValueError, match="reduction must be one of"):
        dice(masks([A]), masks([A]), reduction="avg")


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_wrong_ndim_raises_naming_the_shape(metric):
    message = r"samples must have shape \(B, K, H, W\), got \(2, 2, 2\)"
    with pytest.raises(ValueError, match=message):
        metric(torch.ones(2, 2, 2), torch.ones(1, 2, 2, 2))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_batch_mismatch_raises_naming_both_shapes(metric):
    with pytest.raises(ValueError, match=r"same number of images.*\(2, 3, 4, 4\).*\(1, 3, 4, 4\)"):
        metric(torch.ones(2, 3, 4, 4), torch.ones(1, 3, 4, 4))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_spatial_mismatch_raises_naming_both_sizes(metric):
    with pytest.raises(ValueError, match=r"same spatial size, got \(4, 4\).*\(5, 5\)"):
        metric(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 5, 5))


@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_probabilities_raise_with_threshold_hint(metric):
    with pytest.raises(ValueError, match=r"threshold probabilities first, e\.g\. samples > 0\.5"):
        metric(torch.full((1, 2, 4, 4), 0.3), torch.ones(1, 2, 4, 4))


def test_non_binary_raters_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"raters > 0\.5"):
        ged(torch.ones(1, 2, 4, 4), torch.full((1, 2, 4, 4), 2.0))


def test_diversity_rejects_probabilities():
    with pytest.raises(ValueError, match="threshold probabilities first"):
        diversity(torch.rand(1, 3, 4, 4) * 0.9 + 0.05)


def test_metrics_are_reachable_as_module_attributes():
    assert {"dice", "ged", "hungarian_iou", "diversity", "s_ncc", "soft_dice", "ece"} <= set(metrics.__all__)
