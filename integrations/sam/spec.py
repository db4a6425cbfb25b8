"""The shape of a SAM model: `SamSpec`, and the registry `SAM_SPECS` of named variants.

A spec fixes every architectural number of segment-anything's three parts (image encoder,
prompt encoder, mask decoder) except the encoder's input size, which `build_sam` takes
separately so that one checkpoint can run at several sizes. The official variants carry the
values of segment-anything's ``build_sam.py``; ``demo`` is a small model of the same
architecture that trains in minutes on a laptop CPU at 128 x 128 (patch 8: a 16 x 16 token grid).

    spec = get_sam_spec("vit_b")
    SamSpec.from_dict(spec.to_dict()) == spec   # JSON round trip
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

ATTENTION_KIND_NAMES = ("segment-anything", "sdpa", "fused", "flex")
"""The names of the image-encoder attention kinds (`attention.ATTENTION_KINDS` maps each to its
class); here, apart from the kernels, so that the command line lists them without importing
segment-anything."""

@dataclass(frozen=True)
class SamSpec:
    """Every architectural choice of a SAM model, in segment-anything's own vocabulary.

    The image encoder maps (B, 3, S, S) to (B, prompt_embed_dim, S / patch_size, S / patch_size);
    the mask decoder predicts masks at 4x that token grid.
    """

    encoder_embed_dim: int = field(metadata={"help": "Width D of the ViT tokens (vit_b: 768)."})
    encoder_depth: int = field(metadata={"help": "Number of transformer blocks (vit_b: 12)."})
    encoder_num_heads: int = field(metadata={"help": "Attention heads per block (vit_b: 12)."})
    encoder_global_attn_indexes: tuple[int, ...] = field(
        metadata={"help": "Blocks with global attention; the others attend within windows."}
    )
    patch_size: int = field(default=16, metadata={"help": "Side of a square patch in pixels."})
    window_size: int = field(default=14, metadata={"help": "Side of the attention windows, in tokens."})
    encoder_mlp_ratio: float = field(default=4.0, metadata={"help": "MLP width / token width in each block."})
    prompt_embed_dim: int = field(
        default=256, metadata={"help": "Width of the image embedding, the prompt tokens and the decoder."}
    )
    decoder_depth: int = field(default=2, metadata={"help": "Two-way transformer layers in the mask decoder."})
    decoder_mlp_dim: int = field(default=2048, metadata={"help": "MLP width inside the two-way transformer."})
    decoder_num_heads: int = field(default=8, metadata={"help": "Attention heads in the two-way transformer."})
    num_multimask_outputs: int = field(default=3, metadata={"help": "Masks predicted in multimask mode."})
    iou_head_depth: int = field(default=3, metadata={"help": "Layers of the mask-quality (IoU) head."})
    iou_head_hidden_dim: int = field(default=256, metadata={"help": "Hidden width of the IoU head."})
    mask_in_chans: int = field(default=16, metadata={"help": "Hidden channels of the dense (mask) prompt encoder."})
    image_size: int = field(
        default=1024,
        metadata={"help": "Input size the weights were made for (official checkpoints: 1024); "
                          "the default input size of `build_sam`."},
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_global_attn_indexes", tuple(self.encoder_global_attn_indexes))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "encoder_global_attn_indexes":
                continue
            if f.name == "encoder_mlp_ratio":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ValueError(f"SamSpec.encoder_mlp_ratio must be a positive number, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SamSpec.{f.name} must be a positive integer, got {value!r}")
        bad = [i for i in self.encoder_global_attn_indexes
               if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.encoder_depth]
        if bad:
            raise ValueError(
                f"SamSpec.encoder_global_attn_indexes must be block indexes in [0, {self.encoder_depth}), "
                f"got {list(self.encoder_global_attn_indexes)}"
            )
        _check_divisible("encoder_embed_dim", self.encoder_embed_dim, "encoder_num_heads", self.encoder_num_heads)
        # The decoder upsamples to prompt_embed_dim // 8 channels; its cross-attention runs at
        # half width; the random-Fourier positional encoding uses prompt_embed_dim // 2 features.
        _check_divisible("prompt_embed_dim", self.prompt_embed_dim, "8", 8)
        _check_divisible("prompt_embed_dim // 2", self.prompt_embed_dim // 2, "decoder_num_heads", self.decoder_num_heads)
        _check_divisible("mask_in_chans", self.mask_in_chans, "4", 4)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"SamSpec.image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size})"
            )

    def token_grid(self, image_size: int) -> int:
        """Side of the token grid (and of the image embedding) for inputs of ``image_size``."""
        return image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the global-attention indexes as a list)."""
        data = dataclasses.asdict(self)
        data["encoder_global_attn_indexes"] = list(self.encoder_global_attn_indexes)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SamSpec":
        """Build from a dict, refusing keys this version does not know (names them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SamSpec field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)


def _check_divisible(name: str, value: int, by_name: str, by: int) -> None:
    if value % by:
        raise ValueError(f"SamSpec: {name} ({value}) must be divisible by {by_name} ({by})")


SAM_SPECS: Mapping[str, SamSpec] = MappingProxyType({
    "vit_b": SamSpec(
        encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
    ),
    "vit_l": SamSpec(
        encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": SamSpec(
        encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
    ),
    "demo": SamSpec(
        encoder_embed_dim=128, encoder_depth=6, encoder_num_heads=4,
        encoder_global_attn_indexes=(2, 5), patch_size=8, window_size=8,
        prompt_embed_dim=128, decoder_mlp_dim=512, decoder_num_heads=4,
        iou_head_hidden_dim=128, image_size=128,
    ),
})


def get_sam_spec(spec_or_name: SamSpec | str) -> SamSpec:
    """The spec itself, or the registered spec of that name.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(spec_or_name, SamSpec):
        return spec_or_name
    if isinstance(spec_or_name, str) and spec_or_name in SAM_SPECS:
        return SAM_SPECS[spec_or_name]
    raise ValueError(
        f"unknown SAM spec {spec_or_name!r}; known specs: {', '.join(sorted(SAM_SPECS))} "
        f"(or pass a SamSpec)"
    )

