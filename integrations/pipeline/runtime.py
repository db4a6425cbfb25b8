"""What every `ua-sam` command decides the same way: the device, the command line it records,
the backbone it builds on, and the name of its logger.

    device = choose_device(cpu=args.cpu)                      # CUDA when present, unless --cpu
    record["command"] = command_line(argv)                    # "ua-sam train --data ..." (shell-quoted)
    backbone, source = choose_backbone(args.sam_checkpoint, preset.sam, args.cache_dir, args.cpu)
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

LOGGER_NAME = "ua-sam"
logger = logging.getLogger(LOGGER_NAME)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
RANDOM_BACKBONE = "random initialisation (no --sam-checkpoint)"
USER_BACKBONE = "user checkpoint"


def choose_device(cpu: bool = False, name: str = "auto") -> torch.device:
    """The device a command runs on: the CPU when ``cpu`` or ``name == "cpu"``; CUDA when
    ``name == "cuda"`` (ValueError when there is none) or ``"auto"`` and a GPU is present."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device("cuda" if not cpu and name != "cpu" and torch.cuda.is_available() else "cpu")


def command_line(argv: Sequence[str] | None = None, program: str = "ua-sam") -> str:
    """``program`` and its arguments, shell-quoted (``argv`` default: ``sys.argv[1:]``): the
    line a record states so that the run can be repeated."""
    words = list(sys.argv[1:] if argv is None else argv)
    return " ".join(shlex.quote(word) for word in [program, *words])


def choose_backbone(
    sam_checkpoint: str | Path | None,
    sam: str,
    cache_dir: str | Path | None = None,
    cpu: bool = False,
    settings: Any = None,
) -> tuple[Path | None, str | dict[str, Any]]:
    """The SAM weights a run builds on, and where they come from (run.json's ``backbone_source``).

    Args:
        sam_checkpoint: the ``--sam-checkpoint`` given (a file, a Hugging Face folder), or None.
        sam: the preset's SAM variant; "demo" uses the pretrained demo backbone.
        cache_dir, cpu, settings: passed to `ensure_demo_backbone` for the demo backbone.

    Returns:
        (the resolved checkpoint, ``USER_BACKBONE``); (the demo weights, their facts dict with
        ``source`` and ``held_out_iou``); or (None, ``RANDOM_BACKBONE``) after a warning that a
        randomly initialised backbone makes the results meaningless.
    """
    if sam_checkpoint:
        from uncertainty_adapters.integrations.sam.hf_checkpoint import resolve_sam_checkpoint

        return resolve_sam_checkpoint(sam_checkpoint), USER_BACKBONE
    if sam == "demo":
        from uncertainty_adapters.integrations.pipeline.backbone.demo import ensure_demo_backbone

        return ensure_demo_backbone(cache_dir=cache_dir, cpu=cpu, settings=settings)
    logger.warning(
        "no --sam-checkpoint: the %s backbone is randomly initialised, so the results say nothing "
        "about UA-SAM (fine for timing and smoke runs only)", sam,
    )
    return None, RANDOM_BACKBONE
