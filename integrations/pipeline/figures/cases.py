"""The evaluation figure (in the spirit of the paper's Fig. 2): for a few test cases, the image
with its prompt, every rater's mask, every sampled hypothesis, and the pixelwise uncertainty."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from uncertainty_adapters.integrations.pipeline.figures.canvas import new_figure, save_png
from uncertainty_adapters.uncertainty import uncertainty_maps


def _show_image(ax, image: torch.Tensor) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")


def _draw_prompts(ax, prompts: Any) -> None:
    if getattr(prompts, "points", None) is not None:
        points, labels = prompts.points[0], prompts.labels[0]
        for (x, y), label in zip(points.tolist(), labels.tolist()):
            if label == -1:  # padding ("not a point")
                continue
            ax.plot(x, y, marker="*", markersize=11, color="lime" if label == 1 else "red",
                    markeredgecolor="black", linestyle="none")
    if getattr(prompts, "boxes", None) is not None:
        from matplotlib.patches import Rectangle

        x0, y0, x1, y1 = prompts.boxes[0].tolist()
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.5))


def save_cases_figure(examples: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One row per case: image + prompt | rater 1..R | sample 1..K | mean probability | entropy.

    Args:
        examples: dicts with ``image`` (3, S, S), ``raters`` (R, S, S), ``probabilities``
            (K, S, S) in [0, 1], ``prompts`` (a one-image Prompts) and ``case_id``.
        path: where to write the PNG.
    """
    if not examples:
        raise ValueError("no cases to draw")
    num_raters = examples[0]["raters"].shape[0]
    num_samples = examples[0]["probabilities"].shape[0]
    columns = 1 + num_raters + num_samples + 2
    fig = new_figure(figsize=(1.6 * columns, 1.7 * len(examples) + 0.6))
    axes = fig.subplots(len(examples), columns, squeeze=False)
    for row, case in enumerate(examples):
        maps = uncertainty_maps(case["probabilities"][None])
        panels = (
            [("image + prompt", None)]
            + [(f"rater {r + 1}", case["raters"][r]) for r in range(num_raters)]
            + [(f"sample {k + 1}", (case["probabilities"][k] > 0.5).float()) for k in range(num_samples)]
            + [("mean prob.", maps["mean"][0]), ("entropy (bits)", maps["entropy"][0])]
        )
        for col, (label, data) in enumerate(panels):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label, fontsize=8)
            if col == 0:
                _show_image(ax, case["image"])
                _draw_prompts(ax, case["prompts"])
                ax.set_ylabel(str(case["case_id"]), fontsize=6)
            elif label == "entropy (bits)":
                shown = ax.imshow(data.numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            elif label == "mean prob.":
                shown = ax.imshow(data.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
            else:
                ax.imshow(data.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
