"""Reading one 2-D image for `ua-sam predict`: PNG/JPEG (Pillow), DICOM (pydicom), a NIfTI slice
(nibabel), each turned into float32 pixels in [0, 1] ready for `UncertaintySamPredictor`.

Scaling rules (the value recorded in summary.json as ``image.window``):
- PNG/JPEG/other Pillow formats: 8-bit images are divided by 255 (colour kept, alpha dropped,
  EXIF rotation applied); deeper grayscale (16-bit PNG, float TIFF) is scaled min-max.
- DICOM: stored values are rescaled with RescaleSlope/RescaleIntercept (Hounsfield units for
  CT), then windowed: a window of centre c and width w maps [c - w/2, c + w/2] linearly to
  [0, 1] and clips outside. ``lung`` is c = -600, w = 1500; ``soft-tissue`` is c = 40, w = 400;
  ``auto`` uses the file's own WindowCenter/WindowWidth, or the 0.5th-99.5th percentiles of the
  image when it has none. Default: ``lung`` for CT, ``auto`` otherwise. MONOCHROME1 is inverted
  so that high values are bright. Multi-frame files: ``slice_index`` picks the frame (default
  the middle one).
- NIfTI: the volume is reoriented to RAS+ (nibabel's closest canonical), the axial slice
  ``slice_index`` along the third axis (default the middle one) is taken with the scaling of
  the header applied, and shown in radiological orientation: anterior at the top, the patient's
  right on the image's left, i.e. ``image[row, col] = volume[X - 1 - col, Y - 1 - row, slice]``.
  Windows as for DICOM; default ``lung`` when the slice holds air in Hounsfield units (minimum
  <= -500, a CT), ``auto`` otherwise. Point and box coordinates refer to this displayed image
  (the one drawn in overlay.png, whose axes are labelled in pixels).

pydicom and nibabel are optional (extra ``medical-io``); without them the reader says which
package is missing and how to install it.
"""

from __future__ import annotations

import gzip
import importlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uncertainty_adapters.integrations.data import DataError
from uncertainty_adapters.integrations.data.image_files import open_image

WINDOWS: dict[str, tuple[float, float]] = {"lung": (-600.0, 1500.0), "soft-tissue": (40.0, 400.0)}
WINDOW_CHOICES = ("lung", "soft-tissue", "auto")
INSTALL_HINT = 'pip install "uncertainty-adapters[medical-io]"'
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_SUFFIXES = (".dcm", ".dicom")
_HU_AIR = -500.0
_AUTO_PERCENTILES = (0.5, 99.5)


@dataclass
class LoadedImage:
    """One 2-D image and what was done to read it.

    Attributes:
        pixels: (H, W) grayscale or (H, W, 3) colour, float32 in [0, 1].
        info: JSON-ready facts: path, format, size, and where they apply window, slice,
            modality, rescale.
    """

    pixels: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def read_image(path: str | Path, window: str | None = None, slice_index: int | None = None) -> LoadedImage:
    """Read a PNG/JPEG, DICOM or NIfTI file as float32 pixels in [0, 1].

    Args:
        path: the file. NIfTI is recognised by .nii/.nii.gz, DICOM by .dcm/.dicom or the
            'DICM' marker (files without a suffix), anything else is opened with Pillow.
        window: 'lung', 'soft-tissue' or 'auto' for DICOM/NIfTI; None: the default of the
            module docstring. Refused for PNG/JPEG (they are display-ready already).
        slice_index: the NIfTI slice or DICOM frame (0-based); None: the middle one. Refused
            for single 2-D images.

    Raises:
        FileNotFoundError: no such file.
        DataError: the file cannot be read as an image, options that do not apply to it, or a
            missing optional package (the message names the install command).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if window is not None and window not in WINDOW_CHOICES:
        raise DataError(f"unknown window {window!r}; choose one of {', '.join(WINDOW_CHOICES)}")
    if slice_index is not None:
        if isinstance(slice_index, bool) or not isinstance(slice_index, int) or slice_index < 0:
            raise DataError(f"the slice index must be a non-negative integer, got {slice_index!r}")
    name = path.name.lower()
    if name.endswith(_NIFTI_SUFFIXES):
        loaded = _read_nifti(path, window, slice_index)
    elif name.endswith(_DICOM_SUFFIXES) or _has_dicom_marker(path):
        loaded = _read_dicom(path, window, slice_index)
    else:
        loaded = _read_pillow(path, window, slice_index)
    height, width = loaded.pixels.shape[:2]
    loaded.info = {"path": str(path), **loaded.info, "width": width, "height": height}
    return loaded


def apply_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Map [centre - width/2, centre + width/2] linearly to [0, 1], clipping outside (float32)."""
    if not width > 0:
        raise DataError(f"a window needs a positive width, got centre {centre:g}, width {width:g}")
    low = centre - width / 2
    return np.clip((values.astype(np.float64) - low) / width, 0.0, 1.0).astype(np.float32)


def _optional(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"reading {what} needs {module}, which is not installed: {INSTALL_HINT}") from None


def _has_dicom_marker(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _require_finite(values: np.ndarray, path: Path, what: str) -> None:
    """A `DataError` when ``values`` hold NaN or infinity (they would window to garbage)."""
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise DataError(
            f"{path}: the {what} holds NaN or infinite values ({bad} of {values.size} pixels), so it "
            f"cannot be scaled to [0, 1]; the file is damaged or masks pixels with NaN. Replace them "
            f"(e.g. numpy.nan_to_num) and save the file again"
        )


def _refuse_window(window: str | None, path: Path, kind: str) -> None:
    if window is not None:
        raise DataError(f"{path}: --window applies to DICOM and NIfTI images, not to {kind} files")


def _pick_slice(count: int, slice_index: int | None, path: Path, what: str) -> int:
    if slice_index is None:
        return count // 2
    if slice_index >= count:
        raise DataError(f"{path}: slice {slice_index} does not exist; the {what} has {count} (0 to {count - 1})")
    return slice_index


def _window_grayscale(
    values: np.ndarray, window: str, file_window: tuple[float, float] | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Window stored values (HU for CT) to [0, 1]; returns the pixels and the window used."""
    if window in WINDOWS:
        centre, width = WINDOWS[window]
        source = "preset"
    elif file_window is not None:
        centre, width = file_window
        source = "file"
    else:
        low, high = (float(v) for v in np.percentile(values, _AUTO_PERCENTILES))
        centre, width = (low + high) / 2, max(high - low, 1e-6)
        source = f"percentiles {_AUTO_PERCENTILES[0]}-{_AUTO_PERCENTILES[1]}"
    pixels = apply_window(values, centre, width)
    return pixels, {"name": window, "centre": round(centre, 4), "width": round(width, 4), "source": source}


def _read_pillow(path: Path, window: str | None, slice_index: int | None) -> LoadedImage:
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with open_image(path) as opened:
            kind = (opened.format or "image").lower()
            image = ImageOps.exif_transpose(opened)
            image.load()
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(
            f"{path}: not a readable image ({error}); give a PNG/JPEG, a DICOM (.dcm) or a NIfTI "
            f"(.nii, .nii.gz) file"
        ) from None
    _refuse_window(window, path, kind.upper())
    if slice_index is not None:
        raise DataError(f"{path}: --slice applies to NIfTI volumes and multi-frame DICOM, not to a 2-D image")
    mode = image.mode
    if mode in ("L", "1", "P", "PA", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        gray = mode in ("L", "1", "LA")
        converted = image.convert("L" if gray else "RGB")
        pixels = np.asarray(converted, dtype=np.float32) / 255.0
        scaling = "divided by 255"
    else:
        values = np.asarray(image).astype(np.float64)
        if values.ndim != 2:
            raise DataError(f"{path}: unsupported image mode {mode!r}; save it as 8-bit grayscale or RGB")
        _require_finite(values, path, "image")
        low, high = float(values.min()), float(values.max())
        pixels = ((values - low) / (high - low) if high > low else np.zeros_like(values)).astype(np.float32)
        scaling = f"min-max from [{low:g}, {high:g}]"
    return LoadedImage(pixels, {"format": kind, "mode": mode, "scaling": scaling})


def _read_dicom(path: Path, window: str | None, slice_index: int | None) -> LoadedImage:
    pydicom = _optional("pydicom", "DICOM")
    try:
        dataset = pydicom.dcmread(str(path))
        values = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for broken or compressed files
        raise DataError(f"{path}: cannot read the DICOM pixel data ({type(error).__name__}: {error})") from None
    samples = int(getattr(dataset, "SamplesPerPixel", 1))
    modality = str(getattr(dataset, "Modality", "") or "")
    info: dict[str, Any] = {"format": "dicom", "modality": modality or None}
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        index = _pick_slice(frames, slice_index, path, "file's frames")
        values, info["slice"] = values[index], index
    elif slice_index is not None:
        raise DataError(f"{path}: --slice applies to multi-frame DICOM; this file holds one frame")
    if samples == 3:
        _refuse_window(window, path, "colour DICOM")
        pixels = values.astype(np.float32) / float(np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1)
        return LoadedImage(np.clip(pixels, 0, 1), {**info, "scaling": "colour, divided by the type's maximum"})
    slope = float(getattr(dataset, "RescaleSlope", 1) or 1)
    intercept = float(getattr(dataset, "RescaleIntercept", 0) or 0)
    stored = values.astype(np.float64) * slope + intercept
    _require_finite(stored, path, "frame" if frames > 1 else "image")
    chosen = window or ("lung" if modality.upper() == "CT" else "auto")
    pixels, info["window"] = _window_grayscale(stored, chosen, _dicom_window(dataset))
    if str(getattr(dataset, "PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels = 1.0 - pixels
        info["inverted"] = "MONOCHROME1"
    info["rescale"] = {"slope": slope, "intercept": intercept}
    return LoadedImage(pixels, info)


def _dicom_window(dataset: Any) -> tuple[float, float] | None:
    """The file's first (WindowCenter, WindowWidth), or None."""
    centre, width = getattr(dataset, "WindowCenter", None), getattr(dataset, "WindowWidth", None)
    if centre is None or width is None:
        return None
    return _first_value(centre), _first_value(width)


def _first_value(value: Any) -> float:
    """A DICOM decimal string, or the first of several (pydicom's MultiValue)."""
    if isinstance(value, (str, bytes, int, float)):
        return float(value)
    return float(value[0])


def _require_complete_nifti(path: Path, voxels: Any) -> None:
    """A `DataError` unless the file (decompressed, for .nii.gz) holds every voxel its header
    declares (``voxels``: nibabel's array proxy); a gzip stream is read to its end, so a cut or
    corrupted one is found too."""
    needed = int(voxels.offset) + int(np.prod(voxels.shape, dtype=np.int64)) * int(np.dtype(voxels.dtype).itemsize)
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                size = 0
                while chunk := stream.read(1 << 24):
                    size += len(chunk)
        else:
            size = path.stat().st_size
    except (EOFError, OSError, zlib.error) as error:
        raise DataError(
            f"{path}: the compressed NIfTI is truncated or damaged ({error}); copy or download it again"
        ) from None
    if size < needed:
        raise DataError(
            f"{path}: the NIfTI is truncated: its header declares {needed} bytes of header and voxels, the "
            f"file holds {size}; copy or download it again"
        )


def _read_nifti(path: Path, window: str | None, slice_index: int | None) -> LoadedImage:
    nibabel = _optional("nibabel", "NIfTI")
    try:
        stored = nibabel.load(str(path))
        image = nibabel.as_closest_canonical(stored)
        shape = image.shape
    except Exception as error:  # nibabel raises several types for broken files
        raise DataError(f"{path}: cannot read the NIfTI file ({type(error).__name__}: {error})") from None
    _require_complete_nifti(path, stored.dataobj)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) == 2:
        if slice_index is not None:
            raise DataError(f"{path}: --slice applies to 3-D volumes; this NIfTI is 2-D")
        data, index = np.asarray(image.dataobj, dtype=np.float64).reshape(shape), None
    elif len(shape) == 3:
        index = _pick_slice(shape[2], slice_index, path, "volume's third axis")
        data = np.asarray(image.dataobj[:, :, index], dtype=np.float64).reshape(shape[:2])
    else:
        raise DataError(
            f"{path}: a NIfTI of shape {tuple(image.shape)} is not supported; give a 2-D image or a 3-D volume"
        )
    _require_finite(data, path, "slice")
    oriented = data.T[::-1, ::-1]
    chosen = window or ("lung" if float(oriented.min()) <= _HU_AIR else "auto")
    pixels, used = _window_grayscale(oriented, chosen, None)
    info = {"format": "nifti", "window": used, "volume_shape": [int(s) for s in image.shape],
            "orientation": "RAS+ axial, radiological (anterior up, patient right on the left)"}
    if index is not None:
        info["slice"] = index
    return LoadedImage(np.ascontiguousarray(pixels), info)
