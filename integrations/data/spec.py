"""Data specs (pinned, DESIGN section 6): the strings ``--data`` takes, parsed and built.

``synthetic`` (the embedded generator), ``lidc:PATH``, ``refuge2:PATH`` and ``folder:PATH``.
The text before the first ":" names the kind; everything after it is the path (so Windows
drive letters survive).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError
from .folder import FolderDataset
from .lidc import SPLIT_BY, LIDCDataset
from .multi_rater import MultiRaterDataset
from .refuge2 import REFUGE2Dataset
from .splits import check_split
from .synthetic import SyntheticLesions

DATA_SPECS = ("synthetic", "lidc:PATH", "refuge2:PATH", "folder:PATH")
#: The ``--lidc-split`` choices, each a ``split_by`` of `LIDCDataset` ("series" is the default).
LIDC_SPLITS = SPLIT_BY
LIDC_SPLIT_HELP = (
    "LIDC train/test split: series (default, recommended: each CT series on one side), image (a seeded "
    "permutation of slices; slices of one series fall on both sides) or ordered (the official UA-SAM code's: "
    "pickle order, first 80%% train, last 20%% test; also leaks series)."
)
_DATASETS = {"lidc": LIDCDataset, "refuge2": REFUGE2Dataset, "folder": FolderDataset}


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: ``kind`` is "synthetic", "lidc", "refuge2" or "folder"; ``path`` is
    None for synthetic."""

    kind: str
    path: Path | None = None


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``synthetic``, ``lidc:PATH``, ``refuge2:PATH`` or ``folder:PATH`` (no file access)."""
    valid = ", ".join(DATA_SPECS)
    kind, colon, path = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "synthetic":
        if colon:
            raise DataError(
                f"data spec {spec!r}: 'synthetic' takes no path; write just 'synthetic'"
            )
        return DataSpec("synthetic")
    if kind not in _DATASETS:
        raise DataError(f"unknown data spec {spec!r}; valid specs: {valid}")
    if not path.strip():
        raise DataError(f"data spec {spec!r} needs a path, e.g. {kind}:/data/{kind}")
    return DataSpec(kind, Path(path.strip()).expanduser())


def build_dataset(
    spec: str, image_size: int, split: str = "train", seed: int = 0, **kwargs: Any
) -> MultiRaterDataset:
    """Build the multi-rater dataset a data spec names.

    Args:
        spec: ``synthetic``, ``lidc:PATH``, ``refuge2:PATH`` or ``folder:PATH``.
        image_size: side S of the items' images and masks.
        split: ``"train"``, ``"test"`` or ``"all"`` (each dataset documents its fixed rule).
        seed: seeds the rater draw (and the synthetic cases).
        **kwargs: passed to the dataset class (e.g. ``num_raters`` for synthetic,
            ``target="disc"`` for refuge2, ``split_by="image"`` for lidc).

    Returns:
        A :class:`MultiRaterDataset` whose items hold ``image`` (3, S, S), ``masks`` (R, S, S),
        ``mask`` (1, S, S), ``majority`` (1, S, S) and ``case_id``.
    """
    parsed = parse_data_spec(spec)
    check_split(split)
    if parsed.kind == "synthetic":
        return SyntheticLesions(image_size=image_size, split=split, seed=seed, **kwargs)
    dataset_class = _DATASETS[parsed.kind]
    return dataset_class(parsed.path, image_size=image_size, split=split, seed=seed, **kwargs)


def data_options(data: str, lidc_split: str | None = None) -> dict[str, Any]:
    """The dataset keyword arguments that command-line options set: ``{"split_by": lidc_split}``
    for ``lidc:PATH`` data when ``--lidc-split`` is given, else ``{}``.

    Raises:
        DataError: the option does not apply to ``data``, or names no split.
    """
    if lidc_split is None:
        return {}
    if parse_data_spec(data).kind != "lidc":
        raise DataError(f"--lidc-split applies to lidc:PATH data only, not {data!r}; drop the option")
    if lidc_split not in LIDC_SPLITS:
        raise DataError(f"--lidc-split {lidc_split!r}: choose one of {', '.join(LIDC_SPLITS)}")
    return {"split_by": lidc_split}


def dataset_kwargs_for(preset: Any, data: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `build_dataset` for ``data`` under a preset: ``extra``, plus the
    preset's ``synthetic_cases`` as the ``length`` of the synthetic data when not given."""
    kwargs = dict(extra)
    if data.strip() == "synthetic":
        kwargs.setdefault("length", preset.synthetic_cases)
    return kwargs
