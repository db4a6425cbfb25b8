"""posterior_noise_warmup: UA-SAM's posterior noise on z ramps up from 0 early in training, exactly on resume."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.presets import get_preset
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, posterior_noise_warmup_of, train

from .conftest import job, small_preset, straight_and_resumed


def test_only_ua_sam_with_a_latent_warms_up_its_posterior_noise(tmp_path):
    def warmup(**kwargs):
        model = kwargs.pop("model", "ua-sam")
        return posterior_noise_warmup_of(TrainJob(preset=small_preset(posterior_noise_warmup=0.25, **kwargs),
                                                  data="synthetic", out=tmp_path, model=model))

    assert warmup(interaction="cmsm") == warmup(interaction="concat") == warmup(interaction="sample") == 0.25
    assert warmup(interaction="none") == 0.0  # no z
    assert warmup(model="prob-unet") == 0.0  # the baseline keeps its recipe


def test_the_share_of_noise_rises_linearly_over_the_warmup_and_the_run_records_it(
        tmp_path, backbone_file, posterior_noise_seen):
    train(job(tmp_path / "run", max_steps=4, epochs=1, posterior_noise_warmup=0.5, prior_fit_epochs=0),
          backbone=backbone_file)
    # the schedule, not the --max-steps cap: 7 steps an epoch (28 images, batch 4), one epoch, so t = step / 3.5
    assert posterior_noise_seen == pytest.approx([0.0, 2 / 7, 4 / 7, 6 / 7])
    config = run_dir.read_run_config(tmp_path / "run")
    assert config["posterior_noise_warmup"] == config["preset"]["posterior_noise_warmup"] == 0.5


def test_no_patience_is_spent_until_both_warmups_have_ended():
    from types import SimpleNamespace

    from uncertainty_adapters.integrations.pipeline.training.loop import _TrainingLoop

    def loop(noise_warmup, kl_warmup):  # what the two ramps read of a training loop, 8 scheduled steps
        fake = SimpleNamespace(noise_warmup=noise_warmup, noise_cycles=1, scheduled_steps=8,
                               preset=small_preset(kl_warmup=kl_warmup, posterior_noise_warmup=noise_warmup))
        fake._ramp = lambda share, step: _TrainingLoop._ramp(fake, share, step)
        fake.beta_at = lambda step: _TrainingLoop.beta_at(fake, step)
        fake.posterior_noise_at = lambda step: _TrainingLoop.posterior_noise_at(fake, step)
        return fake

    noise_only, both = loop(noise_warmup=0.5, kl_warmup=0.0), loop(noise_warmup=0.25, kl_warmup=0.75)
    assert [_TrainingLoop._warming_up(noise_only, step) for step in (0, 3, 4, 7)] == [True, True, False, False]
    assert [_TrainingLoop._warming_up(both, step) for step in (1, 2, 5, 6)] == [True, True, True, False]
    assert not _TrainingLoop._warming_up(loop(noise_warmup=0.0, kl_warmup=0.0), 0)


def test_a_run_with_a_noise_warmup_resumes_exactly_even_when_the_first_part_was_capped_inside_the_ramp(
        tmp_path, backbone_file):
    # 14 scheduled steps, a ramp of 7: capped at 2 by --max-steps, then resumed to 5
    straight, resumed = straight_and_resumed(tmp_path, backbone_file, 2, 5, posterior_noise_warmup=0.5,
                                             prior_fit_epochs=0)
    assert straight.progress == resumed.progress
    assert all(torch.equal(tensor, resumed.trainable[name]) for name, tensor in straight.trainable.items())


def test_a_warmup_outside_0_1_is_refused_with_its_range():
    with pytest.raises(ValueError, match=r"posterior_noise_warmup is a share of the scheduled steps, in \[0, 1\]"):
        get_preset("demo").replace(posterior_noise_warmup=1.5)


def test_the_demo_warms_up_a_quarter_of_its_steps_the_paper_presets_not_and_a_recorded_preset_without_it_meant_none():
    from uncertainty_adapters.integrations.pipeline.presets import Preset

    assert get_preset("demo").posterior_noise_warmup == 0.25
    assert get_preset("paper-lidc").posterior_noise_warmup == get_preset("paper-refuge2").posterior_noise_warmup == 0.0
    recorded = {k: v for k, v in get_preset("demo").to_dict().items() if k != "posterior_noise_warmup"}
    assert Preset.from_dict(recorded).posterior_noise_warmup == 0.0  # run.json written before the field existed
