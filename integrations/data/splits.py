"""Fixed, seeded train/test splits (the rule ``ua-sam train`` uses to hold out its test part).

Rule for cases (folder, synthetic, LIDC by image): sort the case ids, permute them with
``numpy.random.default_rng(split_seed)``, put the first ``floor(train_fraction * N)`` in train
and the rest in test. Rule for groups (LIDC by series_uid, so slices of one scan never straddle
the split): sort the distinct group ids, permute them the same way, and give train whole groups
in that order while its image count stays <= ``floor(train_fraction * N)``; every later group
is test. In both rules test can then be cut, drop-last style, to a multiple of
``drop_last_multiple`` images by dropping its last ones in permuted order. The returned indices
are in ascending order; ``"all"`` returns every index.

Rule for an ordered split (LIDC ``split_by="ordered"``, the official UA-SAM code's): no
permutation; train is the first ``floor(train_fraction * N)`` items in the given order and test
the next ``floor((1 - train_fraction) * N)`` (so flooring can leave the last item out), then cut
drop-last style as above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import DataError

SPLITS = ("train", "test", "all")


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise :class:`DataError`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def _train_count(n: int, train_fraction: float) -> int:
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    return math.floor(train_fraction * n)


def _drop_last(test: list[int], drop_last_multiple: int) -> list[int]:
    if drop_last_multiple < 1:
        raise DataError(f"drop_last_multiple must be >= 1, got {drop_last_multiple}")
    return test[: len(test) - len(test) % drop_last_multiple]


def split_cases(
    case_ids: Sequence[str],
    split: str,
    split_seed: int = 0,
    train_fraction: float = 0.8,
    drop_last_multiple: int = 1,
) -> list[int]:
    """Indices into ``case_ids`` that form ``split`` under the case rule (module docstring).

    Args:
        case_ids: one unique id per case, in any order.
        split: ``"train"``, ``"test"`` or ``"all"``.
        split_seed: seeds the permutation; fixed (0) unless a user asks for another split.
        train_fraction: share of cases in train (floored).
        drop_last_multiple: test keeps a multiple of this many cases.
    """
    check_split(split)
    if split == "all":
        return list(range(len(case_ids)))
    by_id = sorted(range(len(case_ids)), key=lambda i: case_ids[i])
    order = [by_id[i] for i in np.random.default_rng(split_seed).permutation(len(by_id))]
    n_train = _train_count(len(order), train_fraction)
    if split == "train":
        return sorted(order[:n_train])
    return sorted(_drop_last(order[n_train:], drop_last_multiple))


def split_groups(
    groups: Sequence[str],
    split: str,
    split_seed: int = 0,
    train_fraction: float = 0.8,
    drop_last_multiple: int = 1,
) -> list[int]:
    """Indices of the images that form ``split`` when whole groups go to one side.

    Args:
        groups: the group id (e.g. series_uid) of every image, in image order.
        split, split_seed, train_fraction, drop_last_multiple: as in :func:`split_cases`.
    """
    check_split(split)
    if split == "all":
        return list(range(len(groups)))
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    names = sorted(members)
    order = [names[i] for i in np.random.default_rng(split_seed).permutation(len(names))]
    budget = _train_count(len(groups), train_fraction)
    train: list[int] = []
    position = 0
    while position < len(order) and len(train) + len(members[order[position]]) <= budget:
        train += members[order[position]]
        position += 1
    if split == "train":
        return sorted(train)
    test = [index for name in order[position:] for index in members[name]]
    return sorted(_drop_last(test, drop_last_multiple))


def split_ordered(
    num_items: int,
    split: str,
    train_fraction: float = 0.8,
    drop_last_multiple: int = 1,
) -> list[int]:
    """Indices of ``split`` under the ordered rule (module docstring): first part train, next test.

    Args:
        num_items: N, the items in their given order (e.g. the LIDC pickle's order).
        split, train_fraction, drop_last_multiple: as in :func:`split_cases`.
    """
    check_split(split)
    if split == "all":
        return list(range(num_items))
    n_train = _train_count(num_items, train_fraction)
    if split == "train":
        return list(range(n_train))
    n_test = math.floor((1.0 - train_fraction) * num_items + 1e-9)
    return _drop_last(list(range(n_train, min(num_items, n_train + n_test))), drop_last_multiple)
