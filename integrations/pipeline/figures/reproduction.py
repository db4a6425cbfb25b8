"""The figures of `ua-sam reproduce`: a comparison of methods on test cases in the layout of the
paper's Fig. 2 (rows: cases; columns: image, raters, the K samples of each method), and the
latent-dimension curve of its Fig. 3a (metric against C, mean and spread over seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from uncertainty_adapters.integrations.pipeline.figures.canvas import new_figure, save_png


def save_comparison_figure(
    images: torch.Tensor,
    raters: torch.Tensor,
    methods: Sequence[tuple[str, torch.Tensor]],
    path: str | Path,
    title: str = "",
    points: torch.Tensor | None = None,
    case_ids: Sequence[str] | None = None,
) -> Path:
    """One row per case: image (+ prompt) | rater 1..R | method 1 sample 1..K | method 2 ...

    Every panel of a case shows the same square crop around the raters' masks (the metrics, not
    the figure, account for anything a method draws outside it).

    Args:
        images: (N, 3, S, S) in [0, 1].
        raters: (N, R, S, S) binary.
        methods: (name, probabilities (N, K, S, S) in [0, 1]) per method; samples are p > 0.5.
        path: where to write the PNG.
        points: (N, P, 2) prompt points (x, y) drawn on the image, or None.
        case_ids: row labels.
    """
    cases, num_raters = images.shape[0], raters.shape[1]
    columns = 1 + num_raters + sum(probs.shape[1] for _, probs in methods)
    size = 1.05
    fig = new_figure(figsize=(size * columns, size * cases + 0.8))
    axes = fig.subplots(cases, columns, squeeze=False)
    for row in range(cases):
        top, left, side = _crop_box((raters[row] > 0.5).any(0))
        window = (slice(top, top + side), slice(left, left + side))
        panels = [("image", None)] + [(f"rater {r + 1}", raters[row, r]) for r in range(num_raters)]
        for name, probs in methods:
            panels += [(f"{name} {k + 1}" if k == 0 else str(k + 1), probs[row, k] > 0.5) for k in range(probs.shape[1])]
        for col, (label, data) in enumerate(panels):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=6)
            if data is None:
                ax.imshow(images[row].permute(1, 2, 0).clamp(0, 1)[window].numpy(), interpolation="nearest")
                if points is not None:
                    ax.plot(points[row, :, 0].numpy() - left, points[row, :, 1].numpy() - top, marker="*",
                            markersize=6, color="lime", markeredgecolor="black", markeredgewidth=0.4, linestyle="none")
                    ax.set_xlim(-0.5, side - 0.5)
                    ax.set_ylim(side - 0.5, -0.5)
                if case_ids is not None:
                    ax.set_ylabel(str(case_ids[row])[-5:], fontsize=6)
            else:
                ax.imshow(data.float()[window].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3, w_pad=0.1, h_pad=0.2)
    return save_png(fig, path, dpi=120)


def _crop_box(foreground: torch.Tensor, margin: float = 0.4, smallest: int = 24) -> tuple[int, int, int]:
    """(top, left, side) of a square around every foreground pixel (plus ``margin`` of its size,
    at least ``smallest`` px), inside the image; the whole image when nothing is foreground."""
    size = foreground.shape[-1]
    rows, cols = foreground.any(1).nonzero().flatten(), foreground.any(0).nonzero().flatten()
    if rows.numel() == 0:
        return 0, 0, size
    extent = max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) + 1
    side = min(size, max(smallest, int(extent * (1 + 2 * margin))))
    centre_y, centre_x = (int(rows[0]) + int(rows[-1])) // 2, (int(cols[0]) + int(cols[-1])) // 2
    top = min(max(centre_y - side // 2, 0), size - side)
    left = min(max(centre_x - side // 2, 0), size - side)
    return top, left, side


def save_latent_dim_plot(
    dims: Sequence[int],
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "",
) -> Path:
    """One panel per metric: mean against the latent dimension C, with +-1 std error bars.

    Args:
        dims: the latent dimensions C (x axis).
        curves: (metric name, means, stds) per panel, aligned with ``dims``.
    """
    fig = new_figure(figsize=(2.6 * len(curves), 2.6))
    axes = fig.subplots(1, len(curves), squeeze=False)
    for ax, (name, means, stds) in zip(axes[0], curves):
        ax.errorbar(list(dims), list(means), yerr=list(stds), marker="o", capsize=3)
        ax.set_xticks(list(dims))
        ax.set_xlabel("latent dimension C")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=120)
