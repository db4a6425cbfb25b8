"""The prompt protocol: the demo clicks every lesion of the raters' majority, at training and at
evaluation; the paper's single click stays available."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from uncertainty_adapters.integrations.data import build_dataset
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate
from uncertainty_adapters.integrations.pipeline.presets import PRESETS
from uncertainty_adapters.integrations.pipeline.training.loop import prompt_source
from uncertainty_adapters.integrations.sam import UncertaintySamOutput

from .conftest import SIZE, small_preset


def _batch() -> dict[str, torch.Tensor]:
    majority = torch.zeros(2, 1, 8, 8)
    majority[:, 0, 1:3, 1:3] = 1
    return {"majority": majority}


def test_component_points_training_prompts_come_from_the_raters_majority():
    rater = torch.zeros(2, 1, 8, 8)
    rater[:, 0, 5:7, 5:7] = 1
    source = prompt_source(small_preset(prompt="component-points"), rater, _batch())
    assert torch.equal(source, _batch()["majority"])


def test_the_paper_single_click_is_drawn_from_the_rater_mask_being_learnt():
    rater = torch.zeros(2, 1, 8, 8)
    rater[:, 0, 5:7, 5:7] = 1
    assert prompt_source(small_preset(prompt="point"), rater, _batch()) is rater


def test_demo_clicks_every_majority_lesion_and_paper_presets_click_once():
    assert PRESETS["demo"].prompt == "component-points"
    assert PRESETS["paper-lidc"].prompt == PRESETS["paper-refuge2"].prompt == "point"


class RecordsPrompts(nn.Module):
    """A stand-in model that predicts nothing and keeps the prompts it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.prompts = []

    def forward(self, images, prompts, masks=None, num_samples=1, generator=None):
        self.prompts.append(prompts)
        return UncertaintySamOutput(torch.full((images.shape[0], num_samples, *images.shape[-2:]), -10.0), None, None)


def test_evaluation_clicks_once_on_every_lesion_of_the_majority():
    test = build_dataset("synthetic", SIZE, split="test", seed=0, length=60)
    model = RecordsPrompts()
    evaluate(model, test, num_samples=1, batch_size=4, prompt="component-points")
    clicked_two = 0
    for index, prompts in enumerate(p for batch in model.prompts for p in _split(batch)):
        majority = test[index]["majority"][0].numpy() > 0.5
        components, count = ndimage.label(majority, structure=np.ones((3, 3)))
        real = prompts.labels[0] == 1
        hit = {int(components[y, x]) for x, y in prompts.points[0][real].long().tolist()}
        assert hit == set(range(1, count + 1)) and int(real.sum()) == count
        clicked_two += count >= 2
    assert clicked_two > 0, "the fixture should hold a case whose majority marks two lesions"


def _split(prompts):
    for b in range(prompts.points.shape[0]):
        yield type(prompts)(prompts.points[b : b + 1], prompts.labels[b : b + 1])
