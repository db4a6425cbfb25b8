"""geco_kappa: UA-SAM's KL weight adapted by GECO during training, checkpointed for an exact resume."""

from __future__ import annotations

import csv

import pytest
import torch

from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset
from uncertainty_adapters.integrations.pipeline.training.checkpoints import load_latest_checkpoint
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, geco_kappa_of, train

from .conftest import job, small_preset, straight_and_resumed


def _betas(out):
    with open(out / "train_log.csv") as handle:
        return [float(row["beta"]) for row in csv.DictReader(handle) if row["beta"]]


def test_only_ua_sam_with_a_latent_trains_with_geco(tmp_path):
    def kappa(**kwargs):
        model = kwargs.pop("model", "ua-sam")
        return geco_kappa_of(TrainJob(preset=small_preset(geco_kappa=0.2, **kwargs), data="synthetic",
                                      out=tmp_path, model=model))

    assert kappa(interaction="cmsm") == kappa(interaction="concat") == kappa(interaction="sample") == 0.2
    assert kappa(interaction="none") is None  # no KL to weigh
    assert kappa(model="prob-unet") is None  # the baseline keeps its recipe


def test_a_geco_run_moves_beta_each_step_logs_it_records_kappa_and_checkpoints_the_multiplier(tmp_path, backbone_file):
    # the small runs' DiceCE stays far above 0.01: the KL's weight falls from beta after every step
    train(job(tmp_path / "geco", max_steps=4, geco_kappa=0.01, beta=1e-3, free_bits=0.0, prior_fit_epochs=0),
          backbone=backbone_file)
    betas = _betas(tmp_path / "geco")
    assert len(betas) == 4 and betas[0] == pytest.approx(1e-3, rel=1e-6)  # each row: the beta its step trained with
    assert all(b < a for a, b in zip(betas, betas[1:]))
    assert run_dir.read_run_config(tmp_path / "geco")["geco_kappa"] == 0.01
    state = load_latest_checkpoint(tmp_path / "geco" / "checkpoints").states["geco"]
    assert state["steps"].item() == 4 and float(torch.exp(-state["log_lambda"])) < betas[-1]  # after step 4's update
    train(job(tmp_path / "fixed", max_steps=2, prior_fit_epochs=0), backbone=backbone_file)
    assert set(_betas(tmp_path / "fixed")) == {1e-3}
    assert run_dir.read_run_config(tmp_path / "fixed")["geco_kappa"] is None
    assert "geco" not in load_latest_checkpoint(tmp_path / "fixed" / "checkpoints").states


def test_a_resumed_geco_run_equals_an_uninterrupted_one(tmp_path, backbone_file):
    straight, resumed = straight_and_resumed(tmp_path, backbone_file, 5, 9, geco_kappa=0.3, free_bits=0.0,
                                             prior_fit_epochs=0)
    assert straight.progress == resumed.progress
    assert all(torch.equal(tensor, resumed.trainable[name]) for name, tensor in straight.trainable.items())
    assert all(torch.equal(tensor, resumed.states["geco"][name]) for name, tensor in straight.states["geco"].items())


def test_resuming_a_run_that_began_without_geco_is_refused_with_the_fix(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=2, checkpoint_every=1), backbone=backbone_file)
    with pytest.raises(ValueError, match="written without GECO .* start a new run with --geco-kappa"):
        train(job(tmp_path / "run", max_steps=4, resume=True, geco_kappa=0.2, checkpoint_every=1), backbone=backbone_file)


def test_the_setting_is_checked_and_a_recorded_preset_without_it_means_a_fixed_beta():
    recorded = {k: v for k, v in get_preset("paper-lidc").to_dict().items() if k != "geco_kappa"}
    assert Preset.from_dict(recorded).geco_kappa is None
    assert get_preset("paper-lidc").geco_kappa is None and get_preset("paper-refuge2").geco_kappa is None
    with pytest.raises(ValueError, match="geco_kappa is a reconstruction loss .* must be > 0, got 0.0"):
        get_preset("demo").replace(geco_kappa=0.0)
    with pytest.raises(ValueError, match=r"within \[1e-6, 1\]; got beta 0.0: pass a --beta in that range"):
        get_preset("demo").replace(geco_kappa=0.1, beta=0.0)
    with pytest.raises(ValueError, match="pass --kl-warmup 0 with --geco-kappa"):
        get_preset("demo").replace(geco_kappa=0.1, kl_warmup=0.2)
