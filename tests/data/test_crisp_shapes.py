"""CrispShapes: unambiguous shapes with one prompted object per item, for backbone pre-training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from uncertainty_adapters.integrations.data import CrispShapes, DataError


@pytest.fixture(scope="module")
def shapes() -> CrispShapes:
    return CrispShapes(length=64, image_size=64, seed=0)


def test_items_have_the_documented_keys_shapes_and_dtypes(shapes: CrispShapes) -> None:
    item = shapes[0]
    assert set(item) == {"image", "mask", "point", "case_id"}
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 64, 64) and item["mask"].dtype == torch.float32
    assert item["point"].shape == (2,) and item["point"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}


def test_point_lies_inside_the_target_object(shapes: CrispShapes) -> None:
    for index in range(len(shapes)):
        item = shapes[index]
        x, y = item["point"].long().tolist()
        assert item["mask"][0, y, x] == 1


def test_target_is_one_whole_visible_object(shapes: CrispShapes) -> None:
    for index in range(16):
        _, labels = shapes.render(index)
        mask = shapes[index]["mask"][0].numpy().astype(bool)
        label = labels[mask][0]
        assert label > 0 and np.array_equal(mask, labels == label)


def test_images_hold_several_objects(shapes: CrispShapes) -> None:
    counts = [len(np.unique(shapes.render(i)[1])) - 1 for i in range(16)]
    assert min(counts) >= 2 and max(counts) >= 3


def test_items_are_deterministic_by_seed_and_index() -> None:
    one, two = (CrispShapes(length=8, image_size=32, seed=4) for _ in range(2))
    for key in ("image", "mask", "point"):
        assert torch.equal(one[3][key], two[3][key])


def test_different_seeds_give_different_images() -> None:
    one, two = (CrispShapes(length=8, image_size=32, seed=seed) for seed in (0, 1))
    assert not torch.equal(one[0]["image"], two[0]["image"])


def test_epoch_changes_the_prompt_but_not_the_image(shapes: CrispShapes) -> None:
    before = [shapes[i] for i in range(16)]
    shapes.set_epoch(1)
    after = [shapes[i] for i in range(16)]
    shapes.set_epoch(0)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(before, after))
    assert any(not torch.equal(a["point"], b["point"]) for a, b in zip(before, after))


def test_objects_stand_out_from_the_background(shapes: CrispShapes) -> None:
    for index in range(16):
        item = shapes[index]
        mask = item["mask"][0].bool()
        inside = item["image"][:, mask].mean(dim=1)
        ring = torch.nn.functional.max_pool2d(item["mask"], 5, 1, 2)[0].bool() & ~mask
        outside = item["image"][:, ring].mean(dim=1)
        assert torch.linalg.vector_norm(inside - outside) > 0.1


def test_default_collate_batches_items(shapes: CrispShapes) -> None:
    batch = default_collate([shapes[0], shapes[1]])
    assert batch["image"].shape == (2, 3, 64, 64) and batch["point"].shape == (2, 2)


def test_invalid_object_counts_are_rejected() -> None:
    with pytest.raises(DataError, match="min_objects"):
        CrispShapes(min_objects=4, max_objects=2)


def test_targets_give_that_many_masks_and_points_per_item() -> None:
    item = CrispShapes(length=4, image_size=64, seed=0, targets=3)[1]
    assert item["mask"].shape == (3, 64, 64) and item["point"].shape == (3, 2)
    for mask, (x, y) in zip(item["mask"], item["point"].long().tolist()):
        assert mask[y, x] == 1


def test_first_target_is_the_single_target_item(shapes: CrispShapes) -> None:
    several = CrispShapes(length=64, image_size=64, seed=0, targets=4)
    for index in range(8):
        one, many = shapes[index], several[index]
        assert torch.equal(one["image"], many["image"])
        assert torch.equal(one["mask"][0], many["mask"][0]) and torch.equal(one["point"], many["point"][0])


def test_targets_are_distinct_objects_while_the_image_has_enough() -> None:
    data = CrispShapes(length=16, image_size=64, seed=0, min_objects=5, max_objects=5, min_area=1, targets=3)
    for index in range(len(data)):
        masks = data[index]["mask"].flatten(1)
        assert all(not torch.equal(masks[a], masks[b]) for a in range(3) for b in range(a + 1, 3))


def test_zero_targets_are_refused_by_name() -> None:
    with pytest.raises(DataError, match="targets"):
        CrispShapes(length=4, targets=0)
