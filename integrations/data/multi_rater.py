"""The item every multi-rater dataset returns, and the reproducible choice of one rater's mask.

Subclasses only say how to load case ``index`` at its native size; this base class resizes it,
checks that every case has the dataset's number of raters R, computes the raters' strict
majority vote (``uncertainty_adapters.sampling.majority_vote``) and picks the one rater mask the
model trains on. The paper trains on "labels randomly sampled from the multiple annotated
labels" (section 3.2); here the draw is a pure function of (dataset seed, epoch, index), so a
resumed run sees exactly the masks it would have seen.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod

import numpy as np
import torch
from torch.utils.data import Dataset

from uncertainty_adapters.sampling import majority_vote

from .errors import DataError
from .transforms import resize_image, resize_masks

_RATER_STREAM = 0x5A7E  # keeps the rater draw independent of other seeded streams


def checked_int(name: str, value: object, minimum: int = 0) -> int:
    """``value`` as an int if it is an integer >= ``minimum``, else a :class:`DataError`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class MultiRaterDataset(Dataset, ABC):
    """A dataset of images, each segmented by the same number R of raters.

    Subclasses set ``case_ids`` (one str per item) and ``num_raters`` in their constructor and
    implement :meth:`load_case`. Items are dicts that ``torch.utils.data.default_collate``
    batches directly:

    - ``image``: float32 (3, S, S) in [0, 1], S = ``image_size``,
    - ``masks``: float32 (R, S, S), every rater's mask, values in {0, 1},
    - ``mask``: float32 (1, S, S), the mask of rater :meth:`rater_index` (index),
    - ``majority``: float32 (1, S, S), the raters' strict majority vote (a tie is background),
    - ``case_id``: str.

    Args:
        image_size: side S of the square output.
        seed: seeds the choice of ``mask`` (and, in synthetic datasets, the data itself).
    """

    case_ids: list[str]
    num_raters: int

    def __init__(self, image_size: int, seed: int = 0) -> None:
        self.image_size = checked_int("image_size", image_size, minimum=1)
        self.seed = checked_int("seed", seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.case_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose rater draw ``mask`` follows.

        Call it before every epoch (as with ``DistributedSampler.set_epoch``). DataLoader
        workers copy the dataset when they start, so use ``persistent_workers=False`` (the
        default) for the new epoch to reach them.
        """
        self.epoch = checked_int("epoch", epoch)

    def rater_index(self, index: int) -> int:
        """The rater whose mask item ``index`` returns as ``mask`` in the current epoch.

        A pure function of (seed, epoch, index): a ``torch.Generator`` seeded from those three.
        """
        state = np.random.SeedSequence([self.seed, self.epoch, index, _RATER_STREAM])
        generator = torch.Generator().manual_seed(int(state.generate_state(1, np.uint64)[0]))
        return int(torch.randint(self.num_raters, (1,), generator=generator))

    @abstractmethod
    def load_case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Load case ``index`` at its own size.

        Returns:
            image: float32 (3, H, W) in [0, 1];
            masks: float32 (R', H, W) of 0s and 1s (R' is checked against ``num_raters``).
        """

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a dataset of {len(self)} items")
        index %= len(self)
        case_id = self.case_ids[index]
        image, masks = self.load_case(index)
        if masks.shape[0] != self.num_raters:
            raise DataError(
                f"case {case_id!r} has {masks.shape[0]} rater masks but this dataset has "
                f"{self.num_raters}; give every case the same number of raters"
            )
        image = resize_image(image, self.image_size)
        masks = resize_masks(masks, self.image_size)
        rater = self.rater_index(index)
        return {
            "image": image,
            "masks": masks,
            "mask": masks[rater : rater + 1].clone(),
            "majority": majority_vote(masks, dim=0).unsqueeze(0),
            "case_id": case_id,
        }
