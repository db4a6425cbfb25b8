"""Combining several binary segmentations into one: the paper's majority vote (section 3.3).

UA-SAM is scored by taking a majority vote of K sampled masks and comparing it with the majority
vote of the raters. The vote is a strict majority: a pixel is foreground when more than half of
the masks mark it, so with an even number of masks a tie (e.g. 2 of 4) is background.
"""

from __future__ import annotations

import torch


def majority_vote(masks: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Strict-majority vote of binary masks along ``dim``.

    Args:
        masks: binary masks (bool, or numbers in {0, 1}) with the masks to vote over stacked
            along ``dim``, e.g. (B, K, H, W) for K samples per image.
        dim: the axis that holds the masks being combined.

    Returns:
        A float tensor of 0s and 1s with ``dim`` removed, e.g. (B, H, W): 1 where more than
        half of the masks are 1.

    Example:
        >>> raters = torch.tensor([[[1.0], [1.0], [0.0], [0.0]]])  # (B=1, R=4, 1)
        >>> majority_vote(raters)  # a 2-2 tie is background
        tensor([[0.]])
    """
    if masks.dim() == 0:
        raise ValueError("majority_vote expects masks stacked along an axis, got a scalar tensor")
    if masks.dtype != torch.bool and not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError(
            "majority_vote expects binary masks (0/1 or bool); threshold probabilities first, "
            "e.g. majority_vote(probs > 0.5)"
        )
    count = masks.to(torch.int64).sum(dim=dim)
    return (2 * count > masks.shape[dim]).to(torch.float32)
