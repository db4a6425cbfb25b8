"""Command-line overrides of preset fields, shared by `ua-sam train` / `demo` and `ua-sam reproduce`.

One table maps each overridable `Preset` field to its flag and help, so that both commands spell
an option alike and read it back alike:

    add_preset_options(group, TRAINING_OPTIONS)        # argparse flags, default None (= the preset's)
    preset.replace(**preset_overrides(args, TRAINING_OPTIONS))
"""

from __future__ import annotations

import argparse
from typing import Any, Sequence

from uncertainty_adapters.config import CMSM_ACTIVATIONS, INTERACTIONS, LATENT_PLACEMENTS
from uncertainty_adapters.latent_heads import ACTIVATIONS as LATENT_ACTIVATIONS
from uncertainty_adapters.integrations.pipeline.training.rater_batches import RATERS_PER_IMAGE
from uncertainty_adapters.integrations.sam.latent_prompt import STARTS as LATENT_PROMPT_STARTS
from uncertainty_adapters.integrations.sam.prompts import PROMPT_MODES
from uncertainty_adapters.integrations.sam.spec import ATTENTION_KIND_NAMES

# field -> (flag, argparse keyword arguments); every default is None: "keep the preset's value".
_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "interaction": ("--interaction", dict(choices=INTERACTIONS, help="How z enters the adapters (paper Table 2).")),
    "cmsm_activation": ("--cmsm-activation", dict(
        choices=CMSM_ACTIVATIONS, help="CMSM's modulation: relu (paper Eq. 2-3) or softmax (official code).")),
    "latent_placement": ("--latent-placement", dict(
        choices=LATENT_PLACEMENTS, help="Where z enters each adapter: residual (paper) or bottleneck.")),
    "latent_prompt": ("--latent-prompt", dict(
        action=argparse.BooleanOptionalAction,
        help="z also enters as a dense prompt of SAM's mask decoder (not in the paper; the demo's default).")),
    "latent_prompt_start": ("--latent-prompt-start", dict(
        choices=LATENT_PROMPT_STARTS, help="How the latent prompt's last layer starts: zero (the identity until "
                                           "trained) or random (z moves the masks from the first step).")),
    "free_bits": ("--free-bits", dict(type=float, help="Nats per latent dimension the KL term does not penalise.")),
    "geco_kappa": ("--geco-kappa", dict(
        type=float, metavar="KAPPA", help="GECO: adapt the KL weight so that the reconstruction loss (DiceCE) "
                                          "stays at or below KAPPA (UA-SAM with z only; default: a fixed beta).")),
    "latent_activation": ("--latent-activation", dict(
        choices=LATENT_ACTIVATIONS,
        help="Nonlinearity of the prior and posterior nets (demo: leaky_relu; paper presets: relu).")),
    "raters_per_image": ("--raters-per-image", dict(
        choices=RATERS_PER_IMAGE, help="Masks per image and training step: one (paper: a random rater) or all "
                                       "(B / R images, each with all R raters; UA-SAM with z only).")),
    "epochs": ("--epochs", dict(type=int, help="Maximum epochs (early stopping may end sooner).")),
    "batch_size": ("--batch-size", dict(type=int, help="Images per step and process.")),
    "lr": ("--lr", dict(type=float, help="Adam learning rate.")),
    "latent_lr": ("--latent-lr", dict(type=float, help="Adam learning rate of the prior and posterior nets.")),
    "beta": ("--beta", dict(type=float, help="Weight of KL(Q||P) in the loss (Eq. 6).")),
    "kl_warmup": ("--kl-warmup", dict(type=float, help="Share of the steps over which beta ramps up from 0.")),
    "posterior_noise_warmup": ("--posterior-noise-warmup", dict(
        type=float, help="Share of the steps over which the posterior's noise on z ramps up from 0 (UA-SAM's latent only).")),
    "posterior_noise_cycles": ("--posterior-noise-cycles", dict(
        type=int, help="How many posterior-noise warm-ups, evenly spaced over the steps (1: one, at the start).")),
    "prior_fit_epochs": ("--prior-fit-epochs", dict(
        type=int, help="Epochs fitting the prior net alone to every rater's posterior after training (0: none).")),
    "prior_fit_lr": ("--prior-fit-lr", dict(type=float, help="Adam learning rate of the prior-fit epochs.")),
    "prior_components": ("--prior-components", dict(
        type=int, help="Gaussians in UA-SAM's sampled prior: 1 (default), or K > 1 for a mixture fitted after "
                       "the Gaussian in the prior-fit epochs and sampled instead.")),
    "latent_dim": ("--latent-dim", dict(type=int, help="Latent dimension C.")),
    "image_size": ("--image-size", dict(type=int, help="Encoder input side in pixels.")),
    "prompt": ("--prompt", dict(choices=PROMPT_MODES, help="Prompt type (paper: 'point', one click; demo: "
                                "'component-points', one click per lesion of the raters' majority).")),
    "eval_samples": ("--samples", dict(type=int, help="K samples per image for the majority-vote Dice (paper: 4 / 3).")),
    "ged_samples": ("--ged-samples", dict(
        type=int, help="N samples per image for GED, HM-IoU, diversity, S_NCC, soft Dice, ECE (default 16; 100 works).")),
    "mixed_precision": ("--mixed-precision", dict(choices=("no", "bf16", "fp16"), help="Accelerate mixed precision.")),
    "grad_accum": ("--grad-accum", dict(type=int, help="Gradient accumulation steps.")),
    "num_workers": ("--num-workers", dict(type=int, help="DataLoader worker processes.")),
    "patience": ("--patience", dict(type=int, help="Early stopping patience in epochs.")),
    "synthetic_cases": ("--synthetic-cases", dict(type=int, help="Cases in the synthetic data set (data 'synthetic').")),
    "checkpoint_every": ("--checkpoint-every", dict(type=int, help="Steps between resumable checkpoints.")),
    "train_decoder": ("--train-decoder", dict(action="store_true", help="Also train SAM's mask decoder (paper: frozen).")),
    "compile": ("--compile", dict(
        action="store_true", help="torch.compile the image encoder and its adapters, and on one CUDA process record "
                                  "the whole training step as a CUDA graph (faster after a one-off compile).")),
    "attention": ("--attention", dict(
        choices=ATTENTION_KIND_NAMES, help="SAM image-encoder attention kernel (same function, different speed).")),
    "gradient_checkpointing": ("--gradient-checkpointing", dict(
        action="store_true", help="Recompute encoder blocks in the backward pass: less memory for vit_l / vit_h.")),
}

TRAINING_OPTIONS: tuple[str, ...] = tuple(_OPTIONS)
REPRODUCE_OPTIONS: tuple[str, ...] = (
    "cmsm_activation", "latent_placement", "latent_prompt", "latent_prompt_start", "free_bits", "geco_kappa", "latent_activation",
    "raters_per_image", "epochs", "batch_size", "lr", "latent_lr", "beta", "kl_warmup", "posterior_noise_warmup",
    "posterior_noise_cycles", "prior_fit_epochs", "prior_fit_lr", "prior_components", "latent_dim", "image_size",
    "synthetic_cases", "patience", "eval_samples", "ged_samples", "train_decoder", "prompt",
)


def add_preset_options(group: argparse._ActionsContainer, fields: Sequence[str]) -> None:
    """Add the flags of ``fields`` (names of `Preset` fields) to ``group``; each defaults to None."""
    for name in fields:
        flag, kwargs = _OPTIONS[name]
        group.add_argument(flag, dest=name, default=None, **kwargs)


def preset_overrides(args: argparse.Namespace, fields: Sequence[str]) -> dict[str, Any]:
    """The values the user gave for ``fields`` (None where not given), for `Preset.replace`."""
    return {name: getattr(args, name, None) for name in fields}
