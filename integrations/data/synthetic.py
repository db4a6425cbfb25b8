"""The embedded default data (``synthetic`` spec): ambiguous CT-like lesions, disagreeing raters.

A stand-in for LIDC-IDRI that needs no download (DESIGN section 8). Each case is a grayscale
patch (textured background, noise) with a bright lesion whose outline comes from a smooth
"lesion probability" field p in [0, 1]: the image shows p, and rater k marks p > level_k. The
R raters disagree *systematically*, each always in the same way:

(a) boundary placement: rater k thresholds the blurred lesion at level ``rater_levels(R)[k]``,
    from 0.2 (rater 0, generous) to 0.8 (rater R-1, conservative), so on a blurry edge the
    outlines are nested rings;
(b) a faint secondary lesion (in some ambiguous cases) that only the m most generous raters
    mark, m drawn per case from 1..R-1, so at least one rater always misses it (with R = 1
    the single rater marks it);
(c) a satellite attached to or near the main lesion (in some ambiguous cases) that only the
    "lumpers" (even-numbered raters) include.

Unambiguous cases (share ``1 - ambiguous_fraction``) have a crisp, high-contrast lesion, and
sometimes a crisp second lesion; on a crisp edge every rater draws the same outline (p > 0.5),
so the raters agree exactly: a model can learn to agree where the raters agree. Case ``k`` is a
pure function of (seed, k), rendered at ``native_size`` and resized to ``image_size`` like real
data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError
from .multi_rater import MultiRaterDataset
from .splits import check_split, split_cases
from .transforms import image_to_tensor, masks_to_tensor

_CASE_STREAM = 0x1E51  # keeps case rendering independent of the rater draw
_CRISP_EDGE = 0.03  # edge width (in lesion radii) of an unambiguous lesion: partial volume only


def rater_levels(num_raters: int) -> np.ndarray:
    """Threshold on the lesion probability of each rater: (R,) from 0.2 (generous) to 0.8."""
    return np.linspace(0.2, 0.8, num_raters) if num_raters > 1 else np.array([0.5])


def includes_satellites(rater: int) -> bool:
    """Whether rater ``rater`` counts a satellite as part of the lesion (the even "lumpers")."""
    return rater % 2 == 0


@dataclass(frozen=True)
class SyntheticCase:
    """One rendered case at native size N.

    Attributes:
        image: float32 (N, N) in [0, 1].
        masks: bool (R, N, N), rater k's mask in row k.
        ambiguous: whether the case is ambiguous (blurry edge, maybe faint lesion / satellite).
        faint: bool (N, N) core (p > 0.5) of the faint lesion, or None when there is none.
        satellite: bool (N, N) core (p > 0.5) of the satellite, or None when there is none.
    """

    image: np.ndarray
    masks: np.ndarray
    ambiguous: bool
    faint: np.ndarray | None
    satellite: np.ndarray | None


class SyntheticLesions(MultiRaterDataset):
    """Multi-rater dataset of synthetic ambiguous lesions (see the module docstring).

    Args:
        image_size: side S of the returned images and masks.
        split: ``"train"``, ``"test"`` or ``"all"`` of the ``length`` cases (splits.py rule).
        seed: seeds the cases and the rater draw.
        length: number of cases over all splits (train gets floor(0.8 * length)).
        num_raters: R >= 1.
        ambiguous_fraction: probability that a case is ambiguous.
        native_size: side N at which cases are rendered (LIDC patches are 128).
        split_seed: seeds the train/test permutation.
    """

    def __init__(
        self,
        image_size: int = 128,
        split: str = "train",
        seed: int = 0,
        length: int = 512,
        num_raters: int = 4,
        ambiguous_fraction: float = 0.7,
        native_size: int = 128,
        split_seed: int = 0,
    ) -> None:
        super().__init__(image_size, seed)
        if length < 1 or num_raters < 1 or native_size < 32:
            raise DataError(
                f"synthetic needs length >= 1, num_raters >= 1 and native_size >= 32, got "
                f"length={length}, num_raters={num_raters}, native_size={native_size}"
            )
        if not 0.0 <= ambiguous_fraction <= 1.0:
            raise DataError(f"ambiguous_fraction must lie in [0, 1], got {ambiguous_fraction}")
        self.split = check_split(split)
        self.num_raters = num_raters
        self.ambiguous_fraction = ambiguous_fraction
        self.native_size = native_size
        all_ids = [f"synthetic-{case:05d}" for case in range(length)]
        self.cases = split_cases(all_ids, split, split_seed)
        if not self.cases:
            raise DataError(f"synthetic: split {split!r} of {length} cases is empty; raise length")
        self.case_ids = [all_ids[case] for case in self.cases]
        centres = np.arange(native_size, dtype=np.float32) + 0.5
        self._yy, self._xx = np.meshgrid(centres, centres, indexing="ij")

    def load_case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        case = self.render_case(index)
        source = f"synthetic case {self.case_ids[index]}"
        return image_to_tensor(case.image, source), masks_to_tensor(list(case.masks))

    def render_case(self, index: int) -> SyntheticCase:
        """Render item ``index`` of this split at native size (a pure function of seed and case)."""
        rng = np.random.default_rng([self.seed, self.cases[index], _CASE_STREAM])
        n, raters = self.native_size, np.arange(self.num_raters)
        levels = rater_levels(self.num_raters)[:, None, None]  # (R, 1, 1)
        ambiguous = bool(rng.random() < self.ambiguous_fraction)
        image = self._background(rng)

        # Main lesion: blurry edge -> rater-specific outlines (a); crisp edge -> one outline.
        cy, cx = rng.uniform(0.38, 0.62, size=2) * n
        radius = rng.uniform(0.08, 0.14) * n
        if ambiguous:
            main = self._lesion(rng, cy, cx, radius, rng.uniform(0.08, 0.16))
            image += rng.uniform(0.25, 0.4) * main
            shown = main[None] > levels
        else:
            main = self._lesion(rng, cy, cx, radius, _CRISP_EDGE)
            image += rng.uniform(0.4, 0.55) * main
            shown = np.repeat(main[None] > 0.5, self.num_raters, axis=0)
        occupied = [(cy, cx, 1.9 * radius)]

        # Satellite next to the main lesion, included by the lumpers only (c).
        satellite = None
        if ambiguous and rng.random() < 0.6:
            angle = rng.uniform(0.0, 2.0 * np.pi)
            distance = rng.uniform(1.2, 1.45) * radius
            sy, sx = cy + distance * np.sin(angle), cx + distance * np.cos(angle)
            sat_radius = rng.uniform(0.4, 0.6) * radius
            field = self._lesion(rng, sy, sx, sat_radius, rng.uniform(0.1, 0.2))
            image += rng.uniform(0.15, 0.25) * field
            lumpers = np.array([includes_satellites(int(k)) for k in raters])[:, None, None]
            shown |= lumpers & (field[None] > levels)
            satellite = field > 0.5
            occupied.append((sy, sx, 1.6 * sat_radius))

        # Second lesion away from the first: faint and marked by the m most generous raters (b)
        # in ambiguous cases, clear and marked by everyone in unambiguous ones.
        faint = None
        second_radius = rng.uniform(0.045, 0.07) * n
        centre = self._free_spot(rng, second_radius, occupied) if rng.random() < 0.6 else None
        if centre is not None and ambiguous:
            field = self._lesion(rng, *centre, second_radius, rng.uniform(0.1, 0.15))
            image += rng.uniform(0.06, 0.1) * field
            markers = int(rng.integers(1, self.num_raters)) if self.num_raters > 1 else 1
            shown |= (raters < markers)[:, None, None] & (field[None] > levels)
            faint = field > 0.5
        elif centre is not None:
            field = self._lesion(rng, *centre, second_radius, _CRISP_EDGE)
            image += rng.uniform(0.4, 0.55) * field
            shown |= field[None] > 0.5

        image += rng.normal(0.0, rng.uniform(0.015, 0.03), size=(n, n))
        image = np.clip(image, 0.0, 1.0).astype(np.float32)
        return SyntheticCase(image, shown, ambiguous, faint, satellite)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Dark, CT-lung-like parenchyma: a base level plus coarse and fine smooth texture."""
        n = self.native_size
        coarse = torch.from_numpy(rng.standard_normal((1, 1, 6, 6)).astype(np.float32))
        fine = torch.from_numpy(rng.standard_normal((1, 1, 24, 24)).astype(np.float32))
        texture = 0.05 * F.interpolate(coarse, size=(n, n), mode="bicubic", align_corners=False)
        texture += 0.025 * F.interpolate(fine, size=(n, n), mode="bicubic", align_corners=False)
        return rng.uniform(0.15, 0.3) + texture[0, 0].numpy().astype(np.float64)

    def _lesion(
        self, rng: np.random.Generator, cy: float, cx: float, radius: float, edge: float
    ) -> np.ndarray:
        """Lesion probability (N, N): 1 inside a lobulated blob, falling to 0 over ``edge`` radii.

        The outline is r(theta) = radius * (1 + sum_k a_k cos(k theta + phi_k)), k = 2..4. The
        field is computed in the blob's bounding window only; outside it is below 4e-4.
        """
        amplitudes = rng.uniform(0.0, 0.12, size=(3, 1, 1)).astype(np.float32)
        phases = rng.uniform(0.0, 2.0 * np.pi, size=(3, 1, 1)).astype(np.float32)
        reach = radius * (1.0 + amplitudes.sum()) * (1.0 + 8.0 * edge) + 1.0
        n = self.native_size
        top, bottom = max(int(cy - reach), 0), min(int(cy + reach) + 1, n)
        left, right = max(int(cx - reach), 0), min(int(cx + reach) + 1, n)
        field = np.zeros((n, n), dtype=np.float32)
        if top >= bottom or left >= right:
            return field
        dy = self._yy[top:bottom, left:right] - np.float32(cy)
        dx = self._xx[top:bottom, left:right] - np.float32(cx)
        theta = np.arctan2(dy, dx)
        orders = np.arange(2, 5, dtype=np.float32)[:, None, None]
        outline = radius * (1.0 + (amplitudes * np.cos(orders * theta + phases)).sum(axis=0))
        from scipy.special import expit  # imported where used: scipy is slow to import

        field[top:bottom, left:right] = expit((1.0 - np.hypot(dy, dx) / outline) / edge)
        return field

    def _free_spot(
        self, rng: np.random.Generator, radius: float, occupied: list[tuple[float, float, float]]
    ) -> tuple[float, float] | None:
        """A centre for a lesion of ``radius`` clear of the image border and of ``occupied``."""
        margin = 1.5 * radius + 2.0
        for _ in range(20):
            y, x = rng.uniform(margin, self.native_size - margin, size=2)
            if all(np.hypot(y - oy, x - ox) > reach + 1.8 * radius for oy, ox, reach in occupied):
                return float(y), float(x)
        return None
