"""Writers of tiny datasets in the exact on-disk formats of each data spec (used by the tests)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def disk(height: int, width: int, cy: float, cx: float, radius: float) -> np.ndarray:
    """bool (height, width) disk."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def save_png(path: Path, mask: np.ndarray) -> None:
    """Save a bool (as 0/255) or uint8 (as is) (H, W) array as a grayscale PNG."""
    pixels = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)
    Image.fromarray(pixels).save(path)


def save_image(path: Path, height: int, width: int, seed: int, rgb: bool = True) -> None:
    """Save a random uint8 grayscale or RGB image (format from the suffix)."""
    rng = np.random.default_rng(seed)
    shape = (height, width, 3) if rgb else (height, width)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(path)


def write_folder_tree(
    root: Path, cases: int = 5, raters: int = 3, size: tuple[int, int] = (24, 32)
) -> Path:
    """``root/<case>/<case>.png|.jpg`` + ``<case>_seg_<k>.png``; rater k marks a disk of radius
    3 + 2k, so raters differ; case00 is a grayscale PNG."""
    for case in range(cases):
        name = f"case{case:02d}"
        case_dir = root / name
        case_dir.mkdir(parents=True)
        extension = ".png" if case % 2 == 0 else ".jpg"
        save_image(case_dir / f"{name}{extension}", *size, seed=case, rgb=case % 3 > 0)
        for rater in range(1, raters + 1):
            mask = disk(*size, size[0] / 2, size[1] / 2, 3 + 2 * rater)
            save_png(case_dir / f"{name}_seg_{rater}.png", mask)
    return root


REFUGE2_LAYOUT = {
    "Training-400": ["g0001", "n0002"],
    "validation-400": ["V0001"],
    "Test-400": ["T0001"],
}
DISC_CENTRE = (20, 50)


def write_refuge2_tree(root: Path) -> Path:
    """REFUGE2 multi-rater tree (one lower-case folder name): 60x80 JPEGs, 7 cup + 7 disc PNGs.

    The optic disc is centred at ``DISC_CENTRE`` with radius 7..8, the cup there with radius 3..5.
    """
    for folder, cases in REFUGE2_LAYOUT.items():
        for number, case in enumerate(cases):
            case_dir = root / folder / case
            case_dir.mkdir(parents=True)
            save_image(case_dir / f"{case}.jpg", 60, 80, seed=number)
            for rater in range(1, 8):
                cup = disk(60, 80, *DISC_CENTRE, 3 + rater % 3)
                disc = disk(60, 80, *DISC_CENTRE, 7 + rater % 2)
                save_png(case_dir / f"{case}_seg_cup_{rater}.png", cup)
                save_png(case_dir / f"{case}_seg_disc_{rater}.png", disc)
    return root


def lidc_entries(count: int = 10, size: int = 32, raters: int = 4) -> dict[str, dict]:
    """Entries in the Probabilistic U-Net port's format, 3 slices per series, 0/1 float masks."""
    rng = np.random.default_rng(0)
    entries = {}
    for index in range(count):
        masks = [
            disk(size, size, size / 2, size / 2, 4 + rater).astype(np.float32)
            for rater in range(raters)
        ]
        entries[f"LIDC-IDRI-{index // 3:04d}_slice{index:03d}"] = {
            "image": rng.random((size, size)).astype(np.float32),
            "masks": masks,
            "series_uid": f"1.3.6.1.4.1.14519.5.2.1.{index // 3}",
        }
    return entries


def write_pickle(path: Path, entries: object) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(entries, handle)
    return path
