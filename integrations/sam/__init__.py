"""UA-SAM: segment-anything with uncertainty-aware adapters (the first integration).

    from uncertainty_adapters.integrations.sam import build_uncertainty_sam, sample_point_prompts
    model = build_uncertainty_sam("vit_b", image_size=1024, checkpoint="sam_vit_b_01ec64.pth")
    out = model(images, sample_point_prompts(masks), masks)      # training: logits, kl
    out = model(images, prompts, num_samples=4)                  # 4 hypotheses per image

Parts: `spec` (SamSpec, SAM_SPECS), `build` (build_sam, build_uncertainty_sam), `attention`
(SAM attention through scaled_dot_product_attention or FlexAttention, `use_attention`), `checkpoint`
(official-layout weights), `hf_checkpoint` (transformers SamModel folders, converted to that
layout), `prompts` (point/box prompts from masks), `decoder` (batched single-mask decoding),
`segment` (the plain SAM forward, batched and differentiable), `model` (UncertaintySam).
"""

from .attention import (
    ATTENTION_KINDS,
    FlexRelPosAttention,
    FusedRelPosAttention,
    SdpaAttention,
    attention_kind,
    use_attention,
    use_sdpa_attention,
    uses_sdpa_attention,
)
from .build import build_sam, build_uncertainty_sam, check_image_size
from .checkpoint import load_sam_weights, read_sam_checkpoint, sam_state_dict, save_sam_weights
from .compiled import compile_for_sampling
from .decoder import predict_single_masks
from .hf_checkpoint import hf_sam_spec, hf_to_sam_state_dict, resolve_sam_checkpoint, sam_to_hf_state_dict
from .model import UncertaintySam, UncertaintySamOutput
from .predictor import UncertaintyPrediction, UncertaintySamPredictor
from .prompts import PROMPT_MODES, Prompts, box_prompts, component_point_prompts, make_prompts, sample_point_prompts
from .segment import decode_prompts, normalize_images, segment
from .spec import SAM_SPECS, SamSpec, get_sam_spec

__all__ = [
    "ATTENTION_KINDS",
    "FlexRelPosAttention",
    "FusedRelPosAttention",
    "PROMPT_MODES",
    "SAM_SPECS",
    "Prompts",
    "SamSpec",
    "SdpaAttention",
    "UncertaintyPrediction",
    "UncertaintySam",
    "UncertaintySamOutput",
    "UncertaintySamPredictor",
    "attention_kind",
    "box_prompts",
    "build_sam",
    "build_uncertainty_sam",
    "check_image_size",
    "compile_for_sampling",
    "component_point_prompts",
    "decode_prompts",
    "get_sam_spec",
    "hf_sam_spec",
    "hf_to_sam_state_dict",
    "load_sam_weights",
    "make_prompts",
    "normalize_images",
    "predict_single_masks",
    "read_sam_checkpoint",
    "resolve_sam_checkpoint",
    "sam_state_dict",
    "sam_to_hf_state_dict",
    "sample_point_prompts",
    "save_sam_weights",
    "segment",
    "use_attention",
    "use_sdpa_attention",
    "uses_sdpa_attention",
]
