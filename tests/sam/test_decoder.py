"""Batched single-mask decoding equals segment-anything's own MaskDecoder, image by image."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.integrations.sam import make_prompts, predict_single_masks

from .conftest import TINY, disc_masks, trained_looking_sam


@pytest.mark.parametrize("mode", ["point", "box", "point+box"])
def test_batched_decode_equals_sams_decoder_run_image_by_image(mode):
    sam = trained_looking_sam(seed=5)
    grid = TINY.token_grid(TINY.image_size)
    embeddings = torch.randn(4, TINY.prompt_embed_dim, grid, grid, generator=torch.Generator().manual_seed(0))
    prompts = make_prompts(disc_masks(4), mode, generator=torch.Generator().manual_seed(1))
    points = (prompts.points, prompts.labels) if prompts.points is not None else None
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=points, boxes=prompts.boxes, masks=None)
        image_pe = sam.prompt_encoder.get_dense_pe()
        batched = predict_single_masks(sam.mask_decoder, embeddings, image_pe, sparse, dense)
        one_by_one = torch.cat([
            sam.mask_decoder(
                image_embeddings=embeddings[i : i + 1], image_pe=image_pe,
                sparse_prompt_embeddings=sparse[i : i + 1], dense_prompt_embeddings=dense[i : i + 1],
                multimask_output=False,
            )[0]
            for i in range(4)
        ])
    assert batched.shape == (4, 1, 4 * grid, 4 * grid)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-5)


def test_mismatched_batch_of_embeddings_and_prompts_is_refused():
    sam = trained_looking_sam()
    prompts = make_prompts(disc_masks(2), "point")
    sparse, dense = sam.prompt_encoder(points=(prompts.points, prompts.labels), boxes=None, masks=None)
    with pytest.raises(ValueError, match="got 3 image embeddings, 2 sparse"):
        predict_single_masks(sam.mask_decoder, torch.zeros(3, 32, 8, 8), sam.prompt_encoder.get_dense_pe(), sparse, dense)
