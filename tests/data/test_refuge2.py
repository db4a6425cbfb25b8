"""``refuge2:PATH``: cup (or disc) masks of 7 raters, cropped around the optic disc."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from uncertainty_adapters.integrations.data import DataError, REFUGE2Dataset

from .writers import DISC_CENTRE, save_png, disk


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return rows.float().mean().item(), cols.float().mean().item()


def test_train_is_training_plus_validation_and_test_is_test(refuge2_tree: Path) -> None:
    assert REFUGE2Dataset(refuge2_tree, 32, split="train").case_ids == ["g0001", "n0002", "V0001"]
    assert REFUGE2Dataset(refuge2_tree, 32, split="test").case_ids == ["T0001"]


def test_split_folder_names_match_ignoring_letter_case(refuge2_tree: Path) -> None:
    assert "V0001" in REFUGE2Dataset(refuge2_tree, 32, split="all").case_ids


def test_every_case_has_seven_raters(refuge2_tree: Path) -> None:
    dataset = REFUGE2Dataset(refuge2_tree, 32, split="all")
    assert dataset.num_raters == 7 and dataset[0]["masks"].shape == (7, 32, 32)


def test_the_crop_is_centred_on_the_optic_disc(refuge2_tree: Path) -> None:
    item = REFUGE2Dataset(refuge2_tree, 64, split="test", target="disc")[0]
    row, col = _centroid(item["majority"][0])
    assert abs(row - 31.5) < 2 and abs(col - 31.5) < 2


def test_the_crop_spans_crop_factor_disc_diameters(refuge2_tree: Path) -> None:
    item = REFUGE2Dataset(refuge2_tree, 68, split="test", target="disc", crop_factor=2.0)[0]
    union = item["masks"].amax(dim=0)
    rows = torch.nonzero(union.any(dim=1)).flatten()
    # the disc's 17-pixel box fills half of the 34-pixel crop, so half of the 68-pixel output
    assert rows.max() - rows.min() + 1 == pytest.approx(34, abs=2)


def test_cup_is_the_default_target(refuge2_tree: Path) -> None:
    cup = REFUGE2Dataset(refuge2_tree, 32, split="test")[0]["masks"]
    disc = REFUGE2Dataset(refuge2_tree, 32, split="test", target="disc")[0]["masks"]
    assert cup.sum() < disc.sum()


def test_without_a_crop_the_whole_image_is_resized(refuge2_tree: Path) -> None:
    item = REFUGE2Dataset(refuge2_tree, 80, split="test", target="disc", crop_factor=None)[0]
    row, col = _centroid(item["majority"][0])
    assert abs(row - DISC_CENTRE[0] * 80 / 60) < 2 and abs(col - DISC_CENTRE[1]) < 2


def test_a_path_without_split_folders_lists_the_folders_it_found(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match=r"no Training-400.*\(found: images, labels\)"):
        REFUGE2Dataset(tmp_path)


def test_a_missing_test_folder_is_an_error(refuge2_tree: Path) -> None:
    shutil.rmtree(refuge2_tree / "Test-400")
    with pytest.raises(DataError, match="'test' split needs Test-400"):
        REFUGE2Dataset(refuge2_tree, split="test")


def test_a_missing_validation_folder_warns_and_trains_on_training_only(
    refuge2_tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(refuge2_tree / "validation-400")
    with caplog.at_level(logging.WARNING):
        dataset = REFUGE2Dataset(refuge2_tree, 32, split="train")
    assert len(dataset) == 2 and "Validation-400" in caplog.text


def test_a_case_without_cup_masks_raises_naming_the_case(refuge2_tree: Path) -> None:
    for path in (refuge2_tree / "Test-400" / "T0001").glob("*_seg_cup_*"):
        path.unlink()
    with pytest.raises(DataError, match=r"T0001: no cup masks; expected T0001_seg_cup_1.png"):
        REFUGE2Dataset(refuge2_tree, split="test")


def test_cup_and_disc_rater_counts_must_match(refuge2_tree: Path) -> None:
    (refuge2_tree / "Test-400" / "T0001" / "T0001_seg_disc_7.png").unlink()
    with pytest.raises(DataError, match="7 cup masks but 6 disc masks"):
        REFUGE2Dataset(refuge2_tree, split="test")


def test_a_mask_of_another_size_than_the_image_raises(refuge2_tree: Path) -> None:
    case = refuge2_tree / "Test-400" / "T0001"
    for rater in range(1, 8):
        save_png(case / f"T0001_seg_cup_{rater}.png", disk(30, 40, 10, 25, 3))
    with pytest.raises(DataError, match="T0001_seg_.*rater masks differ in size"):
        REFUGE2Dataset(refuge2_tree, split="test")


def test_all_empty_disc_masks_raise_when_cropping(refuge2_tree: Path) -> None:
    case = refuge2_tree / "Test-400" / "T0001"
    for rater in range(1, 8):
        save_png(case / f"T0001_seg_disc_{rater}.png", np.zeros((60, 80), dtype=bool))
    with pytest.raises(DataError, match="optic disc cannot be located"):
        REFUGE2Dataset(refuge2_tree, split="test")[0]


def test_an_unknown_target_is_rejected(refuge2_tree: Path) -> None:
    with pytest.raises(DataError, match="unknown target 'rim'; use one of cup, disc"):
        REFUGE2Dataset(refuge2_tree, target="rim")
