"""The demo's backbone: a small SAM-architecture model pretrained on crisp shapes, shipped or cached.

DESIGN.md section 8: a frozen *random* backbone would prove nothing, and SAM's real weights cannot
be downloaded here. So the whole small SAM (encoder, prompt encoder, mask decoder) is trained to
"segment the object under the point" on crisp, unambiguous synthetic shapes (the stand-in for
SAM's natural-image pretraining); UA-SAM then freezes it and trains only its adapters on
ambiguous lesions.

`ensure_demo_backbone` finds the weights in this order:
1. the weights shipped inside the package (`shipped.py`; ``ua-sam pretrain-backbone``
   made them and regenerates them): always for the demo, else when made with the requested
   `PretrainSettings`;
2. the cache, in SAM's checkpoint layout (safetensors) under a name derived from every setting
   that shapes them;
3. else it pretrains them now (`pretrain`) and caches them.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from safetensors import safe_open
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.data import CrispShapes
from uncertainty_adapters.integrations.pipeline.backbone.pretrain_settings import (
    HELD_OUT_CASES,
    HELD_OUT_SEED,
    PretrainSettings,
)
from uncertainty_adapters.integrations.pipeline.backbone.shipped import shipped_demo_backbone, shipped_record
from uncertainty_adapters.integrations.pipeline.output_dir import OutputFolderError
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME, choose_device
from uncertainty_adapters.integrations.pipeline.training.seeding import seed_everything_for
from uncertainty_adapters.integrations.sam import build_sam, load_sam_weights, save_sam_weights
from uncertainty_adapters.integrations.sam.prompts import Prompts
from uncertainty_adapters.integrations.sam.sam_forward import decode_prompts, normalize_images, segment

logger = logging.getLogger(LOGGER_NAME)

CACHE_ENV = "UA_CACHE_DIR"


def default_cache_dir() -> Path:
    """$UA_CACHE_DIR, else $XDG_CACHE_HOME/uncertainty-adapters, else ~/.cache/uncertainty-adapters."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "uncertainty-adapters"


def ensure_demo_backbone(
    cache_dir: str | Path | None = None,
    cpu: bool = False,
    settings: PretrainSettings | None = None,
) -> tuple[Path, dict]:
    """Path of the pretrained demo SAM weights: shipped, cached, or pretrained now (then cached).

    Args:
        cache_dir: the cache (default: `default_cache_dir`).
        cpu: pretrain on the CPU even when a GPU is present.
        settings: the recipe. None: the weights shipped with the package, whatever recipe their
            record names (the demo's backbone; it runs at any image size, SAM's pos-embeds being
            resized on loading), or, when the package ships none, the default `PretrainSettings`.
            Given settings use the shipped weights only when those were made with exactly them.

    Returns:
        (path to the safetensors file in SAM's checkpoint layout, facts about the pretraining:
        ``settings``, ``held_out_iou``, ``seconds``, ``source`` ("shipped", "cache" or
        "pretrained now"), ``cached``, and what the pretraining recorded besides, e.g. the
        command, the device and the torch version of shipped weights).
    """
    record = shipped_record()
    wanted = asdict(settings) if settings is not None else (record or {}).get("settings")
    shipped = shipped_demo_backbone(wanted) if wanted is not None else None
    if shipped is not None:
        path, record = shipped
        logger.info("demo backbone: using the weights shipped with the package %s", path)
        return path, {**record, "source": "shipped", "cached": True}
    settings = settings or PretrainSettings()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    weights = cache / f"sam-{settings.spec}-{settings.image_size}px-{settings.key()}.safetensors"
    facts_path = weights.with_suffix(".json")
    if weights.is_file() and facts_path.is_file():
        facts = ckpt.read_json(facts_path)
        logger.info("demo backbone: using the cached pretrained weights %s", weights)
        return weights, {**facts, "source": "cache", "cached": True}
    _check_replaceable(weights, facts_path)
    logger.info(
        "demo backbone: pretraining a small SAM on crisp shapes (%d steps of %d images, once; cached in %s)",
        settings.steps, settings.batch_size, cache,
    )
    device = choose_device(cpu)
    facts = pretrain(settings, weights, device)
    ckpt.write_json_atomic(facts_path, facts)
    return weights, {**facts, "source": "pretrained now", "cached": False}


def _check_replaceable(weights: Path, facts: Path) -> None:
    """Refuse to replace a file of the cache's names that this module did not write (the cache
    writes only its own names and deletes nothing)."""
    for path, ours in ((weights, _is_cached_weights), (facts, _is_cached_facts)):
        if path.exists() and not ours(path):
            raise OutputFolderError(
                f"--cache-dir: {path} exists but is not a demo backbone that ua-sam cached; nothing was "
                f"replaced. Move the file away or choose another --cache-dir (or ${CACHE_ENV})"
            )


def _is_cached_weights(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("layout") == "segment-anything"
    except Exception:  # safetensors raises several types for a file that is not safetensors
        return False


def _is_cached_facts(path: Path) -> bool:
    try:
        facts = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(facts, dict) and {"settings", "held_out_iou"} <= set(facts)


def pretrain(
    settings: PretrainSettings,
    path: Path,
    device: torch.device,
    num_workers: int = 0,
    eval_every: int = 0,
    dtype: torch.dtype = torch.float32,
    init: Path | None = None,
) -> dict:
    """Train all of a small SAM on point-prompted crisp shapes; save it to ``path``.

    Args:
        settings: the recipe. path: the ``.safetensors`` file to write (SAM's layout).
        device: where to train. num_workers: DataLoader processes rendering the shapes (the
            items are a pure function of their index, so this does not change the weights).
        eval_every: also measure the held-out IoU every this many steps (0: only at the end).
        dtype: dtype the weights are stored in (float32, float16 or bfloat16); the reported
            ``held_out_iou`` is measured with the stored weights.
        init: the weights (SAM's layout) to start from, needed when ``settings.init`` names
            some; their SHA-256 must be ``settings.init``.

    Returns:
        facts: ``settings``, ``held_out_iou`` (stored weights), ``held_out_iou_float32``,
        ``iou_by_step`` ([step, IoU] pairs), ``seconds``, ``device``, ``torch``, ``dtype``,
        ``parameters`` and the weights' ``sha256``.

    Raises:
        ValueError: ``settings.init`` names starting weights and ``init`` is missing or has
            another SHA-256 (or ``init`` is given while ``settings.init`` is "").
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"the weights are stored as float32, float16 or bfloat16, got {dtype}")
    _check_init(settings, init)
    started = time.time()
    seed_everything_for(settings.seed)
    sam = build_sam(settings.spec, image_size=settings.image_size)
    if init is not None:
        load_sam_weights(sam, init)
    sam = sam.to(device).train()
    data = CrispShapes(length=settings.steps * settings.batch_size, image_size=settings.image_size,
                       seed=settings.seed, targets=settings.targets)
    loader = DataLoader(data, batch_size=settings.batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    optimizer = torch.optim.AdamW(sam.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.lr, total_steps=settings.steps, pct_start=settings.warmup
    )
    loss_fn = DiceCELoss(sigmoid=True)
    trend = []
    bar = tqdm(loader, total=settings.steps, desc="pretrain demo backbone")
    for step, batch in enumerate(bar, start=1):
        logits = _segment_targets(sam, batch["image"].to(device, non_blocking=True), batch["point"].to(device))
        masks = batch["mask"].to(device, non_blocking=True)
        loss = loss_fn(logits, masks.reshape(-1, 1, *masks.shape[-2:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(sam.parameters(), settings.grad_clip)
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if eval_every and step % eval_every == 0 and step < settings.steps:
            trend.append([step, round(held_out_iou(sam, settings, device), 4)])
            logger.info("demo backbone: held-out IoU %.3f after %d steps", trend[-1][1], step)
    bar.close()
    iou_float32 = held_out_iou(sam, settings, device)
    trend.append([settings.steps, round(iou_float32, 4)])
    save_sam_weights(copy.deepcopy(sam).to(dtype).cpu(), path)
    iou = iou_float32
    if dtype != torch.float32:  # measure what is stored, loaded as every user loads it
        load_sam_weights(sam, path)
        iou = held_out_iou(sam, settings, device)
    logger.info("demo backbone: held-out IoU on crisp shapes %.3f after %.0f s", iou, time.time() - started)
    return {
        "settings": asdict(settings),
        "held_out_iou": round(iou, 4),
        "held_out_iou_float32": round(iou_float32, 4),
        "held_out_cases": HELD_OUT_CASES,
        "iou_by_step": trend,
        "seconds": round(time.time() - started, 1),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in sam.parameters()),
        "sha256": ckpt.file_sha256(path),
    }


def _check_init(settings: PretrainSettings, init: Path | None) -> None:
    """Refuse starting weights that are not the ones ``settings.init`` names (by SHA-256)."""
    if not settings.init and init is None:
        return
    if not settings.init:
        raise ValueError(f"starting weights {init} were given but PretrainSettings.init is ''; set it to their SHA-256")
    if init is None:
        raise ValueError(
            f"PretrainSettings.init names starting weights (SHA-256 {settings.init[:12]}...) but none were "
            f"given; pretrain them with `ua-sam pretrain-backbone --init FILE ...` and ship or cache the result"
        )
    found = ckpt.file_sha256(init)
    if found != settings.init:
        raise ValueError(
            f"the starting weights {init} have SHA-256 {found[:12]}..., but PretrainSettings.init is "
            f"{settings.init[:12]}...; give the file the recipe names"
        )


def _segment_targets(sam, images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Logits (B * T, 1, S, S) for T point prompts per image, each image encoded once.

    Args:
        images: (B, 3, S, S). points: (B, 2) (T = 1) or (B, T, 2) pixel (x, y), label 1.
    """
    points = points.reshape(-1, 1, 2)
    targets = points.shape[0] // images.shape[0]
    embeddings = sam.image_encoder(normalize_images(images, sam.pixel_mean, sam.pixel_std))
    prompts = Prompts(points, torch.ones(points.shape[0], 1, dtype=torch.int64, device=points.device))
    return decode_prompts(sam.prompt_encoder, sam.mask_decoder, embeddings.repeat_interleave(targets, 0), prompts)


@torch.no_grad()
def held_out_iou(sam, settings: PretrainSettings, device: torch.device, cases: int = HELD_OUT_CASES) -> float:
    """Mean IoU of the pretrained model on crisp shapes it never saw (a separate seed)."""
    sam.eval()
    data = CrispShapes(length=cases, image_size=settings.image_size, seed=HELD_OUT_SEED)
    scores = []
    for batch in DataLoader(data, batch_size=32):
        masks = batch["mask"].to(device) > 0.5
        points = batch["point"].to(device)[:, None, :]
        predicted = segment(sam, batch["image"].to(device), points, torch.ones(len(points), 1, device=device)) > 0
        intersection = (predicted & masks).flatten(1).sum(-1)
        union = (predicted | masks).flatten(1).sum(-1).clamp_min(1)
        scores.append(intersection / union)
    sam.train()
    return float(torch.cat(scores).float().mean())
