"""The item contract every multi-rater dataset keeps, checked on each data spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from uncertainty_adapters.integrations.data import DataError, build_dataset
from uncertainty_adapters.sampling import majority_vote

from .writers import lidc_entries, write_folder_tree, write_pickle, write_refuge2_tree

SIZE = 32


def _spec(kind: str, root: Path) -> str:
    if kind == "lidc":
        return f"lidc:{write_pickle(root / 'data_lidc.pickle', lidc_entries())}"
    if kind == "refuge2":
        return f"refuge2:{write_refuge2_tree(root / 'REFUGE2')}"
    if kind == "folder":
        return f"folder:{write_folder_tree(root / 'folder')}"
    return "synthetic"


@pytest.fixture(params=["synthetic", "lidc", "refuge2", "folder"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _spec(request.param, tmp_path)


def _dataset(spec: str, seed: int = 0):
    options = {"length": 20} if spec == "synthetic" else {}
    return build_dataset(spec, SIZE, split="all", seed=seed, **options)


def test_items_have_the_documented_keys_shapes_and_dtypes(spec: str) -> None:
    dataset = _dataset(spec)
    item = dataset[0]
    raters = dataset.num_raters
    assert set(item) == {"image", "masks", "mask", "majority", "case_id"}
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert item["masks"].shape == (raters, SIZE, SIZE) and item["masks"].dtype == torch.float32
    assert item["mask"].shape == (1, SIZE, SIZE) and item["mask"].dtype == torch.float32
    assert item["majority"].shape == (1, SIZE, SIZE) and item["majority"].dtype == torch.float32
    assert isinstance(item["case_id"], str)


def test_images_lie_in_the_unit_interval(spec: str) -> None:
    image = _dataset(spec)[0]["image"]
    assert image.min() >= 0.0 and image.max() <= 1.0


def test_masks_are_binary(spec: str) -> None:
    item = _dataset(spec)[0]
    for key in ("masks", "mask", "majority"):
        assert set(item[key].unique().tolist()) <= {0.0, 1.0}


def test_mask_is_one_of_the_rater_masks(spec: str) -> None:
    dataset = _dataset(spec)
    for index in range(len(dataset)):
        item = dataset[index]
        rater = dataset.rater_index(index)
        assert torch.equal(item["mask"][0], item["masks"][rater])


def test_majority_is_the_strict_majority_vote_of_the_raters(spec: str) -> None:
    item = _dataset(spec)[0]
    assert torch.equal(item["majority"][0], majority_vote(item["masks"], dim=0))


def test_same_seed_epoch_and_index_give_the_same_mask(spec: str) -> None:
    first, resumed = _dataset(spec, seed=3), _dataset(spec, seed=3)
    first.set_epoch(5)
    resumed.set_epoch(5)
    for index in range(len(first)):
        assert torch.equal(first[index]["mask"], resumed[index]["mask"])


def test_default_collate_batches_items(spec: str) -> None:
    dataset = _dataset(spec)
    batch = default_collate([dataset[0], dataset[1]])
    assert batch["masks"].shape == (2, dataset.num_raters, SIZE, SIZE)
    assert batch["case_id"] == [dataset.case_ids[0], dataset.case_ids[1]]


def test_rater_choice_changes_with_the_epoch() -> None:
    dataset = build_dataset("synthetic", SIZE, split="all", length=40)
    before = [dataset.rater_index(i) for i in range(len(dataset))]
    dataset.set_epoch(1)
    assert [dataset.rater_index(i) for i in range(len(dataset))] != before


def test_rater_choice_reaches_every_rater() -> None:
    dataset = build_dataset("synthetic", SIZE, split="all", length=200)
    assert {dataset.rater_index(i) for i in range(len(dataset))} == set(range(dataset.num_raters))


def test_rater_choice_depends_on_the_seed() -> None:
    one = build_dataset("synthetic", SIZE, split="all", seed=0, length=40)
    two = build_dataset("synthetic", SIZE, split="all", seed=1, length=40)
    assert [one.rater_index(i) for i in range(40)] != [two.rater_index(i) for i in range(40)]


def test_negative_epoch_is_rejected() -> None:
    with pytest.raises(DataError, match="epoch"):
        build_dataset("synthetic", SIZE).set_epoch(-1)


def test_index_past_the_end_raises_index_error() -> None:
    dataset = build_dataset("synthetic", SIZE, length=10)
    with pytest.raises(IndexError):
        dataset[len(dataset)]
