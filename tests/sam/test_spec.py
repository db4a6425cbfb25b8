"""SamSpec and the registry: official values, JSON round trip, clear refusals."""

from __future__ import annotations

import json

import pytest
import torch

from uncertainty_adapters.integrations.sam import SAM_SPECS, SamSpec, build_sam, get_sam_spec


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_specs_build_the_same_tensors_as_segment_anything(name):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        ours = build_sam(name).state_dict()
        theirs = sam_model_registry[name]().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.parametrize("name", sorted(SAM_SPECS))
def test_every_registered_spec_round_trips_through_json(name):
    spec = SAM_SPECS[name]
    assert SamSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_demo_spec_has_a_16_by_16_token_grid_at_128_pixels():
    spec = get_sam_spec("demo")
    assert (spec.image_size, spec.token_grid(spec.image_size)) == (128, 16)
    assert spec.encoder_global_attn_indexes[-1] == spec.encoder_depth - 1


def test_unknown_spec_name_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown SAM spec 'vit_x'; known specs: demo, vit_b, vit_h, vit_l"):
        get_sam_spec("vit_x")


def test_unknown_field_in_a_spec_dict_is_named():
    data = {**SAM_SPECS["vit_b"].to_dict(), "dropout": 0.1}
    with pytest.raises(ValueError, match=r"unknown SamSpec field\(s\) \['dropout'\]"):
        SamSpec.from_dict(data)


def test_global_attention_index_outside_the_depth_is_refused():
    with pytest.raises(ValueError, match=r"block indexes in \[0, 2\)"):
        SamSpec(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(2,))


def test_width_not_divisible_by_heads_is_refused():
    with pytest.raises(ValueError, match=r"encoder_embed_dim \(64\) must be divisible by encoder_num_heads \(3\)"):
        SamSpec(encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=3, encoder_global_attn_indexes=(1,))
