"""A mixture prior over z: K diagonal Gaussians per image, for raters whose posteriors fall in groups.

One Gaussian prior fitted to raters whose posteriors sit in two or more separate groups (two ways
to read an image) covers them with one wide bump, and most of its samples land between the groups,
where no rater is. A mixture of K Gaussians P(z|X) = sum_k w_k(X) N(mu_k(X), diag(sigma_k(X))^2)
can put one component on each group. `LatentHeads` with ``prior_components=K`` holds one
(`MixturePriorNet`) beside its Gaussian prior net: training and its KL use the Gaussian, and the
mixture is fitted after training to every rater's posterior (the pipeline's prior-fit phase), then
sampled instead of the Gaussian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def standard_normal(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """N(0, 1) noise of ``shape`` on ``like``'s device and dtype, drawn from ``generator``.

    Drawn on the generator's device: a CPU generator gives the same numbers whatever device
    ``like`` is on (drawn in float32 there, then moved); on ``like``'s own device it is drawn
    directly in ``like``'s dtype.
    """
    device = generator.device if generator is not None else like.device
    if device == like.device:
        return torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=device).to(like.device, like.dtype)


def standard_uniform(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """U[0, 1) numbers of ``shape`` on ``like``'s device, float32, drawn on the generator's device
    (as `standard_normal`)."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


@dataclass
class GaussianMixture:
    """sum_k w_k N(means_k, diag(exp(log_sigma_k))^2) per image, batched: ``logits`` (B, K) (w =
    softmax(logits)), ``means`` and ``log_sigma`` (B, K, C).

    What `LatentHeads.prior` returns once a mixture prior is fitted; it samples as
    `DiagonalGaussian` does, so samplers need not know which one they hold.

    Example:
        >>> mixture = GaussianMixture(torch.zeros(2, 3), torch.randn(2, 3, 6), torch.zeros(2, 3, 6))
        >>> mixture.rsample().shape, mixture.rsample(4).shape   # (B, C), and (B, n, C)
        (torch.Size([2, 6]), torch.Size([2, 4, 6]))
        >>> mixture.log_prob(torch.zeros(2, 5, 6)).shape      # log P(z) of 5 z per image
        torch.Size([2, 5])
    """

    logits: torch.Tensor
    means: torch.Tensor
    log_sigma: torch.Tensor

    @property
    def weights(self) -> torch.Tensor:
        """The components' weights w, (B, K), summing to 1 per image."""
        return self.logits.float().softmax(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The mixture's mean, (B, C)."""
        return (self.weights[..., None] * self.means.float()).sum(1).to(self.means.dtype)

    @property
    def sigma(self) -> torch.Tensor:
        """The mixture's standard deviation per latent dimension (its marginal), (B, C)."""
        weights, means = self.weights[..., None], self.means.float()
        second = (weights * (torch.exp(2 * self.log_sigma.float()) + means**2)).sum(1)
        mean = (weights * means).sum(1)
        return (second - mean**2).clamp_min(0).sqrt().to(self.means.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log P(z) of M latent vectors per image, z (B, M, C): (B, M), computed in float32."""
        if z.dim() != 3 or z.shape[0] != self.means.shape[0] or z.shape[-1] != self.means.shape[-1]:
            raise ValueError(f"log_prob expects z of shape ({self.means.shape[0]}, M, {self.means.shape[-1]}), "
                             f"got {tuple(z.shape)}")
        z = z.float()[:, :, None]  # (B, M, 1, C)
        means, log_sigma = self.means.float()[:, None], self.log_sigma.float()[:, None]  # (B, 1, K, C)
        per_dim = -0.5 * ((z - means) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(self.logits.float().log_softmax(-1)[:, None] + per_dim.sum(-1), dim=-1)

    def rsample(self, num_samples: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Samples: (B, C), or (B, n, C) when ``num_samples`` n is given.

        Each sample is mu_k + sigma_k * eps of a component k drawn with probability w_k: eps
        first, exactly as `DiagonalGaussian.rsample` draws it from ``generator``, then one
        uniform number per sample for k. Differentiable in the means and sigmas, not in w.
        """
        batch, components, dim = self.means.shape
        n = 1 if num_samples is None else num_samples
        noise = standard_normal((batch, n, dim), generator, self.means)
        uniform = standard_uniform((batch, n), generator, self.weights)
        cumulative = self.weights.cumsum(-1)
        component = torch.searchsorted(cumulative, uniform).clamp_(max=components - 1)  # (B, n)
        index = component[..., None].expand(-1, -1, dim)
        z = self.means.gather(1, index) + self.log_sigma.gather(1, index).exp() * noise
        return z if num_samples is not None else z[:, 0]


class MixturePriorNet(nn.Module):
    """Image -> `GaussianMixture` of K components: a convolutional trunk (``features``, as a
    Gaussian prior net's), a spatial mean, and one 1x1 convolution to K (mean, log sigma) pairs and
    K weight logits. log sigma is bounded as the Gaussian nets' is.

    Args:
        features: the trunk, (B, in, h, w) -> (B, channels, h', w').
        channels: the trunk's output channels.
        latent_dim: C. components: K >= 2.
        log_sigma_bound: log sigma = bound * tanh(raw / bound).

    `start_from` copies a fitted Gaussian prior net into every component, which is how the
    pipeline's prior-fit phase starts the mixture.
    """

    def __init__(self, features: nn.Module, channels: int, latent_dim: int, components: int,
                 log_sigma_bound: float) -> None:
        super().__init__()
        if not isinstance(components, int) or components < 2:
            raise ValueError(f"a mixture prior needs at least 2 components, got {components!r}")
        self.features = features
        # zeros until start_from, and no draw from torch's global generator: building heads with
        # a mixture leaves every other weight of a model built after them as it would be without
        self.head = nn.utils.skip_init(nn.Conv2d, channels, components * (2 * latent_dim + 1), kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.latent_dim, self.components, self.log_sigma_bound = latent_dim, components, log_sigma_bound

    @torch.no_grad()
    def start_from(self, gaussian: nn.Module, spread: float = 0.5, generator: torch.Generator | None = None) -> None:
        """Make every component the Gaussian prior net ``gaussian`` (a `ConvGaussianEncoder` of
        the same trunk and latent dimension), its mean moved by ``spread`` times that Gaussian's
        sigma (before the image's features) in a random direction, so that the components can
        separate; the weights start equal."""
        c, k = self.latent_dim, self.components
        source = gaussian.to_gaussian
        if source.weight.shape[0] != 2 * c or source.in_channels != self.head.in_channels:
            raise ValueError(f"start_from needs a Gaussian prior net of latent dimension {c} with "
                             f"{self.head.in_channels} trunk channels, got {source.weight.shape[0] // 2} and "
                             f"{source.in_channels}")
        self.features.load_state_dict(gaussian.features.state_dict())
        bias = source.bias.repeat(k)
        bound = self.log_sigma_bound
        sigma = torch.exp(bound * torch.tanh(source.bias[c:] / bound))
        offsets = torch.randn((k, c), generator=generator).to(bias) * spread * sigma
        bias.view(k, 2 * c)[:, :c] += offsets
        zeros = source.weight.new_zeros(k, source.in_channels, 1, 1)
        self.head.weight.copy_(torch.cat([source.weight.repeat(k, 1, 1, 1), zeros]))
        self.head.bias.copy_(torch.cat([bias, source.bias.new_zeros(k)]))

    def forward(self, x: torch.Tensor) -> GaussianMixture:
        """x (B, in, h, w) -> `GaussianMixture` with logits (B, K), means and log_sigma (B, K, C)."""
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        params = self.head(pooled).flatten(1)
        c, k = self.latent_dim, self.components
        gaussians, logits = params[:, : k * 2 * c].reshape(-1, k, 2 * c), params[:, k * 2 * c:]
        mean, raw_log_sigma = gaussians.split(c, dim=-1)
        bound = self.log_sigma_bound
        return GaussianMixture(logits, mean, bound * torch.tanh(raw_log_sigma / bound))
