"""`UncertaintySamPredictor`: set an image once, then click, and get K plausible masks and the
pixelwise uncertainty (the paper's inference, with segment-anything's ``SamPredictor`` workflow).

`set_image` does the expensive part once: the prior P(z|X) gives K latent samples and the
adapted image encoder embeds the image under all K of them in one batched forward (block 0 runs
once, DESIGN.md section 3); the K embeddings are cached. Every `predict` then runs only SAM's
prompt encoder and mask decoder on the cached embeddings, so a second click on the same image
costs the decoder alone. The K probability maps give the uncertainty maps of
`uncertainty_adapters.uncertainty.uncertainty_maps` (mean probability, variance, entropy).

Geometry. The model takes a square S x S input (S = ``model.image_size``). An H x W image is
resized to S x S without keeping its aspect ratio (bilinear, antialiased: the resize the
training data went through, ``integrations.data.transforms.resize_image``); the logits are
resized back to H x W (bilinear, as ``Sam.postprocess_masks`` does) before the masks and maps
are computed, so everything returned is at the original size. Prompts are given in pixels of the
ORIGINAL image, (x, y) = (column, row), integer (x, y) naming pixel [y, x], and are mapped pixel
centre to pixel centre:

    x_model = (x + 0.5) * S / W - 0.5        y_model = (y + 0.5) * S / H - 0.5

that is, x scales by S / W and y by S / H about the pixel centres (SAM's prompt encoder adds the
0.5 back). Boxes (x0, y0, x1, y1), corners on the first and last pixels inside, map corner by
corner the same way.

    predictor = UncertaintySamPredictor(model)
    predictor.set_image(image, num_samples=4, seed=0)     # (H, W) or (H, W, 3), uint8 or [0, 1]
    out = predictor.predict(point_coords=[[120, 80]])     # label 1 (foreground) by default
    out.masks, out.entropy                                # (4, H, W) bool, (H, W) bits
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from uncertainty_adapters.uncertainty import uncertainty_maps

from .model import UncertaintySam
from .prompts import Prompts

__all__ = ["UncertaintyPrediction", "UncertaintySamPredictor"]


@dataclass
class UncertaintyPrediction:
    """K hypotheses for one prompt, and their uncertainty maps, at the original image size.

    numpy arrays from `UncertaintySamPredictor.predict`, torch tensors from ``predict_torch``.

    Attributes:
        masks: (K, H, W) bool, the K sampled masks (logits > 0, probability > 0.5).
        logits: (K, H, W) float32 mask logits.
        mean: (H, W) mean foreground probability across the K samples.
        variance: (H, W) variance of the foreground probability across the samples (in [0, 0.25]).
        entropy: (H, W) binary entropy of the mean probability, in bits (in [0, 1]).
        z: (K, C) the latent samples, or None for interactions without a latent.
    """

    masks: Any
    logits: Any
    mean: Any
    variance: Any
    entropy: Any
    z: Any

    @property
    def num_samples(self) -> int:
        return int(self.masks.shape[0])

    @property
    def mean_mask(self) -> Any:
        """(H, W) bool: mean probability > 0.5."""
        return self.mean > 0.5

    def numpy(self) -> "UncertaintyPrediction":
        """A copy holding numpy arrays (on the CPU)."""
        def convert(value: Any) -> Any:
            return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value

        return UncertaintyPrediction(**{f.name: convert(getattr(self, f.name)) for f in fields(self)})


def _image_tensor(image: Any, image_format: str = "RGB") -> torch.Tensor:
    """An image as users have it -> (3, H, W) float32 in [0, 1].

    Args:
        image: numpy array, torch tensor or PIL image, channels last: (H, W) grayscale,
            (H, W, 1), (H, W, 3) colour or (H, W, 4) (alpha dropped). dtype uint8 (0-255) or
            floating point in [0, 1]; anything else is refused with a hint.
        image_format: 'RGB' or 'BGR' (OpenCV's order) for colour images.

    Raises:
        ValueError: the shape, dtype or value range does not fit.
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))):
        hint = (
            "; it looks channels-first: pass image.transpose(1, 2, 0)"
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) else ""
        )
        raise ValueError(
            f"image must be (H, W) grayscale or (H, W, 3) colour, channels last, got shape "
            f"{tuple(array.shape)}{hint}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image is empty: shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("image holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"a floating-point image must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                f"scale it first (e.g. image / image.max(), or window CT values to [0, 1])"
            )
        scaled = array.astype(np.float32)
    else:
        raise ValueError(
            f"image dtype {array.dtype} is not supported: pass uint8 (0-255) or floats in [0, 1], "
            f"e.g. (image / image.max()).astype(np.float32) for 16-bit data"
        )
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    scaled = scaled[..., :3]
    if image_format == "BGR" and scaled.shape[-1] == 3:
        scaled = scaled[..., ::-1]
    tensor = torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1)
    return tensor.expand(3, -1, -1).contiguous()


def check_inside(coords: Any, size: tuple[int, int], what: str = "point") -> None:
    """Raise ValueError unless every (x, y) in ``coords`` (N, 2) lies on the pixel grid of an
    image of ``size`` (H, W): x in [0, W - 1], y in [0, H - 1]."""
    height, width = size
    for x, y in np.asarray(coords, dtype=np.float64).reshape(-1, 2):
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise ValueError(
                f"{what} (x, y) = ({x:g}, {y:g}) lies outside the image of {width} x {height} "
                f"pixels: x must be in [0, {width - 1}] and y in [0, {height - 1}] (pixels of the "
                f"original image, x = column, y = row)"
            )


class UncertaintySamPredictor:
    """Interactive UA-SAM inference: `set_image` once (K samples), then `predict` per prompt.

    Args:
        model: a trained `UncertaintySam` (e.g. from ``pipeline.run_dir.load_run``); it is used
            as it is (device, dtype, eval mode), and never modified.

    Example:
        model, _ = load_run("ua-sam-demo")                  # integrations.pipeline.run_dir
        predictor = UncertaintySamPredictor(model)
        predictor.set_image(image, num_samples=4, seed=0)   # the encoder runs here, once
        first = predictor.predict(point_coords=[[120, 80]])
        second = predictor.predict(box=[90, 60, 160, 110])  # decoder only
        first.masks.shape, first.entropy.shape              # (4, H, W), (H, W)
    """

    def __init__(self, model: UncertaintySam) -> None:
        if not isinstance(model, UncertaintySam):
            raise TypeError(f"UncertaintySamPredictor needs an UncertaintySam, got {type(model).__name__}")
        self.model = model
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @property
    def image_size(self) -> int:
        """S: the side of the model's square input."""
        return self.model.image_size

    @property
    def is_image_set(self) -> bool:
        return self._embeddings is not None

    @property
    def original_size(self) -> tuple[int, int] | None:
        """(H, W) of the image given to `set_image`, or None."""
        return self._original_size

    @property
    def num_samples(self) -> int | None:
        """K of the image that is set, or None."""
        return None if self._embeddings is None else int(self._embeddings.shape[0])

    @property
    def latents(self) -> torch.Tensor | None:
        """(K, C) the latent samples of the image that is set (None without a latent)."""
        return self._z

    def reset_image(self) -> None:
        """Forget the image and its cached embeddings."""
        self._embeddings: torch.Tensor | None = None
        self._z: torch.Tensor | None = None
        self._original_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image: Any, num_samples: int = 4, seed: int | None = None, image_format: str = "RGB") -> None:
        """Draw K latent samples for ``image`` and cache its K image embeddings (one batched
        encoder forward).

        Args:
            image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array/tensor/PIL image, uint8 or
                floats in [0, 1]; RGBA loses its alpha. Any size: resized to S x S.
            num_samples: K >= 1 hypotheses.
            seed: fixes the K samples (drawn on the CPU, so the same seed gives the same samples
                on every device); None: torch's global random state.
            image_format: 'RGB' or 'BGR'.

        Raises:
            ValueError: K < 1, or an image of the wrong shape, dtype or range.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples (K) must be a positive integer, got {num_samples!r}")
        pixels = _image_tensor(image, image_format)
        self.reset_image()
        size = self.image_size
        x = pixels[None].to(self.device, self.model.pixel_mean.dtype)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        z = self._sample_latents(x, num_samples, seed)
        encoder_z = z if z is not None else x.new_zeros(1, num_samples, self.model.config.latent_dim)
        # clone: under compile_for_sampling the encoder's output lives in a CUDA-graph buffer
        self._embeddings = self.model.encode(x, encoder_z).clone()
        self._z = z[0] if z is not None else None
        self._original_size = (int(pixels.shape[1]), int(pixels.shape[2]))

    def _sample_latents(self, x: torch.Tensor, k: int, seed: int | None) -> torch.Tensor | None:
        """(1, K, C) samples of the prior P(z|X), or None for interactions without a latent."""
        heads = self.model.latent_heads
        if heads is None:
            return None
        # a CPU generator (the global one without a seed): the samples do not depend on the device
        generator = torch.Generator().manual_seed(seed) if seed is not None else torch.default_generator
        return heads.prior(x).rsample(k, generator=generator)

    def get_image_embedding(self) -> torch.Tensor:
        """(K, prompt_embed_dim, S / p, S / p): the cached embeddings, one per latent sample."""
        self._require_image()
        return self._embeddings

    # -- prompts ---------------------------------------------------------------------------
    def transform_coords(self, coords: Any) -> np.ndarray:
        """(..., 2) pixel (x, y) of the original image -> the model's S x S input (float64);
        see the module docstring for the formula."""
        self._require_image()
        height, width = self._original_size
        scale = np.array([self.image_size / width, self.image_size / height])
        return (np.asarray(coords, dtype=np.float64) + 0.5) * scale - 0.5

    def transform_prompts(
        self, point_coords: Any = None, point_labels: Any = None, box: Any = None
    ) -> Prompts:
        """Check prompts in original-image pixels and map them to the model's input frame.

        Args:
            point_coords: (N, 2) pixel (x, y), or one (x, y); None for a box alone.
            point_labels: (N,) 1 (foreground) or 0 (background); None: all 1.
            box: (x0, y0, x1, y1) pixels, corners inclusive; None for points alone.

        Returns:
            `Prompts` with batch 1 in pixels of the S x S input.

        Raises:
            ValueError: no prompt, malformed arrays, labels other than 0/1, or a point or box
                outside the image.
        """
        self._require_image()
        if point_coords is None and box is None:
            raise ValueError("give point_coords (x, y pixels) and/or a box (x0, y0, x1, y1)")
        if point_coords is None and point_labels is not None:
            raise ValueError("point_labels were given without point_coords")
        points = labels = boxes = None
        if point_coords is not None:
            coords = np.asarray(point_coords, dtype=np.float64)
            coords = coords[None] if coords.shape == (2,) else coords
            if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
                raise ValueError(f"point_coords must be (N, 2) pixel (x, y) with N >= 1, got shape {coords.shape}")
            check_inside(coords, self._original_size, "point")
            labels_array = np.ones(len(coords)) if point_labels is None else np.asarray(point_labels).reshape(-1)
            if labels_array.shape != (len(coords),) or not np.isin(labels_array, (0, 1)).all():
                raise ValueError(
                    f"point_labels must hold one label per point, 1 (foreground) or 0 (background): "
                    f"{len(coords)} point(s), got {np.asarray(point_labels).tolist()}"
                )
            points = torch.as_tensor(self.transform_coords(coords), dtype=torch.float32)[None]
            labels = torch.as_tensor(labels_array, dtype=torch.int64)[None]
        if box is not None:
            corners = np.asarray(box, dtype=np.float64)
            if corners.size != 4:
                raise ValueError(f"box must be (x0, y0, x1, y1) pixels, got shape {corners.shape}")
            corners = corners.reshape(2, 2)
            check_inside(corners, self._original_size, "box corner")
            if (corners[0] > corners[1]).any():
                raise ValueError(f"box must have x0 <= x1 and y0 <= y1, got {corners.reshape(-1).tolist()}")
            boxes = torch.as_tensor(self.transform_coords(corners).reshape(1, 4), dtype=torch.float32)
        return Prompts(points=points, labels=labels, boxes=boxes)

    # -- prediction ------------------------------------------------------------------------
    def predict(self, point_coords: Any = None, point_labels: Any = None, box: Any = None) -> UncertaintyPrediction:
        """K masks and the uncertainty maps for one prompt set on the image that is set.

        Runs only the prompt encoder and the mask decoder (on the K cached embeddings).

        Args:
            point_coords: (N, 2) pixel (x, y) of the original image, or one (x, y).
            point_labels: (N,) 1 foreground / 0 background; None: all foreground.
            box: (x0, y0, x1, y1) pixels of the original image.

        Returns:
            `UncertaintyPrediction` of numpy arrays at the original size (H, W).

        Raises:
            RuntimeError: no image was set. ValueError: see `transform_prompts`.
        """
        return self.predict_torch(self.transform_prompts(point_coords, point_labels, box)).numpy()

    @torch.no_grad()
    def predict_torch(self, prompts: Prompts) -> UncertaintyPrediction:
        """Like `predict`, for one prompt set already in the model's S x S frame (see
        `transform_prompts`); returns torch tensors on the model's device."""
        self._require_image()
        if prompts.batch_size != 1:
            raise ValueError(f"give one prompt set (batch 1) for the image that is set, got {prompts.batch_size}")
        k = self._embeddings.shape[0]
        logits = self.model.decode(self._embeddings, prompts.repeat_interleave(k)).float()
        if tuple(logits.shape[-2:]) != self._original_size:
            logits = F.interpolate(logits, size=self._original_size, mode="bilinear", align_corners=False)
        logits = logits[:, 0]
        maps = uncertainty_maps(logits.sigmoid()[None])
        return UncertaintyPrediction(
            masks=logits > 0,
            logits=logits,
            mean=maps["mean"][0],
            variance=maps["variance"][0],
            entropy=maps["entropy"][0],
            z=self._z,
        )

    def _require_image(self) -> None:
        if self._embeddings is None:
            raise RuntimeError("no image is set: call set_image(image, num_samples=K) before predicting")
