"""The interface every segmenter of the pipeline speaks: UA-SAM (`UncertaintySam`), the
Probabilistic U-Net and the ensemble of Adapter-SAMs. The training loop, `evaluate`, the run
folders and `ua-sam reproduce` use these verbs only, never the model's class.

    out = model(images, prompts, masks=mask)                    # training: z ~ Q(z|X,Y), KL
    out = model(images, prompts, num_samples=k, generator=g)    # sampling: k masks per image
    out.logits                                                  # (B, K, S, S) mask logits
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import torch


@runtime_checkable
class SegmenterOutputLike(Protocol):
    """What a segmenter's forward returns (`SegmenterOutput`, or UA-SAM's `UncertaintySamOutput`).

    Attributes:
        logits: (B, K, S, S) mask logits, K hypotheses per image (K = 1 in training).
        kl: (B,) KL(Q(z|X,Y) || P(z|X)) when masks were given, else None (or no latent).
        z: (B, K, C) the latent samples used, or None for a model without a latent.
        kl_per_dim: (B, C) the KL of each latent dimension (sums to ``kl``), or None.
    """

    logits: torch.Tensor
    kl: torch.Tensor | None
    z: torch.Tensor | None
    kl_per_dim: torch.Tensor | None


@dataclass
class SegmenterOutput:
    """The forward output of the baselines; the fields of `SegmenterOutputLike`."""

    logits: torch.Tensor
    kl: torch.Tensor | None
    z: torch.Tensor | None
    kl_per_dim: torch.Tensor | None = None


@runtime_checkable
class Segmenter(Protocol):
    """A model `evaluate` scores: K sampled masks per image from one call.

    Attributes:
        image_size: S, the side of the (B, 3, S, S) inputs in [0, 1] and of the logits.
    """

    image_size: int

    def __call__(
        self,
        images: torch.Tensor,
        prompts: Any,
        masks: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> SegmenterOutputLike:
        """Training (``masks`` (B, 1, S, S) given: one sample from the posterior, with its KL) or
        sampling (``num_samples`` hypotheses per image from the prior, drawn with ``generator``)."""
        ...

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts, each parameter counted once
        (`uncertainty_adapters.model.parameter_counts`)."""
        ...


@runtime_checkable
class TrainableSegmenter(Segmenter, Protocol):
    """A `Segmenter` the training loop trains, checkpoints and resumes."""

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights that train, by name (what checkpoints and the best weights hold)."""
        ...

    def load_trainable_state_dict(self, tensors: Mapping[str, torch.Tensor], source: str = "the given weights") -> None:
        """Copy in what `trainable_state_dict` returned, after a strict name and shape check
        (`CheckpointMismatchError` naming ``source`` otherwise; nothing copied then)."""
        ...

    def optimizer_groups(self, latent_lr: float | None) -> list[dict[str, Any]]:
        """Adam's parameter groups over the trainable parameters: one group at the optimizer's
        learning rate, and the latent heads in a group of their own at ``latent_lr`` when the
        model gives them one and ``latent_lr`` is not None."""
        ...
