"""Specification of majority_vote: the strict-majority vote of section 3.3."""

import pytest
import torch

from uncertainty_adapters.sampling import majority_vote


def test_pixel_is_foreground_when_more_than_half_of_the_masks_mark_it():
    masks = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]])  # (3, 1, 3)
    assert torch.equal(majority_vote(masks, dim=0), torch.tensor([[1.0, 1.0, 0.0]]))


def test_tie_is_background():
    masks = torch.tensor([[[[1, 0]], [[1, 1]], [[0, 1]], [[0, 0]]]])  # (1, 4, 1, 2): 2-2 ties
    assert torch.equal(majority_vote(masks), torch.zeros(1, 1, 2))


def test_removes_the_voting_dim_and_returns_float_zeros_and_ones():
    out = majority_vote(torch.ones(2, 5, 3, 4, dtype=torch.bool))
    assert out.shape == (2, 3, 4)
    assert out.dtype == torch.float32
    assert bool((out == 1).all())


def test_bool_int_and_float_masks_vote_alike():
    masks = torch.rand(2, 3, 4, 4) > 0.5
    expected = majority_vote(masks)
    assert torch.equal(majority_vote(masks.long()), expected)
    assert torch.equal(majority_vote(masks.float()), expected)


def test_single_mask_is_its_own_vote():
    mask = (torch.rand(1, 1, 5, 5) > 0.5).float()
    assert torch.equal(majority_vote(mask), mask[:, 0])


def test_non_binary_masks_raise_with_threshold_hint():
    with pytest.raises(ValueError, match="threshold probabilities first"):
        majority_vote(torch.full((1, 3, 2, 2), 0.7))
