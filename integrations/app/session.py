"""The model side of the app, with no web code: run folders loaded once, each uploaded image read
and encoded once per (file, window, slice, K, seed), then every click runs only SAM's prompt
encoder and mask decoder on the cached K embeddings (`UncertaintySamPredictor`).

    segmenter = Segmenter(device="cpu")
    result = segmenter.segment("ua-sam-demo", "lesion.png", Prompt([[40, 30]], [1]), samples=4)
    result.prediction.masks.shape            # (4, H, W) bool
    segmenter.write_files(result, "out/")    # the files of `ua-sam predict`

One `Segmenter` serves every browser tab of one server; a lock makes the model calls take turns.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.predict import (
    DEFAULT_SAMPLES,
    checkpoint_record,
    model_line,
    predict_command_line,
    summarize,
    write_outputs,
)
from uncertainty_adapters.integrations.pipeline.predict.image_io import LoadedImage
from uncertainty_adapters.integrations.sam import UncertaintySam, UncertaintySamPredictor

from .prompt import Prompt
from .uploads import read_upload

__all__ = ["MAX_SAMPLES", "Segmentation", "Segmenter"]

MAX_SAMPLES = 64


@dataclass
class LoadedRun:
    """A run folder's UA-SAM model (eval mode) and its run.json."""

    path: Path
    model: UncertaintySam
    meta: dict[str, Any]

    @property
    def default_samples(self) -> int:
        return int((self.meta.get("preset") or {}).get("eval_samples") or DEFAULT_SAMPLES)


@dataclass
class Segmentation:
    """One click's answer: K masks and the maps for ``prompt`` on ``image``.

    Attributes:
        prediction: numpy `UncertaintyPrediction` at the image's size (masks (K, H, W) bool).
        encoded: True when this call ran the image encoder, False when it reused the cache.
        seconds: wall time of the model work (encoding, if any, plus decoding).
        summary: what summary.json holds, less ``files`` (added by `Segmenter.write_files`).
    """

    run: LoadedRun
    image: LoadedImage
    prompt: Prompt
    prediction: Any
    seed: int
    encoded: bool
    seconds: float
    summary: dict[str, Any]


class Segmenter:
    """Runs, images and K-sample embeddings, cached; see the module docstring.

    Args:
        device: where the models run.
        max_images: encoded images kept (least recently used dropped first).
        max_runs: run folders kept loaded.
    """

    def __init__(self, device: str | torch.device = "cpu", max_images: int = 4, max_runs: int = 2) -> None:
        self.device = torch.device(device)
        self.max_images, self.max_runs = max_images, max_runs
        self._runs: OrderedDict[Path, LoadedRun] = OrderedDict()
        self._images: OrderedDict[tuple, LoadedImage] = OrderedDict()
        self._encoded: OrderedDict[tuple, UncertaintySamPredictor] = OrderedDict()
        self._digests: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def _content_key(self, path: Path) -> str:
        """The SHA-256 of the file's bytes (hashed again only when its path, size or time
        changes): the same image uploaded twice shares its cached embeddings."""
        stat = path.stat()
        where = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if where not in self._digests:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._remember(self._digests, where, digest.hexdigest(), 64)
        return self._digests[where]

    @staticmethod
    def _remember(cache: OrderedDict, key: Any, value: Any, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    def load_run(self, checkpoint: str | Path) -> LoadedRun:
        """The UA-SAM run in folder ``checkpoint`` (loaded once).

        Raises:
            FileNotFoundError, CheckpointMismatchError: as `run_dir.load_run`; also
            CheckpointMismatchError for a run of another model (the Prob. U-Net baseline).
        """
        path = Path(checkpoint).expanduser().resolve()
        with self._lock:
            if path in self._runs:
                self._runs.move_to_end(path)
                return self._runs[path]
            if not path.is_dir():
                raise FileNotFoundError(f"checkpoint folder {checkpoint} does not exist; give the --out "
                                        f"folder of 'ua-sam train' or 'ua-sam demo'")
            model, meta = run_dir.load_run(path, device=self.device)
            if not isinstance(model, UncertaintySam):
                raise CheckpointMismatchError(
                    f"{checkpoint} holds a {type(model).__name__} baseline run; the app shows UA-SAM runs "
                    f"(the --out folder of 'ua-sam train --preset ...' or 'ua-sam demo')"
                )
            run = LoadedRun(path, model, meta)
            self._remember(self._runs, path, run, self.max_runs)
            return run

    def read(self, image: str | Path, window: str | None = None, slice_index: int | None = None) -> LoadedImage:
        """The uploaded file as `ua-sam predict` reads it (cached per file, window and slice).

        Raises:
            DataError, FileNotFoundError: as `uploads.read_upload`.
        """
        path = Path(image)
        key = (self._content_key(path), window, slice_index) if path.is_file() else None
        if key is not None and key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        loaded = read_upload(path, window=window, slice_index=slice_index)
        self._remember(self._images, key, loaded, self.max_images)
        return loaded

    def segment(self, checkpoint: str | Path, image: str | Path, prompt: Prompt, samples: int | None = None,
                seed: int = 0, window: str | None = None, slice_index: int | None = None) -> Segmentation:
        """K masks for ``prompt`` on ``image``; the encoder runs only for a new (run, file,
        window, slice, K, seed).

        Raises:
            ValueError: an empty prompt, a prompt outside the image, K outside [1, MAX_SAMPLES].
            DataError, FileNotFoundError, CheckpointMismatchError: the image or the run folder.
        """
        if prompt.is_empty:
            raise ValueError("click on the image (or drag a box) to give a prompt first")
        run = self.load_run(checkpoint)
        k = run.default_samples if samples is None else int(samples)
        if not 1 <= k <= MAX_SAMPLES:
            raise ValueError(f"K (samples) must be between 1 and {MAX_SAMPLES}, got {k}")
        loaded = self.read(image, window, slice_index)
        prompt.check_inside(loaded.pixels.shape[:2])
        key = (run.path, self._content_key(Path(image)), window, slice_index, k, int(seed))
        with self._lock:
            start = time.perf_counter()
            predictor = self._encoded.get(key)
            encoded = predictor is None
            if encoded:
                predictor = UncertaintySamPredictor(run.model)
                predictor.set_image(loaded.pixels, num_samples=k, seed=int(seed))
                self._remember(self._encoded, key, predictor, self.max_images)
            else:
                self._encoded.move_to_end(key)
            prediction = predictor.predict(**prompt.predictor_kwargs())
            seconds = time.perf_counter() - start
            corners = np.asarray(prompt.points + ([prompt.box[:2], prompt.box[2:]] if prompt.box else []))
            in_model = predictor.transform_coords(corners).reshape(-1).round(3).tolist()
        record = {**prompt.summary(), "in_model_input": in_model}
        summary = summarize(prediction.masks, prediction.mean, prediction.entropy)
        summary.update({
            "prompt": record,
            "checkpoint": checkpoint_record(run.path, run.meta, run.model),
            "image": {**loaded.info, "path": Path(loaded.info["path"]).name},
            "seed": int(seed),
            "device": str(self.device),
            "command": self._command(run, loaded, prompt, k, int(seed), window, slice_index),
            "library_version": ua.__version__,
        })
        return Segmentation(run, loaded, prompt, prediction, int(seed), encoded, seconds, summary)

    @staticmethod
    def _command(run: LoadedRun, loaded: LoadedImage, prompt: Prompt, k: int, seed: int,
                 window: str | None, slice_index: int | None) -> str | None:
        """The `ua-sam predict` line that gives the same result, or None when predict cannot
        take this prompt (several points, a background point, points and a box)."""
        option = prompt.predict_arguments()
        if option is None:
            return None
        return predict_command_line(run.path, Path(loaded.info["path"]).name, option, k, seed, window, slice_index,
                                    "OUT")

    def write_files(self, result: Segmentation, out: str | Path) -> dict[str, Any]:
        """Write the files of `ua-sam predict` (pictures, prediction.npz, summary.json) into
        ``out``; returns the summary as written."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        command = result.summary["command"] or f"ua-sam app: prompt {result.prompt.describe()}"
        footnote = f"{command}\n{model_line(result.run.path, result.image, result.run.meta, result.run.model)}"
        files = write_outputs(out, result.image, result.prediction, result.summary["prompt"], footnote)
        summary = {**result.summary, "files": files}
        ckpt.write_json_atomic(out / "summary.json", summary)
        return summary
