"""Crisp, unambiguous synthetic shapes for pre-training a small SAM-architecture backbone.

The stand-in for SAM's natural-image pretraining (DESIGN section 8): the demo backbone learns
"segment the object under the point" on high-contrast colour images of several ellipses and
convex polygons, then is frozen before the uncertainty adapters see ambiguous lesions. Each item
is one target object of one image (or ``targets`` of them, to train the mask decoder on several
prompts per encoded image, as SAM itself was trained): its visible mask (after occlusion by
shapes drawn on top) and a point prompt inside it. The image is a pure function of (seed, index); the target object
and its point also depend on the epoch (:meth:`CrispShapes.set_epoch`), so later epochs prompt
other objects of the same images, reproducibly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .multi_rater import checked_int

_IMAGE_STREAM = 0xC415
_PROMPT_STREAM = 0x9017


class CrispShapes(Dataset):
    """Several crisp shapes per image, one prompted object per item.

    Items are dicts that ``default_collate`` batches:

    - ``image``: float32 (3, S, S) in [0, 1],
    - ``mask``: float32 (1, S, S), the visible part of the target object,
    - ``point``: float32 (2,), (x, y) = (column, row) of a pixel of the target, so
      ``mask[0, int(y), int(x)] == 1``,
    - ``case_id``: str.

    With ``targets`` = T > 1, ``mask`` is (T, S, S) and ``point`` (T, 2): T distinct objects of
    the image (drawn again when it has fewer than T that may be prompted); the first target and
    its point are the ones the item has with ``targets=1``.

    Args:
        length: number of images.
        image_size: side S (shapes are rasterised at S directly, no resizing).
        seed: seeds the images and the prompts.
        min_objects, max_objects: objects per image (inclusive).
        min_area: smallest visible area, in pixels, of an object that may be prompted.
        targets: prompted objects per item (T >= 1).
    """

    def __init__(
        self,
        length: int = 4096,
        image_size: int = 128,
        seed: int = 0,
        min_objects: int = 2,
        max_objects: int = 5,
        min_area: int = 16,
        targets: int = 1,
    ) -> None:
        if length < 1 or image_size < 16 or not 1 <= min_objects <= max_objects or targets < 1:
            raise DataError(
                "CrispShapes needs length >= 1, image_size >= 16, 1 <= min_objects <= "
                f"max_objects and targets >= 1, got length={length}, image_size={image_size}, "
                f"min_objects={min_objects}, max_objects={max_objects}, targets={targets}"
            )
        self.targets = checked_int("targets", targets)
        self.length = length
        self.image_size = image_size
        self.seed = checked_int("seed", seed)
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.min_area = min_area
        self.epoch = 0
        centres = np.arange(image_size, dtype=np.float32) + 0.5
        self._yy, self._xx = np.meshgrid(centres, centres, indexing="ij")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose target object and point the items use."""
        self.epoch = checked_int("epoch", epoch)

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render image ``index``.

        Returns:
            image: float32 (S, S, 3) in [0, 1];
            labels: int64 (S, S), 0 for background and k for the k-th object drawn (1-based);
            later objects occlude earlier ones.
        """
        rng = np.random.default_rng([self.seed, index, _IMAGE_STREAM])
        s = self.image_size
        labels = np.zeros((s, s), dtype=np.int64)
        colours = [rng.uniform(0.0, 1.0, size=3)]
        for label in range(1, int(rng.integers(self.min_objects, self.max_objects + 1)) + 1):
            labels[self._shape(rng)] = label
            colours.append(self._distinct_colour(rng, colours))
        ramp = (np.arange(s, dtype=np.float32) + 0.5) / s - 0.5
        slope = rng.uniform(-0.15, 0.15, size=(2, 3)).astype(np.float32)
        palette = np.stack(colours).astype(np.float32)
        image = palette[0] + slope[0] * ramp[:, None, None] + slope[1] * ramp[None, :, None]
        objects = labels > 0
        image[objects] = palette[labels[objects]]
        image += rng.random((s, s, 3), dtype=np.float32) * 0.07 - 0.035  # noise, std 0.02
        return np.clip(image, 0.0, 1.0, out=image), labels

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of {self.length} items")
        index %= self.length
        image, labels = self.render(index)
        areas = np.bincount(labels.ravel(), minlength=labels.max() + 1)[1:]
        candidates = np.flatnonzero(areas >= self.min_area) + 1
        if candidates.size == 0:
            candidates = np.array([int(np.argmax(areas)) + 1])
        rng = np.random.default_rng([self.seed, self.epoch, index, _PROMPT_STREAM])
        first = rng.choice(candidates)
        rest = np.setdiff1d(candidates, [first])
        rng_rest = np.random.default_rng([self.seed, self.epoch, index, _PROMPT_STREAM, 1])
        extra = rng_rest.permutation(rest)[: self.targets - 1].tolist()
        while len(extra) < self.targets - 1:  # fewer objects than targets: draw again
            extra.append(int(rng_rest.choice(candidates)))
        masks, points = [], []
        for k, label in enumerate([first, *extra]):
            target = labels == label
            rows, cols = np.nonzero(target)
            pick = int((rng if k == 0 else rng_rest).integers(rows.size))
            masks.append(target)
            points.append([cols[pick], rows[pick]])
        mask = torch.from_numpy(np.stack(masks).astype(np.float32))
        point = torch.tensor(points, dtype=torch.float32)
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
            "mask": mask,
            "point": point[0] if self.targets == 1 else point,
            "case_id": f"crisp-{index:06d}",
        }

    def _shape(self, rng: np.random.Generator) -> np.ndarray:
        """A random rotated ellipse or convex polygon as a bool (S, S) mask."""
        s = self.image_size
        cy, cx = rng.uniform(0.15, 0.85, size=2) * s
        ry, rx = rng.uniform(0.07, 0.22, size=2) * s
        rotation = rng.uniform(0.0, np.pi)
        reach = max(ry, rx) + 1.0  # the shape lies in this square window around its centre
        top, bottom = max(int(cy - reach), 0), min(int(cy + reach) + 1, s)
        left, right = max(int(cx - reach), 0), min(int(cx + reach) + 1, s)
        dy, dx = self._yy[top:bottom, left:right] - cy, self._xx[top:bottom, left:right] - cx
        v = dx * np.cos(rotation) + dy * np.sin(rotation)
        u = -dx * np.sin(rotation) + dy * np.cos(rotation)
        mask = np.zeros((s, s), dtype=bool)
        if rng.random() < 0.5:
            mask[top:bottom, left:right] = (v / rx) ** 2 + (u / ry) ** 2 <= 1.0
            return mask
        # Vertices on an ellipse at increasing angles (one per equal sector, so no slivers) are
        # in convex position, counter-clockwise in (v, u); inside = left of (or on) every edge.
        count = int(rng.integers(3, 8))
        angles = (np.arange(count) + rng.uniform(0.2, 0.8, size=count)) * (2.0 * np.pi / count)
        corners = np.stack([rx * np.cos(angles), ry * np.sin(angles)], axis=1)
        inside = np.ones(v.shape, dtype=bool)
        for start, end in zip(corners, np.roll(corners, -1, axis=0)):
            edge = end - start
            inside &= edge[0] * (u - start[1]) - edge[1] * (v - start[0]) >= 0.0
        mask[top:bottom, left:right] = inside
        return mask

    @staticmethod
    def _distinct_colour(rng: np.random.Generator, taken: list[np.ndarray]) -> np.ndarray:
        """An RGB colour at least 0.35 (Euclidean) from every colour in ``taken`` when possible."""
        best, best_gap = None, -1.0
        for _ in range(20):
            colour = rng.uniform(0.0, 1.0, size=3)
            gap = min(float(np.linalg.norm(colour - other)) for other in taken)
            if gap >= 0.35:
                return colour
            if gap > best_gap:
                best, best_gap = colour, gap
        return best
