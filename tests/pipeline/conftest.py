"""Small runs of the UA-SAM pipeline: the demo architecture at 64 px on a few synthetic cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uncertainty_adapters.integrations.pipeline.presets import get_preset
from uncertainty_adapters.integrations.pipeline.training.checkpoints import load_latest_checkpoint
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, train
from uncertainty_adapters.integrations.sam import build_sam, save_sam_weights

SIZE = 64


def small_preset(**overrides):
    """The demo preset shrunk to seconds: 64 px, 40 synthetic cases (28 train, 4 val, 8 test),
    one prior-fit epoch."""
    settings = dict(image_size=SIZE, batch_size=4, epochs=2, synthetic_cases=40, log_every=1,
                    checkpoint_every=2, eval_samples=2, latent_resolution=32, prior_fit_epochs=1)
    settings.update(overrides)
    return get_preset("demo").replace(**settings)


@pytest.fixture(scope="session")
def backbone_file(tmp_path_factory) -> Path:
    """A demo-architecture SAM checkpoint at 64 px (random weights), in SAM's layout."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("backbone") / "sam-demo-64.safetensors"
    save_sam_weights(build_sam("demo", image_size=SIZE), path)
    return path


def job(out: Path, **preset_overrides) -> TrainJob:
    max_steps = preset_overrides.pop("max_steps", None)
    resume = preset_overrides.pop("resume", False)
    return TrainJob(preset=small_preset(**preset_overrides), data="synthetic", out=out, seed=0,
                    max_steps=max_steps, resume=resume, cpu=True)


def straight_and_resumed(tmp_path: Path, backbone: Path, first: int, total: int, **preset_overrides):
    """Train ``total`` steps at once, and ``first`` steps then ``--resume`` to ``total``: the two
    runs' latest checkpoints, (straight, resumed), for a test that they are equal."""
    settings = dict(checkpoint_every=1000, **preset_overrides)
    train(job(tmp_path / "straight", max_steps=total, **settings), backbone=backbone)
    train(job(tmp_path / "split", max_steps=first, **settings), backbone=backbone)
    train(job(tmp_path / "split", max_steps=total, resume=True, **settings), backbone=backbone)
    return (load_latest_checkpoint(tmp_path / "straight" / "checkpoints"),
            load_latest_checkpoint(tmp_path / "split" / "checkpoints"))


@pytest.fixture
def posterior_noise_seen(monkeypatch) -> list[float]:
    """The share of the posterior's noise each training forward of UA-SAM is given (1.0 where none
    is passed), in order, while the test runs."""
    from uncertainty_adapters.integrations.sam.model import UncertaintySam

    seen: list[float] = []
    forward = UncertaintySam.forward

    def spy(self, *args, **kwargs):
        if self.training and kwargs.get("masks") is not None:
            seen.append(kwargs.get("posterior_noise", 1.0))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(UncertaintySam, "forward", spy)
    return seen
