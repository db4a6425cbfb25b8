"""Reproducible randomness: every random draw of a run is a pure function of named parts.

Seeding each training step from (run seed, batch number, process rank) instead of carrying one
random stream through the run means a resumed run needs no saved RNG state to repeat exactly.
"""

from __future__ import annotations

import torch

from uncertainty_adapters.seeding import derive_seed

__all__ = ["derive_seed", "generator_for", "seed_everything_for"]


def seed_everything_for(*parts: int) -> int:
    """Seed torch's global generators (CPU and all GPUs) from ``parts``; return the seed."""
    seed = derive_seed(*parts)
    torch.manual_seed(seed)
    return seed


def generator_for(device: torch.device | str, *parts: int) -> torch.Generator:
    """A fresh torch.Generator on ``device`` seeded from ``parts``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
