"""Reading an uploaded file for the app: its size from the header first (a 10k x 10k image is
refused before it is decoded), then `pipeline.predict.image_io.read_image`, the reader of `ua-sam predict`
(PNG/JPEG, DICOM, NIfTI slices; windows and slices as there).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.pipeline.predict.image_io import LoadedImage, read_image

__all__ = ["MAX_PIXELS", "header_size", "read_upload"]

MAX_PIXELS = 4096 * 4096


def header_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of one 2-D image, or of one slice of a volume, read from the file's header alone;
    None when the header cannot be read (`read_image` then names the problem)."""
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            import nibabel

            shape = nibabel.load(str(path)).shape
            return (int(shape[1]), int(shape[0])) if len(shape) >= 2 else None
        with path.open("rb") as handle:
            handle.seek(128)
            dicom = name.endswith((".dcm", ".dicom")) or handle.read(4) == b"DICM"
        if dicom:
            import pydicom

            header = pydicom.dcmread(str(path), stop_before_pixels=True)
            return int(header.Rows), int(header.Columns)
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # lazy: reads the header, not the pixels
                width, height = image.size
        return int(height), int(width)
    except Exception:  # noqa: BLE001 - any unreadable header is reported by read_image
        return None


def read_upload(path: str | Path, window: str | None = None, slice_index: int | None = None,
                max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Check the size in the header, then read the file as `ua-sam predict` does.

    Raises:
        DataError: an image larger than ``max_pixels``, or anything `read_image` refuses.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path.name} does not exist (upload it again)")
    size = header_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        height, width = size
        raise DataError(
            f"{path.name} is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); the app "
            f"takes at most {max_pixels / 1e6:.1f} megapixels (e.g. 4096 x 4096): downscale it first"
        )
    return read_image(path, window=window, slice_index=slice_index)
