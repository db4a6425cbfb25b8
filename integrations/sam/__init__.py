"""UA-SAM: segment-anything with uncertainty-aware adapters (the first integration).

    from uncertainty_adapters.integrations.sam import build_uncertainty_sam, sample_point_prompts
    model = build_uncertainty_sam("vit_b", image_size=1024, checkpoint="sam_vit_b_01ec64.pth")
    out = model(images, sample_point_prompts(masks), masks)      # training: logits, kl
    out = model(images, prompts, num_samples=4)                  # 4 hypotheses per image

Parts: `spec` (SamSpec, SAM_SPECS), `build` (build_sam, build_uncertainty_sam), `attention`
(SAM attention through scaled_dot_product_attention or FlexAttention, `use_attention`), `checkpoint`
(official-layout weights), `hf_checkpoint` (transformers SamModel folders, converted to that
layout), `prompts` (point/box prompts from masks), `decoder` (batched single-mask decoding),
`sam_forward` (the plain SAM forward, batched and differentiable), `model` (UncertaintySam).
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".attention": ["ATTENTION_KINDS", "FlexRelPosAttention", "FusedRelPosAttention", "SdpaAttention", "attention_kind", "use_attention", "use_sdpa_attention", "uses_sdpa_attention"],
        ".build": ["build_sam", "build_uncertainty_sam", "check_image_size"],
        ".checkpoint": ["load_sam_weights", "read_sam_checkpoint", "sam_state_dict", "save_sam_weights"],
        ".compiled": ["compile_for_sampling"],
        ".decoder": ["predict_single_masks"],
        ".hf_checkpoint": ["hf_sam_spec", "hf_to_sam_state_dict", "resolve_sam_checkpoint", "sam_to_hf_state_dict"],
        ".model": ["UncertaintySam", "UncertaintySamOutput"],
        ".predictor": ["UncertaintyPrediction", "UncertaintySamPredictor"],
        ".prompts": ["PROMPT_MODES", "Prompts", "box_prompts", "component_point_prompts", "make_prompts", "sample_point_prompts"],
        ".sam_forward": ["decode_prompts", "normalize_images", "segment"],
        ".spec": ["SAM_SPECS", "SamSpec", "get_sam_spec"],
    },
)
