"""encode_prompts: SAM's prompt encoder without boolean indexing gives SAM's embeddings exactly."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import PromptEncoder

from uncertainty_adapters.integrations.sam.prompt_embedding import encode_prompts


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return PromptEncoder(embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64), mask_in_chans=4)


def _points(batch=3, count=4):
    generator = torch.Generator().manual_seed(1)
    points = torch.rand(batch, count, 2, generator=generator) * 64
    labels = torch.tensor([[1, 0, -1, 1], [0, 0, 1, -1], [1, 1, 1, 1]])[:batch, :count]
    return points, labels


def test_points_only_match_segment_anything_exactly(encoder):
    points, labels = _points()
    sparse, dense = encode_prompts(encoder, points, labels, None)
    ref_sparse, ref_dense = encoder(points=(points, labels), boxes=None, masks=None)
    assert sparse.shape == (3, 5, 32)  # SAM pads a point-only prompt with one "not a point"
    assert torch.equal(sparse, ref_sparse) and torch.equal(dense, ref_dense)


@pytest.mark.parametrize("with_points", [False, True])
def test_boxes_with_or_without_points_match_segment_anything_exactly(encoder, with_points):
    points, labels = _points() if with_points else (None, None)
    boxes = torch.tensor([[4.0, 5.0, 30.0, 40.0], [0.0, 0.0, 63.0, 63.0], [10.0, 12.0, 11.0, 13.0]])
    sparse, dense = encode_prompts(encoder, points, labels, boxes)
    ref_sparse, ref_dense = encoder(points=(points, labels) if with_points else None, boxes=boxes, masks=None)
    assert torch.equal(sparse, ref_sparse) and torch.equal(dense, ref_dense)


def test_gradients_reach_the_label_embeddings(encoder):
    points, labels = _points()
    encode_prompts(encoder, points, labels, None)[0].sum().backward()
    assert encoder.point_embeddings[0].weight.grad.abs().sum() > 0
    assert encoder.point_embeddings[1].weight.grad.abs().sum() > 0
    assert encoder.not_a_point_embed.weight.grad.abs().sum() > 0


def test_needs_a_prompt(encoder):
    with pytest.raises(ValueError, match="needs points"):
        encode_prompts(encoder, None, None, None)
