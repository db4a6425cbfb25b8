"""The user verbs of injection (DESIGN.md section 5): `inject_uncertainty_adapters`, `load_adapters`.

    model = inject_uncertainty_adapters(vit, UncertaintyAdapterConfig())   # vit is now frozen
    model.save_adapters("run/adapters")                                   # adapters only
    model = load_adapters(fresh_vit, "run/adapters")                      # same outputs, bit for bit
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from . import checkpoint as ckpt
from .config import UncertaintyAdapterConfig
from .latent_heads import LatentHeads
from .model import FORMAT_VERSION, UncertaintyModel, plan_injection
from .targets import BlocksArg


def inject_uncertainty_adapters(
    model: nn.Module,
    config: UncertaintyAdapterConfig | None = None,
    blocks: BlocksArg = None,
    freeze_backbone: bool = True,
) -> UncertaintyModel:
    """Put an uncertainty adapter behind every transformer block of ``model`` and freeze it.

    Args:
        model: the backbone: a segment-anything ImageEncoderViT or Sam, a timm
            VisionTransformer, a transformers ViTModel/Dinov2Model/SamVisionEncoder, or any
            model whose blocks ``blocks`` names. Token layouts (B, H, W, D) and (B, N, D), with
            or without class/register tokens, are supported.
        config: adapter configuration; defaults to the paper's (`UncertaintyAdapterConfig()`).
        blocks: where the blocks are, for models not recognised automatically: the attribute
            path of their container ("backbone.layers"), the container itself, or a list of
            block modules or qualified names.
        freeze_backbone: freeze every backbone parameter (default). Pass False when another
            method (e.g. PEFT LoRA) already chose what trains in the backbone.

    Returns:
        An `UncertaintyModel` wrapping ``model``; call it as ``model(*args, z=z, **kwargs)``.

    Example:
        >>> import timm, torch
        >>> vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64)
        >>> model = inject_uncertainty_adapters(vit, UncertaintyAdapterConfig(latent_dim=6))
        >>> model(torch.rand(2, 3, 64, 64), z=torch.randn(2, 6)).shape
        torch.Size([2, 1000])
    """
    if isinstance(model, UncertaintyModel):
        raise ValueError("this model already has uncertainty adapters; call unload() first to re-inject")
    if not isinstance(model, nn.Module):
        raise TypeError(f"inject_uncertainty_adapters expects an nn.Module, got {type(model).__name__}")
    config = config if config is not None else UncertaintyAdapterConfig()
    if not isinstance(config, UncertaintyAdapterConfig):
        raise TypeError(f"config must be an UncertaintyAdapterConfig, got {type(config).__name__}")
    plan = plan_injection(model, config, blocks)
    return UncertaintyModel(model, config, plan, freeze_backbone=freeze_backbone)


def load_adapters(model: nn.Module, path: str | Path, freeze_backbone: bool = True) -> UncertaintyModel:
    """Load adapters saved by `UncertaintyModel.save_adapters`.

    Args:
        model: a plain backbone (adapters are injected as saved), or an `UncertaintyModel`
            with the same configuration (its adapter weights are replaced).
        path: the directory holding adapter_config.json and adapter_model.safetensors.
        freeze_backbone: as in `inject_uncertainty_adapters` (only when ``model`` is a plain
            backbone).

    Returns:
        The `UncertaintyModel` (a new one around ``model``, or ``model`` itself when it was one).
        The blocks are found from the saved block names, so ``blocks=`` is never needed.

    Example:
        >>> import tempfile, timm
        >>> def make_vit():
        ...     return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)
        >>> model = inject_uncertainty_adapters(make_vit(), UncertaintyAdapterConfig(latent_dim=6))
        >>> path = tempfile.mkdtemp()
        >>> model.save_adapters(path)  # adapter_config.json + adapter_model.safetensors
        >>> restored = load_adapters(make_vit(), path)  # give it the same pretrained weights in practice
        >>> restored.block_names == model.block_names, restored.config == model.config
        (True, True)

    Raises:
        CheckpointMismatchError: the files do not fit the model (different blocks, width,
            configuration or tensors; the message says what differs) or do not belong together.
            The model is left as it was.
    """
    path = Path(path)
    meta = _read_metadata(path)
    config = UncertaintyAdapterConfig.from_dict(meta["config"])
    weights_path = _checked_weights(path, ckpt.WEIGHTS_NAME, meta.get("weights_sha256"))

    if isinstance(model, UncertaintyModel):
        target, injected = model, False
        # compare the config as read (keys it predates mean their legacy values), not the raw dict
        differences = _differences({**meta, "config": config.to_dict()}, model.adapter_metadata())
    else:
        try:
            plan = plan_injection(model, config, meta["block_names"])
        except ValueError as error:
            raise ckpt.CheckpointMismatchError(
                f"the adapters in {path} were saved for a {meta['backbone']} with blocks "
                f"{_abbreviate(meta['block_names'])}; this {type(model).__name__} does not have them ({error})"
            ) from error
        differences = _differences(meta, {"embed_dim": plan.embed_dim, "num_blocks": len(plan.block_names)})
        target, injected = None, True
    if differences:
        raise ckpt.CheckpointMismatchError(f"the adapters in {path} do not fit this model: {'; '.join(differences)}")

    tensors = ckpt.load_tensors(weights_path)
    if injected:
        target = UncertaintyModel(model, config, plan, freeze_backbone=freeze_backbone)
    try:
        target.load_adapter_state_dict(tensors, source=str(weights_path))
    except ckpt.CheckpointMismatchError:
        if injected:
            target.unload()
        raise
    return target


def _read_metadata(path: Path) -> dict:
    """adapter_config.json of the adapter directory ``path``, checked (`_check_metadata`)."""
    if not path.is_dir():
        raise FileNotFoundError(f"no adapter directory at {path} (expected {ckpt.CONFIG_NAME} and {ckpt.WEIGHTS_NAME})")
    meta = ckpt.read_json(path / ckpt.CONFIG_NAME)
    _check_metadata(meta, path)
    return meta


def _checked_weights(path: Path, name: str, recorded_sha256: str | None) -> Path:
    """``path/name``, after checking it exists and is the file adapter_config.json recorded."""
    weights_path = path / name
    if not weights_path.is_file():
        raise FileNotFoundError(f"{path} has {ckpt.CONFIG_NAME} but no {name}")
    if ckpt.file_sha256(weights_path) != recorded_sha256:
        raise ckpt.CheckpointMismatchError(
            f"{weights_path} is not the file {ckpt.CONFIG_NAME} was written with (hash differs); "
            f"the directory holds parts of two different saves or a damaged file"
        )
    return weights_path


def _check_metadata(meta: object, path: Path) -> None:
    required = ("format_version", "config", "block_names", "embed_dim", "num_blocks", "backbone")
    if not isinstance(meta, dict) or any(key not in meta for key in required):
        raise ckpt.CheckpointMismatchError(
            f"{path / ckpt.CONFIG_NAME} is not an uncertainty-adapters config (needs keys {list(required)})"
        )
    if meta["format_version"] > FORMAT_VERSION:
        raise ckpt.CheckpointMismatchError(
            f"{path} was written by a newer uncertainty-adapters (format {meta['format_version']}, "
            f"this version reads {FORMAT_VERSION}); upgrade the package"
        )


def _differences(saved: dict, current: dict) -> list[str]:
    labels = {
        "embed_dim": "embedding width",
        "num_blocks": "number of blocks",
        "block_names": "blocks",
        "config": "configuration",
    }
    out = []
    for key, label in labels.items():
        if key in current and saved.get(key) != current[key]:
            if key == "config":
                diff = {k: (saved[key].get(k), current[key].get(k)) for k in current[key] if saved[key].get(k) != current[key].get(k)}
                out.append(f"configuration differs (saved vs model): {diff}")
            elif key == "block_names":
                out.append(f"blocks differ: saved {_abbreviate(saved[key])}, model {_abbreviate(current[key])}")
            else:
                out.append(f"{label}: saved {saved.get(key)}, model {current[key]}")
    return out


def _abbreviate(names: list[str]) -> str:
    return f"[{names[0]} .. {names[-1]}] ({len(names)})" if len(names) > 2 else str(list(names))


def load_latent_heads(path: str | Path) -> LatentHeads:
    """Load the latent heads saved with the adapters by ``model.save_adapters(path, latent_heads=heads)``.

    Args:
        path: the adapter directory (adapter_config.json records the heads' constructor
            arguments and the SHA-256 of latent_heads.safetensors).

    Returns:
        A new `LatentHeads` with the saved weights (prior and posterior nets), in eval mode.

    Example:
        >>> import tempfile, torch
        >>> backbone = torch.nn.Sequential(*(torch.nn.Linear(16, 16) for _ in range(2)))
        >>> config = UncertaintyAdapterConfig(latent_dim=4, embed_dim=16)
        >>> model = inject_uncertainty_adapters(backbone, config, blocks=list(backbone))
        >>> heads = LatentHeads(in_channels=3, latent_dim=4, num_filters=(8,), resolution=16)
        >>> path = tempfile.mkdtemp()
        >>> model.save_adapters(path, latent_heads=heads)
        >>> load_latent_heads(path).sample(torch.rand(2, 3, 32, 32), 5).shape   # 5 z per image
        torch.Size([2, 5, 4])

    Raises:
        CheckpointMismatchError: the folder holds adapters saved without latent heads, or a heads
            file that is not the one adapter_config.json was written with.
    """
    path = Path(path)
    meta = _read_metadata(path)
    if "latent_heads" not in meta:
        raise ckpt.CheckpointMismatchError(
            f"the adapters in {path} were saved without latent heads; save both with "
            f"model.save_adapters(path, latent_heads=heads)"
        )
    weights_path = _checked_weights(path, ckpt.LATENT_HEADS_NAME, meta.get("latent_heads_sha256"))
    heads = LatentHeads(**meta["latent_heads"])
    tensors = ckpt.load_tensors(weights_path)
    ckpt.check_state_dict(heads.state_dict(), tensors, str(weights_path))
    heads.load_state_dict(tensors)
    return heads.eval()


def load_adapters_and_latent_heads(
    model: nn.Module, path: str | Path, freeze_backbone: bool = True
) -> tuple[UncertaintyModel, LatentHeads]:
    """``(load_adapters(model, path, freeze_backbone), load_latent_heads(path))``: everything
    ``model.save_adapters(path, latent_heads=heads)`` wrote. The heads are read first, so a
    folder without them leaves ``model`` as it was.

    Example:
        >>> import tempfile, timm
        >>> def make_vit():
        ...     return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2)
        >>> model = inject_uncertainty_adapters(make_vit(), UncertaintyAdapterConfig(latent_dim=6))
        >>> heads = LatentHeads(in_channels=3, latent_dim=6, num_filters=(8,), resolution=16)
        >>> path = tempfile.mkdtemp()
        >>> model.save_adapters(path, latent_heads=heads)
        >>> restored, restored_heads = load_adapters_and_latent_heads(make_vit(), path)
        >>> restored_heads.config == heads.config
        True
    """
    heads = load_latent_heads(path)
    return load_adapters(model, path, freeze_backbone), heads
