"""The ``lidc:PATH`` data: the preprocessed LIDC-IDRI pickle of the Probabilistic U-Net port.

The pickle (stefanknegt/Probabilistic-Unet-Pytorch, ``data_lidc.pickle``) maps a key to
``{"image": 128x128 float array in [0, 1], "masks": [4 rater masks, 128x128, 0/1 or 0/255],
"series_uid": str}``. PATH is that file or, as in the port's loader, a folder whose
``*.pickle`` files are merged. A pickle can run code while it loads, so these files are read
with `plain_pickle` (containers, scalars and numpy arrays only): anything else is refused
unrun, with an error naming what the file holds.

Split, 80/20 (see splits.py):

- ``split_by="series"`` (default, recommended): whole CT series (``series_uid``) go to one side,
  in a seeded permutation, so slices of one scan never appear in both train and test.
- ``split_by="image"``: a seeded permutation of the images. Slices of one series then fall on
  both sides (neighbouring slices of one nodule are near copies), so test scores are optimistic.
- ``split_by="ordered"``: the official UA-SAM code's split: the images in pickle order (files of a
  folder in sorted name order), the first floor(0.8 N) train and the next floor(0.2 N) test
  (with N = 15096: 12076 and 3019). It too puts slices of one series on both sides, wherever a
  series straddles the cut; use it only to compare with numbers made by that code.

The paper states an 80/20 split and does not say how it was drawn; none of these is "the paper's".

Entries without ``series_uid`` make ``split_by="series"`` fall back to the image split, with a
warning. Test is cut drop-last style in every mode (the official code's test loader drops its
last incomplete batch); ``drop_last_multiple=1`` keeps every image.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .multi_rater import MultiRaterDataset
from .plain_pickle import ForbiddenPickleGlobal, load_plain_pickle
from .splits import split_cases, split_groups, split_ordered
from .transforms import binarize_mask, image_to_tensor, masks_to_tensor

logger = logging.getLogger(__name__)

SPLIT_BY = ("series", "image", "ordered")


def load_lidc_pickle(path: str | Path) -> dict[str, Any]:
    """Load the LIDC pickle at ``path`` (a file, or a folder whose ``*.pickle`` files merge)."""
    source = Path(path).expanduser()
    spec = f"lidc:{path}"
    if not source.exists():
        raise DataError(f"{spec}: {source} does not exist; pass the LIDC pickle or its folder")
    files = sorted(source.glob("*.pickle")) if source.is_dir() else [source]
    if not files:
        raise DataError(f"{spec}: {source} holds no *.pickle file; pass the LIDC pickle itself")
    data: dict[str, Any] = {}
    for file in files:
        try:
            with open(file, "rb") as handle:
                loaded = load_plain_pickle(handle)
        except ForbiddenPickleGlobal as error:
            raise DataError(
                f"{file}: refused without loading it: the pickle names {error.name}, so it is not a plain "
                "LIDC pickle (those hold only dicts, lists, strings, numbers and numpy arrays) and loading "
                "it could run code. Use the preprocessed LIDC pickle of the Probabilistic U-Net PyTorch "
                "port, or re-save your data as dicts of numpy arrays"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as error:
            raise DataError(
                f"{file}: not a readable pickle ({type(error).__name__}: {error}); pass the "
                "preprocessed LIDC pickle of the Probabilistic U-Net PyTorch port"
            ) from error
        if not isinstance(loaded, Mapping):
            raise DataError(
                f"{file}: holds a {type(loaded).__name__}, expected a dict of entries with "
                "'image', 'masks' and 'series_uid'"
            )
        data.update({str(key): value for key, value in loaded.items()})
    if not data:
        raise DataError(f"{spec}: the pickle holds no entries")
    return data


class LIDCDataset(MultiRaterDataset):
    """LIDC-IDRI 128x128 lesion patches with 4 radiologists' masks.

    Args:
        path: the pickle file or a folder of ``*.pickle`` files.
        image_size: side S of the returned images and masks (the data is 128).
        split: ``"train"``, ``"test"`` or ``"all"`` (module docstring).
        seed: seeds the choice of the rater mask ``mask``.
        split_by: ``"series"`` (no leakage across the split), ``"image"`` (a seeded permutation of
            images) or ``"ordered"`` (the official code's: pickle order, first 80% / next 20%).
        split_seed: seeds the train/test permutation (unused by ``"ordered"``).
        train_fraction: share of images in train.
        drop_last_multiple: test keeps a multiple of this many images (paper: 3020 -> 3018).
    """

    def __init__(
        self,
        path: str | Path,
        image_size: int = 128,
        split: str = "train",
        seed: int = 0,
        split_by: str = "series",
        split_seed: int = 0,
        train_fraction: float = 0.8,
        drop_last_multiple: int = 6,
    ) -> None:
        super().__init__(image_size, seed)
        if split_by not in SPLIT_BY:
            raise DataError(
                f"lidc: unknown split_by {split_by!r}; use one of {', '.join(SPLIT_BY)}"
            )
        self.path = Path(path).expanduser()
        data = load_lidc_pickle(path)
        pickle_order = list(data)
        keys = sorted(data)
        self.num_raters = self._validate(data, keys)
        series = [data[key].get("series_uid") for key in keys]
        if split_by == "series" and any(uid is None for uid in series):
            logger.warning(
                "lidc:%s: some entries have no 'series_uid'; splitting by image instead of by "
                "series, so slices of one scan may fall on both sides", path,
            )
            split_by = "image"
        options = dict(
            split_seed=split_seed,
            train_fraction=train_fraction,
            drop_last_multiple=drop_last_multiple,
        )
        if split_by == "series":
            chosen = [keys[i] for i in split_groups([str(uid) for uid in series], split, **options)]
        elif split_by == "image":
            chosen = [keys[i] for i in split_cases(keys, split, **options)]
        else:
            options.pop("split_seed")
            chosen = [pickle_order[i] for i in split_ordered(len(pickle_order), split, **options)]
        if not chosen:
            raise DataError(
                f"lidc:{path}: the {split!r} split of {len(keys)} images is empty (test is cut "
                f"to a multiple of drop_last_multiple={drop_last_multiple}); use more data or "
                "drop_last_multiple=1"
            )
        self.case_ids = chosen
        self.entries = [data[key] for key in self.case_ids]
        logger.info(
            "lidc:%s: %s split (by %s) has %d of %d images",
            path, split, split_by, len(self), len(keys),
        )

    def _validate(self, data: dict[str, Any], keys: list[str]) -> int:
        """Check every entry's fields and shapes; return the number of raters R."""
        num_raters = None
        for key in keys:
            entry = data[key]
            where = f"{self.path}: entry {key!r}"
            if not isinstance(entry, Mapping) or "image" not in entry or "masks" not in entry:
                raise DataError(f"{where} needs an 'image' array and a 'masks' list")
            shape = np.shape(entry["image"])
            if len(shape) != 2:
                raise DataError(f"{where}: image has shape {shape}, expected (H, W)")
            image = np.asarray(entry["image"])
            if image.dtype.kind in "fc" and not np.isfinite(image).all():
                raise DataError(
                    f"{where}: the image holds NaN or infinite values; the pickle is damaged. Replace "
                    "them (e.g. numpy.nan_to_num) or drop the entry"
                )
            masks = entry["masks"]
            count = len(masks)
            if count == 0:
                raise DataError(f"{where} has no rater masks; drop the entry or add its masks")
            if num_raters is None:
                num_raters = count
            elif count != num_raters:
                raise DataError(
                    f"{where} has {count} rater masks but entry {keys[0]!r} has {num_raters}; "
                    "every entry needs the same raters"
                )
            for rater, mask in enumerate(masks, start=1):
                if np.shape(mask) != shape:
                    raise DataError(
                        f"{where}: rater {rater}'s mask has shape {np.shape(mask)} but the image "
                        f"has {shape}; masks must match the image"
                    )
        return num_raters

    def load_case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        entry, where = self.entries[index], f"{self.path}: entry {self.case_ids[index]!r}"
        image = image_to_tensor(np.asarray(entry["image"]), where)
        masks = [
            binarize_mask(np.asarray(mask), f"{where} rater {rater}")
            for rater, mask in enumerate(entry["masks"], start=1)
        ]
        return image, masks_to_tensor(masks)
