"""The demo backbone is pretrained once, cached under a key of its settings, then reused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from uncertainty_adapters.integrations.pipeline import demo_backbone
from uncertainty_adapters.integrations.pipeline.demo_backbone import PretrainSettings, ensure_demo_backbone
from uncertainty_adapters.integrations.pipeline.output_dir import OutputFolderError
from uncertainty_adapters.integrations.sam import build_sam, load_sam_weights

TINY = PretrainSettings(image_size=64, steps=2, batch_size=2)


def test_second_call_uses_the_cache(tmp_path, monkeypatch):
    path, facts = ensure_demo_backbone(64, cache_dir=tmp_path, cpu=True, settings=TINY)
    assert path.is_file() and facts["cached"] is False and 0.0 <= facts["held_out_iou"] <= 1.0

    def must_not_run(*args, **kwargs):
        raise AssertionError("pretraining ran again although the weights are cached")

    monkeypatch.setattr(demo_backbone, "pretrain", must_not_run)
    again, facts = ensure_demo_backbone(64, cache_dir=tmp_path, cpu=True, settings=TINY)
    assert again == path and facts["cached"] is True


def test_cached_weights_load_into_the_demo_architecture(tmp_path):
    path, _ = ensure_demo_backbone(64, cache_dir=tmp_path, cpu=True, settings=TINY)
    load_sam_weights(build_sam("demo", image_size=64), path)


def test_other_settings_get_another_cache_entry():
    assert TINY.key() != PretrainSettings(image_size=64, steps=3, batch_size=2).key()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UA_CACHE_DIR", str(tmp_path / "cache"))
    assert demo_backbone.default_cache_dir() == tmp_path / "cache"


def test_a_file_under_the_cache_name_that_ua_sam_did_not_write_is_never_replaced(tmp_path, monkeypatch):
    weights = tmp_path / f"sam-{TINY.spec}-{TINY.image_size}px-{TINY.key()}.safetensors"
    weights.write_bytes(b"someone else's file")
    monkeypatch.setattr(demo_backbone, "pretrain", lambda *args: pytest.fail("pretraining started"))
    with pytest.raises(OutputFolderError, match="not a demo backbone that ua-sam cached"):
        ensure_demo_backbone(64, cache_dir=tmp_path, cpu=True, settings=TINY)
    assert weights.read_bytes() == b"someone else's file"


def test_cached_weights_without_their_facts_are_pretrained_again(tmp_path, monkeypatch):
    weights = tmp_path / f"sam-{TINY.spec}-{TINY.image_size}px-{TINY.key()}.safetensors"
    save_file({"image_encoder.x": torch.zeros(1)}, weights, metadata={"layout": "segment-anything"})
    calls = []
    monkeypatch.setattr(demo_backbone, "pretrain", lambda settings, path, device: calls.append(path) or {"held_out_iou": 0.5})
    path, facts = ensure_demo_backbone(64, cache_dir=tmp_path, cpu=True, settings=TINY)
    assert calls == [weights] and path == weights and facts["cached"] is False
