"""The builders: `build_sam` (a segment-anything `Sam` of any spec, at any input size) and
`build_uncertainty_sam` (UA-SAM on top of it).

The model is made of segment-anything's own modules (ImageEncoderViT, PromptEncoder,
MaskDecoder, TwoWayTransformer), wired as its ``build_sam.py`` wires them, with two choices
left open: the spec (`spec.py`) and the encoder's input size. The prompt encoder's embedding
grid follows the input size, so prompts are given in pixels of the encoder's input.

The image encoder's attention runs through PyTorch's scaled_dot_product_attention by default
(`attention.py`: the same function within float rounding; on a CPU faster at inference and as
fast in training, see benchmarks/RESULTS.md); ``sdpa_attention=False`` keeps segment-anything's.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping

from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

import uncertainty_adapters as ua

from .attention import use_attention
from .checkpoint import load_sam_weights
from .hf_checkpoint import checkpoint_spec
from .model import UncertaintySam
from .spec import SamSpec, get_sam_spec

# segment-anything's normalisation, on the 0-255 scale (ImageNet statistics).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def check_image_size(spec: SamSpec, image_size: int) -> None:
    """Raise ValueError unless ``image_size`` is a positive multiple of the spec's patch size."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if image_size % spec.patch_size:
        lower = max(spec.patch_size, image_size - image_size % spec.patch_size)
        raise ValueError(
            f"image_size {image_size} is not divisible by the patch size {spec.patch_size}; "
            f"use a multiple of {spec.patch_size}, e.g. {lower} or {lower + spec.patch_size}"
        )


def build_sam(
    spec_or_name: SamSpec | str, image_size: int | None = None, sdpa_attention: bool = True, attention: str | None = None
) -> Sam:
    """A randomly initialised segment-anything `Sam` (eval mode, as segment-anything builds it).

    Args:
        spec_or_name: a `SamSpec`, or a registered name ('vit_b', 'vit_l', 'vit_h', 'demo').
        image_size: side S of the square encoder input; None: the spec's ``image_size`` (1024
            for the official variants). Must be divisible by the patch size.
        sdpa_attention: run the image encoder's attention through
            ``F.scaled_dot_product_attention`` (`use_sdpa_attention`); False: segment-anything's
            own attention. Same parameters and state-dict keys either way.
        attention: a kind of `use_attention` ("segment-anything", "sdpa", "fused", "flex");
            when given it replaces ``sdpa_attention``.

    Returns:
        A `Sam` whose image encoder maps (B, 3, S, S) to (B, prompt_embed_dim, S/p, S/p)
        (p = patch size) and whose prompt encoder expects coordinates in pixels of that input.
        Load weights with `load_sam_weights`.
    """
    spec = get_sam_spec(spec_or_name)
    image_size = spec.image_size if image_size is None else image_size
    check_image_size(spec, image_size)
    grid = spec.token_grid(image_size)
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size,
            patch_size=spec.patch_size,
            embed_dim=spec.encoder_embed_dim,
            depth=spec.encoder_depth,
            num_heads=spec.encoder_num_heads,
            mlp_ratio=spec.encoder_mlp_ratio,
            out_chans=spec.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=spec.window_size,
            global_attn_indexes=spec.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=spec.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=spec.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=spec.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=spec.decoder_depth,
                embedding_dim=spec.prompt_embed_dim,
                mlp_dim=spec.decoder_mlp_dim,
                num_heads=spec.decoder_num_heads,
            ),
            transformer_dim=spec.prompt_embed_dim,
            iou_head_depth=spec.iou_head_depth,
            iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    use_attention(sam, attention or ("sdpa" if sdpa_attention else "segment-anything"))
    return sam.eval()


def build_uncertainty_sam(
    spec: SamSpec | str = "vit_b",
    image_size: int | None = None,
    checkpoint: str | Path | None = None,
    adapter_config: ua.UncertaintyAdapterConfig | None = None,
    train_decoder: bool = False,
    latent_heads_kwargs: Mapping[str, Any] | None = None,
    sdpa_attention: bool = True,
    gradient_checkpointing: bool = False,
    attention: str | None = None,
    latent_prompt: bool = False,
    latent_prompt_start: str = "zero",
) -> UncertaintySam:
    """UA-SAM: build SAM, load its weights, then inject the uncertainty adapters.

    Args:
        spec: a `SamSpec` or registered name ('vit_b' is the paper's); for a Hugging Face
            ``checkpoint`` folder its config.json gives the architecture instead.
        image_size: encoder input size S; None: the spec's (1024 for the official variants).
            A checkpoint made at another size is adapted (pos-embed and rel-pos interpolation).
        checkpoint: official-layout SAM weights (``sam_vit_b_01ec64.pth``, ``medsam_vit_b.pth`` or
            ``.safetensors``) or a transformers ``SamModel.save_pretrained`` folder (converted to
            segment-anything's modules, `hf_checkpoint`), loaded before injection; None leaves SAM
            randomly initialised.
        adapter_config: None: the paper's configuration.
        train_decoder: let the mask decoder train too (off in the paper).
        latent_heads_kwargs: extra arguments of `ua.LatentHeads`.
        sdpa_attention, attention: see `build_sam`.
        latent_prompt, latent_prompt_start: z also enters as a dense prompt of the mask decoder, and
            how that prompt's last layer starts (`UncertaintySam`).
        gradient_checkpointing: recompute each encoder block with its adapter during backward
            instead of storing its activations (`UncertaintyModel.gradient_checkpointing_enable`):
            less memory for vit_l / vit_h training, one more encoder forward per step.

    Returns:
        An `UncertaintySam` in eval mode; only adapters, latent heads, the latent dense prompt (with
        ``latent_prompt``) and the decoder (with ``train_decoder``) require grad.
    """
    spec = checkpoint_spec(spec, checkpoint)
    sam = build_sam(spec, image_size, sdpa_attention=sdpa_attention, attention=attention)
    if checkpoint is not None:
        load_sam_weights(sam, checkpoint, spec_name=spec if isinstance(spec, str) else None)
    model = UncertaintySam(sam, adapter_config, train_decoder, latent_heads_kwargs, latent_prompt=latent_prompt,
                           latent_prompt_start=latent_prompt_start)
    if gradient_checkpointing:
        model.encoder.gradient_checkpointing_enable()
    return model.eval()
