"""``folder:PATH``: ``<case>/<case>.png|.jpg`` plus ``<case>_seg_<k>.png`` for any rater count."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from uncertainty_adapters.integrations.data import DataError, FolderDataset, NonBinaryMaskWarning

from .writers import disk, save_png


def test_a_three_rater_tree_gives_three_masks_per_case(folder_3_raters: Path) -> None:
    dataset = FolderDataset(folder_3_raters, 32, split="all")
    assert len(dataset) == 5 and dataset[0]["masks"].shape == (3, 32, 32)


def test_a_one_rater_tree_gives_that_rater_as_mask_and_majority(folder_1_rater: Path) -> None:
    item = FolderDataset(folder_1_rater, 32, split="all")[1]
    assert torch.equal(item["mask"], item["masks"]) and torch.equal(item["majority"], item["masks"])


def test_raters_keep_their_order(folder_3_raters: Path) -> None:
    areas = FolderDataset(folder_3_raters, 32, split="all")[0]["masks"].sum(dim=(1, 2))
    assert torch.all(areas[1:] > areas[:-1])  # rater k's disk grows with k


def test_grayscale_and_colour_images_both_give_three_channels(folder_3_raters: Path) -> None:
    dataset = FolderDataset(folder_3_raters, 32, split="all")
    grey, colour = dataset[0]["image"], dataset[1]["image"]  # case00 is grayscale PNG
    assert torch.equal(grey[0], grey[1]) and grey.shape == colour.shape == (3, 32, 32)


def test_split_is_disjoint_and_covers_every_case(folder_3_raters: Path) -> None:
    train = FolderDataset(folder_3_raters, 32, split="train").case_ids
    test = FolderDataset(folder_3_raters, 32, split="test").case_ids
    assert (len(train), len(test)) == (4, 1) and not set(train) & set(test)
    assert sorted(train + test) == FolderDataset(folder_3_raters, 32, split="all").case_ids


def test_split_is_the_same_on_every_build(folder_3_raters: Path) -> None:
    first = FolderDataset(folder_3_raters, 32, split="test").case_ids
    assert FolderDataset(folder_3_raters, 32, split="test", seed=9).case_ids == first


def test_a_missing_path_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere does not exist"):
        FolderDataset(tmp_path / "nowhere")


def test_a_file_instead_of_a_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "cases.txt").write_text("")
    with pytest.raises(DataError, match="is a file, not a folder"):
        FolderDataset(tmp_path / "cases.txt")


def test_an_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="has no case folders"):
        FolderDataset(tmp_path)


def test_a_case_without_masks_raises_naming_the_case(folder_3_raters: Path) -> None:
    for path in (folder_3_raters / "case02").glob("*_seg_*"):
        path.unlink()
    with pytest.raises(DataError, match=r"case02: no rater masks; add case02_seg_1.png"):
        FolderDataset(folder_3_raters)


def test_a_case_without_an_image_raises_naming_the_case(folder_3_raters: Path) -> None:
    (folder_3_raters / "case02" / "case02.png").unlink()
    with pytest.raises(DataError, match=r"case02: no image case02.png or case02.jpg"):
        FolderDataset(folder_3_raters)


def test_cases_with_different_numbers_of_raters_raise_naming_the_case(
    folder_3_raters: Path,
) -> None:
    (folder_3_raters / "case03" / "case03_seg_3.png").unlink()
    with pytest.raises(DataError, match="case 'case03' has 2 rater masks but case 'case00' has 3"):
        FolderDataset(folder_3_raters)


def test_a_gap_in_rater_numbers_raises_naming_the_missing_file(folder_3_raters: Path) -> None:
    case = folder_3_raters / "case01"
    shutil.move(case / "case01_seg_2.png", case / "case01_seg_4.png")
    with pytest.raises(DataError, match="case01_seg_2.png is missing"):
        FolderDataset(folder_3_raters)


def test_raters_of_different_sizes_raise_naming_the_file(folder_3_raters: Path) -> None:
    save_png(folder_3_raters / "case04" / "case04_seg_2.png", disk(20, 20, 10, 10, 5))
    with pytest.raises(DataError, match="case04_seg_2.png: rater masks differ in size"):
        FolderDataset(folder_3_raters, split="all")


def test_masks_of_another_size_than_the_image_raise(folder_3_raters: Path) -> None:
    for rater in (1, 2, 3):
        save_png(folder_3_raters / "case04" / f"case04_seg_{rater}.png", disk(20, 20, 10, 10, 5))
    with pytest.raises(DataError, match="rater masks are 20x20 but case04.png is 24x32"):
        FolderDataset(folder_3_raters, split="all")


def test_a_non_binary_mask_warns_naming_the_file_and_is_thresholded(folder_3_raters: Path) -> None:
    pixels = np.zeros((24, 32), dtype=np.uint8)
    pixels[:, :8], pixels[:, 8:16] = 255, 100  # 100 < 255 / 2 -> background
    save_png(folder_3_raters / "case00" / "case00_seg_1.png", pixels)
    dataset = FolderDataset(folder_3_raters, 32, split="all")
    with pytest.warns(NonBinaryMaskWarning, match=r"case00_seg_1.png: mask is not binary"):
        mask = dataset[0]["masks"][0]
    assert mask[:, :8].all() and not mask[:, 8:].any()


def test_an_image_that_is_not_an_image_raises_naming_it(folder_3_raters: Path) -> None:
    (folder_3_raters / "case00" / "case00.png").write_text("not a png")
    with pytest.raises(DataError, match="case00.png: cannot be read as an image"):
        FolderDataset(folder_3_raters, split="all")
