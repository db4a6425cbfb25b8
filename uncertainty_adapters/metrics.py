"""Metrics for sets of plausible segmentations: the paper's protocol (DESIGN.md 7).

A model that samples K masks per image is compared with the R masks drawn by human raters:

- ``dice``: Dice between the majority vote of the K samples and the majority vote of the raters.
- ``ged``: generalized energy distance (Kohl et al. 2018) with d = 1 - IoU.
- ``hungarian_iou``: Hungarian-matched IoU between the sample set and the rater set.
- ``diversity``: mean pairwise (1 - IoU) among the samples.
- ``s_ncc``: PHiSeg's S_NCC (Baumgartner et al. 2019), how well the samples' spread predicts where
  they disagree with each rater.
- ``soft_dice``: Dice of the thresholded mean maps, averaged over thresholds (BerDiff).
- ``ece``: expected calibration error of the samples' mean probability against the raters' mean.

Every metric takes masks shaped (B, K, H, W) for samples and (B, R, H, W) for raters, and returns
one float32 value per image on the input's device, or their mean or sum with
``reduction="mean"`` / ``"sum"``. Raters are binary (bool, or numbers in {0, 1}); so are the
samples of ``dice``, ``ged``, ``hungarian_iou`` and ``diversity``, while ``s_ncc``,
``soft_dice`` and ``ece`` also take foreground probabilities in [0, 1]. Two empty masks agree
perfectly: IoU(empty, empty) = 1 and Dice(empty, empty) = 1 (the official UA-SAM code, whose IoU
is intersection / (union + 1e-8), scores them d = 1 - IoU = 1 instead).

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

from uncertainty_adapters.sampling import majority_vote

__all__ = ["iou_matrix", "dice", "ged", "hungarian_iou", "diversity", "s_ncc", "soft_dice", "ece"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_masks(name: str, masks: torch.Tensor, example: str, probabilities: bool = False) -> None:
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
    if masks.dtype == torch.bool:
        return
    if probabilities:
        if not bool(((masks >= 0) & (masks <= 1)).all()):
            raise ValueError(
                f"{name} must be binary masks or foreground probabilities in [0, 1], got values "
                f"outside [0, 1] (or NaN) in a {masks.dtype} tensor; apply a sigmoid to logits first"
            )
    elif not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError(
            f"{name} must be binary (bool or 0/1), got values outside {{0, 1}} in a "
            f"{masks.dtype} tensor; threshold probabilities first, e.g. {name} > 0.5"
        )


def _check_pair(samples: torch.Tensor, raters: torch.Tensor, probabilities: bool = False) -> None:
    _check_masks("samples", samples, "(B, K, H, W)", probabilities)
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
    from scipy.optimize import linear_sum_assignment  # imported where used: scipy is slow to import

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


_XENT_EPS = 1e-8
_CONSTANT_STD = 1e-6  # population std (nats) below which a cross-entropy map counts as constant


def _ncc(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Zero-normalised cross-correlation of maps a (..., P) and v (..., P) along the last axis,
    with population standard deviations; NaN where either map is constant."""
    a = a - a.mean(-1, keepdim=True)
    v = v - v.mean(-1, keepdim=True)
    std_a = a.pow(2).mean(-1).sqrt()
    std_v = v.pow(2).mean(-1).sqrt()
    value = (a * v).mean(-1) / (std_a * std_v)
    constant = (std_a < _CONSTANT_STD) | (std_v < _CONSTANT_STD)
    return torch.where(constant, torch.full_like(value, float("nan")), value)


def s_ncc(samples: torch.Tensor, raters: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """S_NCC of PHiSeg (Baumgartner et al. 2019): does the samples' spread mark where they miss?

    With the two-class cross-entropy CE(t, p) = -(t log(p + 1e-8) + (1 - t) log(1 - p + 1e-8))
    taken per pixel, and s_1 .. s_K the samples, y_1 .. y_R the raters:

        gamma = mean_i CE(target = mean_k s_k, prediction = s_i)     (the samples' spread)
        e_j   = mean_i CE(target = y_j,        prediction = s_i)     (their error against rater j)
        S_NCC = mean_j NCC(gamma, e_j)

    NCC is the zero-normalised cross-correlation over the image's pixels, with population standard
    deviations: mean((a - mean a)(v - mean v)) / (std a * std v), in [-1, 1].

    Args:
        samples: binary masks or foreground probabilities in [0, 1], (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar
            (over the images where S_NCC is defined; NaN when it is defined on none).

    Returns:
        float32 S_NCC in [-1, 1] (higher is better). NCC is undefined for a constant map, so an
        image whose gamma or any e_j is constant (population std below 1e-6 nats) gets NaN, never
        a silent 0: e.g. K identical binary samples (a deterministic model) give gamma = 0
        everywhere. Count and drop NaN when averaging (``torch.nanmean``).

    Example:
        >>> samples = torch.tensor([[[[1., 1., 0., 0.]], [[1., 0., 0., 0.]]]])  # (1, 2, 1, 4)
        >>> raters = torch.tensor([[[[1., 0., 0., 0.]]]])  # (1, 1, 1, 4)
        >>> s_ncc(samples, raters)  # they disagree exactly where they miss the rater
        tensor([1.])
        >>> s_ncc(samples[:, :1].expand(1, 2, 1, 4), raters)  # identical samples: undefined
        tensor([nan])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters, probabilities=True)
    s = samples.flatten(2).to(torch.float64)
    y = raters.flatten(2).to(torch.float64)
    # CE is linear in its target, so the mean over the samples folds into two mean log maps.
    log_fg = torch.log(s + _XENT_EPS).mean(1, keepdim=True)  # (B, 1, P): mean_i log(s_i + eps)
    log_bg = torch.log(1 - s + _XENT_EPS).mean(1, keepdim=True)
    mean = s.mean(1, keepdim=True)
    gamma = -(mean * log_fg + (1 - mean) * log_bg)  # (B, 1, P)
    errors = -(y * log_fg + (1 - y) * log_bg)  # (B, R, P)
    per_rater = _ncc(gamma, errors)  # (B, R)
    values = per_rater.mean(1).to(torch.float32)  # NaN when any rater's NCC is undefined
    if reduction == "none":
        return values
    defined = values[~values.isnan()]
    if defined.numel() == 0:
        return torch.tensor(float("nan"), device=values.device)
    return _reduce(defined, reduction)


SOFT_DICE_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def soft_dice(
    samples: torch.Tensor,
    raters: torch.Tensor,
    thresholds: tuple[float, ...] = SOFT_DICE_THRESHOLDS,
    reduction: str = "none",
) -> torch.Tensor:
    """Soft Dice (BerDiff): Dice of the thresholded mean maps, averaged over thresholds.

    ``mean over t of Dice(mean_k s_k > t, mean_r y_r > t)``, with Dice(empty, empty) = 1.

    Args:
        samples: binary masks or foreground probabilities in [0, 1], (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        thresholds: the levels t, each in [0, 1).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 soft Dice in [0, 1] (higher is better).

    Example:
        >>> samples = torch.tensor([[[[1., 1.]], [[1., 0.]]]])  # mean map [1, 0.5]
        >>> raters = torch.tensor([[[[1., 0.]]]])  # mean map [1, 0]
        >>> soft_dice(samples, raters)  # t = 0.1, 0.3: Dice 2/3; t = 0.5, 0.7, 0.9: 1
        tensor([0.8667])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters, probabilities=True)
    if not thresholds or any(not 0 <= float(t) < 1 for t in thresholds):
        raise ValueError(f"thresholds must be a non-empty sequence of levels in [0, 1), got {thresholds!r}")
    levels = torch.tensor([float(t) for t in thresholds], dtype=torch.float32, device=samples.device)
    predicted = samples.flatten(2).to(torch.float32).mean(1)[:, None] > levels[None, :, None]  # (B, T, P)
    reference = raters.flatten(2).to(torch.float32).mean(1)[:, None] > levels[None, :, None]
    overlap = 2 * (predicted & reference).sum(-1).to(torch.float32)
    total = (predicted.sum(-1) + reference.sum(-1)).to(torch.float32)
    per_level = torch.where(total > 0, overlap / total.clamp_min(1), torch.ones_like(total))
    return _reduce(per_level.mean(1), reduction)


def ece(samples: torch.Tensor, raters: torch.Tensor, bins: int = 10, reduction: str = "none") -> torch.Tensor:
    """Expected calibration error of the samples' mean probability against the raters' mean.

    Per image, p = mean_k s_k and q = mean_r y_r at every pixel; the N pixels fall into ``bins``
    equal-width bins of p over [0, 1] (bin b holds b/bins <= p < (b+1)/bins; p = 1 goes in the
    last bin), and ``ECE = sum_b (n_b / N) |mean of p in b - mean of q in b|`` (empty bins add 0).

    Args:
        samples: binary masks or foreground probabilities in [0, 1], (B, K, H, W).
        raters: binary rater masks (B, R, H, W).
        bins: number of equal-width bins (at least 1).
        reduction: ``"none"`` for one value per image (B,), ``"mean"`` or ``"sum"`` for a scalar.

    Returns:
        float32 ECE in [0, 1] (lower is better); 0 when p equals q at every pixel.

    Example:
        >>> samples = torch.tensor([[[[1., 0.]], [[1., 0.]]]])  # p = [1, 0]
        >>> raters = torch.tensor([[[[1., 1.]], [[1., 0.]]]])  # q = [1, 0.5]
        >>> ece(samples, raters)  # bin 0: |0 - 0.5| * 1/2; bin 9: |1 - 1| * 1/2
        tensor([0.2500])
    """
    _check_reduction(reduction)
    _check_pair(samples, raters, probabilities=True)
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    p = samples.flatten(2).to(torch.float64).mean(1)  # (B, P)
    q = raters.flatten(2).to(torch.float64).mean(1)
    index = (p * bins).long().clamp_(0, bins - 1)
    gap = torch.zeros(p.shape[0], bins, dtype=torch.float64, device=p.device)
    gap.scatter_add_(1, index, p - q)  # per bin: sum of p - sum of q = n_b (mean p_b - mean q_b)
    values = gap.abs().sum(1) / p.shape[1]
    return _reduce(values.to(torch.float32), reduction)
