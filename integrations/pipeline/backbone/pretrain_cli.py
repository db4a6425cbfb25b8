"""`ua-sam pretrain-backbone`: pretrain the demo SAM on crisp shapes and write its record.

    ua-sam pretrain-backbone --out FILE.safetensors [--steps N] [--batch-size B] [--targets T]
                             [--lr LR] [--init EARLIER.safetensors] [--device auto|cpu|cuda]
                             [--dtype float16] ...

Writes FILE (SAM's checkpoint layout) and FILE with the suffix ``.json``: the command, the
`PretrainSettings`, the held-out IoU on crisp shapes (``crisp-shapes-v1``, held-out seed) of the
stored weights, the IoU every ``--eval-every`` steps, seconds, device, torch version, dtype and
the file's SHA-256. With ``--init``, training continues from earlier weights (their SHA-256
becomes ``PretrainSettings.init``, and the record keeps theirs under ``init``, so the whole chain
of commands that regenerates the weights is written down). The defaults are the recipe meant for
the weights shipped in the package (`backbone/shipped.py`; their record names the settings they
were made with); copying FILE and its record there replaces them.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.pipeline.backbone.pretrain_settings import HELD_OUT_SEED, PretrainSettings
from uncertainty_adapters.integrations.pipeline.runtime import DEVICE_CHOICES, LOGGER_NAME, choose_device, command_line

logger = logging.getLogger(LOGGER_NAME)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FLAGS = {  # PretrainSettings field -> (flag, type)
    "steps": ("--steps", int), "batch_size": ("--batch-size", int), "targets": ("--targets", int),
    "lr": ("--lr", float), "warmup": ("--warmup", float), "weight_decay": ("--weight-decay", float),
    "grad_clip": ("--grad-clip", float), "image_size": ("--image-size", int), "seed": ("--seed", int),
}


def add_pretrain_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = PretrainSettings()
    parser = commands.add_parser(
        "pretrain-backbone",
        help="Pretrain the demo SAM backbone on crisp shapes; write the weights and their record.",
        description="Train the whole small demo SAM to segment the object under a point on crisp, "
        "unambiguous synthetic shapes, measure its IoU on held-out shapes, and write FILE "
        "(safetensors, SAM layout) plus FILE.json (command, settings, held-out IoU, seconds, "
        "device, torch version). Copy both to integrations/pipeline/backbone/weights/ to ship them.",
    )
    parser.add_argument("--out", required=True, help="The .safetensors file to write (its record: same name, .json).")
    recipe = parser.add_argument_group("recipe (PretrainSettings defaults)")
    for name, (flag, kind) in _FLAGS.items():
        recipe.add_argument(flag, dest=name, type=kind, default=getattr(defaults, name),
                            help=f"PretrainSettings.{name} (default {getattr(defaults, name)}).")
    recipe.add_argument("--init", metavar="FILE",
                        help="Start from these weights (SAM's layout, e.g. an earlier pretrain-backbone's "
                        "--out) instead of a random initialisation; their SHA-256 enters the recipe.")
    run = parser.add_argument_group("run (do not change the weights)")
    run.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                     help="auto: the GPU when there is one (default).")
    run.add_argument("--dtype", default="float16", choices=tuple(DTYPES),
                     help="How the weights are stored (default float16; the IoU is measured on them).")
    run.add_argument("--num-workers", type=int, default=None,
                     help="Processes rendering the shapes (default: up to 12 on a GPU, 0 on the CPU).")
    run.add_argument("--eval-every", type=int, default=0, help="Also measure the held-out IoU every N steps.")
    run.add_argument("--threads", type=int, help="torch CPU threads.")
    run.add_argument("--overwrite", action="store_true", help="Replace FILE and its record if they exist.")
    return parser


def _starting_weights(init: str | None, out: Path) -> Path | None:
    """The --init file, checked: an existing .safetensors file other than --out."""
    if not init:
        return None
    path = Path(init)
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(f"--init must name an existing .safetensors file (SAM's layout), got {path}")
    if path.resolve() == out.resolve():
        raise ValueError(f"--init and --out are the same file {path}; write the continued weights elsewhere")
    return path


def run_pretrain(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Carry out ``ua-sam pretrain-backbone``; returns the record written next to the weights."""
    from uncertainty_adapters.integrations.pipeline.backbone.demo import pretrain

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {out}")
    record_path = out.with_suffix(".json")
    if (out.exists() or record_path.exists()) and not args.overwrite:
        raise FileExistsError(f"{out} or {record_path} exists; pass --overwrite to replace them, or choose another --out")
    if out.is_dir():
        raise FileExistsError(f"--out {out} is a folder; give a .safetensors file")
    if args.eval_every < 0:
        raise ValueError(f"--eval-every must be >= 0, got {args.eval_every}")
    init = _starting_weights(args.init, out)
    settings = PretrainSettings(**{name: getattr(args, name) for name in _FLAGS},
                                init=ckpt.file_sha256(init) if init else "")
    device = choose_device(name=args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: the recorded IoU is of the stored weights
    workers = args.num_workers
    if workers is None:
        workers = min(12, max((os.cpu_count() or 1) - 2, 0)) if device.type == "cuda" else 0
    if workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {workers}")
    out.parent.mkdir(parents=True, exist_ok=True)
    facts = pretrain(settings, out, device, num_workers=workers, eval_every=args.eval_every,
                     dtype=DTYPES[args.dtype], init=init)
    record = {
        **facts,
        "command": command_line(argv),
        "data": "crisp-shapes-v1: CrispShapes(seed=settings.seed) for training; held-out IoU on "
                f"CrispShapes(seed={HELD_OUT_SEED}), its first {facts['held_out_cases']} items",
    }
    if init:
        earlier = init.with_suffix(".json")
        record["init"] = {"file": init.name, "sha256": settings.init,
                          "record": ckpt.read_json(earlier) if earlier.is_file() else None}
    ckpt.write_json_atomic(record_path, record)
    logger.info("wrote %s and %s: held-out IoU %.4f (%s), %.0f s on %s", out, record_path,
                record["held_out_iou"], record["dtype"], record["seconds"], record["device"])
    return record

