"""The probabilistic model of UA-SAM: prior P(z|X) and posterior Q(z|X,Y) (paper section 2, Eq. 6).

Both are axis-aligned Gaussians N(mu, diag(sigma^2)) predicted by small convolutional encoders
of the Probabilistic U-Net design (Kohl et al. 2018): blocks of 3x3 convolutions with ReLU (or
LeakyReLU, ``activation``), average pooling between blocks, a spatial mean and a 1x1 convolution
to (mu, log sigma). They run at a fixed, low resolution (default 128 px) whatever the image size:
the latent code is global, and running them at the encoder's 1024 px costs more than a fifth of
the whole ViT-B forward.

Training draws z ~ Q with the reparameterisation trick and pays beta * KL(Q || P); inference
draws z ~ P. log sigma is softly bounded so that neither the KL nor exp(log sigma) can overflow.
With ``prior_components`` K > 1 the heads also hold a K-component mixture prior
(`uncertainty_adapters.mixture_prior`), fitted after training and then sampled instead of the
Gaussian; the KL stays the Gaussian prior's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .mixture_prior import GaussianMixture, MixturePriorNet, standard_normal

#: The nonlinearity after each convolution of the prior and posterior nets: 'relu' (the
#: Probabilistic U-Net's) or 'leaky_relu' (negative slope `LEAKY_SLOPE`; no unit can die).
ACTIVATIONS = ("relu", "leaky_relu")
LEAKY_SLOPE = 0.1


@dataclass
class DiagonalGaussian:
    """N(mean, diag(exp(log_sigma))^2), batched: ``mean`` and ``log_sigma`` are (B, C).

    What `LatentHeads.prior` and `LatentHeads.posterior` return.

    Example:
        >>> q = DiagonalGaussian(mean=torch.zeros(2, 6), log_sigma=torch.zeros(2, 6))
        >>> q.rsample().shape, q.rsample(4).shape  # (B, C), and (B, n, C) for n samples each
        (torch.Size([2, 6]), torch.Size([2, 4, 6]))
        >>> q.kl(DiagonalGaussian(torch.ones(2, 6), torch.zeros(2, 6)))  # KL(q || p), (B,)
        tensor([3., 3.])
    """

    mean: torch.Tensor
    log_sigma: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        return self.log_sigma.exp()

    @staticmethod
    def check_noise_scale(noise_scale: float) -> float:
        """``noise_scale`` as a float if it lies in [0, 1] (`rsample`'s share t of the noise); else a
        ValueError that names it ``posterior_noise``, as its callers do."""
        if not 0.0 <= noise_scale <= 1.0:
            raise ValueError(f"the share of the noise z carries (posterior_noise) must lie in [0, 1]; got {noise_scale}")
        return float(noise_scale)

    def rsample(
        self,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        noise_scale: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """Reparameterised samples: (B, C), or (B, n, C) when ``num_samples`` is given. The noise
        is drawn on ``generator``'s device (`standard_normal`): a CPU generator gives the same
        samples on any device.

        ``noise_scale`` t draws mean + t * sigma * eps from the same eps: 1 (the default) samples
        this Gaussian; less is a training device (a warm-up of the posterior's noise, see
        `LatentHeads.forward`), 0 returns the mean; a float outside [0, 1] is a ValueError. A 0-d
        tensor on the Gaussian's device (a CUDA graph's input) is used as it is, unchecked: reading
        it back to the host would break the graph, so its owner keeps it in [0, 1].
        """
        mean, sigma = self.mean, self.sigma
        if torch.is_tensor(noise_scale):
            sigma = sigma * noise_scale
        elif noise_scale != 1.0:
            sigma = sigma * self.check_noise_scale(noise_scale)
        if num_samples is not None:
            mean, sigma = mean.unsqueeze(1), sigma.unsqueeze(1)
            shape = (self.mean.shape[0], num_samples, self.mean.shape[1])
        else:
            shape = tuple(self.mean.shape)
        return mean + sigma * standard_normal(shape, generator, mean)

    def kl(self, other: "DiagonalGaussian") -> torch.Tensor:
        """Analytic KL(self || other) summed over the latent axis: (B,), computed in float32."""
        return self.kl_per_dim(other).sum(dim=-1)

    def kl_per_dim(self, other: "DiagonalGaussian") -> torch.Tensor:
        """Analytic KL(self || other) of each latent dimension: (B, C), computed in float32
        (what free bits, `uncertainty_adapters.ElboLoss`'s ``free_bits``, floors)."""
        mu_q, ls_q = self.mean.float(), self.log_sigma.float()
        mu_p, ls_p = other.mean.float(), other.log_sigma.float()
        var_ratio = torch.exp(2 * (ls_q - ls_p))
        mahalanobis = (mu_q - mu_p).pow(2) * torch.exp(-2 * ls_p)
        return 0.5 * (var_ratio + mahalanobis - 1.0 - 2 * (ls_q - ls_p))


class ConvGaussianEncoder(nn.Module):
    """Image (and optionally mask) -> DiagonalGaussian over the latent space.

    Args:
        in_channels: channels of the input (image channels, plus mask channels for Q).
        latent_dim: C.
        num_filters: output channels of each block; a block after the first halves the
            resolution first (average pooling).
        convs_per_block: 3x3 convolutions per block (each followed by the activation).
        log_sigma_bound: log sigma = bound * tanh(raw / bound), so sigma stays in
            [exp(-bound), exp(bound)].
        init_sigma: sigma of the Gaussian at initialisation (the bias of the log-sigma half).
        activation: 'relu' or 'leaky_relu' (`ACTIVATIONS`); the initial weights are the same
            for both (He initialisation for ReLU).
    """

    def __init__(
        self,
        in_channels: int,
        latent_dim: int,
        num_filters: Sequence[int],
        convs_per_block: int,
        log_sigma_bound: float,
        init_sigma: float = 1.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        layers: list[nn.Module] = []
        channels = in_channels
        for index, filters in enumerate(num_filters):
            if index > 0:
                layers.append(nn.AvgPool2d(kernel_size=2, stride=2, ceil_mode=True))
            for _ in range(convs_per_block):
                act = nn.ReLU(inplace=True) if activation == "relu" else nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
                layers += [nn.Conv2d(channels, filters, kernel_size=3, padding=1), act]
                channels = filters
        self.features = nn.Sequential(*layers)
        self.to_gaussian = nn.Conv2d(channels, 2 * latent_dim, kernel_size=1)
        # He initialisation, as the Probabilistic U-Net: with PyTorch's default init the signal
        # shrinks by about sqrt(3) per convolution, and after 12 of them the mask no longer
        # reaches the posterior's output (measured: 6e-7 change for a 40x40 mask vs none).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.latent_dim = latent_dim
        self.log_sigma_bound = log_sigma_bound
        self.set_initial_sigma(init_sigma)

    @torch.no_grad()
    def set_initial_sigma(self, sigma: float) -> None:
        """Set the log-sigma half's bias b so that bound * tanh(b / bound) = log(sigma): sigma is
        then what the Gaussian's sigma is for all-zero features (before training)."""
        bound = self.log_sigma_bound
        self.to_gaussian.bias[self.latent_dim:] = bound * math.atanh(math.log(sigma) / bound)

    def forward(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (B, in_channels, h, w) -> DiagonalGaussian with (B, C) parameters."""
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        params = self.to_gaussian(pooled).flatten(1)
        mean, raw_log_sigma = params.split(self.latent_dim, dim=1)
        bound = self.log_sigma_bound
        return DiagonalGaussian(mean, bound * torch.tanh(raw_log_sigma / bound))


@dataclass
class LatentSample:
    """What `LatentHeads.forward` returns: z (B, C), and KL(Q||P) (B,) when a mask was given.

    Attributes:
        z: the latent sample (B, C): from Q(z|X,Y) when a mask was given, else from P(z|X).
        prior: P(z|X): the Gaussian (`DiagonalGaussian`) the KL is taken against when a mask was
            given, else the prior z was drawn from (`LatentHeads.prior`).
        posterior: Q(z|X,Y), or None without a mask.
        kl: KL(Q||P) per image (B,), or None without a mask; the ELBO's second term.

    Example:
        >>> heads = LatentHeads(in_channels=3, latent_dim=6, num_filters=(8,), resolution=16)
        >>> out = heads(torch.rand(2, 3, 32, 32), torch.ones(2, 1, 32, 32))
        >>> out.z.shape, out.kl.shape, out.posterior is not None
        (torch.Size([2, 6]), torch.Size([2]), True)
    """

    z: torch.Tensor
    prior: DiagonalGaussian | GaussianMixture
    posterior: DiagonalGaussian | None
    kl: torch.Tensor | None


class LatentHeads(nn.Module):
    """Prior net P(z|X) and posterior net Q(z|X,Y) of UA-SAM.

    Args:
        in_channels: image channels (3 for SAM inputs).
        latent_dim: C, the latent dimension (paper: 6).
        num_filters: filters per encoder block (Prob. U-Net: 32, 64, 128, 192).
        convs_per_block: 3x3 convolutions per block (Prob. U-Net: 3).
        resolution: side length both nets see; inputs of any size are resized to it
            (None: use the input size as is).
        mask_channels: channels of the segmentation Y given to the posterior.
        log_sigma_bound: bound on |log sigma| (see ConvGaussianEncoder).
        init_sigma: sigma of both Gaussians at initialisation (default 1, as the Probabilistic
            U-Net); must lie strictly between exp(-log_sigma_bound) and exp(log_sigma_bound).
            A knob against latent collapse (KL(Q||P) -> 0, identical samples); what it did on
            the demo: docs/results.md, "Measurements behind the presets and defaults".
        activation: the nonlinearity of both nets, 'relu' (default, the Probabilistic U-Net's)
            or 'leaky_relu' (LeakyReLU(`LEAKY_SLOPE`)). With ReLU the posterior's deepest units
            can die during training, and with them what it reads of the mask; what LeakyReLU
            changed on the demo: docs/results.md, "Why the latent takes hold on some seeds only".
        prior_components: K, the components of the prior that is sampled. 1 (default): the
            Gaussian prior net. K > 1: the heads also hold a K-component mixture prior net
            (`MixturePriorNet`, ``mixture_net``, its weights frozen here) that `fit_mixture_prior`
            of the pipeline's prior-fit phase fits after training; once fitted (the buffer
            ``mixture_fitted``, saved with the weights), `prior` and `sample` draw from it. The
            training KL is always the Gaussian's (`gaussian_prior`). What it does on the demo:
            docs/results.md, "A mixture prior for the demo".

    Example:
        >>> heads = LatentHeads(in_channels=3, latent_dim=6)
        >>> x, y = torch.rand(2, 3, 256, 256), torch.ones(2, 1, 256, 256)
        >>> out = heads(x, y)              # training: z ~ Q(z|X,Y), and KL(Q||P)
        >>> out.z.shape, out.kl.shape
        (torch.Size([2, 6]), torch.Size([2]))
        >>> heads.sample(x, 4).shape       # inference: 4 hypotheses per image from P(z|X)
        torch.Size([2, 4, 6])
    """

    def __init__(
        self,
        in_channels: int = 3,
        latent_dim: int = 6,
        num_filters: Sequence[int] = (32, 64, 128, 192),
        convs_per_block: int = 3,
        resolution: int | None = 128,
        mask_channels: int = 1,
        log_sigma_bound: float = 5.0,
        init_sigma: float = 1.0,
        activation: str = "relu",
        prior_components: int = 1,
    ) -> None:
        super().__init__()
        if not num_filters or any(int(f) < 1 for f in num_filters):
            raise ValueError(f"num_filters must be a non-empty list of positive ints, got {list(num_filters)}")
        for name, value in (("in_channels", in_channels), ("latent_dim", latent_dim),
                            ("convs_per_block", convs_per_block), ("mask_channels", mask_channels),
                            ("prior_components", prior_components)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
            raise ValueError(f"resolution must be a positive integer or None, got {resolution!r}")
        if not log_sigma_bound > 0:
            raise ValueError(f"log_sigma_bound must be positive, got {log_sigma_bound!r}")
        if not math.exp(-log_sigma_bound) < init_sigma < math.exp(log_sigma_bound):
            raise ValueError(
                f"init_sigma must lie strictly between exp(-log_sigma_bound) and exp(log_sigma_bound) "
                f"({math.exp(-log_sigma_bound):.3g}, {math.exp(log_sigma_bound):.3g}), got {init_sigma!r}"
            )
        self.config = {
            "in_channels": in_channels,
            "latent_dim": latent_dim,
            "num_filters": [int(f) for f in num_filters],
            "convs_per_block": convs_per_block,
            "resolution": resolution,
            "mask_channels": mask_channels,
            "log_sigma_bound": float(log_sigma_bound),
            "init_sigma": float(init_sigma),
            "activation": activation,
            "prior_components": prior_components,
        }
        common = dict(
            latent_dim=latent_dim,
            num_filters=self.config["num_filters"],
            convs_per_block=convs_per_block,
            log_sigma_bound=float(log_sigma_bound),
            init_sigma=float(init_sigma),
            activation=activation,
        )
        self.prior_net = ConvGaussianEncoder(in_channels, **common)
        self.posterior_net = ConvGaussianEncoder(in_channels + mask_channels, **common)
        self.mixture_net: MixturePriorNet | None = None
        if prior_components > 1:
            trunk = copy.deepcopy(self.prior_net.features)
            self.mixture_net = MixturePriorNet(trunk, self.prior_net.to_gaussian.in_channels, latent_dim,
                                               prior_components, float(log_sigma_bound)).requires_grad_(False)
            self.register_buffer("mixture_fitted", torch.zeros((), dtype=torch.bool))
        # the buffer's value, kept on the host too, so that sampling never reads a device value back
        self._samples_mixture = False

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config["resolution"]
        if size is None or tuple(x.shape[-2:]) == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def _check_image(self, x: torch.Tensor) -> None:
        expected = self.config["in_channels"]
        if x.dim() != 4 or x.shape[1] != expected:
            raise ValueError(
                f"LatentHeads expects images of shape (B, {expected}, H, W), got {tuple(x.shape)}"
            )

    def gaussian_prior(self, x: torch.Tensor) -> DiagonalGaussian:
        """The Gaussian prior net's P(z|X) for images x (B, in_channels, H, W): what the training
        KL(Q||P) is taken against, whatever `prior` samples."""
        self._check_image(x)
        return self.prior_net(self._resize(x))

    @property
    def samples_mixture(self) -> bool:
        """Whether `prior` is the fitted mixture (``prior_components`` > 1, mixture fitted)."""
        return self._samples_mixture

    def mark_mixture_fitted(self, fitted: bool = True) -> None:
        """Record that the mixture prior is fitted (``fitted``; False: sample the Gaussian again),
        in the saved buffer ``mixture_fitted`` and in the flag `prior` reads."""
        if self.mixture_net is None:
            raise ValueError("these latent heads have no mixture prior: build them with prior_components=K, K > 1")
        self.mixture_fitted.fill_(bool(fitted))
        self._samples_mixture = bool(fitted)

    def sync_mixture_flag(self) -> None:
        """Read the ``mixture_fitted`` buffer into the flag `prior` reads, after the buffer was
        written in place (``load_state_dict`` does this itself)."""
        self._samples_mixture = self.mixture_net is not None and bool(self.mixture_fitted)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.sync_mixture_flag()

    def prior(self, x: torch.Tensor) -> DiagonalGaussian | GaussianMixture:
        """The prior that is sampled, P(z|X), for images x (B, in_channels, H, W): the Gaussian
        (`gaussian_prior`), or the mixture once fitted (`samples_mixture`). Either has ``rsample``,
        ``mean`` and ``sigma`` (B, C)."""
        return self.mixture_prior(x) if self.samples_mixture else self.gaussian_prior(x)

    def mixture_prior(self, x: torch.Tensor) -> GaussianMixture:
        """The mixture prior net's P(z|X) for images x (B, in_channels, H, W), fitted or not (what
        the prior-fit phase trains); heads with ``prior_components`` 1 have none (ValueError)."""
        if self.mixture_net is None:
            raise ValueError("these latent heads have no mixture prior: build them with prior_components=K, K > 1")
        self._check_image(x)
        return self.mixture_net(self._resize(x))

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> DiagonalGaussian:
        """Q(z|X,Y) for images x (B, in_channels, H, W) and masks y (B, mask_channels, H', W')."""
        self._check_image(x)
        expected = self.config["mask_channels"]
        if y.dim() != 4 or y.shape[0] != x.shape[0] or y.shape[1] != expected:
            raise ValueError(
                f"LatentHeads expects masks of shape ({x.shape[0]}, {expected}, H, W) for images "
                f"{tuple(x.shape)}, got {tuple(y.shape)}"
            )
        y = self._resize(y.to(x.dtype))
        return self.posterior_net(torch.cat([self._resize(x), y], dim=1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, posterior_noise: float = 1.0) -> LatentSample:
        """Training (``y`` given): z ~ Q(z|X,Y) reparameterised, with KL(Q||P) (B,).
        Without ``y``: z ~ P(z|X) (`prior`), kl None. ``prior`` of the result is the Gaussian
        prior the KL is taken against (`gaussian_prior`) when ``y`` is given, else `prior`'s.

        ``posterior_noise`` t in [0, 1] (with ``y`` only): z = mu + t * sigma * eps, the
        posterior's mean with t of its noise; the KL is the posterior's own. Raising t from 0 to 1
        early in training is a warm-up of the posterior's noise (the pipeline's preset field
        ``posterior_noise_warmup``; what it measured: docs/results.md, "When the latent takes
        off, the batch size, and the posterior's noise warmed up").
        """
        if y is None:
            prior = self.prior(x)
            return LatentSample(z=prior.rsample(), prior=prior, posterior=None, kl=None)
        prior = self.gaussian_prior(x)
        posterior = self.posterior(x, y)
        z = posterior.rsample(noise_scale=posterior_noise)
        return LatentSample(z=z, prior=prior, posterior=posterior, kl=posterior.kl(prior))

    def rater_means(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The posterior mean of every rater's mask: (B, R, C) for images x (B, in_channels, H, W)
        and masks (B, R, H', W'), one single-channel mask per rater."""
        if self.config["mask_channels"] != 1:
            raise ValueError("rater_means needs heads with mask_channels=1 (one channel per rater's mask)")
        if masks.dim() != 4 or masks.shape[0] != x.shape[0]:
            raise ValueError(f"rater_means needs masks of shape ({x.shape[0]}, R, H, W), got {tuple(masks.shape)}")
        return torch.stack([self.posterior(x, masks[:, r : r + 1]).mean for r in range(masks.shape[1])], 1)

    def rater_spread(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """How far apart the posterior puts an image's raters: per image, the standard deviation
        over its R raters of the posterior means (`rater_means`), in units of the Gaussian prior's
        sigma (`gaussian_prior`),
        averaged over the latent dimensions. (B,): 0 when the posterior does not tell the raters
        apart (nothing downstream can vary with them), about 1 when their means lie a prior sigma
        apart.

        Args:
            x: images (B, in_channels, H, W).
            masks: every rater's mask of each image, (B, R, H', W'), R >= 2.
        """
        if masks.dim() != 4 or masks.shape[1] < 2:
            raise ValueError(f"rater_spread needs the masks of two or more raters, (B, R >= 2, H, W), got {tuple(masks.shape)}")
        means = self.rater_means(x, masks).float()
        return (means.std(1, unbiased=False) / self.gaussian_prior(x).sigma.float()).mean(-1)

    @staticmethod
    def kl(posterior: DiagonalGaussian, prior: DiagonalGaussian) -> torch.Tensor:
        """Analytic KL(Q || P), (B,)."""
        return posterior.kl(prior)

    def sample(self, x: torch.Tensor, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """n hypotheses per image from the prior (`prior`): (B, n, C). Pass the result as ``z`` to an
        `UncertaintyModel` to get B * n outputs (image-major) from one batched forward."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of samples n must be a positive integer, got {n!r}")
        return self.prior(x).rsample(n, generator=generator)
