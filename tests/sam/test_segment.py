"""segment: the plain SAM forward, batched and differentiable, equals segment-anything's own."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.integrations.sam import make_prompts, segment

from .conftest import SIZE, disc_masks, images, sam_reference_logits, trained_looking_sam


@pytest.mark.parametrize("mode", ["point", "box", "point+box"])
def test_segment_equals_segment_anythings_image_by_image_forward(mode):
    sam = trained_looking_sam(seed=4)
    x, prompts = images(3), make_prompts(disc_masks(3), mode, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = segment(sam, x, prompts.points, prompts.labels, prompts.boxes)
    assert logits.shape == (3, 1, SIZE, SIZE)
    torch.testing.assert_close(logits, sam_reference_logits(sam, x, prompts), rtol=1e-5, atol=1e-5)


def test_segment_lets_gradients_reach_encoder_prompt_encoder_and_decoder():
    sam = trained_looking_sam().train()
    prompts = make_prompts(disc_masks(2), "point")
    segment(sam, images(2), prompts.points, prompts.labels).mean().backward()
    with_grad = {name.split(".")[0] for name, p in sam.named_parameters() if p.grad is not None}
    assert with_grad == {"image_encoder", "prompt_encoder", "mask_decoder"}


def test_segment_refuses_images_of_another_size():
    prompts = make_prompts(disc_masks(1), "point")
    with pytest.raises(ValueError, match=r"images must be \(B, 3, 64, 64\)"):
        segment(trained_looking_sam(), images(1, size=32), prompts.points, prompts.labels)
