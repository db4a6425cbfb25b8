"""The throughput suite's fixtures: one `Workloads` per session, sized by the environment.

    pytest benchmarks/ --benchmark-only                  # CPU sizes (minutes)
    UA_BENCH_GPU=1 pytest benchmarks/ --benchmark-only   # the paper's sizes on a CUDA GPU
    UA_BENCH_ROUNDS=10 ...                               # measured rounds per benchmark (default 3)
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks.workloads import Workloads, config_from_env


@pytest.fixture(scope="session")
def workloads() -> Workloads:
    config = config_from_env()
    if config.device == "cuda" and not torch.cuda.is_available():
        pytest.skip("UA_BENCH_GPU=1 needs a CUDA GPU")
    if config.threads:
        torch.set_num_threads(config.threads)
    return Workloads(config)


@pytest.fixture(scope="session")
def rounds() -> int:
    return int(os.environ.get("UA_BENCH_ROUNDS", "3"))
