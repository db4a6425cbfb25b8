"""The Probabilistic U-Net (Kohl et al. 2018): the paper's "Pro U-Net" baseline (Table 1).

A U-Net trained from scratch (no foundation backbone, no prompts) whose last feature map is
combined with a global latent sample z by "fcomb": z is broadcast over the feature map,
concatenated to it, and a few 1x1 convolutions map the result to mask logits. z comes from the
same prior P(z|X) / posterior Q(z|X,Y) heads as UA-SAM (`ua.LatentHeads`), and training uses the
same ELBO (paper Eq. 6), so the two differ only in where z enters: at the output of a U-Net here,
inside the adapters of a frozen SAM there. The U-Net is MONAI's `BasicUNet`.

The module is a `TrainableSegmenter` (models/protocol.py), so the training loop and `evaluate`
run it unchanged.
Prompts are accepted and ignored: the Probabilistic U-Net segments the whole image.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.pipeline.models.protocol import SegmenterOutput
from uncertainty_adapters.model import parameter_counts

# MONAI's BasicUNet widths; the demo uses half of them (see `prob_unet_for`).
DEFAULT_FEATURES = (32, 32, 64, 128, 256, 32)
SMALL_FEATURES = (16, 16, 32, 64, 128, 16)


class ProbabilisticUNet(nn.Module):
    """U-Net features + fcomb(features, z) -> mask logits, with prior/posterior latent heads.

    Args:
        image_size: side S of the (B, 3, S, S) inputs and of the returned logits.
        latent_dim: C, the latent dimension.
        resolution: side the U-Net runs at (inputs are resized to it and the logits back to S);
            None: S. The Prob. U-Net works on 128 px LIDC patches; there is no gain in running
            it at SAM's 1024 px.
        features: `BasicUNet` widths (6 numbers); the last one is the feature map fcomb sees.
        fcomb_layers: 1x1 convolutions (with ReLU) of fcomb before the final 1x1 to one logit.
        latent_heads_kwargs: extra `ua.LatentHeads` arguments (``num_filters``, ``resolution``).
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int = 6,
        resolution: int | None = None,
        features: Sequence[int] = DEFAULT_FEATURES,
        fcomb_layers: int = 3,
        latent_heads_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(features) != 6:
            raise ValueError(f"features must be 6 BasicUNet widths, got {list(features)}")
        if fcomb_layers < 1:
            raise ValueError(f"fcomb_layers must be >= 1, got {fcomb_layers}")
        resolution = image_size if resolution is None else resolution
        if resolution % 16:
            raise ValueError(f"the U-Net resolution must be a multiple of 16 (4 poolings), got {resolution}")
        self.image_size, self.resolution = int(image_size), int(resolution)
        self.config = {
            "image_size": self.image_size,
            "latent_dim": int(latent_dim),
            "resolution": self.resolution,
            "features": [int(f) for f in features],
            "fcomb_layers": int(fcomb_layers),
            "latent_heads_kwargs": dict(latent_heads_kwargs or {}),
        }
        width = int(features[-1])
        self.unet = BasicUNet(spatial_dims=2, in_channels=3, out_channels=width, features=tuple(features))
        layers: list[nn.Module] = []
        channels = width + latent_dim
        for _ in range(fcomb_layers):
            layers += [nn.Conv2d(channels, width, kernel_size=1), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(width, 1, kernel_size=1))
        self.fcomb = nn.Sequential(*layers)
        # sigma 1 at initialisation (log-sigma bias 0), as Kohl et al.: here z reaches the output
        # through fcomb's random (not zero-initialised) weights from the first step.
        heads = {"resolution": min(128, self.resolution), "init_sigma": 1.0, **(latent_heads_kwargs or {})}
        self.latent_heads = ua.LatentHeads(in_channels=3, latent_dim=latent_dim, **heads)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, F, r, r): the U-Net's last feature map (after ReLU), r = resolution."""
        if images.shape[-1] != self.resolution:
            images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", align_corners=False, antialias=True)
        return F.relu(self.unet(images))

    def combine(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """fcomb: features (B, F, r, r) and z (B, K, C) -> logits (B, K, S, S)."""
        batch, k = z.shape[:2]
        # fcomb's first 1x1 conv on concat(features, z broadcast) is W_f * features + W_z z + b:
        # the feature part runs once per image, z's part once per hypothesis, broadcast over the
        # map, instead of repeating the features K times and tiling z over every position.
        first, width = self.fcomb[0], features.shape[1]
        weight = first.weight.flatten(1)  # (W, F + C)
        per_image = F.conv2d(features, first.weight[:, :width], first.bias)  # (B, W, r, r)
        per_sample = z.to(features.dtype) @ weight[:, width:].T  # (B, K, W)
        hidden = (per_image[:, None] + per_sample[..., None, None]).flatten(0, 1)  # (B K, W, r, r)
        logits = self.fcomb[1:](hidden)
        if logits.shape[-1] != self.image_size:
            logits = F.interpolate(logits, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        return logits.view(batch, k, self.image_size, self.image_size)

    def forward(
        self,
        images: torch.Tensor,
        prompts: Any = None,
        masks: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> SegmenterOutput:
        """Training (``masks`` given: z ~ Q(z|X,Y), KL returned) or sampling (z ~ P(z|X)).

        Args:
            images: (B, 3, S, S) float in [0, 1].
            prompts: ignored (kept for UA-SAM's call signature).
            masks: (B, 1, S, S) the rater mask Y, or None.
            num_samples: K hypotheses per image (the U-Net runs once, fcomb K times).
            generator: random generator for the latent samples.

        Returns:
            `SegmenterOutput`: logits (B, K, S, S), kl (B,) or None, z (B, K, C).
        """
        s = self.image_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f"images must be (B, 3, {s}, {s}) floats in [0, 1], got {tuple(images.shape)}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        kl = None
        if masks is None:
            z = self.latent_heads.prior(images).rsample(num_samples, generator=generator)
        else:
            posterior = self.latent_heads.posterior(images, masks)
            z = posterior.rsample(num_samples, generator=generator)
            kl = posterior.kl(self.latent_heads.gaussian_prior(images))
        return SegmenterOutput(self.combine(self.features(images), z), kl, z)

    # -- the verbs the training loop uses --------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Every weight (everything trains)."""
        return dict(self.state_dict())

    def load_trainable_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "the given weights") -> None:
        """Copy in what `trainable_state_dict` returned, after a strict name and shape check."""
        ckpt.check_state_dict(self.state_dict(), tensors, source)
        self.load_state_dict(dict(tensors))

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, each parameter counted once."""
        return parameter_counts(self)

    def optimizer_groups(self, latent_lr: float | None) -> list[dict[str, Any]]:
        """One group: every weight trains at the optimizer's learning rate (``latent_lr`` is a
        UA-SAM setting; the Probabilistic U-Net trains its heads with the U-Net)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


def prob_unet_for(preset: Any) -> ProbabilisticUNet:
    """The Probabilistic U-Net matching a preset: its image size, latent dimension and latent
    heads; the U-Net at min(128, image size) px (LIDC's patch size), MONAI's default widths, or
    half of them for the CPU-sized demo."""
    return ProbabilisticUNet(
        image_size=preset.image_size,
        latent_dim=preset.latent_dim,
        resolution=min(128, preset.image_size),
        features=SMALL_FEATURES if preset.sam == "demo" else DEFAULT_FEATURES,
        latent_heads_kwargs={
            "resolution": min(preset.latent_resolution, preset.image_size),
            "num_filters": list(preset.latent_filters),
        },
    )
