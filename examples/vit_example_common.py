"""What the any-ViT examples share: data, segmentation head, the two training stages, the report.

`timm_vit_segmentation.py` and `transformers_vit.py` differ only in how they build a backbone and
read a token grid from it (a `Backbone`); everything else is here:

1. Pretraining (DESIGN.md section 8): a frozen *random* ViT proves nothing, so unless the user
   gives pretrained ``--weights``, the backbone and a plain segmentation head first train on an
   unambiguous task, crisp colour shapes (``CrispShapes``, every object is foreground) or the
   raters' majority masks of the synthetic training split. Then the backbone is frozen.
2. Uncertainty adapters: ``ua.inject_uncertainty_adapters`` puts them behind the blocks; the
   adapters, the head and the latent heads (prior P(z|X), posterior Q(z|X,Y)) train with the ELBO
   of paper Eq. 6 (``ua.ElboLoss``) on one randomly drawn rater mask per image. With
   ``--prior-fit-epochs`` the prior is then fitted alone to every rater's posterior
   (``ua.fit_prior``), and with ``--prior-components K`` a mixture of K Gaussians after it.
3. Evaluation on the held-out synthetic cases: K samples from the prior in ONE batched forward
   (z of shape (B, K, C)), scored with ``ua.metrics`` (Dice of majority votes, GED, Hungarian IoU,
   diversity), separately on ambiguous cases (the raters disagree) and unambiguous ones.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from safetensors.torch import save_file
from torch import nn

import uncertainty_adapters as ua
from uncertainty_adapters.config import CMSM_ACTIVATIONS, LATENT_PLACEMENTS
from uncertainty_adapters.integrations.data import CrispShapes, build_dataset

# (net, images (B, 3, S, S), z (B, K, C) or None) -> token grid (B * K, D, h, w)
FeatureFn = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass
class Backbone:
    """A ViT and how to read a token grid from it.

    Attributes:
        model: the ViT; it is pretrained (unless ``pretrained``), frozen and injected.
        features: ``features(net, images, z)``: ``net`` is ``model`` itself (pretraining, z None)
            or the injected `ua.UncertaintyModel` (z of shape (B, K, C)); returns the patch-token
            grid (B * K, feature_dim, S / patch_size, S / patch_size).
        feature_dim: channels of that grid.
        patch_size: side of a patch in pixels (a power of two).
        name: what to print.
        pretrained: where the weights came from when the user gave them (skips pretraining).
        blocks: ``blocks=`` for the injection (None: found automatically).
    """

    model: nn.Module
    features: FeatureFn
    feature_dim: int
    patch_size: int
    name: str
    pretrained: str | None = None
    blocks: object = None


@dataclass
class Settings:
    """Sizes and step counts of one run; ``--quick`` picks `quick_settings`."""

    image_size: int = 64
    cases: int = 640
    pretrain_steps: int = 300
    steps: int = 400
    batch_size: int = 16
    samples: int = 4
    latent_dim: int = 6
    beta: float = 0.003
    kl_warmup: float = 0.5
    posterior_noise_warmup: float = 0.0
    prior_fit_epochs: int = 0
    prior_fit_lr: float = 1e-3
    prior_components: int = 1
    lr: float = 1e-3
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    patch_size: int = 8
    head_width: int = 128
    latent_resolution: int = 32
    heads_filters: tuple[int, ...] = (16, 32, 64)


def quick_settings() -> Settings:
    """Seconds-long sizes for CI: 32 px images, a 2-block 32-wide ViT, a handful of steps."""
    return Settings(
        image_size=32, cases=40, pretrain_steps=3, steps=4, batch_size=4, samples=3,
        embed_dim=32, depth=2, num_heads=2, patch_size=8, head_width=32, latent_resolution=16,
        heads_filters=(8, 16),
    )


def build_parser(description: str) -> argparse.ArgumentParser:
    """The flags both examples take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, help="adapter training steps (default 400; quick: 4)")
    parser.add_argument("--pretrain-steps", type=int, help="backbone pretraining steps (default 300)")
    parser.add_argument(
        "--pretrain", choices=("shapes", "majority"), default="shapes",
        help="unambiguous pretraining task when no --weights: 'shapes' (crisp colour shapes, "
        "every object is foreground) or 'majority' (raters' majority vote of the synthetic "
        "training cases)",
    )
    parser.add_argument("--weights", help="pretrained backbone weights; skips the pretraining stage")
    parser.add_argument("--save-backbone", help="write the pretrained backbone here (reuse with --weights)")
    parser.add_argument("--save-adapters", metavar="DIR",
                        help="write the trained adapters and latent heads to DIR (ua.load_adapters_and_latent_heads "
                        "reads them) and the segmentation head to DIR-head.safetensors")
    parser.add_argument("--interaction", default="cmsm", choices=ua.INTERACTIONS, help="how z enters the adapters")
    parser.add_argument("--cmsm-activation", choices=CMSM_ACTIVATIONS, help="CMSM's modulation (default: the library's)")
    parser.add_argument("--latent-placement", choices=LATENT_PLACEMENTS, help="where z enters each adapter (default: the library's)")
    parser.add_argument("--beta", type=float, help="weight of KL(Q||P) in the ELBO (default 0.003)")
    parser.add_argument("--posterior-noise-warmup", type=float, metavar="S",
                        help="share of the steps over which z's posterior noise ramps up from 0 "
                        "(z = mu + t * sigma * eps, t from 0 to 1; default 0: none)")
    parser.add_argument("--prior-fit-epochs", type=int, metavar="N",
                        help="after training, fit the prior alone to every rater's posterior for N epochs "
                        "(ua.fit_prior; default 0: none)")
    parser.add_argument("--prior-components", type=int, metavar="K",
                        help="with --prior-fit-epochs, then fit and sample a mixture of K Gaussians as the prior "
                        "(default 1: the Gaussian)")
    parser.add_argument("--samples", type=int, help="K hypotheses per test image (default 4)")
    parser.add_argument("--image-size", type=int, help="side of the images (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="seconds-long run with tiny sizes (CI)")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """`Settings` for the parsed flags: the defaults (or the quick ones) with the flags applied."""
    settings = quick_settings() if args.quick else Settings()
    for flag, name in (("steps", "steps"), ("pretrain_steps", "pretrain_steps"), ("beta", "beta"),
                       ("samples", "samples"), ("image_size", "image_size"),
                       ("posterior_noise_warmup", "posterior_noise_warmup"), ("prior_fit_epochs", "prior_fit_epochs"),
                       ("prior_components", "prior_components")):
        value = getattr(args, flag)
        if value is not None:
            setattr(settings, name, value)
    if settings.prior_fit_epochs < 0:
        raise SystemExit(f"--prior-fit-epochs must be 0 or more, got {settings.prior_fit_epochs}")
    if settings.prior_components < 1:
        raise SystemExit(f"--prior-components must be 1 or more, got {settings.prior_components}")
    if settings.prior_components > 1 and settings.prior_fit_epochs == 0:
        raise SystemExit(f"--prior-components {settings.prior_components}: the mixture is fitted after training, "
                         f"in the prior-fit phase; give --prior-fit-epochs N too (the demo's: 20)")
    return settings


# -- data ------------------------------------------------------------------------------------


@dataclass
class MultiRaterTensors:
    """A split of the synthetic data held in memory: images (N, 3, S, S), masks (N, R, S, S),
    majority (N, 1, S, S), ambiguous (N,) bool. Indexing gives the multi-rater items
    ``{"image", "masks"}`` that `ua.fit_prior` reads."""

    images: torch.Tensor
    masks: torch.Tensor
    majority: torch.Tensor
    ambiguous: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "masks": self.masks[index]}


def load_synthetic(split: str, settings: Settings, seed: int) -> MultiRaterTensors:
    """Render the ``split`` of ``settings.cases`` synthetic multi-rater cases (4 raters)."""
    dataset = build_dataset("synthetic", settings.image_size, split, seed, length=settings.cases)
    items = [dataset[i] for i in range(len(dataset))]
    return MultiRaterTensors(
        images=torch.stack([item["image"] for item in items]),
        masks=torch.stack([item["masks"] for item in items]),
        majority=torch.stack([item["majority"] for item in items]),
        ambiguous=torch.tensor([dataset.render_case(i).ambiguous for i in range(len(dataset))]),
    )


def crisp_shapes_batch(shapes: CrispShapes, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, S, S) and every-object foreground masks (B, 1, S, S) of shapes start.."""
    images, masks = [], []
    for index in range(start, start + size):
        image, labels = shapes.render(index % len(shapes))
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        masks.append(torch.from_numpy(labels > 0).float()[None])
    return torch.stack(images), torch.stack(masks)


# -- model parts -----------------------------------------------------------------------------


class SegmentationHead(nn.Module):
    """Patch-token grid -> mask logits by progressive 2x upsampling.

    A 1x1 projection and a 3x3 convolution at the grid's resolution, then one stage per 2x
    upsampling: upsample, concatenate the image resized to that scale (so edges are placed at
    pixel precision), 3x3 convolution, GroupNorm, GELU; the width halves at every stage. A 1x1
    convolution gives the logits. With K hypotheses per image the grid holds B * K rows
    (image-major) and the images are repeated to match.

    Args:
        in_channels: D, channels of the token grid.
        patch_size: upsampling factor from the grid to the image (a power of two).
        width: channels at the grid's resolution (about 0.26M parameters at 128, patch 8).
    """

    def __init__(self, in_channels: int, patch_size: int, width: int = 128) -> None:
        super().__init__()
        stages = int(math.log2(patch_size))
        if 2**stages != patch_size:
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        self.grid = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1),
            nn.Conv2d(width, width, kernel_size=3, padding=1), nn.GroupNorm(8, width), nn.GELU(),
        )
        self.stages = nn.ModuleList()
        for _ in range(stages):
            out = max(8, width // 2)
            self.stages.append(nn.Sequential(
                nn.Conv2d(width + 3, out, kernel_size=3, padding=1), nn.GroupNorm(min(8, out), out), nn.GELU()
            ))
            width = out
        self.logits = nn.Conv2d(width, 1, kernel_size=1)

    def forward(self, grid: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """grid (B * K, D, h, w), images (B, 3, S, S) -> logits (B * K, 1, S, S)."""
        if grid.shape[0] != images.shape[0]:
            images = images.repeat_interleave(grid.shape[0] // images.shape[0], dim=0)
        x = self.grid(grid)
        for stage in self.stages:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            skip = F.interpolate(images, size=x.shape[-2:], mode="area")
            x = stage(torch.cat([x, skip], dim=1))
        return self.logits(x)


def tokens_to_grid(tokens: torch.Tensor, num_prefix_tokens: int, grid_size: int) -> torch.Tensor:
    """(B, prefix + h * w, D) tokens -> (B, D, h, w) patch grid (class/register tokens dropped)."""
    patches = tokens[:, num_prefix_tokens:]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[-1], grid_size, grid_size)


def backbone_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer: shows that training left the backbone unchanged."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# -- the two training stages -----------------------------------------------------------------


def pretrain_backbone(
    backbone: Backbone, head: SegmentationHead, task: str, train: MultiRaterTensors, settings: Settings, seed: int
) -> str:
    """Train backbone + head on an unambiguous task (DiceCE); returns a line saying what was done."""
    params = list(backbone.model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01)
    criterion = DiceCELoss(sigmoid=True)
    generator = torch.Generator().manual_seed(seed)
    shapes = CrispShapes(length=4096, image_size=settings.image_size, seed=seed)
    backbone.model.train()
    head.train()
    loss = torch.tensor(float("nan"))
    for step in range(settings.pretrain_steps):
        if task == "shapes":
            images, target = crisp_shapes_batch(shapes, step * settings.batch_size, settings.batch_size)
        else:
            index = torch.randint(len(train.images), (settings.batch_size,), generator=generator)
            images, target = train.images[index], train.majority[index]
        logits = head(backbone.features(backbone.model, images, None), images)
        loss = criterion(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    backbone.model.eval()
    what = {"shapes": "crisp colour shapes (CrispShapes, every object is foreground)",
            "majority": "the raters' majority masks of the synthetic training split"}[task]
    return f"pretrained here for {settings.pretrain_steps} steps on {what}; final DiceCE {loss.item():.3f}"


def train_adapters(
    model: ua.UncertaintyModel,
    backbone: Backbone,
    head: SegmentationHead,
    latent: ua.LatentHeads,
    train: MultiRaterTensors,
    settings: Settings,
    seed: int,
) -> ua.losses.ElboTerms:
    """Paper Eq. 6 on one random rater mask per image: z ~ Q(z|X,Y), DiceCE + beta * KL(Q||P).

    Trains the adapters, the head and the latent heads; the backbone stays frozen. beta grows
    linearly from 0 over the first ``settings.kl_warmup`` of the steps (KL warm-up), so that the
    decoder learns to read z before the KL term can pull the posterior onto the prior. With
    ``settings.posterior_noise_warmup`` S > 0, z = mu + t * sigma * eps with t rising linearly from
    0 to 1 over the first S of the steps (`ua.LatentHeads`'s ``posterior_noise``).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    params += list(head.parameters()) + list(latent.parameters())
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    criterion = ua.ElboLoss(beta=settings.beta, validate=False)
    generator = torch.Generator().manual_seed(seed + 1)
    model.train()
    head.train()
    latent.train()
    terms = None
    warmup = max(1, int(settings.kl_warmup * settings.steps))
    noise_warmup = settings.posterior_noise_warmup * settings.steps
    for step in range(settings.steps):
        criterion.beta = settings.beta * min(1.0, step / warmup)  # KL warm-up against collapse
        noise = min(1.0, step / noise_warmup) if noise_warmup > 0 else 1.0  # share of the posterior's noise on z
        index = torch.randint(len(train.images), (settings.batch_size,), generator=generator)
        rater = torch.randint(train.masks.shape[1], (settings.batch_size,), generator=generator)
        images, target = train.images[index], train.masks[index, rater][:, None]
        sample = latent(images, target, posterior_noise=noise)  # z ~ Q(z|X,Y), (B, C), and KL(Q||P), (B,)
        logits = head(backbone.features(model, images, sample.z[:, None]), images)
        terms = criterion(logits, target, sample.kl)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()
    model.eval()
    head.eval()
    latent.eval()
    return terms


def fit_prior(latent: ua.LatentHeads, train: MultiRaterTensors, settings: Settings, seed: int) -> str:
    """The prior net alone fitted to every rater's posterior of the training images
    (`ua.fit_prior`; no validation split here, so the last epoch is kept), then the mixture
    prior when the heads have one. Returns a line saying what changed."""
    rows = ua.fit_prior(latent, train, None, settings.prior_fit_epochs, settings.prior_fit_lr,
                        settings.batch_size, seed, torch.device("cpu"))
    kl = [row["prior_kl"] for row in rows if "prior_kl" in row]
    line = (f"fitted the prior to every rater's posterior for {settings.prior_fit_epochs} epochs "
            f"(mean KL {kl[0]:.3f} -> {kl[-1]:.3f})")
    nll = [row["mixture_nll"] for row in rows if "mixture_nll" in row]
    if nll:
        line += (f", then a mixture of {settings.prior_components} Gaussians (-log P {nll[0]:.3f} -> {nll[-1]:.3f}), "
                 f"which the samples are drawn from")
    return line


# -- evaluation ------------------------------------------------------------------------------


@torch.no_grad()
def sample_masks(
    model: ua.UncertaintyModel,
    backbone: Backbone,
    head: SegmentationHead,
    latent: ua.LatentHeads,
    images: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """K hypotheses per image from the prior in one batched forward: probabilities (B, K, S, S)."""
    z = latent.sample(images, k, generator=generator)  # (B, K, C)
    logits = head(backbone.features(model, images, z), images)  # (B * K, 1, S, S)
    return logits.sigmoid().view(images.shape[0], k, *images.shape[-2:])


@torch.no_grad()
def evaluate(
    model: ua.UncertaintyModel,
    backbone: Backbone,
    head: SegmentationHead,
    latent: ua.LatentHeads,
    test: MultiRaterTensors,
    settings: Settings,
    seed: int,
) -> dict[str, dict[str, float]]:
    """The paper's metrics on the test split: {'all' | 'ambiguous' | 'unambiguous': {metric: value}}.

    Metrics per image: dice, ged, hm_iou, diversity of the K samples, and rater_diversity
    (the same pairwise 1 - IoU among the raters: how much the truth itself varies).
    """
    generator = torch.Generator().manual_seed(seed + 2)
    per_image: dict[str, list[torch.Tensor]] = {k: [] for k in ("dice", "ged", "hm_iou", "diversity", "rater_diversity")}
    for start in range(0, len(test.images), 32):
        images, raters = test.images[start : start + 32], test.masks[start : start + 32]
        samples = sample_masks(model, backbone, head, latent, images, settings.samples, generator) > 0.5
        per_image["dice"].append(ua.metrics.dice(samples, raters))
        per_image["ged"].append(ua.metrics.ged(samples, raters))
        per_image["hm_iou"].append(ua.metrics.hungarian_iou(samples, raters))
        per_image["diversity"].append(ua.metrics.diversity(samples))
        per_image["rater_diversity"].append(ua.metrics.diversity(raters))
    values = {name: torch.cat(chunks) for name, chunks in per_image.items()}
    subsets = {"all": torch.ones_like(test.ambiguous), "ambiguous": test.ambiguous, "unambiguous": ~test.ambiguous}
    report = {}
    for subset, keep in subsets.items():
        if keep.any():
            report[subset] = {name: float(v[keep].mean()) for name, v in values.items()}
            report[subset]["cases"] = int(keep.sum())
    return report


def head_path(adapters_dir: str | Path) -> Path:
    """Where the segmentation head is saved: beside the adapter folder, not inside it."""
    adapters_dir = Path(adapters_dir)
    return adapters_dir.with_name(adapters_dir.name + "-head.safetensors")


def format_table(report: dict[str, dict[str, float]], k: int) -> str:
    """The metrics as a fixed-width table (one row per subset)."""
    columns = ("cases", "dice", "ged", "hm_iou", "diversity", "rater_diversity")
    lines = [f"test metrics, K = {k} samples per image from the prior (one batched forward)",
             f"{'subset':<12}" + "".join(f"{c:>16}" for c in columns)]
    for subset, row in report.items():
        cells = "".join(f"{row[c]:>16d}" if c == "cases" else f"{row[c]:>16.3f}" for c in columns)
        lines.append(f"{subset:<12}{cells}")
    lines.append("dice: majority of samples vs majority of raters (higher is better); ged: generalized "
                 "energy distance (lower is better); hm_iou: Hungarian-matched IoU; diversity: mean "
                 "pairwise 1 - IoU of the samples (rater_diversity: the same among the raters)")
    return "\n".join(lines)


# -- the whole run ---------------------------------------------------------------------------


def run(
    build_backbone: Callable[[], Backbone],
    args: argparse.Namespace,
    settings: Settings,
    save_backbone: Callable[[nn.Module, str], None] | None = None,
    after_training: Callable[[ua.UncertaintyModel, ua.LatentHeads, MultiRaterTensors], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Seed, build, pretrain (or load), freeze and inject, train, evaluate, print; returns the report."""
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    backbone = build_backbone()
    train = load_synthetic("train", settings, args.seed)
    test = load_synthetic("test", settings, args.seed)
    print(f"data: synthetic multi-rater lesions, {settings.image_size} px, {len(train.images)} train / "
          f"{len(test.images)} test cases, {train.masks.shape[1]} raters "
          f"({int(test.ambiguous.sum())} ambiguous test cases)")
    head = SegmentationHead(backbone.feature_dim, backbone.patch_size, settings.head_width)
    print(f"backbone: {backbone.name}; head: {sum(p.numel() for p in head.parameters()):,d} parameters")

    if backbone.pretrained is not None:
        print(f"backbone weights: {backbone.pretrained} (no pretraining stage)")
    else:
        print("backbone weights: " + pretrain_backbone(backbone, head, args.pretrain, train, settings, args.seed))
        if args.save_backbone:
            save_backbone(backbone.model, args.save_backbone)
            print(f"pretrained backbone written to {args.save_backbone} (pass it as --weights)")

    forms = {name: getattr(args, name) for name in ("cmsm_activation", "latent_placement") if getattr(args, name, None)}
    config = ua.UncertaintyAdapterConfig(latent_dim=settings.latent_dim, interaction=args.interaction, **forms)
    model = ua.inject_uncertainty_adapters(backbone.model, config, blocks=backbone.blocks)  # freezes it
    fingerprint = backbone_fingerprint(model.base_model)
    latent = ua.LatentHeads(
        in_channels=3, latent_dim=settings.latent_dim, num_filters=settings.heads_filters,
        convs_per_block=2, resolution=settings.latent_resolution, prior_components=settings.prior_components,
    )
    print(f"uncertainty adapters ({args.interaction}, CMSM {config.cmsm_activation}, z into the {config.latent_placement}) "
          f"behind {model.num_blocks} blocks; ", end="")
    model.print_trainable_parameters()
    terms = train_adapters(model, backbone, head, latent, train, settings, args.seed)
    noise = (f"; the posterior's noise on z warmed up over the first {settings.posterior_noise_warmup:.0%}"
             if settings.posterior_noise_warmup > 0 else "")
    print(f"trained adapters + head + latent heads for {settings.steps} steps (beta {settings.beta}, warmed up "
          f"from 0 over the first {settings.kl_warmup:.0%}{noise}): "
          f"ELBO {terms.loss.item():.3f} = DiceCE {terms.reconstruction.item():.3f} + beta * KL {terms.kl.item():.3f}")
    print(f"backbone unchanged by training: {backbone_fingerprint(model.base_model) == fingerprint}")
    if settings.prior_fit_epochs:
        print(fit_prior(latent, train, settings, args.seed))

    report = evaluate(model, backbone, head, latent, test, settings, args.seed)
    print(format_table(report, settings.samples))
    if after_training is not None:
        after_training(model, latent, test)
    if args.save_adapters:
        model.save_adapters(args.save_adapters, latent_heads=latent)  # PEFT-style folder: adapters + latent heads
        head_file = head_path(args.save_adapters)
        save_file(head.state_dict(), str(head_file))  # the example's own head, beside the folder
        print(f"adapters and latent heads written to {args.save_adapters} "
              f"(ua.load_adapters_and_latent_heads(backbone, path) restores both); the head to {head_file}")
    print(f"wall time: {time.perf_counter() - started:.1f} s")
    return report
