"""Evaluating UA-SAM the paper's way and the field's way (section 3.3, DESIGN.md section 7).

For every test image: one prompt (a point sampled from the raters' majority vote, falling back
to their union, then to the image centre with label 0), then max(K, N) hypotheses drawn from the
prior by `draw_samples` (one encoder pass per image serves them all), scored against the raters:

- the paper's Dice: the majority vote of the first K samples (``num_samples``: 4 on LIDC, 3 on
  REFUGE2) against the majority vote of the raters;
- on the first N samples (``ged_samples``, 16 by default as in the literature; 100 also):
  GED, Hungarian-matched IoU, diversity, S_NCC, soft Dice and ECE (`uncertainty_adapters.metrics`).

`metrics.json` carries the pinned keys ``dice``, ``ged``, ``hm_iou``, ``diversity``, ``samples``
(K), ``s_ncc``, ``soft_dice``, ``ece``, ``ged_samples`` (N) and ``ci95`` (a 95% percentile
bootstrap interval over the test images for every metric, 1000 resamples, seeded). S_NCC, soft
Dice and ECE read the samples' probabilities (S_NCC as PHiSeg does, on softmax outputs); the other
metrics read the masks (probability > 0.5). S_NCC is undefined (NaN) on an image whose
cross-entropy maps are constant (e.g. identical samples saturated at 0 / 1); its mean and interval
are over the images where it is defined, counted in ``s_ncc_images`` (None when there are none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters import metrics
from uncertainty_adapters.integrations.pipeline.evaluation.bootstrap import CONFIDENCE, RESAMPLES, bootstrap_interval
from uncertainty_adapters.integrations.pipeline.evaluation.sample_drawing import DEFAULT_MAX_ROWS, draw_samples
from uncertainty_adapters.integrations.pipeline.evaluation.sample_files import (
    SAMPLES_DIR,
    case_file_name,
    save_case_samples,
)
from uncertainty_adapters.integrations.pipeline.training.seeding import generator_for
from uncertainty_adapters.integrations.sam.prompts import Prompts, make_prompts

METRIC_KEYS = ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece")
DEFAULT_GED_SAMPLES = 16
_EVAL_STREAM = 0xE7A1


@dataclass
class EvaluationResult:
    """Per-image metric values (num_images,) and, for figures, the first few cases.

    Attributes:
        samples: K, the samples of the majority-vote Dice.
        ged_samples: N, the samples of every other metric.
        per_image: metric name -> (num_images,) float32 (S_NCC: NaN where undefined).
        case_ids: the images' case names, in order.
        examples: the first cases, each with its first K probabilities.
        seed: the evaluation's seed (also seeds the bootstrap).
    """

    samples: int
    per_image: dict[str, torch.Tensor]
    case_ids: list[str]
    examples: list[dict[str, Any]] = field(default_factory=list)
    ged_samples: int = DEFAULT_GED_SAMPLES
    seed: int = 0

    def summary(self) -> dict[str, Any]:
        """The pinned metrics.json content: means, 95% bootstrap intervals, spreads and counts.

        Means and spreads skip NaN values (S_NCC's undefined images); a metric defined on no
        image is None.
        """
        out: dict[str, Any] = {}
        std: dict[str, float | None] = {}
        intervals: dict[str, list[float] | None] = {}
        for key in METRIC_KEYS:
            values = self.per_image[key].double()
            defined = values[~values.isnan()]
            out[key] = float(defined.mean()) if defined.numel() else None
            std[key] = float(defined.std(unbiased=False)) if defined.numel() else None
            intervals[key] = bootstrap_interval(values, seed=self.seed)
        out["samples"] = self.samples
        out["ged_samples"] = self.ged_samples
        out["num_images"] = len(self.case_ids)
        out["s_ncc_images"] = int((~self.per_image["s_ncc"].isnan()).sum())
        out["std"] = std
        out["ci95"] = intervals
        out["bootstrap"] = {"resamples": RESAMPLES, "confidence": CONFIDENCE, "seed": self.seed,
                            "unit": "test image", "method": "percentile"}
        return out


def score_samples(probabilities: torch.Tensor, raters: torch.Tensor, num_samples: int,
                  ged_samples: int) -> dict[str, torch.Tensor]:
    """Every metric of one batch, per image.

    Args:
        probabilities: (B, M, S, S) foreground probabilities, M >= max(K, N).
        raters: (B, R, S, S) binary rater masks.
        num_samples: K, the first K samples vote for Dice.
        ged_samples: N, the first N samples serve every other metric.

    Returns:
        metric name (`METRIC_KEYS`) -> (B,) float32.
    """
    masks = probabilities > 0.5
    first_n, probs_n = masks[:, :ged_samples], probabilities[:, :ged_samples]
    return {
        "dice": metrics.dice(masks[:, :num_samples], raters),
        "ged": metrics.ged(first_n, raters),
        "hm_iou": metrics.hungarian_iou(first_n, raters),
        "diversity": metrics.diversity(first_n),
        "s_ncc": metrics.s_ncc(probs_n, raters),
        "soft_dice": metrics.soft_dice(probs_n, raters),
        "ece": metrics.ece(probs_n, raters),
    }


def rater_diversities(dataset: Dataset) -> tuple[list[str], torch.Tensor]:
    """The images' case names (``case_id``) and the raters' own diversity per image of
    ``dataset``, (N,): the mean pairwise (1 - IoU) among the image's rater masks (``masks``,
    (R, S, S)); what the samples' diversity is read against. One pass over the items."""
    names, values = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        names.append(item["case_id"])
        values.append(metrics.diversity(item["masks"][None] > 0.5))
    return names, torch.cat(values)


def rater_diversity(dataset: Dataset) -> float:
    """The raters' own diversity over ``dataset``: `rater_diversities` averaged over the images."""
    return float(rater_diversities(dataset)[1].mean())


@torch.no_grad()
def evaluate(
    model: Any,
    dataset: Dataset,
    num_samples: int,
    batch_size: int = 8,
    prompt: str = "point",
    box_jitter: float = 0.0,
    seed: int = 0,
    accelerator: Any | None = None,
    keep_examples: int = 6,
    ged_samples: int = DEFAULT_GED_SAMPLES,
    save_samples_to: str | Path | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> EvaluationResult:
    """Sample hypotheses from the prior and score them against the raters (module docstring).

    Args:
        model: a UA-SAM (unwrapped, on its device), or any model with its sampling interface.
        dataset: multi-rater items (image, masks, majority, case_id).
        num_samples: K, the samples of the majority-vote Dice (paper: 4 on LIDC, 3 on REFUGE2).
        batch_size: images per data batch.
        prompt: "point", "box" or "both"; boxes use ``box_jitter`` (0: the exact box).
        seed: seeds prompts, samples and the bootstrap, per batch, so results repeat exactly.
        accelerator: when given, the data is split over its processes and gathered.
        keep_examples: how many cases to keep (image, raters, first K probabilities, prompts).
        ged_samples: N, the samples of GED, HM-IoU, diversity, S_NCC, soft Dice and ECE.
        save_samples_to: a folder: write ``<case_id>.npz`` per image there (`sample_files`).
        max_rows: most hypotheses decoded in one forward (`draw_samples`).
    """
    for name, value in (("the number of samples K", num_samples), ("--ged-samples N", ged_samples)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    drawn = max(num_samples, ged_samples)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    device = next(model.parameters()).device
    rank = accelerator.process_index if accelerator is not None else 0
    values: dict[str, list[torch.Tensor]] = {key: [] for key in METRIC_KEYS}
    case_ids: list[str] = []
    examples: list[dict[str, Any]] = []
    written: dict[str, str] = {}
    for index, batch in enumerate(loader):
        images = batch["image"].to(device)
        raters = batch["masks"].to(device)
        generator = generator_for(device, seed, _EVAL_STREAM, index, rank)
        union = raters.amax(dim=1, keepdim=True)
        prompts = make_prompts(batch["majority"].to(device), prompt, generator, union, box_jitter)
        probabilities = draw_samples(model, images, prompts, drawn, generator, max_rows)  # (B, M, S, S)
        per_batch = score_samples(probabilities, raters, num_samples, ged_samples)
        ids = list(batch["case_id"])
        if save_samples_to is not None:
            for b, case_id in enumerate(ids):
                _check_unique(written, case_id)
                save_case_samples(save_samples_to, case_id, probabilities[b, :ged_samples], raters[b])
        if accelerator is not None:
            per_batch = accelerator.gather_for_metrics(per_batch)
        for key in METRIC_KEYS:
            values[key].append(per_batch[key].cpu())
        case_ids += accelerator.gather_for_metrics(ids) if accelerator is not None else ids
        for b in range(images.shape[0]):
            if len(examples) >= keep_examples:
                break
            examples.append(
                {
                    "case_id": ids[b],
                    "image": images[b].cpu(),
                    "raters": raters[b].cpu(),
                    "probabilities": probabilities[b, :num_samples].cpu(),
                    "prompts": _select(prompts, b),
                }
            )
    model.train(was_training)
    return EvaluationResult(
        samples=num_samples,
        per_image={key: torch.cat(v) for key, v in values.items()},
        case_ids=case_ids,
        examples=examples,
        ged_samples=ged_samples,
        seed=seed,
    )


def _check_unique(written: dict[str, str], case_id: str) -> None:
    """Refuse two cases that would write the same samples file."""
    name = case_file_name(case_id)
    if written.get(name, case_id) != case_id:
        raise ValueError(
            f"cases {written[name]!r} and {case_id!r} both map to {SAMPLES_DIR}/{name}; give the cases "
            "names that differ in letters, digits, '.', '_' or '-'"
        )
    written[name] = case_id


def _select(prompts: Prompts, index: int) -> Prompts:
    """The prompt set of one image, on the CPU."""
    one = [None if t is None else t[index : index + 1].cpu() for t in (prompts.points, prompts.labels, prompts.boxes)]
    return Prompts(points=one[0], labels=one[1], boxes=one[2])


def write_metrics(path: str | Path, result: EvaluationResult, context: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json: the pinned keys, intervals, spread and count, plus ``context`` (data,
    preset, checkpoint, command). Returns what was written."""
    content = {**result.summary(), **context}
    ckpt.write_json_atomic(path, content)
    return content


_ROWS = (
    ("Dice (majority of K vs raters)", "dice", "higher is better"),
    ("GED (d = 1 - IoU)", "ged", "lower is better"),
    ("HM-IoU (Hungarian-matched)", "hm_iou", "higher is better"),
    ("Diversity (mean pairwise 1 - IoU)", "diversity", "spread of the samples"),
    ("S_NCC (PHiSeg)", "s_ncc", "higher is better"),
    ("Soft Dice (thresholds 0.1..0.9)", "soft_dice", "higher is better"),
    ("ECE (10 bins)", "ece", "lower is better"),
)


def format_table(summary: dict[str, Any], title: str = "UA-SAM") -> str:
    """A fixed-width table of the metrics: mean and 95% bootstrap interval over the images."""
    n = summary.get("ged_samples", summary["samples"])
    intervals = summary.get("ci95", {})
    lines = [
        f"{title}: {summary['num_images']} images; Dice votes K = {summary['samples']} samples, "
        f"the other metrics use N = {n} samples per image; [95% bootstrap interval over images]"
    ]
    width = max(len(label) for label, _, _ in _ROWS)
    for label, key, note in _ROWS:
        if key not in summary:
            continue
        value, interval = summary[key], intervals.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            lines.append(f"  {label:<{width}}  undefined on every image   ({note}; the samples' spread is constant)")
            continue
        shown = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        extra = ""
        if key == "s_ncc" and summary.get("s_ncc_images", summary["num_images"]) < summary["num_images"]:
            extra = f"; defined on {summary['s_ncc_images']} of {summary['num_images']} images"
        lines.append(f"  {label:<{width}}  {value:.4f} {shown:<18}  ({note}{extra})")
    return "\n".join(lines)
