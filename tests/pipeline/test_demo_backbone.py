"""The demo backbone is pretrained once, cached under a key of its settings, then reused."""

from __future__ import annotations

import pytest

from uncertainty_adapters.integrations.pipeline import demo_backbone
from uncertainty_adapters.integrations.pipeline.demo_backbone import PretrainSettings, ensure_demo_backbone
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
