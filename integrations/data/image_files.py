"""Opening image files with Pillow under its decompression-bomb limit.

Pillow only warns between ``PIL.Image.MAX_IMAGE_PIXELS`` and twice that (and raises above); here
any image over the limit is refused with a `DataError` that names the file, its size and the
limit, before any pixel is decoded. Truncated files are left to Pillow, which raises ``OSError``
("image file is truncated") when the pixels are read; the callers turn that into their own
`DataError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from .errors import DataError


def open_image(path: str | Path) -> Image.Image:
    """``PIL.Image.open(path)`` (lazy: only the header is read), refusing decompression bombs.

    Raises:
        DataError: the image has more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels.
        OSError, PIL.UnidentifiedImageError: as ``PIL.Image.open``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise DataError(
                f"{path}: refused, it may be a decompression bomb: {error} Pillow's limit is "
                f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels; downscale the image, "
                "or raise that limit in Python if you trust the file"
            ) from None
