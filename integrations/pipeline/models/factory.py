"""Building the segmenter a training job names: "ua-sam" (the preset's SAM with uncertainty
adapters of the preset's interaction and the latent heads) or "prob-unet" (the Probabilistic
U-Net baseline, from scratch, no backbone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline.models.prob_unet import prob_unet_for
from uncertainty_adapters.integrations.pipeline.models.protocol import TrainableSegmenter
from uncertainty_adapters.integrations.sam import build_uncertainty_sam

#: The model kinds a training job can name, with the label its progress bar shows.
MODEL_LABELS = {"ua-sam": "UA-SAM", "prob-unet": "Prob. U-Net"}
MODELS = tuple(MODEL_LABELS)


def build_model(job: Any, backbone: Path | None) -> TrainableSegmenter:
    """The untrained model of ``job`` (a `TrainJob`: its ``model`` and ``preset``), on the CPU;
    UA-SAM starts from the SAM weights ``backbone`` (None: randomly initialised)."""
    preset = job.preset
    if job.model == "prob-unet":
        return prob_unet_for(preset)
    model = build_uncertainty_sam(
        preset.sam,
        image_size=preset.image_size,
        checkpoint=backbone,
        adapter_config=ua.UncertaintyAdapterConfig(
            latent_dim=preset.latent_dim, interaction=preset.interaction,
            cmsm_activation=preset.cmsm_activation, latent_placement=preset.latent_placement,
        ),
        train_decoder=preset.train_decoder,
        latent_prompt=preset.latent_prompt,
        latent_prompt_start=preset.latent_prompt_start,
        gradient_checkpointing=preset.gradient_checkpointing,
        attention=preset.attention,
        latent_heads_kwargs={
            "resolution": min(preset.latent_resolution, preset.image_size),
            "num_filters": preset.latent_filters,
            "activation": preset.latent_activation,
            "prior_components": preset.mixture_components,
        },
    )
    if preset.compile:
        model.encoder.compile()  # in place: parameter names and checkpoints stay as they are
    return model
