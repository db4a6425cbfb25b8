"""Whether a lost latent is set before training: the raters' posterior spread at step 0, per seed.

For each seed, builds the run that ``python -m benchmarks.diagnose_latent --data bimodal --variant V
--seed N`` trains (the shipped demo backbone, the seed's initial weights and its train / validation
split; nothing is trained) and measures, before the first step, what train_log.csv's
``val_rater_spread`` measures after each epoch: how far apart the posterior puts the raters of an
image (their posterior means in prior sigmas, averaged over the validation images whose raters
disagree), and the validation loss. Given the seeds whose latent was lost (``--lost``, from the
runs' own results), it reports how often a lost run started with the smaller spread than a held
one (0.5: the start does not tell them apart)::

    python -m benchmarks.latent_at_init --out D --seeds 42-69 --lost 42,48,54,55,62,65,69

What it measured: docs/results.md, "The learning rate held to the end, and what in a seed loses the
latent".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def parse_seeds(text: str) -> list[int]:
    """``"42-45,50"`` -> [42, 43, 44, 45, 50]."""
    seeds: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def spread_at_init(folder: Path, variant: str, seed: int, backbone: Path | None) -> dict[str, float]:
    """The validation loss and the raters' posterior spread (prior sigmas) of ``seed``'s run on the
    ``folder:`` data before its first training step."""
    from benchmarks.diagnose_latent import VARIANTS
    from uncertainty_adapters.integrations.pipeline.presets import get_preset
    from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, _TrainingLoop, _validate

    preset = get_preset("demo").replace(**VARIANTS[variant])
    with tempfile.TemporaryDirectory() as out:  # the loop makes its run folder; nothing is written there
        job = TrainJob(preset=preset, data=f"folder:{folder}", out=Path(out) / "run", seed=seed, max_steps=None,
                       dataset_kwargs={}, resume=False, model="ua-sam")
        run = _TrainingLoop(job, backbone)
        validation = _validate(run.model, run.val_loader, run.val_loss_fn, preset, seed, run.accelerator)
    return {"val_rater_spread": validation.rater_spread, "val_loss": validation.loss}


def lost_started_lower(spreads: dict[int, float], lost: set[int]) -> float:
    """The share of (lost, held) pairs of seeds whose lost run started with the smaller spread (ties
    count half): 0.5 when the start does not tell them apart, 1 when every lost run started lower."""
    low = [spreads[seed] for seed in spreads if seed in lost]
    high = [spreads[seed] for seed in spreads if seed not in lost]
    if not low or not high:
        raise ValueError("--lost needs at least one lost and one held seed among --seeds")
    return sum((a < b) + 0.5 * (a == b) for a in low for b in high) / (len(low) * len(high))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the bimodal data and the result JSON")
    parser.add_argument("--seeds", required=True, help="seeds, e.g. 42-69 or 1,4,7")
    parser.add_argument("--lost", default="", help="the seeds among them whose latent was lost (e.g. 42,48)")
    parser.add_argument("--variant", default="demo", help="a diagnose_latent variant (default: the demo preset)")
    parser.add_argument("--cases", type=int, default=300, help="cases of the bimodal folder (diagnose_latent's 300)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.diagnose_latent import VARIANTS, write_bimodal
    from uncertainty_adapters.integrations.pipeline.backbone.demo import ensure_demo_backbone

    args = build_parser().parse_args(argv)
    if args.variant not in VARIANTS:
        build_parser().error(f"unknown --variant {args.variant!r}; choose one of diagnose_latent's: {', '.join(VARIANTS)}")
    seeds, lost = parse_seeds(args.seeds), set(parse_seeds(args.lost))
    if not lost <= set(seeds):
        build_parser().error(f"--lost names seeds not in --seeds: {sorted(lost - set(seeds))}")
    if lost and lost == set(seeds):
        build_parser().error("--lost names every seed: leave at least one held seed to compare with")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = write_bimodal(out, cases=args.cases)
    backbone, _ = ensure_demo_backbone()
    at_init = {seed: spread_at_init(folder, args.variant, seed, backbone) for seed in seeds}
    result: dict[str, Any] = {"variant": args.variant, "cases": args.cases, "seeds": at_init}
    if lost:
        spreads = {seed: values["val_rater_spread"] for seed, values in at_init.items()}
        result["lost"] = sorted(lost)
        result["lost_started_lower"] = lost_started_lower(spreads, lost)
    (out / "latent_at_init.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
