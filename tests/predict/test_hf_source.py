"""The same SAM weights as a Hugging Face folder (save_pretrained) and as a segment-anything .pth:
`UncertaintySamPredictor` and `ua-sam predict` give the same output from either."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.sam import UncertaintySamPredictor, build_uncertainty_sam, get_sam_spec
from uncertainty_adapters.integrations.sam.hf_checkpoint import hf_sam_config, hf_to_sam_state_dict

from .conftest import HEADS, RUN_SAMPLES, SIZE, lesion_image, trained_looking, ua_sam_predict, write_png

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{'hf': a SamModel folder, 'pth': the same weights as segment-anything's .pth} of the demo
    architecture at 64 px, random weights everywhere."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    hf = transformers.SamModel(hf_sam_config(get_sam_spec("demo"), image_size=SIZE))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in hf.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    hf.save_pretrained(root / "sam-hf")
    torch.save(hf_to_sam_state_dict(hf.state_dict()), root / "sam.pth")
    return {"hf": root / "sam-hf", "pth": root / "sam.pth"}


def _model(checkpoint):
    torch.manual_seed(0)
    model = build_uncertainty_sam("demo", image_size=SIZE, checkpoint=checkpoint, latent_heads_kwargs=HEADS,
                                  adapter_config=ua.UncertaintyAdapterConfig(mlp_hidden_dim=16))
    return trained_looking(model.eval(), seed=0)


@pytest.fixture(scope="module")
def runs(sources, tmp_path_factory):
    """A run folder per source, holding the same adapters and latent heads."""
    folders = {}
    for name, checkpoint in sources.items():
        folder = tmp_path_factory.mktemp("runs") / name
        run_dir.save_run(folder, _model(checkpoint), {
            "backbone": str(checkpoint.resolve()), "sam": "demo", "image_size": SIZE, "train_decoder": False,
            "preset": {"name": "demo", "eval_samples": RUN_SAMPLES},
        })
        folders[name] = folder
    return folders


def test_predictor_gives_the_same_masks_from_either_source(sources):
    outputs = []
    for checkpoint in (sources["hf"], sources["pth"]):
        predictor = UncertaintySamPredictor(_model(checkpoint))
        predictor.set_image(lesion_image(), num_samples=3, seed=0)
        outputs.append(predictor.predict(point_coords=[[30, 24]]))
    hf, pth = outputs
    np.testing.assert_allclose(hf.logits, pth.logits, rtol=1e-5, atol=1e-5)
    assert (hf.masks == pth.masks).all()


def test_ua_sam_predict_writes_the_same_prediction_from_either_source(runs, tmp_path):
    image = write_png(tmp_path / "lesion.png")
    arrays = {}
    for name, folder in runs.items():
        out = tmp_path / name
        assert ua_sam_predict("--checkpoint", str(folder), "--image", str(image), "--out", str(out),
                              "--point", "30,24", "--cpu") == 0
        arrays[name] = np.load(out / "prediction.npz")
    assert arrays["hf"].files == arrays["pth"].files
    for key in arrays["hf"].files:
        np.testing.assert_allclose(arrays["hf"][key], arrays["pth"][key], rtol=1e-5, atol=1e-5)
