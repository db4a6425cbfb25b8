"""Seeds derived from named parts: a random stream that is a pure function of integers.

Seeding each stream of a computation (a run's seed, a phase's number, an epoch) from those parts
instead of carrying one random state through it makes a rerun, or a resumed run, repeat exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixing the given non-negative integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
