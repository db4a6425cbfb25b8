"""The options of `ua-sam predict`, and the command line that repeats a prediction; light to
import (the command line's parser is built before any model code is imported)."""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path
from typing import Any, Sequence

from uncertainty_adapters.integrations.pipeline.predict.image_io import WINDOW_CHOICES, WINDOWS

DEFAULT_SAMPLES = 4


def _numbers(text: str, count: int, name: str) -> tuple[float, ...]:
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected {name} as {count} comma-separated numbers, got {text!r}")
    return values


def _point(text: str) -> tuple[float, ...]:
    return _numbers(text, 2, "X,Y")


def _box(text: str) -> tuple[float, ...]:
    return _numbers(text, 4, "X0,Y0,X1,Y1")


def add_predict_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``predict`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    windows = ", ".join(f"{name} (centre {c:g}, width {w:g})" for name, (c, w) in WINDOWS.items())
    parser = subparsers.add_parser(
        "predict",
        help="Segment one image from one prompt: K plausible masks, an uncertainty map, pictures.",
        description="Run a trained UA-SAM on one image with one point or box prompt. Writes "
        "overlay.png (image, mean-mask contour, uncertainty heat map, prompt), sample_<k>.png per "
        "hypothesis, uncertainty.png (entropy map), prediction.npz and summary.json to --out. "
        "Coordinates are pixels of the image as read (x = column, y = row; overlay.png shows them).",
    )
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="The --out folder of 'ua-sam train' or 'ua-sam demo'.")
    parser.add_argument("--image", required=True, metavar="FILE",
                        help="PNG/JPEG, DICOM (.dcm, or any file with the DICM marker) or NIfTI (.nii, .nii.gz).")
    prompt = parser.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--point", type=_point, metavar="X,Y", help="One foreground point, in image pixels.")
    prompt.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1",
                        help="A box, corners inclusive, in image pixels.")
    parser.add_argument("--samples", type=int, metavar="K",
                        help=f"Hypotheses to sample (default: the run's preset, else {DEFAULT_SAMPLES}).")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="Output folder: new, empty, or one ua-sam wrote (its files are replaced).")
    medical = parser.add_argument_group("DICOM and NIfTI (needs the medical-io extra)")
    medical.add_argument("--window", choices=WINDOW_CHOICES,
                         help=f"Intensity window: {windows}, or auto (the file's window, else the "
                         "0.5-99.5th percentiles). Default: lung for CT, auto otherwise.")
    medical.add_argument("--slice", type=int, metavar="N",
                         help="NIfTI: axial slice index (third axis, RAS+); multi-frame DICOM: frame. "
                         "Default: the middle one.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the K latent samples (default 0).")
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the encoder (CUDA graphs on a GPU): pays off over many images, not one.")
    return parser


def predict_command_line(
    checkpoint: str | Path,
    image: str | Path,
    prompt: Sequence[str],
    samples: int,
    seed: int,
    window: str | None,
    slice_index: int | None,
    out: str | Path,
) -> str:
    """The ``ua-sam predict`` line (shell-quoted) that gives this prediction again; ``prompt`` is
    its prompt option and value, e.g. ``["--point", "12,30"]``."""
    words = ["ua-sam", "predict", "--checkpoint", str(checkpoint), "--image", str(image), *prompt,
             "--samples", str(samples), "--seed", str(seed)]
    words += ["--window", window] if window else []
    words += ["--slice", str(slice_index)] if slice_index is not None else []
    return " ".join(shlex.quote(word) for word in words + ["--out", str(out)])
