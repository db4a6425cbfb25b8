"""Where the uncertainty adapters' encoder time goes: compute, or the host launching kernels.

    python -m benchmarks.profile_encoder --out DIR                 # CUDA: SAM vit_b, 1024 px, bf16
    python -m benchmarks.profile_encoder --out DIR --config cpu    # vit_b, 224 px, float32 on the CPU
    python -m benchmarks.profile_encoder --out DIR --cpu-smoke     # tiny sizes on the CPU (checks the script)

For the plain frozen SAM encoder and UA-SAM's (``none`` and ``cmsm`` interactions, the latter with
its per-sample terms batched over the adapters, as by default, and adapter by adapter), at two
batch sizes, in one process: the wall time of a forward (device synchronised), the host time to
issue it (the call returning, before synchronising; when it is close to the wall time the GPU
waits for the host and small kernels cost their launch, not their arithmetic), the number of
ATen operators dispatched (any device: what the host pays for) and of CUDA kernels launched.
Then a profiler table of UA-SAM's encoder (top operators by device time).
Writes DIR/profile_encoder.json and DIR/profile_encoder.txt.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch
from torch.utils._python_dispatch import TorchDispatchMode

try:
    import uncertainty_adapters.integrations  # noqa: F401  (installed: pip install -e .)
except ImportError:  # a source tree pip could not install
    import uncertainty_adapters

    uncertainty_adapters.__path__.append(str(ROOT))

import uncertainty_adapters as ua
from benchmarks.timing import machine
from benchmarks.workloads import (
    CPU,
    GPU,
    TINY,
    BenchConfig,
    Workloads,
    perturb_trainable,
    small_latent_heads,
    synchronize,
)
from uncertainty_adapters.integrations.sam import UncertaintySam


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _encoder(work: Workloads, interaction: str | None):
    """The plain encoder (interaction None) or UA-SAM's on the plain model's weights."""
    if interaction is None:
        return work.plain_sam.image_encoder
    if interaction == "cmsm":
        return work.ua_sam.encoder
    model = UncertaintySam(copy.deepcopy(work.plain_sam), ua.UncertaintyAdapterConfig(interaction=interaction),
                           latent_heads_kwargs=small_latent_heads(work.config))
    perturb_trainable(model, work.seed)
    return model.to(work.device).eval().encoder


def time_forward(work: Workloads, interaction: str | None, batch: int, rounds: int,
                 batched: bool = True) -> dict[str, float]:
    """Median wall and host-issue seconds of one no-grad encoder forward, ATen ops and kernels per call."""
    encoder = _encoder(work, interaction)
    x = work.images(batch) * 2 - 1
    kwargs = {} if interaction is None else {"z": torch.randn(batch, 6, device=work.device)}

    def forward():
        with torch.no_grad(), work.autocast():
            return encoder(x, **kwargs)

    call = work.using_batched_shifts(batched, forward)

    call()
    synchronize(work.device)
    with _OpCounter() as ops:
        call()
    synchronize(work.device)
    walls, issues = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        issued = time.perf_counter()
        synchronize(work.device)
        walls.append(time.perf_counter() - start)
        issues.append(issued - start)
    activity = [torch.profiler.ProfilerActivity.CPU]
    if work.device.type == "cuda":
        activity.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activity) as prof:
        call()
        synchronize(work.device)
    kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return {"wall_s": round(statistics.median(walls), 5), "issue_s": round(statistics.median(issues), 5),
            "aten_ops": ops.count, "kernels": kernels}


def profile_table(work: Workloads, batch: int, rows: int = 25) -> str:
    encoder = work.ua_sam.encoder
    x = work.images(batch) * 2 - 1
    z = torch.randn(batch, 6, device=work.device)
    activity = [torch.profiler.ProfilerActivity.CPU]
    key = "cpu_time_total"
    if work.device.type == "cuda":
        activity.append(torch.profiler.ProfilerActivity.CUDA)
        key = "device_time_total"
    with torch.no_grad(), work.autocast():
        encoder(x, z=z)
        with torch.profiler.profile(activities=activity) as prof:
            encoder(x, z=z)
            synchronize(work.device)
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="profile_out")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (no GPU needed)")
    parser.add_argument("--config", choices=("gpu", "cpu"), default="gpu",
                        help="gpu: vit_b 1024 px bf16 on CUDA (default); cpu: vit_b 224 px float32, 1 thread")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batches", default="2,8", help="comma-separated batch sizes (default 2,8)")
    args = parser.parse_args(argv)
    config: BenchConfig = TINY if args.cpu_smoke else {"gpu": GPU, "cpu": CPU}[args.config]
    if config.threads:
        torch.set_num_threads(config.threads)
    rounds = 2 if args.cpu_smoke else args.rounds
    work = Workloads(config)
    results: dict[str, object] = {"config": config.describe(), "machine": machine(), "forward": {}}
    lines = []
    for batch in [int(b) for b in args.batches.split(",")]:
        row = {name: time_forward(work, interaction, batch, rounds, batched)
               for name, interaction, batched in (("plain", None, True), ("ua_none", "none", True),
                                                  ("ua_cmsm", "cmsm", True), ("ua_cmsm_one_by_one", "cmsm", False))}
        for name in ("ua_none", "ua_cmsm", "ua_cmsm_one_by_one"):
            row[name]["ratio_to_plain"] = round(row[name]["wall_s"] / row["plain"]["wall_s"], 4)
        results["forward"][f"batch_{batch}"] = row
        for name, figures in row.items():
            lines.append(f"batch {batch:3d} {name:18s} " + " ".join(f"{k} {v}" for k, v in figures.items()))
    table = profile_table(work, config.batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile_encoder.json").write_text(json.dumps(results, indent=2) + "\n")
    text = "\n".join(lines) + "\n\nUA-SAM encoder, batch %d:\n%s" % (config.batch, table)
    (out / "profile_encoder.txt").write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
