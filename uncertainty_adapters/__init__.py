"""uncertainty-adapters: many plausible segmentations from a frozen Vision Transformer.

Inject small trainable uncertainty-aware adapters (UA-SAM, Jiang et al. 2024) behind the blocks
of a frozen ViT; a latent sample z, drawn from a learned prior, makes every forward pass one
plausible segmentation hypothesis.

    import uncertainty_adapters as ua
    model = ua.inject_uncertainty_adapters(vit, ua.UncertaintyAdapterConfig(latent_dim=6))
    heads = ua.LatentHeads(in_channels=3, latent_dim=6)
    out = model(images, z=heads.sample(images, 4))   # 4 hypotheses per image, one forward
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("uncertainty-adapters")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from . import metrics
from .adapter import LatentReconstruction, PositionCondition, UncertaintyAdapter
from .checkpoint import CheckpointMismatchError
from .cmsm import CMSM
from .config import INTERACTIONS, UncertaintyAdapterConfig
from .geco import GecoBeta
from .injection import inject_uncertainty_adapters, load_adapters, load_adapters_and_latent_heads, load_latent_heads
from .latent_heads import DiagonalGaussian, LatentHeads, LatentSample
from .losses import ElboLoss, elbo_loss
from .mixture_prior import GaussianMixture
from .model import UncertaintyModel
from .prior_fit import fit_mixture_prior, fit_prior
from .sampling import majority_vote
from .uncertainty import uncertainty_maps

__all__ = [
    "CMSM",
    "INTERACTIONS",
    "CheckpointMismatchError",
    "DiagonalGaussian",
    "ElboLoss",
    "GaussianMixture",
    "GecoBeta",
    "LatentHeads",
    "LatentReconstruction",
    "LatentSample",
    "PositionCondition",
    "UncertaintyAdapter",
    "UncertaintyAdapterConfig",
    "UncertaintyModel",
    "__version__",
    "elbo_loss",
    "fit_mixture_prior",
    "fit_prior",
    "inject_uncertainty_adapters",
    "load_adapters",
    "load_adapters_and_latent_heads",
    "load_latent_heads",
    "majority_vote",
    "metrics",
    "uncertainty_maps",
]
