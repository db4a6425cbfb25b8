"""benchmarks/mixture_prior.py: the mixture prior of the what-if, and how it samples beside the Gaussian."""

from __future__ import annotations

import math

import torch

from benchmarks import mixture_prior
from uncertainty_adapters.latent_heads import ConvGaussianEncoder, DiagonalGaussian


def _gaussian_as_mixture(gaussian: DiagonalGaussian) -> mixture_prior.MixtureGaussian:
    return mixture_prior.MixtureGaussian(torch.zeros(gaussian.mean.shape[0], 1), gaussian.mean[:, None],
                                         gaussian.log_sigma[:, None])


def test_a_one_component_mixture_is_its_gaussian():
    gaussian = DiagonalGaussian(torch.randn(3, 6), 0.3 * torch.randn(3, 6))
    mixture = _gaussian_as_mixture(gaussian)
    z = torch.randn(3, 5, 6)
    expected = torch.distributions.Normal(gaussian.mean[:, None], gaussian.sigma[:, None]).log_prob(z).sum(-1)
    torch.testing.assert_close(mixture.log_prob(z), expected)
    torch.testing.assert_close(mixture.mean, gaussian.mean)
    torch.testing.assert_close(mixture.sigma, gaussian.sigma)
    # the same generator state gives the same z: the mixture draws eps as DiagonalGaussian.rsample does
    for n in (None, 4):
        torch.testing.assert_close(mixture.rsample(n, generator=torch.Generator().manual_seed(7)),
                                   gaussian.rsample(n, generator=torch.Generator().manual_seed(7)))


def test_the_mixture_leaves_the_shared_generator_as_the_gaussian_does():
    # so that both arms of the what-if get the same prompts and eps after every batch
    gaussian = DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    mixture = mixture_prior.MixtureGaussian(torch.zeros(2, 2), torch.stack([torch.zeros(2, 3), torch.ones(2, 3)], 1),
                                            torch.zeros(2, 2, 3), torch.Generator().manual_seed(1))
    shared_a, shared_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    gaussian.rsample(8, generator=shared_a)
    mixture.rsample(8, generator=shared_b)
    assert torch.equal(torch.rand(4, generator=shared_a), torch.rand(4, generator=shared_b))


def test_samples_follow_the_component_weights_and_each_components_gaussian():
    means = torch.tensor([[[-4.0, 0.0], [4.0, 0.0]]])  # one image, two components far apart
    mixture = mixture_prior.MixtureGaussian(torch.tensor([[math.log(0.25), math.log(0.75)]]), means,
                                            torch.full((1, 2, 2), math.log(0.1)), torch.Generator().manual_seed(0))
    z = mixture.rsample(4000, generator=torch.Generator().manual_seed(1))[0]
    right = z[:, 0] > 0
    assert abs(float(right.float().mean()) - 0.75) < 0.03
    assert abs(float(z[right, 0].mean()) - 4.0) < 0.01 and abs(float(z[right, 0].std()) - 0.1) < 0.01
    assert not bool(((z[:, 0] > -3) & (z[:, 0] < 3)).any())  # nothing between the components


def test_the_mixture_net_starts_from_the_fitted_gaussian():
    torch.manual_seed(0)
    fitted = ConvGaussianEncoder(3, 6, (8, 16), 1, log_sigma_bound=5.0, init_sigma=0.7)
    with torch.no_grad():
        fitted.to_gaussian.weight.normal_(0, 0.1)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        gaussian = fitted(x)
        same = mixture_prior.MixturePriorNet(fitted, components=3, spread=0.0)(x)
        moved = mixture_prior.MixturePriorNet(fitted, components=3, spread=0.5, seed=0)(x)
    for k in range(3):
        torch.testing.assert_close(same.means[:, k], gaussian.mean)
        torch.testing.assert_close(same.log_sigma[:, k], gaussian.log_sigma)
    torch.testing.assert_close(same.weights, torch.full((2, 3), 1 / 3))
    shift = moved.means - gaussian.mean[:, None]
    assert float(shift.abs().min()) > 0  # every component moved...
    torch.testing.assert_close(shift[0], shift[1])  # ...by one offset per component, whatever the image
    torch.testing.assert_close(moved.log_sigma[:, 0], gaussian.log_sigma)


def test_a_trained_run_is_measured_with_both_priors_on_the_same_prompts(tmp_path):
    import json

    from benchmarks import diagnose_latent
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.presets import get_preset
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run
    from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, train

    preset = get_preset("demo").replace(image_size=64, batch_size=4, epochs=1, synthetic_cases=24,
                                        latent_resolution=32, latent_filters=(8, 16), prior_fit_epochs=1)
    from uncertainty_adapters.integrations.sam import build_sam
    from uncertainty_adapters.integrations.sam.checkpoint import save_sam_weights

    torch.manual_seed(0)
    backbone = tmp_path / "sam.safetensors"  # a run built on a file reloads the weights it trained on
    save_sam_weights(build_sam("demo", image_size=64), backbone)
    run = tmp_path / "run"
    train(TrainJob(preset=preset, data="synthetic", out=run, max_steps=1, cpu=True), backbone=backbone)
    assert mixture_prior.main(["--run", str(run), "--out", str(tmp_path / "m"), "--samples", "2", "--evaluate"]) == 0
    result = json.loads((tmp_path / "m" / "mixture.json").read_text())
    assert result["components"] == 4 and [row["epoch"] for row in result["fit"][:-1]] == [0, 1]
    assert set(result["gaussian"]) == set(result["mixture"]) and set(result["gaussian"]["ged"]) == {"all", "disagree", "agree"}
    # the Gaussian arm is diagnose_latent's own measurement of the run, draw for draw
    model, _ = load_run(run)
    test = build_dataset("synthetic", 64, split="test", seed=0, length=24)
    with torch.no_grad():
        plain = diagnose_latent.diagnose(model, test, "synthetic", torch.device("cpu"), 2,
                                         diagnose_latent._synthetic_regions(test, 64), zfit_cases=0, prompt=preset.prompt)
    assert result["gaussian"]["ged"] == plain["ged"] and result["gaussian"]["diversity"] == plain["diversity"]
    # both arms sampled the raters of the same images
    assert result["mixture"]["rater_diversity"] == result["gaussian"]["rater_diversity"]
    # --evaluate: the Gaussian scored as `ua-sam evaluate --seed 0` scores the run
    from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate

    scored = evaluate(model, test, num_samples=preset.eval_samples, batch_size=8, prompt=preset.prompt, seed=0,
                      keep_examples=0, ged_samples=preset.ged_samples).summary()
    assert result["evaluate"]["gaussian"] == {key: scored[key] for key in result["evaluate"]["gaussian"]}
    assert set(result["evaluate"]["mixture"]) == set(result["evaluate"]["gaussian"]) == {
        "dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece"}
