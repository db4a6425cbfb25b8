"""LatentHeads: prior P(z|X), posterior Q(z|X,Y), analytic KL, bounded sigma, low resolution."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import uncertainty_adapters as ua
from uncertainty_adapters.latent_heads import DiagonalGaussian


def _heads(**kwargs) -> ua.LatentHeads:
    torch.manual_seed(0)
    return ua.LatentHeads(num_filters=(8, 16), resolution=32, **kwargs)


def test_kl_is_zero_when_posterior_equals_prior():
    gaussian = DiagonalGaussian(torch.randn(3, 6), torch.randn(3, 6))
    torch.testing.assert_close(gaussian.kl(gaussian), torch.zeros(3))


def test_kl_matches_torch_distributions():
    q = DiagonalGaussian(torch.randn(4, 6), torch.randn(4, 6))
    p = DiagonalGaussian(torch.randn(4, 6), torch.randn(4, 6))
    reference = kl_divergence(Independent(Normal(q.mean, q.sigma), 1), Independent(Normal(p.mean, p.sigma), 1))
    torch.testing.assert_close(q.kl(p), reference)


def test_training_forward_draws_from_the_posterior_and_returns_kl():
    heads = _heads()
    out = heads(torch.rand(2, 3, 40, 40), torch.ones(2, 1, 40, 40))
    assert out.z.shape == (2, 6) and out.kl.shape == (2,)
    assert torch.all(out.kl >= 0)


def test_a_share_of_the_noise_draws_the_same_eps_scaled_and_zero_gives_the_mean():
    gaussian = DiagonalGaussian(torch.randn(3, 6), torch.randn(3, 6))
    full = gaussian.rsample(4, generator=torch.Generator().manual_seed(1))
    quarter = gaussian.rsample(4, generator=torch.Generator().manual_seed(1), noise_scale=0.25)
    mean = gaussian.mean.unsqueeze(1)
    torch.testing.assert_close(quarter - mean, 0.25 * (full - mean))
    assert torch.equal(gaussian.rsample(noise_scale=0.0), gaussian.mean)


def test_the_posterior_noise_scales_only_zs_noise_not_the_kl():
    heads = _heads()
    x, y = torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)
    plain, mean_only = heads(x, y), heads(x, y, posterior_noise=0.0)
    assert torch.equal(mean_only.z, heads.posterior(x, y).mean)
    assert torch.equal(mean_only.kl, plain.kl)  # the KL is the posterior's own
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        heads(x, y, posterior_noise=1.5)


def test_gradients_reach_both_nets_through_z_and_kl():
    heads = _heads()
    out = heads(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
    (out.z.sum() + out.kl.sum()).backward()
    assert all(param.grad is not None for param in heads.parameters())


def test_sample_gives_n_hypotheses_per_image():
    assert _heads().sample(torch.rand(2, 3, 32, 32), 5).shape == (2, 5, 6)


def test_sample_is_reproducible_with_a_generator():
    heads, x = _heads(), torch.rand(2, 3, 32, 32)
    first = heads.sample(x, 3, generator=torch.Generator().manual_seed(7))
    second = heads.sample(x, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_nets_run_at_the_configured_resolution_whatever_the_image_size():
    heads = _heads()
    seen = []
    heads.prior_net.features[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-2:]))
    heads.prior(torch.rand(1, 3, 256, 256))
    heads.prior(torch.rand(1, 3, 17, 17))
    assert seen == [torch.Size([32, 32])] * 2


def test_log_sigma_is_bounded_so_kl_stays_finite():
    heads = _heads(log_sigma_bound=3.0)
    with torch.no_grad():
        heads.posterior_net.to_gaussian.weight.fill_(1e4)
        heads.prior_net.to_gaussian.weight.fill_(-1e4)
    out = heads(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
    assert out.posterior.log_sigma.abs().max() <= 3.0
    assert torch.isfinite(out.kl).all() and torch.isfinite(out.z).all()


def test_prior_of_an_image_does_not_depend_on_the_batch():
    heads, x = _heads(), torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(heads.prior(x).mean[1:2], heads.prior(x[1:2]).mean, rtol=1e-5, atol=1e-6)


def test_default_architecture_is_the_probabilistic_unet_encoder():
    heads = ua.LatentHeads()
    convs = [m for m in heads.prior_net.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32] * 3 + [64] * 3 + [128] * 3 + [192] * 3
    assert heads.posterior_net.features[0].in_channels == 4
    assert heads.config["resolution"] == 128


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda h: h.prior(torch.rand(2, 1, 32, 32)), r"images of shape \(B, 3, H, W\)"),
        (lambda h: h.posterior(torch.rand(2, 3, 32, 32), torch.rand(2, 32, 32)), r"masks of shape \(2, 1, H, W\)"),
        (lambda h: h.sample(torch.rand(2, 3, 32, 32), 0), "positive integer"),
    ],
)
def test_bad_inputs_are_refused_with_the_expected_shape(call, message):
    with pytest.raises(ValueError, match=message):
        call(_heads())


def test_bad_construction_arguments_are_refused():
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        ua.LatentHeads(latent_dim=0)


def test_the_posterior_sees_the_mask_at_initialisation():
    """The signal of the mask survives the 12 convolutions of the default encoder."""
    torch.manual_seed(0)
    heads = ua.LatentHeads(resolution=64)
    images = torch.rand(2, 3, 128, 128)
    lesion = torch.zeros(2, 1, 128, 128)
    lesion[:, :, 40:80, 40:80] = 1
    with_lesion = heads.posterior(images, lesion).mean
    without = heads.posterior(images, torch.zeros_like(lesion)).mean
    assert (with_lesion - without).abs().max() > 0.05 * with_lesion.abs().mean()


@pytest.mark.parametrize("init_sigma", [0.1, 0.5, 1.0])
def test_both_gaussians_start_at_init_sigma_for_zero_features(init_sigma):
    heads = ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8,), resolution=16, init_sigma=init_sigma)
    for net in (heads.prior_net, heads.posterior_net):
        raw = net.to_gaussian.bias[4:]
        log_sigma = net.log_sigma_bound * torch.tanh(raw / net.log_sigma_bound)
        torch.testing.assert_close(log_sigma, torch.full((4,), math.log(init_sigma)))
    assert heads.config["init_sigma"] == init_sigma


def test_init_sigma_outside_the_bound_is_refused():
    with pytest.raises(ValueError, match="init_sigma must lie strictly between"):
        ua.LatentHeads(in_channels=3, latent_dim=4, log_sigma_bound=2.0, init_sigma=10.0)


def test_leaky_relu_nets_start_with_the_relu_nets_weights_and_no_unit_can_die():
    relu, leaky = _heads(), _heads(activation="leaky_relu")
    for (name, a), (_, b) in zip(relu.state_dict().items(), leaky.state_dict().items()):
        assert torch.equal(a, b), name
    for net in (leaky.prior_net, leaky.posterior_net):
        acts = [m for m in net.features if not isinstance(m, (torch.nn.Conv2d, torch.nn.AvgPool2d))]
        assert acts and all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.1 for m in acts)
    # a unit whose every input is negative still passes a gradient back
    x = torch.full((1, 3, 8, 8), -1.0, requires_grad=True)
    leaky.prior_net.features[1](x.clone()).sum().backward()
    assert x.grad.abs().min() > 0
    assert leaky.config["activation"] == "leaky_relu" and relu.config["activation"] == "relu"
    rebuilt = ua.LatentHeads(**leaky.config)
    assert isinstance(rebuilt.posterior_net.features[1], torch.nn.LeakyReLU)


def test_an_unknown_activation_is_refused():
    from uncertainty_adapters.latent_heads import ConvGaussianEncoder

    with pytest.raises(ValueError, match="activation must be one of"):
        ua.LatentHeads(activation="gelu")
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvGaussianEncoder(3, 4, (8,), 1, 5.0, activation="gelu")


def test_rater_spread_is_the_std_of_the_raters_posterior_means_in_prior_sigmas():
    heads = _heads()
    x = torch.rand(2, 3, 64, 64)
    masks = torch.zeros(2, 3, 64, 64)
    masks[:, 1, 10:40, 10:40] = 1
    masks[:, 2, 20:60, 5:30] = 1
    means = heads.rater_means(x, masks)
    assert means.shape == (2, 3, 6)
    torch.testing.assert_close(means[:, 1], heads.posterior(x, masks[:, 1:2]).mean)
    expected = (means.std(1, unbiased=False) / heads.prior(x).sigma).mean(-1)
    spread = heads.rater_spread(x, masks)
    torch.testing.assert_close(spread, expected)
    assert spread.shape == (2,) and (spread > 0).all()
    same = heads.rater_spread(x, masks[:, 1:2].expand(-1, 4, -1, -1))  # four raters, one mask
    torch.testing.assert_close(same, torch.zeros(2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("call, message", [
    (lambda h: h.rater_spread(torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)), "two or more raters"),
    (lambda h: h.rater_means(torch.rand(2, 3, 32, 32), torch.rand(3, 2, 32, 32)), r"\(2, R, H, W\)"),
    (lambda h: ua.LatentHeads(num_filters=(8,), resolution=16, mask_channels=2).rater_means(
        torch.rand(2, 3, 32, 32), torch.rand(2, 2, 32, 32)), "mask_channels=1"),
])
def test_rater_means_and_spread_refuse_masks_they_cannot_read(call, message):
    with pytest.raises(ValueError, match=message):
        call(_heads())
