"""Whether a trained run's latent has taken hold, and the warning a run gets when it has not.

The posterior Q(z|X,Y) takes hold when it tells the raters of an image apart: the spread of
the raters' posterior means (`ua.LatentHeads.rater_spread`, in prior sigmas, averaged over the
validation images whose raters disagree; train_log.csv's ``val_rater_spread``). A run keeps the
weights of its best validation epoch, so the spread of that epoch is the one its samples have.

Below `TAKEOFF_SPREAD` the latent has not taken hold: the samples then barely differ, whatever the
raters do. The threshold is the one docs/results.md uses for a takeoff ("When the latent takes
off"), and it separates the recorded runs (docs/results.md, "A run whose latent did not take hold
says so").

A posterior that tells the raters apart is not yet a sampler whose samples differ: a run whose
latent takes off in its last epochs can pass that line with samples that vary less than the
raters do (docs/results.md, "The samples checked on the validation part"). So after the prior fit
the run also draws N samples from the prior per validation image (`measure_sample_diversity`) and
compares their diversity, the mean pairwise (1 - IoU) that the metrics report, with the raters'
on the same images. Below `SAMPLE_SHARE` of it the latent has not taken hold either.

That share is read on a few images (a tenth of the training part), so it carries a standard error
(`share_standard_error`, over the images). A share above the line by less than `CHECK_MARGIN` of
its standard errors is `near_the_line`: the run took hold by this check, but the check cannot tell
it from a run just under the line, which is what makes attempts.py train such a run again.

Example:
    >>> idle_latent_message(0.61) is None
    True
    >>> idle_latent_message(0.02).startswith("the latent has not taken hold")
    True
    >>> idle_latent_message(0.61, sample_share=0.3).startswith("the latent has not taken hold")
    True
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate, rater_diversities
from uncertainty_adapters.integrations.pipeline.training.seeding import derive_seed

#: Raters' posterior means at least this many prior sigmas apart: the latent has taken hold.
TAKEOFF_SPREAD = 0.25
#: The samples' diversity at least this share of the raters' (validation part): the samples vary as a latent
#: that has taken hold makes them (the line docs/results.md reads every run by: half the raters' diversity).
SAMPLE_SHARE = 0.5
#: A share this many of its standard errors above `SAMPLE_SHARE`, or more, is clear of the line (`near_the_line`).
CHECK_MARGIN = 1.0
_CHECK_STREAM = 0x7A5  # derive_seed(seed, _CHECK_STREAM): the check's prompts and samples, apart from the test's


def measure_sample_diversity(model: Any, dataset: Dataset | None, num_samples: int, prompt: str, seed: int,
                             batch_size: int = 8, accelerator: Any | None = None) -> dict[str, Any] | None:
    """The diversity of ``num_samples`` prior samples per image of ``dataset`` (the validation part)
    against the raters' own, as run.json records it (``val_sample_diversity``).

    Args:
        model: the trained model (unwrapped, on its device) with UA-SAM's sampling interface.
        dataset: multi-rater items (image, masks, majority); None or empty: nothing is measured.
        num_samples: N samples per image (the preset's ``ged_samples``).
        prompt: the preset's prompt protocol, as evaluation prompts the test part.
        seed: the run's seed; the check draws from a stream of its own.
        batch_size: images per forward.
        accelerator: when given, the images are split over its processes and gathered, so every
            process gets the same figures.

    Returns:
        ``{"samples", "raters", "share", "share_se", "num_samples", "images"}`` (diversities
        averaged over the images, share = samples / raters, share_se its standard error over the
        images, None for one image; images: how many were sampled), or None when there is no
        image or the raters agree on every image (no diversity to compare with).
    """
    if dataset is None or len(dataset) == 0:
        return None
    names, per_rater = rater_diversities(dataset)
    if float(per_rater.mean()) <= 0:
        return None
    result = evaluate(model, dataset, num_samples=1, batch_size=batch_size, prompt=prompt,
                      seed=derive_seed(seed, _CHECK_STREAM), accelerator=accelerator, keep_examples=0,
                      ged_samples=num_samples)
    per_image = result.per_image["diversity"]  # every image once, gathered from every process
    raters_of = _in_order_of(result.case_ids, names, per_rater)
    samples, raters = float(per_image.mean()), float(raters_of.mean())
    return {"samples": samples, "raters": raters, "share": samples / raters,
            "share_se": share_standard_error(per_image, raters_of), "num_samples": num_samples,
            "images": per_image.numel()}


def _in_order_of(case_ids: list[str], names: list[str], values: torch.Tensor) -> torch.Tensor:
    """``values`` (one per image named in ``names``, in that order) in the order of ``case_ids``, as
    evaluation gathered the images (the given order when the names repeat)."""
    position = {name: i for i, name in enumerate(names)}
    if len(position) < len(names) or len(case_ids) != len(names):
        return values
    return values[[position[name] for name in case_ids]]


def share_standard_error(samples: torch.Tensor, raters: torch.Tensor) -> float | None:
    """The standard error of share = mean(samples) / mean(raters) over the images, by the delta
    method for a ratio of means: sd(samples_i - share * raters_i) / (sqrt(n) * mean(raters)).

    Args:
        samples: (n,) the samples' diversity per image.
        raters: (n,) the raters' diversity on the same images (mean > 0).

    Returns:
        The standard error, or None for fewer than two images (no spread to read it from).
    """
    if samples.numel() < 2:
        return None
    samples, raters = samples.double(), raters.double()
    share = samples.mean() / raters.mean()
    return float((samples - share * raters).std() / (math.sqrt(samples.numel()) * raters.mean()))


def near_the_line(diversity: dict[str, Any] | None) -> bool:
    """Whether a ``val_sample_diversity`` record's share reaches `SAMPLE_SHARE` by less than
    `CHECK_MARGIN` standard errors (a share under the line is not near it: it did not hold).
    False when nothing was measured or the record has no standard error (one image, or written
    before it was recorded)."""
    if diversity is None or diversity.get("share_se") is None:
        return False
    share = float(diversity["share"])
    return SAMPLE_SHARE <= share < SAMPLE_SHARE + CHECK_MARGIN * float(diversity["share_se"])


def sample_share_of(diversity: dict[str, Any] | None) -> float | None:
    """The samples' share of the raters' diversity in a ``val_sample_diversity`` record (None: not measured)."""
    return None if diversity is None else float(diversity["share"])


def idle_latent_message(best_rater_spread: float | None, sample_share: float | None = None) -> str | None:
    """The warning for a run whose best epoch's raters' spread is ``best_rater_spread`` (prior
    sigmas) and whose samples reach ``sample_share`` of the raters' diversity on the validation
    part, or None when the latent took hold. Nothing measured (None: no latent, no validation
    part, or no validation image whose raters disagree) says nothing."""
    advice = (
        "Another --seed (--attempts N trains again by itself) or more --epochs may let it take hold (a run to use, "
        "not a benchmark's: there the lost seed counts); train_log.csv's val_rater_spread shows, epoch by epoch, "
        "whether it does"
    )
    if best_rater_spread is not None and best_rater_spread < TAKEOFF_SPREAD:
        return (
            f"the latent has not taken hold: at the best epoch the raters' posterior means were "
            f"{best_rater_spread:.2f} prior sigmas apart (a latent that takes hold reaches {TAKEOFF_SPREAD}), so the "
            f"samples will barely differ where the raters do. {advice}"
        )
    if sample_share is not None and sample_share < SAMPLE_SHARE:
        spread = "" if best_rater_spread is None else (
            f", although the raters' posterior means were {best_rater_spread:.2f} prior sigmas apart: it took hold "
            f"late or weakly")
        return (
            f"the latent has not taken hold: on the validation part the samples' diversity is {sample_share:.2f} of "
            f"the raters' (a latent that takes hold gives {SAMPLE_SHARE} or more){spread}, and the samples will "
            f"differ less than the raters do. {advice}"
        )
    return None
