"""`ua-sam app`: t(second click) / t(first click) on one image, through the app's own API and,
with --browser, on the page in headless Chromium (click to result shown).

    python -m benchmarks.bench_app                       # a run of the demo's architecture, random weights
    python -m benchmarks.bench_app --checkpoint ua-sam-demo --browser --screenshot docs/images/app.png
    python -m benchmarks.bench_app --json
    python -m benchmarks.bench_app --spec vit_b --browser  # SAM ViT-B at 1024 px, random weights

The first click on an image reads it, draws K samples of the prior and runs the adapted encoder
for all K (one batched forward), then decodes; the second click on the same image decodes only
(the K embeddings are cached), and both render the page's pictures. Each round uploads a new
image (a synthetic test lesion, 256 x 256, so nothing is cached), clicks on the lesion, then
clicks a second point on it; the figures are the medians over rounds and their ratio. The
report also splits a click without the web ("in_process"): the model work of a first and a
second click, drawing the pictures and Gradio writing them as PNG files (both clicks pay the
last two). Without --checkpoint the run folder is the CPU demo's architecture (SAM spec 'demo' at 128 px, latent
heads at 64 px) with random weights moved off their init: timings do not depend on training;
``--spec vit_b`` makes the same run folder with SAM ViT-B at 1024 px (the paper's backbone), to see
the ratio where the encoder costs what SAM's does.
The server runs in this process with one torch thread (the CPU machine's setting in RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import machine
from uncertainty_adapters.integrations.data import SyntheticLesions
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.sam import UncertaintySam, build_sam, save_sam_weights

SPEC, IMAGE_SIZE, SAMPLES = "demo", 256, 4
#: The model input size of each SAM spec this benchmark builds.
INPUT_SIZES = {"demo": 128, "vit_b": 1024}


def make_run(directory: Path, samples: int = SAMPLES, seed: int = 0, spec: str = SPEC) -> Path:
    """A run folder of SAM ``spec`` (the demo's architecture by default) with random weights (see
    the module docstring), whose preset samples K = ``samples`` (the page's default K)."""
    torch.manual_seed(seed)
    input_size = INPUT_SIZES[spec]
    sam = build_sam(spec, image_size=input_size)
    plain = build_sam(spec, image_size=input_size)
    plain.load_state_dict(sam.state_dict())
    model = UncertaintySam(sam, latent_heads_kwargs={"resolution": 64}).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.trainable_state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.1)
    save_sam_weights(plain, directory / run_dir.BACKBONE)
    run_dir.save_run(directory, model, {
        "backbone": run_dir.BACKBONE, "sam": spec, "image_size": input_size, "train_decoder": False,
        "preset": {"name": "demo", "eval_samples": samples}, "data": "none (random weights, for timing)",
    })
    return directory


def lesion_images(directory: Path, count: int) -> list[tuple[Path, tuple[int, int], tuple[int, int]]]:
    """``count`` synthetic test lesions as PNG files: (path, first click, second click), the
    clicks at the raters' majority lesion's centre and a few pixels inside it."""
    cases = SyntheticLesions(split="test", native_size=IMAGE_SIZE, length=4 * count + 8)
    out = []
    for index in range(count):
        case = cases.render_case(index)
        majority = case.masks.mean(axis=0) > 0.5
        rows, cols = np.nonzero(majority) if majority.any() else np.nonzero(np.ones_like(majority))
        centre = (int(np.median(cols)), int(np.median(rows)))
        second = (int(np.percentile(cols, 30)), int(np.percentile(rows, 60)))
        path = directory / f"lesion-{index}.png"
        Image.fromarray(np.round(case.image * 255).astype(np.uint8)).save(path)
        out.append((path, centre, second))
    return out


def _api_rounds(url: str, checkpoint: Path, images: list, samples: int) -> dict[str, list[float]]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    times: dict[str, list[float]] = {"first": [], "second": []}
    for path, first, second in images:
        prompts = [[first], [first, second]]
        for name, points in zip(("first", "second"), prompts):
            prompt = json.dumps({"points": [list(p) for p in points], "labels": [1] * len(points), "box": None})
            start = time.perf_counter()
            *_, summary, message = client.predict(handle_file(str(path)), prompt, samples, 0, "default", None,
                                                  str(checkpoint), api_name="/segment")
            times[name].append(time.perf_counter() - start)
            if summary is None or summary["samples"] != samples:
                raise RuntimeError(f"the app did not answer with {samples} masks: {message}")
    return times


def _in_process_rounds(checkpoint: Path, images: list, samples: int) -> dict[str, float]:
    """Where a click's time goes without the web: the model work of a first and a second click
    (`Segmentation.seconds`), drawing the page's pictures, and Gradio turning them into PNG files
    (what it does with every answer). Medians over ``images``, in seconds."""
    import gradio as gr

    from uncertainty_adapters.integrations.app import render
    from uncertainty_adapters.integrations.app.prompt import Prompt
    from uncertainty_adapters.integrations.app.session import Segmenter

    segmenter = Segmenter("cpu")
    picture, gallery = gr.Image(format="png", interactive=False), gr.Gallery(format="png")
    times: dict[str, list[float]] = {"model_first": [], "model_second": [], "drawing": [], "gradio_png": []}
    for path, first, second in images:
        for name, points in (("model_first", [first]), ("model_second", [first, second])):
            result = segmenter.segment(checkpoint, path, Prompt([list(p) for p in points], [1] * len(points)), samples)
            times[name].append(result.seconds)
        pixels, prediction = result.image.pixels, result.prediction
        scale = render.display_scale(pixels.shape[:2])
        start = time.perf_counter()
        pictures = (render.canvas(pixels, result.prompt, scale, prediction.mean),
                    render.heat_map(pixels, prediction.entropy, prediction.mean, scale),
                    render.thumbnails(pixels, prediction.masks))
        drawn = time.perf_counter()
        picture.postprocess(pictures[0]), picture.postprocess(pictures[1]), gallery.postprocess(pictures[2])
        times["drawing"].append(drawn - start)
        times["gradio_png"].append(time.perf_counter() - drawn)
    return {f"{name}_s": round(statistics.median(values), 4) for name, values in times.items()}


def _browser_rounds(url: str, images: list, screenshot: Path | None) -> dict[str, list[float]]:
    from benchmarks.app_browser import PageDriver
    from uncertainty_adapters.integrations.app.render import display_scale

    driver = PageDriver(url)
    times: dict[str, list[float]] = {"first": [], "second": []}
    try:
        for index, (path, first, second) in enumerate(images):
            if index:
                driver.reload()
            driver.upload(path)
            scale = display_scale((IMAGE_SIZE, IMAGE_SIZE))
            for name, (x, y) in zip(("first", "second"), (first, second)):
                message, seconds = driver.click((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5)
                times[name].append(seconds)
            if "cached embeddings" not in message:
                raise RuntimeError(f"the second click encoded the image again: {message}")
            times.setdefault("samples", []).append(int(message.split()[0]))
        if screenshot is not None:
            driver.screenshot(screenshot)
    finally:
        driver.close()
    return times


def _figures(times: dict[str, list[float]], samples: int) -> dict[str, float]:
    first, second = statistics.median(times["first"]), statistics.median(times["second"])
    return {"first_click_s": round(first, 4), "second_click_s": round(second, 4),
            "second_to_first_ratio": round(second / first, 3), "rounds": len(times["first"]), "samples": samples}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="A run folder (default: the demo's architecture, random weights).")
    parser.add_argument("--spec", choices=tuple(INPUT_SIZES), default=SPEC,
                        help="Without --checkpoint: the SAM architecture of the random-weight run (default demo).")
    parser.add_argument("--rounds", type=int, default=5, help="Images, each clicked twice (default 5).")
    parser.add_argument("--samples", type=int, default=SAMPLES,
                        help=f"K (default {SAMPLES}); on the page the run's default K (--samples without --checkpoint).")
    parser.add_argument("--browser", action="store_true", help="Also time the clicks on the page in headless Chromium.")
    parser.add_argument("--screenshot", type=Path, help="With --browser: save the page after the last round here.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    from uncertainty_adapters.integrations.app.server import serve

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-app-") as scratch:
            scratch = Path(scratch)
            checkpoint = args.checkpoint or make_run(scratch / "run", args.samples, spec=args.spec)
            images = lesion_images(scratch, args.rounds * (2 if args.browser else 1) + 1)
            page, url = serve(checkpoint, port=0)
            try:
                _api_rounds(url, checkpoint, images[-1:], args.samples)  # warm-up: imports, first allocations
                report: dict[str, object] = {
                    "api": _figures(_api_rounds(url, checkpoint, images[:args.rounds], args.samples), args.samples),
                    "checkpoint": str(args.checkpoint or f"random weights, spec {args.spec} at {INPUT_SIZES[args.spec]} px"),
                    "image": f"{IMAGE_SIZE} x {IMAGE_SIZE} synthetic test lesion", "machine": machine(),
                    "in_process": _in_process_rounds(checkpoint, images[:args.rounds], args.samples),
                }
                if args.browser:
                    # the page uses the run's default K (its preset's eval_samples), read off the page
                    times = _browser_rounds(url, images[args.rounds:2 * args.rounds], args.screenshot)
                    report["browser"] = _figures(times, times["samples"][0])
            finally:
                with contextlib.redirect_stdout(sys.stderr):  # Gradio prints "Closing server ..."
                    page.close()
    finally:
        torch.set_num_threads(threads)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        parts = report["in_process"]
        print(f"in process: model {parts['model_first_s']:.3f} s (first click), {parts['model_second_s']:.3f} s "
              f"(second); pictures {parts['drawing_s']:.3f} s, Gradio's PNG files {parts['gradio_png_s']:.3f} s")
        for where in ("api", "browser"):
            if where in report:
                figures = report[where]
                print(f"{where:8s} first click {figures['first_click_s']:.3f} s, second click "
                      f"{figures['second_click_s']:.3f} s: ratio {figures['second_to_first_ratio']:.3f} "
                      f"(medians of {figures['rounds']} images, K = {figures['samples']})")
    return report


if __name__ == "__main__":
    main()
