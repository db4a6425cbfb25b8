"""Uncertainty adapters on a timm Vision Transformer: many plausible segmentations, end to end.

A timm ViT (a small config, or any timm model with your own pretrained weights) is pretrained on
an unambiguous task (unless --weights is given), frozen, and injected with uncertainty adapters;
the adapters, a light progressive-upsampling head and the latent heads then train on the
synthetic multi-rater lesions with the ELBO of UA-SAM, and K samples per test image are scored
with the paper's metrics. The common parts live in vit_example_common.py.

    python examples/timm_vit_segmentation.py                     # a few minutes on a laptop CPU
    python examples/timm_vit_segmentation.py --quick             # seconds (CI)
    python examples/timm_vit_segmentation.py --model vit_small_patch16_224 \\
        --weights vit_small.safetensors --image-size 128       # your own pretrained timm weights
"""

from __future__ import annotations

import timm
import torch
from safetensors.torch import save_file
from torch import nn

from vit_example_common import Backbone, Settings, build_parser, run, settings_from_args, tokens_to_grid


def build_backbone(model_name: str, weights: str | None, settings: Settings) -> Backbone:
    """The timm ViT, its outputs left as the normalised token sequence (no pooling, no classifier).

    ``model_name="small"`` is a ``vit_small_patch16_224`` shrunk to the settings (patch size,
    width, depth); any other name is used as timm defines it. ``weights`` is a local checkpoint
    file for that architecture (timm resamples the position embedding to the image size).
    """
    kwargs: dict = {"num_classes": 0, "global_pool": "", "img_size": settings.image_size}
    name = model_name
    if model_name == "small":
        name = "vit_small_patch16_224"
        kwargs.update(patch_size=settings.patch_size, embed_dim=settings.embed_dim,
                      depth=settings.depth, num_heads=settings.num_heads)
    if weights:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": weights})
    vit = timm.create_model(name, **kwargs)
    patch_size = vit.patch_embed.patch_size[0]
    grid_size = settings.image_size // patch_size

    def features(net: nn.Module, images: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        tokens = net(images) if z is None else net(images, z=z)  # (B * K, prefix + h * w, D)
        return tokens_to_grid(tokens, vit.num_prefix_tokens, grid_size)

    label = f"timm {name} ({'custom small config: ' if model_name == 'small' else ''}" \
            f"patch {patch_size}, width {vit.embed_dim}, {len(vit.blocks)} blocks)"
    return Backbone(vit, features, vit.embed_dim, patch_size, label, pretrained=weights)


def save_backbone(model: nn.Module, path: str) -> None:
    save_file(model.state_dict(), path)


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="small", help="'small' (default) or a timm model name")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    return run(lambda: build_backbone(args.model, args.weights, settings), args, settings,
               save_backbone=save_backbone)


if __name__ == "__main__":
    main()
