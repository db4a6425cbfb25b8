"""The tables of `ua-sam reproduce`: per-seed evaluations -> mean and spread -> Markdown.

A row's numbers are the mean and the sample standard deviation (n - 1) over the seeds scored so
far; with one seed the spread is shown as 0. The best mean of Dice, GED and HM-IoU in a table is
bold (ties at the shown 3 decimals: all of them), as in the paper. The paper's Dice (LIDC-IDRI / REFUGE2, its Tables 1 and 2) stands beside
each row for orientation only: it was measured on other data, with SAM ViT-B.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .evaluation import METRIC_KEYS

SUMMARY_KEYS = (*METRIC_KEYS, "trainable_parameters", "train_seconds")
# (key, header, which mean is best: max, min or None)
COLUMNS = (
    ("dice", "Dice ↑", max),
    ("ged", "GED ↓", min),
    ("hm_iou", "HM-IoU ↑", max),
    ("diversity", "Diversity", None),
    ("trainable_parameters", "Trainable params", None),
    ("train_seconds", "Train time", None),
)


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """{"seeds", "mean", "std"} of one row's per-seed evaluation records."""
    if not records:
        return {"seeds": [], "mean": {}, "std": {}}
    stats = {key: mean_and_std([float(r[key]) for r in records]) for key in SUMMARY_KEYS}
    return {
        "seeds": [int(r["seed"]) for r in records],
        "mean": {key: m for key, (m, _) in stats.items()},
        "std": {key: s for key, (_, s) in stats.items()},
    }


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def _cell(key: str, mean: float, std: float) -> str:
    if key == "trainable_parameters":
        return _count(mean)
    if key == "train_seconds":
        return f"{mean:.0f} ± {std:.0f} s"
    return f"{mean:.3f} ± {std:.3f}"


def markdown_table(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, Any], tuple[float, float] | None]],
    note: str = "",
) -> str:
    """A Markdown table.

    Args:
        title: the heading (a level-3 Markdown heading).
        rows: (method, `summarize` output, paper Dice (LIDC, REFUGE2) or None) per row; a row
            with no seeds yet reads "not run yet".
        note: a paragraph under the table.
    """
    with_paper = any(paper is not None for _, _, paper in rows)
    headers = ["Method", *(header for _, header, _ in COLUMNS)] + (["Paper Dice (LIDC / REFUGE2)"] if with_paper else [])
    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    best = {}
    for key, _, pick in COLUMNS:
        means = [round(summary["mean"][key], 3) for _, summary, _ in rows if summary["seeds"]]
        if pick is not None and len(means) > 1:
            best[key] = pick(means)
    for method, summary, paper in rows:
        if summary["seeds"]:
            cells = []
            for key, _, _ in COLUMNS:
                text = _cell(key, summary["mean"][key], summary["std"][key])
                cells.append(f"**{text}**" if best.get(key) == round(summary["mean"][key], 3) else text)
        else:
            cells = ["not run yet"] + [""] * (len(COLUMNS) - 1)
        if with_paper:
            cells.append("" if paper is None else f"{paper[0]:.3f} / {paper[1]:.3f}")
        lines.append("| " + " | ".join([method, *cells]) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"
