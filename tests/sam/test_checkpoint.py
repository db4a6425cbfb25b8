"""Official-layout SAM weights: .pth and .safetensors, variant checks, resizing to another input size."""

from __future__ import annotations

import pytest
import torch

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.sam import (
    SamSpec,
    build_sam,
    load_sam_weights,
    read_sam_checkpoint,
    save_sam_weights,
)
from uncertainty_adapters.integrations.sam.checkpoint import resize_pos_embed

from .conftest import TINY, images, tiny_uncertainty_sam, trained_looking_sam


def _official_pth(tmp_path, sam=None):
    """A checkpoint in the exact format of sam_vit_b_01ec64.pth: torch.save of sam.state_dict()."""
    path = tmp_path / "sam_tiny.pth"
    torch.save((sam or trained_looking_sam(seed=3)).state_dict(), path)
    return path


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_pth_layout_loads_every_tensor(tmp_path):
    source = trained_looking_sam(seed=3)
    target = build_sam(TINY)
    load_sam_weights(target, _official_pth(tmp_path, source))
    _assert_same_weights(target, source)


def test_safetensors_written_by_save_sam_weights_load_back(tmp_path):
    source = trained_looking_sam(seed=3)
    save_sam_weights(source, tmp_path / "sam.safetensors")
    assert read_sam_checkpoint(tmp_path / "sam.safetensors").keys() == source.state_dict().keys()
    target = build_sam(TINY)
    load_sam_weights(target, tmp_path / "sam.safetensors")
    _assert_same_weights(target, source)


def test_uncertainty_sam_saves_its_sam_weights_without_adapters(tmp_path):
    model = tiny_uncertainty_sam(seed=3)
    save_sam_weights(model, tmp_path / "sam.safetensors")
    target = build_sam(TINY)
    load_sam_weights(target, tmp_path / "sam.safetensors")
    _assert_same_weights(target, trained_looking_sam(seed=3))


def test_wrong_variant_is_refused_naming_both_variants(tmp_path):
    # The variant is read from the block keys and the pos_embed width, before anything else.
    fake_vit_l = {f"image_encoder.blocks.{i}.norm1.weight": torch.ones(1) for i in range(24)}
    fake_vit_l["image_encoder.pos_embed"] = torch.zeros(1, 2, 2, 1024)
    torch.save(fake_vit_l, tmp_path / "sam_vit_l.pth")
    with torch.device("meta"):
        vit_b = build_sam("vit_b")
    with pytest.raises(
        CheckpointMismatchError,
        match=r"is vit_l \(24 blocks, width 1024\) but the model is vit_b \(12 blocks, width 768\)",
    ):
        load_sam_weights(vit_b, tmp_path / "sam_vit_l.pth")


def test_custom_variant_mismatch_is_described_by_blocks_and_width(tmp_path):
    deeper = SamSpec(**{**TINY.to_dict(), "encoder_depth": 3, "encoder_global_attn_indexes": [2]})
    path = _official_pth(tmp_path, build_sam(deeper))
    target = build_sam(TINY)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"is a custom SAM \(3 blocks, width 64\) but the model is tiny \(2 blocks"):
        load_sam_weights(target, path, spec_name="tiny")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_other_differences_are_listed_by_key(tmp_path):
    wider_decoder = SamSpec(**{**TINY.to_dict(), "decoder_mlp_dim": 128})
    path = _official_pth(tmp_path, build_sam(wider_decoder))
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: mask_decoder\.transformer\.layers\.0\.mlp\.lin1\.bias"):
        load_sam_weights(build_sam(TINY), path)


def test_a_file_that_is_not_the_sam_layout_is_refused_with_the_fix(tmp_path):
    torch.save({"model": trained_looking_sam().state_dict()}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointMismatchError, match=r"not in the SAM checkpoint layout.*checkpoint\['model'\]"):
        load_sam_weights(build_sam(TINY), tmp_path / "nested.pth")


class _NotATensor:
    pass


def test_pickled_objects_are_not_executed_but_refused(tmp_path):
    torch.save({"image_encoder.pos_embed": _NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointMismatchError, match="not a weights-only PyTorch file"):
        load_sam_weights(build_sam(TINY), tmp_path / "pickled.pth")


def test_loading_at_another_image_size_interpolates_pos_embed_and_runs(tmp_path):
    source = trained_looking_sam(seed=3)  # made at 64 px: 8 x 8 grid
    target = build_sam(TINY, image_size=96)  # 12 x 12 grid
    load_sam_weights(target, _official_pth(tmp_path, source))
    assert torch.equal(target.image_encoder.pos_embed, resize_pos_embed(source.image_encoder.pos_embed, 12))
    assert target.image_encoder.blocks[1].attn.rel_pos_h.shape == (23, TINY.encoder_embed_dim // TINY.encoder_num_heads)
    with torch.no_grad():
        embedding = target.image_encoder(images(2, size=96))
    assert embedding.shape == (2, TINY.prompt_embed_dim, 12, 12) and torch.isfinite(embedding).all()


def test_resized_rel_pos_equals_segment_anything_run_time_interpolation(tmp_path):
    source = trained_looking_sam(seed=3)
    resized = build_sam(TINY, image_size=96)
    load_sam_weights(resized, _official_pth(tmp_path, source))
    # The same model, but the global block keeps the checkpoint's rel_pos: segment-anything's
    # get_rel_pos then interpolates it on every forward pass.
    at_run_time = build_sam(TINY, image_size=96)
    at_run_time.load_state_dict(resized.state_dict())
    attn = at_run_time.image_encoder.blocks[1].attn
    attn.rel_pos_h = torch.nn.Parameter(source.image_encoder.blocks[1].attn.rel_pos_h.clone())
    attn.rel_pos_w = torch.nn.Parameter(source.image_encoder.blocks[1].attn.rel_pos_w.clone())
    x = images(2, size=96)
    with torch.no_grad():
        torch.testing.assert_close(resized.image_encoder(x), at_run_time.image_encoder(x), rtol=1e-5, atol=1e-5)


def test_checkpoint_loads_before_injection_in_build_uncertainty_sam(tmp_path):
    from uncertainty_adapters.integrations.sam import build_uncertainty_sam

    source = trained_looking_sam(seed=3)
    model = build_uncertainty_sam(TINY, checkpoint=_official_pth(tmp_path, source))
    _assert_same_weights(model.image_encoder, source.image_encoder)
    _assert_same_weights(model.mask_decoder, source.mask_decoder)
