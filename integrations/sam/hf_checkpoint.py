"""Hugging Face transformers SAM checkpoints (`SamModel.save_pretrained` folders) in the
segment-anything layout, and back.

A transformers ``SamModel`` folder holds ``config.json`` and ``model.safetensors`` (or
``model.safetensors.index.json`` with shards, or a legacy ``pytorch_model.bin``). Its weights are
the same tensors as segment-anything's under other names, so they are converted on load into the
official layout (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``) and the model is
built from segment-anything's own modules: SDPA attention, adapter injection, the batched K-sample
forward and the predictor all work unchanged (docs/guide.md, "Use your SAM").

The mapping (transformers name -> segment-anything name):

    vision_encoder.patch_embed.projection.*     image_encoder.patch_embed.proj.*
    vision_encoder.layers.N.layer_norm1/2.*     image_encoder.blocks.N.norm1/2.*
    vision_encoder.layers.N.{attn,mlp}.*        image_encoder.blocks.N.{attn,mlp}.*  (qkv, proj, rel_pos_h/w, lin1/2)
    vision_encoder.neck.{conv1,layer_norm1,conv2,layer_norm2}.*   image_encoder.neck.{0,1,2,3}.*
    shared_image_embedding.positional_embedding prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    prompt_encoder.point_embed.N.*              prompt_encoder.point_embeddings.N.*
    prompt_encoder.mask_embed.{conv1,layer_norm1,conv2,layer_norm2,conv3}.*   prompt_encoder.mask_downscaling.{0,1,3,4,6}.*
    mask_decoder.transformer.layers.N.layer_normK.*   mask_decoder.transformer.layers.N.normK.*
    mask_decoder.transformer.layer_norm_final_attn.*  mask_decoder.transformer.norm_final_attn.*
    mask_decoder.{upscale_conv1,upscale_layer_norm,upscale_conv2}.*   mask_decoder.output_upscaling.{0,1,3}.*
    mask_decoder.<mlp>.{proj_in, layers.K, proj_out}.*  mask_decoder.<mlp>.layers.{0, K+1, last}.*
        (<mlp>: output_hypernetworks_mlps.N and iou_prediction_head)
    every other key                              the same name

``prompt_encoder.shared_embedding.positional_embedding`` is tied to
``shared_image_embedding.positional_embedding`` in transformers and is read only when the latter
is missing. The architecture comes from ``config.json`` (`hf_sam_spec`), read with transformers'
own ``SamConfig`` (so defaults and older config files are read as transformers reads them).

Nothing is downloaded: `resolve_sam_checkpoint` takes a local file or folder, or a hub name
that is already in the local Hugging Face cache, and otherwise says how to download it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.checkpoint import CheckpointMismatchError

from .spec import SamSpec, get_sam_spec

__all__ = [
    "checkpoint_sha256",
    "checkpoint_spec",
    "hf_sam_config",
    "hf_sam_spec",
    "hf_to_sam_state_dict",
    "is_hf_sam_folder",
    "read_hf_sam_checkpoint",
    "resolve_sam_checkpoint",
    "sam_to_hf_state_dict",
]

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TIED_POSITIONAL = "prompt_encoder.shared_embedding.positional_embedding"

# (transformers prefix, segment-anything prefix); {n} and {m} stand for block / layer numbers.
# Order matters: the first rule whose prefix matches wins, in either direction.
_RENAMES: tuple[tuple[str, str], ...] = (
    ("vision_encoder.patch_embed.projection.", "image_encoder.patch_embed.proj."),
    ("vision_encoder.pos_embed", "image_encoder.pos_embed"),
    ("vision_encoder.layers.{n}.layer_norm{m}.", "image_encoder.blocks.{n}.norm{m}."),
    ("vision_encoder.layers.{n}.", "image_encoder.blocks.{n}."),
    ("vision_encoder.neck.conv1.", "image_encoder.neck.0."),
    ("vision_encoder.neck.layer_norm1.", "image_encoder.neck.1."),
    ("vision_encoder.neck.conv2.", "image_encoder.neck.2."),
    ("vision_encoder.neck.layer_norm2.", "image_encoder.neck.3."),
    ("shared_image_embedding.positional_embedding", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    ("prompt_encoder.point_embed.{n}.", "prompt_encoder.point_embeddings.{n}."),
    ("prompt_encoder.mask_embed.conv1.", "prompt_encoder.mask_downscaling.0."),
    ("prompt_encoder.mask_embed.layer_norm1.", "prompt_encoder.mask_downscaling.1."),
    ("prompt_encoder.mask_embed.conv2.", "prompt_encoder.mask_downscaling.3."),
    ("prompt_encoder.mask_embed.layer_norm2.", "prompt_encoder.mask_downscaling.4."),
    ("prompt_encoder.mask_embed.conv3.", "prompt_encoder.mask_downscaling.6."),
    ("prompt_encoder.not_a_point_embed.", "prompt_encoder.not_a_point_embed."),
    ("prompt_encoder.no_mask_embed.", "prompt_encoder.no_mask_embed."),
    ("mask_decoder.transformer.layers.{n}.layer_norm{m}.", "mask_decoder.transformer.layers.{n}.norm{m}."),
    ("mask_decoder.transformer.layer_norm_final_attn.", "mask_decoder.transformer.norm_final_attn."),
    ("mask_decoder.transformer.", "mask_decoder.transformer."),
    ("mask_decoder.upscale_conv1.", "mask_decoder.output_upscaling.0."),
    ("mask_decoder.upscale_layer_norm.", "mask_decoder.output_upscaling.1."),
    ("mask_decoder.upscale_conv2.", "mask_decoder.output_upscaling.3."),
    ("mask_decoder.iou_token.", "mask_decoder.iou_token."),
    ("mask_decoder.mask_tokens.", "mask_decoder.mask_tokens."),
)
# The decoder's MLPs: transformers names their layers proj_in, layers.K, proj_out;
# segment-anything numbers them layers.0 .. layers.(depth - 1).
_HF_MLP = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(proj_in|layers\.(\d+)|proj_out)\.(\w+)$"
)
_SAM_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(\w+)$")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

logger = logging.getLogger(__name__)


def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(prefix).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{m\}", r"(?P<m>\d+)"))


_HF_TO_SAM = tuple((_pattern(hf), sam) for hf, sam in _RENAMES)
_SAM_TO_HF = tuple((_pattern(sam), hf) for hf, sam in _RENAMES)


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, target in rules:
        match = pattern.match(key)
        if match:
            return target.format(**match.groupdict()) + key[match.end():]
    return None


def _rename_all(
    tensors: Mapping[str, torch.Tensor],
    mlp_name: Callable[[str], str | None],
    rules: tuple[tuple[re.Pattern[str], str], ...],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Every key renamed: by ``mlp_name`` (the mask decoder's MLP layers, None for other keys),
    else by ``rules``. Returns the renamed tensors and the keys neither could name."""
    out, unknown = {}, []
    for key, tensor in tensors.items():
        name = mlp_name(key) or _rename(key, rules)
        if name is None:
            unknown.append(key)
        else:
            out[name] = tensor
    return out, unknown


def hf_to_sam_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ``SamModel`` state dict -> the segment-anything layout (same tensors).

    Raises:
        CheckpointMismatchError: keys that a transformers SamModel does not have (listed).
    """
    tensors = dict(tensors)
    tied = tensors.pop(TIED_POSITIONAL, None)
    if tied is not None:
        tensors.setdefault("shared_image_embedding.positional_embedding", tied)
    hidden_layers: dict[str, set[int]] = {}
    for key in tensors:
        match = _HF_MLP.match(key)
        if match and match.group(3) is not None:
            hidden_layers.setdefault(match.group(1), set()).add(int(match.group(3)))

    def mlp_name(key: str) -> str | None:
        match = _HF_MLP.match(key)
        if not match:
            return None
        prefix, layer, index, leaf = match.groups()
        position = {"proj_in": 0, "proj_out": len(hidden_layers.get(prefix, ())) + 1}.get(layer)
        return f"{prefix}.layers.{int(index) + 1 if position is None else position}.{leaf}"

    out, unknown = _rename_all(tensors, mlp_name, _HF_TO_SAM)
    if unknown:
        raise CheckpointMismatchError(
            f"not a transformers SamModel checkpoint: {len(unknown)} key(s) that SamModel does not have, "
            f"e.g. {', '.join(sorted(unknown)[:5])}. SAM-HQ, SAM 2 and other relatives have other "
            f"modules; convert those to segment-anything's layout first"
        )
    return out


def sam_to_hf_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `hf_to_sam_state_dict`: segment-anything layout -> transformers ``SamModel``
    names (the tied ``prompt_encoder.shared_embedding`` copy left out, as ``save_pretrained`` does).

    Raises:
        CheckpointMismatchError: keys outside segment-anything's Sam (listed).
    """
    depths: dict[str, int] = {}
    for key in tensors:
        match = _SAM_MLP.match(key)
        if match:
            depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)

    def mlp_name(key: str) -> str | None:
        match = _SAM_MLP.match(key)
        if not match:
            return None
        prefix, index, leaf = match.group(1), int(match.group(2)), match.group(3)
        layer = "proj_in" if index == 0 else "proj_out" if index == depths[prefix] - 1 else f"layers.{index - 1}"
        return f"{prefix}.{layer}.{leaf}"

    out, unknown = _rename_all(tensors, mlp_name, _SAM_TO_HF)
    if unknown:
        raise CheckpointMismatchError(
            f"{len(unknown)} key(s) are not part of segment-anything's Sam, e.g. {', '.join(sorted(unknown)[:5])}"
        )
    return out


def is_hf_sam_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder with ``config.json`` (a ``save_pretrained`` folder)."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def resolve_sam_checkpoint(text: str | Path, option: str = "--sam-checkpoint") -> Path:
    """Where SAM weights named by the user are: a local file, a local ``save_pretrained`` folder,
    or the local Hugging Face cache's copy of a hub model (``facebook/sam-vit-base``). Nothing is
    downloaded.

    Raises:
        FileNotFoundError: nothing there; for a hub name that is not cached, the message says how
            to download it on a connected machine. Also for a folder without ``config.json``.
    """
    path = Path(text)
    if path.is_file():
        return path
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"{option} {path} is a folder without {CONFIG_FILE}: a Hugging Face SAM folder is what "
                f"SamModel.save_pretrained(folder) writes ({CONFIG_FILE} and model.safetensors); for "
                f"segment-anything weights pass the .pth file itself"
            )
        return path
    name = str(text)
    if _HUB_NAME.match(name) and path.suffix not in (".pth", ".pt", ".safetensors", ".bin"):
        cached = _cached_snapshot(name)
        if cached is not None:
            logger.info("%s %s: the copy in the local Hugging Face cache, %s", option, name, cached)
            return cached
        raise FileNotFoundError(
            f"{option} {name} is not a local file or folder, and the local Hugging Face cache has no "
            f"copy of the hub model {name} (nothing is downloaded here). On a machine with internet, run "
            f"`hf download {name} --local-dir {name.split('/')[-1]}` (or in Python: "
            f"SamModel.from_pretrained('{name}').save_pretrained('{name.split('/')[-1]}')), copy the folder "
            f"here and pass {option} {name.split('/')[-1]}"
        )
    raise FileNotFoundError(f"{option} {path} does not exist")


def _cached_snapshot(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError):
        return None
    return folder if is_hf_sam_folder(folder) else None


def _sam_config(folder: Path) -> Any:
    """transformers' SamConfig of the folder (local files only)."""
    try:
        from transformers import SamConfig
    except ImportError as error:
        raise ImportError(
            f"{folder} is a Hugging Face model folder; reading its config.json needs transformers: "
            f"pip install 'uncertainty-adapters[transformers]'"
        ) from error
    model_type = ckpt.read_json(folder / CONFIG_FILE).get("model_type")
    if model_type != "sam":
        raise CheckpointMismatchError(
            f"{folder / CONFIG_FILE} describes a {model_type!r} model, not a transformers SamModel "
            f"(model_type 'sam'); only SAM (ViT-B/L/H and checkpoints of the same architecture, e.g. "
            f"MedSAM) is supported"
        )
    return SamConfig.from_pretrained(folder, local_files_only=True)


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise CheckpointMismatchError(f"{name} {list(value)} is not square; segment-anything's SAM needs a square one")
        value = value[0]
    return int(value)


def hf_sam_spec(folder: str | Path) -> SamSpec:
    """The `SamSpec` of a transformers SAM folder, from its ``config.json``.

    Raises:
        CheckpointMismatchError: settings segment-anything's modules cannot reproduce (named),
            e.g. ``use_rel_pos: false`` or a decoder width unlike the encoder's output width.
    """
    folder = Path(folder)
    config = _sam_config(folder)
    vision, prompt, decoder = config.vision_config, config.prompt_encoder_config, config.mask_decoder_config
    width = int(vision.output_channels)
    required = {
        "vision_config.use_abs_pos": (vision.use_abs_pos, True),
        "vision_config.use_rel_pos": (vision.use_rel_pos, True),
        "vision_config.qkv_bias": (vision.qkv_bias, True),
        "vision_config.num_channels": (vision.num_channels, 3),
        "vision_config.hidden_act": (vision.hidden_act, "gelu"),
        "vision_config.layer_norm_eps": (vision.layer_norm_eps, 1e-6),
        "vision_config.num_pos_feats": (vision.num_pos_feats, width // 2),
        "prompt_encoder_config.hidden_size": (prompt.hidden_size, width),
        "prompt_encoder_config.hidden_act": (prompt.hidden_act, "gelu"),
        "prompt_encoder_config.num_point_embeddings": (prompt.num_point_embeddings, 4),
        "prompt_encoder_config.layer_norm_eps": (prompt.layer_norm_eps, 1e-6),
        "mask_decoder_config.hidden_size": (decoder.hidden_size, width),
        "mask_decoder_config.hidden_act": (decoder.hidden_act, "relu"),
        "mask_decoder_config.attention_downsample_rate": (decoder.attention_downsample_rate, 2),
        "mask_decoder_config.layer_norm_eps": (decoder.layer_norm_eps, 1e-6),
    }
    unsupported = [f"{name} is {found!r} (segment-anything: {wanted!r})"
                   for name, (found, wanted) in required.items() if found != wanted]
    if unsupported:
        raise CheckpointMismatchError(
            f"{folder / CONFIG_FILE}: segment-anything's SAM modules cannot run this model: {'; '.join(unsupported)}"
        )
    hidden = int(vision.hidden_size)
    mlp_dim = int(vision.mlp_dim) if getattr(vision, "mlp_dim", None) else int(hidden * vision.mlp_ratio)
    return SamSpec(
        encoder_embed_dim=hidden,
        encoder_depth=int(vision.num_hidden_layers),
        encoder_num_heads=int(vision.num_attention_heads),
        encoder_global_attn_indexes=tuple(int(i) for i in vision.global_attn_indexes),
        patch_size=_square(vision.patch_size, "vision_config.patch_size"),
        window_size=int(vision.window_size),
        encoder_mlp_ratio=mlp_dim / hidden,
        prompt_embed_dim=width,
        decoder_depth=int(decoder.num_hidden_layers),
        decoder_mlp_dim=int(decoder.mlp_dim),
        decoder_num_heads=int(decoder.num_attention_heads),
        num_multimask_outputs=int(decoder.num_multimask_outputs),
        iou_head_depth=int(decoder.iou_head_depth),
        iou_head_hidden_dim=int(decoder.iou_head_hidden_dim),
        mask_in_chans=int(prompt.mask_input_channels),
        image_size=_square(vision.image_size, "vision_config.image_size"),
    )


def hf_sam_config(spec: SamSpec, image_size: int | None = None) -> Any:
    """A transformers ``SamConfig`` with the architecture of ``spec`` (the inverse of
    `hf_sam_spec`), for ``image_size`` inputs (None: the spec's)."""
    from transformers import SamConfig

    size = spec.image_size if image_size is None else image_size
    mlp_dim = int(spec.encoder_embed_dim * spec.encoder_mlp_ratio)
    return SamConfig(
        vision_config=dict(
            hidden_size=spec.encoder_embed_dim, num_hidden_layers=spec.encoder_depth,
            num_attention_heads=spec.encoder_num_heads, global_attn_indexes=list(spec.encoder_global_attn_indexes),
            patch_size=spec.patch_size, window_size=spec.window_size, mlp_ratio=mlp_dim / spec.encoder_embed_dim,
            mlp_dim=mlp_dim, output_channels=spec.prompt_embed_dim, image_size=size,
            num_pos_feats=spec.prompt_embed_dim // 2,
        ),
        prompt_encoder_config=dict(
            hidden_size=spec.prompt_embed_dim, image_size=size, patch_size=spec.patch_size,
            mask_input_channels=spec.mask_in_chans,
        ),
        mask_decoder_config=dict(
            hidden_size=spec.prompt_embed_dim, num_hidden_layers=spec.decoder_depth, mlp_dim=spec.decoder_mlp_dim,
            num_attention_heads=spec.decoder_num_heads, num_multimask_outputs=spec.num_multimask_outputs,
            iou_head_depth=spec.iou_head_depth, iou_head_hidden_dim=spec.iou_head_hidden_dim,
        ),
    )


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    single, index, legacy = (folder / name for name in WEIGHT_FILES)
    if single.is_file():
        return ckpt.load_tensors(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks the weight shard(s) {', '.join(missing)} named in {index.name}")
        return {key: value for name in shards for key, value in ckpt.load_tensors(folder / name).items()}
    if legacy.is_file():
        return dict(torch.load(legacy, map_location="cpu", weights_only=True))
    raise FileNotFoundError(
        f"{folder} has {CONFIG_FILE} but no weights: expected {' or '.join(WEIGHT_FILES)} "
        f"(what SamModel.save_pretrained writes)"
    )


def read_hf_sam_checkpoint(folder: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a transformers SAM folder, in the segment-anything layout (CPU tensors, in
    the dtype they were saved in). The config is checked first (`hf_sam_spec`)."""
    folder = Path(folder)
    hf_sam_spec(folder)
    return hf_to_sam_state_dict(_read_weights(folder))


def check_fits(sam: nn.Module, folder: str | Path) -> None:
    """Raise CheckpointMismatchError when the settings of ``folder``'s config that no tensor shape
    shows (attention heads, window size, global blocks) differ from ``sam``'s (a segment-anything
    Sam or an UncertaintySam); the shapes are checked when the weights load."""
    spec = hf_sam_spec(folder)
    blocks = list(sam.image_encoder.blocks)
    own = {
        "encoder_num_heads": blocks[0].attn.num_heads,
        "encoder_global_attn_indexes": tuple(i for i, block in enumerate(blocks) if block.window_size == 0),
        "window_size": next((block.window_size for block in blocks if block.window_size), spec.window_size),
        "decoder_num_heads": sam.mask_decoder.transformer.layers[0].self_attn.num_heads
        if len(sam.mask_decoder.transformer.layers) else spec.decoder_num_heads,
    }
    if len(blocks) != spec.encoder_depth:
        return  # a different variant: load_sam_weights names both variants
    different = [f"{name}: checkpoint {getattr(spec, name)!r}, model {value!r}"
                 for name, value in own.items() if getattr(spec, name) != value]
    if different:
        raise CheckpointMismatchError(
            f"the Hugging Face SAM in {folder} differs from the model in settings its weights do not show "
            f"({'; '.join(different)}); build the model with hf_sam_spec({str(folder)!r})"
        )


def checkpoint_spec(spec: SamSpec | str, checkpoint: str | Path | None) -> SamSpec | str:
    """The architecture to build for ``checkpoint``: a Hugging Face folder's own (its config.json
    says everything), otherwise ``spec`` (a segment-anything file's tensors do not show the
    number of attention heads, so the caller names the variant)."""
    if checkpoint is None or not is_hf_sam_folder(checkpoint):
        return spec
    own = hf_sam_spec(checkpoint)
    if dataclasses.replace(get_sam_spec(spec), image_size=own.image_size) != own:
        logger.info("%s: built with the architecture of its config.json, not %s's", checkpoint,
                    spec if isinstance(spec, str) else "the given spec")
    return own


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a SAM checkpoint file, or of a Hugging Face folder's config and weight files."""
    path = Path(path)
    if path.is_file():
        return ckpt.file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.name == CONFIG_FILE or p.suffix in (".safetensors", ".bin")):
        digest.update(file.name.encode() + b"\0" + ckpt.file_sha256(file).encode())
    return digest.hexdigest()
