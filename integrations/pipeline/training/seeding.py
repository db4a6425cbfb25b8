"""Reproducible randomness: every random draw of a run is a pure function of named parts.

Seeding each training step from (run seed, batch number, process rank) instead of carrying one
random stream through the run means a resumed run needs no saved RNG state to repeat exactly.
"""

from __future__ import annotations

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing the given non-negative integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def seed_everything_for(*parts: int) -> int:
    """Seed torch's global generators (CPU and all GPUs) from ``parts``; return the seed."""
    seed = derive_seed(*parts)
    torch.manual_seed(seed)
    return seed


def generator_for(device: torch.device | str, *parts: int) -> torch.Generator:
    """A fresh torch.Generator on ``device`` seeded from ``parts``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
