"""Fixtures: tiny datasets written to a temporary folder in each spec's on-disk format."""

from __future__ import annotations

from pathlib import Path

import pytest

from .writers import lidc_entries, write_folder_tree, write_pickle, write_refuge2_tree


@pytest.fixture
def folder_3_raters(tmp_path: Path) -> Path:
    """A ``folder:PATH`` tree with 5 cases and 3 raters."""
    return write_folder_tree(tmp_path / "three", cases=5, raters=3)


@pytest.fixture
def folder_1_rater(tmp_path: Path) -> Path:
    """A ``folder:PATH`` tree with 5 cases and 1 rater."""
    return write_folder_tree(tmp_path / "one", cases=5, raters=1)


@pytest.fixture
def refuge2_tree(tmp_path: Path) -> Path:
    return write_refuge2_tree(tmp_path / "REFUGE2")


@pytest.fixture
def lidc_pickle(tmp_path: Path) -> Path:
    """A 10-image LIDC pickle (4 series, 4 raters, 32x32)."""
    return write_pickle(tmp_path / "data_lidc.pickle", lidc_entries())
