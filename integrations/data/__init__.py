"""Multi-rater datasets for training and evaluating UA-SAM, selected by a data spec.

``build_dataset("synthetic" | "lidc:PATH" | "refuge2:PATH" | "folder:PATH", image_size, split)``
returns a ``torch.utils.data.Dataset`` whose items hold the image, every rater's mask, one
rater's mask drawn reproducibly per (seed, epoch, index), and the raters' majority vote.
:class:`CrispShapes` is the unambiguous shape data for pre-training the demo backbone.
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".crisp_shapes": ["CrispShapes"],
        ".errors": ["DataError", "NonBinaryMaskWarning"],
        ".folder": ["FolderDataset"],
        ".lidc": ["LIDCDataset", "load_lidc_pickle"],
        ".multi_rater": ["MultiRaterDataset"],
        ".refuge2": ["REFUGE2Dataset"],
        ".spec": ["DATA_SPECS", "LIDC_SPLITS", "LIDC_SPLIT_HELP", "DataSpec", "build_dataset", "data_options",
              "dataset_kwargs_for", "parse_data_spec"],
        ".splits": ["SPLITS", "split_cases", "split_groups"],
        ".synthetic": ["SyntheticCase", "SyntheticLesions", "rater_levels"],
    },
)
