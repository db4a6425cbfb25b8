"""`ua-sam predict` end to end: a PNG, a DICOM and a NIfTI in, pictures and summary.json out;
user errors end with one line and exit status 2."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from uncertainty_adapters.integrations.pipeline.predict import summarize

from .conftest import RUN_SAMPLES, ct_phantom_hu, ua_sam_predict, write_ct_dicom, write_nifti, write_png


def predict(run_folder, image, out, *extra) -> int:
    return ua_sam_predict("--checkpoint", str(run_folder), "--image", str(image), "--out", str(out), *extra)


def test_a_png_gives_every_picture_and_a_consistent_summary(run_folder, tmp_path):
    out = tmp_path / "out"
    assert predict(run_folder, write_png(tmp_path / "lesion.png"), out, "--point", "30,24", "--samples", "2") == 0
    for name in ("overlay.png", "sample_1.png", "sample_2.png", "uncertainty.png"):
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and min(picture.size) > 200
    assert not (out / "sample_3.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    arrays = np.load(out / "prediction.npz")
    assert summary["samples"] == 2 and arrays["masks"].shape == (2, 48, 80)
    expected = summarize(arrays["masks"].astype(bool), arrays["mean"], arrays["entropy"])
    assert summary["foreground_area_px"] == expected["foreground_area_px"]
    assert summary["uncertain_fraction"] == expected["uncertain_fraction"]
    assert summary["prompt"]["point"] == [30.0, 24.0] and summary["prompt"]["type"] == "point"
    assert summary["checkpoint"]["path"] == str(run_folder) and summary["image"]["format"] == "png"


def test_the_default_k_is_the_runs_and_a_box_is_a_prompt(run_folder, tmp_path):
    png = write_png(tmp_path / "lesion.png", rgb=True)
    assert predict(run_folder, png, tmp_path / "out", "--box", "10,5,50,40") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["samples"] == RUN_SAMPLES and len(summary["files"]["samples"]) == RUN_SAMPLES
    assert summary["prompt"] == {"type": "box", "box": [10.0, 5.0, 50.0, 40.0],
                                 "in_model_input": summary["prompt"]["in_model_input"]}


def test_a_ct_dicom_is_lung_windowed(run_folder, tmp_path):
    pytest.importorskip("pydicom")
    dicom = write_ct_dicom(tmp_path / "ct.dcm", ct_phantom_hu())
    assert predict(run_folder, dicom, tmp_path / "out", "--point", "12,18", "--samples", "2") == 0
    image = json.loads((tmp_path / "out" / "summary.json").read_text())["image"]
    assert image["format"] == "dicom" and image["window"]["name"] == "lung"
    assert (image["window"]["centre"], image["window"]["width"]) == (-600.0, 1500.0)


def test_a_nifti_slice_is_read(run_folder, tmp_path):
    pytest.importorskip("nibabel")
    volume = np.stack([ct_phantom_hu(36)] * 3, axis=-1)
    nifti = write_nifti(tmp_path / "ct.nii.gz", volume)
    out = tmp_path / "out"
    assert predict(run_folder, nifti, out, "--point", "20,15", "--slice", "0", "--window", "soft-tissue",
                   "--samples", "2") == 0
    image = json.loads((out / "summary.json").read_text())["image"]
    assert image["slice"] == 0 and image["window"]["name"] == "soft-tissue"
    assert np.load(out / "prediction.npz")["mean"].shape == (36, 36)


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("ua-sam predict: error: ")
    return lines[0]


def test_an_unreadable_image_is_one_line_and_status_2(run_folder, tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    assert predict(run_folder, tmp_path / "broken.png", tmp_path / "out", "--point", "1,1") == 2
    assert "broken.png: not a readable image" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_point_outside_the_image_is_one_line_and_status_2(run_folder, tmp_path, capsys):
    png = write_png(tmp_path / "lesion.png")
    assert predict(run_folder, png, tmp_path / "out", "--point", "80,10") == 2
    assert "outside the image of 80 x 48 pixels" in error_line(capsys)


def test_k_below_1_is_one_line_and_status_2(run_folder, tmp_path, capsys):
    png = write_png(tmp_path / "lesion.png")
    assert predict(run_folder, png, tmp_path / "out", "--point", "1,1", "--samples", "0") == 2
    assert "--samples must be at least 1" in error_line(capsys)


def test_a_missing_pydicom_names_the_extra(run_folder, tmp_path, capsys, monkeypatch):
    path = tmp_path / "ct.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    monkeypatch.setitem(sys.modules, "pydicom", None)
    assert predict(run_folder, path, tmp_path / "out", "--point", "1,1") == 2
    assert 'pip install "uncertainty-adapters[medical-io]"' in error_line(capsys)


def test_a_folder_that_is_no_run_is_one_line_and_status_2(tmp_path, capsys):
    png = write_png(tmp_path / "lesion.png")
    assert predict(tmp_path, png, tmp_path / "out", "--point", "1,1") == 2
    assert "not a UA-SAM run folder" in error_line(capsys)


def test_summary_counts_areas_and_the_uncertain_part_of_the_mean_mask():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True       # 4 px
    masks[1, :2, :3] = True       # 6 px
    mean = masks.mean(axis=0)     # 1 where both, 0.5 on the 2 px only sample 2 has
    entropy = np.where(mean == 0.5, 1.0, 0.0)
    summary = summarize(masks, mean, entropy)
    assert summary["foreground_area_px"] == {"mean": 5.0, "std": 1.0, "min": 4, "max": 6, "per_sample": [4, 6]}
    assert summary["mean_mask_area_px"] == 4 and summary["uncertain_area_px"] == 2
    assert summary["uncertain_fraction"] == 0.5
    assert summarize(np.zeros((2, 3, 3), bool), np.zeros((3, 3)), np.zeros((3, 3)))["uncertain_fraction"] is None


def test_an_out_folder_with_a_users_file_is_refused_and_left_alone(run_folder, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "overlay.png").write_bytes(b"the user's own figure")
    assert predict(run_folder, write_png(tmp_path / "lesion.png"), thesis, "--point", "30,24") == 2
    assert "overlay.png" in capsys.readouterr().err
    assert (thesis / "overlay.png").read_bytes() == b"the user's own figure"
    assert sorted(p.name for p in thesis.iterdir()) == ["overlay.png"]


def test_a_second_prediction_replaces_the_first_in_its_folder(run_folder, tmp_path):
    png, out = write_png(tmp_path / "lesion.png"), tmp_path / "out"
    assert predict(run_folder, png, out, "--point", "30,24", "--samples", "1") == 0
    assert predict(run_folder, png, out, "--box", "10,5,50,40", "--samples", "1") == 0
    assert json.loads((out / "summary.json").read_text())["prompt"]["type"] == "box"
