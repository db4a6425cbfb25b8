"""posterior_noise_cycles: the posterior-noise warm-up runs again at the start of each of n equal
parts of the scheduled steps (cyclical annealing), exactly on resume; one warm-up unless asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset
from uncertainty_adapters.integrations.pipeline.training.loop import (
    TrainJob,
    _TrainingLoop,
    posterior_noise_cycles_of,
    train,
)

from .conftest import job, small_preset, straight_and_resumed


def schedule(noise_warmup: float, cycles: int, steps: int) -> SimpleNamespace:
    """What the noise schedule reads of a training loop with ``steps`` scheduled steps."""
    fake = SimpleNamespace(noise_warmup=noise_warmup, noise_cycles=cycles, scheduled_steps=steps,
                           preset=small_preset(posterior_noise_warmup=noise_warmup, posterior_noise_cycles=cycles))
    fake._ramp = lambda share, step: _TrainingLoop._ramp(fake, share, step)
    fake.beta_at = lambda step: _TrainingLoop.beta_at(fake, step)
    fake.posterior_noise_at = lambda step: _TrainingLoop.posterior_noise_at(fake, step)
    return fake


def test_two_cycles_ramp_the_noise_from_zero_at_the_start_and_again_at_half_the_steps():
    two = schedule(noise_warmup=0.25, cycles=2, steps=16)  # ramps of 4 steps from steps 0 and 8
    noise = [_TrainingLoop.posterior_noise_at(two, step) for step in range(16)]
    assert noise == pytest.approx([0, .25, .5, .75, 1, 1, 1, 1, 0, .25, .5, .75, 1, 1, 1, 1])
    once = schedule(noise_warmup=0.25, cycles=1, steps=16)
    # the first half as with one warm-up, the second at full noise
    assert [_TrainingLoop.posterior_noise_at(once, step) for step in range(8)] == noise[:8]
    assert all(_TrainingLoop.posterior_noise_at(once, step) == 1.0 for step in range(8, 16))
    # a step past the schedule stays in the last cycle
    assert _TrainingLoop.posterior_noise_at(two, 20) == 1.0


def test_no_patience_is_spent_inside_any_of_the_ramps():
    two = schedule(noise_warmup=0.25, cycles=2, steps=16)
    assert [_TrainingLoop._warming_up(two, step) for step in (3, 4, 7, 8, 11, 12)] == [True, False, False, True, True,
                                                                                       False]


def test_a_run_with_two_cycles_ramps_twice_and_records_it(tmp_path, backbone_file, posterior_noise_seen):
    # 7 steps an epoch (28 images, batch 4), 2 epochs: 14 scheduled steps, ramps of 3.5 from steps 0 and 7
    train(job(tmp_path / "run", max_steps=10, epochs=2, posterior_noise_warmup=0.25, posterior_noise_cycles=2,
              prior_fit_epochs=0), backbone=backbone_file)
    assert posterior_noise_seen == pytest.approx([0.0, 2 / 7, 4 / 7, 6 / 7, 1.0, 1.0, 1.0, 0.0, 2 / 7, 4 / 7])
    config = run_dir.read_run_config(tmp_path / "run")
    assert config["posterior_noise_cycles"] == config["preset"]["posterior_noise_cycles"] == 2


def test_a_run_capped_inside_the_second_ramp_resumes_exactly(tmp_path, backbone_file):
    straight, resumed = straight_and_resumed(tmp_path, backbone_file, 8, 10, epochs=2, posterior_noise_warmup=0.25,
                                             posterior_noise_cycles=2, prior_fit_epochs=0)
    assert straight.progress == resumed.progress
    assert all(torch.equal(tensor, resumed.trainable[name]) for name, tensor in straight.trainable.items())


def test_only_a_run_with_a_noise_warmup_cycles_it(tmp_path):
    def cycles(**kwargs):
        model = kwargs.pop("model", "ua-sam")
        preset = small_preset(posterior_noise_warmup=0.25, posterior_noise_cycles=3, **kwargs)
        return posterior_noise_cycles_of(TrainJob(preset=preset, data="synthetic", out=tmp_path, model=model))

    assert cycles() == 3
    assert cycles(interaction="none") == 1  # no z, no warm-up
    assert cycles(model="prob-unet") == 1  # the baseline keeps its recipe


@pytest.mark.parametrize(("warmup", "cycles", "message"), [
    (0.25, 0, r"posterior_noise_cycles counts the posterior-noise warm-ups and must be >= 1; got 0"),
    (0.5, 3, r"must lie in \(0, 1 / 3\] so that each ramp ends before the next starts"),
    (0.0, 2, r"must lie in \(0, 1 / 2\]"),
])
def test_cycles_that_cannot_be_scheduled_are_refused_with_the_fix(warmup, cycles, message):
    with pytest.raises(ValueError, match=message):
        get_preset("demo").replace(posterior_noise_warmup=warmup, posterior_noise_cycles=cycles)


def test_every_preset_warms_up_once_and_a_recorded_preset_without_the_field_meant_once():
    assert all(get_preset(name).posterior_noise_cycles == 1 for name in ("demo", "paper-lidc", "paper-refuge2"))
    recorded = {k: v for k, v in get_preset("demo").to_dict().items() if k != "posterior_noise_cycles"}
    assert Preset.from_dict(recorded).posterior_noise_cycles == 1  # run.json written before the field existed
