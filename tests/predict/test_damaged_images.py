"""Damaged or hostile image files give a `DataError` naming the file, never a hang or garbage:
truncated PNG/JPEG/DICOM/NIfTI, images over Pillow's decompression-bomb limit, NaN-filled data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.pipeline.predict.image_io import read_image

from .conftest import ct_phantom_hu, lesion_image, write_ct_dicom, write_nifti, write_png

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def cut(path, keep: float = 0.6):
    """``path`` cut to the first ``keep`` of its bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def ct_volume(slices: int = 5) -> np.ndarray:
    return np.stack([ct_phantom_hu()] * slices, axis=-1).astype(np.float32)


@pytest.mark.parametrize("name", ["lesion.png", "lesion.jpg"])
def test_a_truncated_png_or_jpeg_is_a_data_error(tmp_path, name):
    path = tmp_path / name
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    with pytest.raises(DataError, match=rf"{name}: not a readable image.*truncated"):
        read_image(cut(path))


@pytest.mark.parametrize("limit", [1000, 3000], ids=["over twice the limit", "just over the limit"])
def test_an_image_over_the_decompression_bomb_limit_is_refused(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)  # the PNG has 48 x 80 = 3840 pixels
    with pytest.raises(DataError, match=rf"decompression bomb.*MAX_IMAGE_PIXELS = {limit}"):
        read_image(write_png(tmp_path / "lesion.png"))


def test_a_truncated_dicom_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="ct.dcm: cannot read the DICOM pixel data"):
        read_image(cut(write_ct_dicom(tmp_path / "ct.dcm", ct_phantom_hu())))


@pytest.mark.parametrize("keep", [0.6, 0.99])
def test_a_truncated_nifti_is_a_data_error_even_when_the_slice_is_there(tmp_path, keep):
    with pytest.raises(DataError, match="truncated"):
        read_image(cut(write_nifti(tmp_path / "ct.nii", ct_volume()), keep))


@pytest.mark.parametrize("keep", [0.6, 0.99])
def test_a_truncated_compressed_nifti_is_a_data_error(tmp_path, keep):
    with pytest.raises(DataError, match="truncated or damaged"):
        read_image(cut(write_nifti(tmp_path / "ct.nii.gz", ct_volume()), keep))


def test_a_nan_filled_nifti_is_a_data_error(tmp_path):
    volume = np.full((40, 40, 5), np.nan, dtype=np.float32)
    with pytest.raises(DataError, match=r"NaN or infinite values \(1600 of 1600 pixels\)"):
        read_image(write_nifti(tmp_path / "nan.nii.gz", volume))


def test_a_float_image_with_nan_is_a_data_error(tmp_path):
    values = lesion_image().astype(np.float32)
    values[:4] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    with pytest.raises(DataError, match="NaN or infinite"):
        read_image(tmp_path / "float.tif")
