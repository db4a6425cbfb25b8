"""Drawing N sampled masks per image for evaluation: `draw_samples`, the one place that does it.

Every model `evaluate` scores speaks UA-SAM's sampling interface,
``model(images, prompts, num_samples=n, generator=g).logits -> (B, n, S, S)``, in which the n
hypotheses of an image share one encoder forward (UA-SAM: the latent heads' prior and block 0 run
once per image, blocks 1.. run on the B * n rows). `draw_samples` bounds the rows of one forward by
``max_rows``: it groups whole images so that each group has at most ``max_rows`` rows, and only
when N alone exceeds ``max_rows`` splits an image's N samples over several forwards (each then
runs the prior and block 0 again and draws its own z). The draws are a function of the generator's
state and ``max_rows``: the same seed and ``max_rows`` repeat them exactly.
"""

from __future__ import annotations

from typing import Any

import torch

from uncertainty_adapters.integrations.sam.prompts import Prompts

DEFAULT_MAX_ROWS = 128


def _rows(prompts: Prompts, start: int, stop: int) -> Prompts:
    """The prompt sets of images start..stop-1."""
    pick = [None if t is None else t[start:stop] for t in (prompts.points, prompts.labels, prompts.boxes)]
    return Prompts(points=pick[0], labels=pick[1], boxes=pick[2])


@torch.no_grad()
def draw_samples(
    model: Any,
    images: torch.Tensor,
    prompts: Prompts,
    num_samples: int,
    generator: torch.Generator | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> torch.Tensor:
    """Foreground probabilities of ``num_samples`` hypotheses per image.

    Args:
        model: a model with UA-SAM's sampling interface (module docstring), in eval mode.
        images: (B, 3, S, S) float in [0, 1].
        prompts: one prompt set per image (batch B).
        num_samples: N hypotheses per image.
        generator: the random generator of the latent samples.
        max_rows: most hypotheses (images x samples) decoded in one forward; bounds memory.

    Returns:
        (B, N, S, S) float32 probabilities (sigmoid of the logits), image-major.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"the number of samples N must be a positive integer, got {num_samples!r}")
    if not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    batch = images.shape[0]
    per_forward = max(1, max_rows // num_samples)  # whole images per forward
    chunk = min(num_samples, max_rows)  # samples per forward when one image needs several
    groups = []
    for start in range(0, batch, per_forward):
        stop = min(batch, start + per_forward)
        group_images, group_prompts = images[start:stop], _rows(prompts, start, stop)
        parts = []
        for first in range(0, num_samples, chunk):
            n = min(chunk, num_samples - first)
            logits = model(group_images, group_prompts, num_samples=n, generator=generator).logits
            if logits.shape[:2] != (stop - start, n):
                raise ValueError(
                    f"the model returned logits of shape {tuple(logits.shape)} for {stop - start} images "
                    f"and num_samples={n}; expected ({stop - start}, {n}, S, S)"
                )
            parts.append(logits.float().sigmoid())
        groups.append(torch.cat(parts, dim=1))
    return torch.cat(groups, dim=0)
