"""A trained UA-SAM run's two priors side by side: its Gaussian, and a mixture of K Gaussians.

The prior-fit phase (uncertainty_adapters/prior_fit.py) fits one Gaussian P(z|X) per
image to the posteriors of all its raters. Where the raters fall into groups (the bimodal
folder's two disc raters and two ring raters, `synthetic`'s lumpers who include a satellite and
splitters who do not), the one Gaussian that covers every group's posteriors puts much of its mass
between them, and z drawn there decodes to neither group's mask (docs/results.md, "An auxiliary
decoder that needs z"). ``--prior-components K`` (the preset field ``prior_components``) fits a
K-component mixture after the Gaussian, in the same phase, and samples it instead
(`uncertainty_adapters.mixture_prior`).

This script scores both priors of one run on the same test images with the same weights. A run
trained with ``--prior-components K`` holds both already. A run trained without it gets its
mixture here, fitted exactly as its prior-fit phase would have fitted it (the library's
`fit_mixture_prior`, the run's seed, training and validation parts, epochs and learning rate;
``--components``, default 4), so stop 35's what-if commands still run:

    python -m benchmarks.mixture_prior --run P-114 --out M-114                        # bimodal runs
    python -m benchmarks.mixture_prior --run runs/S-1 --out M-S1 --evaluate           # synthetic runs

A bimodal run's test part and modes come from the folder it trained on (``--modes``: the
``bimodal_modes.npz`` that ``diagnose_latent --data bimodal`` writes beside the folder; found
there by default). Result: OUT/mixture.json with ``gaussian`` and ``mixture`` entries
(`benchmarks.diagnose_latent`'s measurements: GED, diversity, the modes' shares), the mixture
fit's rows, the components' weights; with ``--evaluate`` also ``evaluate``: both priors scored as
``ua-sam evaluate --seed <the run's data seed>`` scores a run (the Gaussian's figures are a
Gaussian run's metrics.json; the mixture draws each sample's component from the same generator, so
its later prompts are drawn after other numbers than the Gaussian's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch


def _evaluate(model, test, preset, seed: int) -> dict[str, Any]:
    """The metrics.json figures of ``model`` on ``test``, drawn as `ua-sam evaluate --seed seed` draws them."""
    from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate

    summary = evaluate(model, test, num_samples=preset.eval_samples, batch_size=8, prompt=preset.prompt, seed=seed,
                       keep_examples=0, ged_samples=preset.ged_samples).summary()
    return {key: summary[key] for key in ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece")}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("ged", "diversity", "rater_diversity", "oracle_ged", "oracle_diversity", "modes", "images")
    return {key: result[key] for key in keep if key in result}


def with_mixture(model, meta: dict[str, Any], train, validation, components: int) -> list[dict[str, Any]]:
    """Give ``model`` (a loaded run without a mixture prior) latent heads with a ``components``
    mixture fitted as its prior-fit phase would have fitted it; its other weights stay as they are.

    Returns:
        the mixture fit's rows (`fit_mixture_prior`'s).
    """
    from uncertainty_adapters import LatentHeads
    from uncertainty_adapters.integrations.pipeline.presets import Preset
    from uncertainty_adapters.prior_fit import fit_mixture_prior

    preset, heads = Preset.from_dict(meta["preset"]), model.latent_heads
    mixed = LatentHeads(**{**heads.config, "prior_components": components})
    missing, unexpected = mixed.load_state_dict(heads.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("mixture_") for name in missing), (missing, unexpected)
    model.latent_heads = mixed.eval()
    return fit_mixture_prior(mixed, train, validation, preset.prior_fit_epochs, preset.prior_fit_lr,
                             preset.batch_size, meta["seed"], torch.device("cpu"))


def main(argv: list[str] | None = None) -> int:
    from benchmarks import diagnose_latent
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.presets import Preset
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run
    from uncertainty_adapters.integrations.pipeline.training.loop import train_val_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained UA-SAM run folder (ua-sam train's --out)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--components", type=int, default=4,
                        help="K of a mixture fitted here, for a run trained without one (default 4: one per rater "
                             "of the data here); a run trained with --prior-components keeps its own")
    parser.add_argument("--samples", type=int, default=16, help="prior samples per test image")
    parser.add_argument("--modes", help="bimodal_modes.npz of a bimodal folder (default: beside the folder)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also score both priors as `ua-sam evaluate --seed <the run's data seed>` does (metrics.json's draws)")
    args = parser.parse_args(argv)

    torch.set_grad_enabled(True)
    model, meta = load_run(args.run)
    if model.latent_heads is None:
        raise SystemExit(f"{args.run} has no latent heads: nothing to sample")
    preset = Preset.from_dict(meta["preset"])
    seed = meta.get("data_seed", meta.get("seed", 0))
    spec = meta["data"]
    kwargs = {"length": preset.synthetic_cases} if spec == "synthetic" else {}
    kwargs.update(meta.get("dataset_kwargs") or {})
    train_part = build_dataset(spec, preset.image_size, split="train", seed=seed, **kwargs)
    train_idx, val_idx = train_val_split(len(train_part), preset.val_fraction,
                                         meta["split_seed"] if meta.get("split_seed") is not None else meta.get("seed", 0))
    train, validation = torch.utils.data.Subset(train_part, train_idx), torch.utils.data.Subset(train_part, val_idx)
    test = build_dataset(spec, preset.image_size, split="test", seed=seed, **kwargs)
    if spec == "synthetic":
        regions = diagnose_latent._synthetic_regions(test, preset.image_size)
    else:
        folder = Path(spec.split(":", 1)[1])
        saved = np.load(args.modes or folder.parent / "bimodal_modes.npz")

        def regions(index: int, case_id: str) -> dict[str, torch.Tensor]:
            centre = torch.from_numpy(saved[case_id])
            return {"centre": centre} if centre.any() else {}

    if model.latent_heads.samples_mixture:
        fitted_here, rows = False, [row for row in meta.get("prior_fit", []) if "mixture_fit_epoch" in row]
    else:
        fitted_here, rows = True, with_mixture(model, meta, train, validation, args.components)
    heads = model.latent_heads
    device = torch.device("cpu")
    data = "synthetic" if spec == "synthetic" else "bimodal"
    result: dict[str, Any] = {"run": str(args.run), "seed": seed, "components": heads.config["prior_components"],
                              "fitted_here": fitted_here, "fit": rows}

    def measure() -> dict[str, Any]:
        scored = {"diagnosis": _summary(diagnose_latent.diagnose(model, test, data, device, args.samples, regions,
                                                                 zfit_cases=0, prompt=preset.prompt))}
        if args.evaluate:
            scored["evaluate"] = _evaluate(model, test, preset, seed)
        return scored

    with torch.no_grad():
        with mock.patch.object(heads, "prior", heads.gaussian_prior):
            gaussian = measure()
        mixture = measure()
        result["gaussian"], result["mixture"] = gaussian["diagnosis"], mixture["diagnosis"]
        if args.evaluate:
            result["evaluate"] = {"gaussian": gaussian["evaluate"], "mixture": mixture["evaluate"]}
        images = torch.stack([test[i]["image"] for i in range(len(test))])
        weights = heads.mixture_prior(images).weights
        result["component_weights"] = {"mean_max": float(weights.max(-1).values.mean()),
                                       "effective_components": float((1 / (weights ** 2).sum(-1)).mean())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixture.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("gaussian", "mixture", "component_weights")}, indent=1))
    if rows:
        kept = min(rows, key=lambda row: row.get("val_mixture_nll", float("inf")))
        print("mixture fit: best validation -log P", kept.get("val_mixture_nll"), "at epoch", kept["mixture_fit_epoch"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
