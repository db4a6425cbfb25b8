"""`UncertaintySam`: UA-SAM, SAM with uncertainty-aware adapters in its image encoder (paper Fig. 1).

One training step (DESIGN.md section 3): the posterior Q(z|X,Y) of the latent heads gives z and
KL(Q||P); the frozen image encoder, with an adapter behind every block, encodes the image under
z; SAM's prompt encoder and mask decoder turn the embedding and one point prompt into mask
logits. The loss is paper Eq. 6 (`uncertainty_adapters.elbo_loss(logits, masks, kl)`).
At inference z is drawn K times from the prior P(z|X): the K hypotheses of an image are one
batched encoder forward (block 0 runs once per image) and one batched decoder call.

    model = build_uncertainty_sam("vit_b", image_size=1024, checkpoint="sam_vit_b_01ec64.pth")
    out = model(images, prompts, masks)           # training: logits (B, 1, S, S), kl (B,)
    out = model(images, prompts, num_samples=4)   # inference: logits (B, 4, S, S)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from torch import nn

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.model import parameter_counts

from .latent_prompt import LatentDensePrompt
from .prompts import Prompts
from .sam_forward import decode_prompts, normalize_images


@dataclass
class UncertaintySamOutput:
    """What `UncertaintySam.forward` returns.

    Attributes:
        logits: (B, K, S, S) mask logits, K hypotheses per image (K = 1 in training).
        kl: (B,) KL(Q(z|X,Y) || P(z|X)) when masks were given (zeros for interactions without a
            latent), else None.
        z: (B, K, C) the latent samples used, or None for interactions without a latent.
        kl_per_dim: (B, C) the KL of each latent dimension (its sum over C is ``kl``) when
            masks were given and the model has a latent, else None.
    """

    logits: torch.Tensor
    kl: torch.Tensor | None
    z: torch.Tensor | None
    kl_per_dim: torch.Tensor | None = None


class UncertaintySam(nn.Module):
    """UA-SAM: a frozen SAM whose image encoder carries uncertainty adapters, plus the latent heads.

    Trainable by default: the adapters (with their condition and Recon) and the latent heads;
    the mask decoder too with ``train_decoder=True``. The image encoder and prompt encoder are
    frozen.

    Args:
        sam: a segment-anything `Sam` with its weights loaded (see `build_uncertainty_sam`). Its
            image encoder is injected in place; its parts become this model's parts.
        adapter_config: the adapters; None: the paper's (`ua.UncertaintyAdapterConfig()`).
        train_decoder: let the mask decoder train (off in the paper).
        latent_heads_kwargs: extra arguments of `ua.LatentHeads` (e.g. ``num_filters``); the
            default resolution is min(128, image size). Unused for the interactions without a
            latent ('position', 'none'), which have no latent heads.
        latent_prompt: z also enters as a dense prompt of the mask decoder (`LatentDensePrompt`,
            trainable), besides the adapters; not in the paper. Ignored without a latent.
        latent_prompt_start: how the dense prompt's last layer starts, "zero" (the identity until
            trained) or "random" (`LatentDensePrompt`'s ``start``); only with ``latent_prompt``.
    """

    def __init__(
        self,
        sam: Sam,
        adapter_config: ua.UncertaintyAdapterConfig | None = None,
        train_decoder: bool = False,
        latent_heads_kwargs: Mapping[str, Any] | None = None,
        latent_prompt: bool = False,
        latent_prompt_start: str = "zero",
    ) -> None:
        super().__init__()
        if not isinstance(getattr(sam, "image_encoder", None), ImageEncoderViT):
            raise TypeError(
                f"UncertaintySam expects a segment-anything Sam (e.g. build_sam('vit_b')), got {type(sam).__name__}"
            )
        adapter_config = adapter_config if adapter_config is not None else ua.UncertaintyAdapterConfig()
        fixed = sorted({"in_channels", "latent_dim"} & set(latent_heads_kwargs or {}))
        if fixed:
            raise ValueError(
                f"latent_heads_kwargs may not set {fixed}: the latent heads see RGB images and use "
                f"adapter_config.latent_dim"
            )
        self.image_size = int(sam.image_encoder.img_size)
        self.train_decoder = train_decoder
        if adapter_config.uses_sample:
            kwargs = {"resolution": min(128, self.image_size), **(latent_heads_kwargs or {})}
            self.latent_heads = ua.LatentHeads(in_channels=3, latent_dim=adapter_config.latent_dim, **kwargs)
        else:
            self.latent_heads = None
        self.encoder = ua.inject_uncertainty_adapters(sam.image_encoder, adapter_config)
        self.latent_prompt = (
            LatentDensePrompt(adapter_config.latent_dim, sam.prompt_encoder.embed_dim, start=latent_prompt_start)
            if latent_prompt and self.latent_heads is not None else None
        )
        self.prompt_encoder = sam.prompt_encoder.requires_grad_(False)
        self.mask_decoder = sam.mask_decoder.requires_grad_(train_decoder)
        self.register_buffer("pixel_mean", sam.pixel_mean.detach().clone().view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", sam.pixel_std.detach().clone().view(-1, 1, 1), persistent=False)

    @property
    def config(self) -> ua.UncertaintyAdapterConfig:
        return self.encoder.config

    @property
    def image_encoder(self) -> ImageEncoderViT:
        """SAM's image encoder itself (without adapters), e.g. for `save_sam_weights`."""
        return self.encoder.base_model

    # -- the two halves ------------------------------------------------------------------
    def encode(self, images: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Image embeddings under latent samples.

        Args:
            images: (B, 3, S, S) float in [0, 1] (normalised here as SAM does, on the 0-255 scale).
            z: (B, C), or (B, K, C) for K hypotheses per image (block 0 runs once per image);
                None only for interactions that do not read z.

        Returns:
            (B * K, prompt_embed_dim, S / p, S / p), image-major (K = 1 for 2-D z); with a
            `latent_prompt`, each shifted by its sample's dense prompt.
        """
        self._check_images(images)
        embeddings = self.encoder(normalize_images(images, self.pixel_mean, self.pixel_std), z=z)
        if self.latent_prompt is not None and z is not None:
            embeddings = self.latent_prompt(embeddings, z)
        return embeddings

    def decode(self, embeddings: torch.Tensor, prompts: Prompts) -> torch.Tensor:
        """Mask logits for N image embeddings with N prompt sets (embedding i with prompts i).

        Args:
            embeddings: (N, prompt_embed_dim, h, w) from `encode`.
            prompts: `Prompts` with batch N, in pixels of the S x S input.

        Returns:
            (N, 1, S, S) mask logits (SAM's single-mask output, upsampled bilinearly).
        """
        return decode_prompts(self.prompt_encoder, self.mask_decoder, embeddings, prompts)

    # -- the model -----------------------------------------------------------------------
    def forward(
        self,
        images: torch.Tensor,
        prompts: Prompts,
        masks: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        posterior_noise: float | torch.Tensor = 1.0,
    ) -> UncertaintySamOutput:
        """Training (``masks`` given) or sampling (no ``masks``).

        Args:
            images: (B, 3, S, S) float in [0, 1].
            prompts: `Prompts` with batch B, pixel coordinates of the S x S input.
            masks: (B, 1, S, S) the rater mask Y: z ~ Q(z|X,Y) and KL(Q||P) are returned.
                None: z ~ P(z|X), no KL.
            num_samples: K hypotheses per image (one batched forward).
            generator: random generator for the latent samples.
            posterior_noise: with ``masks``, z = mu + t * sigma * eps carries this share t of the
                posterior's noise (`uncertainty_adapters.LatentHeads.forward`); 1: the posterior. A
                0-d device tensor (a CUDA graph's) is used unchecked (`DiagonalGaussian.rsample`).

        Returns:
            `UncertaintySamOutput` with logits (B, K, S, S), kl (B,) or None, z (B, K, C) or None.
        """
        self._check_images(images)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        batch, k = images.shape[0], num_samples
        if prompts.batch_size != batch:
            raise ValueError(f"got {batch} images but {prompts.batch_size} prompt sets; give one prompt set per image")
        z, kl, kl_per_dim = None, None, None
        if self.latent_heads is not None:
            if masks is None:
                z = self.latent_heads.prior(images).rsample(k, generator=generator)
            else:
                prior = self.latent_heads.gaussian_prior(images)
                posterior = self.latent_heads.posterior(images, masks)
                z = posterior.rsample(k, generator=generator, noise_scale=posterior_noise)
                kl_per_dim = posterior.kl_per_dim(prior)
                kl = kl_per_dim.sum(dim=-1)
        elif masks is not None:
            kl = images.new_zeros(batch)
        # Interactions without a latent read only K from a 3-D z.
        encoder_z = z if z is not None else images.new_zeros(batch, k, self.config.latent_dim)
        logits = self.decode(self.encode(images, encoder_z), prompts.repeat_interleave(k))
        return UncertaintySamOutput(logits.view(batch, k, self.image_size, self.image_size), kl, z, kl_per_dim)

    def _check_images(self, images: torch.Tensor) -> None:
        s = self.image_size
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(
                f"images must be (B, 3, {s}, {s}) floats in [0, 1] for this model (image_size={s}), "
                f"got {shape}; resize them to {s} x {s}, or build the model with your images' size"
            )

    # -- user verbs ----------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that train: adapters ('encoder.condition/adapters/recon.*'), latent heads
        ('latent_heads.*'), the latent dense prompt ('latent_prompt.*') when there is one and, with
        ``train_decoder``, the mask decoder ('mask_decoder.*')."""
        tensors = {f"encoder.{name}": t for name, t in self.encoder.adapter_state_dict().items()}
        if self.latent_heads is not None:
            tensors.update({f"latent_heads.{name}": t for name, t in self.latent_heads.state_dict().items()})
        if self.latent_prompt is not None:
            tensors.update({f"latent_prompt.{name}": t for name, t in self.latent_prompt.state_dict().items()})
        if self.train_decoder:
            tensors.update({f"mask_decoder.{name}": t for name, t in self.mask_decoder.state_dict().items()})
        return tensors

    def load_trainable_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "the given weights") -> None:
        """Copy in what `trainable_state_dict` returned, after a strict name and shape check.

        Raises:
            CheckpointMismatchError: names or shapes differ (listed); nothing is copied then.
        """
        own = self.trainable_state_dict()
        ckpt.check_state_dict(own, tensors, source)
        with torch.no_grad():
            for name, tensor in own.items():
                tensor.copy_(tensors[name])
        if self.latent_heads is not None:  # a mixture prior's fitted flag was written in place
            self.latent_heads.sync_mixture_flag()

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, each parameter counted once."""
        return parameter_counts(self)

    def optimizer_groups(self, latent_lr: float | None) -> list[dict[str, Any]]:
        """Adam's parameter groups: every trainable parameter at the optimizer's learning rate,
        except the prior and posterior nets at ``latent_lr`` when it is given."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        if latent_lr is None or self.latent_heads is None:
            return [{"params": trainable}]
        latent = {id(p) for p in self.latent_heads.parameters()}
        return [{"params": [p for p in trainable if id(p) not in latent]},
                {"params": [p for p in trainable if id(p) in latent], "lr": latent_lr}]

    def print_trainable_parameters(self) -> None:
        """Print 'trainable params: X || all params: Y || trainable%: Z' (as PEFT does)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || "
            f"trainable%: {100 * trainable / max(total, 1):.4f}"
        )
