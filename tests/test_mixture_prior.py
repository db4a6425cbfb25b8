"""The mixture prior: a mixture of K Gaussians over z, held by LatentHeads(prior_components=K) beside
the Gaussian prior, sampled once fitted."""

from __future__ import annotations

import math

import pytest
import torch

import uncertainty_adapters as ua
from uncertainty_adapters.latent_heads import ConvGaussianEncoder, DiagonalGaussian
from uncertainty_adapters.mixture_prior import GaussianMixture, MixturePriorNet


def _gaussian_as_mixture(gaussian: DiagonalGaussian) -> GaussianMixture:
    return GaussianMixture(torch.zeros(gaussian.mean.shape[0], 1), gaussian.mean[:, None], gaussian.log_sigma[:, None])


def _heads(components: int = 3, seed: int = 0) -> ua.LatentHeads:
    torch.manual_seed(seed)
    return ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8, 16), convs_per_block=1, resolution=32,
                          prior_components=components)


def _fitted(heads: ua.LatentHeads) -> ua.LatentHeads:
    """``heads`` with its mixture started from the Gaussian (means moved apart) and marked fitted."""
    heads.mixture_net.start_from(heads.prior_net, spread=1.0, generator=torch.Generator().manual_seed(0))
    heads.mark_mixture_fitted()
    return heads


def test_a_one_component_mixture_is_its_gaussian():
    gaussian = DiagonalGaussian(torch.randn(3, 6), 0.3 * torch.randn(3, 6))
    mixture = _gaussian_as_mixture(gaussian)
    z = torch.randn(3, 5, 6)
    expected = torch.distributions.Normal(gaussian.mean[:, None], gaussian.sigma[:, None]).log_prob(z).sum(-1)
    torch.testing.assert_close(mixture.log_prob(z), expected)
    torch.testing.assert_close(mixture.mean, gaussian.mean)
    torch.testing.assert_close(mixture.sigma, gaussian.sigma)
    # the same generator state gives the same z: eps is drawn first, as DiagonalGaussian.rsample draws it
    for n in (None, 4):
        torch.testing.assert_close(mixture.rsample(n, generator=torch.Generator().manual_seed(7)),
                                   gaussian.rsample(n, generator=torch.Generator().manual_seed(7)))


def test_samples_follow_the_component_weights_and_each_components_gaussian():
    means = torch.tensor([[[-4.0, 0.0], [4.0, 0.0]]])  # one image, two components far apart
    mixture = GaussianMixture(torch.tensor([[math.log(0.25), math.log(0.75)]]), means, torch.full((1, 2, 2), math.log(0.1)))
    z = mixture.rsample(4000, generator=torch.Generator().manual_seed(1))[0]
    right = z[:, 0] > 0
    assert abs(float(right.float().mean()) - 0.75) < 0.03
    assert abs(float(z[right, 0].mean()) - 4.0) < 0.01 and abs(float(z[right, 0].std()) - 0.1) < 0.01
    assert not bool(((z[:, 0] > -3) & (z[:, 0] < 3)).any())  # nothing between the components
    # its mean and sigma are the mixture's, not a component's
    torch.testing.assert_close(mixture.mean, torch.tensor([[2.0, 0.0]]))
    torch.testing.assert_close(mixture.sigma, torch.tensor([[math.sqrt(0.01 + 12.0), 0.1]]))


def test_a_seeded_draw_repeats_and_log_prob_checks_its_shape():
    mixture = GaussianMixture(torch.randn(2, 3), torch.randn(2, 3, 4), torch.zeros(2, 3, 4))
    first = mixture.rsample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, mixture.rsample(5, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match=r"z of shape \(2, M, 4\)"):
        mixture.log_prob(torch.zeros(2, 4))


def test_the_mixture_net_starts_from_the_fitted_gaussian():
    torch.manual_seed(0)
    fitted = ConvGaussianEncoder(3, 6, (8, 16), 1, log_sigma_bound=5.0, init_sigma=0.7)
    with torch.no_grad():
        fitted.to_gaussian.weight.normal_(0, 0.1)
    x = torch.rand(2, 3, 32, 32)

    def started(spread: float) -> GaussianMixture:
        net = MixturePriorNet(ConvGaussianEncoder(3, 6, (8, 16), 1, 5.0).features, 16, 6, 3, 5.0)
        net.start_from(fitted, spread=spread, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return net(x)

    with torch.no_grad():
        gaussian = fitted(x)
    same, moved = started(0.0), started(0.5)
    for k in range(3):
        torch.testing.assert_close(same.means[:, k], gaussian.mean)
        torch.testing.assert_close(same.log_sigma[:, k], gaussian.log_sigma)
    torch.testing.assert_close(same.weights, torch.full((2, 3), 1 / 3))
    shift = moved.means - gaussian.mean[:, None]
    assert float(shift.abs().min()) > 0  # every component moved...
    torch.testing.assert_close(shift[0], shift[1])  # ...by one offset per component, whatever the image
    torch.testing.assert_close(moved.log_sigma[:, 0], gaussian.log_sigma)
    with pytest.raises(ValueError, match="latent dimension 6"):
        MixturePriorNet(fitted.features, 16, 6, 3, 5.0).start_from(ConvGaussianEncoder(3, 4, (8, 16), 1, 5.0))


def test_heads_sample_the_gaussian_until_the_mixture_is_fitted_and_the_kl_stays_the_gaussians():
    heads, x, y = _heads(), torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32)
    assert not heads.samples_mixture and isinstance(heads.prior(x), DiagonalGaussian)
    before = heads.sample(x, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(before, heads.gaussian_prior(x).rsample(6, generator=torch.Generator().manual_seed(1)))

    _fitted(heads)
    assert heads.samples_mixture and isinstance(heads.prior(x), GaussianMixture)
    after = heads.sample(x, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(after, heads.mixture_prior(x).rsample(6, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(after, before)
    out = heads(x, y)  # training: the KL is to the Gaussian prior
    torch.testing.assert_close(out.kl, out.posterior.kl(heads.gaussian_prior(x)))
    assert isinstance(out.prior, DiagonalGaussian)
    assert isinstance(heads(x).prior, GaussianMixture) and heads(x).z.shape == (2, 4)


def test_the_mixture_weights_are_frozen_and_building_them_draws_nothing_from_torchs_generator():
    heads = _heads()
    assert not any(p.requires_grad for p in heads.mixture_net.parameters())
    assert all(p.requires_grad for name, p in heads.named_parameters() if not name.startswith("mixture_net."))
    # a model built after heads with a mixture starts from the weights it would have without one
    torch.manual_seed(5)
    ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8,), resolution=16)
    plain = torch.rand(3)
    torch.manual_seed(5)
    ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8,), resolution=16, prior_components=4)
    assert torch.equal(torch.rand(3), plain)


def test_a_fitted_mixture_is_saved_and_loads_back_sampling_the_same(tmp_path):
    heads, x = _fitted(_heads(components=2)), torch.rand(2, 3, 32, 32)
    backbone = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(2)))
    model = ua.inject_uncertainty_adapters(backbone, ua.UncertaintyAdapterConfig(latent_dim=4, embed_dim=16),
                                           blocks=list(backbone))
    model.save_adapters(tmp_path / "adapters", latent_heads=heads)
    loaded = ua.load_latent_heads(tmp_path / "adapters")
    assert loaded.config["prior_components"] == 2 and loaded.samples_mixture
    torch.testing.assert_close(loaded.sample(x, 5, generator=torch.Generator().manual_seed(0)),
                               heads.sample(x, 5, generator=torch.Generator().manual_seed(0)))


def test_heads_with_one_component_have_no_mixture_weights():
    # so that heads saved before the option existed load as they are, and save as before
    heads = _heads(components=1)
    assert heads.mixture_net is None and not any("mixture" in name for name in heads.state_dict())
    with pytest.raises(ValueError, match="prior_components=K"):
        heads.mixture_prior(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="prior_components must be a positive integer"):
        _heads(components=0)
