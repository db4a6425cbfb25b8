"""Which raters' masks a training step learns from: the ``raters_per_image`` preset field.

'one' (the paper, section 3.2): each image of a step comes with one rater's mask, drawn at
random per image and epoch (the dataset's ``mask``); a step holds B images.

'all': each image of a step comes with every one of its R raters' masks, so a step holds B / R
images, each R times, with the raters' masks in turn. The step then shows the model the same
image with masks that differ, and only z can tell them apart: the reconstruction term rewards a
posterior that separates the raters from the first step on, instead of relying on the draws of
later epochs to bring the same image back with another rater (why: docs/results.md, "Why the
latent takes hold on some seeds only").

The budget is the same as with 'one': a step still holds B (image, mask) pairs and an epoch the
same number of steps, so an epoch sees B / R images a step, a fresh random 1 / R of the training
images each epoch (`all_raters_sampler`). The learning-rate schedule, early stopping and the
checkpoints' position in the epoch therefore mean what they mean with 'one'.

Example:
    >>> images_per_step(batch_size=16, num_raters=4)
    4
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch.utils.data import RandomSampler

#: Values of `Preset.raters_per_image`.
RATERS_PER_IMAGE = ("one", "all")


def images_per_step(batch_size: int, num_raters: int) -> int:
    """Images in a step of ``batch_size`` (image, mask) pairs under 'all': batch_size / num_raters.

    Raises:
        ValueError: unless ``batch_size`` is a positive multiple of ``num_raters``; the message
            names the nearest batch sizes that are.
    """
    if num_raters < 1:
        raise ValueError(f"raters_per_image='all' needs at least one rater per image, got {num_raters}")
    if batch_size < num_raters or batch_size % num_raters:
        lower = max(num_raters, batch_size // num_raters * num_raters)
        upper = (batch_size // num_raters + 1) * num_raters
        sizes = f"{lower} or {upper}" if lower != upper else f"{upper}"
        raise ValueError(
            f"raters_per_image='all' trains each image with all of its {num_raters} raters in one step, so the "
            f"batch size must be a multiple of {num_raters}; got {batch_size}. Use --batch-size {sizes}, "
            f"or --raters-per-image one"
        )
    return batch_size // num_raters


def all_raters_sampler(data: Sized, steps_per_epoch: int, images_per_step: int,
                       generator: torch.Generator) -> RandomSampler:
    """A sampler of ``steps_per_epoch * images_per_step`` distinct items a pass: the head of a
    fresh random permutation of ``data`` each epoch (torch's `RandomSampler` with
    ``num_samples``; Accelerate's seedable sampler keeps it, so the draw is a function of
    the seed and the epoch and resume is exact)."""
    count = steps_per_epoch * images_per_step
    if count > len(data):
        raise ValueError(f"an epoch of {steps_per_epoch} steps x {images_per_step} images needs {count} items; "
                         f"the data has {len(data)}")
    return RandomSampler(data, replacement=False, num_samples=count, generator=generator)


def with_every_rater(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch of b images with R raters each -> b * R (image, rater) pairs.

    Every per-image entry (a tensor or list whose first dimension is b) is repeated R times in
    place (image i's copies are rows i*R .. i*R + R-1); ``mask`` becomes the raters' masks in
    turn, (b * R, 1, H, W), in the dtype of the batch's ``mask``; ``masks`` (b, R, H, W) is
    repeated like the rest, so each pair still carries all of its image's raters.
    """
    masks = batch["masks"]
    images, raters = masks.shape[:2]
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == images:
            out[key] = value.repeat_interleave(raters, dim=0)
        elif isinstance(value, (list, tuple)) and len(value) == images:
            out[key] = [item for item in value for _ in range(raters)]
        else:
            out[key] = value
    out["mask"] = masks.reshape(images * raters, 1, *masks.shape[2:]).to(batch["mask"].dtype)
    return out
