"""Tiny backbones of every supported family, built in milliseconds on the CPU, and a stand-in for
training adapters: the tests' shared helpers (`from .backbones import Backbone`)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

import uncertainty_adapters as ua


def tiny_sam_encoder(depth: int = 3, embed_dim: int = 64, img_size: int = 64) -> nn.Module:
    """A segment-anything ImageEncoderViT: (B, 3, 64, 64) -> (B, 32, 8, 8); tokens (B, H, W, D)."""
    from segment_anything.modeling import ImageEncoderViT

    return ImageEncoderViT(
        img_size=img_size,
        patch_size=8,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=2,
        out_chans=32,
        use_rel_pos=True,
        window_size=4,
        global_attn_indexes=(depth - 1,),
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )


def tiny_timm_vit(depth: int = 2, embed_dim: int = 64, reg_tokens: int = 2) -> nn.Module:
    """A timm VisionTransformer with a class token and register tokens; tokens (B, N, D)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=32, patch_size=8, embed_dim=embed_dim, depth=depth, num_heads=2, num_classes=5, reg_tokens=reg_tokens
    )


def tiny_hf_vit(depth: int = 2, embed_dim: int = 64) -> nn.Module:
    """A transformers ViTModel (class token, (B, N, D) tokens)."""
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=embed_dim, num_hidden_layers=depth, num_attention_heads=2,
        intermediate_size=2 * embed_dim, image_size=32, patch_size=8,
    )
    return ViTModel(config, add_pooling_layer=False)


def tiny_hf_sam_vision(depth: int = 2, embed_dim: int = 64) -> nn.Module:
    """The SAM vision model of transformers ((B, H, W, D) tokens, blocks at vision_encoder.layers)."""
    from transformers import SamVisionConfig, SamVisionModel

    config = SamVisionConfig(
        hidden_size=embed_dim, num_hidden_layers=depth, num_attention_heads=2, image_size=64,
        patch_size=8, output_channels=32, window_size=4, global_attn_indexes=[depth - 1], mlp_dim=2 * embed_dim,
    )
    model = SamVisionModel(config)
    # transformers initialises the neck convolutions near 1e-10, which would hide every
    # difference in the output; a trained checkpoint has ordinary weights.
    for module in model.vision_encoder.neck.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    return model


class CustomBackbone(nn.Module):
    """A ViT the library does not know: its blocks live at ``trunk.stages``."""

    def __init__(self, embed_dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, embed_dim, kernel_size=8, stride=8)
        self.trunk = nn.Module()
        self.trunk.stages = nn.ModuleList(
            nn.TransformerEncoderLayer(embed_dim, nhead=2, dim_feedforward=2 * embed_dim, batch_first=True)
            for _ in range(depth)
        )
        self.head = nn.Linear(embed_dim, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(images).flatten(2).transpose(1, 2)
        for stage in self.trunk.stages:
            tokens = stage(tokens)
        return self.head(tokens.mean(dim=1))


def _call_pixels(model, x, **kw):
    return model(x, **kw)


def _call_hf(model, x, **kw):
    return model(pixel_values=x, **kw)


def _hf_vit_output(out):
    return out.last_hidden_state


def _hf_sam_output(out):
    return out.last_hidden_state


# name -> (factory, input size, call, output -> tensor, blocks=)
BACKBONES = {
    "sam": (tiny_sam_encoder, 64, _call_pixels, lambda out: out, None),
    "timm": (tiny_timm_vit, 32, _call_pixels, lambda out: out, None),
    "hf_vit": (tiny_hf_vit, 32, _call_hf, _hf_vit_output, None),
    "hf_sam": (tiny_hf_sam_vision, 64, _call_hf, _hf_sam_output, None),
    "custom": (CustomBackbone, 32, _call_pixels, lambda out: out, "trunk.stages"),
}


class Backbone:
    """A tiny backbone plus how to call it and read its main output tensor."""

    def __init__(self, name: str, seed: int = 0) -> None:
        factory, self.size, self._call, self._read, self.blocks = BACKBONES[name]
        self.name = name
        torch.manual_seed(seed)
        self.model = factory().eval()

    def images(self, batch: int, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.rand(batch, 3, self.size, self.size, generator=generator)

    def run(self, model: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self._read(self._call(model, x, **kwargs))

    def inject(self, config: ua.UncertaintyAdapterConfig | None = None, **kwargs) -> ua.UncertaintyModel:
        return ua.inject_uncertainty_adapters(self.model, config, blocks=self.blocks, **kwargs)


def perturb_adapters(model: ua.UncertaintyModel, seed: int = 0, scale: float = 0.2) -> None:
    """Stand-in for training: move every adapter weight away from its (identity) init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.adapter_state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)
