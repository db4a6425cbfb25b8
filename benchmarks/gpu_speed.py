"""Training and sampling at the speed of the hardware: the figures of the fast paths, each as a
ratio to the plain frozen SAM encoder of the same run. Run it through gpu_check.sh.

    python -m benchmarks.gpu_speed --out DIR               # CUDA: SAM vit_b, 1024 px, bf16 autocast
    python -m benchmarks.gpu_speed --out DIR --cpu-smoke   # tiny sizes on the CPU (checks the script)

Items, in this order (a time budget skips what does not fit; a failing item records its error):
    plain_encoder      the frozen SAM image encoder forward (no adapters), batch 2 and 32, for
                       every attention kind: images/s (the reference every ratio divides by)
    attention          encoder forward and eager training step per attention kind, / "sdpa"
    overhead           UA-SAM encoder forward / plain encoder forward, batch 2 and 32, best kind
    training           the training step at batch 2: eager, one CUDA graph, CUDA graph with the
                       encoder compiled; images/s, / eager, and per plain-encoder image
    training_largest   the fastest training path at the largest batch that fits (doubling search)
    mfu                model FLOPs of one training step (torch.utils.flop_counter, the paper
                       attention's FLOPs) / step time / the card's bf16 dense peak, at both batches
    flex               FlexAttention (compiled per shape) against "fused" and "sdpa"
    sampling_n16       16 hypotheses of one image (the GED protocol): eager and compiled
                       (compile_for_sampling), hypotheses/s and the compile cost. Last: compiling
                       is in place, and the encoder's CUDA graphs would break the items after it
and writes DIR/gpu_speed.json (after every item) and DIR/gpu_speed.txt. ``--skip ITEM ...`` leaves
items out (plain_encoder and training are the references of the rest: they always run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.timing import Budget, budget_lines, interleaved, machine, release_device_memory
from benchmarks.workloads import GPU, TINY, BenchConfig, Workloads, synchronize
from uncertainty_adapters.integrations.sam import compile_for_sampling

KINDS = ("sdpa", "fused")  # "flex" compiles per shape (minutes): measured last, in its own item
# Dense bf16 tensor-core peaks (vendor datasheets, without sparsity), by a substring of the name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def peak_tflops(name: str) -> float | None:
    return next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)


def seconds_per_call(step: Callable[[], object], rounds: int, device: torch.device, warmup: int = 2) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / rounds


def plain_encoder(work: Workloads, rounds: int, batches: tuple[int, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for kind in KINDS:
        work.with_attention(kind)
        for batch in batches:
            try:
                s = seconds_per_call(work.encoder_forward(False, batch=batch), rounds, work.device)
            except Exception as error:  # one kind failing must not cost the others
                out[f"{kind}_batch_{batch}"] = {"error": f"{type(error).__name__}: {error}"[:300]}
                continue
            finally:
                release_device_memory(work.device)
            out[f"{kind}_batch_{batch}"] = {"s_per_call": round(s, 5), "images_per_s": round(batch / s, 2)}
    work.with_attention("sdpa")
    return out


def attention(work: Workloads, rounds: int, kinds: tuple[str, ...] = KINDS) -> dict[str, object]:
    """Each kind / "sdpa", interleaved; a kind whose first call fails is reported and left out."""
    out: dict[str, object] = {}
    for name, make in (("encoder_forward", lambda: work.encoder_forward(False)), ("training_step", work.training_step)):
        step = make()
        cases, row = {}, {}
        for kind in ("sdpa", *[k for k in kinds if k != "sdpa"]):
            case = _with_kind(work, kind, step)
            try:
                case()
                cases[kind] = case
            except Exception as error:
                row[f"{kind}_error"] = f"{type(error).__name__}: {error}"[:300]
                release_device_memory(work.device)
        timings = interleaved(cases, rounds=rounds, warmup=1)
        row.update({f"{kind}_over_sdpa": round(timings.ratio(kind, "sdpa"), 4) for kind in cases})
        row["s_sdpa"] = round(timings.median("sdpa"), 5)
        out[name] = row
    work.with_attention("sdpa")
    return out


def _with_kind(work: Workloads, kind: str, step: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        work.with_attention(kind)
        return step()

    return run


def best_kind(results: dict[str, object]) -> str:
    """The attention kind with the fastest eager training step (sdpa when not measured)."""
    ratios = results.get("attention", {}).get("training_step", {})
    measured = {kind: ratios[f"{kind}_over_sdpa"] for kind in KINDS if f"{kind}_over_sdpa" in ratios}
    return min(measured, key=measured.get) if measured else "sdpa"


def overhead(work: Workloads, rounds: int, batches: tuple[int, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for batch in batches:
        cases = {"plain": work.encoder_forward(False, batch=batch), "ua": work.encoder_forward(True, batch=batch)}
        timings = interleaved(cases, rounds=rounds, warmup=2)
        out[f"batch_{batch}"] = {"overhead_ratio": round(timings.ratio("ua", "plain"), 4),
                                 "s_plain": round(timings.median("plain"), 5), "s_ua": round(timings.median("ua"), 5)}
        release_device_memory(work.device)
    return out


def training(work: Workloads, rounds: int, batch: int, compile_mode: str | None) -> dict[str, object]:
    paths = {
        "eager": lambda: work.training_step(batch=batch),
        "cuda_graph": lambda: work.graphed_training_step(batch=batch),
    }
    if compile_mode is not None:
        paths["cuda_graph_compiled"] = lambda: work.graphed_training_step(batch=batch, compile_mode=compile_mode)
    out: dict[str, object] = {"batch": batch, "compile_mode": compile_mode}
    steps: dict[str, Callable[[], object]] = {}
    for name, make in paths.items():
        started = time.perf_counter()
        try:
            step = make()
            step()  # records the graph / compiles
            synchronize(work.device)
        except Exception as error:  # a path that fails here must not cost the others
            out[f"{name}_error"] = f"{type(error).__name__}: {error}"[:400]
            release_device_memory(work.device)
            continue
        out[f"{name}_first_call_s"] = round(time.perf_counter() - started, 1)
        steps[name] = step
    if work.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timings = interleaved(steps, rounds=rounds, warmup=1)
    for name in steps:
        s = timings.median(name)
        out[name] = {"s_per_step": round(s, 5), "images_per_s": round(batch / s, 2),
                     "over_eager": round(s / timings.median("eager"), 4) if "eager" in steps else None}
    if work.device.type == "cuda":
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    release_device_memory(work.device)
    return out


def largest_training(work: Workloads, rounds: int, start: int, cap: int, budget: Budget) -> dict[str, object]:
    """Eager and CUDA-graph training at the largest batch (start, 2 start, ...) that trains.

    The two paths are timed one after the other, not interleaved: at that batch a recorded CUDA
    graph keeps the whole step's activations in a private memory pool, which
    leaves no room for the eager step beside it. A path that still runs out of memory is
    recorded as ``{path}_error``.
    """
    best, batch = None, start
    while batch <= cap and budget.left() > 40:
        try:
            work.training_step(batch=batch)()
            best = batch
        except torch.cuda.OutOfMemoryError:
            break
        finally:
            release_device_memory(work.device)
        batch *= 2
    if best is None:
        return {"error": "no batch fits"}
    out: dict[str, object] = {"batch": best, "search_cap": cap, "timed": "one path after the other"}
    for name, make in (("eager", work.training_step), ("cuda_graph", work.graphed_training_step)):
        try:
            step = make(batch=best)
            s = interleaved({name: step}, rounds=rounds, warmup=1).median(name)
            out[name] = {"s_per_step": round(s, 5), "images_per_s": round(best / s, 2)}
        except torch.cuda.OutOfMemoryError as error:
            out[f"{name}_error"] = f"OutOfMemoryError: {error}"[:300]
        finally:
            step = None  # the graph and its memory pool go with the last reference
            release_device_memory(work.device)
    return out


def training_flops(work: Workloads, batch: int) -> int:
    """FLOPs of one eager training step with SDPA attention (head dim as the paper's model)."""
    work.with_attention("sdpa")
    step = work.training_step(batch=batch)
    step()
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def mfu(work: Workloads, results: dict[str, object], peak: float | None) -> dict[str, object]:
    out: dict[str, object] = {"peak_bf16_tflops": peak}
    for key in ("training", "training_largest"):
        row = results.get(key)
        if not isinstance(row, dict) or "batch" not in row:
            continue
        batch = row["batch"]
        flops = training_flops(work, batch)
        for path in ("eager", "cuda_graph", "cuda_graph_compiled"):
            if isinstance(row.get(path), dict):
                achieved = flops / row[path]["s_per_step"] / 1e12
                out[f"{key}_{path}"] = {"batch": batch, "tflop_per_step": round(flops / 1e12, 3),
                                        "achieved_tflops": round(achieved, 1),
                                        "mfu": round(achieved / peak, 4) if peak else None}
        release_device_memory(work.device)
    return out


def sampling(work: Workloads, rounds: int, n: int, compile_ok: bool) -> dict[str, object]:
    eager = work.sampling(n, batch=1)
    s_eager = seconds_per_call(eager, rounds, work.device)
    if not compile_ok:
        return {"hypotheses_per_image": n, "eager": {"s_per_image": round(s_eager, 5),
                                                      "hypotheses_per_s": round(n / s_eager, 1)}}
    compile_for_sampling(work.ua_sam)
    compiled = work.sampling(n, batch=1)
    started = time.perf_counter()
    for _ in range(3):  # compile, then let the CUDA graphs record
        compiled()
    compile_s = time.perf_counter() - started
    s_compiled = seconds_per_call(compiled, rounds, work.device)
    return {"hypotheses_per_image": n, "eager": {"s_per_image": round(s_eager, 5), "hypotheses_per_s": round(n / s_eager, 1)},
            "compiled": {"s_per_image": round(s_compiled, 5), "hypotheses_per_s": round(n / s_compiled, 1)},
            "compiled_over_eager": round(s_compiled / s_eager, 4), "compile_and_record_s": round(compile_s, 1)}


ITEMS = ("plain_encoder", "attention", "overhead", "training", "training_largest", "mfu", "flex", "sampling_n16")
SKIPPABLE = tuple(name for name in ITEMS if name not in ("plain_encoder", "training"))


def run(config: BenchConfig, budget_s: float, rounds: int, cap: int, compile_mode: str,
        save: Callable[[dict[str, object]], None], skip: tuple[str, ...] = ()) -> dict[str, object]:
    budget = Budget(budget_s)
    work = Workloads(config)
    info = machine()
    results: dict[str, object] = {"config": config.describe(), "machine": info, "skipped": [], "errors": {}}
    started = time.perf_counter()
    _ = work.ua_sam

    def item(name: str, reserve: float, fn: Callable[[], object]) -> None:
        if name in skip:
            results.setdefault("left_out", []).append(name)
            return
        if budget.left() < reserve:
            results["skipped"].append(name)
            return
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception as error:
            results["errors"][name] = f"{type(error).__name__}: {error}"[:600]
        finally:
            release_device_memory(work.device)
        results.setdefault("item_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        results["total_s"] = round(time.perf_counter() - started, 1)
        save(results)

    small, large = config.batch, 32 if config.device == "cuda" else 4
    item("plain_encoder", 20, lambda: plain_encoder(work, rounds, (small, large)))
    item("attention", 30, lambda: attention(work, rounds))
    kind = best_kind(results)
    results["chosen_attention"] = kind
    work.with_attention(kind)
    item("overhead", 20, lambda: overhead(work, rounds, (small, large)))
    on_gpu = config.device == "cuda"  # compiling on a CPU takes minutes: the smoke run skips it
    item("training", 60, lambda: training(work, rounds, small, compile_mode if on_gpu else None))
    item("training_largest", 60, lambda: largest_training(work, rounds, small, cap, budget))
    item("mfu", 20, lambda: mfu(work, results, peak_tflops(str(info.get("gpu", "")))))
    item("flex", 60, lambda: attention(work, rounds, ("fused", "flex")))
    item("sampling_n16", 60, lambda: sampling(work, rounds, 16, on_gpu))  # last: compiles the encoder in place
    results["total_s"] = round(time.perf_counter() - started, 1)
    return results


def summary(results: dict[str, object]) -> str:
    config = results["config"]
    lines = [f"gpu_speed: {config['spec']} {config['image_size']} px, bf16={config['amp']}, "
             f"device {results['machine'].get('gpu', 'cpu')}, {results['machine']['date_utc']}"]
    plain = results.get("plain_encoder", {})
    for key, row in plain.items():
        lines.append(f"plain encoder {key:20s} " + (f"{row['images_per_s']:>9.2f} images/s" if "images_per_s" in row
                                                      else f"FAILED {row.get('error')}"))
    if "attention" in results:
        for name, row in results["attention"].items():
            lines.append(f"attention kinds, {name}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    lines.append(f"chosen attention: {results.get('chosen_attention')}")
    for name, row in results.get("flex", {}).items():
        lines.append(f"flex attention, {name}: " + ", ".join(f"{k}={v}" for k, v in row.items()))
    for key, row in results.get("overhead", {}).items():
        lines.append(f"UA / plain encoder forward, {key}: {row['overhead_ratio']}")
    train = results.get("training", {})
    kind = results.get("chosen_attention", "sdpa")
    reference = plain.get(f"{kind}_batch_{train.get('batch')}", {}).get("images_per_s")
    for path in ("eager", "cuda_graph", "cuda_graph_compiled"):
        row = train.get(path)
        if isinstance(row, dict):
            per_plain = f", {row['images_per_s'] / reference:.3f} of the plain encoder's forward images/s" if reference else ""
            lines.append(f"training batch {train['batch']} {path:20s} {row['images_per_s']:>8.2f} images/s "
                         f"(x{1 / row['over_eager']:.2f} eager{per_plain})")
        elif f"{path}_error" in train:
            lines.append(f"training {path} FAILED: {train[f'{path}_error']}")
    largest = results.get("training_largest", {})
    for path in ("eager", "cuda_graph"):
        if isinstance(largest.get(path), dict):
            lines.append(f"training batch {largest['batch']} {path:20s} {largest[path]['images_per_s']:>8.2f} images/s")
        elif f"{path}_error" in largest:
            lines.append(f"training batch {largest['batch']} {path} FAILED: {largest[f'{path}_error']}")
    for key, row in results.get("mfu", {}).items():
        if isinstance(row, dict):
            lines.append(f"MFU {key}: {row['mfu']} ({row['achieved_tflops']} TFLOP/s, {row['tflop_per_step']} TFLOP/step)")
    if "compiled" in results.get("sampling_n16", {}):
        row = results["sampling_n16"]
        lines.append(f"sampling N=16: eager {row['eager']['hypotheses_per_s']} hyp/s, compiled "
                     f"{row['compiled']['hypotheses_per_s']} hyp/s (x{1 / row['compiled_over_eager']:.2f}; "
                     f"compile {row['compile_and_record_s']} s)")
    if results.get("left_out"):
        lines.append(f"left out (--skip): {', '.join(results['left_out'])}")
    lines += budget_lines(results)
    lines.append(f"total {results.get('total_s')} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="gpu_out", help="folder for gpu_speed.json and gpu_speed.txt")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (no GPU needed)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="time budget in seconds (default 240)")
    parser.add_argument("--rounds", type=int, default=10, help="measured calls per figure (default 10)")
    parser.add_argument("--cap", type=int, default=32, help="largest training batch tried (default 32)")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode of the encoder inside the training graph (default 'default')")
    parser.add_argument("--spec", default="vit_b", choices=("vit_b", "vit_l", "vit_h"))
    parser.add_argument("--skip", nargs="*", default=[], choices=SKIPPABLE, metavar="ITEM",
                        help=f"items to leave out, of: {', '.join(SKIPPABLE)}")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        config, rounds, cap = TINY, 1, 4
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here; use --cpu-smoke to check the script on the CPU")
        config, rounds, cap = GPU.replace(spec=args.spec), args.rounds, args.cap
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save(results: dict[str, object]) -> None:
        results["mode"] = "cpu-smoke (tiny sizes, not a measurement)" if args.cpu_smoke else "gpu"
        (out / "gpu_speed.json").write_text(json.dumps(results, indent=2) + "\n")

    results = run(config, args.budget_s, rounds, cap, args.compile_mode, save, tuple(args.skip))
    save(results)
    text = summary(results)
    (out / "gpu_speed.txt").write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
