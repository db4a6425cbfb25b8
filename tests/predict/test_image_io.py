"""Reading images for `ua-sam predict`: Pillow formats, windowed DICOM, NIfTI slices."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.pipeline.predict.image_io import apply_window, read_image

from .conftest import ct_phantom_hu, write_ct_dicom, write_nifti, write_png

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def test_a_grayscale_png_is_2d_and_divided_by_255(tmp_path):
    loaded = read_image(write_png(tmp_path / "gray.png"))
    assert loaded.pixels.ndim == 2 and loaded.pixels.dtype == np.float32
    np.testing.assert_allclose(loaded.pixels * 255, np.asarray(Image.open(tmp_path / "gray.png")), atol=1e-4)
    assert loaded.info["format"] == "png" and (loaded.info["height"], loaded.info["width"]) == loaded.pixels.shape


def test_a_colour_png_keeps_its_colours(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png").pixels * 255, rgb, atol=1e-4)


def test_a_16_bit_png_is_scaled_min_max(tmp_path):
    values = np.array([[1000, 2000], [3000, 5000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_allclose(read_image(tmp_path / "deep.png").pixels, [[0, 0.25], [0.5, 1]])


def test_windows_map_their_range_linearly_onto_0_1():
    hu = np.array([-1350.0, -600.0, 150.0, -2000.0, 500.0])
    np.testing.assert_allclose(apply_window(hu, -600, 1500), [0, 0.5, 1, 0, 1])
    np.testing.assert_allclose(apply_window(np.array([-160.0, 40.0, 240.0]), 40, 400), [0, 0.5, 1])


def test_ct_dicom_is_rescaled_to_hounsfield_units_and_lung_windowed_by_default(tmp_path):
    hu = np.array([[-1350.0, -600.0], [150.0, 40.0]])
    loaded = read_image(write_ct_dicom(tmp_path / "ct.dcm", hu, intercept=-1024))
    np.testing.assert_allclose(loaded.pixels, [[0, 0.5], [1, (40 + 1350) / 1500]], atol=1e-6)
    assert loaded.info["window"]["name"] == "lung" and loaded.info["modality"] == "CT"
    assert loaded.info["rescale"] == {"slope": 1.0, "intercept": -1024.0}


def test_the_soft_tissue_window_centres_on_40_hu(tmp_path):
    hu = np.array([[-160.0, 40.0], [240.0, -1000.0]])
    loaded = read_image(write_ct_dicom(tmp_path / "ct.dcm", hu), window="soft-tissue")
    np.testing.assert_allclose(loaded.pixels, [[0, 0.5], [1, 0]], atol=1e-6)


def test_auto_uses_the_files_own_window(tmp_path):
    hu = np.array([[0.0, 100.0], [200.0, 50.0]])
    path = write_ct_dicom(tmp_path / "ct.dcm", hu, WindowCenter=100, WindowWidth=200)
    np.testing.assert_allclose(read_image(path, window="auto").pixels, [[0, 0.5], [1, 0.25]], atol=1e-6)


def test_a_dicom_without_suffix_is_recognised_by_its_marker(tmp_path):
    path = write_ct_dicom(tmp_path / "IM0001", ct_phantom_hu(8))
    assert read_image(path).info["format"] == "dicom"


def test_a_nifti_defaults_to_the_middle_slice_in_radiological_orientation(tmp_path):
    volume = np.full((6, 4, 5), -1350.0)  # black in the lung window
    volume[5, 3, 2] = 500.0  # patient's far right (x = X - 1), most anterior (y = Y - 1), slice 2
    loaded = read_image(write_nifti(tmp_path / "ct.nii.gz", volume))
    assert loaded.pixels.shape == (4, 6) and loaded.info["slice"] == 2
    assert loaded.pixels[0, 0] == 1.0 and loaded.pixels.sum() == 1.0
    assert loaded.info["window"]["name"] == "lung"


def test_the_slice_option_picks_the_nifti_slice(tmp_path):
    volume = np.zeros((4, 4, 3))
    volume[..., 1] = np.arange(16).reshape(4, 4)
    loaded = read_image(write_nifti(tmp_path / "mr.nii", volume), slice_index=1)
    assert loaded.info["slice"] == 1 and loaded.info["window"]["name"] == "auto"
    assert loaded.pixels.max() == 1.0 and loaded.pixels.min() == 0.0


def test_a_slice_outside_the_volume_is_refused(tmp_path):
    with pytest.raises(DataError, match="slice 7 does not exist"):
        read_image(write_nifti(tmp_path / "v.nii", np.zeros((4, 4, 3))), slice_index=7)


def test_window_and_slice_do_not_apply_to_png(tmp_path):
    png = write_png(tmp_path / "a.png")
    with pytest.raises(DataError, match="--window applies to DICOM and NIfTI"):
        read_image(png, window="lung")
    with pytest.raises(DataError, match="--slice applies"):
        read_image(png, slice_index=0)


@pytest.mark.parametrize("name, content", [("x.png", b"not an image"), ("x.dcm", b"\0" * 128 + b"DICM" + b"\1" * 20),
                                           ("x.nii.gz", b"garbage")])
def test_unreadable_files_raise_a_data_error_naming_the_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=name.replace(".", r"\.")):
        read_image(tmp_path / name)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "nope.png")


@pytest.mark.parametrize("module, name", [("pydicom", "ct.dcm"), ("nibabel", "ct.nii")])
def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch, module, name):
    path = tmp_path / name
    path.write_bytes(b"\0" * 128 + b"DICM")
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DataError, match=r'pip install "uncertainty-adapters\[medical-io\]"'):
        read_image(path)
