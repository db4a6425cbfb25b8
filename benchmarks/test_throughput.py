"""The throughput suite (pytest-benchmark): what a user pays per image, per hypothesis, per step.

    pytest benchmarks/ --benchmark-only [--benchmark-json out.json]

Groups (compare the rows within a group; `speedups.py` gives the same comparisons as ratios
measured interleaved, which is what to trust on a busy machine):
    encoder-forward   plain frozen SAM encoder vs UA-SAM encoder, no grad
    sampling          UA-SAM, K = 1, 4, 16 hypotheses per image in one batch; K = 4 as 4 calls
    training-step     UA-SAM forward + ELBO + backward + Adam; with activation checkpointing
    latent-heads      prior + posterior at 128 px vs at the full input size (1024 px)
The sizes come from `workloads.config_from_env()` (CPU by default, UA_BENCH_GPU=1 for the paper's).
"""

from __future__ import annotations

import pytest

from benchmarks.workloads import CPU, Workloads


def _run(benchmark, step, rounds: int, group: str, **info: object) -> None:
    benchmark.group = group
    benchmark.extra_info.update(info)
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("adapted", [False, True], ids=["plain", "ua"])
def test_encoder_forward(benchmark, workloads: Workloads, rounds: int, adapted: bool) -> None:
    config = workloads.config
    _run(benchmark, workloads.encoder_forward(adapted), rounds, "encoder-forward",
         images=config.batch, image_size=config.image_size)


@pytest.mark.parametrize("k", CPU.hypotheses, ids=[f"k{k}" for k in CPU.hypotheses])
def test_sampling_batched(benchmark, workloads: Workloads, rounds: int, k: int) -> None:
    if k not in workloads.config.hypotheses:
        pytest.skip(f"K={k} is not in this configuration's {workloads.config.hypotheses}")
    _run(benchmark, workloads.sampling(k), rounds, "sampling",
         images=workloads.config.sample_batch, hypotheses_per_image=k)


def test_sampling_k4_as_separate_forwards(benchmark, workloads: Workloads, rounds: int) -> None:
    _run(benchmark, workloads.sampling(4, separate=True), rounds, "sampling",
         images=workloads.config.sample_batch, hypotheses_per_image=4)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["stored", "checkpointed"])
def test_training_step(benchmark, workloads: Workloads, rounds: int, checkpointing: bool) -> None:
    _run(benchmark, workloads.training_step(checkpointing=checkpointing), rounds, "training-step",
         images=workloads.config.batch)


@pytest.mark.parametrize("low_resolution", [True, False], ids=["128px", "full"])
def test_latent_heads(benchmark, workloads: Workloads, rounds: int, low_resolution: bool) -> None:
    config = workloads.config
    resolution = config.latent_resolution if low_resolution else None
    _run(benchmark, workloads.latent_heads(resolution), rounds, "latent-heads",
         images=config.batch, input_size=config.full_size, resolution=resolution or config.full_size)
