"""Finding where to inject: the transformer blocks of a backbone, and their width.

Known layouts are found automatically (segment-anything `ImageEncoderViT` and `Sam`, timm
`VisionTransformer`-style models, Hugging Face ViT/DINOv2 and SAM vision encoders); anything
else names its blocks with ``blocks=``: an attribute path ("backbone.layers"), the container
module itself, or a list of block modules or of their qualified names.
"""

from __future__ import annotations

from typing import Sequence, Union

from torch import nn

BlocksArg = Union[str, nn.Module, Sequence[nn.Module], Sequence[str], None]

# (attribute path of the block container, which models use it), tried in order.
KNOWN_BLOCK_CONTAINERS: tuple[tuple[str, str], ...] = (
    ("blocks", "segment-anything ImageEncoderViT, timm VisionTransformer"),
    ("encoder.layer", "transformers ViTModel / Dinov2Model"),
    ("layers", "transformers SamVisionEncoder"),
    ("image_encoder.blocks", "segment-anything Sam"),
    ("vision_encoder.layers", "transformers SamVisionModel / SamModel"),
    ("vit.encoder.layer", "transformers ViTForImageClassification"),
    ("dinov2.encoder.layer", "transformers Dinov2ForImageClassification"),
)


def _get_submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _is_container(module: nn.Module | None) -> bool:
    return isinstance(module, (nn.ModuleList, nn.Sequential)) and len(module) > 0


def resolve_blocks(model: nn.Module, blocks: BlocksArg = None) -> list[str]:
    """Qualified names (as in ``model.named_modules()``) of the blocks to adapt, in order.

    Raises:
        ValueError: no blocks could be found, or ``blocks`` names something that is not a
            non-empty list of submodules of ``model``; the message says how to pass ``blocks=``.
    """
    if blocks is None:
        for path, _ in KNOWN_BLOCK_CONTAINERS:
            container = _get_submodule(model, path)
            if _is_container(container):
                return [f"{path}.{name}" for name, _ in container.named_children()]
        known = "; ".join(f"'{path}' ({who})" for path, who in KNOWN_BLOCK_CONTAINERS)
        raise ValueError(
            f"cannot find the transformer blocks of {type(model).__name__}: none of the known "
            f"block lists exists ({known}). Pass them explicitly, e.g. "
            f"inject_uncertainty_adapters(model, config, blocks='backbone.layers') with the "
            f"attribute path of the nn.ModuleList that holds the blocks, or blocks=[module, ...]."
        )
    if isinstance(blocks, str):
        container = _get_submodule(model, blocks)
        if not _is_container(container):
            found = "nothing" if container is None else f"a {type(container).__name__}"
            raise ValueError(
                f"blocks={blocks!r} names {found} in {type(model).__name__}; it must be the "
                f"attribute path of a non-empty nn.ModuleList or nn.Sequential of transformer blocks"
            )
        return [f"{blocks}.{name}" for name, _ in container.named_children()]
    names_by_module = {id(module): name for name, module in model.named_modules()}
    if isinstance(blocks, nn.Module):
        if not _is_container(blocks):
            raise ValueError(
                f"blocks must be a non-empty nn.ModuleList/nn.Sequential, got {type(blocks).__name__}"
            )
        if id(blocks) not in names_by_module:
            raise ValueError("the blocks container passed as blocks= is not a submodule of the model")
        return resolve_blocks(model, names_by_module[id(blocks)])
    items = list(blocks)
    if not items:
        raise ValueError("blocks= is an empty list; give at least one transformer block")
    names = []
    for item in items:
        if isinstance(item, str):
            if _get_submodule(model, item) is None:
                raise ValueError(f"blocks= names {item!r}, which is not a submodule of {type(model).__name__}")
            names.append(item)
        elif isinstance(item, nn.Module) and id(item) in names_by_module:
            names.append(names_by_module[id(item)])
        else:
            raise ValueError(
                f"each entry of blocks= must be a submodule of the model or its qualified name, "
                f"got {type(item).__name__}"
            )
    if len(set(names)) != len(names):
        raise ValueError("blocks= lists the same block more than once")
    return names


def infer_embed_dim(model: nn.Module, first_block: nn.Module) -> int:
    """Width of the block outputs: the first LayerNorm of the first block, else the model's
    ``embed_dim`` (timm) or ``config.hidden_size`` (transformers)."""
    for module in first_block.modules():
        if isinstance(module, nn.LayerNorm) and module.normalized_shape:
            return int(module.normalized_shape[-1])
    embed_dim = getattr(model, "embed_dim", None)
    if isinstance(embed_dim, int):
        return embed_dim
    hidden_size = getattr(getattr(model, "config", None), "hidden_size", None)
    if isinstance(hidden_size, int):
        return hidden_size
    raise ValueError(
        f"cannot infer the embedding width of the blocks of {type(model).__name__} (the first "
        f"block has no nn.LayerNorm); set it: UncertaintyAdapterConfig(embed_dim=...)"
    )
