"""``lidc:PATH``: the Probabilistic U-Net port's pickle, split without series leakage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from uncertainty_adapters.integrations.data import DataError, LIDCDataset, NonBinaryMaskWarning

from .writers import lidc_entries, write_pickle


def _series(dataset: LIDCDataset) -> set[str]:
    return {entry["series_uid"] for entry in dataset.entries}


def test_entries_load_with_their_four_raters(lidc_pickle: Path) -> None:
    dataset = LIDCDataset(lidc_pickle, image_size=32, split="all")
    assert len(dataset) == 10 and dataset.num_raters == 4
    assert dataset[0]["masks"].shape == (4, 32, 32)


def test_images_are_resized_to_the_image_size(lidc_pickle: Path) -> None:
    assert LIDCDataset(lidc_pickle, image_size=64, split="all")[0]["image"].shape == (3, 64, 64)


def test_masks_saved_as_0_255_load_as_binary_without_warning(tmp_path: Path, recwarn) -> None:
    entries = lidc_entries()
    for entry in entries.values():
        entry["masks"] = [(mask * 255).astype(np.uint8) for mask in entry["masks"]]
    dataset = LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries), 32, split="all")
    assert set(dataset[0]["masks"].unique().tolist()) == {0.0, 1.0}
    assert not [w for w in recwarn if issubclass(w.category, NonBinaryMaskWarning)]


def test_soft_masks_warn_naming_the_entry_and_are_thresholded_at_half_the_max(
    tmp_path: Path,
) -> None:
    entries = lidc_entries(count=3)
    key = next(iter(entries))
    entries[key]["masks"][0] = np.array(entries[key]["masks"][0]) * 0.4
    entries[key]["masks"][0][0, 0] = 1.0  # max 1: the 0.4 region falls below 0.5
    dataset = LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries), 32, split="all")
    with pytest.warns(NonBinaryMaskWarning, match=f"{key}.*rater 1"):
        masks = dataset[dataset.case_ids.index(key)]["masks"]
    assert masks[0].sum() == 1


def test_series_split_keeps_each_series_on_one_side(lidc_pickle: Path) -> None:
    train = LIDCDataset(lidc_pickle, 32, split="train", drop_last_multiple=1)
    test = LIDCDataset(lidc_pickle, 32, split="test", drop_last_multiple=1)
    assert not _series(train) & _series(test)


def test_series_split_is_disjoint_and_covers_every_image(lidc_pickle: Path) -> None:
    train = LIDCDataset(lidc_pickle, 32, split="train", drop_last_multiple=1).case_ids
    test = LIDCDataset(lidc_pickle, 32, split="test", drop_last_multiple=1).case_ids
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(lidc_entries())


def test_image_split_is_disjoint_and_covers_every_image(lidc_pickle: Path) -> None:
    options = dict(split_by="image", drop_last_multiple=1)
    train = LIDCDataset(lidc_pickle, 32, split="train", **options).case_ids
    test = LIDCDataset(lidc_pickle, 32, split="test", **options).case_ids
    assert len(train) == 8 and not set(train) & set(test)
    assert sorted(train + test) == sorted(lidc_entries())


def test_test_split_drops_the_last_incomplete_batch(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "lidc.pickle", lidc_entries(count=20))
    test = LIDCDataset(path, 32, split="test", split_by="image", drop_last_multiple=3)
    assert len(test) == 3  # 20 - floor(0.8 * 20) = 4 images, cut to a multiple of 3


def test_an_empty_split_says_how_to_fix_it(lidc_pickle: Path) -> None:
    with pytest.raises(DataError, match="drop_last_multiple=1"):
        LIDCDataset(lidc_pickle, 32, split="test", split_by="image", drop_last_multiple=6)


def test_entries_without_series_uid_fall_back_to_the_image_split_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entries = lidc_entries()
    for entry in entries.values():
        del entry["series_uid"]
    with caplog.at_level(logging.WARNING):
        dataset = LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries), 32)
    assert "series_uid" in caplog.text and len(dataset) == 8


def test_a_folder_of_pickles_is_merged(tmp_path: Path) -> None:
    entries = lidc_entries()
    keys = sorted(entries)
    write_pickle(tmp_path / "part1.pickle", {k: entries[k] for k in keys[:5]})
    write_pickle(tmp_path / "part2.pickle", {k: entries[k] for k in keys[5:]})
    assert sorted(LIDCDataset(tmp_path, 32, split="all").case_ids) == keys


def test_missing_path_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.pickle does not exist"):
        LIDCDataset(tmp_path / "nowhere.pickle")


def test_folder_without_pickles_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \*\.pickle file"):
        LIDCDataset(tmp_path)


def test_a_file_that_is_not_a_pickle_raises(tmp_path: Path) -> None:
    path = tmp_path / "data_lidc.pickle"
    path.write_text("not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        LIDCDataset(path)


def test_a_pickle_that_is_not_a_dict_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected a dict"):
        LIDCDataset(write_pickle(tmp_path / "lidc.pickle", [1, 2, 3]))


def test_an_entry_with_another_number_of_raters_raises_naming_it(tmp_path: Path) -> None:
    entries = lidc_entries()
    key = sorted(entries)[4]
    entries[key]["masks"] = entries[key]["masks"][:3]
    with pytest.raises(DataError, match=f"{key}' has 3 rater masks but entry .* has 4"):
        LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries))


def test_a_mask_of_another_size_than_the_image_raises(tmp_path: Path) -> None:
    entries = lidc_entries()
    key = sorted(entries)[2]
    entries[key]["masks"][1] = np.zeros((16, 16), dtype=np.float32)
    with pytest.raises(DataError, match=f"{key}.*rater 2's mask has shape"):
        LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries))


def test_an_entry_without_masks_raises(tmp_path: Path) -> None:
    entries = lidc_entries()
    key = sorted(entries)[0]
    del entries[key]["masks"]
    with pytest.raises(DataError, match=f"{key}.*'masks'"):
        LIDCDataset(write_pickle(tmp_path / "lidc.pickle", entries))


def test_grayscale_image_is_replicated_to_three_channels(lidc_pickle: Path) -> None:
    image = LIDCDataset(lidc_pickle, 32, split="all")[0]["image"]
    assert torch.equal(image[0], image[2])


def test_ordered_split_is_the_official_codes_first_80_then_next_20_percent_in_pickle_order(tmp_path: Path) -> None:
    entries = lidc_entries(count=12)
    shuffled = dict(reversed(list(entries.items())))  # pickle order differs from sorted order
    path = write_pickle(tmp_path / "lidc.pickle", shuffled)
    order = list(shuffled)
    options = dict(split_by="ordered", drop_last_multiple=1)
    assert LIDCDataset(path, 32, split="train", **options).case_ids == order[:9]  # floor(0.8 * 12)
    assert LIDCDataset(path, 32, split="test", **options).case_ids == order[9:11]  # next floor(0.2 * 12)


def test_ordered_split_ignores_the_split_seed(lidc_pickle: Path) -> None:
    first = LIDCDataset(lidc_pickle, 32, split="test", split_by="ordered", split_seed=0, drop_last_multiple=1)
    other = LIDCDataset(lidc_pickle, 32, split="test", split_by="ordered", split_seed=5, drop_last_multiple=1)
    assert first.case_ids == other.case_ids
