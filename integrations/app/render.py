"""The pictures of the page, drawn with numpy and Pillow so that a click costs milliseconds here:
the clickable canvas (image, prompt, mean-mask contour), the uncertainty heat map with its colour
bar, and one thumbnail per sampled mask. The files of "Download" are `ua-sam predict`'s own
(matplotlib) figures instead.

Every picture is the image at a display scale ``f`` (`display_scale`): image pixel (x, y) sits
at display pixel ((x + 0.5) f - 0.5, (y + 0.5) f - 0.5), and `to_image_pixels` maps back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .prompt import Prompt

__all__ = ["canvas", "display_scale", "heat_map", "thumbnails", "to_image_pixels"]

SHOWN_ENTROPY = 0.05  # as in predict's overlay: below this the heat map is transparent
CONTOUR = (0, 255, 255)
SAMPLE_FILL = (255, 127, 14)
FOREGROUND = (50, 220, 50)
BACKGROUND = (230, 40, 40)
BOX = (50, 220, 50)
THUMBNAIL_SIDE = 224


def display_scale(size: tuple[int, int], min_side: int = 512, max_side: int = 1024) -> float:
    """The factor that brings the long side of an image of ``size`` (H, W) into
    [min_side, max_side]: a whole number when enlarging (crisp pixels), else exact."""
    long_side = max(size)
    if long_side < min_side:
        return float(-(-min_side // long_side))
    if long_side > max_side:
        return max_side / long_side
    return 1.0


def to_image_pixels(x: float, y: float, scale: float) -> tuple[float, float]:
    """Display pixel (x, y) at ``scale`` -> pixel of the image as read."""
    return (x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) floats in [0, 1] -> (H, W, 3) uint8."""
    image = np.clip(pixels, 0, 1) * 255
    image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image[..., :3]
    return np.round(image).astype(np.uint8)


def _resize(array: np.ndarray, scale: float) -> np.ndarray:
    height, width = array.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if array.dtype == np.uint8:
        resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
        return np.asarray(Image.fromarray(array).resize(size, resample))
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.BILINEAR))


def _paint_contour(image: np.ndarray, field: np.ndarray, colour: tuple[int, int, int]) -> None:
    """Draw the 0.5 level of ``field`` (already at display size) on ``image`` in place: a
    3-pixel line in ``colour`` on a black rim."""
    mask = field > 0.5
    if not mask.any() or mask.all():
        return
    edge = mask & ~ndimage.binary_erosion(mask, border_value=1)
    image[ndimage.binary_dilation(edge, iterations=2)] = 0
    image[ndimage.binary_dilation(edge, iterations=1)] = colour


def _draw_prompt(image: np.ndarray, prompt: Prompt, scale: float) -> np.ndarray:
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)

    def at(x: float, y: float) -> tuple[float, float]:
        return (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5

    if prompt.box is not None:
        (x0, y0), (x1, y1) = at(*prompt.box[:2]), at(*prompt.box[2:])
        half = scale / 2
        corners = [x0 - half, y0 - half, x1 + half, y1 + half]
        draw.rectangle(corners, outline=(0, 0, 0), width=5)
        draw.rectangle(corners, outline=BOX, width=3)
    radius = 7
    for (x, y), label in zip(prompt.points, prompt.labels):
        cx, cy = at(x, y)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                     fill=FOREGROUND if label == 1 else BACKGROUND, outline=(0, 0, 0), width=2)
    return np.asarray(canvas)


def canvas(pixels: np.ndarray, prompt: Prompt, scale: float, mean: np.ndarray | None = None) -> np.ndarray:
    """(h, w, 3) uint8: the image at ``scale``, the mean-mask contour (mean probability 0.5,
    cyan) when ``mean`` (H, W) is given, and the prompt (green: foreground points and box,
    red: background points)."""
    image = _resize(_rgb(pixels), scale).copy()
    if mean is not None:
        _paint_contour(image, _resize(mean, scale), CONTOUR)
    return _draw_prompt(image, prompt, scale)


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _colour_bar(height: int) -> np.ndarray:
    """(height, 150, 3) uint8: the inferno scale from 0 (bottom) to 1 bit (top), labelled."""
    width, bar_width, top, bottom = 150, 22, 12, 12
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    span = height - top - bottom
    values = np.linspace(1, 0, span)[:, None].repeat(bar_width, axis=1)
    panel.paste(Image.fromarray(_inferno(values)), (10, top))
    draw = ImageDraw.Draw(panel)
    draw.rectangle([10, top, 10 + bar_width, top + span - 1], outline=(0, 0, 0))
    font = _font(13)
    for value in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + (1 - value) * (span - 1)
        draw.line([10 + bar_width, y, 14 + bar_width, y], fill=(0, 0, 0))
        draw.text((18 + bar_width, y), f"{value:g}", fill=(0, 0, 0), font=font, anchor="lm")
    label = Image.new("RGB", (span, 40), (255, 255, 255))
    ImageDraw.Draw(label).multiline_text((span / 2, 20), "uncertainty: entropy of the\nmean probability (bits)",
                                         fill=(0, 0, 0), font=font, anchor="mm", align="center")
    panel.paste(label.rotate(90, expand=True), (72 + bar_width, top))
    return np.asarray(panel)


_INFERNO = np.round(colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _inferno(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> (..., 3) uint8 colours of matplotlib's inferno (256 levels)."""
    return _INFERNO[np.round(np.clip(values, 0, 1) * 255).astype(np.intp)]


def heat_map(pixels: np.ndarray, entropy: np.ndarray, mean: np.ndarray, scale: float) -> np.ndarray:
    """(h, w + 150, 3) uint8: the image with the entropy (0 to 1 bit, inferno, 60 % opaque,
    transparent below 0.05 bits) and the mean-mask contour over it, and the colour bar."""
    image = _resize(_rgb(pixels), scale).astype(np.float32)
    shown = _resize(entropy, scale)
    colours = _inferno(shown).astype(np.float32)
    alpha = np.where(shown >= SHOWN_ENTROPY, 0.6, 0.0)[..., None]
    blended = np.round(image * (1 - alpha) + colours * alpha).astype(np.uint8)
    _paint_contour(blended, _resize(mean, scale), CONTOUR)
    return np.concatenate([blended, _colour_bar(blended.shape[0])], axis=1)


def thumbnails(pixels: np.ndarray, masks: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """One (picture, caption) per sampled mask (K, H, W) bool: the image with the mask filled
    (orange, 45 % opaque) and outlined, the long side THUMBNAIL_SIDE pixels."""
    scale = THUMBNAIL_SIDE / max(pixels.shape[:2])
    image = _resize(_rgb(pixels), scale).astype(np.float32)
    fill = np.array(SAMPLE_FILL, dtype=np.float32)
    out = []
    for index, mask in enumerate(masks):
        shown = _resize(mask.astype(np.float32), scale) > 0.5
        picture = image.copy()
        picture[shown] = picture[shown] * 0.55 + fill * 0.45
        picture = np.round(picture).astype(np.uint8)
        _paint_contour(picture, shown.astype(np.float32), SAMPLE_FILL)
        out.append((picture, f"{index + 1}: {int(mask.sum())} px"))
    return out
