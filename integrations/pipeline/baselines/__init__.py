"""The baselines of the paper's Table 1 that are not UA-SAM itself, trained and evaluated by the
same pipeline: the Probabilistic U-Net (`prob_unet`) and an ensemble of deterministic
Adapter-SAMs (`ensemble`). Adapter-SAM is UA-SAM with ``interaction="none"``."""

from .ensemble import AdapterEnsemble
from .prob_unet import ProbabilisticUNet, prob_unet_for

__all__ = ["AdapterEnsemble", "ProbabilisticUNet", "prob_unet_for"]
