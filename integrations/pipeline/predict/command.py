"""`ua-sam predict`: one image and one prompt -> K plausible masks, the uncertainty map, pictures.

    ua-sam predict --checkpoint DIR --image FILE (--point X,Y | --box X0,Y0,X1,Y1) [--samples K] --out DIR

The image (PNG/JPEG, DICOM, or a NIfTI slice; see `image_io`) is encoded once under K samples of
the prior (`UncertaintySamPredictor`), then decoded with the prompt. Coordinates are pixels of
the image as read (x = column, y = row), the frame whose axes overlay.png shows. Written to --out
(a new or empty folder, or one ua-sam wrote, such as an earlier prediction; see output_dir.py):

    overlay.png      the image, the uncertainty heat map, the mean-mask contour, the prompt
    sample_<k>.png   the k-th sampled mask on the image, k = 1 .. K
    uncertainty.png  the entropy map with its colour bar
    prediction.npz   the arrays: masks (K, H, W) uint8, mean, variance, entropy (H, W) float32
    summary.json     K, the foreground area per sample and its spread, the uncertain fraction,
                     the prompt, the checkpoint, the image (definitions in the file itself)

The uncertain fraction is the number of pixels whose entropy exceeds 0.5 bits (mean probability
between 0.11 and 0.89) inside the union of the K sampled masks, divided by the area of the mean
mask (mean probability > 0.5); null when the mean mask is empty, and it can exceed 1 when the
samples disagree on more pixels than the mean mask holds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.pipeline import output_dir, run_dir
from uncertainty_adapters.integrations.pipeline.figures import prediction as predict_figures
from uncertainty_adapters.integrations.pipeline.predict.image_io import LoadedImage, read_image
from uncertainty_adapters.integrations.pipeline.predict.options import DEFAULT_SAMPLES, predict_command_line
from uncertainty_adapters.integrations.pipeline.runtime import choose_device
from uncertainty_adapters.integrations.sam import UncertaintySamPredictor, compile_for_sampling
from uncertainty_adapters.integrations.sam.predictor import check_inside

__all__ = ["UNCERTAIN_ENTROPY_BITS", "checkpoint_record", "model_line", "run_predict", "summarize", "write_outputs"]

UNCERTAIN_ENTROPY_BITS = 0.5

DEFINITIONS = {
    "foreground_area_px": "pixels of each sampled mask (probability > 0.5) at the original image size; "
    "std is the population standard deviation over the K samples",
    "mean_mask_area_px": "pixels whose mean probability over the K samples is > 0.5",
    "uncertain_area_px": f"pixels with entropy > {UNCERTAIN_ENTROPY_BITS} bits (mean probability between "
    "0.11 and 0.89) inside the union of the K sampled masks",
    "uncertain_fraction": "uncertain_area_px / mean_mask_area_px; null when the mean mask is empty; "
    "can exceed 1",
}


def summarize(masks: np.ndarray, mean: np.ndarray, entropy: np.ndarray) -> dict[str, Any]:
    """The numbers of summary.json from K masks (K, H, W) bool, mean and entropy (H, W)."""
    areas = masks.reshape(masks.shape[0], -1).sum(axis=1).astype(np.int64)
    mean_area = int((mean > 0.5).sum())
    uncertain = int(((entropy > UNCERTAIN_ENTROPY_BITS) & masks.any(axis=0)).sum())
    return {
        "samples": int(masks.shape[0]),
        "foreground_area_px": {
            "mean": float(areas.mean()),
            "std": float(areas.std()),
            "min": int(areas.min()),
            "max": int(areas.max()),
            "per_sample": [int(a) for a in areas],
        },
        "mean_mask_area_px": mean_area,
        "uncertain_area_px": uncertain,
        "uncertain_fraction": uncertain / mean_area if mean_area else None,
        "uncertain_entropy_bits": UNCERTAIN_ENTROPY_BITS,
        "definitions": DEFINITIONS,
    }


def _prompt(args: argparse.Namespace, size: tuple[int, int]) -> dict[str, Any]:
    """The prompt as given, after checking it lies inside the image of ``size`` (H, W)."""
    if args.box is not None:
        x0, y0, x1, y1 = args.box
        check_inside([[x0, y0], [x1, y1]], size, "--box corner")
        if x0 > x1 or y0 > y1:
            raise ValueError(f"--box needs X0 <= X1 and Y0 <= Y1, got {x0:g},{y0:g},{x1:g},{y1:g}")
        return {"type": "box", "box": [x0, y0, x1, y1]}
    check_inside([args.point], size, "--point")
    return {"type": "point", "point": list(args.point), "label": 1}


def run_predict(args: argparse.Namespace) -> dict[str, Any]:
    """Carry out ``ua-sam predict``; returns what summary.json holds.

    Raises:
        ValueError: K < 1, or a prompt outside the image. FileNotFoundError: no such image or
        run folder. DataError: an unreadable image or a missing optional package.
        CheckpointMismatchError: a run folder that does not fit this version.
    """
    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples must be at least 1 (K hypotheses), got {args.samples}")
    out = Path(args.out)
    output_dir.check(out)
    loaded = read_image(args.image, window=args.window, slice_index=args.slice)
    size = loaded.pixels.shape[:2]
    prompt = _prompt(args, size)
    checkpoint = Path(args.checkpoint)
    device = choose_device(args.cpu)
    model, meta = run_dir.load_run(checkpoint, device=device)
    preset = meta.get("preset") or {}
    k = args.samples or preset.get("eval_samples") or DEFAULT_SAMPLES

    if getattr(args, "compile", False):  # callers may build the namespace by hand
        compile_for_sampling(model)
    predictor = UncertaintySamPredictor(model)
    started = time.perf_counter()
    predictor.set_image(loaded.pixels, num_samples=k, seed=args.seed)
    encode_seconds = time.perf_counter() - started
    if prompt["type"] == "box":
        prediction = predictor.predict(box=prompt["box"])
        corners = np.reshape(prompt["box"], (2, 2))
    else:
        prediction = predictor.predict(point_coords=[prompt["point"]], point_labels=[1])
        corners = np.reshape(prompt["point"], (1, 2))
    prompt["in_model_input"] = predictor.transform_coords(corners).reshape(-1).round(3).tolist()

    output_dir.claim(out, "predict")
    summary = summarize(prediction.masks, prediction.mean, prediction.entropy)
    files = write_outputs(out, loaded, prediction, prompt, _footnote(args, k, loaded, meta, model))
    summary.update({
        "prompt": prompt,
        "checkpoint": checkpoint_record(checkpoint, meta, model),
        "image": loaded.info,
        "seed": args.seed,
        "device": str(device),
        "encode_seconds": round(encode_seconds, 3),
        "compiled": bool(getattr(args, "compile", False)),
        "files": files,
        "command": _command(args, k),
        "library_version": ua.__version__,
    })
    ckpt.write_json_atomic(out / "summary.json", summary)
    _print_summary(summary, out)
    return summary


def _command(args: argparse.Namespace, k: int) -> str:
    """The command line that reproduces this prediction (K spelled out)."""
    prompt = ["--box", ",".join(f"{v:g}" for v in args.box)] if args.box is not None else [
        "--point", ",".join(f"{v:g}" for v in args.point)]
    return predict_command_line(args.checkpoint, args.image, prompt, k, args.seed, args.window, args.slice, args.out)


def checkpoint_record(checkpoint: str | Path, meta: dict[str, Any], model: Any) -> dict[str, Any]:
    """summary.json's ``checkpoint``: the run folder and what its run.json says about the model."""
    return {
        "path": str(checkpoint),
        "preset": (meta.get("preset") or {}).get("name"),
        "data": meta.get("data"),
        "sam": meta.get("sam"),
        "image_size": model.image_size,
        "interaction": model.config.interaction,
    }


def model_line(checkpoint: str | Path, loaded: LoadedImage, meta: dict[str, Any], model: Any) -> str:
    """The second footnote line of every picture: the model, and how the image was read."""
    preset = (meta.get("preset") or {}).get("name", "?")
    line = (f"model: {Path(checkpoint).name} (preset {preset}, trained on {meta.get('data', '?')}, "
            f"SAM '{meta.get('sam')}' at {model.image_size} px, interaction {model.config.interaction})")
    window = loaded.info.get("window")
    if window:
        line += f"; image window {window['name']} (centre {window['centre']:g}, width {window['width']:g})"
    return line


def _footnote(args: argparse.Namespace, k: int, loaded: LoadedImage, meta: dict[str, Any], model: Any) -> str:
    """Two lines under every picture: the command, then the model and how the image was read."""
    return f"{_command(args, k)}\n{model_line(args.checkpoint, loaded, meta, model)}"


def write_outputs(out: Path, loaded: LoadedImage, prediction: Any, prompt: dict[str, Any],
                  footnote: str) -> dict[str, Any]:
    """Write predict's pictures and prediction.npz (the files of the module docstring, all but
    summary.json) into ``out``; returns summary.json's ``files``. ``prompt`` is summary.json's
    prompt (a point, a box, or points with labels and an optional box)."""
    k = prediction.num_samples
    image_name = Path(loaded.info["path"]).name
    where = f" (slice {loaded.info['slice']})" if "slice" in loaded.info else ""
    predict_figures.save_overlay(
        out / "overlay.png", loaded.pixels, prediction.mean, prediction.entropy, prompt,
        title=f"UA-SAM on {image_name}{where}: mean of {k} sampled masks and their uncertainty",
        footnote=footnote,
    )
    samples = []
    for index in range(k):
        name = f"sample_{index + 1}.png"
        area = int(prediction.masks[index].sum())
        predict_figures.save_sample(
            out / name, loaded.pixels, prediction.masks[index], prompt,
            title=f"{image_name}{where}: sampled mask {index + 1} of {k} ({area} px)", footnote=footnote,
        )
        samples.append(name)
    predict_figures.save_uncertainty(
        out / "uncertainty.png", prediction.entropy, prediction.mean, prompt,
        title=f"{image_name}{where}: uncertainty (entropy of the mean of {k} samples)", footnote=footnote,
    )
    np.savez_compressed(
        out / "prediction.npz",
        masks=prediction.masks.astype(np.uint8),
        mean=prediction.mean.astype(np.float32),
        variance=prediction.variance.astype(np.float32),
        entropy=prediction.entropy.astype(np.float32),
    )
    return {"overlay": "overlay.png", "samples": samples, "uncertainty": "uncertainty.png",
            "arrays": "prediction.npz", "summary": "summary.json"}


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    area = summary["foreground_area_px"]
    fraction = summary["uncertain_fraction"]
    print(
        f"{summary['samples']} samples: foreground area {area['mean']:.0f} px (std {area['std']:.1f}, "
        f"min {area['min']}, max {area['max']}); uncertain fraction of the mean mask: "
        + ("n/a (empty mean mask)" if fraction is None else f"{fraction:.3f}")
    )
    for label, name in (("overlay", "overlay.png"), ("uncertainty", "uncertainty.png"), ("summary", "summary.json")):
        print(f"{label + ':':<13}{out / name}")
