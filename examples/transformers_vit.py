"""Uncertainty adapters on a Hugging Face transformers ViT (ViTModel or Dinov2Model), end to end.

The same run as timm_vit_segmentation.py (pretrain or load, freeze, inject, train with the ELBO,
sample K masks per image, score them; the common parts are in vit_example_common.py), on a
transformers backbone built from a config. The backbone's own options keep working after
injection: the head reads ``output_hidden_states`` (the last and a middle layer), and after
training the script asks for ``output_attentions`` and shows that the sampled z changes where the
later blocks attend.

    python examples/transformers_vit.py                  # ViTModel, a few minutes on a CPU
    python examples/transformers_vit.py --arch dinov2    # Dinov2Model
    python examples/transformers_vit.py --quick          # seconds (CI)
    python examples/transformers_vit.py --weights DIR    # from_pretrained(DIR), e.g. a saved ViT
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

import uncertainty_adapters as ua
from vit_example_common import Backbone, MultiRaterTensors, Settings, build_parser, run, settings_from_args, tokens_to_grid

ARCHITECTURES = {"vit": (ViTModel, ViTConfig), "dinov2": (Dinov2Model, Dinov2Config)}


def build_backbone(arch: str, weights: str | None, settings: Settings) -> Backbone:
    """A ViTModel / Dinov2Model from a small config (or ``from_pretrained(weights)``).

    Eager attention, so that ``output_attentions=True`` returns the attention maps (the SDPA
    kernel cannot). The token grid for the head is the final (normed) hidden state concatenated
    with the (normed) hidden state of a middle block, read from ``output_hidden_states``.
    """
    model_class, config_class = ARCHITECTURES[arch]
    extra = {"add_pooling_layer": False} if arch == "vit" else {}
    if weights:
        model = model_class.from_pretrained(weights, attn_implementation="eager", **extra)
    else:
        config = config_class(
            hidden_size=settings.embed_dim, num_hidden_layers=settings.depth,
            num_attention_heads=settings.num_heads, intermediate_size=4 * settings.embed_dim,
            image_size=settings.image_size, patch_size=settings.patch_size, attn_implementation="eager",
        )
        model = model_class(config, **extra)
    config = model.config
    prefix = 1 + getattr(config, "num_register_tokens", 0)  # class token (+ registers)
    grid_size = settings.image_size // config.patch_size
    # ViTModel needs the flag for images of another size than its config; DINOv2 always resamples.
    backbone_kwargs = {"interpolate_pos_encoding": True} if arch == "vit" else {}

    def features(net: nn.Module, images: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        latent = {} if z is None else {"z": z}
        out = net(pixel_values=images, output_hidden_states=True, **backbone_kwargs, **latent)
        middle = out.hidden_states[len(out.hidden_states) // 2]  # after block depth // 2 - 1: B * K rows
        middle = F.layer_norm(middle, middle.shape[-1:])
        return torch.cat([tokens_to_grid(out.last_hidden_state, prefix, grid_size),
                          tokens_to_grid(middle, prefix, grid_size)], dim=1)

    label = (f"transformers {model_class.__name__} (patch {config.patch_size}, width {config.hidden_size}, "
             f"{config.num_hidden_layers} blocks; head reads the last and a middle hidden state)")
    return Backbone(model, features, 2 * config.hidden_size, config.patch_size, label, pretrained=weights)


def save_backbone(model: nn.Module, path: str) -> None:
    model.save_pretrained(path)


@torch.no_grad()
def show_attentions(model: ua.UncertaintyModel, latent: ua.LatentHeads, test: MultiRaterTensors, k: int = 3) -> None:
    """output_attentions and output_hidden_states through the injected model, K hypotheses."""
    images = test.images[:2]
    out = model(pixel_values=images, z=latent.sample(images, k), output_attentions=True, output_hidden_states=True)
    batches = [h.shape[0] for h in out.hidden_states]
    last = out.attentions[-1].view(len(images), k, *out.attentions[-1].shape[1:])  # (B, K, heads, N, N)
    spread = (last - last.mean(dim=1, keepdim=True)).abs().mean().item()
    print(f"output_hidden_states after injection: {len(out.hidden_states)} tensors with batch {batches} "
          f"(the embeddings are per image; from block 0 on, per hypothesis: B * K = {len(images) * k})")
    print(f"output_attentions after injection: {len(out.attentions)} maps of shape "
          f"{tuple(out.attentions[-1].shape)}; the last block's attention moves with z "
          f"(mean |attention - mean over the {k} hypotheses| = {spread:.2e})")


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit", choices=sorted(ARCHITECTURES), help="ViTModel or Dinov2Model")
    args = parser.parse_args(argv)
    settings = settings_from_args(args)
    return run(lambda: build_backbone(args.arch, args.weights, settings), args, settings,
               save_backbone=save_backbone, after_training=show_attentions)


if __name__ == "__main__":
    main()
