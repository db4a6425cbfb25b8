"""Data specs: parsing the pinned strings and building the matching dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from uncertainty_adapters.integrations.data import (
    DataError,
    DataSpec,
    FolderDataset,
    LIDCDataset,
    REFUGE2Dataset,
    SyntheticLesions,
    build_dataset,
    data_options,
    parse_data_spec,
)

from .writers import lidc_entries, write_folder_tree, write_pickle, write_refuge2_tree


def test_synthetic_spec_has_no_path() -> None:
    assert parse_data_spec("synthetic") == DataSpec("synthetic", None)


@pytest.mark.parametrize("kind", ["lidc", "refuge2", "folder"])
def test_path_specs_keep_everything_after_the_first_colon(kind: str) -> None:
    assert parse_data_spec(f"{kind}:C:/data/x") == DataSpec(kind, Path("C:/data/x"))


def test_unknown_prefix_lists_the_valid_specs() -> None:
    valid = "valid specs: synthetic, lidc:PATH, refuge2:PATH, folder:PATH"
    with pytest.raises(DataError, match=valid):
        parse_data_spec("nifti:/data")


def test_spec_without_a_path_says_it_needs_one() -> None:
    with pytest.raises(DataError, match="needs a path"):
        parse_data_spec("lidc:")


def test_synthetic_with_a_path_is_rejected() -> None:
    with pytest.raises(DataError, match="takes no path"):
        parse_data_spec("synthetic:/data")


def test_data_error_is_a_value_error() -> None:
    assert issubclass(DataError, ValueError)


def test_build_dataset_builds_each_spec_s_dataset(tmp_path: Path) -> None:
    pickle_path = write_pickle(tmp_path / "lidc.pickle", lidc_entries())
    built = {
        "synthetic": build_dataset("synthetic", 32, length=10),
        "lidc": build_dataset(f"lidc:{pickle_path}", 32),
        "refuge2": build_dataset(f"refuge2:{write_refuge2_tree(tmp_path / 'r')}", 32),
        "folder": build_dataset(f"folder:{write_folder_tree(tmp_path / 'f')}", 32),
    }
    expected = {
        "synthetic": SyntheticLesions,
        "lidc": LIDCDataset,
        "refuge2": REFUGE2Dataset,
        "folder": FolderDataset,
    }
    assert {kind: type(dataset) for kind, dataset in built.items()} == expected


def test_build_dataset_passes_options_to_the_dataset() -> None:
    assert build_dataset("synthetic", 32, num_raters=3, length=10).num_raters == 3


def test_build_dataset_rejects_an_unknown_split() -> None:
    with pytest.raises(DataError, match="unknown split"):
        build_dataset("synthetic", 32, split="validation")


def test_build_dataset_names_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_dataset(f"folder:{tmp_path / 'nowhere'}", 32)


def test_lidc_split_option_becomes_the_datasets_split_by(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "lidc.pickle", lidc_entries(40))
    options = data_options(f"lidc:{path}", "ordered")
    assert options == {"split_by": "ordered"}
    test = build_dataset(f"lidc:{path}", 32, split="test", **options)
    # the official code's split: the last 20% of the pickle's slices (8, cut to a multiple of 6)
    assert len(test) == 6 and all(int(item["case_id"][-3:]) >= 32 for item in test)


def test_no_lidc_split_option_means_no_dataset_option() -> None:
    assert data_options("synthetic") == {} and data_options("lidc:/data/lidc.pickle") == {}


def test_a_lidc_split_for_other_data_is_an_error_that_names_the_option() -> None:
    with pytest.raises(DataError, match="--lidc-split applies to lidc:PATH data only"):
        data_options("synthetic", "ordered")
