"""--prior-components K: a mixture prior fitted in the prior-fit phase, after the Gaussian, and sampled."""

from __future__ import annotations

import csv
import json
import logging

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training.loop import train
from uncertainty_adapters.prior_fit import fit_mixture_prior, fit_prior
from uncertainty_adapters.mixture_prior import GaussianMixture

from .conftest import job
from .test_prior_fit import _Lesions


def _trained_heads(components: int) -> ua.LatentHeads:
    """Heads whose posterior tells the 3 raters of _Lesions apart, as after training."""
    torch.manual_seed(0)
    heads = ua.LatentHeads(in_channels=3, latent_dim=2, num_filters=(8, 16), convs_per_block=1, resolution=32,
                           prior_components=components)
    with torch.no_grad():
        for p in heads.posterior_net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return heads


def _fit(heads: ua.LatentHeads, epochs: int = 6) -> list[dict]:
    return fit_prior(heads, _Lesions(), _Lesions(8), epochs=epochs, lr=3e-3, batch_size=4, seed=0,
                     device=torch.device("cpu"))


def test_the_phase_fits_the_gaussian_then_the_mixture_and_only_the_mixture_is_sampled_after():
    heads, plain = _trained_heads(3), _trained_heads(1)
    before = {k: v.clone() for k, v in heads.state_dict().items()}
    rows, plain_rows = _fit(heads), _fit(plain)
    # the Gaussian is fitted exactly as without a mixture; then the mixture's epochs follow
    assert rows[:6] == plain_rows
    assert [row["mixture_fit_epoch"] for row in rows[6:]] == list(range(1, 7))
    assert all({"mixture_nll", "val_mixture_nll"} <= set(row) for row in rows[6:])
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(heads.state_dict()[name], tensor)
    assert torch.equal(heads.state_dict()["posterior_net.to_gaussian.weight"], before["posterior_net.to_gaussian.weight"])
    assert heads.samples_mixture and isinstance(heads.prior(torch.rand(1, 3, 32, 32)), GaussianMixture)
    assert not any(p.requires_grad for p in heads.mixture_net.parameters())
    # it learned: the raters' posteriors are likelier under the kept mixture than under the Gaussian
    items = [_Lesions(8)[i] for i in range(8)]
    images, masks = torch.stack([i["image"] for i in items]), torch.stack([i["masks"] for i in items])
    with torch.no_grad():
        z = torch.cat([heads.posterior(images, masks[:, r : r + 1]).rsample(16, generator=torch.Generator().manual_seed(r))
                       for r in range(3)], 1)
        gaussian = heads.gaussian_prior(images)
        as_mixture = GaussianMixture(torch.zeros(8, 1), gaussian.mean[:, None], gaussian.log_sigma[:, None])
        assert float(heads.mixture_prior(images).log_prob(z).mean()) > float(as_mixture.log_prob(z).mean())


def test_the_kept_mixture_is_the_epoch_of_lowest_validation_value_and_reruns_identically():
    first, second = _trained_heads(2), _trained_heads(2)
    snapshots = {}

    def snapshot(row: dict) -> None:  # called after each epoch, with that epoch's weights in place
        if "mixture_fit_epoch" in row:
            snapshots[row["mixture_fit_epoch"]] = {k: v.clone() for k, v in first.mixture_net.state_dict().items()}

    settings = dict(epochs=12, lr=0.1, batch_size=4, seed=0, device=torch.device("cpu"))  # overshoots: val rises
    rows = fit_prior(first, _Lesions(), _Lesions(8), log=snapshot, **settings)[12:]
    best = min(rows, key=lambda row: row["val_mixture_nll"])
    assert best is not rows[-1]  # the validation value rose again here: the kept epoch is not the last
    for name, tensor in first.mixture_net.state_dict().items():
        assert torch.equal(tensor, snapshots[best["mixture_fit_epoch"]][name]), name
    assert fit_prior(second, _Lesions(), _Lesions(8), **settings)[12:] == rows
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor), name


def test_fitting_a_mixture_needs_heads_with_one():
    with pytest.raises(ValueError, match="prior_components=K"):
        fit_mixture_prior(_trained_heads(1), _Lesions(4), None, epochs=1, lr=1e-3, batch_size=2, seed=0,
                          device=torch.device("cpu"))


def test_the_demo_samples_a_mixture_of_four_and_without_a_prior_fit_phase_the_gaussian():
    assert get_preset("demo").mixture_components == 4 and get_preset("paper-lidc").mixture_components == 1
    assert get_preset("demo").replace(prior_fit_epochs=0).mixture_components == 1  # nothing to fit a mixture in
    with pytest.raises(ValueError, match="positive integer"):
        get_preset("demo").replace(prior_components=0)
    # a preset recorded before the field existed sampled its Gaussian
    recorded = get_preset("demo").to_dict()
    del recorded["prior_components"]
    assert Preset.from_dict(recorded).mixture_components == 1


def test_a_run_without_a_prior_fit_phase_samples_its_gaussian_and_says_so(tmp_path, backbone_file, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        train(job(tmp_path / "run", max_steps=1, epochs=1, prior_fit_epochs=0, prior_components=4), backbone=backbone_file)
    model, _ = run_dir.load_run(tmp_path / "run")
    assert model.latent_heads.mixture_net is None and model.latent_heads.config["prior_components"] == 1
    assert "no mixture prior is fitted without a prior-fit phase" in caplog.text


def test_training_with_a_mixture_changes_only_what_is_sampled_and_the_run_reloads_sampling_it(tmp_path, backbone_file):
    train(job(tmp_path / "gaussian", epochs=1, prior_fit_epochs=2, prior_components=1), backbone=backbone_file)
    train(job(tmp_path / "mixture", epochs=1, prior_fit_epochs=2, prior_components=3), backbone=backbone_file)
    gaussian, _ = run_dir.load_run(tmp_path / "gaussian")
    mixture, meta = run_dir.load_run(tmp_path / "mixture")

    # the same main training and Gaussian prior, weight for weight; the mixture is extra
    mixed_weights = mixture.trainable_state_dict()
    for name, tensor in gaussian.trainable_state_dict().items():
        assert torch.equal(mixed_weights[name], tensor), name
    assert {n for n in mixed_weights if n not in gaussian.trainable_state_dict()} == {
        n for n in mixed_weights if n.startswith(("latent_heads.mixture_net.", "latent_heads.mixture_fitted"))}
    assert mixture.latent_heads.samples_mixture and mixture.latent_heads.config["prior_components"] == 3
    assert meta["preset"]["prior_components"] == 3
    assert [row.get("mixture_fit_epoch") for row in meta["prior_fit"]] == [None, None, 1, 2]
    with open(tmp_path / "mixture" / "train_log.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row["mixture_fit_epoch"]]
    assert [int(row["mixture_fit_epoch"]) for row in logged] == [1, 2] and all(row["val_mixture_nll"] for row in logged)

    # what is sampled: the mixture (the run's check, evaluate and predict draw from it)
    images = torch.rand(2, 3, 64, 64)
    prompts = _centre_click(2)
    drawn = mixture(images, prompts, num_samples=4, generator=torch.Generator().manual_seed(0))
    expected = mixture.latent_heads.mixture_prior(images).rsample(4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn.z, expected)
    checked = json.loads((tmp_path / "mixture" / "run.json").read_text())["val_sample_diversity"]
    assert checked is not None and checked["images"] > 0
    # weights copied in place (a resumed checkpoint, the best epoch's weights) carry the fitted flag too
    again, _ = run_dir.load_run(tmp_path / "mixture")
    again.latent_heads.mark_mixture_fitted(False)
    again.load_trainable_state_dict(mixture.trainable_state_dict())
    assert again.latent_heads.samples_mixture


def test_the_benchmark_fits_on_a_gaussian_run_the_mixture_training_would_have_fitted(tmp_path, backbone_file):
    from benchmarks import mixture_prior

    train(job(tmp_path / "gaussian", epochs=1, prior_fit_epochs=1, prior_components=1), backbone=backbone_file)
    train(job(tmp_path / "mixture", epochs=1, prior_fit_epochs=1, prior_components=4), backbone=backbone_file)
    assert mixture_prior.main(["--run", str(tmp_path / "gaussian"), "--out", str(tmp_path / "m"), "--samples", "2"]) == 0
    assert mixture_prior.main(["--run", str(tmp_path / "mixture"), "--out", str(tmp_path / "t"), "--samples", "2"]) == 0
    fitted_here = json.loads((tmp_path / "m" / "mixture.json").read_text())
    trained = json.loads((tmp_path / "t" / "mixture.json").read_text())
    assert fitted_here["fitted_here"] and not trained["fitted_here"]
    assert fitted_here["fit"] == trained["fit"] and fitted_here["components"] == trained["components"] == 4
    for arm in ("gaussian", "mixture"):  # the same two priors, the same measurements
        assert fitted_here[arm] == trained[arm], arm
    assert set(trained["gaussian"]["ged"]) == {"all", "disagree", "agree"}
    assert trained["gaussian"]["rater_diversity"] == trained["mixture"]["rater_diversity"]


def _centre_click(batch: int):
    from uncertainty_adapters.integrations.sam.prompts import Prompts

    return Prompts(points=torch.full((batch, 1, 2), 32.0), labels=torch.ones(batch, 1))
