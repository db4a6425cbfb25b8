"""What each way of bringing your SAM costs: load time, peak memory and the encoder's forward.

    python -m benchmarks.bench_checkpoint_load                                   # CPU, vit_b weights at 256 px
    python -m benchmarks.bench_checkpoint_load --size vit_b --image-size 1024 --device cuda --json out.json

The same random weights are written twice, as segment-anything's ``.pth`` (the layout of
``sam_vit_b_01ec64.pth`` and of MedSAM's ``medsam_vit_b.pth``: one route for both) and as a
transformers ``SamModel.save_pretrained`` folder. Routes, side by side:

- ``sam_pth``: ``build_sam`` + ``load_sam_weights(sam, "sam.pth")``, what ``ua-sam`` does with a .pth;
- ``hf_folder``: the same with the folder: its config.json gives the spec, its safetensors are
  read and renamed to segment-anything's keys (`integrations/sam/hf_checkpoint.py`);
- ``hf_native``: transformers' own ``SamModel.from_pretrained(folder)``, for reference: the cost
  of running the transformers model instead of converting it.

Each load runs in a fresh Python process (so peak RSS is that load's alone), the routes in
alternating order round by round; figures are medians over rounds. Load time is from the start
of building the model to weights in place, on the CPU. Peak RSS is the process's maximum
resident memory after loading minus its resident memory just before (after the imports). The
forward is the image encoder alone (batch 1, float32, no grad) on ``--device``, after one
warm-up call, median of ``--forwards`` calls (0: no forward, loading only); on CUDA also the
peak allocated GPU memory of moving the model to the GPU plus the forward. ``embedding_abs_mean`` shows that every route computes the
same embedding.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from benchmarks.timing import machine

ROUTES = ("sam_pth", "hf_folder", "hf_native")
PTH, HF_FOLDER = "sam.pth", "sam-hf"


def write_checkpoints(directory: Path, size: str, image_size: int, seed: int = 0) -> None:
    """The same random SAM of spec ``size`` made for ``image_size`` inputs, as ``DIR/sam.pth``
    (segment-anything layout) and ``DIR/sam-hf`` (transformers save_pretrained)."""
    from transformers import SamModel

    from uncertainty_adapters.integrations.sam import build_sam, sam_state_dict, sam_to_hf_state_dict
    from uncertainty_adapters.integrations.sam.hf_checkpoint import TIED_POSITIONAL, hf_sam_config

    torch.manual_seed(seed)
    sam = build_sam(size, image_size=image_size)
    with torch.no_grad():  # pos_embed and rel_pos are zero at init; make them count
        for name, param in sam.named_parameters():
            if name.endswith(("pos_embed", "rel_pos_h", "rel_pos_w")):
                param.normal_(0, 0.02)
    state = sam_state_dict(sam)
    torch.save(state, directory / PTH)
    hf = SamModel(hf_sam_config(sam_spec(size), image_size))
    missing, unexpected = hf.load_state_dict(sam_to_hf_state_dict(state), strict=False)
    assert missing == [TIED_POSITIONAL] and not unexpected, (missing, unexpected)
    hf.save_pretrained(directory / HF_FOLDER)


def sam_spec(size: str):
    from uncertainty_adapters.integrations.sam import get_sam_spec

    return get_sam_spec(size)


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(route: str, directory: Path, size: str, image_size: int, device: str, forwards: int) -> dict[str, Any]:
    """One load of ``route`` and its encoder's forward, in this process."""
    from transformers import SamModel

    from uncertainty_adapters.integrations.sam import build_sam, load_sam_weights
    from uncertainty_adapters.integrations.sam.hf_checkpoint import hf_sam_spec

    if device == "cpu":
        torch.set_num_threads(1)
    baseline = _rss_mib()
    start = time.perf_counter()
    if route == "sam_pth":
        model = build_sam(size, image_size=image_size)
        load_sam_weights(model, directory / PTH)
        encode = model.image_encoder
    elif route == "hf_folder":
        model = build_sam(hf_sam_spec(directory / HF_FOLDER), image_size=image_size)
        load_sam_weights(model, directory / HF_FOLDER)
        encode = model.image_encoder
    elif route == "hf_native":
        model = SamModel.from_pretrained(directory / HF_FOLDER).eval()
        encode = model.get_image_embeddings
    else:
        raise ValueError(f"unknown route {route!r}; routes: {', '.join(ROUTES)}")
    load_s = time.perf_counter() - start
    peak_rss = _max_rss_mib() - baseline
    result: dict[str, Any] = {"load_s": load_s, "peak_rss_mib": peak_rss}
    if forwards < 1:
        return result
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model.to(device)
    x = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.no_grad():
        for index in range(forwards + 1):
            if cuda:
                torch.cuda.synchronize()
            begin = time.perf_counter()
            embedding = encode(x)
            if cuda:
                torch.cuda.synchronize()
            if index:
                times.append(time.perf_counter() - begin)
    result["forward_s"] = statistics.median(times)
    result["embedding_abs_mean"] = float(embedding.abs().mean())
    if cuda:
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_child(route: str, directory: Path, size: str, image_size: int, device: str, forwards: int) -> dict[str, Any]:
    """`measure` in a fresh Python process."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", route, "--dir", str(directory),
               "--size", size, "--image-size", str(image_size), "--device", device, "--forwards", str(forwards)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"route {route} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(directory: Path, size: str, image_size: int, device: str, rounds: int, forwards: int,
            routes: Sequence[str] = ROUTES, runner: Callable[..., dict[str, Any]] = run_child) -> dict[str, Any]:
    """Every route ``rounds`` times, in alternating order; medians and ratios against ``sam_pth``."""
    runs: dict[str, list[dict[str, Any]]] = {route: [] for route in routes}
    for index in range(rounds):
        for route in routes if index % 2 == 0 else reversed(routes):
            runs[route].append(runner(route, directory, size, image_size, device, forwards))
    summary = {}
    for route, results in runs.items():
        summary[route] = {key: statistics.median(r[key] for r in results) for key in results[0]}
        summary[route]["load_s_all"] = [round(r["load_s"], 3) for r in results]
    ratios = {}
    if "sam_pth" in summary:
        base = summary["sam_pth"]
        for route in summary:
            if route != "sam_pth":
                ratios[f"{route}_vs_sam_pth"] = {
                    key: summary[route][key] / base[key]
                    for key in ("load_s", "peak_rss_mib", "forward_s") if base.get(key) and key in summary[route]
                }
    return {"routes": summary, "ratios": ratios}


def _table(results: dict[str, Any]) -> str:
    config = results["config"]
    lines = [f"SAM checkpoint routes: {config['size']} weights, encoder input {config['image_size']} px, "
             f"forward on {config['device']}, {config['rounds']} rounds (medians)",
             f"{'route':<10} {'load s':>8} {'peak RSS MiB':>13} {'forward s':>10} {'peak GPU MiB':>13} {'|emb| mean':>11}"]
    for route, row in results["routes"].items():
        gpu = f"{row['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in row else "-"
        forward = f"{row['forward_s']:.4f}" if "forward_s" in row else "-"
        embedding = f"{row['embedding_abs_mean']:.6f}" if "embedding_abs_mean" in row else "-"
        lines.append(f"{route:<10} {row['load_s']:>8.2f} {row['peak_rss_mib']:>13.0f} {forward:>10} "
                     f"{gpu:>13} {embedding:>11}")
    for name, ratio in results["ratios"].items():
        lines.append(f"{name}: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratio.items()))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, runner: Callable[..., dict[str, Any]] = run_child) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="vit_b", help="SAM spec: vit_b (default), vit_l, vit_h, demo.")
    parser.add_argument("--image-size", type=int, default=256, help="Encoder input side (default 256).")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="Where the forward runs.")
    parser.add_argument("--rounds", type=int, default=3, help="Loads per route (default 3).")
    parser.add_argument("--forwards", type=int, default=3,
                        help="Timed encoder forwards per load (default 3; 0: loading only).")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"Comma-separated subset of {','.join(ROUTES)}.")
    parser.add_argument("--dir", help="Where the checkpoints are (written first when missing); default a temp folder.")
    parser.add_argument("--json", metavar="PATH", help="Also write the results as JSON here.")
    parser.add_argument("--child", choices=ROUTES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, Path(args.dir), args.size, args.image_size, args.device, args.forwards)))
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as scratch:
        directory = Path(args.dir) if args.dir else Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        if not (directory / PTH).is_file() or not (directory / HF_FOLDER).is_dir():
            write_checkpoints(directory, args.size, args.image_size)
        routes = tuple(route.strip() for route in args.routes.split(",") if route.strip())
        results = compare(directory, args.size, args.image_size, args.device, args.rounds, args.forwards,
                          routes, runner)
        results["config"] = {"size": args.size, "image_size": args.image_size, "device": args.device,
                             "rounds": args.rounds, "forwards": args.forwards,
                             "pth_mib": (directory / PTH).stat().st_size / 2**20}
        results["machine"] = machine()
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
