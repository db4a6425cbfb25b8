"""A run whose latent did not take hold says so at its end, from the spread of the epoch it keeps."""

from __future__ import annotations

import csv
import logging

import pytest

from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training import latent_hold
from uncertainty_adapters.integrations.pipeline.training.checkpoints import Progress
from uncertainty_adapters.integrations.pipeline.training.latent_hold import TAKEOFF_SPREAD, idle_latent_message
from uncertainty_adapters.integrations.pipeline.training.loop import train

from .conftest import job


def test_the_message_names_the_spread_the_takeoff_and_the_fix_and_is_silent_from_the_takeoff_on():
    message = idle_latent_message(0.03)
    assert "0.03 prior sigmas apart" in message and f"reaches {TAKEOFF_SPREAD}" in message
    assert "Another --seed" in message and "--attempts N" in message and "more --epochs" in message
    assert "val_rater_spread" in message
    assert "not a benchmark's" in message  # a benchmark keeps the seed it lost
    assert idle_latent_message(TAKEOFF_SPREAD) is None and idle_latent_message(0.8) is None
    assert idle_latent_message(None) is None  # nothing measured: no latent, or no image whose raters disagree


def _warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.name == LOGGER_NAME and record.levelno == logging.WARNING and "taken hold" in record.getMessage()]


@pytest.mark.parametrize("takeoff, warned", [(0.0, False), (1e9, True)])
def test_a_run_records_the_spread_of_its_best_epoch_and_warns_below_the_takeoff(
        tmp_path, backbone_file, caplog, monkeypatch, takeoff, warned):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", takeoff)
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    out = tmp_path / "run"
    train(job(out, epochs=2, prior_fit_epochs=0), backbone=backbone_file)
    progress = run_dir.read_run_config(out)["progress"]
    with open(out / "train_log.csv", newline="") as log:
        rows = [row for row in csv.DictReader(log) if row["val_loss"]]
    best = min(rows, key=lambda row: float(row["val_loss"]))  # the weights the run keeps
    assert progress["best_rater_spread"] == pytest.approx(float(best["val_rater_spread"]))
    assert len(_warnings(caplog)) == int(warned)


def test_a_run_without_a_latent_measures_no_spread_and_is_not_warned(tmp_path, backbone_file, caplog, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 1e9)
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    train(job(tmp_path / "run", epochs=1, prior_fit_epochs=0, interaction="none"), backbone=backbone_file)
    assert run_dir.read_run_config(tmp_path / "run")["progress"]["best_rater_spread"] is None
    assert _warnings(caplog) == []


def test_a_checkpoint_written_before_the_spread_was_recorded_still_loads():
    recorded = {"epoch": 3, "step": 39, "batches_into_epoch": 0, "best_val_loss": 0.1, "epochs_without_improvement": 1}
    assert Progress(**recorded).best_rater_spread is None
