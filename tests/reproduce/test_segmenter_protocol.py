"""UA-SAM, the Probabilistic U-Net and the ensemble speak the written interface of
pipeline/models/protocol.py, the only one the training loop, evaluation and run folders use."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.integrations.pipeline.models import (
    AdapterEnsemble,
    Segmenter,
    SegmenterOutputLike,
    TrainableSegmenter,
)
from uncertainty_adapters.model import parameter_counts

from .test_baselines import SIZE, adapter_sam, point, prob_unet


def _models() -> dict[str, torch.nn.Module]:
    return {"ua-sam": adapter_sam(0, "cmsm"), "prob-unet": prob_unet(), "ensemble": AdapterEnsemble(
        [adapter_sam(0), adapter_sam(1)])}


@pytest.mark.parametrize("name", ["ua-sam", "prob-unet"])
def test_the_trained_models_are_trainable_segmenters(name):
    model = _models()[name]
    assert isinstance(model, TrainableSegmenter)
    model.load_trainable_state_dict(model.trainable_state_dict())
    groups = model.optimizer_groups(None)
    assert sum(len(group["params"]) for group in groups) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["ua-sam", "prob-unet", "ensemble"])
def test_every_segmenter_samples_k_masks_per_image_in_the_output_type(name):
    model = _models()[name]
    assert isinstance(model, Segmenter)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        out = model(images, point(2, 30.0), num_samples=3, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, SegmenterOutputLike)
    assert out.logits.shape == (2, 3, SIZE, SIZE)


def test_an_ensemble_counts_a_parameter_its_members_share_once():
    first, second = adapter_sam(0), adapter_sam(1)
    second.image_encoder = first.image_encoder  # one frozen backbone for both members
    ensemble = AdapterEnsemble([first, second])
    assert ensemble.get_nb_trainable_parameters() == parameter_counts(first, second)
    assert ensemble.get_nb_trainable_parameters()[1] < sum(m.get_nb_trainable_parameters()[1] for m in (first, second))
