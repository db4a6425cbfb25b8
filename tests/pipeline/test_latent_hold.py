"""A run whose latent did not take hold says so at its end: from the spread of the epoch it keeps,
and from how much its samples vary on the validation part against the raters."""

from __future__ import annotations

import csv
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from uncertainty_adapters.integrations.data import build_dataset
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training import latent_hold
from uncertainty_adapters.integrations.pipeline.training.checkpoints import Progress
from uncertainty_adapters.integrations.pipeline.training.latent_hold import (
    CHECK_MARGIN,
    SAMPLE_SHARE,
    TAKEOFF_SPREAD,
    idle_latent_message,
    measure_sample_diversity,
    near_the_line,
    share_standard_error,
)
from uncertainty_adapters.integrations.pipeline.training.loop import train, train_val_split

from .conftest import job


def test_the_message_names_the_spread_the_takeoff_and_the_fix_and_is_silent_from_the_takeoff_on():
    message = idle_latent_message(0.03)
    assert "0.03 prior sigmas apart" in message and f"reaches {TAKEOFF_SPREAD}" in message
    assert "Another --seed" in message and "--attempts N" in message and "more --epochs" in message
    assert "val_rater_spread" in message
    assert "not a benchmark's" in message  # a benchmark keeps the seed it lost
    assert idle_latent_message(TAKEOFF_SPREAD) is None and idle_latent_message(0.8) is None
    assert idle_latent_message(None) is None  # nothing measured: no latent, or no image whose raters disagree


def test_a_spread_past_the_takeoff_with_samples_under_the_share_is_still_warned_and_says_it_took_hold_late():
    message = idle_latent_message(0.45, sample_share=0.35)
    assert "samples' diversity is 0.35 of the raters'" in message and f"gives {SAMPLE_SHARE} or more" in message
    assert "0.45 prior sigmas apart" in message and "late or weakly" in message and "--attempts N" in message
    assert idle_latent_message(0.45, sample_share=SAMPLE_SHARE) is None
    assert idle_latent_message(None, sample_share=0.1).startswith("the latent has not taken hold")
    assert idle_latent_message(0.02, sample_share=0.9).startswith("the latent has not taken hold: at the best epoch")


class _RatersAsSamples(nn.Module):
    """Sample k of an image is channel k mod 3 of the image: the items below carry their three
    raters' masks there, so three samples are the raters themselves."""

    def __init__(self, repeat_first: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.repeat_first = repeat_first

    def forward(self, images, prompts, num_samples, generator=None):
        channels = [0 if self.repeat_first else k % 3 for k in range(num_samples)]
        logits = (images[:, channels] * 2 - 1) * self.scale
        return type("Output", (), {"logits": logits})()


def _items(raters_disagree: bool):
    size, items = 32, []
    for index in range(4):
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        radii = (6.0, 8.0, 11.0) if raters_disagree else (8.0, 8.0, 8.0)
        masks = torch.stack([((yy - 16) ** 2 + (xx - 16 + index) ** 2 <= r * r).float() for r in radii])
        items.append({"image": masks.clone(), "masks": masks, "majority": masks[1:2], "case_id": f"c{index}"})
    return items


def test_samples_that_are_the_raters_reach_their_diversity_and_one_repeated_mask_reaches_none():
    as_raters = measure_sample_diversity(_RatersAsSamples(), _items(True), 3, "point", seed=0)
    assert as_raters["share"] == pytest.approx(1.0) and as_raters["samples"] == pytest.approx(as_raters["raters"])
    assert as_raters["images"] == 4 and as_raters["num_samples"] == 3 and as_raters["raters"] > 0
    assert as_raters["share_se"] == pytest.approx(0.0, abs=1e-9)  # samples = raters on every image: no doubt
    repeated = measure_sample_diversity(_RatersAsSamples(repeat_first=True), _items(True), 3, "point", seed=0)
    assert repeated["share"] == 0.0
    assert measure_sample_diversity(_RatersAsSamples(), _items(False), 3, "point", seed=0) is None  # raters agree
    assert measure_sample_diversity(_RatersAsSamples(), [], 3, "point", seed=0) is None
    assert measure_sample_diversity(_RatersAsSamples(), None, 3, "point", seed=0) is None


def test_the_shares_standard_error_is_the_delta_methods_for_a_ratio_of_means_over_the_images():
    raters = torch.tensor([0.2, 0.1, 0.3, 0.2])
    assert share_standard_error(raters * 0.6, raters) == pytest.approx(0.0, abs=1e-6)  # the same share everywhere
    samples = torch.tensor([0.1, 0.1, 0.1, 0.1])  # share 0.4 / 0.8 = 0.5: residuals 0, 0.05, -0.05, 0
    assert share_standard_error(samples, raters) == pytest.approx((0.005 / 3) ** 0.5 / (2 * 0.2))
    assert share_standard_error(samples[:1], raters[:1]) is None  # one image: no spread to read it from
    more = share_standard_error(samples.repeat(4), raters.repeat(4))
    assert more < share_standard_error(samples, raters)  # more images, a surer share


def test_the_raters_diversities_follow_the_images_in_the_order_evaluation_gathered_them():
    values = torch.tensor([1.0, 2.0, 3.0])
    assert latent_hold._in_order_of(["c", "a", "b"], ["a", "b", "c"], values).tolist() == [3.0, 1.0, 2.0]
    twice = ["a", "a", "c"]
    assert latent_hold._in_order_of(["a", "a", "c"], twice, values).tolist() == [1.0, 2.0, 3.0]  # names repeat


def test_a_share_over_the_line_by_less_than_its_margin_is_near_it_and_one_under_it_or_unmeasured_is_not():
    se = 0.05
    assert near_the_line({"share": SAMPLE_SHARE, "share_se": se})
    assert near_the_line({"share": SAMPLE_SHARE + 0.9 * CHECK_MARGIN * se, "share_se": se})
    assert not near_the_line({"share": SAMPLE_SHARE + 1.1 * CHECK_MARGIN * se, "share_se": se})
    assert not near_the_line({"share": SAMPLE_SHARE - 0.01, "share_se": se})  # under it: it did not hold
    assert not near_the_line({"share": SAMPLE_SHARE, "share_se": None})  # one image
    assert not near_the_line({"share": SAMPLE_SHARE})  # recorded before the standard error was
    assert not near_the_line(None)


def _warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == LOGGER_NAME and record.levelno == logging.WARNING and "taken hold" in record.getMessage()]


@pytest.mark.parametrize("takeoff, share, warned", [(0.0, 0.0, False), (1e9, 0.0, True), (0.0, 1e9, True)])
def test_a_run_records_the_spread_of_its_best_epoch_and_its_samples_share_and_warns_below_either_line(
        tmp_path, backbone_file, caplog, monkeypatch, takeoff, share, warned):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", takeoff)
    monkeypatch.setattr(latent_hold, "SAMPLE_SHARE", share)
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    out = tmp_path / "run"
    train(job(out, epochs=2, prior_fit_epochs=0), backbone=backbone_file)
    config = run_dir.read_run_config(out)
    with open(out / "train_log.csv", newline="") as log:
        rows = [row for row in csv.DictReader(log) if row["val_loss"]]
    best = min(rows, key=lambda row: float(row["val_loss"]))  # the weights the run keeps
    assert config["progress"]["best_rater_spread"] == pytest.approx(float(best["val_rater_spread"]))
    checked = config["val_sample_diversity"]
    assert checked["share"] == pytest.approx(checked["samples"] / checked["raters"]) and checked["share_se"] >= 0
    assert checked["images"] == config["split"]["validation"] and checked["num_samples"] == config["preset"]["ged_samples"]
    assert len(_warnings(caplog)) == int(warned)


@pytest.mark.parametrize("weights", ["file", "random"])
def test_the_check_is_the_kept_model_on_the_validation_part_and_repeats_exactly(tmp_path, backbone_file, weights):
    # a run on a randomly initialised SAM (a smoke run's: run.json "backbone" null) reloads the SAM it
    # trained on too, whatever torch's generators hold when it is loaded
    out = tmp_path / "run"
    train(job(out, epochs=1, prior_fit_epochs=1), backbone=backbone_file if weights == "file" else None)
    torch.manual_seed(12345)
    model, config = run_dir.load_run(out)
    assert (config["backbone"] is None) == (weights == "random")
    part = build_dataset(config["data"], config["image_size"], split="train", seed=config["data_seed"],
                         **config["dataset_kwargs"])
    _, validation = train_val_split(len(part), config["preset"]["val_fraction"], config["split_seed"])
    again = measure_sample_diversity(model, Subset(part, validation), config["preset"]["ged_samples"],
                                     config["preset"]["prompt"], config["seed"], batch_size=config["preset"]["batch_size"])
    assert again == pytest.approx(config["val_sample_diversity"])


def test_a_run_without_a_latent_measures_no_spread_and_is_not_warned(tmp_path, backbone_file, caplog, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 1e9)
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    monkeypatch.setattr(latent_hold, "SAMPLE_SHARE", 1e9)
    train(job(tmp_path / "run", epochs=1, prior_fit_epochs=0, interaction="none"), backbone=backbone_file)
    config = run_dir.read_run_config(tmp_path / "run")
    assert config["progress"]["best_rater_spread"] is None and config["val_sample_diversity"] is None
    assert _warnings(caplog) == []


def test_a_checkpoint_written_before_the_spread_was_recorded_still_loads():
    recorded = {"epoch": 3, "step": 39, "batches_into_epoch": 0, "best_val_loss": 0.1, "epochs_without_improvement": 1}
    assert Progress(**recorded).best_rater_spread is None
