"""save_adapters / load_adapters: adapters only, bit-for-bit, strict, atomic."""

from __future__ import annotations

import json
import os

import pytest
import safetensors.torch
import torch

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt

from .backbones import Backbone, perturb_adapters


def _saved(tmp_path, name="sam", config=None):
    backbone = Backbone(name)
    model = backbone.inject(config)
    perturb_adapters(model)
    model.save_adapters(tmp_path / "adapters")
    return backbone, model, tmp_path / "adapters"


def test_save_writes_the_peft_layout_with_adapter_weights_only(tmp_path):
    _, model, path = _saved(tmp_path)
    assert sorted(os.listdir(path)) == ["adapter_config.json", "adapter_model.safetensors"]
    tensors = ckpt.load_tensors(path / "adapter_model.safetensors")
    assert set(tensors) == set(model.adapter_state_dict())
    assert not any(name.startswith("base_model") for name in tensors)


def test_round_trip_reproduces_outputs_bit_for_bit(tmp_path, backbone: Backbone):
    model = backbone.inject()
    perturb_adapters(model)
    model.save_adapters(tmp_path / "a")
    x, z = backbone.images(2), torch.randn(2, 6)
    with torch.no_grad():
        expected = backbone.run(model, x, z=z)
    fresh = Backbone(backbone.name)  # same seed: same backbone weights
    loaded = ua.load_adapters(fresh.model, tmp_path / "a")
    with torch.no_grad():
        assert torch.equal(fresh.run(loaded, x, z=z), expected)


def test_load_into_an_injected_model_replaces_its_weights(tmp_path):
    backbone, model, path = _saved(tmp_path)
    x, z = backbone.images(1), torch.randn(1, 6)
    with torch.no_grad():
        expected = model(x, z=z)
    other = Backbone("sam").inject()
    assert ua.load_adapters(other, path) is other
    with torch.no_grad():
        assert torch.equal(other(x, z=z), expected)


def test_backbone_with_fewer_blocks_is_refused_and_left_untouched(tmp_path):
    from .backbones import tiny_sam_encoder

    _, _, path = _saved(tmp_path)
    shallow = tiny_sam_encoder(depth=2)
    flags = [p.requires_grad for p in shallow.parameters()]
    with pytest.raises(ua.CheckpointMismatchError, match="blocks.2"):
        ua.load_adapters(shallow, path)
    assert [p.requires_grad for p in shallow.parameters()] == flags
    assert all(not block._forward_hooks for block in shallow.blocks)


def test_backbone_of_another_width_is_refused_naming_the_widths(tmp_path):
    from .backbones import tiny_sam_encoder

    _, _, path = _saved(tmp_path)
    with pytest.raises(ua.CheckpointMismatchError, match="embedding width: saved 64, model 96"):
        ua.load_adapters(tiny_sam_encoder(embed_dim=96), path)


def test_model_with_another_configuration_is_refused_naming_the_field(tmp_path):
    _, _, path = _saved(tmp_path)
    other = Backbone("sam").inject(ua.UncertaintyAdapterConfig(latent_dim=4))
    with pytest.raises(ua.CheckpointMismatchError, match="latent_dim"):
        ua.load_adapters(other, path)


def test_weights_from_another_save_are_refused(tmp_path):
    _, _, path = _saved(tmp_path)
    other = Backbone("sam").inject()
    other.save_adapters(tmp_path / "other")
    os.replace(tmp_path / "other" / "adapter_model.safetensors", path / "adapter_model.safetensors")
    with pytest.raises(ua.CheckpointMismatchError, match="hash differs"):
        ua.load_adapters(Backbone("sam").model, path)


def test_weights_with_wrong_tensors_are_refused_naming_them(tmp_path):
    _, model, path = _saved(tmp_path)
    tensors = model.adapter_state_dict()
    tensors["adapters.0.down.weight"] = torch.zeros(3, 3)
    del tensors["recon.mlp.0.bias"]
    sha = ckpt.save_tensors_atomic(path / "adapter_model.safetensors", tensors)
    meta = json.loads((path / "adapter_config.json").read_text())
    ckpt.write_json_atomic(path / "adapter_config.json", {**meta, "weights_sha256": sha})
    with pytest.raises(ua.CheckpointMismatchError, match=r"missing: recon.mlp.0.bias.*shape mismatch: adapters.0.down.weight"):
        ua.load_adapters(Backbone("sam").model, path)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter directory"):
        ua.load_adapters(Backbone("sam").model, tmp_path / "nowhere")


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "weights.safetensors"
    ckpt.save_tensors_atomic(target, {"a": torch.ones(2)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_tensors_atomic(target, {"a": torch.zeros(2)})
    assert torch.equal(ckpt.load_tensors(target)["a"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["weights.safetensors"]


def test_the_same_tensors_and_metadata_always_give_the_same_bytes():
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.float16)}
    metadata = {"layout": "segment-anything", "format": "pt", "image_size": "64", "note": "ä"}
    written = {ckpt.tensors_to_bytes(tensors, metadata) for _ in range(20)}
    assert len(written) == 1
    loaded = safetensors.torch.load(written.pop())
    assert loaded["b"].equal(tensors["b"]) and loaded["a"].equal(tensors["a"])


def test_config_json_records_what_is_needed_to_rebuild(tmp_path):
    _, model, path = _saved(tmp_path, "timm", ua.UncertaintyAdapterConfig(interaction="concat"))
    meta = json.loads((path / "adapter_config.json").read_text())
    assert meta["config"]["interaction"] == "concat"
    assert meta["block_names"] == ["blocks.0", "blocks.1"]
    assert (meta["embed_dim"], meta["num_blocks"], meta["backbone"]) == (64, 2, "VisionTransformer")
