"""Metrics for sets of plausible segmentations: the paper's protocol (DESIGN.md 7).

A model that samples K masks per image is compared with the R masks drawn by human raters:

- ``dice``: Dice between the majority vote of the K samples and the majority vote of the raters.
- ``ged``: generalized energy distance (Kohl et al. 2018) with d = 1 - IoU.
- ``hungarian_iou``: Hungarian-matched IoU between the sample set and the rater set.
- ``diversity``: mean pairwise (1 - IoU) among the samples.

Every metric takes binary masks (bool, or numbers in {0, 1}) shaped (B, K, H, W) for samples and
(B, R, H, W) for raters, and returns one float32 value per image on the input's device, or their
mean or sum with ``reduction="mean"`` / ``"sum"``. Two empty masks agree perfectly: IoU(empty,
empty) = 1 and Dice(empty, empty) = 1.

Example:
    >>> import torch
    >>> import uncertainty_adapters as ua
    >>> samples = torch.rand(2, 4, 32, 32) > 0.5  # K = 4 sampled masks for each of 2 images
    >>> raters = torch.rand(2, 3, 32, 32) > 0.5  # R = 3 rater masks for each image
    >>> ua.metrics.dice(samples, raters).shape  # one value per image
    torch.Size([2])
    >>> ua.metrics.ged(samples, raters, reduction="mean").shape  # or their mean
    torch.Size([])
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import linear_sum_assignment

from uncertainty_adapters.sampling import majority_vote

__all__ = ["iou_matrix", "dice", "ged", "hungarian_iou", "diversity"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_masks(name: str, masks: torch.Tensor, example: str) -> None:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of binary masks, got {type(masks).__name__}"
        )
    if masks.dim() != 4:
        raise ValueError(
            f"{name} must have shape {example}, got {tuple(masks.shape)} ({masks.dim()} dims); "
            f"stack the masks of one image along dim 1 and add a batch dim, e.g. {name}[None] "
            "for a single image"
        )
    if masks.shape[1] == 0:
        raise ValueError(f"{name} holds no masks: shape {tuple(masks.shape)} has 0 along dim 1")
    if masks.dtype != torch.bool and not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError(
            f"{name} must be binary (bool or 0/1), got values outside {{0, 1}} in a "
            f"{masks.dtype} tensor; threshold probabilities first, e.g. {name} > 0.5"
        )


def _check_pair(samples: torch.Tensor, raters: torch.Tensor) -> None:
    _check_masks("samples", samples, "(B, K, H, W)")
    _check_masks("raters", raters, "(B, R, H, W)")
    if samples.shape[0] != raters.shape[0]:
        raise ValueError(
            f"samples and raters must hold the same number of images, got batch {samples.shape[0]} "
            f"(samples {tuple(samples.shape)}) and {raters.shape[0]} (raters {tuple(raters.shape)})"
        )
    if samples.shape[2:] != raters.shape[2:]:
        raise ValueError(
            f"samples and raters must have the same spatial size, got {tuple(samples.shape[2:])} "
            f"(samples {tuple(samples.shape)}) and {tuple(raters.shape[2:])} "
            f"(raters {tuple(raters.shape)}); resize one to the other first"
        )
    if samples.device != raters.device:
        raise ValueError(
            f"samples and raters must be on the same device, got {samples.device} and "
            f"{raters.device}; move one with .to(other.device)"
        )


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every mask in ``a`` (B, N, H, W) with every mask in ``b`` (B, M, H, W): (B, N, M)."""
    a = a.flatten(2).to(torch.float32)
    b = b.flatten(2).to(torch.float32)
    intersection = a @ b.transpose(1, 2)
    union = a.sum(-1)[:, :, None] + b.sum(-1)[:, None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU between two sets of binary masks, per image.

    Args:
        a: binary masks (B, N, H, W).
        b: binary masks (B, M, H, W), same B, H, W as ``a``.

    Returns:
        A float32 tensor (B, N, M) with IoU(a[:, i], b[:, j]) at [:, i, j]; IoU(empty, empty) = 1
        and IoU(empty, non-empty) = 0.

    Example:
        >>> a = torch.tensor([[[[1, 1], [0, 0]]]])  # (1, 1, 2, 2)
        >>> b = torch.tensor([[[[1, 0], [0, 0]], [[0, 0], [0, 0]]]])  # (1, 2, 2, 2)
        >>> iou_matrix(a, b)
        tensor([[[0.5000, 0.0000]]])
    """
    _check_masks("a", a, "(B, N, H, W)")
    _check_masks("b", b, "(B, M, H, W)")
    if a.shape[0] != b.shape[0] or a.shape[2:] != b.shape[2:]:
        raise ValueError(
            f"a and b must share batch and spatial size, got a {tuple(a.shape)} and "
            f"b {tuple(b.shape)}"
        )
    return _iou(a, b)


def dice(samples: torch.Tensor, raters: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Dice between the majority vote of the samples and the majority vote of the raters.

    The votes are strict majorities (see ``majority_vote``): with an even count a tie is background.

    Args:
        samples: binary predicted masks (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 Dice in [0, 1]; Dice(empty, empty) = 1.

    Example:
        >>> samples = torch.tensor([[[[1, 1]], [[1, 0]], [[1, 1]]]])  # (1, 3, 1, 2), vote [1, 1]
        >>> raters = torch.tensor([[[[1, 0]]]])  # (1, 1, 1, 2)
        >>> dice(samples, raters)
        tensor([0.6667])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters)
    predicted = majority_vote(samples).flatten(1)
    reference = majority_vote(raters).flatten(1)
    overlap = 2 * (predicted * reference).sum(-1)
    total = predicted.sum(-1) + reference.sum(-1)
    values = torch.where(total > 0, overlap / total.clamp_min(1), torch.ones_like(total))
    return _reduce(values, reduction)


def ged(samples: torch.Tensor, raters: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Generalized energy distance (squared, Kohl et al. 2018) with d = 1 - IoU.

    ``GED^2 = 2 E[d(S, Y)] - E[d(S, S')] - E[d(Y, Y')]``, with S, S' drawn from the samples and
    Y, Y' from the raters. Each expectation is the mean over the full pairwise matrix, diagonal
    included (so E[d(S, S')] averages K * K terms, K of them zero), as in the Probabilistic U-Net
    reference evaluation; this keeps GED = 0 for identical sets and GED >= 0 in general.

    Args:
        samples: binary predicted masks (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 GED^2 (lower is better); 0 when both sets hold the same masks.

    Example:
        >>> samples = torch.tensor([[[[1, 0]]]])  # (1, 1, 1, 2)
        >>> raters = torch.tensor([[[[1, 0]], [[1, 1]]]])  # (1, 2, 1, 2)
        >>> ged(samples, raters)  # 2 * 0.25 - 0 - 0.25
        tensor([0.2500])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters)
    cross = 1 - _iou(samples, raters).mean((1, 2))
    within_samples = 1 - _iou(samples, samples).mean((1, 2))
    within_raters = 1 - _iou(raters, raters).mean((1, 2))
    return _reduce(2 * cross - within_samples - within_raters, reduction)


def hungarian_iou(
    samples: torch.Tensor, raters: torch.Tensor, reduction: str = "none"
) -> torch.Tensor:
    """Hungarian-matched IoU between the sample set and the rater set.

    When K != R both sets are repeated to lcm(K, R) masks (each sample appears lcm / K times,
    each rater lcm / R times), then a one-to-one matching maximises the total IoU
    (``scipy.optimize.linear_sum_assignment``); the score is the mean IoU of the matched pairs.

    Args:
        samples: binary predicted masks (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 matched IoU in [0, 1] (higher is better); 1 when both sets hold the same masks.

    Example:
        >>> samples = torch.tensor([[[[1, 0]], [[0, 1]]]])  # (1, 2, 1, 2)
        >>> raters = torch.tensor([[[[0, 1]], [[1, 0]]]])  # same masks, other order
        >>> hungarian_iou(samples, raters)
        tensor([1.])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters)
    num_samples, num_raters = samples.shape[1], raters.shape[1]
    size = math.lcm(num_samples, num_raters)
    iou = _iou(samples, raters).repeat(1, size // num_samples, size // num_raters)
    iou_host = iou.detach().cpu().numpy()
    matched = []
    for image in iou_host:
        rows, cols = linear_sum_assignment(image, maximize=True)
        matched.append(float(image[rows, cols].mean()))
    values = torch.tensor(matched, dtype=torch.float32, device=samples.device)
    return _reduce(values, reduction)


def diversity(samples: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """Mean pairwise (1 - IoU) over the distinct pairs i < j of the K samples.

    Args:
        samples: binary predicted masks (B, K, H, W).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 diversity in [0, 1]: 0 for identical samples (and for K = 1), 1 for samples
        that pairwise share no pixel.

    Example:
        >>> samples = torch.tensor([[[[1, 0]], [[0, 1]], [[0, 1]]]])  # (1, 3, 1, 2)
        >>> diversity(samples)  # pairs: 1, 1, 0
        tensor([0.6667])
    """
    _check_reduction(reduction)
    _check_masks("samples", samples, "(B, K, H, W)")
    num_samples = samples.shape[1]
    if num_samples == 1:
        values = torch.zeros(samples.shape[0], dtype=torch.float32, device=samples.device)
        return _reduce(values, reduction)
    distance = 1 - _iou(samples, samples)
    upper = torch.triu(distance, diagonal=1).sum((1, 2))
    values = upper / (num_samples * (num_samples - 1) / 2)
    return _reduce(values, reduction)
