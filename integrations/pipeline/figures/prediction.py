"""The pictures of `ua-sam predict`: the overlay (image, mean-mask contour, uncertainty heat map,
prompt, colour bar and legend), one picture per sampled mask, and the entropy map.

Every picture shows the whole image at its original size with its axes in pixels (the frame
the ``--point``/``--box`` coordinates are given in), so the next prompt can be read off it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from uncertainty_adapters.integrations.pipeline.figures.canvas import new_figure, save_png

ENTROPY_LABEL = "uncertainty: entropy of the mean probability (bits)"
_SHOWN_ENTROPY = 0.05  # below this the heat map is transparent, so the image shows through
_CONTOUR = "cyan"
_SAMPLE_FILL = "#ff7f0e"
_PROMPT = "lime"
_NEGATIVE = "red"
_LONG_SIDE_INCHES = 5.5
_DPI = 120


def _figure(height: int, width: int) -> tuple[Any, Any]:
    scale = _LONG_SIDE_INCHES / max(height, width)
    fig = new_figure(figsize=(max(width * scale, 3.0) + 1.6, max(height * scale, 3.0) + 1.4))
    ax = fig.subplots()
    ax.set_xlabel("x (pixels)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)
    return fig, ax


def _interpolation(image: np.ndarray) -> str:
    """Small images are shown with square pixels, large ones smoothly."""
    return "nearest" if max(image.shape[:2]) < 400 else "antialiased"


def _show_image(ax: Any, image: np.ndarray) -> None:
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation=_interpolation(image))
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation=_interpolation(image))


def _draw_prompt(ax: Any, prompt: dict[str, Any]) -> list[Any]:
    """Draw the prompt (original-image pixels): a box, and points with labels 1 (foreground) or
    0 (background), given as summary.json records them (``box``; ``point`` with ``label``, or
    ``points`` with ``labels``); returns the legend handles."""
    handles = []
    if "box" in prompt:
        x0, y0, x1, y1 = prompt["box"]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                               edgecolor=_PROMPT, linewidth=2))
        handles.append(Patch(facecolor="none", edgecolor=_PROMPT, linewidth=2, label="prompt: box"))
    points = prompt["points"] if "points" in prompt else [prompt["point"]] if "point" in prompt else []
    labels = prompt.get("labels", [prompt.get("label", 1)] * len(points))
    for wanted, colour, label in ((1, _PROMPT, "prompt: foreground point"), (0, _NEGATIVE, "prompt: background point")):
        chosen = [point for point, given in zip(points, labels) if given == wanted]
        if not chosen:
            continue
        xs, ys = zip(*chosen)
        ax.plot(xs, ys, marker="*", markersize=16, color=colour, markeredgecolor="black", linestyle="none")
        handles.append(Line2D([], [], marker="*", markersize=12, color=colour, markeredgecolor="black",
                              linestyle="none", label=label + ("s" if len(chosen) > 1 else "")))
    return handles


def _draw_contour(ax: Any, field: np.ndarray, colour: str, width: float = 2.0) -> bool:
    """Contour of ``field`` at 0.5 (nothing drawn, False, when it does not cross 0.5)."""
    if not (field.min() < 0.5 < field.max()):
        return False
    contours = ax.contour(field, levels=[0.5], colors=colour, linewidths=width)
    contours.set_path_effects([patheffects.withStroke(linewidth=width + 2, foreground="black")])
    return True


def _entropy_colorbar(fig: Any, ax: Any) -> None:
    """A colour bar for the entropy, 0 to 1 bit, drawn opaque whatever the map's transparency."""
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "inferno"), ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(ENTROPY_LABEL, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def _legend_and_footnote(ax: Any, handles: list[Any], footnote: str) -> None:
    """The legend below the axes, and the footnote (the command) below the legend."""
    legend = ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1),
                       ncol=min(len(handles), 2), fontsize=8, frameon=False)
    if footnote:
        ax.annotate(footnote, xy=(0.5, 0), xycoords=legend, xytext=(0, -4), textcoords="offset points",
                    ha="center", va="top", fontsize=6.5, color="dimgray", annotation_clip=False)


def _save(fig: Any, path: Path) -> Path:
    return save_png(fig, path, dpi=_DPI, bbox_inches="tight", pad_inches=0.15)


def save_overlay(path: str | Path, image: np.ndarray, mean: np.ndarray, entropy: np.ndarray,
                 prompt: dict[str, Any], title: str, footnote: str = "") -> Path:
    """The image, the uncertainty heat map (entropy, transparent where below 0.05 bits), the
    mean-mask contour (mean probability 0.5), the prompt, a colour bar and a legend."""
    fig, ax = _figure(*mean.shape)
    _show_image(ax, image)
    heat = np.ma.masked_less(entropy, _SHOWN_ENTROPY)
    ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.6, interpolation=_interpolation(image))
    _entropy_colorbar(fig, ax)
    handles = []
    if _draw_contour(ax, mean, _CONTOUR):
        handles.append(Line2D([], [], color=_CONTOUR, linewidth=2, label="mean mask (mean probability 0.5)"))
    else:
        where = "empty" if mean.max() <= 0.5 else "the whole image"
        handles.append(Patch(facecolor="none", edgecolor="none", label=f"mean mask: {where}"))
    handles += _draw_prompt(ax, prompt)
    _legend_and_footnote(ax, handles, footnote)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(path))


def save_sample(path: str | Path, image: np.ndarray, mask: np.ndarray, prompt: dict[str, Any],
                title: str, footnote: str = "") -> Path:
    """The image with one sampled mask filled (translucent) and outlined, and the prompt."""
    fig, ax = _figure(*mask.shape)
    _show_image(ax, image)
    fill = np.ma.masked_where(~mask, np.ones(mask.shape))
    ax.imshow(fill, cmap=ListedColormap([_SAMPLE_FILL]), vmin=0, vmax=1, alpha=0.45,
              interpolation="nearest")
    _draw_contour(ax, mask.astype(np.float32), _SAMPLE_FILL, width=1.5)
    handles = [Patch(facecolor=_SAMPLE_FILL, alpha=0.6, label="sampled mask")] + _draw_prompt(ax, prompt)
    _legend_and_footnote(ax, handles, footnote)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(path))


def save_uncertainty(path: str | Path, entropy: np.ndarray, mean: np.ndarray, prompt: dict[str, Any],
                     title: str, footnote: str = "") -> Path:
    """The entropy map alone (0 to 1 bit) with its colour bar, the mean-mask contour and the prompt."""
    fig, ax = _figure(*entropy.shape)
    ax.imshow(entropy, cmap="inferno", vmin=0, vmax=1, interpolation=_interpolation(entropy))
    _entropy_colorbar(fig, ax)
    handles = []
    if _draw_contour(ax, mean, _CONTOUR, width=1.0):
        handles.append(Line2D([], [], color=_CONTOUR, linewidth=1, label="mean mask (mean probability 0.5)"))
    handles += _draw_prompt(ax, prompt)
    _legend_and_footnote(ax, handles, footnote)
    ax.set_title(title, fontsize=9)
    return _save(fig, Path(path))
