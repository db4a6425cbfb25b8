"""`ua-sam train / evaluate / predict / reproduce --sam-checkpoint DIR` with a Hugging Face
SamModel folder (save_pretrained): its config.json gives the architecture, the run folder
points at it, and a hub name that is not on this machine ends with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uncertainty_adapters.integrations.cli import main
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.sam import SamSpec

from ..predict.conftest import one_thread  # noqa: F401  (autouse: one torch thread)
from .conftest import SIZE

transformers = pytest.importorskip("transformers")

# Smaller than the demo architecture (2 blocks, width 64) at 64 px: the preset's 'demo' is replaced.
SMALL_SAM = SamSpec(
    encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,),
    patch_size=8, window_size=4, prompt_embed_dim=32, decoder_mlp_dim=64, decoder_num_heads=2,
    iou_head_hidden_dim=32, mask_in_chans=4, image_size=SIZE,
)
SMALL = ["--image-size", str(SIZE), "--synthetic-cases", "40", "--batch-size", "4", "--samples", "2", "--cpu",
         "--prior-fit-epochs", "1"]


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A random transformers SamModel of SMALL_SAM, written by save_pretrained."""
    from uncertainty_adapters.integrations.sam.hf_checkpoint import hf_sam_config

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "sam-small"
    transformers.SamModel(hf_sam_config(SMALL_SAM)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_run(hf_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    code = main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(out),
                 "--sam-checkpoint", str(hf_folder), "--max-steps", "2", *SMALL])
    torch.set_num_threads(threads)
    assert code == 0
    return out


def test_train_builds_the_folders_architecture_and_records_the_folder(hf_run, hf_folder):
    meta = run_dir.read_run_config(hf_run)
    assert meta["backbone"] == str(hf_folder.resolve())
    assert meta["progress"]["step"] == 2
    model, _ = run_dir.load_run(hf_run)
    assert len(model.image_encoder.blocks) == SMALL_SAM.encoder_depth
    assert model.image_encoder.pos_embed.shape[-1] == SMALL_SAM.encoder_embed_dim
    assert {"dice", "ged", "hm_iou"} <= set(json.loads((hf_run / "metrics.json").read_text()))


def test_evaluate_reads_a_run_trained_on_a_hf_folder(hf_run, tmp_path):
    assert main(["evaluate", "--checkpoint", str(hf_run), "--data", "synthetic", "--out", str(tmp_path), "--cpu"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["samples"] == 2


def test_predict_reads_a_run_trained_on_a_hf_folder(hf_run, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray((np.random.default_rng(0).random((48, 64)) * 255).astype(np.uint8)).save(image)
    assert main(["predict", "--checkpoint", str(hf_run), "--image", str(image), "--point", "20,20",
                 "--out", str(tmp_path / "out"), "--cpu"]) == 0
    assert np.load(tmp_path / "out" / "prediction.npz")["masks"].shape == (2, 48, 64)


def test_reproduce_trains_its_uncertainty_rows_on_a_hf_folder(hf_folder, tmp_path):
    out = tmp_path / "reproduce"
    assert main(["reproduce", "--data", "synthetic", "--preset", "demo", "--budget", "smoke", "--rows", "ua-sam",
                 "--seeds", "1", "--threads", "1", "--cpu", "--sam-checkpoint", str(hf_folder), "--out", str(out)]) == 0
    (run,) = (out / "runs").glob("ua-sam-*/seed-*")
    assert run_dir.read_run_config(run)["backbone"] == str(hf_folder.resolve())
    assert not (out / "backbone.safetensors").exists()


def test_a_hub_name_that_is_not_here_ends_with_how_to_download_it(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(tmp_path / "run"),
                 "--sam-checkpoint", "wanglab/medsam-vit-base", *SMALL])
    assert code == 2
    error = capsys.readouterr().err
    assert "wanglab/medsam-vit-base" in error and "hf download wanglab/medsam-vit-base --local-dir" in error
