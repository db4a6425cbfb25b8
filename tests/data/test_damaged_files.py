"""Damaged or hostile data files give a `DataError` naming the file, never garbage: truncated
images, images over Pillow's decompression-bomb limit, NaN-filled images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uncertainty_adapters.integrations.data import DataError, FolderDataset, LIDCDataset
from uncertainty_adapters.integrations.data.transforms import image_to_tensor

from .writers import lidc_entries, write_pickle


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case", ["case00", "case01"], ids=["png", "jpeg"])
def test_a_truncated_case_image_is_a_data_error_naming_it(folder_3_raters: Path, case: str) -> None:
    image = next((folder_3_raters / case).glob(f"{case}.*"))
    _cut(image)
    with pytest.raises(DataError, match=rf"{image.name}: cannot be read as an image \(.*(t|T)runcated"):
        dataset = FolderDataset(folder_3_raters, 32, split="all")  # a cut header fails here already
        dataset[dataset.case_ids.index(case)]


def test_a_truncated_rater_mask_is_a_data_error_naming_it(folder_3_raters: Path) -> None:
    mask = folder_3_raters / "case00" / "case00_seg_2.png"
    _cut(mask)
    dataset = FolderDataset(folder_3_raters, 32, split="all")
    with pytest.raises(DataError, match="case00_seg_2.png: cannot be read as a mask"):
        dataset[dataset.case_ids.index("case00")]


def test_an_image_over_the_decompression_bomb_limit_is_refused_when_the_data_is_built(
    folder_3_raters: Path, monkeypatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the cases are 24 x 32 = 768 pixels
    with pytest.raises(DataError, match="decompression bomb.*MAX_IMAGE_PIXELS = 500"):
        FolderDataset(folder_3_raters, 32, split="all")


def test_a_lidc_image_with_nan_is_refused_naming_the_entry(tmp_path: Path) -> None:
    entries = lidc_entries()
    key = sorted(entries)[3]
    entries[key]["image"][5, 5] = np.nan
    with pytest.raises(DataError, match=rf"{key}.*NaN or infinite"):
        LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries), 32, split="all")


def test_an_image_array_with_nan_never_becomes_a_tensor() -> None:
    image = np.full((8, 8), np.nan, dtype=np.float32)
    with pytest.raises(DataError, match=r"entry 7: the image holds NaN or infinite values \(64 of 64\)"):
        image_to_tensor(image, "entry 7")
