"""The ``refuge2:PATH`` layout: REFUGE2 fundus photographs with 7 raters' optic cup and disc masks.

Layout (folder names matched ignoring letter case, "-" and "_")::

    PATH/Training-400/<case>/<case>.jpg
    PATH/Training-400/<case>/<case>_seg_cup_1.png ... <case>_seg_cup_7.png     (0/255)
    PATH/Training-400/<case>/<case>_seg_disc_1.png ... <case>_seg_disc_7.png
    PATH/Validation-400/...   PATH/Test-400/...

As in the paper (section 3.1): train = Training-400 + Validation-400 (800 cases), test =
Test-400 (400 cases); each image is cropped to a square around the optic disc and resized to
``image_size`` (512 in the paper). The crop is centred on the bounding box of the union of the
raters' disc masks and its side is ``crop_factor`` times that box's longer side (capped at the
image's shorter side and shifted to stay inside the image). The target is the cup by default.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import torch

from .case_files import (
    case_folders,
    check_sizes,
    find_image,
    find_rater_masks,
    read_image,
    read_mask,
    require_directory,
)
from .errors import DataError
from .multi_rater import MultiRaterDataset
from .splits import check_split
from .transforms import image_to_tensor, masks_to_tensor

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {
    "train": ("Training-400", "Validation-400"),
    "test": ("Test-400",),
    "all": ("Training-400", "Validation-400", "Test-400"),
}
TARGETS = ("cup", "disc")


def _folder_key(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def disc_crop_box(disc: np.ndarray, crop_factor: float) -> tuple[int, int, int]:
    """Square crop (top, left, side) around the optic disc.

    Args:
        disc: bool (H, W), the union of the raters' disc masks (not empty).
        crop_factor: crop side in units of the disc's bounding-box longer side.
    """
    rows, cols = np.nonzero(disc)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    height, width = disc.shape
    side = min(math.ceil(crop_factor * max(bottom - top, right - left)), height, width)
    centre_y, centre_x = (top + bottom) / 2, (left + right) / 2
    crop_top = int(np.clip(round(centre_y - side / 2), 0, height - side))
    crop_left = int(np.clip(round(centre_x - side / 2), 0, width - side))
    return crop_top, crop_left, side


class REFUGE2Dataset(MultiRaterDataset):
    """REFUGE2 multi-rater optic cup (or disc) segmentation, cropped around the optic disc.

    Args:
        path: the folder holding ``Training-400``, ``Validation-400`` and ``Test-400``.
        image_size: side S of the returned images and masks (paper: 512).
        split: ``"train"`` (Training + Validation), ``"test"`` (Test) or ``"all"``.
        seed: seeds the choice of the rater mask ``mask``.
        target: ``"cup"`` (paper) or ``"disc"``.
        crop_factor: crop side / disc size; ``None`` keeps the whole image.
    """

    def __init__(
        self,
        path: str | Path,
        image_size: int = 512,
        split: str = "train",
        seed: int = 0,
        target: str = "cup",
        crop_factor: float | None = 2.0,
    ) -> None:
        super().__init__(image_size, seed)
        if target not in TARGETS:
            raise DataError(f"refuge2: unknown target {target!r}; use one of {', '.join(TARGETS)}")
        if crop_factor is not None and crop_factor < 1.0:
            raise DataError(f"refuge2: crop_factor must be >= 1 (or None), got {crop_factor}")
        self.spec = f"refuge2:{path}"
        self.target = target
        self.crop_factor = crop_factor
        self.images: list[Path] = []
        self.cup: list[list[Path]] = []
        self.disc: list[list[Path]] = []
        for folder in self._split_folders(require_directory(path, self.spec), check_split(split)):
            for case_dir in case_folders(folder, self.spec):
                self._add_case(case_dir)
        self.case_ids = [image.parent.name for image in self.images]
        self.num_raters = len(self.cup[0])
        logger.info(
            "%s: %s split has %d cases with %d raters (target %s)",
            self.spec, split, len(self), self.num_raters, target,
        )

    def _split_folders(self, root: Path, split: str) -> list[Path]:
        present = {_folder_key(p.name): p for p in root.iterdir() if p.is_dir()}
        known = {_folder_key(name) for name in SPLIT_FOLDERS["all"]}
        if not known & set(present):
            found = ", ".join(sorted(p.name for p in present.values())) or "nothing"
            raise DataError(
                f"{self.spec}: no Training-400, Validation-400 or Test-400 folder in {root} "
                f"(found: {found}); pass the folder that holds them"
            )
        wanted = SPLIT_FOLDERS[split]
        missing = [name for name in wanted if _folder_key(name) not in present]
        if len(missing) == len(wanted):
            found = ", ".join(sorted(p.name for p in present.values()))
            raise DataError(
                f"{self.spec}: the {split!r} split needs {' or '.join(wanted)} in {root} "
                f"(found: {found})"
            )
        if missing:
            logger.warning(
                "%s: no %s folder, so the %s split is smaller than the paper's",
                self.spec, " or ".join(missing), split,
            )
        return [present[_folder_key(name)] for name in wanted if name not in missing]

    def _add_case(self, case_dir: Path) -> None:
        image = find_image(case_dir)
        cup = find_rater_masks(case_dir, f"{case_dir.name}_seg_cup_")
        disc = find_rater_masks(case_dir, f"{case_dir.name}_seg_disc_")
        for part, masks in (("cup", cup), ("disc", disc)):
            if not masks:
                raise DataError(
                    f"{case_dir}: no {part} masks; expected {case_dir.name}_seg_{part}_1.png .. "
                    f"{case_dir.name}_seg_{part}_7.png"
                )
        if len(cup) != len(disc):
            raise DataError(
                f"{case_dir}: {len(cup)} cup masks but {len(disc)} disc masks; every rater "
                "needs both"
            )
        if self.cup and len(cup) != len(self.cup[0]):
            raise DataError(
                f"{case_dir}: case {case_dir.name!r} has {len(cup)} raters but case "
                f"{self.images[0].parent.name!r} has {len(self.cup[0])}; give every case the "
                "same raters"
            )
        check_sizes(image, cup + disc)
        self.images.append(image)
        self.cup.append(cup)
        self.disc.append(disc)

    def load_case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(self.images[index])
        disc = [read_mask(p) for p in self.disc[index]]
        masks = disc if self.target == "disc" else [read_mask(p) for p in self.cup[index]]
        if self.crop_factor is not None:
            union = np.logical_or.reduce(disc)
            if not union.any():
                raise DataError(
                    f"{self.images[index].parent}: every disc mask is empty, so the optic disc "
                    "cannot be located for cropping; fix the _seg_disc_ masks or pass "
                    "crop_factor=None"
                )
            top, left, side = disc_crop_box(union, self.crop_factor)
            image = image[top : top + side, left : left + side]
            masks = [m[top : top + side, left : left + side] for m in masks]
        return image_to_tensor(image, str(self.images[index])), masks_to_tensor(masks)
