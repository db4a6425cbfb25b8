"""The demo backbone's weights shipped inside the package, with the record of how they were made.

``weights/demo-sam-128px.safetensors`` holds the pretrained demo SAM in SAM's checkpoint layout;
``weights/demo-sam-128px.json`` is the record ``ua-sam pretrain-backbone`` wrote next to it: the
exact command, the `PretrainSettings`, the held-out IoU on crisp shapes (measured with the stored
weights), the IoU along the way, seconds, device, torch version, storage dtype and the file's
SHA-256. Running the recorded command again regenerates the file (up to the GPU's arithmetic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.pipeline.backbone.pretrain_settings import settings_from_record

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "demo-sam-128px.safetensors"


def shipped_record(weights: Path = SHIPPED_WEIGHTS) -> dict[str, Any] | None:
    """The pretraining record of the shipped weights, or None when the package ships none."""
    record = weights.with_suffix(".json")
    if not (weights.is_file() and record.is_file()):
        return None
    return ckpt.read_json(record)


def shipped_demo_backbone(
    settings: Mapping[str, Any], weights: Path = SHIPPED_WEIGHTS
) -> tuple[Path, dict[str, Any]] | None:
    """(weights, record) when the package ships weights made with exactly ``settings``, else None.

    Args:
        settings: a `PretrainSettings` as a dict (``dataclasses.asdict``).

    Raises:
        CheckpointMismatchError: the shipped file's SHA-256 is not the recorded one (a damaged
            installation); reinstall the package or regenerate the file with the recorded command.
    """
    record = shipped_record(weights)
    if record is None or settings_from_record(record["settings"]) != settings_from_record(dict(settings)):
        return None
    found = ckpt.file_sha256(weights)
    if found != record.get("sha256"):
        raise CheckpointMismatchError(
            f"the shipped demo backbone {weights} is damaged (SHA-256 {found[:12]}..., recorded "
            f"{str(record.get('sha256'))[:12]}...); reinstall uncertainty-adapters, or regenerate it with: "
            f"{record.get('command', 'ua-sam pretrain-backbone')}"
        )
    return weights, record
