"""Inference overhead of the uncertainty adapters: t(UA-SAM encoder) / t(frozen SAM encoder).

    python -m benchmarks.overhead            # a line of text
    python -m benchmarks.overhead --json     # {"overhead_ratio": ..., ...}

The fixed CPU configuration (change it with the options, then it is no longer the reference):
SAM vit_b image encoder, random weights, 224 x 224 inputs (a 14 x 14 token grid: one attention
window, no padding), batch 2, float32, no grad, one torch thread, SAM attention through SDPA (the
default of build_sam). UA-SAM: the paper's adapter configuration (CMSM, latent_dim 6), adapters
moved away from their zero init, one z per image. Both encoders are timed in the same process,
interleaved round by round; the ratio is of the medians. Target: overhead_ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.timing import interleaved, machine
from benchmarks.workloads import CPU, BenchConfig, Workloads

TARGET = 1.10


def measure(config: BenchConfig, rounds: int, warmup: int = 2) -> dict[str, object]:
    """The overhead figures for ``config`` (the keys `main` prints)."""
    work = Workloads(config)
    cases = {"plain": work.encoder_forward(adapted=False), "ua": work.encoder_forward(adapted=True)}
    timings = interleaved(cases, rounds=rounds, warmup=warmup)
    ratio = timings.ratio("ua", "plain")
    result: dict[str, object] = {
        "overhead_ratio": round(ratio, 4),
        "target": TARGET,
        "meets_target": ratio <= TARGET,
        "t_plain_s": round(timings.median("plain"), 4),
        "t_ua_s": round(timings.median("ua"), 4),
        "rounds": rounds,
        "wall_s": {name: [round(t, 4) for t in times] for name, times in timings.wall.items()},
    }
    if config.device == "cpu":
        result["overhead_ratio_cpu_time"] = round(timings.ratio("ua", "plain", clock="cpu"), 4)
    result["config"] = config.describe()
    return result


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line of text")
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    parser.add_argument("--spec", default=CPU.spec, help="SAM variant (default vit_b)")
    parser.add_argument("--image-size", type=int, default=CPU.image_size, help="input side (default 224)")
    parser.add_argument("--batch", type=int, default=CPU.batch, help="images per forward (default 2)")
    parser.add_argument("--threads", type=int, default=CPU.threads, help="torch threads (default 1)")
    parser.add_argument("--reference-attention", action="store_true",
                        help="segment-anything's attention instead of SDPA in both encoders")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = CPU.replace(spec=args.spec, image_size=args.image_size, batch=args.batch, threads=args.threads,
                         sdpa_attention=not args.reference_attention, device=args.device)
    result = measure(config, args.rounds)
    result["machine"] = machine()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"overhead_ratio {result['overhead_ratio']:.3f} (target <= {TARGET}): UA-SAM encoder "
            f"{result['t_ua_s']:.3f} s vs plain {result['t_plain_s']:.3f} s, median of {args.rounds} "
            f"interleaved rounds, {config.spec} {config.image_size} px batch {config.batch}"
        )
    return result


if __name__ == "__main__":
    main()
