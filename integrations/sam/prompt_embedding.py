"""SAM's prompt encoder without host-device synchronisation.

segment-anything's ``PromptEncoder._embed_points`` adds the label embeddings through boolean
indexing (``point_embedding[labels == 1] += ...``), and every boolean index on a GPU makes the
host wait for the device (it needs the number of selected rows). `encode_prompts` computes the
same embeddings with ``torch.where`` from the prompt encoder's own modules and weights, so a
training or sampling step never stops to synchronise; `tests/sam/test_prompt_embedding.py`
checks that it equals ``PromptEncoder.forward`` exactly.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import PromptEncoder


def encode_prompts(
    prompt_encoder: PromptEncoder,
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompt_encoder(points=(points, labels), boxes=boxes, masks=None)``, sync-free.

    Args:
        prompt_encoder: a segment-anything `PromptEncoder`.
        points: (B, P, 2) pixel (x, y) coordinates with ``labels`` (B, P): 1 foreground,
            0 background, -1 padding (other values get no label embedding, as in SAM); or None.
        boxes: (B, 4) xyxy pixels, or None. At least one of points and boxes must be given.

    Returns:
        sparse (B, N, C) and dense (B, C, h, w) embeddings, as ``PromptEncoder.forward``.
    """
    if points is None and boxes is None:
        raise ValueError("encode_prompts needs points (with labels) or boxes")
    size = tuple(prompt_encoder.input_image_size)
    parts = []
    if points is not None:
        if labels is None:
            raise ValueError("points need labels of shape (B, P)")
        coords = points + 0.5  # the centre of the pixel, as SAM
        if boxes is None:  # SAM pads a point-only prompt with one "not a point"
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        embedding = prompt_encoder.pe_layer.forward_with_coords(coords, size)
        labels, dtype = labels[..., None], embedding.dtype  # SAM's in-place updates keep the dtype
        embedding = torch.where(labels == -1, prompt_encoder.not_a_point_embed.weight.to(dtype), embedding)
        for label in (0, 1):
            learned = prompt_encoder.point_embeddings[label].weight.to(dtype)
            embedding = torch.where(labels == label, embedding + learned, embedding)
        parts.append(embedding)
    if boxes is not None:
        corners = prompt_encoder.pe_layer.forward_with_coords((boxes + 0.5).reshape(-1, 2, 2), size)
        corner_weights = torch.cat([prompt_encoder.point_embeddings[2].weight, prompt_encoder.point_embeddings[3].weight])
        parts.append(corners + corner_weights.to(corners.dtype))
    sparse = torch.cat(parts, dim=1)
    grid = prompt_encoder.image_embedding_size
    dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, grid[0], grid[1])
    return sparse, dense
