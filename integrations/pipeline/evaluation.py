"""Evaluating UA-SAM the paper's way (section 3.3, DESIGN.md section 7).

For every test image: one prompt (a point sampled from the raters' majority vote, falling back
to their union), K samples z ~ P(z|X) decoded in one batched forward, and the metrics against the
raters: Dice of the majority vote of the K samples against the majority vote of the raters, GED,
Hungarian-matched IoU and the diversity of the samples. `metrics.json` carries the pinned keys
``dice``, ``ged``, ``hm_iou``, ``diversity``, ``samples``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters import metrics
from uncertainty_adapters.integrations.sam import UncertaintySam
from uncertainty_adapters.integrations.sam.prompts import Prompts, make_prompts

from .seeding import generator_for

METRIC_KEYS = ("dice", "ged", "hm_iou", "diversity")
_EVAL_STREAM = 0xE7A1


@dataclass
class EvaluationResult:
    """Per-image metric values (num_images,) and, for figures, the first few cases."""

    samples: int
    per_image: dict[str, torch.Tensor]
    case_ids: list[str]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The pinned metrics.json content: means, plus standard deviations and counts."""
        out: dict[str, Any] = {key: float(self.per_image[key].mean()) for key in METRIC_KEYS}
        out["samples"] = self.samples
        out["num_images"] = len(self.case_ids)
        out["std"] = {key: float(self.per_image[key].std(unbiased=False)) for key in METRIC_KEYS}
        return out


@torch.no_grad()
def evaluate(
    model: UncertaintySam,
    dataset: Dataset,
    num_samples: int,
    batch_size: int = 8,
    prompt: str = "point",
    box_jitter: float = 0.0,
    seed: int = 0,
    accelerator: Any | None = None,
    keep_examples: int = 6,
) -> EvaluationResult:
    """Sample K masks per image from the prior and score them against the raters.

    Args:
        model: a UA-SAM (unwrapped, on its device).
        dataset: multi-rater items (image, masks, majority, case_id).
        num_samples: K hypotheses per image (paper: 4 on LIDC, 3 on REFUGE2).
        prompt: "point", "box" or "both"; boxes use ``box_jitter`` (0: the exact box).
        seed: seeds prompts and samples, per batch, so results repeat exactly.
        accelerator: when given, the data is split over its processes and gathered.
        keep_examples: how many cases to keep (image, raters, samples, probabilities) for figures.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"the number of samples K must be a positive integer, got {num_samples!r}")
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
    for index, batch in enumerate(loader):
        images = batch["image"].to(device)
        raters = batch["masks"].to(device)
        generator = generator_for(device, seed, _EVAL_STREAM, index, rank)
        union = raters.amax(dim=1, keepdim=True)
        prompts = make_prompts(batch["majority"].to(device), prompt, generator, union, box_jitter)
        output = model(images, prompts, num_samples=num_samples, generator=generator)
        probabilities = output.logits.float().sigmoid()  # (B, K, S, S)
        samples = probabilities > 0.5
        per_batch = {
            "dice": metrics.dice(samples, raters),
            "ged": metrics.ged(samples, raters),
            "hm_iou": metrics.hungarian_iou(samples, raters),
            "diversity": metrics.diversity(samples),
        }
        if accelerator is not None:
            per_batch = accelerator.gather_for_metrics(per_batch)
        for key in METRIC_KEYS:
            values[key].append(per_batch[key].cpu())
        ids = list(batch["case_id"])
        case_ids += accelerator.gather_for_metrics(ids) if accelerator is not None else ids
        for b in range(images.shape[0]):
            if len(examples) >= keep_examples:
                break
            examples.append(
                {
                    "case_id": ids[b],
                    "image": images[b].cpu(),
                    "raters": raters[b].cpu(),
                    "probabilities": probabilities[b].cpu(),
                    "prompts": _select(prompts, b),
                }
            )
    model.train(was_training)
    return EvaluationResult(
        samples=num_samples,
        per_image={key: torch.cat(v) for key, v in values.items()},
        case_ids=case_ids,
        examples=examples,
    )


def _select(prompts: Prompts, index: int) -> Prompts:
    """The prompt set of one image, on the CPU."""
    one = [None if t is None else t[index : index + 1].cpu() for t in (prompts.points, prompts.labels, prompts.boxes)]
    return Prompts(points=one[0], labels=one[1], boxes=one[2])


def write_metrics(path: str | Path, result: EvaluationResult, context: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.json: the pinned keys, spread and count, plus ``context`` (data, preset,
    checkpoint, command). Returns what was written."""
    content = {**result.summary(), **context}
    ckpt.write_json_atomic(path, content)
    return content


def format_table(summary: dict[str, Any], title: str = "UA-SAM") -> str:
    """A fixed-width table of the metrics (mean +- std over images)."""
    std = summary.get("std", {})
    rows = [
        ("Dice (majority of K vs raters)", "dice", "higher is better"),
        ("GED (d = 1 - IoU)", "ged", "lower is better"),
        ("HM-IoU (Hungarian-matched)", "hm_iou", "higher is better"),
        ("Diversity (mean pairwise 1 - IoU)", "diversity", "spread of the samples"),
    ]
    lines = [f"{title}: K = {summary['samples']} samples per image, {summary['num_images']} images"]
    width = max(len(label) for label, _, _ in rows)
    for label, key, note in rows:
        lines.append(f"  {label:<{width}}  {summary[key]:.4f} +- {std.get(key, 0.0):.4f}   ({note})")
    return "\n".join(lines)
