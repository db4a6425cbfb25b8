"""raters_per_image: one random rater per image (the paper), or every rater of fewer images a step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset
from uncertainty_adapters.integrations.pipeline.training import loop as training_loop
from uncertainty_adapters.integrations.pipeline.training.checkpoints import load_latest_checkpoint
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, raters_per_image_of, train
from uncertainty_adapters.integrations.pipeline.training.rater_batches import (
    all_raters_sampler,
    images_per_step,
    with_every_rater,
)

from .conftest import job, small_preset, straight_and_resumed


def _batch(images=2, raters=3, side=4):
    masks = torch.stack([torch.full((raters, side, side), float(i)) for i in range(images)])
    masks[:, :, 0, 0] = torch.arange(raters, dtype=torch.float32)  # each rater's mask differs
    return {
        "image": torch.arange(images, dtype=torch.float32).view(images, 1, 1, 1).expand(images, 3, side, side),
        "masks": masks,
        "mask": masks[:, :1].to(torch.uint8),
        "majority": masks[:, :1] > 0,
        "case_id": [f"case-{i}" for i in range(images)],
        "epoch": 7,
    }


def test_every_rater_of_each_image_becomes_one_pair_in_place():
    out = with_every_rater(_batch(images=2, raters=3))
    assert out["image"].shape[0] == out["mask"].shape[0] == out["masks"].shape[0] == 6
    assert out["image"][:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1]  # image i's copies are rows 3i..3i+2
    assert out["case_id"] == ["case-0"] * 3 + ["case-1"] * 3
    assert out["mask"].shape == (6, 1, 4, 4) and out["mask"].dtype == torch.uint8
    assert out["mask"][:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]  # the raters' masks in turn
    assert out["mask"][:, 0, 1, 1].tolist() == [0, 0, 0, 1, 1, 1]  # ... each of its own image
    assert torch.equal(out["majority"], _batch()["majority"].repeat_interleave(3, 0))
    assert out["epoch"] == 7  # what is not per image is left alone


def test_a_step_holds_batch_size_over_raters_images_and_other_sizes_are_refused_with_the_fix():
    assert images_per_step(16, 4) == 4 and images_per_step(4, 4) == 1
    with pytest.raises(ValueError, match=r"multiple of 4; got 6\. Use --batch-size 4 or 8, or --raters-per-image one"):
        images_per_step(6, 4)
    with pytest.raises(ValueError, match=r"got 2\. Use --batch-size 4,"):
        images_per_step(2, 4)


def test_an_epoch_draws_a_fresh_share_of_distinct_images():
    sampler = all_raters_sampler(range(40), steps_per_epoch=5, images_per_step=2, generator=torch.Generator().manual_seed(0))
    first, second = list(sampler), list(sampler)
    assert len(first) == len(set(first)) == 10 and len(second) == len(set(second)) == 10
    assert first != second
    with pytest.raises(ValueError, match="needs 50 items; the data has 40"):
        all_raters_sampler(range(40), steps_per_epoch=25, images_per_step=2, generator=torch.Generator())


def test_only_ua_sam_with_a_latent_trains_on_every_rater(tmp_path):
    def draw(**kwargs):
        model = kwargs.pop("model", "ua-sam")
        return raters_per_image_of(TrainJob(preset=small_preset(raters_per_image="all", **kwargs), data="synthetic",
                                            out=tmp_path, model=model))

    assert draw(interaction="cmsm") == draw(interaction="concat") == draw(interaction="sample") == "all"
    assert draw(interaction="none") == draw(interaction="position") == "one"  # no z to tell the raters apart
    assert draw(model="prob-unet") == "one"  # the baseline keeps its recipe


def test_the_presets_default_and_a_recorded_preset_without_the_field_mean_the_papers_draw():
    assert get_preset("paper-lidc").raters_per_image == get_preset("paper-refuge2").raters_per_image == "one"
    recorded = {k: v for k, v in get_preset("demo").to_dict().items() if k != "raters_per_image"}
    assert Preset.from_dict(recorded).raters_per_image == "one"
    with pytest.raises(ValueError, match=r"raters_per_image must be one of \('one', 'all'\), got 'each'"):
        get_preset("demo").replace(raters_per_image="each")


def test_a_run_on_every_rater_keeps_the_steps_and_masks_per_step_and_records_it(tmp_path, backbone_file, monkeypatch):
    seen = []
    original = training_loop.with_every_rater

    def spy(batch):
        out = original(batch)
        seen.append((batch["image"].shape[0], out["mask"].shape[0], batch["case_id"]))
        return out

    monkeypatch.setattr(training_loop, "with_every_rater", spy)
    train(job(tmp_path / "all", epochs=2, raters_per_image="all", prior_fit_epochs=0), backbone=backbone_file)
    train(job(tmp_path / "one", epochs=2, prior_fit_epochs=0), backbone=backbone_file)
    all_steps = load_latest_checkpoint(tmp_path / "all" / "checkpoints").progress.step
    assert all_steps == load_latest_checkpoint(tmp_path / "one" / "checkpoints").progress.step == len(seen)
    assert {(images, pairs) for images, pairs, _ in seen} == {(1, 4)}  # batch 4, 4 raters: 1 image x 4 masks
    epoch_one = [case for _, _, cases in seen[: len(seen) // 2] for case in cases]
    assert len(set(epoch_one)) == len(epoch_one)  # an epoch does not repeat an image
    meta = run_dir.read_run_config(tmp_path / "all")
    assert meta["raters_per_image"] == "all" and meta["preset"]["raters_per_image"] == "all"
    assert run_dir.read_run_config(tmp_path / "one")["raters_per_image"] == "one"


def test_a_resumed_run_on_every_rater_equals_an_uninterrupted_one(tmp_path, backbone_file):
    straight, resumed = straight_and_resumed(tmp_path, backbone_file, 5, 9, raters_per_image="all", prior_fit_epochs=0)
    assert straight.progress == resumed.progress
    assert all(torch.equal(tensor, resumed.trainable[name]) for name, tensor in straight.trainable.items())


def test_a_batch_size_that_splits_an_images_raters_is_refused_before_training(tmp_path, backbone_file):
    bad = job(tmp_path / "run", batch_size=6, raters_per_image="all")
    with pytest.raises(ValueError, match="--batch-size 4 or 8"):
        train(bad, backbone=backbone_file)
    assert not (tmp_path / "run" / "checkpoints").exists()
    train(dataclasses.replace(bad, preset=bad.preset.replace(batch_size=4), max_steps=1), backbone=backbone_file)
