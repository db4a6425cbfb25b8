"""Prompts for SAM's prompt encoder, and how to derive them from a ground-truth mask.

UA-SAM trains and is evaluated with one point prompt per image (paper section 3.2); a box, a
point and a box together, or one point per connected component of the mask ('component-points':
a click on every lesion, as a user asked to outline all lesions would give) are the other modes
(`PROMPT_MODES`).

Coordinates follow segment-anything's convention: (x, y) = (column, row) in pixels of the
encoder's input image (the S x S image given to the model). A prompt at integer (x, y) names
pixel [y, x]: segment-anything's ``PromptEncoder`` adds 0.5 itself to move to the pixel centre
before normalising by S, so no half-pixel offset is added here. Boxes are (x0, y0, x1, y1) with
the corners on the first and last foreground pixels (inclusive), as segment-anything's own
``batched_mask_to_box`` makes them.

The samplers take an optional ``torch.Generator`` for reproducible prompts and are vectorised
over the batch (no Python loop), except the connected-component labelling of
`component_point_prompts`, which runs image by image on the CPU (``scipy.ndimage.label``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PROMPT_MODES = ("point", "box", "point+box", "component-points")
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


@dataclass
class Prompts:
    """A batch of prompts, one prompt set per image.

    Attributes:
        points: (B, P, 2) float pixel coordinates (x, y) in the encoder's input frame, or None.
        labels: (B, P) labels of the points (1 foreground, 0 background), or None (iff points is).
        boxes: (B, 4) float boxes (x0, y0, x1, y1) in the same frame, or None.
    """

    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    boxes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.points is None and self.boxes is None:
            raise ValueError("Prompts needs points (with labels), boxes, or both")
        if (self.points is None) != (self.labels is None):
            raise ValueError("Prompts.points and Prompts.labels go together: give both or neither")
        if self.points is not None:
            if self.points.dim() != 3 or self.points.shape[-1] != 2:
                raise ValueError(f"Prompts.points must be (B, P, 2) pixel (x, y), got {tuple(self.points.shape)}")
            if tuple(self.labels.shape) != tuple(self.points.shape[:2]):
                raise ValueError(
                    f"Prompts.labels must be (B, P) = {tuple(self.points.shape[:2])} to match the "
                    f"points, got {tuple(self.labels.shape)}"
                )
        if self.boxes is not None and (self.boxes.dim() != 2 or self.boxes.shape[-1] != 4):
            raise ValueError(f"Prompts.boxes must be (B, 4) xyxy, got {tuple(self.boxes.shape)}")
        if self.points is not None and self.boxes is not None and self.points.shape[0] != self.boxes.shape[0]:
            raise ValueError(
                f"Prompts.points has {self.points.shape[0]} prompt sets but Prompts.boxes has "
                f"{self.boxes.shape[0]}; give one of each per image"
            )

    @property
    def batch_size(self) -> int:
        return (self.points if self.points is not None else self.boxes).shape[0]

    def repeat_interleave(self, k: int) -> "Prompts":
        """Each prompt set repeated k times in a row (image-major), for K hypotheses per image."""
        return Prompts(*(None if t is None else t.repeat_interleave(k, dim=0) for t in self._fields()))

    def to(self, device: torch.device | str) -> "Prompts":
        return Prompts(*(None if t is None else t.to(device) for t in self._fields()))

    def _fields(self) -> tuple[torch.Tensor | None, ...]:
        return self.points, self.labels, self.boxes


def _foreground(masks: torch.Tensor, name: str, batch: int | None = None) -> torch.Tensor:
    """(B, R, H, W) masks -> (B, H, W) bool: foreground in any of the R channels (> 0.5)."""
    if masks.dim() != 4 or (batch is not None and masks.shape[0] != batch):
        expected = "(B, R, H, W)" if batch is None else f"({batch}, R, H, W)"
        raise ValueError(f"{name} must be binary masks of shape {expected}, got {tuple(masks.shape)}")
    fg = masks if masks.dtype == torch.bool else masks > 0.5
    return fg.any(dim=1)


def _single_mask_foreground(masks: torch.Tensor) -> torch.Tensor:
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must be (B, 1, H, W), got {tuple(masks.shape)}")
    return _foreground(masks, "masks")


def _with_fallback(fg: torch.Tensor, fallback: torch.Tensor | None) -> torch.Tensor:
    """Per image: ``fg`` where it has foreground, else the union of ``fallback``'s channels."""
    if fallback is None:
        return fg
    backup = _foreground(fallback, "fallback", fg.shape[0])
    if backup.shape[-2:] != fg.shape[-2:]:
        raise ValueError(f"fallback masks must be {tuple(fg.shape[-2:])} like the masks, got {tuple(backup.shape[-2:])}")
    empty = ~fg.flatten(1).any(dim=1)
    return torch.where(empty[:, None, None], backup, fg)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) on ``device``, drawn on the generator's own device."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def sample_point_prompts(
    masks: torch.Tensor, generator: torch.Generator | None = None, fallback: torch.Tensor | None = None
) -> Prompts:
    """One foreground point per mask, uniformly at random, label 1.

    Rules, per image:
    1. the mask has foreground: a uniformly random foreground pixel, label 1;
    2. else ``fallback`` (e.g. all raters' masks, whose union is used) has foreground: a random
       pixel of that union, label 1;
    3. else: the image centre ((W - 1) / 2, (H - 1) / 2), label 0 (a background point, "nothing
       here"); after SAM's half-pixel shift this is exactly the centre of the image.

    Args:
        masks: (B, 1, H, W) binary masks (bool, or numbers: foreground is > 0.5).
        generator: random generator for reproducible points.
        fallback: (B, R, H, W) binary masks used for images whose mask is empty, or None.

    Returns:
        `Prompts` with points (B, 1, 2) float (x, y) and labels (B, 1) int64.
    """
    fg = _with_fallback(_single_mask_foreground(masks), fallback)
    height, width = fg.shape[-2:]
    flat = fg.flatten(1)
    scores = _uniform(tuple(flat.shape), generator, flat.device).masked_fill(~flat, -1.0)
    index = scores.argmax(dim=1)
    found = flat.any(dim=1)
    xy = torch.stack([index % width, index // width], dim=-1).to(torch.float32)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=xy.device)
    xy = torch.where(found[:, None], xy, centre)
    return Prompts(points=xy[:, None, :], labels=found.to(torch.int64)[:, None])


def component_point_prompts(
    masks: torch.Tensor,
    generator: torch.Generator | None = None,
    fallback: torch.Tensor | None = None,
    max_points: int = 8,
    min_area: int = 4,
) -> Prompts:
    """One positive point per connected component of each mask: a click on every lesion.

    Rules, per image:
    1. the mask's foreground (else, as in `sample_point_prompts`, the union of ``fallback``'s
       channels) is split into 8-connected components;
    2. components smaller than ``min_area`` pixels are dropped, unless none is that large (then
       the largest alone is kept); of the rest, the ``max_points`` largest are kept;
    3. each kept component gets one point, a uniformly random pixel of it, label 1, largest
       component first;
    4. without any foreground: the image centre with label 0, as `sample_point_prompts`.

    Images with fewer points than the batch's most are padded at (0, 0) with label -1: SAM's
    "not a point" token, with which SAM itself pads point prompts. A mask with one component
    gets exactly one point, a uniformly random pixel of it: the paper's single click.

    Args:
        masks: (B, 1, H, W) binary masks (bool, or numbers: foreground is > 0.5).
        generator: random generator for reproducible points.
        fallback: (B, R, H, W) binary masks used for images whose mask is empty, or None.
        max_points: most points per image (>= 1). min_area: smallest clicked component, pixels.

    Returns:
        `Prompts` with points (B, P, 2) float (x, y) and labels (B, P) int64, P the largest
        number of points of an image of the batch.
    """
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, int) or min_area < 1:
        raise ValueError(f"min_area must be a positive integer (pixels), got {min_area!r}")
    from scipy import ndimage  # imported where used: scipy is slow to import

    fg = _with_fallback(_single_mask_foreground(masks), fallback)
    batch, height, width = fg.shape
    labelled = np.zeros((batch, height, width), dtype=np.int64)
    chosen: list[list[int]] = []
    for b, image in enumerate(fg.cpu().numpy()):
        labelled[b], count = ndimage.label(image, structure=_EIGHT_NEIGHBOURS)
        areas = np.bincount(labelled[b].ravel(), minlength=count + 1)[1:]
        order = np.argsort(-areas, kind="stable")  # largest first, ties by label
        kept = [int(k) + 1 for k in order if areas[k] >= min_area] or [int(k) + 1 for k in order[:1]]
        chosen.append(kept[:max_points])
    points = max(1, max(len(kept) for kept in chosen))
    ids = torch.tensor([kept + [-1] * (points - len(kept)) for kept in chosen], device=fg.device)  # (B, P)
    flat = torch.from_numpy(labelled).to(fg.device).flatten(1)  # (B, HW), 0 = background
    members = flat[:, None, :] == ids[:, :, None]  # (B, P, HW); padding (-1) matches no pixel
    scores = _uniform((batch, 1, height * width), generator, fg.device).expand_as(members)
    index = scores.masked_fill(~members, -1.0).argmax(dim=-1)  # (B, P)
    xy = torch.stack([index % width, index // width], dim=-1).to(torch.float32)
    real = ids > 0
    labels = real.to(torch.int64) - (~real).to(torch.int64)  # 1 for a component, -1 padding
    empty = ~fg.flatten(1).any(dim=1)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], device=xy.device)
    xy = torch.where(real[..., None], xy, torch.zeros_like(xy))
    xy[:, 0] = torch.where(empty[:, None], centre, xy[:, 0])
    labels[:, 0] = torch.where(empty, torch.zeros_like(labels[:, 0]), labels[:, 0])
    return Prompts(points=xy, labels=labels)


def box_prompts(
    masks: torch.Tensor,
    jitter: float = 0.1,
    generator: torch.Generator | None = None,
    fallback: torch.Tensor | None = None,
) -> Prompts:
    """The bounding box of each mask, each side moved at random by up to ``jitter`` x box size.

    The box's corners sit on the first and last foreground pixels (inclusive). Each of the four
    sides moves independently by U(-jitter, jitter) times the box's width (x sides) or height
    (y sides), and the box is clipped to the image. A mask without foreground uses ``fallback``
    (union of its channels) like `sample_point_prompts`; when that is empty too, the box is the
    whole image (0, 0, W - 1, H - 1), unjittered.

    Args:
        masks: (B, 1, H, W) binary masks. jitter: >= 0; 0 gives the exact bounding box.
        generator: random generator. fallback: (B, R, H, W) binary masks, or None.

    Returns:
        `Prompts` with boxes (B, 4) float (x0, y0, x1, y1).
    """
    if not jitter >= 0:
        raise ValueError(f"jitter must be >= 0 (a fraction of the box size), got {jitter!r}")
    fg = _with_fallback(_single_mask_foreground(masks), fallback)
    batch, height, width = fg.shape
    cols, rows = fg.any(dim=1), fg.any(dim=2)  # (B, W), (B, H)
    x0, y0 = cols.to(torch.uint8).argmax(dim=1), rows.to(torch.uint8).argmax(dim=1)
    x1 = width - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    y1 = height - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    found = cols.any(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1).to(torch.float32)
    whole = torch.tensor([0.0, 0.0, width - 1, height - 1], device=boxes.device)
    boxes = torch.where(found[:, None], boxes, whole)
    if jitter > 0:
        size = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)  # (w, h, w, h)
        offsets = (2 * _uniform((batch, 4), generator, boxes.device) - 1) * jitter * size
        boxes = boxes + offsets * found[:, None]
        limit = torch.tensor([width - 1, height - 1], device=boxes.device, dtype=boxes.dtype).repeat(2)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
        lower, upper = torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])
        boxes = torch.cat([lower, upper], dim=-1)
    return Prompts(boxes=boxes)


def make_prompts(
    masks: torch.Tensor,
    mode: str = "point",
    generator: torch.Generator | None = None,
    fallback: torch.Tensor | None = None,
    jitter: float = 0.1,
) -> Prompts:
    """Prompts of one of `PROMPT_MODES` for (B, 1, H, W) masks: 'point' (the paper's single
    point, `sample_point_prompts`), 'box' (`box_prompts`), 'point+box' (both, point first), or
    'component-points' (one point per connected component, `component_point_prompts`)."""
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {', '.join(repr(m) for m in PROMPT_MODES)}, got {mode!r}")
    if mode == "component-points":
        return component_point_prompts(masks, generator, fallback)
    points = sample_point_prompts(masks, generator, fallback) if "point" in mode else None
    boxes = box_prompts(masks, jitter, generator, fallback) if "box" in mode else None
    return Prompts(
        points=points.points if points is not None else None,
        labels=points.labels if points is not None else None,
        boxes=boxes.boxes if boxes is not None else None,
    )
