"""The plain SAM forward, batched and differentiable: images and one prompt set per image -> logits.

segment-anything's ``Sam.forward`` loops over images, runs without gradients and thresholds the
masks; training a SAM (the demo backbone's pretraining) and UA-SAM need the same computation
batched and differentiable. The pieces are shared with `UncertaintySam`:

- `normalize_images`: (B, 3, S, S) floats in [0, 1] -> SAM's input (pixel mean/std on the
  0-255 scale, as ``Sam.preprocess``; the images are square, so there is no padding);
- `decode_prompts`: prompt encoder (sync-free, `encode_prompts`) + `predict_single_masks` + bilinear upsampling to S x S;
- `segment`: both around SAM's image encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam

from .decoder import predict_single_masks
from .prompt_embedding import encode_prompts
from .prompts import Prompts


def normalize_images(images: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) floats in [0, 1] -> (B, 3, S, S) normalised as SAM's ``preprocess`` does;
    ``pixel_mean``/``pixel_std`` are (3, 1, 1) on the 0-255 scale."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, S, S) floats in [0, 1], got {tuple(images.shape)}")
    return (images * 255.0 - pixel_mean) / pixel_std


def decode_prompts(
    prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, embeddings: torch.Tensor, prompts: Prompts
) -> torch.Tensor:
    """Mask logits for N image embeddings with N prompt sets (embedding i with prompts i).

    Args:
        prompt_encoder, mask_decoder: SAM's.
        embeddings: (N, C, h, w) image embeddings on the prompt encoder's grid.
        prompts: `Prompts` with batch N, in pixels of the encoder's S x S input.

    Returns:
        (N, 1, S, S) logits: SAM's single-mask output, upsampled bilinearly.
    """
    if prompts.batch_size != embeddings.shape[0]:
        raise ValueError(
            f"decoding pairs embedding i with prompt set i: got {embeddings.shape[0]} embeddings and "
            f"{prompts.batch_size} prompt sets (repeat the prompts with prompts.repeat_interleave(K))"
        )
    grid = tuple(prompt_encoder.image_embedding_size)
    if tuple(embeddings.shape[-2:]) != grid:
        raise ValueError(f"embeddings must be (N, C, {grid[0]}, {grid[1]}) for this model, got {tuple(embeddings.shape)}")
    prompts = prompts.to(embeddings.device)
    sparse, dense = encode_prompts(prompt_encoder, prompts.points, prompts.labels, prompts.boxes)
    low_res = predict_single_masks(mask_decoder, embeddings, prompt_encoder.get_dense_pe(), sparse, dense)
    return F.interpolate(low_res, tuple(prompt_encoder.input_image_size), mode="bilinear", align_corners=False)


def segment(
    sam: Sam,
    images: torch.Tensor,
    points: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
) -> torch.Tensor:
    """SAM's single-mask logits for a batch, with gradients (e.g. to train a SAM).

    Args:
        sam: a segment-anything `Sam` (e.g. from `build_sam`).
        images: (B, 3, S, S) floats in [0, 1], S the encoder's input size.
        points: (B, P, 2) pixel (x, y), with labels (B, P) (1 foreground, 0 background); and/or
        boxes: (B, 4) xyxy pixels. See `Prompts`.

    Returns:
        (B, 1, S, S) mask logits.
    """
    size = sam.image_encoder.img_size
    if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(f"images must be (B, 3, {size}, {size}) floats in [0, 1] for this SAM, got {tuple(images.shape)}")
    embeddings = sam.image_encoder(normalize_images(images, sam.pixel_mean, sam.pixel_std))
    return decode_prompts(sam.prompt_encoder, sam.mask_decoder, embeddings, Prompts(points, labels, boxes))
