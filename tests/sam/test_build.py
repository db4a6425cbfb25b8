"""build_sam / build_uncertainty_sam: sizes, grids, the paper configuration."""

from __future__ import annotations

import logging

import pytest
import torch

from uncertainty_adapters.integrations.sam import build_sam, build_uncertainty_sam

from .conftest import TINY

logger = logging.getLogger(__name__)


@pytest.mark.parametrize("image_size", [64, 96])
def test_encoder_and_prompt_encoder_follow_the_image_size(image_size):
    sam = build_sam(TINY, image_size)
    grid = image_size // TINY.patch_size
    with torch.no_grad():
        embedding = sam.image_encoder(torch.zeros(1, 3, image_size, image_size))
    assert tuple(embedding.shape) == (1, TINY.prompt_embed_dim, grid, grid)
    assert tuple(sam.prompt_encoder.image_embedding_size) == (grid, grid)
    assert tuple(sam.prompt_encoder.input_image_size) == (image_size, image_size)


def test_image_size_not_divisible_by_the_patch_size_is_refused():
    with pytest.raises(ValueError, match="image_size 100 is not divisible by the patch size 8; use a multiple of 8, e.g. 96 or 104"):
        build_sam(TINY, 100)


def test_unknown_spec_name_is_refused_by_the_builder():
    with pytest.raises(ValueError, match="known specs: demo, vit_b, vit_h, vit_l"):
        build_uncertainty_sam("sam2")


def test_paper_configuration_on_vit_b_trains_only_adapters_and_latent_heads():
    model = build_uncertainty_sam("vit_b")
    trainable, total = model.get_nb_trainable_parameters()
    adapters = sum(p.numel() for module in model.encoder.adapter_modules() for p in module.parameters())
    heads = sum(p.numel() for p in model.latent_heads.parameters())
    logger.info("UA-SAM vit_b: %d trainable of %d parameters", trainable, total)
    assert model.image_size == 1024
    assert trainable == adapters + heads
    assert 0 < trainable < 0.1 * total
