"""The tables of `ua-sam reproduce`: per-seed evaluations -> mean, spread, interval -> Markdown.

A row's numbers are the mean and the sample standard deviation (n - 1) over the seeds scored so
far (with one seed the spread is shown as 0), and under them the 95% bootstrap interval over the
test images of all those seeds pooled (`bootstrap.bootstrap_interval`, seed 0): the spread says
how much a row moves with the training seed, the interval how much it moves with the test images.
The best mean of Dice, GED, HM-IoU, S_NCC, soft Dice and ECE in a table is bold (ties at the shown
3 decimals: all of them), as in the paper. S_NCC is undefined for a model whose samples never
vary (Adapter-SAM): its cell reads "undefined". The paper's Dice (LIDC-IDRI / REFUGE2, its Tables
1 and 2) stands beside each row for orientation only: it was measured on other data, with SAM
ViT-B.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from uncertainty_adapters.integrations.pipeline.evaluation.bootstrap import bootstrap_interval
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import METRIC_KEYS

SUMMARY_KEYS = (*METRIC_KEYS, "trainable_parameters", "train_seconds")
# (key, header, which mean is best: max, min or None); "{K}" / "{N}" name the sample counts
COLUMNS = (
    ("dice", "Dice (K = {K}) ↑", max),
    ("ged", "GED (N = {N}) ↓", min),
    ("hm_iou", "HM-IoU ↑", max),
    ("diversity", "Diversity", None),
    ("s_ncc", "S_NCC ↑", max),
    ("soft_dice", "Soft Dice ↑", max),
    ("ece", "ECE ↓", min),
    ("trainable_parameters", "Trainable params", None),
    ("train_seconds", "Train time", None),
)


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _defined(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """{"seeds", "mean", "std", "ci95"} of one row's per-seed evaluation records.

    A metric missing or undefined (None) in a record is left out of its mean and spread; a metric
    defined in no record has mean and spread None. ``ci95`` pools the records' ``per_image``
    values (absent in records written before it existed: then None).
    """
    if not records:
        return {"seeds": [], "mean": {}, "std": {}, "ci95": {}}
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for key in SUMMARY_KEYS:
        values = [float(r[key]) for r in records if _defined(r.get(key))]
        mean[key], std[key] = mean_and_std(values) if values else (None, None)
    intervals: dict[str, list[float] | None] = {}
    for key in METRIC_KEYS:
        pooled = [v for r in records for v in (r.get("per_image") or {}).get(key, []) if _defined(v)]
        intervals[key] = bootstrap_interval(pooled) if pooled else None
    return {"seeds": [int(r["seed"]) for r in records], "mean": mean, "std": std, "ci95": intervals}


def _count(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def _cell(key: str, mean: float | None, std: float | None, interval: list[float] | None = None) -> str:
    if mean is None:
        return "undefined" if key == "s_ncc" else "n/a"
    if key == "trainable_parameters":
        return _count(mean)
    if key == "train_seconds":
        return f"{mean:.0f} ± {std:.0f} s"
    text = f"{mean:.3f} ± {std:.3f}"
    return f"{text}<br>[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def markdown_table(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, Any], tuple[float, float] | None]],
    note: str = "",
    samples: int | str = "K",
    ged_samples: int | str = "N",
) -> str:
    """A Markdown table.

    Args:
        title: the heading (a level-3 Markdown heading).
        rows: (method, `summarize` output, paper Dice (LIDC, REFUGE2) or None) per row; a row
            with no seeds yet reads "not run yet".
        note: a paragraph under the table.
        samples, ged_samples: K (the Dice vote) and N (the other metrics), shown in the headers.
    """
    with_paper = any(paper is not None for _, _, paper in rows)
    headers = ["Method", *(header.format(K=samples, N=ged_samples) for _, header, _ in COLUMNS)]
    headers += ["Paper Dice (LIDC / REFUGE2)"] if with_paper else []
    lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    best = {}
    for key, _, pick in COLUMNS:
        means = [round(summary["mean"][key], 3) for _, summary, _ in rows
                 if summary["seeds"] and summary["mean"].get(key) is not None]
        if pick is not None and len(means) > 1:
            best[key] = pick(means)
    for method, summary, paper in rows:
        if summary["seeds"]:
            cells = []
            for key, _, _ in COLUMNS:
                mean = summary["mean"].get(key)
                text = _cell(key, mean, summary["std"].get(key), summary.get("ci95", {}).get(key))
                bold = mean is not None and best.get(key) == round(mean, 3)
                cells.append(f"**{text}**" if bold else text)
        else:
            cells = ["not run yet"] + [""] * (len(COLUMNS) - 1)
        if with_paper:
            cells.append("" if paper is None else f"{paper[0]:.3f} / {paper[1]:.3f}")
        lines.append("| " + " | ".join([method, *cells]) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"
