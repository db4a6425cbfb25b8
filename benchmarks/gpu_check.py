"""The GPU check of UA-SAM at the paper's configuration; run it through gpu_check.sh.

    python -m benchmarks.gpu_check --out DIR               # CUDA: SAM vit_b, 1024 px, bf16 autocast
    python -m benchmarks.gpu_check --out DIR --cpu-smoke   # tiny sizes on the CPU (checks the script)
    python -m benchmarks.gpu_check --out DIR --spec vit_h  # the same figures for vit_l / vit_h

Measures, in one run and on one model pair (random SAM weights; speed does not depend on them):
    training            UA-SAM step (z ~ Q, forward, ELBO, backward, Adam): images/s, peak memory,
                        at batch 2 and at the largest batch that fits (doubling search)
    training_checkpointed   the same with activation checkpointing (largest batch that fits)
    sampling_k4         UA-SAM inference, 4 hypotheses per image in one batch: hypotheses/s
    plain_encoder       the frozen SAM image encoder forward (no adapters): images/s
    ua_encoder          the UA-SAM image encoder forward, and overhead_ratio = t(ua) / t(plain)
    sdpa                SDPA attention vs segment-anything's, training step and encoder forward
    shifts              the adapters' per-sample terms batched over adapters vs adapter by adapter
    shifts_sampling     the same for sampling at K = 4
    compiled            both encoders under torch.compile(mode="reduce-overhead") vs eager
    compiled_training   the training step with the encoder under torch.compile (ua-sam train --compile)
    predictor           UncertaintySamPredictor: second click / set_image (K = 4), 1024 x 1024 image
and writes DIR/gpu_check.json and DIR/gpu_check.txt. A time budget (--budget-s) keeps it under
5 minutes on an H100: what the budget leaves out is recorded as skipped. ``--only NAME ...`` runs
some items; ``--quick`` measures sized items at batch 2 only (no largest-batch search), e.g.

    python -m benchmarks.gpu_check --out DIR/vit_h --spec vit_h --only training plain_encoder ua_encoder --quick
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

import numpy as np
import torch

try:
    import uncertainty_adapters.integrations  # noqa: F401  (installed: pip install -e .)
except ImportError:  # a source tree that pip could not install: map the package dir as setuptools does
    import uncertainty_adapters

    uncertainty_adapters.__path__.append(str(ROOT))

from benchmarks import bench_predictor, speedups
from benchmarks.timing import Budget, budget_lines, interleaved, machine, release_device_memory
from benchmarks.workloads import GPU, TINY, BenchConfig, Workloads, synchronize
from uncertainty_adapters.integrations.sam import UncertaintySamPredictor


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def measure(work: Workloads, make: Callable[[int], Callable[[], object]], batch: int, steps: int,
            per_call: int) -> dict[str, object]:
    """Seconds per call, items per second and peak memory of ``make(batch)`` (one warm-up call)."""
    device = work.device
    step = make(batch=batch)
    step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None
    del step
    release_device_memory(device)
    return {"batch": batch, "s_per_call": round(seconds, 4), "per_s": round(per_call * batch / seconds, 2),
            "peak_memory_mb": peak}


def largest_batch(work: Workloads, make: Callable[[int], Callable[[], object]], start: int, cap: int,
                  budget: Budget, reserve: float) -> tuple[int, bool]:
    """The largest batch in start, 2 start, 4 start, ... <= cap that runs without running out of
    memory (one call each); (batch, whether the search ended by running out of memory)."""
    best, batch = start, start * 2
    while batch <= cap and budget.left() > reserve:
        try:
            make(batch=batch)()
        except RuntimeError as error:
            if not _is_oom(error):
                raise
            release_device_memory(work.device)
            return best, True
        release_device_memory(work.device)
        best, batch = batch, batch * 2
    return best, False


ITEMS = ("training", "sampling_k4", "plain_encoder", "ua_encoder", "training_checkpointed", "sdpa", "shifts",
         "shifts_sampling", "compiled", "predictor", "compiled_training")


def run_check(config: BenchConfig, budget_s: float, steps: int, cap: int,
              on_item: Callable[[dict[str, object]], None] = lambda results: None,
              only: tuple[str, ...] = ITEMS, quick: bool = False) -> dict[str, object]:
    """The figures of the check (``only`` those items; ``quick``: sized items at the start batch
    only); ``on_item(results)`` after each item (to save partial results, so a run cut short by
    its caller's time limit still reports what it measured)."""
    budget = Budget(budget_s)
    work = Workloads(config)
    start = config.batch
    results: dict[str, object] = {"config": config.describe(), "machine": machine(), "skipped": []}
    started = time.perf_counter()
    _ = work.ua_sam  # build both models before the clock matters
    results["build_s"] = round(time.perf_counter() - started, 1)

    def item(name: str, reserve: float, fn: Callable[[], object]) -> None:
        if name not in only:
            return
        if budget.left() < reserve:
            results["skipped"].append(name)
            return
        try:
            results[name] = fn()
        except Exception as error:  # one failing figure must not cost the others (device time is scarce)
            release_device_memory(work.device)
            results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"[:500]
        results["total_s"] = round(time.perf_counter() - started, 1)
        on_item(results)

    # Each maker takes batch= and returns the step to time.
    train = functools.partial(work.training_step, checkpointing=False)
    train_ckpt = functools.partial(work.training_step, checkpointing=True)
    sample = functools.partial(work.sampling, 4)
    plain = functools.partial(work.encoder_forward, False)
    adapted = functools.partial(work.encoder_forward, True)

    def sized(make, per_call: int, search_cap: int) -> dict[str, object]:
        out = {f"at_batch_{start}": measure(work, make, start, steps, per_call)}
        if quick:
            return out
        top, oom = largest_batch(work, make, start, search_cap, budget, reserve=30)
        out["largest_batch"] = {**measure(work, make, top, steps, per_call), "search_hit_oom": oom,
                                "search_cap": search_cap}
        return out

    item("training", 60, lambda: sized(train, 1, cap))
    item("sampling_k4", 45, lambda: sized(sample, 4, max(start, cap // 4)))  # up to `cap` hypotheses
    item("plain_encoder", 40, lambda: sized(plain, 1, 2 * cap))
    item("ua_encoder", 30, lambda: _overhead(work, plain(batch=start), adapted(batch=start), steps))
    item("training_checkpointed", 40, lambda: sized(train_ckpt, 1, 2 * cap))
    item("sdpa", 30, lambda: _sdpa(work, steps))
    item("shifts", 15, lambda: speedups.shifts(work, max(steps, 10)))
    item("shifts_sampling", 15, lambda: speedups.shifts_sampling(work, max(steps, 10)))
    item("predictor", 20, lambda: _predictor(work, max(steps, 10)))
    item("compiled", 90, lambda: speedups.compiled(work, max(steps, 10)))
    item("compiled_training", 120, lambda: speedups.compiled_training(work, max(steps, 10)))
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def _overhead(work: Workloads, plain: Callable[[], object], adapted: Callable[[], object],
              steps: int) -> dict[str, object]:
    timings = interleaved({"plain": plain, "ua": adapted}, rounds=steps, warmup=1)
    return {"batch": work.config.batch, "overhead_ratio": round(timings.ratio("ua", "plain"), 4),
            "s_plain": round(timings.median("plain"), 4), "s_ua": round(timings.median("ua"), 4)}


def _predictor(work: Workloads, rounds: int) -> dict[str, object]:
    """Second click / set_image of the predictor on UA-SAM (float32, as users call it), on an
    image of the encoder's input size."""
    size = work.config.image_size
    image = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    return bench_predictor.measure(rounds, predictor=UncertaintySamPredictor(work.ua_sam), image=image)


def _sdpa(work: Workloads, steps: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, step in (("training_step", work.training_step()), ("encoder_forward", work.encoder_forward(False))):
        cases = {"reference": work.using_attention(False, step), "sdpa": work.using_attention(True, step)}
        timings = interleaved(cases, rounds=steps, warmup=1)
        out[name] = {"ratio_sdpa_over_reference": round(timings.ratio("sdpa", "reference"), 4),
                     "s_reference": round(timings.median("reference"), 4), "s_sdpa": round(timings.median("sdpa"), 4)}
    work.with_attention(work.config.sdpa_attention)
    return out


def summary(results: dict[str, object]) -> str:
    config, lines = results["config"], []
    lines.append(f"UA-SAM GPU check: {config['spec']} {config['image_size']} px, bf16 autocast={config['amp']}, "
                 f"device {results['machine'].get('gpu', 'cpu')}, {results['machine']['date_utc']}")
    for name, unit in (("training", "images/s"), ("training_checkpointed", "images/s"),
                       ("sampling_k4", "hypotheses/s"), ("plain_encoder", "images/s")):
        if name not in results:
            continue
        for where, row in results[name].items():
            lines.append(f"{name:22s} {where:14s} batch {row['batch']:>4d}: {row['per_s']:>9.2f} {unit:13s} "
                         f"peak {row['peak_memory_mb']} MB")
    if "ua_encoder" in results:
        row = results["ua_encoder"]
        lines.append(f"encoder overhead_ratio (UA / plain, batch {row['batch']}): {row['overhead_ratio']}")
    if "sdpa" in results:
        for name, row in results["sdpa"].items():
            lines.append(f"SDPA / reference attention, {name}: {row['ratio_sdpa_over_reference']}")
    if "shifts" in results:
        lines.append(f"adapter shifts batched / adapter by adapter, encoder forward: {results['shifts']['ratio']}")
    if "shifts_sampling" in results:
        lines.append(f"adapter shifts batched / adapter by adapter, sampling K=4: {results['shifts_sampling']['ratio']}")
    if "predictor" in results:
        row = results["predictor"]
        lines.append(f"predictor second click / set_image (K=4): {row['click_to_set_image_ratio']} "
                     f"({1000 * row['t_second_click_s']:.1f} ms vs {1000 * row['t_set_image_s']:.1f} ms)")
    if "compiled_training" in results:
        row = results["compiled_training"]
        lines.append(f"training step, encoder under torch.compile({row['mode']}) / eager: {row['ratio']} "
                     f"(compile {row['compile_and_warmup_s']} s)")
    if "compiled" in results:
        row = results["compiled"]
        lines.append(f"torch.compile({row['mode']}): UA encoder compiled / eager {row['ratio']}; overhead_ratio eager "
                     f"{row['overhead_ratio_eager']}, compiled {row['overhead_ratio_compiled']}; compiled UA / eager "
                     f"plain {row['ua_compiled_over_plain_eager']} (compile {row['compile_and_warmup_s']} s)")
    lines += budget_lines(results)
    lines.append(f"total {results['total_s']} s (+ build {results['build_s']} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu_out", help="folder for gpu_check.json and gpu_check.txt")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (no GPU needed)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="time budget in seconds (default 240)")
    parser.add_argument("--steps", type=int, default=5, help="measured calls per figure (default 5)")
    parser.add_argument("--cap", type=int, default=64, help="largest training batch tried (default 64)")
    parser.add_argument("--only", nargs="+", choices=ITEMS, default=list(ITEMS), help="run only these items")
    parser.add_argument("--quick", action="store_true", help="sized items at batch 2 only (no largest-batch search)")
    parser.add_argument("--spec", default="vit_b", choices=("vit_b", "vit_l", "vit_h"),
                        help="SAM variant (default vit_b, the paper's)")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        config, steps, cap = TINY, 1, 4
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here; use --cpu-smoke to check the script on the CPU")
        config, steps, cap = GPU.replace(spec=args.spec), args.steps, args.cap
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "cpu-smoke (tiny sizes, not a measurement)" if args.cpu_smoke else "gpu"

    def save(results: dict[str, object]) -> None:
        results["mode"] = mode
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")

    only = tuple(args.only)
    if args.cpu_smoke and args.only == list(ITEMS):  # compiling takes minutes on the CPU
        only = tuple(name for name in only if name not in speedups.OPT_IN)
    results = run_check(config, args.budget_s, steps, cap, on_item=save, only=only, quick=args.quick)
    save(results)
    text = summary(results)
    (out / "gpu_check.txt").write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
