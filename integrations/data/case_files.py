"""Reading case folders from disk: finding a case's image and rater masks, checking their sizes.

Shared by the ``refuge2`` and ``folder`` layouts, where a case is a folder holding one image and
one PNG per rater, numbered 1..R (``<case>_seg_<k>.png``, ``<case>_seg_cup_<k>.png``). Sizes are
checked from the file headers when a dataset is built, so a bad case fails at once and not in
the middle of training; pixel values (binary or not) are checked when a case is read.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from .errors import DataError
from .image_files import open_image
from .transforms import binarize_mask

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def require_directory(path: str | Path, spec: str) -> Path:
    """``path`` as a Path if it is an existing folder, else a :class:`DataError` naming the spec."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"{spec}: {folder} does not exist; pass the folder that holds the cases")
    if not folder.is_dir():
        raise DataError(f"{spec}: {folder} is a file, not a folder; pass the folder of cases")
    return folder


def case_folders(folder: Path, spec: str) -> list[Path]:
    """The case sub-folders of ``folder`` sorted by name (hidden ones skipped); error if none."""
    cases = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cases:
        raise DataError(
            f"{spec}: {folder} has no case folders; expected {folder}/<case>/<case>.png plus "
            "rater masks"
        )
    return cases


def find_image(case_dir: Path) -> Path:
    """The one ``<case>.png|.jpg|.jpeg`` file (any letter case) of ``case_dir``."""
    found = [
        p
        for p in sorted(case_dir.iterdir())
        if p.is_file() and p.stem == case_dir.name and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not found:
        raise DataError(
            f"{case_dir}: no image {case_dir.name}.png or {case_dir.name}.jpg; add the case's "
            "image or remove the folder"
        )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(f"{case_dir}: several images ({names}); keep exactly one")
    return found[0]


def find_rater_masks(case_dir: Path, prefix: str) -> list[Path]:
    """Rater masks ``<prefix><k>.png`` of ``case_dir`` for k = 1..R, in rater order ([] if none).

    Raises :class:`DataError` when the numbers are not exactly 1..R or one number appears twice.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.png", re.IGNORECASE)
    numbered: dict[int, Path] = {}
    for path in sorted(case_dir.iterdir()):
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        rater = int(match.group(1))
        if rater in numbered:
            raise DataError(
                f"{case_dir}: {numbered[rater].name} and {path.name} are both rater {rater}; "
                "keep one"
            )
        numbered[rater] = path
    missing = sorted(set(range(1, len(numbered) + 1)) - set(numbered))
    if missing:
        raise DataError(
            f"{case_dir}: rater masks must be numbered 1..N without gaps; {prefix}{missing[0]}.png "
            f"is missing (found {', '.join(p.name for _, p in sorted(numbered.items()))})"
        )
    return [numbered[k] for k in sorted(numbered)]


def image_shape(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header only."""
    try:
        with open_image(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(
            f"{path}: cannot be read as an image ({error}); re-save it as PNG/JPEG"
        ) from error
    return height, width


def check_sizes(image_path: Path, mask_paths: list[Path]) -> None:
    """Raise :class:`DataError` unless every rater mask has the size of the others and the image."""
    shapes = [image_shape(p) for p in mask_paths]
    for path, shape in zip(mask_paths[1:], shapes[1:]):
        if shape != shapes[0]:
            raise DataError(
                f"{path}: rater masks differ in size ({mask_paths[0].name} is "
                f"{shapes[0][0]}x{shapes[0][1]}, {path.name} is {shape[0]}x{shape[1]}, HxW); "
                "re-save every rater mask at the image's size"
            )
    expected = image_shape(image_path)
    if shapes and shapes[0] != expected:
        raise DataError(
            f"{mask_paths[0].parent}: rater masks are {shapes[0][0]}x{shapes[0][1]} but "
            f"{image_path.name} is {expected[0]}x{expected[1]} (HxW); re-save the masks at the "
            "image's size"
        )


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file: (H, W) grayscale or (H, W, 3) RGB (palette/CMYK become RGB)."""
    try:
        with open_image(path) as image:
            if image.mode not in ("L", "I", "I;16", "F", "RGB"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(
            f"{path}: cannot be read as an image ({error}); re-save it as PNG/JPEG"
        ) from error


def read_mask(path: Path) -> np.ndarray:
    """A rater mask file as a bool (H, W) array (non-binary masks warn; see ``binarize_mask``)."""
    try:
        with open_image(path) as image:
            if image.mode not in ("1", "L", "P", "I", "I;16", "F"):
                image = image.convert("L")
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(
            f"{path}: cannot be read as a mask ({error}); re-save it as a PNG"
        ) from error
    return binarize_mask(pixels, str(path))
