"""The fixed, seeded train/test split rules."""

from __future__ import annotations

import pytest

from uncertainty_adapters.integrations.data import DataError, split_cases, split_groups

IDS = [f"case{i:03d}" for i in range(50)]
GROUPS = [f"series{i // 4}" for i in range(50)]


def test_case_split_is_disjoint_and_covers_every_case() -> None:
    train, test = set(split_cases(IDS, "train")), set(split_cases(IDS, "test"))
    assert not train & test and train | test == set(range(len(IDS)))


def test_case_split_puts_the_floor_of_80_percent_in_train() -> None:
    assert len(split_cases(IDS[:47], "train")) == 37


def test_case_split_does_not_depend_on_the_order_of_the_ids() -> None:
    reordered = IDS[::-1]
    train = {IDS[i] for i in split_cases(IDS, "train")}
    assert {reordered[i] for i in split_cases(reordered, "train")} == train


def test_case_split_changes_with_the_split_seed() -> None:
    assert split_cases(IDS, "train", split_seed=0) != split_cases(IDS, "train", split_seed=1)


def test_group_split_keeps_each_group_on_one_side() -> None:
    train = {GROUPS[i] for i in split_groups(GROUPS, "train")}
    test = {GROUPS[i] for i in split_groups(GROUPS, "test")}
    assert train and test and not train & test


def test_group_split_is_disjoint_and_covers_every_image() -> None:
    train, test = set(split_groups(GROUPS, "train")), set(split_groups(GROUPS, "test"))
    assert not train & test and train | test == set(range(len(GROUPS)))


def test_group_split_train_stays_within_80_percent() -> None:
    assert 0.6 * len(GROUPS) <= len(split_groups(GROUPS, "train")) <= 0.8 * len(GROUPS)


def test_paper_lidc_counts_come_from_the_image_split_with_drop_last_6() -> None:
    ids = [f"{i:05d}" for i in range(15096)]
    assert len(split_cases(ids, "train", drop_last_multiple=6)) == 12076
    assert len(split_cases(ids, "test", drop_last_multiple=6)) == 3018


def test_all_split_returns_every_index() -> None:
    assert split_cases(IDS, "all") == list(range(len(IDS)))


def test_unknown_split_raises_data_error_listing_valid_splits() -> None:
    with pytest.raises(DataError, match="train, test, all"):
        split_cases(IDS, "val")
