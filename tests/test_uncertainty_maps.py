"""Specification of the pixelwise uncertainty maps (mean probability, variance, entropy)."""

import pytest
import torch

from uncertainty_adapters.uncertainty import entropy, mean_probability, uncertainty_maps, variance


def test_mean_probability_averages_over_samples():
    probs = torch.tensor([[[[0.2, 1.0]], [[0.6, 0.0]]]])  # (1, 2, 1, 2)
    torch.testing.assert_close(mean_probability(probs), torch.tensor([[[0.4, 0.5]]]))


def test_variance_is_the_population_variance_across_samples():
    probs = torch.tensor([[[[0.0, 0.5]], [[1.0, 0.5]]]])
    torch.testing.assert_close(variance(probs), torch.tensor([[[0.25, 0.0]]]))


def test_variance_of_a_single_sample_is_zero_not_nan():
    assert torch.equal(variance(torch.rand(2, 1, 3, 3)), torch.zeros(2, 3, 3))


def test_entropy_is_one_bit_at_mean_probability_one_half():
    probs = torch.tensor([[[[0.0]], [[1.0]]]])
    torch.testing.assert_close(entropy(probs), torch.ones(1, 1, 1))


def test_entropy_is_exactly_zero_and_finite_at_certain_pixels():
    probs = torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]])
    out = entropy(probs)
    assert torch.equal(out, torch.zeros(1, 1, 2))


def test_entropy_lies_in_zero_one():
    out = entropy(torch.rand(4, 6, 8, 8))
    assert bool(((out >= 0) & (out <= 1)).all())


def test_entropy_hand_computed_value():
    probs = torch.full((1, 3, 1, 1), 0.25)
    expected = -(0.25 * torch.log2(torch.tensor(0.25)) + 0.75 * torch.log2(torch.tensor(0.75)))
    torch.testing.assert_close(entropy(probs), expected.reshape(1, 1, 1))


def test_entropy_gradient_is_finite_away_from_zero_and_one():
    probs = torch.full((1, 2, 2, 2), 0.3, requires_grad=True)
    entropy(probs).sum().backward()
    assert bool(torch.isfinite(probs.grad).all())


def test_uncertainty_maps_match_the_single_map_functions():
    probs = torch.rand(2, 5, 4, 4)
    maps = uncertainty_maps(probs)
    assert set(maps) == {"mean", "variance", "entropy"}
    torch.testing.assert_close(maps["mean"], mean_probability(probs))
    torch.testing.assert_close(maps["variance"], variance(probs))
    torch.testing.assert_close(maps["entropy"], entropy(probs))


def test_maps_have_shape_batch_height_width():
    maps = uncertainty_maps(torch.rand(3, 4, 5, 6))
    assert all(m.shape == (3, 5, 6) for m in maps.values())


def test_binary_integer_samples_are_accepted_as_probabilities():
    probs = torch.tensor([[[[0, 1]], [[1, 1]]]])
    torch.testing.assert_close(mean_probability(probs), torch.tensor([[[0.5, 1.0]]]))


def test_wrong_ndim_raises_naming_the_shape():
    with pytest.raises(ValueError, match=r"\(B, K, H, W\).*got \(4, 5, 6\)"):
        uncertainty_maps(torch.rand(4, 5, 6))


def test_values_outside_zero_one_raise_with_sigmoid_hint():
    with pytest.raises(ValueError, match=r"\[0, 1\].*sigmoid"):
        entropy(torch.randn(1, 3, 4, 4) * 5)
