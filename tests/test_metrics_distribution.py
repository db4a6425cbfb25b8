"""Specification of the distribution metrics S_NCC, soft Dice and ECE (DESIGN.md section 7), and of
GED / HM-IoU against their definitions written out as loops.

Each metric is checked on hand-computed examples (empty masks and identical samples included)
and against a direct, loop-by-loop NumPy transcription of its definition on random inputs (1e-4).
"""

import itertools
import math

import numpy as np
import pytest
import torch

from uncertainty_adapters.metrics import ece, ged, hungarian_iou, s_ncc, soft_dice

EPS = 1e-8
CE_ONE_MISS = -math.log(EPS)  # CE of a binary target against a binary prediction that misses it


def images(*sets):
    """A (len(sets), K, 1, P) float tensor: each set is a list of masks given as flat pixel lists."""
    return torch.tensor([[[row] for row in s] for s in sets], dtype=torch.float32)


# -- reference transcriptions of the definitions (one image, NumPy, loops) -----------------------


def ref_xent(target, prediction):
    return -(target * np.log(prediction + EPS) + (1 - target) * np.log(1 - prediction + EPS))


def ref_ncc(a, v):
    a, v = a.ravel(), v.ravel()
    return float(np.mean((a - a.mean()) * (v - v.mean())) / (a.std() * v.std()))


def ref_s_ncc(samples, raters):
    mean = samples.mean(0)
    gamma = np.mean([ref_xent(mean, s) for s in samples], axis=0)
    return float(np.mean([ref_ncc(gamma, np.mean([ref_xent(y, s) for s in samples], axis=0)) for y in raters]))


def ref_dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2 * (a & b).sum() / total


def ref_soft_dice(samples, raters, thresholds=(0.1, 0.3, 0.5, 0.7, 0.9)):
    return float(np.mean([ref_dice(samples.mean(0) > t, raters.mean(0) > t) for t in thresholds]))


def ref_ece(samples, raters, bins=10):
    p, q = samples.mean(0).ravel(), raters.mean(0).ravel()
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() / p.size * abs(p[inside].mean() - q[inside].mean())
    return total


def ref_iou(a, b):
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def ref_ged(samples, raters):
    def mean_distance(xs, ys):
        return np.mean([1 - ref_iou(x, y) for x in xs for y in ys])

    return 2 * mean_distance(samples, raters) - mean_distance(samples, samples) - mean_distance(raters, raters)


def ref_hungarian_iou(samples, raters):
    size = math.lcm(len(samples), len(raters))
    xs = [samples[i % len(samples)] for i in range(size)]
    ys = [raters[i % len(raters)] for i in range(size)]
    return max(np.mean([ref_iou(xs[i], ys[j]) for i, j in enumerate(perm)]) for perm in itertools.permutations(range(size)))


def random_case(seed, batch=3, k=5, r=4, side=9, probabilities=False):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, k, side, side)
    samples = torch.rand(shape, generator=generator)
    if not probabilities:
        samples = (samples > 0.5).float()
    raters = (torch.rand((batch, r, side, side), generator=generator) > 0.5).float()
    return samples, raters


def per_image(reference, samples, raters, dtype=bool):
    s = samples.numpy().astype(dtype)
    y = raters.numpy().astype(dtype)
    return torch.tensor([reference(s[b], y[b]) for b in range(s.shape[0])], dtype=torch.float32)


# -- agreement with the definitions on random inputs (1e-4) --------------------------------------


@pytest.mark.parametrize("probabilities", [False, True], ids=["binary", "probabilities"])
def test_s_ncc_agrees_with_its_definition_on_random_inputs(probabilities):
    samples, raters = random_case(0, probabilities=probabilities)
    expected = per_image(ref_s_ncc, samples, raters, dtype=np.float64)
    torch.testing.assert_close(s_ncc(samples, raters), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("probabilities", [False, True], ids=["binary", "probabilities"])
def test_soft_dice_agrees_with_its_definition_on_random_inputs(probabilities):
    samples, raters = random_case(1, probabilities=probabilities)
    expected = per_image(ref_soft_dice, samples, raters, dtype=np.float64)
    torch.testing.assert_close(soft_dice(samples, raters), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("probabilities", [False, True], ids=["binary", "probabilities"])
def test_ece_agrees_with_its_definition_on_random_inputs(probabilities):
    samples, raters = random_case(2, probabilities=probabilities)
    expected = per_image(ref_ece, samples, raters, dtype=np.float64)
    torch.testing.assert_close(ece(samples, raters), expected, atol=1e-4, rtol=0)


def test_ged_agrees_with_its_definition_on_random_inputs():
    samples, raters = random_case(3, k=16, r=4)
    torch.testing.assert_close(ged(samples, raters), per_image(ref_ged, samples, raters), atol=1e-4, rtol=0)


def test_hungarian_iou_agrees_with_its_definition_on_random_inputs():
    samples, raters = random_case(4, k=2, r=3, side=5)  # lcm 6: 720 permutations by brute force
    expected = per_image(ref_hungarian_iou, samples, raters)
    torch.testing.assert_close(hungarian_iou(samples, raters), expected, atol=1e-4, rtol=0)


# -- S_NCC by hand ------------------------------------------------------------------------------


def test_s_ncc_is_one_when_the_samples_disagree_exactly_where_they_miss_the_rater():
    samples = images([[1, 1, 0, 0], [1, 0, 0, 0]])  # disagree at pixel 1
    raters = images([[1, 0, 0, 0]])  # half the samples miss it at pixel 1 only
    torch.testing.assert_close(s_ncc(samples, raters), torch.tensor([1.0]))


def test_s_ncc_hand_computed_value_with_two_raters():
    samples = images([[1, 1, 0, 0], [1, 0, 0, 0]])
    raters = images([[1, 0, 0, 0], [0, 0, 0, 0]])
    # gamma = c * [0, 1/2, 0, 0]; e_1 = c * [0, 1/2, 0, 0] (NCC 1); e_2 = c * [1, 1/2, 0, 0]
    a, v = np.array([0, 0.5, 0, 0]), np.array([1, 0.5, 0, 0])
    expected = (1 + ref_ncc(a, v)) / 2
    torch.testing.assert_close(s_ncc(samples, raters), torch.tensor([expected]), atol=1e-6, rtol=0)


def test_s_ncc_of_identical_binary_samples_is_nan_not_zero():
    samples = images([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]])  # gamma = 0 at every pixel
    assert s_ncc(samples, images([[1, 0, 0, 0]])).isnan().all()


def test_s_ncc_of_all_empty_samples_and_raters_is_nan():
    empty = images([[0, 0, 0, 0], [0, 0, 0, 0]])
    assert s_ncc(empty, empty).isnan().all()


def test_s_ncc_is_nan_when_one_raters_error_map_is_constant():
    samples = images([[0.5, 0.0], [0.5, 0.75]])  # mean log(1 - s) = log 0.5 at both pixels
    raters = images([[0, 0], [1, 1]])  # rater 1's error map is -log 0.5 at both pixels
    assert s_ncc(samples, raters).isnan().all()
    assert not s_ncc(samples, raters[:, 1:]).isnan().any()  # gamma alone is not constant


def test_s_ncc_mean_reduction_skips_undefined_images():
    samples = torch.cat([images([[1, 1, 0, 0], [1, 0, 0, 0]]), images([[1, 1, 0, 0], [1, 1, 0, 0]])])
    raters = images([[1, 0, 0, 0]], [[1, 0, 0, 0]])
    torch.testing.assert_close(s_ncc(samples, raters, reduction="mean"), torch.tensor(1.0))


def test_s_ncc_of_probabilities_identical_across_samples_is_defined():
    samples = images([[0.9, 0.5, 0.1, 0.2], [0.9, 0.5, 0.1, 0.2]])  # gamma = the entropy map
    assert not s_ncc(samples, images([[1, 0, 0, 0]])).isnan().any()


# -- soft Dice by hand -------------------------------------------------------------------------


def test_soft_dice_hand_computed_value():
    samples = images([[1, 1], [1, 0]])  # mean [1, 0.5]
    raters = images([[1, 0]])  # mean [1, 0]
    # t = 0.1, 0.3: Dice([1, 1], [1, 0]) = 2/3; t = 0.5, 0.7, 0.9: Dice([1, 0], [1, 0]) = 1
    torch.testing.assert_close(soft_dice(samples, raters), torch.tensor([(2 * 2 / 3 + 3) / 5]))


def test_soft_dice_of_all_empty_samples_and_raters_is_one():
    empty = images([[0, 0, 0], [0, 0, 0]])
    assert soft_dice(empty, empty).item() == 1.0


def test_soft_dice_of_empty_samples_against_a_marked_pixel_is_zero():
    assert soft_dice(images([[0, 0]]), images([[1, 0]])).item() == 0.0


def test_soft_dice_of_identical_samples_equals_their_raters_dice():
    samples = images([[1, 1, 0, 0], [1, 1, 0, 0]])
    raters = images([[1, 0, 0, 0]])
    torch.testing.assert_close(soft_dice(samples, raters), torch.tensor([2 / 3]))


def test_soft_dice_uses_the_given_thresholds():
    samples = images([[1, 1], [1, 0]])
    raters = images([[1, 0]])
    torch.testing.assert_close(soft_dice(samples, raters, thresholds=(0.7,)), torch.tensor([1.0]))


def test_soft_dice_rejects_a_threshold_of_one():
    with pytest.raises(ValueError, match=r"levels in \[0, 1\)"):
        soft_dice(images([[1, 0]]), images([[1, 0]]), thresholds=(0.5, 1.0))


# -- ECE by hand --------------------------------------------------------------------------------


def test_ece_hand_computed_value():
    samples = images([[1, 0, 0.25, 0.25]])  # p = [1, 0, 0.25, 0.25]
    raters = images([[1, 1, 0, 1], [1, 0, 0, 0]])  # q = [1, 0.5, 0, 0.5]
    # bin 9: p 1, q 1 (gap 0); bin 0: p 0, q 0.5 (1/4 * 0.5); bin 2: p 0.25, q 0.25 (gap 0)
    torch.testing.assert_close(ece(samples, raters), torch.tensor([0.125]))


def test_ece_puts_probability_one_in_the_last_bin():
    samples = images([[1.0, 0.95]])  # both in bin 9: mean p 0.975
    raters = images([[1, 1]])
    torch.testing.assert_close(ece(samples, raters), torch.tensor([0.025]))


def test_ece_of_all_empty_samples_and_raters_is_zero():
    empty = images([[0, 0, 0], [0, 0, 0]])
    assert ece(empty, empty).item() == 0.0


def test_ece_of_identical_samples_equal_to_unanimous_raters_is_zero():
    masks = images([[1, 0, 1], [1, 0, 1]])
    assert ece(masks, masks[:, :1]).item() == 0.0


def test_ece_of_confident_samples_against_split_raters_is_one_half():
    samples = images([[1, 1], [1, 1]])  # p = 1 everywhere
    raters = images([[1, 1], [0, 0]])  # q = 0.5 everywhere
    torch.testing.assert_close(ece(samples, raters), torch.tensor([0.5]))


def test_ece_rejects_zero_bins():
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        ece(images([[1, 0]]), images([[1, 0]]), bins=0)


# -- conventions shared with the other metrics --------------------------------------------------


DISTRIBUTION_METRICS = [s_ncc, soft_dice, ece]


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS)
def test_batch_result_equals_per_image_results(metric):
    samples, raters = random_case(5, probabilities=True)
    singles = torch.cat([metric(samples[i : i + 1], raters[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(metric(samples, raters), singles)


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS)
def test_results_are_float32_of_shape_batch(metric):
    samples, raters = random_case(6, batch=4, probabilities=True)
    out = metric(samples, raters)
    assert out.shape == (4,) and out.dtype == torch.float32


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS)
def test_bool_and_float_masks_give_the_same_result(metric):
    samples, raters = random_case(7)
    torch.testing.assert_close(metric(samples.bool(), raters.bool()), metric(samples, raters.double()))


@pytest.mark.parametrize("metric", [soft_dice, ece])
def test_reduction_mean_reduces_the_per_image_values(metric):
    samples, raters = random_case(8, probabilities=True)
    torch.testing.assert_close(metric(samples, raters, reduction="mean"), metric(samples, raters).mean())


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS)
def test_samples_outside_zero_one_raise_naming_the_fix(metric):
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*sigmoid"):
        metric(torch.full((1, 2, 4, 4), 1.5), torch.ones(1, 2, 4, 4))


@pytest.mark.parametrize("metric", DISTRIBUTION_METRICS)
def test_probability_raters_raise_with_threshold_hint(metric):
    with pytest.raises(ValueError, match=r"raters > 0\.5"):
        metric(torch.ones(1, 2, 4, 4), torch.full((1, 2, 4, 4), 0.5))
