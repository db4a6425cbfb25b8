"""`ua-sam` end to end on a few synthetic cases, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uncertainty_adapters.integrations.cli import main

from .conftest import SIZE

SMALL = ["--image-size", str(SIZE), "--synthetic-cases", "40", "--batch-size", "4", "--samples", "2", "--cpu",
         "--prior-fit-epochs", "1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, backbone_file) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(out),
                 "--sam-checkpoint", str(backbone_file), "--max-steps", "2", *SMALL])
    assert code == 0
    return out


def test_train_writes_weights_metrics_and_figure(trained_run, capsys):
    names = set(os.listdir(trained_run))
    assert {"run.json", "adapters", "metrics.json", "figure.png", "train_log.csv"} <= names
    assert {"adapter_config.json", "adapter_model.safetensors", "latent_heads.safetensors"} <= set(
        os.listdir(trained_run / "adapters"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"dice", "ged", "hm_iou", "diversity", "samples", "s_ncc", "soft_dice", "ece", "ged_samples",
            "ci95"} <= set(metrics)
    assert metrics["samples"] == 2 and metrics["ged_samples"] == 16 and metrics["data"] == "synthetic"


def test_evaluate_writes_the_field_metrics_with_intervals_and_the_sample_files(trained_run, tmp_path, capsys):
    import numpy as np

    code = main(["evaluate", "--checkpoint", str(trained_run), "--data", "synthetic", "--ged-samples", "5",
                 "--save-samples", "--out", str(tmp_path), "--cpu"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    keys = ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece")
    assert metrics["ged_samples"] == 5 and metrics["samples"] == 2
    assert set(keys) <= set(metrics) and set(keys) == set(metrics["ci95"])
    files = sorted((tmp_path / "samples").iterdir())
    assert len(files) == metrics["num_images"] and all(f.name.startswith("synthetic-") for f in files)
    case = np.load(files[0])
    assert case["samples"].shape == (5, SIZE, SIZE) and case["probs"].dtype == np.float16
    assert case["raters"].dtype == np.bool_ and case["raters"].shape[1:] == (SIZE, SIZE)
    assert "95% bootstrap interval" in capsys.readouterr().out


def test_evaluate_reads_the_run_folder(trained_run, tmp_path, capsys):
    code = main(["evaluate", "--checkpoint", str(trained_run), "--data", "synthetic", "--samples", "3",
                 "--out", str(tmp_path), "--cpu"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["samples"] == 3
    assert "HM-IoU" in capsys.readouterr().out


def test_evaluate_is_reproducible(trained_run, tmp_path):
    for name in ("a", "b"):
        main(["evaluate", "--checkpoint", str(trained_run), "--data", "synthetic", "--out", str(tmp_path / name), "--cpu"])
    first, second = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    assert {k: first[k] for k in ("dice", "ged", "hm_iou", "diversity")} == {k: second[k] for k in ("dice", "ged", "hm_iou", "diversity")}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "folder:/no/such/folder", "--preset", "demo", "--out", "{tmp}/x"], "/no/such/folder"),
        (["train", "--data", "mnist", "--preset", "demo", "--out", "{tmp}/x"], "unknown data spec"),
        (["evaluate", "--checkpoint", "{tmp}", "--data", "synthetic"], "not a UA-SAM run folder"),
        (["train", "--data", "synthetic", "--preset", "paper-lidc", "--out", "{tmp}/x", "--sam-checkpoint", "{tmp}/none.pth"], "does not exist"),
        (["train", "--data", "synthetic", "--preset", "demo", "--out", "{tmp}/x", "--lidc-split", "ordered"], "--lidc-split applies"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(argv, message, tmp_path, capsys):
    code = main([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_zero_samples_exits_non_zero(trained_run, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(trained_run), "--data", "synthetic", "--samples", "0",
                 "--out", str(tmp_path), "--cpu"]) == 2
    assert "positive integer" in capsys.readouterr().err


def test_console_script_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "uncertainty_adapters.integrations.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert all(cmd in result.stdout for cmd in ("demo", "train", "evaluate"))


def test_train_on_a_folder_of_png_cases(tmp_path, backbone_file):
    """A folder the project did not generate: plain PNG files written with Pillow."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for case in range(12):
        folder = tmp_path / "data" / f"case{case:02d}"
        folder.mkdir(parents=True)
        image = (rng.random((48, 48)) * 80).astype(np.uint8)
        image[14:34, 14:34] += 120
        Image.fromarray(image).save(folder / f"case{case:02d}.png")
        for rater, grow in enumerate((0, 2), start=1):
            mask = np.zeros((48, 48), np.uint8)
            mask[14 - grow : 34 + grow, 14 - grow : 34 + grow] = 255
            Image.fromarray(mask).save(folder / f"case{case:02d}_seg_{rater}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{tmp_path / 'data'}", "--preset", "demo", "--out", str(out),
                 "--sam-checkpoint", str(backbone_file), "--max-steps", "2", *SMALL]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 3


def test_train_on_lidc_with_the_official_ordered_split_records_it(tmp_path, backbone_file):
    from tests.data.writers import lidc_entries, write_pickle

    path = write_pickle(tmp_path / "lidc.pickle", lidc_entries(40, size=SIZE))
    out = tmp_path / "run"
    assert main(["train", "--data", f"lidc:{path}", "--preset", "demo", "--out", str(out), "--lidc-split", "ordered",
                 "--sam-checkpoint", str(backbone_file), "--max-steps", "1", *SMALL]) == 0
    assert json.loads((out / "run.json").read_text())["dataset_kwargs"]["split_by"] == "ordered"
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 6  # the last 8 of 40 slices, cut to 6
