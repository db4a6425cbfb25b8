"""Batched single-mask decoding: N image embeddings with N prompt sets in one call.

segment-anything's ``MaskDecoder.predict_masks`` takes ONE image embedding and repeats it over
all the prompt sets in the batch, so N embeddings with N prompt sets would give N * N masks. UA-SAM
needs the pairwise case (K hypotheses of B images: N = B * K different embeddings, each with its
own prompts), so `predict_single_masks` runs the same math with the decoder's own submodules
(transformer, output_upscaling, output_hypernetworks_mlps, iou_token, mask_tokens), pairing
embedding i with prompt set i, and returns the single-mask output (``multimask_output=False``,
mask token 0), as UA-SAM uses with one point prompt. The result equals calling
``MaskDecoder.forward(..., multimask_output=False)`` image by image.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder


def predict_single_masks(
    mask_decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
) -> torch.Tensor:
    """Low-resolution mask logits for N (embedding, prompt set) pairs.

    Args:
        mask_decoder: a segment-anything MaskDecoder (its weights are used as they are).
        image_embeddings: (N, C, h, w), one per prompt set.
        image_pe: (1, C, h, w) or (N, C, h, w), the prompt encoder's ``get_dense_pe()``.
        sparse_prompt_embeddings: (N, T, C) point/box tokens from the prompt encoder.
        dense_prompt_embeddings: (N, C, h, w) mask-prompt (or no-mask) embeddings.

    Returns:
        (N, 1, 4h, 4w) mask logits, the single-mask output of SAM.
    """
    n = image_embeddings.shape[0]
    if sparse_prompt_embeddings.shape[0] != n or dense_prompt_embeddings.shape[0] != n:
        raise ValueError(
            f"predict_single_masks pairs embedding i with prompt set i: got {n} image embeddings, "
            f"{sparse_prompt_embeddings.shape[0]} sparse and {dense_prompt_embeddings.shape[0]} dense prompt embeddings"
        )
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    output_tokens = output_tokens.unsqueeze(0).expand(n, -1, -1)
    tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
    src = image_embeddings + dense_prompt_embeddings
    pos_src = image_pe.expand(n, -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = mask_decoder.transformer(src, pos_src, tokens)
    single_mask_token = hs[:, 1, :]  # token 0 of the mask tokens: the single-mask output
    upscaled = mask_decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = mask_decoder.output_hypernetworks_mlps[0](single_mask_token).unsqueeze(1)  # (N, 1, C/8)
    b, c, h, w = upscaled.shape
    return (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, 1, h, w)
