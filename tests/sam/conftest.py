"""A tiny SAM-architecture spec and helpers: every model here builds in milliseconds on the CPU."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import Sam

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import Prompts, SamSpec, UncertaintySam, build_sam

# 64 x 64 inputs, patch 8: an 8 x 8 token grid, windows of 4, the last block global.
TINY = SamSpec(
    encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    patch_size=8, window_size=4, prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4, image_size=64,
)
TINY_HEADS = {"num_filters": (8, 16), "convs_per_block": 1}
SIZE = TINY.image_size


def trained_looking_sam(spec: SamSpec = TINY, image_size: int | None = None, seed: int = 0) -> Sam:
    """A SAM with random weights everywhere, including pos_embed and rel_pos (zero at init in
    segment-anything, which would hide every resizing mistake)."""
    torch.manual_seed(seed)
    sam = build_sam(spec, image_size)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sam.named_parameters():
            if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return sam


def tiny_uncertainty_sam(seed: int = 0, **kwargs) -> UncertaintySam:
    """UA-SAM on `trained_looking_sam`, with small latent heads."""
    kwargs.setdefault("latent_heads_kwargs", TINY_HEADS)
    kwargs.setdefault("adapter_config", ua.UncertaintyAdapterConfig(mlp_hidden_dim=16))
    return UncertaintySam(trained_looking_sam(seed=seed), **kwargs).eval()


def perturb_trainable(model: UncertaintySam, seed: int = 0, scale: float = 0.2) -> None:
    """Stand-in for training: move the adapters and latent heads away from their init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.trainable_state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)


def images(batch: int, seed: int = 1, size: int = SIZE) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def disc_masks(batch: int, size: int = SIZE) -> torch.Tensor:
    """(batch, 1, size, size) discs of growing radius at different places."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks = []
    for b in range(batch):
        cy, cx, r = size // 3 + 3 * b, size // 2 - 2 * b, 4 + 2 * b
        masks.append(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).float())
    return torch.stack(masks)[:, None]


@torch.no_grad()
def sam_reference_logits(sam: Sam, images: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """(B, 1, S, S) logits the way segment-anything's own Sam.forward computes them: image by
    image, SAM's preprocess, decoder, postprocess_masks."""
    size = images.shape[-1]
    embeddings = sam.image_encoder(sam.preprocess(images * 255))
    out = []
    for i in range(images.shape[0]):
        points = (prompts.points[i : i + 1], prompts.labels[i : i + 1]) if prompts.points is not None else None
        boxes = prompts.boxes[i : i + 1] if prompts.boxes is not None else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
        low_res, _ = sam.mask_decoder(embeddings[i : i + 1], sam.prompt_encoder.get_dense_pe(), sparse, dense, False)
        out.append(sam.postprocess_masks(low_res, (size, size), (size, size)))
    return torch.cat(out)


@pytest.fixture
def model() -> UncertaintySam:
    return tiny_uncertainty_sam()


def save_hf_sam(folder, spec: SamSpec = TINY, seed: int = 0, scale: float = 0.1):
    """A transformers SamModel of ``spec``'s architecture with random weights everywhere (its
    own init leaves the vision encoder near zero), written by ``save_pretrained`` into ``folder``;
    returns the model (eager attention, eval mode)."""
    from transformers import SamModel

    from uncertainty_adapters.integrations.sam.hf_checkpoint import hf_sam_config

    config = hf_sam_config(spec)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = SamModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(folder)
    return model
