"""Array conversions shared by every dataset: image scaling to [0, 1], mask binarisation, resizing.

Images become float32 (3, H, W) tensors in [0, 1] (grayscale replicated to three channels, as SAM
expects RGB); rater masks become float32 (R, H, W) tensors of 0s and 1s. Resizing to the model's
square input uses antialiased bilinear interpolation for images and nearest-neighbour for masks,
so masks stay binary. Images are resized to S x S without keeping the aspect ratio.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError, NonBinaryMaskWarning


def image_to_tensor(image: np.ndarray, source: str) -> torch.Tensor:
    """Convert an image array to a float32 (3, H, W) tensor in [0, 1].

    Args:
        image: (H, W) grayscale, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA (alpha dropped).
            uint8 is divided by 255; any other type is used as is when it lies in [0, 1] and
            min-max scaled to [0, 1] otherwise. NaN or infinite values raise `DataError`.
        source: what the image is (a file, a pickle entry), named in error messages.

    Returns:
        float32 tensor of shape (3, H, W).
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., :3]
    elif array.ndim != 2:
        raise DataError(
            f"{source}: expected a (H, W) grayscale or (H, W, 3) colour image, got shape "
            f"{tuple(array.shape)}; save it as a 2-D grayscale or RGB image"
        )
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    else:
        scaled = array.astype(np.float32)
        finite = np.isfinite(scaled)
        if not finite.all():
            raise DataError(
                f"{source}: the image holds NaN or infinite values ({scaled.size - int(finite.sum())} of "
                f"{scaled.size}), which would train on garbage; the data is damaged or masks pixels with "
                "NaN. Replace them (e.g. numpy.nan_to_num) and save the data again"
            )
        low, high = float(scaled.min()), float(scaled.max())
        if low < 0.0 or high > 1.0:
            scaled = (scaled - low) / (high - low) if high > low else np.zeros_like(scaled)
    tensor = torch.from_numpy(np.ascontiguousarray(scaled))
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(-1)
    return tensor.permute(2, 0, 1).expand(3, -1, -1).contiguous()


def binarize_mask(mask: np.ndarray, source: str) -> np.ndarray:
    """Turn a rater mask into a bool array, warning when it is not strictly binary.

    A mask whose values are all 0 or its maximum (0/1, 0/255, bool) is binary: foreground is
    the maximum. Any other mask (soft labels, JPEG-style artefacts) is thresholded at half its
    maximum with a :class:`NonBinaryMaskWarning` naming ``source``; it is never done silently.

    Args:
        mask: (H, W) array of numbers or bools.
        source: the file or entry the mask came from, named in the warning and errors.

    Returns:
        bool array of shape (H, W).
    """
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise DataError(
            f"{source}: a rater mask must be 2-D (H, W), got shape {tuple(array.shape)}; "
            "save each rater's mask as a single-channel image"
        )
    if array.dtype == np.bool_:
        return array
    if not np.isfinite(array).all() or array.min() < 0:
        raise DataError(
            f"{source}: a rater mask must hold non-negative finite values (0/1 or 0/255), "
            f"got a minimum of {array.min()}; re-export the mask as 0/1 or 0/255"
        )
    peak = array.max()
    if peak == 0:
        return np.zeros(array.shape, dtype=bool)
    if np.isin(array, (0, peak)).all():
        return array == peak
    warnings.warn(
        f"{source}: mask is not binary (values besides 0 and {peak:g}); thresholding at "
        f"{peak / 2:g}. Save masks as 0/1 or 0/255 to silence this.",
        NonBinaryMaskWarning,
        stacklevel=2,
    )
    return array > peak / 2


def masks_to_tensor(masks: list[np.ndarray]) -> torch.Tensor:
    """Stack R bool (H, W) masks into a float32 (R, H, W) tensor of 0s and 1s."""
    return torch.from_numpy(np.stack(masks).astype(np.float32))


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (C, H, W) image to (C, size, size), bilinear with antialiasing, kept in [0, 1]."""
    if image.shape[-2:] == (size, size):
        return image
    resized = F.interpolate(
        image.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.squeeze(0).clamp_(0.0, 1.0)


def resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (R, H, W) binary masks to (R, size, size), nearest-neighbour so they stay binary."""
    if masks.shape[-2:] == (size, size):
        return masks
    return F.interpolate(masks.unsqueeze(0), size=(size, size), mode="nearest-exact").squeeze(0)
