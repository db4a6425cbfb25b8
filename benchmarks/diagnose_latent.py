"""Does UA-SAM's latent z matter? Train one variant of the demo preset, then measure where z acts.

One run = one variant (a set of preset overrides, `VARIANTS`) trained through the project's own
trainer (`ua-sam train`'s loop) on one data set, then diagnosed on the data's test part:

- ``kl``: the training log's KL(Q||P) at the first log, the quartiles of training and the end;
- ``posterior_spread``: per test image, the std over its raters of the posterior means, in units
  of the prior's sigma, averaged over latent dimensions and images whose raters disagree;
- ``ged`` / ``diversity`` at K prior samples, where the raters disagree and where they agree,
  and ``oracle_ged``: GED of the decodings of each rater's own posterior mean (how far the
  right z moves the output);
- ``modes``: per ambiguity mode the generator knows (synthetic: satellite, faint lesion,
  boundary ring; bimodal: the filled centre) the share of raters that mark it against the
  share of samples that do (a mask marks a region when it covers at least half of it);
- ``dead_cmsm``: the share of (image, adapter) pairs whose CMSM output f is exactly zero, at
  initialisation and after training (z from the prior);
- ``posterior_silent_channels``: per activation layer of the trained posterior net, the share of
  channels never above zero on 16 test images with each rater's mask (dead units, for ReLU);
- ``agree_cases``: where every rater draws the same mask, how the samples' majority misses it:
  false-positive and false-negative pixels, their sum as a share of the raters' area, the area
  ratio and the centroid offset (a shift or a size bias shows there; a ragged outline does not);
- ``z_fit``: on a few test cases with the mode, one z per rater fitted by gradient descent
  (everything else frozen) to that rater's mask: can the frozen decoder draw each rater's
  version at all?

The ``bimodal`` data set is written by this script (`write_bimodal`): a bright ring around a
dimmer centre, which half the raters fill (disc) and half leave open (ring); a third of the
cases are solid discs that every rater draws alike. It differs from ``synthetic`` on purpose.

Usage (results as JSON in OUT/<data>-<variant>.json, a markdown table with ``--summarize``)::

    python -m benchmarks.diagnose_latent --out diag --data synthetic --variant paper
    python -m benchmarks.diagnose_latent --out diag --data bimodal --variant softmax-bottleneck
    python -m benchmarks.diagnose_latent --out diag --summarize
    python -m benchmarks.diagnose_latent --out diag --run runs/r128/runs/prob-unet-c6/seed-0  # a trained run
    python -m benchmarks.diagnose_latent --out diag --run runs/r128/runs/adapter-sam/seed-0 --split train
    python -m benchmarks.diagnose_latent --out diag --data synthetic --variant none --full-finetune

``--model prob-unet`` trains the Probabilistic U-Net instead, with its Table 1 recipe (the preset
without adapters, its own latent nets; `ua-sam reproduce`'s row), on the same data, split and
budget, and measures what applies to it (no posterior, oracle or z fit).

``--split train`` measures a run on the cases it trained on; ``--full-finetune`` trains every
weight of the image encoder too (a reference the library does not offer; measured in memory).

``--epochs``, ``--cases`` and ``--max-steps`` shorten a run; ``--quick`` is a seconds-long smoke
run on a random backbone (meaningless numbers).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: The demo preset's latent settings before it turned on the latent prompt and free bits; every
#: variant but the ``demo`` ones starts from them, so that a variant means what it meant when measured.
_EARLIER_DEMO: dict[str, Any] = {"latent_prompt": False, "free_bits": 0.0, "latent_lr": 1e-4, "latent_activation": "relu",
                                 "raters_per_image": "one"}

#: The demo preset's warm-up of the posterior's noise, off: the ``demo-*`` variants measured before the
#: warm-up became the demo's start from it, so that they, too, mean what they meant.
_DEMO_BEFORE_WARMUP: dict[str, Any] = {"posterior_noise_warmup": 0.0}

#: Preset overrides of each variant (the rest is the ``demo`` preset).
VARIANTS: dict[str, dict[str, Any]] = {name: {**_EARLIER_DEMO, **overrides} for name, overrides in {
    "paper": {"cmsm_activation": "relu", "latent_placement": "residual"},
    "paper-beta0": {"cmsm_activation": "relu", "latent_placement": "residual", "beta": 0.0},
    "softmax": {"cmsm_activation": "softmax", "latent_placement": "residual"},
    "bottleneck": {"cmsm_activation": "relu", "latent_placement": "bottleneck"},
    "softmax-bottleneck": {"cmsm_activation": "softmax", "latent_placement": "bottleneck"},
    "softmax-bottleneck-prompt": {"cmsm_activation": "softmax", "latent_placement": "bottleneck",
                                  "latent_prompt": True},
    "softmax-bottleneck-prompt-lr": {"cmsm_activation": "softmax", "latent_placement": "bottleneck",
                                     "latent_prompt": True, "latent_lr": 1e-3},
    "softmax-bottleneck-prompt-freebits": {"cmsm_activation": "softmax", "latent_placement": "bottleneck",
                                           "latent_prompt": True, "free_bits": 0.5},
    "softmax-bottleneck-prompt-freebits-lr": {"cmsm_activation": "softmax", "latent_placement": "bottleneck",
                                              "latent_prompt": True, "free_bits": 0.5, "latent_lr": 1e-3},
    "softmax-bottleneck-freebits": {"cmsm_activation": "softmax", "latent_placement": "bottleneck",
                                    "beta": 1e-2, "free_bits": 0.5},
    "concat-bottleneck": {"interaction": "concat", "latent_placement": "bottleneck"},
    "sample-bottleneck": {"interaction": "sample", "latent_placement": "bottleneck"},
    "concat": {"interaction": "concat", "latent_placement": "residual"},
    "sample": {"interaction": "sample", "latent_placement": "residual"},
    "none": {"interaction": "none"},
}.items()}
VARIANTS["demo"] = {}  # the demo preset as it is
# Measured with the demo before the posterior-noise warm-up became its default (`--variant demo` measured
# "demo-no-noise-warmup" until then): each starts from _DEMO_BEFORE_WARMUP.
VARIANTS.update({name: {**_DEMO_BEFORE_WARMUP, **overrides} for name, overrides in {
    "demo-no-noise-warmup": {},  # the demo as it was
    "demo-leaky": {"latent_activation": "leaky_relu"},  # LeakyReLU in the prior and posterior nets
    "demo-relu": {"latent_activation": "relu"},  # ReLU there, as the Probabilistic U-Net and the paper presets
    "demo-all-raters": {"raters_per_image": "all"},  # each image with all its raters in one step
    "demo-leaky-all-raters": {"latent_activation": "leaky_relu", "raters_per_image": "all"},
    "demo-no-prior-fit": {"prior_fit_epochs": 0},  # joint training only, as the paper
    # every rater of an image in one step, and no prior-fit phase (with latent_takeoff --prior-samples)
    "demo-all-raters-no-prior-fit": {"raters_per_image": "all", "prior_fit_epochs": 0},
    "demo-prior-fit-60": {"prior_fit_epochs": 60},  # the prior-fit phase three times as long; training unchanged
    "demo-kl-warmup": {"kl_warmup": 0.2},  # beta ramps up from 0 over the first fifth of the steps
    "demo-beta0": {"beta": 0.0},  # no KL term in training: the prior-fit phase alone fits the prior
    # the latent prompt's last layer at PyTorch's default init instead of zeros: z moves the masks from step 0
    "demo-prompt-random": {"latent_prompt_start": "random"},
    # GECO in place of free bits: the KL's weight adapts so that the training DiceCE reaches kappa
    "demo-geco": {"geco_kappa": 0.14, "free_bits": 0.0},
    "demo-geco-0.05": {"geco_kappa": 0.05, "free_bits": 0.0},
    # the same epochs in twice the optimizer steps: half the demo preset's batch (16), nothing else changed
    "demo-batch-8": {"batch_size": 8},
    # the same epochs in half the optimizer steps: twice the demo preset's batch
    "demo-batch-32": {"batch_size": 32},
}.items()})
# z carries none of the posterior's noise at the first step, all of it from a quarter of the steps on (now the
# demo's default, so the same as "demo")
VARIANTS["demo-noise-warmup"] = {"posterior_noise_warmup": 0.25}
# the same warm-up over half of the steps instead of a quarter (the demo otherwise as it is)
VARIANTS["demo-noise-warmup-0.5"] = {"posterior_noise_warmup": 0.5}
# the demo (its warm-up) with the latent prompt's last layer at a random start instead of zeros
VARIANTS["demo-noise-warmup-prompt-random"] = {"latent_prompt_start": "random"}
# the demo with its learning rate held for all its 12 epochs (its StepLR otherwise cuts it to 0.3x after epoch 8)
VARIANTS["demo-lr-flat"] = {"lr_step_epochs": 12}
# the demo with its posterior-noise warm-up run twice: from step 0 and again from half the steps (cyclical annealing)
VARIANTS["demo-noise-cycles-2"] = {"posterior_noise_cycles": 2}

_COVER = 0.5  # a mask marks a region when it covers at least this share of it
_STARTED = time.time()


def _stage(message: str) -> None:
    print(f"[{time.time() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


# -- the bimodal folder ------------------------------------------------------------------------
def write_bimodal(root: Path, cases: int = 300, size: int = 128, seed: int = 0) -> Path:
    """Write the ring-or-disc folder (``folder:`` layout, 4 raters) and its modes.

    Returns the folder; ``root/bimodal_modes.npz`` holds, per case id, the centre region
    (bool (S, S)) and whether the raters disagree on it.
    """
    from PIL import Image

    folder = root / "bimodal"
    modes_path = root / "bimodal_modes.npz"
    if modes_path.is_file():
        return folder
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    modes: dict[str, np.ndarray] = {}
    for case in range(cases):
        case_id = f"bimodal-{case:04d}"
        cy, cx = rng.uniform(0.35, 0.65, size=2) * size
        radius = rng.uniform(0.14, 0.22) * size
        inner = rng.uniform(0.45, 0.6) * radius
        dist = np.hypot(yy - cy, xx - cx)
        disc = dist < radius
        centre = dist < inner
        ambiguous = rng.random() < 0.67
        image = rng.uniform(0.1, 0.25) + 0.02 * rng.standard_normal((size, size))
        image = image + rng.uniform(0.5, 0.6) * disc
        if ambiguous:  # a ring of the same brightness around a dimmer, but not empty, centre
            image = image - rng.uniform(0.25, 0.35) * centre
            masks = [disc, disc, disc & ~centre, disc & ~centre]
        else:
            masks = [disc] * 4
        image = np.clip(image, 0, 1)
        case_dir = folder / case_id
        case_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(case_dir / f"{case_id}.png")
        for k, mask in enumerate(masks, start=1):
            Image.fromarray(mask.astype(np.uint8) * 255).save(case_dir / f"{case_id}_seg_{k}.png")
        modes[case_id] = centre if ambiguous else np.zeros_like(centre)
    np.savez_compressed(modes_path, **modes)
    return folder


# -- measuring ---------------------------------------------------------------------------------
def _covers(masks: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """masks (N, H, W) bool, region (H, W) bool -> (N,) bool: covers >= _COVER of the region."""
    area = region.sum().clamp_min(1)
    return (masks & region).flatten(1).sum(-1) >= _COVER * area


def _dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * pixels + 1, 1, pixels)[0, 0] > 0


def _synthetic_regions(test, size: int):
    """``regions(index, case_id)`` for `diagnose`: the modes of item ``index`` of ``test`` (a
    synthetic data set, or a Subset of one) at side ``size``."""
    source = test.dataset if isinstance(test, torch.utils.data.Subset) else test
    offset = test.indices if isinstance(test, torch.utils.data.Subset) else None

    def regions(index: int, case_id: str) -> dict[str, torch.Tensor]:
        return _modes_synthetic(source, offset[index] if offset is not None else index, size)

    return regions


def _modes_synthetic(dataset, index: int, size: int) -> dict[str, torch.Tensor]:
    """Regions of the ambiguity modes of synthetic case ``index`` at side ``size``."""
    case = dataset.render_case(index)

    def resize(array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array.astype(np.float32))[None, None]
        return F.interpolate(t, size=(size, size), mode="nearest")[0, 0] > 0.5

    masks = torch.stack([resize(m) for m in case.masks])
    out: dict[str, torch.Tensor] = {}
    blocked = torch.zeros(size, size, dtype=torch.bool)
    for name, region in (("satellite", case.satellite), ("faint", case.faint)):
        if region is not None:
            out[name] = resize(region)
            blocked |= _dilate(out[name], 3)
    if case.ambiguous:
        ring = masks.any(0) & ~masks.all(0) & ~blocked
        if ring.sum() > 0:
            out["boundary"] = ring
    return out


class _DeadCounter:
    """Counts CMSM outputs f that are exactly zero (hooks on every CMSM module)."""

    def __init__(self, model) -> None:
        from uncertainty_adapters.cmsm import CMSM

        self.dead = self.total = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, CMSM)]

    def _hook(self, module, args, output) -> None:
        feature = output[0]
        self.dead += int((feature == 0).all(-1).sum())
        self.total += feature.shape[0]

    def close(self) -> float | None:
        for handle in self.handles:
            handle.remove()
        return self.dead / self.total if self.total else None


@torch.no_grad()
def dead_cmsm_share(model, dataset, device, images: int = 32) -> float | None:
    """Share of (image, adapter) pairs with an all-zero CMSM output, z from the prior."""
    from uncertainty_adapters.integrations.sam.prompts import make_prompts

    if not any(type(m).__name__ == "CMSM" for m in model.modules()):
        return None
    encoder = model.encoder
    batched, encoder.batched_shifts = encoder.batched_shifts, False  # so every CMSM forward runs
    counter = _DeadCounter(model)
    try:
        batch = _batch(dataset, range(min(images, len(dataset))), device)
        prompts = make_prompts(batch["majority"], "point", torch.Generator(device=device).manual_seed(0),
                               batch["masks"].amax(1, keepdim=True))
        model(batch["image"], prompts, num_samples=4, generator=torch.Generator(device=device).manual_seed(1))
    finally:
        encoder.batched_shifts = batched
    return counter.close()


@torch.no_grad()
def posterior_silent_channels(heads, dataset, device, images: int = 16) -> list[float] | None:
    """Per activation layer of the posterior net, the share of channels never above zero on
    the first ``images`` images of ``dataset`` with each of their raters' masks: for ReLU,
    units that pass no gradient back (dead); for LeakyReLU, units that only ever leak."""
    if heads is None:
        return None
    batch = _batch(dataset, range(min(images, len(dataset))), device)
    raters = batch["masks"].shape[1]
    fired: list[torch.Tensor] = []  # per activation layer: (channels,) bool, above zero anywhere

    def record(module, args, output) -> None:
        fired.append((output > 0).flatten(2).any(-1).any(0))

    handles = [m.register_forward_hook(record) for m in heads.posterior_net.features
               if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU))]
    try:  # every image once per rater: the posterior sees one (image, mask) pair at a time
        heads.posterior(batch["image"].repeat_interleave(raters, 0), batch["masks"].flatten(0, 1).unsqueeze(1))
    finally:
        for handle in handles:
            handle.remove()
    return [round(float((~f).float().mean()), 3) for f in fired]


def _batch(dataset, indices, device) -> dict[str, Any]:
    items = [dataset[i] for i in indices]
    out = {key: torch.stack([item[key] for item in items]).to(device) for key in ("image", "masks", "majority")}
    out["case_id"] = [item["case_id"] for item in items]
    out["index"] = list(indices)
    return out


def _kl_summary(log: Path) -> dict[str, Any]:
    rows = [r for r in csv.DictReader(open(log)) if r.get("kl") not in (None, "")]
    values = [(int(r["step"]), float(r["kl"])) for r in rows]
    if not values:
        return {}
    picks = sorted({0, len(values) // 4, len(values) // 2, 3 * len(values) // 4, len(values) - 1})
    return {"steps": [values[i][0] for i in picks], "kl": [round(values[i][1], 5) for i in picks],
            "min": round(min(v for _, v in values), 5)}


def _agree_case_errors(sampled: torch.Tensor, truth: torch.Tensor, into: dict[str, list[float]]) -> None:
    """Append to ``into``, per image, how the samples' majority (``sampled``: (B, K, S, S) or one
    image's (K, S, S), bool) misses ``truth`` ((B, S, S) or (S, S) bool, the mask every rater
    drew): false-positive and false-negative pixels, the raters' and the majority's area, and,
    where both masks are non-empty, the majority's centroid minus the raters' (rows, columns)."""
    if sampled.dim() == 3:
        sampled, truth = sampled[None], truth[None]
    if sampled.shape[0] == 0:
        return
    majority = sampled.float().mean(1) > 0.5  # (B, S, S)
    counts = torch.stack([(majority & ~truth).flatten(1).sum(-1), (~majority & truth).flatten(1).sum(-1),
                          truth.flatten(1).sum(-1), majority.flatten(1).sum(-1)], 1).float()  # (B, 4)
    grid = torch.arange(truth.shape[-1], device=truth.device, dtype=torch.float32)

    def centroid(mask: torch.Tensor) -> torch.Tensor:  # (B, 2): mean row, mean column
        area = mask.flatten(1).sum(-1).clamp_min(1).float()
        return torch.stack([(mask.sum(-1) * grid).sum(-1), (mask.sum(-2) * grid).sum(-1)], 1) / area[:, None]

    offset = centroid(majority) - centroid(truth)
    both = (counts[:, 2] > 0) & (counts[:, 3] > 0)
    for key, column in zip(("false_positive", "false_negative", "area", "predicted_area"), counts.T.tolist()):
        into.setdefault(key, []).extend(column)
    into.setdefault("offset_rows", []).extend(offset[both, 0].tolist())
    into.setdefault("offset_cols", []).extend(offset[both, 1].tolist())


def _summarize_agree_cases(cases: dict[str, list[float]]) -> dict[str, Any]:
    """Means over the cases `_agree_case_errors` saw: pixels missed each way, their sum as a share
    of the raters' area, the area ratio, and the centroid offset's mean and spread (pixels)."""
    fp, fn, area = (np.array(cases[k]) for k in ("false_positive", "false_negative", "area"))
    rows, cols = np.array(cases.get("offset_rows", [])), np.array(cases.get("offset_cols", []))
    return {
        "cases": len(area),
        "raters_area_px": round(float(area.mean()), 1),
        "false_positive_px": round(float(fp.mean()), 1),
        "false_negative_px": round(float(fn.mean()), 1),
        "missed_share_of_area": round(float(((fp + fn) / np.maximum(area, 1)).mean()), 4),
        "area_ratio": round(float((np.array(cases["predicted_area"]) / np.maximum(area, 1)).mean()), 4),
        "centroid_offset_px": {"mean": [round(float(rows.mean()), 3), round(float(cols.mean()), 3)],
                               "std": [round(float(rows.std()), 3), round(float(cols.std()), 3)]}
        if rows.size else None,
    }


def diagnose(model, dataset, data: str, device, samples: int, mode_regions, zfit_cases: int,
             zfit_steps: int = 80, prompt: str = "point") -> dict[str, Any]:
    """Every measurement on the trained model (see the module docstring), prompting as the run
    was trained and as `ua-sam evaluate` scores it: ``prompt`` mode on the raters' majority."""
    from uncertainty_adapters import metrics
    from uncertainty_adapters.integrations.sam.prompts import make_prompts

    model.eval()
    per: dict[str, list[float]] = {k: [] for k in ("ged", "diversity", "oracle_ged", "oracle_diversity",
                                                      "rater_diversity", "spread", "ambiguous")}
    modes: dict[str, dict[str, list[float]]] = {}
    agree_cases: dict[str, list[float]] = {}
    zfit_pool: list[tuple[int, str]] = []
    generator = torch.Generator(device=device).manual_seed(0)
    # the posterior and oracle measurements use UA-SAM's encode/decode; other models are sampled only
    has_latent = getattr(model, "latent_heads", None) is not None and hasattr(model, "decode")
    for start in range(0, len(dataset), 16):
        batch = _batch(dataset, range(start, min(start + 16, len(dataset))), device)
        raters = batch["masks"] > 0.5  # (B, R, S, S)
        prompts = make_prompts(batch["majority"], prompt, generator, raters.any(1, keepdim=True).float())
        with torch.no_grad():
            out = model(batch["image"], prompts, num_samples=samples, generator=generator)
            sampled = out.logits.float() > 0
            per["ged"] += metrics.ged(sampled, raters).tolist()
            per["diversity"] += metrics.diversity(sampled).tolist()
            per["rater_diversity"] += metrics.diversity(raters).tolist()
            ambiguous = (raters != raters[:, :1]).flatten(1).any(-1)
            per["ambiguous"] += ambiguous.float().tolist()
            if has_latent:
                means = model.latent_heads.rater_means(batch["image"], raters.float())  # (B, R, C)
                sigma = model.latent_heads.gaussian_prior(batch["image"]).sigma  # the training prior's units
                spread = (means.std(1, unbiased=False) / sigma).mean(-1)
                per["spread"] += spread.tolist()
                oracle = model.decode(model.encode(batch["image"], means), prompts.repeat_interleave(raters.shape[1]))
                oracle = oracle.view(raters.shape).float() > 0
                per["oracle_ged"] += metrics.ged(oracle, raters).tolist()
                per["oracle_diversity"] += metrics.diversity(oracle).tolist()
        _agree_case_errors(sampled[~ambiguous], raters[~ambiguous, 0], agree_cases)
        for b, index in enumerate(batch["index"]):
            for name, region in mode_regions(index, batch["case_id"][b]).items():
                region = region.to(device)
                entry = modes.setdefault(name, {"raters": [], "samples": [], "rater_std": [], "sample_std": []})
                if name == "boundary":  # coverage of the disagreement ring, and its spread
                    cov_r = (raters[b] & region).flatten(1).sum(-1).float() / region.sum()
                    cov_s = (sampled[b] & region).flatten(1).sum(-1).float() / region.sum()
                    entry["raters"].append(float(cov_r.mean()))
                    entry["samples"].append(float(cov_s.mean()))
                    entry["rater_std"].append(float(cov_r.std(unbiased=False)))
                    entry["sample_std"].append(float(cov_s.std(unbiased=False)))
                else:
                    entry["raters"].append(float(_covers(raters[b], region).float().mean()))
                    entry["samples"].append(float(_covers(sampled[b], region).float().mean()))
                    if name in ("satellite", "centre") and len(zfit_pool) < zfit_cases:
                        zfit_pool.append((index, name))
    amb = torch.tensor(per["ambiguous"]) > 0.5
    result: dict[str, Any] = {"images": len(dataset), "ambiguous_images": int(amb.sum()), "samples": samples}
    for key in ("ged", "diversity", "rater_diversity", "oracle_ged", "oracle_diversity"):
        if per[key]:
            values = torch.tensor(per[key])
            result[key] = {"all": round(float(values.mean()), 4), "disagree": round(float(values[amb].mean()), 4),
                           "agree": round(float(values[~amb].mean()), 4) if (~amb).any() else None}
    if per["spread"]:
        result["posterior_spread_prior_sigmas"] = round(float(torch.tensor(per["spread"])[amb].mean()), 4)
    result["modes"] = {name: {k: round(float(np.mean(v)), 4) for k, v in entry.items() if v} | {"cases": len(entry["raters"])}
                       for name, entry in modes.items()}
    if agree_cases:
        result["agree_cases"] = _summarize_agree_cases(agree_cases)
    _stage("sampled the test part")
    if has_latent and zfit_pool:
        result["z_fit"] = fit_z_per_rater(model, dataset, zfit_pool, mode_regions, device, steps=zfit_steps,
                                          prompt=prompt)
        _stage("fitted z per rater")
    return result


def fit_z_per_rater(model, dataset, pool, mode_regions, device, steps: int = 80, lr: float = 0.1,
                    prompt: str = "point") -> dict[str, Any]:
    """For each case in ``pool`` and each rater: z fitted by Adam to the rater's mask (DiceCE),
    the model frozen. Reports IoU with the rater's mask and whether the decoding marks the mode
    exactly when the rater does, for the posterior mean (start) and the fitted z (end); and the
    same for a free vector added to the image embedding at every position (SAM's dense-prompt
    channel; z at the posterior mean), fitted alike: can the frozen decoder draw each rater's
    version when the encoder-side path is bypassed?"""
    from monai.losses import DiceCELoss

    from uncertainty_adapters.integrations.sam.prompts import make_prompts

    loss_fn = DiceCELoss(sigmoid=True)
    indices = [index for index, _ in pool]
    batch = _batch(dataset, indices, device)
    raters = batch["masks"] > 0.5
    b, r = raters.shape[:2]
    prompts = make_prompts(batch["majority"], prompt, torch.Generator(device=device).manual_seed(2),
                           raters.any(1, keepdim=True).float()).repeat_interleave(r)
    target = raters.flatten(0, 1)[:, None].float()
    with torch.no_grad():
        z0 = torch.stack([model.latent_heads.posterior(batch["image"], raters[:, k:k + 1].float()).mean
                          for k in range(r)], 1)  # (B, R, C)
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)

    def decode(latent: torch.Tensor) -> torch.Tensor:
        return model.decode(model.encode(batch["image"], latent), prompts)

    def score(logits: torch.Tensor) -> dict[str, float]:
        pred = (logits > 0)[:, 0].view(b, r, *raters.shape[2:])
        inter = (pred & raters).flatten(2).sum(-1).float()
        union = (pred | raters).flatten(2).sum(-1).float().clamp_min(1)
        agree = []
        for i, (index, name) in enumerate(pool):
            region = mode_regions(index, batch["case_id"][i])[name].to(device)
            agree.append((_covers(pred[i], region) == _covers(raters[i], region)).float())
        return {"iou": round(float((inter / union).mean()), 4), "mode_agrees": round(float(torch.stack(agree).mean()), 4)}

    try:
        with torch.no_grad():
            start = score(decode(z0))
        for _ in range(steps):
            optimizer.zero_grad()
            loss = loss_fn(decode(z), target)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            end = score(decode(z))
            moved = float(((z - z0).norm(dim=-1)).mean())
            embeddings = model.encode(batch["image"], z0)
        shift = torch.zeros(embeddings.shape[:2], device=device, requires_grad=True)
        optimizer = torch.optim.Adam([shift], lr=lr / 2)
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model.decode(embeddings + shift[:, :, None, None], prompts), target).backward()
            optimizer.step()
        with torch.no_grad():
            shifted = score(model.decode(embeddings + shift[:, :, None, None], prompts))
    finally:
        for p in params:
            p.requires_grad_(True)
    return {"cases": b, "posterior_mean": start, "fitted": end, "z_moved": round(moved, 3), "steps": steps,
            "embedding_shift": shifted}


# -- one run -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.backbone.demo import PretrainSettings, ensure_demo_backbone
    from uncertainty_adapters.integrations.pipeline.models.factory import build_model
    from uncertainty_adapters.integrations.pipeline.presets import get_preset
    from uncertainty_adapters.integrations.pipeline.reproduce.job import RunSpec
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run
    from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, train

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_kind = getattr(args, "model", "ua-sam")
    full_finetune = bool(getattr(args, "full_finetune", False))
    if model_kind == "prob-unet" and args.variant != "demo":
        raise SystemExit("--model prob-unet trains the Probabilistic U-Net with its own recipe (Table 1's row); "
                         f"--variant {args.variant!r} changes UA-SAM only: leave --variant at demo")
    if full_finetune and model_kind != "ua-sam":
        raise SystemExit("--full-finetune trains UA-SAM's image encoder; the Probabilistic U-Net has none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = dict(VARIANTS[args.variant])
    preset = get_preset("demo").replace(**overrides)
    if model_kind == "prob-unet":  # its Table 1 row: the preset with no adapters, the preset's latent size
        preset = RunSpec("prob-unet", "none", preset.latent_dim).preset_for(preset)
    if args.epochs:
        preset = preset.replace(epochs=args.epochs)
    if args.image_size:
        preset = preset.replace(image_size=args.image_size)
    if args.quick:
        preset = preset.replace(batch_size=2, epochs=1, prior_fit_epochs=1, log_every=1)
    kwargs: dict[str, Any] = {}
    if args.data == "synthetic":
        spec = "synthetic"
        preset = preset.replace(synthetic_cases=args.cases or preset.synthetic_cases)
    else:
        folder = write_bimodal(out, cases=args.cases or 300, size=preset.image_size)
        spec = f"folder:{folder}"
    # The demo's backbone: the weights shipped with the package, unless --pretrain-steps asks for
    # another recipe (then pretrained once and cached).
    pretrain = PretrainSettings(steps=args.pretrain_steps) if args.pretrain_steps else None
    from_scratch = args.quick or model_kind == "prob-unet"
    backbone, facts = (None, {}) if from_scratch else ensure_demo_backbone(settings=pretrain)
    name = (f"{args.data}-{args.variant}" if model_kind == "ua-sam" else f"{args.data}-{model_kind}") \
        + ("-full-finetune" if full_finetune else "")
    run_dir = out / "runs" / name
    if full_finetune:
        _refuse_full_finetune_reuse(run_dir)  # before the backbone and the data are set up
    job = TrainJob(preset=preset, data=spec, out=run_dir, seed=args.seed, max_steps=args.max_steps,
                   dataset_kwargs=kwargs, resume=False, model=model_kind)
    test = build_dataset(spec, preset.image_size, split="test", seed=args.seed,
                         **({"length": preset.synthetic_cases} if spec == "synthetic" else {}))
    if args.test_cases:
        test = torch.utils.data.Subset(test, range(min(args.test_cases, len(test))))
    torch.manual_seed(args.seed)
    fresh = build_model(job, backbone).to(device)
    dead_init = dead_cmsm_share(fresh, test, device) if hasattr(fresh, "encoder") else None
    del fresh
    _stage(f"{args.data} {args.variant}: training")
    started = time.time()
    if full_finetune:
        model = _train_full_finetune(job, backbone).to(device)
    else:
        if not (run_dir / "run.json").is_file():
            train(job, backbone)
        model, _ = load_run(run_dir, device)
    seconds = time.time() - started
    _stage("trained")
    if spec == "synthetic":
        regions = _synthetic_regions(test, preset.image_size)
    else:
        saved = np.load(out / "bimodal_modes.npz")

        def regions(index: int, case_id: str) -> dict[str, torch.Tensor]:
            centre = torch.from_numpy(saved[case_id])
            return {"centre": centre} if centre.any() else {}
    result = {
        "data": args.data, "variant": args.variant, "model": model_kind, "overrides": overrides, "seed": args.seed,
        "full_finetune": full_finetune,
        "epochs": preset.epochs, "image_size": preset.image_size, "cases": getattr(preset, "synthetic_cases", None),
        "pretrain_steps": (facts.get("settings") or {}).get("steps"), "backbone_source": facts.get("source"), "train_seconds": round(seconds, 1),
        "backbone_held_out_iou": facts.get("held_out_iou"),
        "kl": _kl_summary(run_dir / "train_log.csv"),
        "dead_cmsm": {"init": dead_init, "trained": dead_cmsm_share(model, test, device)},
        "posterior_silent_channels": posterior_silent_channels(getattr(model, "latent_heads", None), test, device),
    }
    result["prompt"] = preset.prompt
    result.update(diagnose(model, test, args.data, device, args.samples, regions, args.zfit_cases, args.zfit_steps,
                           prompt=preset.prompt))
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _refuse_full_finetune_reuse(run_dir: Path) -> None:
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists; a full fine-tune is not saved whole, so it cannot be reused. "
                         f"Delete that folder or pass another --out")


def _train_full_finetune(job, backbone):
    """Train ``job`` with every weight of the image encoder trainable, not only its adapters
    (full fine-tuning, which the library does not offer: a reference for what adapting a frozen
    encoder costs), and return the trained model in memory, at the best validation epoch as any
    run. The trainer's best weights and checkpoints carry the encoder's own weights too (as
    'encoder.base_model.*'), but the run folder's adapters do not: loading it (`load_run`,
    `ua-sam evaluate`) gives them on the frozen encoder, not this model, so its figures exist
    only in this script's JSON. Refuses an existing run folder, which could not be reused."""
    from unittest import mock

    from uncertainty_adapters.integrations.pipeline.models.factory import build_model
    from uncertainty_adapters.integrations.pipeline.training import loop

    _refuse_full_finetune_reuse(job.out)
    held: dict[str, Any] = {}

    def unfrozen(job_, backbone_):
        model = build_model(job_, backbone_)
        model.encoder.requires_grad_(True)
        adapters_only = model.trainable_state_dict

        def trainable_state_dict() -> dict[str, torch.Tensor]:  # what the trainer saves and restores
            base = {f"encoder.{name}": t for name, t in model.encoder.state_dict().items() if name.startswith("base_model.")}
            return {**adapters_only(), **base}

        model.trainable_state_dict = trainable_state_dict  # load_trainable_state_dict copies into these too
        held["model"] = model
        return model

    with mock.patch.object(loop, "build_model", unfrozen):
        loop.train(job, backbone)
    return held["model"]


def resolution_floor(dataset, side: int) -> float:
    """Mean GED (N = 1, `ua.metrics.ged`), over the images whose raters all agree, of the raters'
    mask taken down to ``side`` x ``side`` (area average) and back (bilinear, threshold 0.5)
    against the raters: what a model whose masks pass through that resolution (SAM's mask
    decoder: 4x its image embedding's grid) scores there even when it is otherwise exact."""
    from uncertainty_adapters import metrics

    scores = []
    for index in range(len(dataset)):
        masks = dataset[index]["masks"] > 0.5  # (R, H, W)
        if not bool((masks == masks[:1]).all()):
            continue
        mask = masks[:1].float()[None]  # (1, 1, H, W)
        back = F.interpolate(F.interpolate(mask, size=(side, side), mode="area"), size=mask.shape[-2:],
                             mode="bilinear", align_corners=False) > 0.5
        scores.append(float(metrics.ged(back, masks[None])))
    return round(float(np.mean(scores)), 4) if scores else float("nan")


def measure_run(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling measurements (GED, diversity where the raters agree / disagree, the modes'
    shares; for UA-SAM also the oracle and posterior spread, no z fit) of an already trained
    run folder on `synthetic`, any model (e.g. the seeds of a `ua-sam reproduce`), on the test
    part it was trained beside (``args.split`` "train": on the cases it trained on, its training
    part less its validation cases, to tell what it cannot fit from what it does not carry
    over), the first ``args.test_cases`` of them when given. Written to OUT/synthetic-run-<folder's parent>-<folder>[-train].json."""
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.presets import Preset
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run
    from uncertainty_adapters.integrations.pipeline.training.loop import train_val_split

    folder = Path(args.run)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_run(folder, device)
    if meta.get("data") != "synthetic":
        raise SystemExit(f"--run measures runs trained on synthetic data; {folder} was trained on {meta.get('data')!r}")
    preset = Preset.from_dict(meta["preset"])
    seed = meta.get("data_seed", meta.get("seed", 0))
    split = getattr(args, "split", "test")
    test = build_dataset("synthetic", preset.image_size, split=split, seed=seed, **meta.get("dataset_kwargs", {}))
    indices = list(range(len(test)))
    if split == "train":  # the cases the run trained on: its training part less what it validated on
        indices, _ = train_val_split(len(test), preset.val_fraction, meta.get("split_seed", meta.get("seed", 0)))
    if getattr(args, "test_cases", None):
        indices = indices[: args.test_cases]
    if len(indices) < len(test):
        test = torch.utils.data.Subset(test, indices)

    regions = _synthetic_regions(test, preset.image_size)
    result = {"data": "synthetic", "variant": f"run {folder.parent.name}/{folder.name}", "run": str(folder),
              "model": meta.get("model", "ua-sam"), "seed": seed, "prompt": preset.prompt, "split": split}
    result.update(diagnose(model, test, "synthetic", device, args.samples, regions, zfit_cases=0, prompt=preset.prompt))
    result["posterior_silent_channels"] = posterior_silent_channels(getattr(model, "latent_heads", None), test, device)
    if getattr(args, "resolution_floor", None):
        result["resolution_floor"] = {"side": args.resolution_floor,
                                      "agree_ged": resolution_floor(test, args.resolution_floor)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if split == "test" else f"-{split}"
    (out / f"synthetic-run-{folder.parent.name}-{folder.name}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _zfit_cell(zf: dict[str, Any] | None) -> str:
    if not zf:
        return "-"
    cell = f"{zf['posterior_mean']['mode_agrees']} -> {zf['fitted']['mode_agrees']}"
    return cell + (f" ({zf['embedding_shift']['mode_agrees']})" if "embedding_shift" in zf else "")


def summarize(out: Path) -> str:
    """A markdown table of every result JSON in ``out``."""
    lines = ["| data | variant | GED dis/agree | diversity dis/agree (raters) | oracle GED | spread | "
             "mode: raters -> samples | KL first/last | dead CMSM init/trained | mode agrees: z start -> fitted z (free embedding shift) |",
             "|" + "---|" * 10]
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        fmt = lambda d, k: "-" if not d or d.get(k) is None else f"{d[k]:.3f}"  # noqa: E731
        modes = "; ".join(f"{n} {m['raters']:.2f}->{m['samples']:.2f}" for n, m in r.get("modes", {}).items())
        kl = r.get("kl", {}).get("kl", [])
        dead = r.get("dead_cmsm", {})
        zf = r.get("z_fit")
        lines.append(
            f"| {r['data']} | {r['variant']} | {fmt(r.get('ged'), 'disagree')}/{fmt(r.get('ged'), 'agree')} | "
            f"{fmt(r.get('diversity'), 'disagree')}/{fmt(r.get('diversity'), 'agree')} "
            f"({fmt(r.get('rater_diversity'), 'disagree')}) | {fmt(r.get('oracle_ged'), 'all')} | "
            f"{r.get('posterior_spread_prior_sigmas', '-')} | {modes} | "
            f"{kl[0] if kl else '-'}/{kl[-1] if kl else '-'} | {dead.get('init')}/{dead.get('trained')} | "
            f"{_zfit_cell(zf)} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's command line (also `benchmarks.latent_takeoff`'s, after its ``--``)."""
    from uncertainty_adapters.integrations.pipeline.models.factory import MODELS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for runs and result JSON files")
    parser.add_argument("--data", choices=("synthetic", "bimodal"), default="synthetic")
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="paper")
    parser.add_argument("--model", choices=MODELS, default="ua-sam",
                        help="prob-unet: the Probabilistic U-Net baseline with its Table 1 recipe on the same data "
                             "and budget, instead of UA-SAM (--variant stays demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the demo preset's epochs")
    parser.add_argument("--cases", type=int, help="cases in the data set (synthetic: preset's 600; bimodal: 300)")
    parser.add_argument("--image-size", type=int, help="override the demo preset's 128 px (the backbone's pos-embeds are resized)")
    parser.add_argument("--pretrain-steps", type=int, help="pretrain a demo backbone for this many steps instead of using the shipped one")
    parser.add_argument("--test-cases", type=int, help="diagnose only the first N cases of the measured part")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="with --run: measure on this part of the data (train: what the model fits at all)")
    parser.add_argument("--max-steps", type=int, help="stop training after N steps")
    parser.add_argument("--samples", type=int, default=16, help="prior samples per test image")
    parser.add_argument("--zfit-cases", type=int, default=8, help="test cases for the per-rater z fit")
    parser.add_argument("--zfit-steps", type=int, default=80, help="Adam steps of the per-rater z fit")
    parser.add_argument("--full-finetune", action="store_true",
                        help="train every image-encoder weight, not only the adapters (a reference; measured in memory)")
    parser.add_argument("--quick", action="store_true", help="smoke run: random backbone, tiny batches")
    parser.add_argument("--summarize", action="store_true", help="print the table of OUT's results and exit")
    parser.add_argument("--run", metavar="DIR", help="measure this trained synthetic run folder (any model) instead of training")
    parser.add_argument("--resolution-floor", type=int, metavar="SIDE",
                        help="with --run: also the error where raters agree of masks passed through SIDE x SIDE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.summarize:
        print(summarize(Path(args.out)))
        return 0
    if args.run:
        print(json.dumps(measure_run(args), indent=2))
        return 0
    print(json.dumps(run(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
