"""Multi-rater datasets for training and evaluating UA-SAM, selected by a data spec.

``build_dataset("synthetic" | "lidc:PATH" | "refuge2:PATH" | "folder:PATH", image_size, split)``
returns a ``torch.utils.data.Dataset`` whose items hold the image, every rater's mask, one
rater's mask drawn reproducibly per (seed, epoch, index), and the raters' majority vote.
:class:`CrispShapes` is the unambiguous shape data for pre-training the demo backbone.
"""

from .crisp_shapes import CrispShapes
from .errors import DataError, NonBinaryMaskWarning
from .folder import FolderDataset
from .lidc import LIDCDataset, load_lidc_pickle
from .multi_rater import MultiRaterDataset
from .refuge2 import REFUGE2Dataset
from .spec import DATA_SPECS, DataSpec, build_dataset, parse_data_spec
from .splits import SPLITS, split_cases, split_groups
from .synthetic import SyntheticCase, SyntheticLesions, rater_levels

__all__ = [
    "DATA_SPECS",
    "SPLITS",
    "CrispShapes",
    "DataError",
    "DataSpec",
    "FolderDataset",
    "LIDCDataset",
    "MultiRaterDataset",
    "NonBinaryMaskWarning",
    "REFUGE2Dataset",
    "SyntheticCase",
    "SyntheticLesions",
    "build_dataset",
    "load_lidc_pickle",
    "parse_data_spec",
    "rater_levels",
    "split_cases",
    "split_groups",
]
