"""The page of `ua-sam app` (Gradio Blocks): upload an image, click foreground / background points
or drag a box on it, choose K, and see the mean mask's contour, the uncertainty heat map with its
colour bar, the K samples and the numbers of summary.json; "Download" gives predict's files.

Every event calls the model side (`session.Segmenter`) and turns what goes wrong in the user's
input into a message on the page. The API (``/gradio_api``, used by `gradio_client`):

    segment(image, prompt, samples, seed, window, slice, checkpoint)
        -> canvas, heat map, K thumbnails, summary, message
    download(...same inputs...) -> the files of `ua-sam predict`

with ``prompt`` the JSON text of `prompt.Prompt` (pixels of the image as read).
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import gradio as gr

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.data import DataError

from . import render
from .prompt import DRAG_PIXELS, Prompt, PromptError
from .session import MAX_SAMPLES, Segmenter

__all__ = ["CANVAS_ID", "build_page", "page_js"]

logger = logging.getLogger(__name__)

CANVAS_ID = "ua-canvas"
WINDOW_OPTIONS = ("default", "lung", "soft-tissue", "auto")
USER_ERRORS = (DataError, CheckpointMismatchError, FileNotFoundError, ValueError, PromptError)
INTRO = """### UA-SAM: click, and see K plausible masks and where they disagree
Upload an image (PNG/JPEG; DICOM and NIfTI with the `medical-io` extra), then **click** on it for a
foreground (or background) point, or **drag** a box. The page runs on this machine only."""

# Run once on page load: remember where the mouse went down on the canvas (in the pixels of the
# picture, as Gradio's own click coordinates), so that a press-and-release that moved is a box.
_REMEMBER_PRESS = """
() => {
  const press = (event) => {
    const root = document.getElementById("%(id)s");
    const img = root && root.contains(event.target) ? root.querySelector("img") : null;
    if (!img || !img.naturalWidth) return;
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
    const ox = (r.width - img.naturalWidth * s) / 2, oy = (r.height - img.naturalHeight * s) / 2;
    window.uaSamPress = [Math.round((event.clientX - r.left - ox) / s), Math.round((event.clientY - r.top - oy) / s)];
  };
  const noDrag = (event) => {
    if (event.target.closest && event.target.closest("#%(id)s")) event.preventDefault();
  };
  document.addEventListener("mousedown", press, true);
  document.addEventListener("dragstart", noDrag, true);
}
""" % {"id": CANVAS_ID}

# Runs before each click's Python handler: hands it the press position (the second input).
_READ_PRESS = """
(...inputs) => { inputs[1] = JSON.stringify(window.uaSamPress || null); window.uaSamPress = null; return inputs; }
"""


def page_js() -> str:
    """The script the page runs on load (give it to ``launch(js=...)``)."""
    return _REMEMBER_PRESS


def _window(value: str | None) -> str | None:
    return None if value in (None, "", "default") else value


def _slice(value: Any) -> int | None:
    if value is None or value == "":
        return None
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"the slice must be a whole number, got {value}")
    return int(number)


def _whole(value: Any, default: int | None) -> int | None:
    """A number field's value as an int (an empty field: ``default``)."""
    return default if value is None or value == "" else int(value)


def _message(error: BaseException) -> str:
    return f"**Cannot do that:** {error}"


def build_page(segmenter: Segmenter, checkpoint: str | Path, checkpoint_editable: bool = True) -> gr.Blocks:
    """The Blocks of the page for the run folder ``checkpoint`` (loaded by the caller first, so
    that a folder that does not fit stops the command before the server starts).

    Args:
        segmenter: the model side, shared by every tab.
        checkpoint: the run folder shown first.
        checkpoint_editable: whether the page may switch to another run folder (off when the
            server is reachable from other machines).
    """
    default_k = segmenter.load_run(checkpoint).default_samples
    max_k = max(32, default_k)
    scratch = tempfile.TemporaryDirectory(prefix="ua-sam-app-")  # downloads; removed when the server exits

    def blank(image: str | None, prompt: Prompt, window: str | None, slice_index: int | None,
              note: str) -> tuple:
        """The outputs when there is no result: the image (if it can be read) and a message."""
        picture = None
        if image:
            try:
                loaded = segmenter.read(image, window, slice_index)
                size = loaded.pixels.shape[:2]
                picture = render.canvas(loaded.pixels, prompt, render.display_scale(size))
            except USER_ERRORS as error:
                note = _message(error)
        return picture, None, [], None, note

    def segment(image: str | None, prompt_text: str, samples: float, seed: float, window: str,
                slice_value: Any, run_folder: str) -> tuple:
        """Canvas, heat map, thumbnails, summary and message for the prompt on the image."""
        if not image:
            return None, None, [], None, "Upload an image to start."
        try:
            prompt = Prompt.from_json(prompt_text)
        except PromptError as error:
            return blank(image, Prompt(), _window(window), None, _message(error))
        try:
            window_name, slice_index = _window(window), _slice(slice_value)
            if prompt.is_empty:
                loaded = segmenter.read(image, window_name, slice_index)
                where = f", slice {loaded.info['slice']}" if "slice" in loaded.info else ""
                return (*blank(image, prompt, window_name, slice_index, "")[:4],
                        f"{Path(image).name}: {loaded.pixels.shape[1]} x {loaded.pixels.shape[0]} pixels{where}. "
                        "Click on the object (or drag a box around it).")
            result = segmenter.segment(run_folder or checkpoint, image, prompt, _whole(samples, None),
                                       _whole(seed, 0), window_name, slice_index)
        except USER_ERRORS as error:
            return blank(image, prompt, _window(window), None, _message(error))
        except Exception as error:  # noqa: BLE001 - the server must outlive any one request
            logger.exception("ua-sam app: the request failed")
            return blank(image, prompt, _window(window), None,
                         f"**Internal error** ({type(error).__name__}: {error}); the server log has the details.")
        pixels, prediction = result.image.pixels, result.prediction
        scale = render.display_scale(pixels.shape[:2])
        summary = result.summary
        fraction = summary["uncertain_fraction"]
        area = summary["foreground_area_px"]
        note = (f"{prediction.num_samples} samples for {prompt.describe()}: foreground area {area['mean']:.0f} px "
                f"(std {area['std']:.1f}); uncertain fraction of the mean mask "
                + ("n/a (empty mean mask)" if fraction is None else f"{fraction:.3f}")
                + f". {'Encoded the image and decoded' if result.encoded else 'Decoded (cached embeddings)'} "
                f"in {result.seconds:.2f} s.")
        return (
            render.canvas(pixels, prompt, scale, prediction.mean),
            render.heat_map(pixels, prediction.entropy, prediction.mean, scale),
            render.thumbnails(pixels, prediction.masks),
            summary,
            note,
        )

    def add_click(prompt_text: str, press: str, mode: str, image: str | None, window: str, slice_value: Any,
                  event: gr.SelectData) -> str:
        """The prompt text after a click (a point) or a press-and-release that moved (a box)."""
        if not image or event.index is None:
            return prompt_text
        try:
            prompt = Prompt.from_json(prompt_text)
            loaded = segmenter.read(image, _window(window), _slice(slice_value))
        except USER_ERRORS:
            return prompt_text
        size = loaded.pixels.shape[:2]
        scale = render.display_scale(size)
        end = render.to_image_pixels(*event.index, scale)
        start = None
        try:
            pressed = Prompt.from_json('{"points": [%s]}' % press) if press and press != "null" else None
        except PromptError:
            pressed = None
        if pressed is not None and pressed.points:
            start = render.to_image_pixels(*pressed.points[0], scale)
        label = 0 if mode == "background point" else 1
        return prompt.add_click(start, end, label, size, drag_pixels=DRAG_PIXELS / scale).to_json()

    def click(prompt_text: str, press: str, mode: str, image: str | None, samples: float, seed: float,
              window: str, slice_value: Any, run_folder: str, event: gr.SelectData) -> tuple:
        """One round trip per click: the new prompt text, and `segment`'s outputs for it."""
        prompt_text = add_click(prompt_text, press, mode, image, window, slice_value, event)
        return (prompt_text, *segment(image, prompt_text, samples, seed, window, slice_value, run_folder))

    def undo(prompt_text: str) -> str:
        try:
            return Prompt.from_json(prompt_text).undo().to_json()
        except PromptError:
            return ""

    def download(image: str | None, prompt_text: str, samples: float, seed: float, window: str,
                 slice_value: Any, run_folder: str) -> tuple[list[str] | None, str]:
        """predict's files for the current result (and all of them in one zip)."""
        if not image:
            return None, "Upload an image and click on it first."
        try:
            result = segmenter.segment(run_folder or checkpoint, image, Prompt.from_json(prompt_text),
                                       _whole(samples, None), _whole(seed, 0), _window(window), _slice(slice_value))
            out = Path(tempfile.mkdtemp(dir=scratch.name))
            summary = segmenter.write_files(result, out / "files")
        except USER_ERRORS as error:
            return None, _message(error)
        names = [summary["files"]["overlay"], *summary["files"]["samples"], summary["files"]["uncertainty"],
                 summary["files"]["arrays"], "summary.json"]
        archive = out / f"ua-sam-{Path(image).stem}.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            for name in names:
                bundle.write(out / "files" / name, name)
        return [str(archive)] + [str(out / "files" / name) for name in names], \
            f"Wrote {len(names)} files, as `ua-sam predict` does."

    with gr.Blocks(title="UA-SAM", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                upload = gr.File(label="Image", file_count="single", type="filepath", elem_id="ua-upload")
                mode = gr.Radio(["foreground point", "background point"], value="foreground point",
                                label="A click adds a", elem_id="ua-mode")
                samples = gr.Slider(1, min(max_k, MAX_SAMPLES), value=default_k, step=1,
                                    label="K: samples of the latent", elem_id="ua-samples")
                with gr.Row():
                    undo_button = gr.Button("Undo last point", size="sm")
                    clear_button = gr.Button("Clear prompt", size="sm")
                prompt_box = gr.Textbox(label="Prompt (pixels of the image; editable, Enter to run)",
                                        value="", lines=2, elem_id="ua-prompt")
                with gr.Accordion("Image and model options", open=False):
                    window = gr.Dropdown(list(WINDOW_OPTIONS), value="default",
                                         label="DICOM/NIfTI window (default: lung for CT, else auto)")
                    slice_number = gr.Number(value=None, precision=0, minimum=0,
                                             label="NIfTI slice / DICOM frame (empty: the middle one)")
                    seed = gr.Number(value=0, precision=0, label="Seed of the K latent samples")
                    run_folder = gr.Textbox(value=str(checkpoint), label="Run folder (--checkpoint)",
                                            interactive=checkpoint_editable, elem_id="ua-checkpoint")
                download_button = gr.Button("Download the files of ua-sam predict", elem_id="ua-download")
                files = gr.File(label="Files", file_count="multiple", interactive=False, height=160, elem_id="ua-files")
            with gr.Column(scale=2):
                message = gr.Markdown("Upload an image to start.", elem_id="ua-message")
                canvas = gr.Image(label="Click: point, drag: box. Cyan: mean mask (mean probability 0.5)",
                                  interactive=False, format="png", elem_id=CANVAS_ID, buttons=[])
                heat = gr.Image(label="Uncertainty: entropy of the mean of the K samples", interactive=False,
                                format="png", elem_id="ua-heat", buttons=["download"])
                gallery = gr.Gallery(label="The K sampled masks", columns=4, format="png", object_fit="contain",
                                     height=220, elem_id="ua-gallery")
                numbers = gr.JSON(label="summary.json", elem_id="ua-summary")
        press = gr.Textbox(visible="hidden", elem_id="ua-press")

        inputs = [upload, prompt_box, samples, seed, window, slice_number, run_folder]
        outputs = [canvas, heat, gallery, numbers, message]
        private = {"api_visibility": "private"}

        prompt_box.submit(segment, inputs, outputs, api_name="segment")
        upload.change(lambda: "", None, prompt_box, **private).then(segment, inputs, outputs, **private)
        for control in (window, slice_number, seed, run_folder):
            control.change(segment, inputs, outputs, **private)
        samples.release(segment, inputs, outputs, **private)
        canvas.select(click, [prompt_box, press, mode, upload, samples, seed, window, slice_number, run_folder],
                      [prompt_box, *outputs], js=_READ_PRESS, **private)
        undo_button.click(undo, prompt_box, prompt_box, **private).then(segment, inputs, outputs, **private)
        clear_button.click(lambda: "", None, prompt_box, **private).then(segment, inputs, outputs, **private)
        download_button.click(download, inputs, [files, message], api_name="download")
    return page
