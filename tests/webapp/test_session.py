"""The app's model side: K masks per click, embeddings cached per image, predict's files, and
bad input refused with a message (no web server here)."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.app import Prompt, Segmenter
from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.pipeline.output_dir import MARKER
from uncertainty_adapters.integrations.pipeline.predict import run_predict

from .conftest import RUN_SAMPLES

CLICK = Prompt([[30.0, 20.0]], [1])


@pytest.fixture
def segmenter() -> Segmenter:
    return Segmenter()


def _count_encodes(segmenter: Segmenter, run) -> list:
    model = segmenter.load_run(run).model
    calls = []
    encode = model.encode
    model.encode = lambda *args, **kwargs: calls.append(1) or encode(*args, **kwargs)
    return calls


def test_a_click_returns_K_masks_at_the_image_size(segmenter, app_run, lesion_png):
    result = segmenter.segment(app_run, lesion_png, CLICK, samples=5)
    assert result.prediction.masks.shape == (5, 48, 80) and result.summary["samples"] == 5


def test_K_defaults_to_the_runs_preset(segmenter, app_run, lesion_png):
    assert segmenter.segment(app_run, lesion_png, CLICK).prediction.num_samples == RUN_SAMPLES


def test_a_second_click_reuses_the_cached_embeddings(segmenter, app_run, lesion_png):
    calls = _count_encodes(segmenter, app_run)
    first = segmenter.segment(app_run, lesion_png, CLICK)
    second = segmenter.segment(app_run, lesion_png, Prompt([[30.0, 20.0], [5.0, 5.0]], [1, 0]))
    assert (first.encoded, second.encoded, len(calls)) == (True, False, 1)


def test_the_same_image_uploaded_again_reuses_the_embeddings(segmenter, app_run, lesion_png, tmp_path):
    copy = shutil.copy(lesion_png, tmp_path / "again.png")
    segmenter.segment(app_run, lesion_png, CLICK)
    assert not segmenter.segment(app_run, copy, CLICK).encoded


def test_another_K_or_seed_encodes_again(segmenter, app_run, lesion_png):
    segmenter.segment(app_run, lesion_png, CLICK, samples=2)
    assert segmenter.segment(app_run, lesion_png, CLICK, samples=4).encoded
    assert segmenter.segment(app_run, lesion_png, CLICK, samples=4, seed=1).encoded


def test_the_files_equal_those_of_predict_for_the_same_click(segmenter, app_run, lesion_png, tmp_path):
    summary = segmenter.write_files(segmenter.segment(app_run, lesion_png, CLICK, samples=3), tmp_path / "app")
    run_predict(argparse.Namespace(
        checkpoint=str(app_run), image=str(lesion_png), point=(30.0, 20.0), box=None, samples=3, window=None,
        slice=None, seed=0, cpu=True, out=str(tmp_path / "predict")))
    expected = json.loads((tmp_path / "predict" / "summary.json").read_text())
    app, predict = tmp_path / "app", tmp_path / "predict"
    # predict also marks its --out folder as ua-sam's (output_dir.MARKER); the app's download is a temp folder
    assert sorted(p.name for p in app.iterdir()) == sorted(p.name for p in predict.iterdir() if p.name != MARKER)
    app_arrays, predict_arrays = np.load(app / "prediction.npz"), np.load(predict / "prediction.npz")
    assert all(np.array_equal(app_arrays[name], predict_arrays[name]) for name in predict_arrays.files)
    assert summary["files"] == expected["files"] and summary["prompt"] == expected["prompt"]


def test_the_summary_names_the_predict_command_that_reproduces_it(segmenter, app_run, lesion_png):
    command = segmenter.segment(app_run, lesion_png, CLICK, samples=3).summary["command"]
    assert "--point 30,20 --samples 3 --seed 0" in command and "lesion.png" in command


def test_an_empty_prompt_asks_for_a_click(segmenter, app_run, lesion_png):
    with pytest.raises(ValueError, match="click on the image"):
        segmenter.segment(app_run, lesion_png, Prompt())


def test_a_point_outside_the_image_is_refused(segmenter, app_run, lesion_png):
    with pytest.raises(ValueError, match="outside the image of 80 x 48"):
        segmenter.segment(app_run, lesion_png, Prompt([[200.0, 5.0]], [1]))


def test_a_file_that_is_not_an_image_is_refused(segmenter, app_run, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="not a readable image"):
        segmenter.segment(app_run, text, CLICK)


def test_a_10k_by_10k_image_is_refused_from_its_header(segmenter, app_run, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("1", (10_000, 10_000)).save(huge)
    with pytest.raises(DataError, match="10000 x 10000 pixels .* downscale it first"):
        segmenter.read(huge)


def test_a_slice_outside_the_volume_is_refused(segmenter, tmp_path):
    from ..predict.conftest import write_nifti

    volume = write_nifti(tmp_path / "ct.nii.gz", np.zeros((16, 16, 4)))
    with pytest.raises(DataError, match="slice 9 does not exist"):
        segmenter.read(volume, slice_index=9)


def test_a_four_dimensional_volume_is_refused(segmenter, tmp_path):
    from ..predict.conftest import write_nifti

    volume = write_nifti(tmp_path / "fmri.nii.gz", np.zeros((8, 8, 4, 3)))
    with pytest.raises(DataError, match="not supported; give a 2-D image or a 3-D volume"):
        segmenter.read(volume)


def test_a_run_folder_that_does_not_fit_is_refused(segmenter, app_run, tmp_path):
    broken = shutil.copytree(app_run, tmp_path / "broken")
    config_path = broken / "adapters" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["config"]["mlp_hidden_dim"] = 24  # the saved adapter weights are for 16
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError):
        segmenter.load_run(broken)


def test_a_missing_run_folder_is_refused(segmenter, tmp_path):
    with pytest.raises(FileNotFoundError, match="ua-sam demo"):
        segmenter.load_run(tmp_path / "nowhere")
