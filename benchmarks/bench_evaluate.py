"""Cost of `ua-sam evaluate` as the number of samples N grows: N = 4, 16, 100 side by side.

    python -m benchmarks.bench_evaluate                        # the demo preset's model and test part
    python -m benchmarks.bench_evaluate --checkpoint DIR       # a trained run (e.g. `ua-sam demo --out DIR`)
    python -m benchmarks.bench_evaluate --json
    python -m benchmarks.bench_evaluate --image-size 64 --latent-resolution 32 --cases 500 --ged-samples 4,16
                                                               # the `reproduce --budget hour` rows

What is timed: the whole evaluation of the test part (prompts, N samples per image drawn by
`draw_samples`, every metric of `score_samples`), with the Dice vote's K fixed at the preset's,
for each N in ``--ged-samples`` (default 4,16,100), interleaved round by round in one process
(`benchmarks/timing.py`), one torch thread. Without ``--checkpoint`` the model is the demo
preset's UA-SAM (128 px, the demo backbone's architecture) with its adapters moved off their
zero init: the cost of sampling and scoring depends on the shapes, not on trained weights.
The data is the demo's test part (`synthetic`, seed 0: 120 images).

Printed per N: seconds for the whole test part (median over rounds, wall and thread CPU time),
the ratio to the smallest N, and that ratio divided by the ratio of the Ns (<= 1: the cost grows
no faster than linearly in N). ``metrics_s``: the scoring alone on the same probabilities.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.timing import interleaved, machine
from uncertainty_adapters.integrations.data import build_dataset, dataset_kwargs_for
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate, score_samples
from uncertainty_adapters.integrations.pipeline.models.factory import build_model
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset
from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _untrained(preset: Preset) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(TrainJob(preset=preset, data="synthetic", out=Path("."), seed=0), backbone=None)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and name.startswith("encoder."):
                parameter.add_(0.02 * torch.randn_like(parameter))  # off the zero init: z has an effect
    return model.eval()


def measure(preset: Preset, ged_samples: tuple[int, ...], rounds: int, checkpoint: Path | None = None,
            cases: int | None = None, batch_size: int = 8) -> dict[str, object]:
    """The timings for each N (the keys `main` prints)."""
    if checkpoint is not None:
        model, meta = run_dir.load_run(checkpoint, device="cpu")
        preset = Preset.from_dict(meta["preset"])
        model.eval()
    else:
        model = _untrained(preset)
    if cases is not None:
        preset = preset.replace(synthetic_cases=cases)
    test = build_dataset("synthetic", preset.image_size, split="test", seed=0,
                         **dataset_kwargs_for(preset, "synthetic", {}))
    k = preset.eval_samples

    def run(n: int):
        return lambda: evaluate(model, test, num_samples=k, ged_samples=n, batch_size=batch_size, seed=0,
                                prompt=preset.prompt, keep_examples=0)

    timings = interleaved({f"N={n}": run(n) for n in ged_samples}, rounds=rounds, warmup=0)
    base = ged_samples[0]
    rows = []
    for n in ged_samples:
        name = f"N={n}"
        ratio = timings.ratio(name, f"N={base}")
        probabilities = torch.rand(batch_size, max(k, n), preset.image_size, preset.image_size)
        raters = test[0]["masks"][None].expand(batch_size, -1, -1, -1) > 0.5
        start = time.perf_counter()
        score_samples(probabilities, raters, k, n)
        metrics_s = (time.perf_counter() - start) * len(test) / batch_size
        rows.append({
            "ged_samples": n,
            "wall_s": round(timings.median(name), 2),
            "cpu_s": round(timings.median(name, "cpu"), 2),
            "ratio_to_first": round(ratio, 3),
            "ratio_cpu_to_first": round(timings.ratio(name, f"N={base}", clock="cpu"), 3),
            "ratio_over_linear": round(ratio / (n / base), 3),
            "metrics_s": round(metrics_s, 2),
        })
    return {
        "model": str(checkpoint) if checkpoint is not None else f"untrained {preset.name} preset architecture",
        "preset": preset.name,
        "image_size": preset.image_size,
        "images": len(test),
        "dice_samples": k,
        "rounds": rounds,
        "rows": rows,
        "machine": machine(),
    }


def format_result(result: dict[str, object]) -> str:
    lines = [
        f"ua-sam evaluate on {result['images']} test images ({result['model']}, {result['image_size']} px, "
        f"Dice K = {result['dice_samples']}), median of {result['rounds']} round(s), one thread",
        f"{'N':>5} {'wall s':>8} {'cpu s':>8} {'x first':>8} {'x first (cpu)':>14} {'/ linear':>9} {'metrics s':>10}",
    ]
    for row in result["rows"]:
        lines.append(f"{row['ged_samples']:>5} {row['wall_s']:>8.2f} {row['cpu_s']:>8.2f} {row['ratio_to_first']:>8.3f} "
                     f"{row['ratio_cpu_to_first']:>14.3f} {row['ratio_over_linear']:>9.3f} {row['metrics_s']:>10.2f}")
    lines.append(f"machine: {json.dumps(result['machine'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="A run folder (ua-sam demo/train --out); default: untrained.")
    parser.add_argument("--ged-samples", type=_int_list, default=(4, 16, 100), help="Ns to compare (default 4,16,100).")
    parser.add_argument("--rounds", type=int, default=1, help="Interleaved rounds (default 1).")
    parser.add_argument("--cases", type=int, help="Synthetic cases (default: the preset's; the test part is 20%%).")
    parser.add_argument("--preset", default="demo", help="Preset of the untrained model (default demo).")
    parser.add_argument("--image-size", type=int, help="Override the preset's image size (e.g. 64: the hour budget).")
    parser.add_argument("--latent-resolution", type=int, help="Override the preset's latent-head resolution.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1).")
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset).replace(image_size=args.image_size, latent_resolution=args.latent_resolution)
    result = measure(preset, args.ged_samples, args.rounds, args.checkpoint, args.cases)
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return result


if __name__ == "__main__":
    main()
