"""The segmenters the pipeline trains and scores, behind one written interface (`protocol`):
UA-SAM (`uncertainty_adapters.integrations.sam.UncertaintySam`), the Probabilistic U-Net
(`prob_unet`) and the ensemble of Adapter-SAMs (`ensemble`); `factory` builds the one a
training job names."""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".ensemble": ["AdapterEnsemble"],
        ".factory": ["MODELS", "build_model"],
        ".prob_unet": ["ProbabilisticUNet", "prob_unet_for"],
        ".protocol": ["Segmenter", "SegmenterOutput", "SegmenterOutputLike", "TrainableSegmenter"],
    },
)
