"""The generic ``folder:PATH`` layout: any number of raters per case, one folder per case.

Layout::

    PATH/<case>/<case>.png            (or .jpg/.jpeg; grayscale or RGB)
    PATH/<case>/<case>_seg_1.png      rater 1's mask (0/1 or 0/255)
    ...
    PATH/<case>/<case>_seg_<N>.png    rater N's mask, N >= 1, the same N for every case

Split: the case ids (folder names) are sorted, permuted with ``split_seed`` and the first
floor(0.8 * cases) form train, the rest test (``splits.split_cases``).
"""

from __future__ import annotations

import logging
from pathlib import Path

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
from .splits import split_cases
from .transforms import image_to_tensor, masks_to_tensor

logger = logging.getLogger(__name__)


class FolderDataset(MultiRaterDataset):
    """Multi-rater cases stored as ``PATH/<case>/<case>.png`` + ``<case>_seg_<k>.png``.

    Args:
        path: the folder that holds one sub-folder per case.
        image_size: side S of the returned images and masks.
        split: ``"train"``, ``"test"`` or ``"all"``.
        seed: seeds the choice of the rater mask ``mask``.
        split_seed: seeds the train/test permutation.
        train_fraction: share of cases in train.
    """

    def __init__(
        self,
        path: str | Path,
        image_size: int = 256,
        split: str = "train",
        seed: int = 0,
        split_seed: int = 0,
        train_fraction: float = 0.8,
    ) -> None:
        super().__init__(image_size, seed)
        spec = f"folder:{path}"
        root = require_directory(path, spec)
        cases = case_folders(root, spec)
        images = [find_image(case_dir) for case_dir in cases]
        masks = [self._rater_masks(case_dir) for case_dir in cases]
        for case_dir, case_masks in zip(cases, masks):
            if len(case_masks) != len(masks[0]):
                raise DataError(
                    f"{case_dir}: case {case_dir.name!r} has {len(case_masks)} rater masks but "
                    f"case {cases[0].name!r} has {len(masks[0])}; give every case the same "
                    "number of raters"
                )
        chosen = split_cases([c.name for c in cases], split, split_seed, train_fraction)
        if not chosen:
            raise DataError(
                f"{spec}: the {split!r} split of {len(cases)} case(s) is empty; add cases or "
                "use split='all'"
            )
        self.images = [images[i] for i in chosen]
        self.masks = [masks[i] for i in chosen]
        for image, case_masks in zip(self.images, self.masks):
            check_sizes(image, case_masks)
        self.case_ids = [image.parent.name for image in self.images]
        self.num_raters = len(self.masks[0])
        logger.info(
            "%s: %s split has %d cases with %d raters", spec, split, len(self), self.num_raters
        )

    @staticmethod
    def _rater_masks(case_dir: Path) -> list[Path]:
        masks = find_rater_masks(case_dir, f"{case_dir.name}_seg_")
        if not masks:
            raise DataError(
                f"{case_dir}: no rater masks; add {case_dir.name}_seg_1.png (one PNG per rater, "
                "numbered from 1)"
            )
        return masks

    def load_case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = image_to_tensor(read_image(self.images[index]), str(self.images[index]))
        return image, masks_to_tensor([read_mask(p) for p in self.masks[index]])
