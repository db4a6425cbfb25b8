"""Each fast path of UA-SAM measured as a ratio against what it replaces, interleaved in one process.

    python -m benchmarks.speedups [--json] [--config cpu|gpu|tiny] [--only NAME ...] [--rounds N]

Comparisons (a ratio < 1 means the fast path is faster):
    ua_overhead        UA-SAM encoder forward / plain frozen SAM encoder forward
    token_layout       UA-SAM encoder forward with the adapter chain on row-major tokens (what
                       UncertaintyModel does) / on segment-anything's strided channels-first view
    sdpa_forward       SAM encoder forward, SDPA attention / segment-anything's attention
    sdpa_training      UA-SAM training step, SDPA attention / segment-anything's attention
    sdpa_paper_shapes  one attention module at the shapes of a full-size input (vit_b, 1024 px:
                       25 windows of 14 x 14, the 64 x 64 global grid): SDPA / segment-anything's, forward without grad
                       and forward + backward through the SDPA path (why CPU training keeps
                       segment-anything's code, see integrations/sam/attention.py)
    fused_attention    the relative-position term inside a mask-free SDPA ("fused", augmented q/k) /
                       SDPA with the term as a dense mask / segment-anything's attention: plain
                       encoder forward and UA-SAM training step
    fused_paper_shapes one attention module at the full-size shapes (25 windows of 14 x 14, the
                       64 x 64 global grid), forward + backward: "fused" / segment-anything's
    shifts             UA-SAM encoder forward with every adapter's per-sample term computed in
                       one batched pass behind block 0 (the default) / adapter by adapter
    shifts_sampling    the same for UA-SAM sampling at K = 4 (4 z per image behind block 0)
    compiled           (only with --only) both encoders under torch.compile(mode="reduce-overhead")
                       / eager: the compiled UA-SAM encoder against the eager one and both
                       plain ones, with the compile time
    compiled_training  (only with --only) the training step with the encoder under torch.compile
                       (default mode, as `ua-sam train --compile`) / eager
    k_batched          K=4 hypotheses as one batch (block 0 once) / 4 separate forwards; also
                       hypotheses/s at every K of the config and the batch block 0 and block 1 see
    latent_heads       latent heads at 128 px / at the full input size (1024 px on the CPU too)
    checkpointing      UA-SAM training step with activation checkpointing / without, and the
                       peak memory of each (CPU: peak RSS of one step in a fresh process, above
                       what the process held before it; GPU: max allocated)
    bf16_training      UA-SAM training step under bf16 autocast / float32
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from segment_anything.modeling.image_encoder import Attention

from benchmarks.timing import interleaved, machine
from benchmarks.workloads import CPU, GPU, TINY, BenchConfig, Workloads, synchronize
from uncertainty_adapters.integrations.sam import get_sam_spec, use_attention

CONFIGS = {"cpu": CPU, "gpu": GPU, "tiny": TINY}


def _ratio(work: Workloads, cases: dict[str, Callable[[], object]], rounds: int, slow: str, fast: str,
           warmup: int = 1) -> dict[str, object]:
    timings = interleaved(cases, rounds=rounds, warmup=warmup)
    result: dict[str, object] = {
        "ratio": round(timings.ratio(fast, slow), 4),
        "median_s": {name: round(timings.median(name), 4) for name in cases},
    }
    if work.device.type == "cpu":
        result["ratio_cpu_time"] = round(timings.ratio(fast, slow, clock="cpu"), 4)
    return result


def ua_overhead(work: Workloads, rounds: int) -> dict[str, object]:
    cases = {"plain": work.encoder_forward(adapted=False), "ua": work.encoder_forward(adapted=True)}
    return {"what": "t(UA-SAM encoder) / t(plain encoder), no grad", **_ratio(work, cases, rounds, "plain", "ua")}


def token_layout(work: Workloads, rounds: int) -> dict[str, object]:
    """The chain as it was before UncertaintyModel made block 0's tokens contiguous: a pre-hook
    on adapter 0 puts them back into SAM's channels-first memory, which every later add keeps."""
    step = work.encoder_forward(adapted=True)
    adapter0 = work.ua_sam.encoder.adapters[0]

    def strided(module: torch.nn.Module, args: tuple) -> tuple:
        tokens = args[0]
        return (tokens.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1), *args[1:])

    def run_strided() -> object:
        handle = adapter0.register_forward_pre_hook(strided)
        try:
            return step()
        finally:
            handle.remove()

    cases = {"strided": run_strided, "row_major": step}
    return {"what": "t(adapter chain on row-major tokens) / t(on SAM's channels-first view), UA-SAM encoder, no grad",
            **_ratio(work, cases, rounds, "strided", "row_major")}


def shifts(work: Workloads, rounds: int) -> dict[str, object]:
    """The per-sample half of the adapters: batched over the adapters / adapter by adapter."""
    step = work.encoder_forward(adapted=True)
    cases = {"one_by_one": work.using_batched_shifts(False, step), "batched": work.using_batched_shifts(True, step)}
    return {"what": "t(per-sample adapter terms batched over adapters) / t(adapter by adapter), UA-SAM encoder, no grad",
            **_ratio(work, cases, rounds, "one_by_one", "batched")}


def shifts_sampling(work: Workloads, rounds: int) -> dict[str, object]:
    """`shifts` on K = 4 hypotheses per image (sampling: block 0 once, 4 z per image)."""
    step = work.sampling(4)
    cases = {"one_by_one": work.using_batched_shifts(False, step), "batched": work.using_batched_shifts(True, step)}
    return {"what": "t(per-sample adapter terms batched over adapters) / t(adapter by adapter), UA-SAM sampling, K = 4",
            **_ratio(work, cases, rounds, "one_by_one", "batched")}


def compiled(work: Workloads, rounds: int, mode: str = "reduce-overhead") -> dict[str, object]:
    """Both encoders under ``torch.compile(mode=mode)`` (reduce-overhead: CUDA graphs, which take
    the host's kernel launches out of the loop) against eager, interleaved in one process."""
    cases = {"plain": work.encoder_forward(False), "ua": work.encoder_forward(True)}
    compile_s = {}
    for name, adapted in (("plain_compiled", False), ("ua_compiled", True)):
        cases[name] = work.encoder_forward(adapted, compile_mode=mode)
        started = time.perf_counter()
        for _ in range(3):  # compile, then let CUDA graph trees record before timing
            cases[name]()
        compile_s[name] = round(time.perf_counter() - started, 1)
    timings = interleaved(cases, rounds=rounds, warmup=1)
    return {
        "what": f"encoder forwards under torch.compile(mode={mode!r}) / eager, no grad",
        "mode": mode,
        "compile_and_warmup_s": compile_s,
        "ratio": round(timings.ratio("ua_compiled", "ua"), 4),
        "overhead_ratio_eager": round(timings.ratio("ua", "plain"), 4),
        "overhead_ratio_compiled": round(timings.ratio("ua_compiled", "plain_compiled"), 4),
        "ua_compiled_over_plain_eager": round(timings.ratio("ua_compiled", "plain"), 4),
        "median_s": {name: round(timings.median(name), 4) for name in cases},
    }


def compiled_training(work: Workloads, rounds: int, mode: str = "default") -> dict[str, object]:
    """The UA-SAM training step with the image encoder under ``torch.compile(mode=mode)`` (what
    ``ua-sam train --compile`` does) / eager, interleaved in one process."""
    step = work.training_step()
    cases = {"eager": step, "compiled": work.using_compiled_encoder(mode, step)}
    started = time.perf_counter()
    for _ in range(3):
        cases["compiled"]()
    compile_s = round(time.perf_counter() - started, 1)
    return {"what": f"t(training step, encoder under torch.compile(mode={mode!r})) / t(eager)", "mode": mode,
            "compile_and_warmup_s": compile_s, **_ratio(work, cases, rounds, "eager", "compiled")}


def sdpa_forward(work: Workloads, rounds: int) -> dict[str, object]:
    step = work.encoder_forward(adapted=False)
    cases = {"reference": work.using_attention(False, step), "sdpa": work.using_attention(True, step)}
    try:
        return {"what": "t(SDPA) / t(segment-anything attention), plain encoder forward, no grad",
                **_ratio(work, cases, rounds, "reference", "sdpa")}
    finally:
        work.with_attention(work.config.sdpa_attention)


def sdpa_training(work: Workloads, rounds: int) -> dict[str, object]:
    step = work.training_step()
    cases = {"reference": work.using_attention(False, step), "sdpa": work.using_attention(True, step)}
    try:
        return {"what": "t(SDPA) / t(segment-anything attention), UA-SAM training step",
                **_ratio(work, cases, rounds, "reference", "sdpa")}
    finally:
        work.with_attention(work.config.sdpa_attention)


def sdpa_paper_shapes(work: Workloads, rounds: int) -> dict[str, object]:
    return _paper_shapes(work, rounds, "sdpa")


def fused_attention(work: Workloads, rounds: int) -> dict[str, object]:
    result: dict[str, object] = {"what": "t(kind) / t(segment-anything attention), interleaved"}
    for name, step in (("encoder_forward", work.encoder_forward(adapted=False)), ("training_step", work.training_step())):
        cases = {kind: work.using_attention(kind, step) for kind in ("segment-anything", "sdpa", "fused")}
        timings = interleaved(cases, rounds=rounds, warmup=1)
        result[name] = {"fused_over_reference": round(timings.ratio("fused", "segment-anything"), 4),
                        "sdpa_over_reference": round(timings.ratio("sdpa", "segment-anything"), 4),
                        "fused_over_sdpa": round(timings.ratio("fused", "sdpa"), 4),
                        "s_reference": round(timings.median("segment-anything"), 4)}
    work.with_attention(work.config.sdpa_attention)
    return result


def fused_paper_shapes(work: Workloads, rounds: int) -> dict[str, object]:
    return _paper_shapes(work, rounds, "fused")


def _paper_shapes(work: Workloads, rounds: int, kind: str) -> dict[str, object]:
    """One attention module of ``kind`` against segment-anything's at the full-size shapes: forward
    without grad, and forward + backward (for "sdpa" through its SDPA path, which a CPU's training
    does not take; see integrations/sam/attention.py)."""
    spec = get_sam_spec(work.config.spec)
    grid, window = spec.token_grid(work.config.full_size), spec.window_size
    windows = math.ceil(grid / window) ** 2  # windows of the padded grid
    shapes = {"windows": ((windows, window, window), (window, window)), "global": ((1, grid, grid), (grid, grid))}
    result: dict[str, object] = {
        "what": f"t({kind}) / t(segment-anything attention), one attention module, {work.config.full_size} px shapes"
    }
    for name, (shape, table) in shapes.items():
        torch.manual_seed(0)
        reference = Attention(spec.encoder_embed_dim, spec.encoder_num_heads, use_rel_pos=True, input_size=table)
        reference = reference.requires_grad_(False).to(work.device)
        fast = copy.deepcopy(reference)
        use_attention(fast, kind)
        x = torch.randn(*shape, spec.encoder_embed_dim, device=work.device)
        x_grad = x.clone().requires_grad_(True)
        forward = {"reference": _no_grad(work, reference, x), kind: _no_grad(work, fast, x)}
        backward = {"reference": _with_grad(work, reference, x_grad),
                    kind: _with_grad(work, fast.forward_sdpa if kind == "sdpa" else fast, x_grad)}
        result[name] = {"tokens": list(shape), "forward": _ratio(work, forward, rounds, "reference", kind),
                        "forward_backward": _ratio(work, backward, rounds, "reference", kind)}
    return result


def _no_grad(work: Workloads, attention: Callable, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            out = attention(x)
        synchronize(work.device)
        return out

    return run


def _with_grad(work: Workloads, attention: Callable, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        attention(x).sum().backward()
        synchronize(work.device)

    return run


def k_batched(work: Workloads, rounds: int) -> dict[str, object]:
    k = 4
    cases = {"separate": work.sampling(k, separate=True), "batched": work.sampling(k)}
    result = {"what": f"t(K={k} in one batch) / t({k} separate forwards), UA-SAM sampling",
              **_ratio(work, cases, rounds, "separate", "batched")}
    per_k = interleaved({f"k{n}": work.sampling(n) for n in work.config.hypotheses}, rounds=rounds)
    batch = work.config.sample_batch
    result["hypotheses_per_s"] = {
        str(n): round(batch * n / per_k.median(f"k{n}"), 3) for n in work.config.hypotheses
    }
    result["block_batches_at_k4"] = _block_batches(work, k)
    return result


def _block_batches(work: Workloads, k: int) -> dict[str, int]:
    """The batch size block 0 and block 1 of the encoder see when sampling K per image."""
    seen: dict[str, int] = {}

    def record(index: int, module: torch.nn.Module, args: tuple) -> None:
        seen.setdefault(f"block{index}", args[0].shape[0])

    blocks = work.ua_sam.image_encoder.blocks
    handles = [blocks[i].register_forward_pre_hook(functools.partial(record, i)) for i in (0, 1)]
    try:
        work.sampling(k)()
    finally:
        for handle in handles:
            handle.remove()
    return {"images": work.config.sample_batch, "hypotheses": k, **seen}


def latent_heads(work: Workloads, rounds: int) -> dict[str, object]:
    config = work.config
    cases = {"full": work.latent_heads(None), "low": work.latent_heads(config.latent_resolution)}
    result = _ratio(work, cases, rounds, "full", "low")
    return {"what": f"t(latent heads at {config.latent_resolution} px) / t(at {config.full_size} px), "
                    f"prior + posterior, batch {config.batch}, no grad", **result}


def checkpointing(work: Workloads, rounds: int) -> dict[str, object]:
    cases = {"stored": work.training_step(checkpointing=False), "checkpointed": work.training_step(checkpointing=True)}
    result = {"what": "t(training step with activation checkpointing) / t(without)",
              **_ratio(work, cases, rounds, "stored", "checkpointed")}
    result["peak_memory_mb"] = {mode: _peak_memory(work, mode == "checkpointed") for mode in ("stored", "checkpointed")}
    return result


def _peak_memory(work: Workloads, checkpointed: bool) -> float | None:
    if work.device.type == "cuda":
        step = work.training_step(checkpointing=checkpointed)
        step()
        torch.cuda.reset_peak_memory_stats()
        step()
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    name = next((key for key, value in CONFIGS.items() if value == work.config), None)
    if name is None:
        return None
    mode = "checkpointed" if checkpointed else "stored"
    command = [sys.executable, __file__, "--peak-rss-child", mode, "--config", name]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)["peak_rss_mb"]


def bf16_training(work: Workloads, rounds: int) -> dict[str, object]:
    cases = {"fp32": work.training_step(amp=False), "bf16": work.training_step(amp=True)}
    return {"what": "t(training step under bf16 autocast) / t(float32)", **_ratio(work, cases, rounds, "fp32", "bf16")}


COMPARISONS: dict[str, Callable[[Workloads, int], dict[str, object]]] = {
    "ua_overhead": ua_overhead,
    "token_layout": token_layout,
    "shifts": shifts,
    "shifts_sampling": shifts_sampling,
    "compiled": compiled,
    "compiled_training": compiled_training,
    "sdpa_forward": sdpa_forward,
    "sdpa_training": sdpa_training,
    "sdpa_paper_shapes": sdpa_paper_shapes,
    "fused_attention": fused_attention,
    "fused_paper_shapes": fused_paper_shapes,
    "k_batched": k_batched,
    "latent_heads": latent_heads,
    "checkpointing": checkpointing,
    "bf16_training": bf16_training,
}


# Run only when named with --only: compiling takes minutes (and a C++ compiler on the CPU).
OPT_IN = ("compiled", "compiled_training")


def run(config: BenchConfig, names: list[str], rounds: int) -> dict[str, object]:
    work = Workloads(config)
    return {name: COMPARISONS[name](work, rounds) for name in names}


def _peak_rss_child(config: BenchConfig, checkpointed: bool) -> None:
    """Fresh process: build, then the peak resident memory of the first training step above the
    memory held before it (Linux: the peak is reset through clear_refs). The step's Adam state
    and gradients count in both modes alike."""
    step = Workloads(config).training_step(checkpointing=checkpointed)
    before = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak RSS
    except OSError:
        before = None
    step()
    peak = _status_mb("VmHWM") if before is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(peak - (before or 0), 1), "above_baseline": before is not None}))


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu", help="sizes (default cpu)")
    parser.add_argument("--only", nargs="+", choices=sorted(COMPARISONS), help="run only these comparisons")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per comparison (default 5)")
    parser.add_argument("--peak-rss-child", choices=("stored", "checkpointed"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = CONFIGS[args.config]
    if config.threads:
        torch.set_num_threads(config.threads)
    if args.peak_rss_child:
        _peak_rss_child(config, args.peak_rss_child == "checkpointed")
        return {}
    results = run(config, args.only or [name for name in COMPARISONS if name not in OPT_IN], args.rounds)
    report = {"config": config.describe(), "rounds": args.rounds, "results": results, "machine": machine()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, result in results.items():
            extra = {k: v for k, v in result.items() if k not in ("what", "ratio")}
            ratio = f"ratio {result['ratio']:.3f}" if "ratio" in result else "ratios"
            print(f"{name:18s} {ratio}  {result['what']}  {extra}")
    return report


if __name__ == "__main__":
    main()
