"""The demo's backbone: a small SAM-architecture model pretrained on crisp shapes, then cached.

DESIGN.md section 8: a frozen *random* backbone would prove nothing, and SAM's real weights cannot
be downloaded here. So the demo first trains the whole small SAM (encoder, prompt encoder, mask
decoder) to "segment the object under the point" on crisp, unambiguous synthetic shapes (the
stand-in for SAM's natural-image pretraining). The weights are cached in SAM's checkpoint layout
(safetensors) under a name derived from every setting that shapes them, so the second run skips
this stage; UA-SAM then freezes them and trains only its adapters on ambiguous lesions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from monai.losses import DiceCELoss
from safetensors import safe_open
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.data import CrispShapes
from uncertainty_adapters.integrations.sam import build_sam, get_sam_spec, save_sam_weights
from uncertainty_adapters.integrations.sam.segment import segment

from .output_dir import OutputFolderError
from .seeding import seed_everything_for

logger = logging.getLogger(__name__)

CACHE_ENV = "UA_CACHE_DIR"
_HELD_OUT_SEED = 10_007


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that shapes the pretrained weights (and so the cache key)."""

    spec: str = "demo"
    image_size: int = 128
    steps: int = 400
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.01
    seed: int = 0
    data: str = "crisp-shapes-v1"

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "arch": get_sam_spec(self.spec).to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$UA_CACHE_DIR, else $XDG_CACHE_HOME/uncertainty-adapters, else ~/.cache/uncertainty-adapters."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "uncertainty-adapters"


def ensure_demo_backbone(
    image_size: int = 128,
    cache_dir: str | Path | None = None,
    cpu: bool = False,
    settings: PretrainSettings | None = None,
) -> tuple[Path, dict]:
    """Path of the pretrained demo SAM weights, pretraining them first if not cached.

    Returns:
        (path to the safetensors file in SAM's checkpoint layout, facts about the pretraining:
        settings, held-out IoU, seconds, whether it came from the cache).
    """
    settings = settings or PretrainSettings(image_size=image_size)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    weights = cache / f"sam-{settings.spec}-{settings.image_size}px-{settings.key()}.safetensors"
    facts_path = weights.with_suffix(".json")
    if weights.is_file() and facts_path.is_file():
        facts = ckpt.read_json(facts_path)
        logger.info("demo backbone: using the cached pretrained weights %s", weights)
        return weights, {**facts, "cached": True}
    _check_replaceable(weights, facts_path)
    logger.info(
        "demo backbone: pretraining a small SAM on crisp shapes (%d steps, once; cached in %s)",
        settings.steps, cache,
    )
    device = torch.device("cuda" if torch.cuda.is_available() and not cpu else "cpu")
    facts = pretrain(settings, weights, device)
    ckpt.write_json_atomic(facts_path, facts)
    return weights, {**facts, "cached": False}


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


def pretrain(settings: PretrainSettings, path: Path, device: torch.device) -> dict:
    """Train all of a small SAM on point-prompted crisp shapes; save it to ``path``."""
    started = time.time()
    seed_everything_for(settings.seed)
    sam = build_sam(settings.spec, image_size=settings.image_size).to(device).train()
    data = CrispShapes(length=settings.steps * settings.batch_size, image_size=settings.image_size, seed=settings.seed)
    loader = DataLoader(data, batch_size=settings.batch_size, shuffle=False)
    optimizer = torch.optim.AdamW(sam.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=settings.steps, pct_start=0.1)
    loss_fn = DiceCELoss(sigmoid=True)
    bar = tqdm(loader, total=settings.steps, desc="pretrain demo backbone")
    for step, batch in enumerate(bar):
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        logits = segment(sam, images, batch["point"].to(device)[:, None, :], torch.ones(len(images), 1, device=device))
        loss = loss_fn(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    iou = held_out_iou(sam, settings, device)
    logger.info("demo backbone: held-out IoU on crisp shapes %.3f after %.0f s", iou, time.time() - started)
    save_sam_weights(sam.cpu(), path)
    return {"settings": asdict(settings), "held_out_iou": round(iou, 4), "seconds": round(time.time() - started, 1)}


@torch.no_grad()
def held_out_iou(sam, settings: PretrainSettings, device: torch.device, cases: int = 128) -> float:
    """Mean IoU of the pretrained model on crisp shapes it never saw (a separate seed)."""
    sam.eval()
    data = CrispShapes(length=cases, image_size=settings.image_size, seed=_HELD_OUT_SEED)
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
