"""Pixelwise uncertainty maps from K sampled probability maps (the paper's uncertainty map).

Sampling the latent K times gives K foreground-probability maps per image, ``probs`` (B, K, H, W).
Three maps summarise them: the mean probability, the variance across samples, and the binary
entropy of the mean probability in bits (0 where every sample is certain and agrees, 1 where the
mean probability is 0.5).
"""

from __future__ import annotations

import math

import torch

__all__ = ["mean_probability", "variance", "entropy", "uncertainty_maps"]


def _check_probs(probs: torch.Tensor) -> torch.Tensor:
    if not isinstance(probs, torch.Tensor):
        raise TypeError(f"probs must be a torch.Tensor (B, K, H, W), got {type(probs).__name__}")
    if probs.dim() != 4:
        raise ValueError(
            f"probs must have shape (B, K, H, W) (K sampled probability maps per image), got "
            f"{tuple(probs.shape)} ({probs.dim()} dims); for one image use probs[None], for "
            "(B, K, 1, H, W) use probs.squeeze(2)"
        )
    if probs.shape[1] == 0:
        raise ValueError(f"probs holds no samples: shape {tuple(probs.shape)} has 0 along dim 1")
    if not probs.is_floating_point():
        probs = probs.to(torch.float32)
    if not bool(((probs >= 0) & (probs <= 1)).all()):
        raise ValueError(
            f"probs must be probabilities in [0, 1], got values in [{probs.min().item():.4g}, "
            f"{probs.max().item():.4g}]; apply a sigmoid to logits first, e.g. logits.sigmoid()"
        )
    return probs


def _binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    return (torch.special.entr(p) + torch.special.entr(1 - p)) / math.log(2)


def mean_probability(probs: torch.Tensor) -> torch.Tensor:
    """Mean foreground probability across the K samples.

    Args:
        probs: sampled probability maps (B, K, H, W) in [0, 1].

    Returns:
        The mean map (B, H, W), in the input's floating dtype (float32 for integer input).

    Example:
        >>> mean_probability(torch.tensor([[[[0.2]], [[0.6]]]]))  # (1, 2, 1, 1)
        tensor([[[0.4000]]])
    """
    return _check_probs(probs).mean(dim=1)


def variance(probs: torch.Tensor) -> torch.Tensor:
    """Variance of the foreground probability across the K samples.

    The population variance (divide by K, not K - 1), so a single sample gives 0, not NaN.

    Args:
        probs: sampled probability maps (B, K, H, W) in [0, 1].

    Returns:
        The variance map (B, H, W), in [0, 0.25].

    Example:
        >>> variance(torch.tensor([[[[0.0]], [[1.0]]]]))  # (1, 2, 1, 1)
        tensor([[[0.2500]]])
    """
    return _check_probs(probs).var(dim=1, correction=0)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Binary entropy (in bits) of the mean foreground probability.

    ``H(p) = -p log2 p - (1 - p) log2 (1 - p)`` with ``0 log 0 = 0``, so H is exactly 0 at p = 0
    and p = 1 and 1 at p = 0.5.

    Args:
        probs: sampled probability maps (B, K, H, W) in [0, 1].

    Returns:
        The entropy map (B, H, W), in [0, 1].

    Example:
        >>> entropy(torch.tensor([[[[0.0, 1.0]], [[1.0, 1.0]]]]))  # (1, 2, 1, 2), means 0.5, 1
        tensor([[[1., 0.]]])
    """
    return _binary_entropy_bits(_check_probs(probs).mean(dim=1))


def uncertainty_maps(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """All three uncertainty maps at once, validating ``probs`` a single time.

    Args:
        probs: sampled probability maps (B, K, H, W) in [0, 1].

    Returns:
        ``{"mean": ..., "variance": ..., "entropy": ...}``, each (B, H, W), as computed by
        ``mean_probability``, ``variance`` and ``entropy``.

    Example:
        >>> maps = uncertainty_maps(torch.rand(2, 8, 16, 16))
        >>> sorted(maps), maps["entropy"].shape
        (['entropy', 'mean', 'variance'], torch.Size([2, 16, 16]))
    """
    probs = _check_probs(probs)
    mean = probs.mean(dim=1)
    return {
        "mean": mean,
        "variance": probs.var(dim=1, correction=0),
        "entropy": _binary_entropy_bits(mean),
    }
