"""The official UA-SAM code's training step beside ours, on one machine, rounds interleaved.

    python -m benchmarks.official_side_by_side [--device cpu|cuda] [--rounds 3] [--threads 2]
        [--official ../shared/anchors/official_train_step.py] [--json OUT.json]

The official step runs through ``official_train_step.py`` (its own model and loop, fp32, SAM vit_b,
1024 px canvas, batch 2) in a subprocess per round: one warm-up step and one timed step, of which
the script reports the step time only (not its start-up). Between those rounds our step runs in
this process: SAM vit_b at 1024 px, batch 2, one point prompt, z ~ Q, ELBO, backward, Adam, in
float32 with each attention kind and, when asked, under bf16 autocast. Prints, per case, the
median seconds per step and the official step's time as a multiple of ours.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.timing import machine
from benchmarks.workloads import BenchConfig, Workloads

HERE = Path(__file__).resolve().parent
CANDIDATES = (HERE.parent.parent / "shared" / "anchors", HERE.parent / "shared" / "anchors", HERE.parent / ".whl" / "anchors")


def find_official(path: str | None) -> Path:
    """The official step script: ``path``, else ../shared/anchors/, shared/anchors/ or .whl/anchors/."""
    options = [Path(path)] if path else [folder / "official_train_step.py" for folder in CANDIDATES]
    for option in options:
        if option.is_file():
            return option
    raise FileNotFoundError(f"official_train_step.py not found; looked at {', '.join(map(str, options))}; pass --official")


def official_step_seconds(script: Path, device: str, threads: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "step.json"
        command = [sys.executable, str(script), "--device", device, "--batch", "2", "--steps", "1", "--warmup", "1",
                   "--json", str(out)] + (["--threads", str(threads)] if threads else [])
        subprocess.run(command, check=True, capture_output=True, text=True)
        return float(json.loads(out.read_text())["median_step_s"])


def our_step_seconds(work: Workloads, kind: str, amp: bool) -> float:
    work.with_attention(kind)
    step = work.training_step(amp=amp)
    step()  # warm-up, as the official script's
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads on both sides (default 2)")
    parser.add_argument("--kinds", nargs="+", default=["sdpa", "fused"], help="our attention kinds to time")
    parser.add_argument("--bf16", action="store_true", help="also time our step under bf16 autocast (fused)")
    parser.add_argument("--official", help="path of official_train_step.py")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args(argv)
    script = find_official(args.official)
    if args.device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    work = Workloads(BenchConfig(image_size=1024, batch=2, device=args.device, amp=False,
                                 threads=args.threads if args.device == "cpu" else None))
    cases = [(f"ours_{kind}_fp32", kind, False) for kind in args.kinds] + ([("ours_fused_bf16", "fused", True)] if args.bf16 else [])
    times: dict[str, list[float]] = {"official_fp32": [], **{name: [] for name, _, _ in cases}}
    for index in range(args.rounds):
        order = cases if index % 2 == 0 else cases[::-1]
        times["official_fp32"].append(official_step_seconds(script, args.device, args.threads))
        for name, kind, amp in order:
            times[name].append(our_step_seconds(work, kind, amp))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {"what": "seconds per training step, SAM vit_b, 1024 px, batch 2, median of interleaved rounds",
              "device": args.device, "threads": args.threads, "rounds": args.rounds, "official_script": str(script),
              "median_s": {k: round(v, 3) for k, v in medians.items()}, "all_s": times,
              "official_over_ours": {name: round(medians["official_fp32"] / medians[name], 3) for name, _, _ in cases},
              "machine": machine()}
    print(json.dumps({k: result[k] for k in ("device", "median_s", "official_over_ours")}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
