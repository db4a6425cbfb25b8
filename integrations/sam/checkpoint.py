"""SAM weights in the official layout: `load_sam_weights` and `save_sam_weights`.

The official checkpoints (``sam_vit_b_01ec64.pth`` and its vit_l / vit_h siblings) are flat state
dicts with keys ``image_encoder.*``, ``prompt_encoder.*`` and ``mask_decoder.*``, made for
1024 x 1024 inputs. This module reads that layout from ``.pth`` files (with
``torch.load(weights_only=True)``, so no code in the file runs) and from ``.safetensors`` files,
and writes it as safetensors. MedSAM's ``medsam_vit_b.pth`` has this layout too. A transformers
``SamModel.save_pretrained`` folder is converted to it on reading (`hf_checkpoint`).

Before any tensor is copied the checkpoint is checked against the model: a different variant
(number of blocks, width) or patch size is named as such, other differences are listed by key.
When the model's input size differs from the checkpoint's, the two size-dependent tensors are
adapted (DESIGN.md section 9):
- ``image_encoder.pos_embed`` (1, g, g, D) is resized bicubically over the g x g token grid;
- ``rel_pos_h`` / ``rel_pos_w`` of the global-attention blocks, (2g - 1, head_dim), are resized
  linearly along the position axis: the interpolation segment-anything's ``get_rel_pos`` would
  otherwise do at every forward pass, done once.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.checkpoint import CheckpointMismatchError

from .hf_checkpoint import check_fits, is_hf_sam_folder, read_hf_sam_checkpoint
from .spec import SAM_SPECS

SAM_PARTS = ("image_encoder", "prompt_encoder", "mask_decoder")
POS_EMBED = "image_encoder.pos_embed"
PATCH_WEIGHT = "image_encoder.patch_embed.proj.weight"
_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_REL_POS_KEY = re.compile(r"^image_encoder\.blocks\.\d+\.attn\.rel_pos_[hw]$")

logger = logging.getLogger(__name__)


def sam_state_dict(sam: nn.Module) -> dict[str, torch.Tensor]:
    """The official-layout state dict of ``sam`` (a segment-anything `Sam`, or any module with
    ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``, such as `UncertaintySam`)."""
    missing = [part for part in SAM_PARTS if not isinstance(getattr(sam, part, None), nn.Module)]
    if missing:
        raise TypeError(
            f"{type(sam).__name__} is not a SAM model: it has no {', '.join(missing)}; pass a "
            f"segment-anything Sam (e.g. from build_sam) or an UncertaintySam"
        )
    return {
        f"{part}.{name}": tensor
        for part in SAM_PARTS
        for name, tensor in getattr(sam, part).state_dict().items()
    }


def read_sam_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official-layout checkpoint (``.pth``/``.pt`` via torch.load with
    ``weights_only=True``, or ``.safetensors``) into a flat dict of CPU tensors. A Hugging Face
    ``SamModel.save_pretrained`` folder is read and converted to that layout (`hf_checkpoint`)."""
    path = Path(path)
    if is_hf_sam_folder(path):
        return read_hf_sam_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SAM checkpoint at {path}")
    if path.suffix == ".safetensors":
        tensors = ckpt.load_tensors(path)
    else:
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise CheckpointMismatchError(
                f"{path} is not a weights-only PyTorch file ({error}). A SAM checkpoint is a plain "
                f"state dict; save one with torch.save(sam.state_dict(), path) or use a .safetensors file"
            ) from error
    if not isinstance(tensors, Mapping):
        raise CheckpointMismatchError(f"{path} holds a {type(tensors).__name__}, not a state dict of SAM weights")
    if not any(isinstance(key, str) and key.startswith("image_encoder.") for key in tensors):
        shown = ", ".join(sorted(map(str, tensors))[:5]) or "none"
        raise CheckpointMismatchError(
            f"{path} is not in the SAM checkpoint layout: expected a flat state dict with keys "
            f"image_encoder.*, prompt_encoder.*, mask_decoder.* (as sam_vit_b_01ec64.pth); its "
            f"keys begin {shown}. Unwrap nested dicts (e.g. checkpoint['model']) and save the inner one."
        )
    not_tensors = sorted(str(key) for key, value in tensors.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise CheckpointMismatchError(f"{path} holds entries that are not tensors: {', '.join(not_tensors[:5])}")
    return dict(tensors)


def load_sam_weights(sam: nn.Module, path: str | Path, spec_name: str | None = None) -> None:
    """Load an official-layout SAM checkpoint into ``sam``, adapting it to the model's input size.

    Args:
        sam: a segment-anything `Sam` (e.g. from `build_sam`) or an `UncertaintySam`.
        path: ``sam_vit_b_01ec64.pth``-style file (``.pth``/``.pt``) or ``.safetensors`` of the
            same layout (SAM, MedSAM), or a transformers ``SamModel.save_pretrained`` folder.
        spec_name: the name of the model's spec, used in error messages; None: named from the
            model's number of blocks and width.

    Raises:
        CheckpointMismatchError: the checkpoint is another variant ("checkpoint is vit_l (24
            blocks, width 1024) but the model is vit_b (12 blocks, width 768)"), has another
            patch size, or differs in other keys or shapes (listed). Nothing is loaded then.
    """
    own = sam_state_dict(sam)
    tensors = read_sam_checkpoint(path)
    if is_hf_sam_folder(path):
        check_fits(sam, path)
    _check_variant(own, tensors, path, spec_name)
    tensors = _resize_to_model(tensors, own)
    ckpt.check_state_dict(own, tensors, f"SAM checkpoint {path}")
    for part in SAM_PARTS:
        prefix = f"{part}."
        getattr(sam, part).load_state_dict(
            {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}, strict=True
        )


def save_sam_weights(sam: nn.Module, path: str | Path) -> None:
    """Write the SAM weights of ``sam`` (no adapters) in the official layout as safetensors,
    atomically. `load_sam_weights` reads the file back, at this or any other input size."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_sam_weights writes safetensors; give a path ending in .safetensors, got {path}")
    tensors = sam_state_dict(sam)
    metadata = {"format": "pt", "layout": "segment-anything", "image_size": str(sam.image_encoder.img_size)}
    ckpt.save_tensors_atomic(path, tensors, metadata)


def _num_blocks(tensors: Mapping[str, torch.Tensor]) -> int:
    indexes = {int(match.group(1)) for key in tensors if (match := _BLOCK_KEY.match(key))}
    return max(indexes) + 1 if indexes else 0


def _width(tensors: Mapping[str, torch.Tensor]) -> int | None:
    if POS_EMBED in tensors:
        return int(tensors[POS_EMBED].shape[-1])
    return int(tensors[PATCH_WEIGHT].shape[0]) if PATCH_WEIGHT in tensors else None


def _patch_size(tensors: Mapping[str, torch.Tensor]) -> int | None:
    return int(tensors[PATCH_WEIGHT].shape[-1]) if PATCH_WEIGHT in tensors else None


def _grid(tensors: Mapping[str, torch.Tensor]) -> int | None:
    return int(tensors[POS_EMBED].shape[1]) if POS_EMBED in tensors else None


def _describe(depth: int, width: int | None, name: str | None = None) -> str:
    if name is None:
        name = next(
            (known for known, spec in SAM_SPECS.items()
             if (spec.encoder_depth, spec.encoder_embed_dim) == (depth, width)),
            "a custom SAM",
        )
    return f"{name} ({depth} blocks, width {width})"


def _check_variant(
    own: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], path: str | Path, spec_name: str | None
) -> None:
    own_variant = (_num_blocks(own), _width(own))
    found_variant = (_num_blocks(found), _width(found))
    if own_variant != found_variant:
        found_text, own_text = _describe(*found_variant), _describe(*own_variant, spec_name)
        raise CheckpointMismatchError(
            f"checkpoint {path} is {found_text} but the model is {own_text}; build the model "
            f"with the checkpoint's variant (build_sam / build_uncertainty_sam with the matching "
            f"spec) or load the checkpoint made for this model"
        )
    own_patch, found_patch = _patch_size(own), _patch_size(found)
    if own_patch != found_patch:
        raise CheckpointMismatchError(
            f"checkpoint {path} uses {found_patch}-pixel patches but the model uses {own_patch}-pixel "
            f"patches; build the model with patch_size={found_patch}"
        )


def _resize_to_model(
    tensors: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Resize pos_embed and the global blocks' rel_pos from the checkpoint's token grid to the
    model's; other tensors pass through unchanged."""
    source_grid, target_grid = _grid(tensors), _grid(own)
    out = dict(tensors)
    if source_grid is None or target_grid is None or source_grid == target_grid:
        return out
    out[POS_EMBED] = resize_pos_embed(tensors[POS_EMBED], target_grid)
    source_len, target_len = 2 * source_grid - 1, 2 * target_grid - 1
    resized = 0
    for key, tensor in tensors.items():
        if (
            _REL_POS_KEY.match(key)
            and key in own
            and tensor.shape[0] == source_len
            and own[key].shape[0] == target_len
        ):
            out[key] = resize_rel_pos(tensor, target_len)
            resized += 1
    logger.info(
        "SAM checkpoint resized from a %dx%d to a %dx%d token grid: pos_embed (bicubic) and %d "
        "global-attention rel_pos tensors (linear)", source_grid, source_grid, target_grid, target_grid, resized
    )
    return out


def resize_pos_embed(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, g, g, D) -> (1, grid, grid, D), bicubic over the token grid (computed in float32)."""
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(), size=(grid, grid), mode="bicubic", align_corners=False
    )
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype).contiguous()


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """(L, head_dim) -> (length, head_dim), linear along the position axis, exactly as
    segment-anything's ``get_rel_pos`` resizes it at run time."""
    resized = F.interpolate(rel_pos.float().reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")
    return resized.reshape(-1, length).permute(1, 0).to(rel_pos.dtype).contiguous()
